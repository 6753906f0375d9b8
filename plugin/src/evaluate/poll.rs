//! Poll deliveries: what the host found changed when it polled one stack's
//! source (a git repository's refs, an image tag's manifest digest), turned
//! into the push or image push a forge or registry would have sent, so that
//! the same rules decide. The host asked the source itself: nothing is
//! signed, and nothing here is trusted beyond its shape.

use serde::Deserialize;

use super::{ref_update_push, require_repository, RefUpdate};
use crate::error::PluginError;
use crate::matching::polled_image;
use crate::model::{Event, ImagePush, Normalized, Provider};

/// The registry of a polled image name that names none: Docker Hub, as
/// `docker pull` reads such a name.
const DEFAULT_REGISTRY: &str = "docker.io";

/// A git ref that moved, as polling the repository saw it (the WIT
/// `git-poll`). `evaluate-json` reads it with the WIT field names.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitPoll {
    /// The repository polled, as the stack names it.
    pub repository: String,
    /// The ref's move: the tip seen last (zeros: none), the tip now (zeros:
    /// the ref is gone), the full ref name.
    pub update: RefUpdate,
}

/// An image tag whose manifest digest changed, as polling the registry saw
/// it (the WIT `image-poll`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePoll {
    /// The image as the stack names it, without the tag (`ghcr.io/acme/api`, `nginx`).
    pub repository: String,
    /// The tag polled.
    pub tag: String,
    /// The manifest digest now.
    pub digest: String,
}

/// What changed in a polled source (the WIT `poll-change`), in
/// `evaluate-json` `{"git": {...}}` or `{"image": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum PollChange {
    /// A ref of a git repository moved.
    Git(GitPoll),
    /// An image tag points to a new manifest.
    Image(ImagePoll),
}

/// The push or image push a polled change stands for.
///
/// # Errors
///
/// [`PluginError::MalformedPayload`] for a change no source reports: object
/// ids that are not 40 or 64 hex digits of one length, a ref name that is
/// empty or holds ASCII whitespace, an empty repository or tag, an image name
/// outside the reference grammar, or a digest that is not `sha256:` and 64
/// lowercase hex digits or `sha512:` and 128.
pub(super) fn normalize(change: &PollChange) -> Result<Normalized, PluginError> {
    let event = match change {
        PollChange::Git(git) => {
            require_repository("poll", &git.repository)?;
            Event::Push(vec![ref_update_push(
                "poll",
                &git.repository,
                &git.update,
                None,
            )?])
        }
        PollChange::Image(image) => Event::ImagePush(vec![image_push(image)?]),
    };
    Ok(Normalized {
        provider: Provider::Poll,
        event_name: "poll".into(),
        delivery: None,
        event,
    })
}

fn image_push(image: &ImagePoll) -> Result<ImagePush, PluginError> {
    require_repository("poll", &image.repository)?;
    if image.tag.trim().is_empty() {
        return Err(PluginError::MalformedPayload(
            "poll: image tag is empty".into(),
        ));
    }
    if !is_manifest_digest(&image.digest) {
        return Err(PluginError::MalformedPayload(format!(
            "poll: digest \"{}\" is not sha256: and 64 lowercase hex digits, or sha512: and 128",
            image.digest
        )));
    }
    let (registry, path) = polled_image(&image.repository, &image.tag).ok_or_else(|| {
        PluginError::MalformedPayload(format!(
            "poll: \"{}:{}\" is not an image reference",
            image.repository, image.tag
        ))
    })?;
    Ok(ImagePush {
        registry: Some(registry.unwrap_or_else(|| DEFAULT_REGISTRY.into())),
        repository: path,
        tag: Some(image.tag.clone()),
        digest: Some(image.digest.clone()),
        pusher: None,
        callback_url: None,
        sent_at_ms: None,
    })
}

/// A manifest digest as registries send it in `Docker-Content-Digest`:
/// `sha256:` and 64 lowercase hex digits, or `sha512:` and 128.
fn is_manifest_digest(digest: &str) -> bool {
    let hex = |encoded: &str, len: usize| {
        encoded.len() == len
            && encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match digest.split_once(':') {
        Some(("sha256", encoded)) => hex(encoded, 64),
        Some(("sha512", encoded)) => hex(encoded, 128),
        _ => false,
    }
}
