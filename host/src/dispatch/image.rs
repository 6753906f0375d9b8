//! Which image digest a deploy is for, so that each digest of an image
//! deploys once ([`ImageClaim`], checked by the journal as the deploy is
//! admitted): the same digest arriving again (another delivery id, a
//! second webhook, a captured delivery replayed) is answered `duplicate`.
//!
//! When the deploy's stack both polls the image (`[stacks.poll]`) and
//! receives its registry's webhook, whichever sees a digest first deploys
//! it, and the other is answered `duplicate`. A poll's deploy is for the
//! digest the poll saw, when it looked. A webhook's is for the digest the
//! registry says the tag points to when the webhook comes, asked as the
//! poll asks it ([`crate::poll::registry::manifest_digest`], the same
//! credentials and kept token) within [`WEBHOOK_DIGEST_TIMEOUT`], timed
//! when the question was asked: the deploy runs after that, so it pulls
//! that digest or a newer one, and a poll that then sees the same digest
//! has nothing to add. The payload's own digest is not used there: a
//! registry may name a platform's manifest where the tag names an index,
//! or be slow to show it. A webhook whose registry cannot say
//! (unreachable, slow, its `Retry-After` running, no multi-threaded
//! runtime to ask on) claims no digest and deploys, and the poll may deploy
//! once more (never once less). A delivery the journal admitted before
//! (its delivery id, its replay key) asks nothing. Either way the deploy
//! pulls the tag, and moves the image on, as a tag's push does (below).
//!
//! A stack that does not poll the image claims the digest of an image
//! pushed by digest alone ([`from_payload`]): its deploy runs exactly the
//! digest its payload names, so the same push sent again (a second
//! webhook, a captured delivery replayed under a new delivery id) would
//! redeploy it, or roll the stack back once a newer one deployed. A push
//! of a tag claims no digest there: its deploy pulls the tag, at whatever
//! digest the tag points to by then, so the payload's digest says nothing
//! of what the stack runs (a late delivery, a deploy in between that
//! claimed nothing), and a claim of it could refuse the tag's next move. It
//! always deploys, and moves the image on past every digest pushed by
//! digest alone before it ([`ImageClaimKind::Tag`]).

use std::time::Duration;

use crate::config::{ImageReference, PollConfig, PollKind, PollTarget, StackConfig};
use crate::journal::{now_ms, ImageClaim, ImageClaimKind};
use crate::plugin::wit;

/// How long a registry webhook's answer waits for the registry to say which
/// digest the pushed tag points to (a sender gives up on a slow hook: a
/// poll's `timeout` may be ten minutes).
pub const WEBHOOK_DIGEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The digest claim of `event`'s deploy, which `delivery` brought (a
/// poll's seen at `seen_at_ms`), when `stack` polls the image it deploys;
/// else [`from_payload`].
pub(super) fn claim(
    stack: &StackConfig,
    event: &wit::DeployEvent,
    delivery: &wit::Delivery,
    images: &[wit::ImagePush],
    seen_at_ms: Option<i64>,
) -> Option<ImageClaim> {
    let image = event.image.as_deref()?;
    let Some((poll, target, reference)) = polled(stack, image) else {
        return from_payload(image, images);
    };
    let seen = match delivery {
        wit::Delivery::Poll(wit::PollObservation {
            change: wit::PollChange::Image(seen),
            ..
        }) => {
            let named = format!("{}:{}", seen.repository, seen.tag);
            let same = ImageReference::parse(&named).ok().as_ref() == Some(reference);
            same.then(|| (seen.digest.clone(), seen_at_ms.unwrap_or_else(now_ms)))
        }
        _ => {
            let asked_at = now_ms();
            asked(stack, poll, target, reference).map(|digest| (digest, asked_at))
        }
    };
    // A digest nobody could tell claims nothing, but the deploy pulls the
    // tag all the same: the image moves on.
    let Some((digest, seen_at_ms)) = seen else {
        return tag_claim(image, images);
    };
    Some(ImageClaim {
        image: reference.source(),
        repository: image_of(&reference.name),
        digest,
        seen_at_ms,
        kind: ImageClaimKind::Polled,
    })
}

/// The claim of a deploy of `image` (its deploy event's `image`) that no
/// poll of its stack follows: for a push by digest alone
/// (`registry/repository@digest`), the digest its delivery's payload names
/// for that image (`images`, the outcome's image pushes, read by the
/// component), which the deploy runs; for a push of a tag, the image's
/// move ([`ImageClaimKind::Tag`]).
pub(super) fn from_payload(image: &str, images: &[wit::ImagePush]) -> Option<ImageClaim> {
    let Some((_, pinned)) = image.split_once('@') else {
        return tag_claim(image, images);
    };
    // A claim is a row of the journal's, named by the image: kept to a
    // size every index takes (PostgreSQL's B-tree refuses rows over 2704
    // bytes, and the deploy would then be lost), of a digest as registries
    // give them. Any other deploys, claiming nothing.
    if image.len() > MAX_CLAIMED_IMAGE_BYTES || !is_manifest_digest(pinned) {
        return None;
    }
    let push = pushed(images, image).filter(|push| push.tag.is_none())?;
    let digest = push.digest.as_deref().filter(|d| *d == pinned)?;
    // Keyed by the image, not as the sender spelled it ([`image_of`]).
    let repository = image_of(&push.repository);
    Some(ImageClaim {
        image: format!("{repository}@{digest}"),
        repository,
        digest: digest.to_owned(),
        seen_at_ms: now_ms(),
        kind: ImageClaimKind::Pinned,
    })
}

/// The claim of a deploy that pulls `image`'s tag, at whatever digest it
/// points to when the deploy runs: it claims nothing, but moves the image
/// on ([`ImageClaimKind::Tag`]).
fn tag_claim(image: &str, images: &[wit::ImagePush]) -> Option<ImageClaim> {
    let repository = match pushed(images, image) {
        Some(push) => image_of(&push.repository),
        None => image_of_name(image),
    };
    (image.len() <= MAX_CLAIMED_IMAGE_BYTES).then(|| ImageClaim {
        image: image.to_owned(),
        repository,
        digest: String::new(),
        seen_at_ms: now_ms(),
        kind: ImageClaimKind::Tag,
    })
}

/// The image a push of `repository` is of, whatever its registry: its
/// repository path as the component reads a stack's image that names no
/// registry (`plugin/src/matching.rs`, `canonical_path`), in lower case,
/// without the `/` around it, and a single name under `library/`
/// (`nginx` is `library/nginx`, on every registry). So a push is of one
/// image however its sender spells it (Docker Hub's hosts, letter case,
/// `/`) and from whichever registry (a mirror's notifications of an image
/// a stack follows on any registry: one service, one image), and a
/// registry host without a dot (`myreg/acme/app@...`, a registry named by
/// its compose service) is never read as a Docker Hub namespace
/// ([`ImageClaim::repository`]).
pub fn image_of(repository: &str) -> String {
    let path = repository.trim_matches('/').to_ascii_lowercase();
    match path.contains('/') {
        true => path,
        false => format!("library/{path}"),
    }
}

/// [`image_of`] an image named `registry/repository:tag` or
/// `registry/repository@digest` (a deploy event's, of no push at hand),
/// its first segment read as a registry host as Docker reads it (with a
/// `.` or `:`, or `localhost`).
fn image_of_name(image: &str) -> String {
    let named = untagged(image).trim_start_matches('/');
    match named.split_once('/') {
        Some((host, path)) if host.contains(['.', ':']) || host == "localhost" => image_of(path),
        _ => image_of(named),
    }
}

/// `image` (`registry/repository:tag`, `registry/repository@digest`, or
/// neither) without its tag or digest.
fn untagged(image: &str) -> &str {
    let named = image
        .split_once('@')
        .map_or(image, |(named, _)| named)
        .trim();
    named
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map_or(named, |(repository, _)| repository)
}

/// Docker Hub's names for itself (the component's `DOCKER_HUB_HOSTS`).
const DOCKER_HUB_HOSTS: [&str; 5] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
    "hub.docker.com",
];

/// The push of `images` (the outcome's, read by the component) that a
/// deploy event names `image`: the component's name for it
/// (`matching::image_reference`: `registry/repository:tag`, or
/// `registry/repository@digest` for a push by digest alone).
fn pushed<'i>(images: &'i [wit::ImagePush], image: &str) -> Option<&'i wit::ImagePush> {
    images.iter().find(|push| reference(push) == image)
}

/// The image `image` (`registry/repository:tag`, `registry/repository@digest`)
/// names, without its tag or digest, read as polling reads it
/// ([`ImageReference::parse`]: `nginx:1` and
/// `docker.io/library/nginx@sha256:...` are both
/// `registry-1.docker.io/library/nginx`), after the spellings the
/// component takes for one image (`plugin/src/matching.rs`, `ImageKey`):
/// each of Docker Hub's hosts, letter case, and `/` around the repository.
/// The lane of an image's deploy whose stack's configuration is not at hand
/// (`super::plan`). A name polling cannot read is taken lower case, less
/// its tag or digest.
pub fn repository_of(image: &str) -> String {
    let named = untagged(image);
    let named = match named.trim_start_matches('/').split_once('/') {
        Some((host, path)) if host.contains(['.', ':']) || host == "localhost" => {
            let host = host.to_ascii_lowercase();
            let host = match DOCKER_HUB_HOSTS.contains(&host.as_str()) {
                true => "docker.io",
                false => &host,
            };
            format!("{host}/{}", path.trim_matches('/'))
        }
        _ => named.trim_matches('/').to_owned(),
    };
    match ImageReference::parse(&named) {
        Ok(reference) => format!("{}/{}", reference.registry, reference.name),
        Err(_) => named.to_ascii_lowercase(),
    }
}

/// The longest image name (`registry/repository@digest`) whose digest a
/// push by digest alone claims ([`from_payload`]): Docker's references
/// allow 255 bytes of name, and a SHA-512 digest takes 135.
pub const MAX_CLAIMED_IMAGE_BYTES: usize = 1024;

/// A manifest digest as registries give them: `sha256:` and 64 lowercase
/// hex digits, or `sha512:` and 128.
fn is_manifest_digest(digest: &str) -> bool {
    let hex = match digest.split_once(':') {
        Some(("sha256", hex)) if hex.len() == 64 => hex,
        Some(("sha512", hex)) if hex.len() == 128 => hex,
        _ => return false,
    };
    hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The name a deploy event gives the image `push`: the component's rule
/// (`matching::image_reference` in the plugin), `registry/repository:tag`,
/// or `registry/repository@digest` for a push by digest alone. A name that
/// differs from the event's only makes [`from_payload`] claim nothing.
fn reference(push: &wit::ImagePush) -> String {
    let registry = push.registry.as_deref().map(|r| format!("{r}/"));
    let pinned = match (&push.tag, &push.digest) {
        (Some(tag), _) => format!(":{tag}"),
        (None, Some(digest)) => format!("@{digest}"),
        (None, None) => String::new(),
    };
    format!(
        "{}{}{pinned}",
        registry.unwrap_or_default(),
        push.repository
    )
}

/// The image source of `stack`'s polling that `image` (a deploy event's
/// `registry/repository:tag`) names, read by the same rules.
fn polled<'s>(
    stack: &'s StackConfig,
    image: &str,
) -> Option<(&'s PollConfig, &'s PollTarget, &'s ImageReference)> {
    let poll = stack.poll.as_ref()?;
    let wanted = ImageReference::parse(image).ok()?;
    poll.sources.iter().find_map(|target| match &target.kind {
        PollKind::Image(reference) if *reference == wanted => Some((poll, target, reference)),
        _ => None,
    })
}

/// What the registry says `reference`'s tag points to now, asked on the
/// server's runtime from a thread of its own (dispatch runs off the
/// runtime's workers, on a blocking thread or inside `block_in_place`, and
/// may one day be called elsewhere); `None`, logged, when it
/// cannot say in time, or when there is no multi-threaded runtime to ask
/// on (a command run once: nothing polls there).
fn asked(
    stack: &StackConfig,
    poll: &PollConfig,
    target: &PollTarget,
    reference: &ImageReference,
) -> Option<String> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return None;
    }
    let key = crate::poll::token_key(&stack.name, target);
    let ask = crate::poll::registry::manifest_digest_unless_held(reference, poll, &key);
    let answer = std::thread::scope(|s| {
        // The timer is made inside the runtime (it needs its context).
        s.spawn(|| {
            handle.block_on(async { tokio::time::timeout(WEBHOOK_DIGEST_TIMEOUT, ask).await })
        })
        .join()
    });
    let why = match answer {
        Ok(Ok(Ok(digest))) => return Some(digest),
        Ok(Ok(Err(e))) => e.to_string(),
        Ok(Err(_)) => format!("no answer within {} s", WEBHOOK_DIGEST_TIMEOUT.as_secs()),
        Err(_) => "the question failed".to_owned(),
    };
    tracing::warn!(stack = %stack.name, source = %target.url, "a registry push of a polled image: cannot ask the registry which digest its tag points to ({why}); the push deploys, and the poll may deploy the same image once more");
    None
}

#[cfg(test)]
mod tests {
    use super::{image_of, image_of_name, repository_of};

    #[test]
    fn a_pushed_image_is_its_path_as_the_component_reads_it_whatever_its_registry() {
        let digest = format!("sha256:{}", "a".repeat(64));
        // As pushes name their repository, from any registry.
        for (repository, image) in [
            ("library/nginx", "library/nginx"),
            ("nginx", "library/nginx"),
            ("Library/Nginx", "library/nginx"),
            ("/library/nginx/", "library/nginx"),
            ("Nginx/", "library/nginx"),
            ("Acme/App/", "acme/app"),
            ("acme/app", "acme/app"),
            // A registry host without a dot is a registry, not a namespace:
            // the push names it apart.
            ("myreg/acme/app", "myreg/acme/app"),
        ] {
            assert_eq!(image_of(repository), image, "{repository}");
        }
        // As deploy events name them, with no push at hand.
        for (name, image) in [
            (format!("docker.io/nginx@{digest}"), "library/nginx"),
            ("nginx:1.27".to_owned(), "library/nginx"),
            (
                "registry-1.docker.io/library/nginx:latest".to_owned(),
                "library/nginx",
            ),
            // A registry host without a dot is a registry only in a push.
            (format!("myreg/acme/app@{digest}"), "myreg/acme/app"),
            ("ghcr.io/acme/web:latest".to_owned(), "acme/web"),
            (format!("127.0.0.1:5000/acme/app@{digest}"), "acme/app"),
            ("localhost:5000/app:v1".to_owned(), "library/app"),
            ("reg.example:5000/acme/web/:v2".to_owned(), "acme/web"),
        ] {
            assert_eq!(image_of_name(&name), image, "{name}");
        }
    }

    #[test]
    fn an_images_repository_drops_its_tag_or_digest_and_reads_the_name_as_polling_does() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for (image, repository) in [
            (format!("ghcr.io/acme/web@{digest}"), "ghcr.io/acme/web"),
            ("ghcr.io/acme/web:v1".to_owned(), "ghcr.io/acme/web"),
            // A polled source's name, as `ImageReference::source` gives it.
            ("ghcr.io/acme/web:latest".to_owned(), "ghcr.io/acme/web"),
            ("GHCR.io/Acme/Web:v1".to_owned(), "ghcr.io/acme/web"),
            (
                "127.0.0.1:5000/acme/app:v9".to_owned(),
                "127.0.0.1:5000/acme/app",
            ),
            (
                format!("127.0.0.1:5000/acme/app@{digest}"),
                "127.0.0.1:5000/acme/app",
            ),
            (
                "127.0.0.1:5000/acme/app".to_owned(),
                "127.0.0.1:5000/acme/app",
            ),
            // Docker Hub's names, short and long, are one image.
            (
                "nginx:1.27".to_owned(),
                "registry-1.docker.io/library/nginx",
            ),
            (
                format!("docker.io/library/nginx@{digest}"),
                "registry-1.docker.io/library/nginx",
            ),
            (
                "registry-1.docker.io/library/nginx:latest".to_owned(),
                "registry-1.docker.io/library/nginx",
            ),
            (
                format!("hub.docker.com/nginx@{digest}"),
                "registry-1.docker.io/library/nginx",
            ),
            (
                format!("Registry.Hub.Docker.com/library/nginx@{digest}"),
                "registry-1.docker.io/library/nginx",
            ),
            (
                format!("index.docker.io/library/nginx@{digest}"),
                "registry-1.docker.io/library/nginx",
            ),
            // The `/` around a repository, and letter case, as the
            // component takes them.
            (
                format!("reg.example:5000//acme/web/@{digest}"),
                "reg.example:5000/acme/web",
            ),
            (
                "reg.example:5000/acme/web/:v2".to_owned(),
                "reg.example:5000/acme/web",
            ),
            (
                format!("reg.example:5000/ACME/web@{digest}"),
                "reg.example:5000/acme/web",
            ),
            (
                format!("/acme/web/@{digest}"),
                "registry-1.docker.io/acme/web",
            ),
            // No reference polling reads: lower case, less its tag or digest.
            ("Not An/Image:v1".to_owned(), "not an/image"),
            (format!("Not An/Image@{digest}"), "not an/image"),
        ] {
            assert_eq!(repository_of(&image), repository, "{image}");
        }
    }
}
