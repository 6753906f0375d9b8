//! Stack preparation: a stack's services, its patterns compiled and the hook
//! URL's modifiers applied, checked the same way for a delivery and for the
//! host's configuration loader ([`validate_stacks`]).

use super::{Context, MAX_QUERY_BYTES};
use crate::error::PluginError;
use crate::matching::{shown_setting, Glob, ImageKey, RepoKey};
use crate::model::{Service, Stack};

/// Turns a stack's top-level `repository`/`branch`/`tags`/`image` into its
/// one service, or checks that a stack with `services` has no top-level source.
pub fn stack_services(
    name: &str,
    top: Service,
    services: Vec<Service>,
) -> Result<Vec<Service>, PluginError> {
    let has_top = top.repository.is_some()
        || top.branch.is_some()
        || top.tags.is_some()
        || top.image.is_some();
    match (has_top, services.is_empty()) {
        (true, false) => Err(PluginError::InvalidStack(format!(
            "stack \"{name}\": set repository/branch/image either at the top level or in services, not both"
        ))),
        (_, true) => Ok(vec![Service { name: name.to_string(), ..top }]),
        (false, false) => Ok(services),
    }
}

/// A service with its patterns compiled.
pub(super) struct PreparedService<'s> {
    pub(super) service: &'s Service,
    pub(super) repository: Option<RepoKey>,
    pub(super) branch: Option<Glob>,
    pub(super) tags: Option<Glob>,
    pub(super) image: Option<ImageKey>,
}

/// A stack with its patterns compiled and its modifiers applied.
pub(super) struct PreparedStack<'s> {
    pub(super) stack: &'s Stack,
    pub(super) services: Vec<PreparedService<'s>>,
    pub(super) paths: Vec<Glob>,
    pub(super) profile: Option<String>,
    pub(super) ctx: &'s Context,
}

impl<'s> PreparedStack<'s> {
    /// The services that follow a git repository.
    pub(super) fn git_services(&self) -> Vec<&PreparedService<'s>> {
        self.services
            .iter()
            .filter(|s| s.repository.is_some())
            .collect()
    }
}

pub(super) fn prepare<'s>(
    stack: &'s Stack,
    modifiers: &Modifiers,
    ctx: &'s Context,
) -> Result<PreparedStack<'s>, PluginError> {
    let name = &stack.name;
    if stack.services.is_empty() {
        return Err(PluginError::InvalidStack(format!(
            "stack \"{name}\" has no services"
        )));
    }
    let mut services = Vec::with_capacity(stack.services.len());
    for service in &stack.services {
        // A stack of one service written at the top level is named alone.
        // Formatted on demand (for a glob's name and for errors), not once
        // per service of every delivery `prepare` runs on.
        let label = || {
            if stack.services.len() == 1 && service.name == *name {
                format!("stack \"{name}\"")
            } else {
                format!("stack \"{name}\" service \"{}\"", service.name)
            }
        };
        let what = |key: &str| format!("{}: {key} pattern", label());
        let invalid =
            |message: String| PluginError::InvalidStack(format!("{}: {message}", label()));
        let repository = match &service.repository {
            Some(r) => Some(RepoKey::setting(r).ok_or_else(|| {
                invalid(format!(
                    "repository \"{}\" is not a repository: write owner/name, a clone URL or an absolute path",
                    shown_setting(r)
                ))
            })?),
            None => None,
        };
        if repository.is_none() && service.image.is_none() {
            return Err(invalid("set repository or image".into()));
        }
        if repository.is_none() && service.branch.is_some() {
            return Err(invalid("branch needs repository".into()));
        }
        if repository.is_some() && service.branch.is_none() && service.tags.is_none() {
            return Err(invalid(
                "repository needs a branch (or tags) pattern".into(),
            ));
        }
        let image = match &service.image {
            Some(i) => Some(ImageKey::parse(i).ok_or_else(|| {
                invalid(format!(
                    "image \"{i}\" is not an image reference: write name, owner/name or registry/path, \
                     with an optional :tag and @digest"
                ))
            })?),
            None => None,
        };
        services.push(PreparedService {
            service,
            repository,
            branch: service
                .branch
                .as_deref()
                .map(|b| Glob::new(b, || what("branch")))
                .transpose()?,
            tags: service
                .tags
                .as_deref()
                .map(|t| Glob::new(t, || what("tags")))
                .transpose()?,
            image,
        });
    }
    let paths = stack
        .paths
        .iter()
        .map(|p| Glob::new(p, || format!("stack \"{name}\": paths")))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(wanted) = &modifiers.services {
        // No forge signs the query: whoever replays one signed delivery
        // chooses it. A stack may keep its service set out of its reach.
        if stack.refuse_query_services {
            return Err(PluginError::BadRequest(format!(
                "stack \"{name}\" does not allow services= in the query (query_services = false)"
            )));
        }
        for w in wanted {
            if !stack.services.iter().any(|s| &s.name == w) {
                let known: Vec<&str> = stack.services.iter().map(|s| s.name.as_str()).collect();
                return Err(PluginError::BadRequest(format!(
                    "stack \"{name}\" has no service \"{w}\" (services: {})",
                    known.join(", ")
                )));
            }
        }
        if let Some(w) = wanted
            .iter()
            .find(|w| stack.unselectable_services.contains(w))
        {
            return Err(PluginError::BadRequest(format!(
                "stack \"{name}\": service \"{w}\" cannot be chosen with services= (selectable = false)"
            )));
        }
        services.retain(|s| wanted.iter().any(|w| w == &s.service.name));
    }
    if let Some(profile) = &modifiers.profile {
        if !stack.profiles.iter().any(|p| p == profile) {
            // The profiles the query may choose: the valid answers.
            let choices: Vec<&str> = stack
                .profiles
                .iter()
                .filter(|p| !stack.unselectable_profiles.contains(p))
                .map(String::as_str)
                .collect();
            let choices = if choices.is_empty() {
                "it has none that deployment_profile= may choose".to_string()
            } else {
                format!("profiles: {}", choices.join(", "))
            };
            return Err(PluginError::BadRequest(format!(
                "stack \"{name}\" has no deploy profile \"{profile}\" ({choices})"
            )));
        }
        if stack.unselectable_profiles.contains(profile) {
            return Err(PluginError::BadRequest(format!(
                "stack \"{name}\": deploy profile \"{profile}\" cannot be chosen with deployment_profile= (selectable = false)"
            )));
        }
    }
    Ok(PreparedStack {
        stack,
        services,
        paths,
        profile: modifiers.profile.clone(),
        ctx,
    })
}

/// Checks every stack by the rules [`evaluate`](super::evaluate) applies
/// when it prepares one (see [`prepare`]), without a delivery: what the host's configuration
/// loader calls, so a configuration it accepts never fails a delivery with
/// [`PluginError::InvalidStack`].
pub fn validate_stacks(stacks: &[Stack]) -> Result<(), PluginError> {
    let ctx = Context::default();
    for stack in stacks {
        prepare(stack, &Modifiers::default(), &ctx)?;
    }
    Ok(())
}

/// The hook URL's modifiers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Modifiers {
    /// `services=web,api`: restrict to these services.
    pub services: Option<Vec<String>>,
    /// `deployment_profile=NAME`.
    pub profile: Option<String>,
}

/// Parses `services=web,api&deployment_profile=fast`. Other keys are ignored
/// (users add cache-busters; forges add nothing), but for one that is
/// either key misspelled (`Services`, `service`, `deployment-profile`,
/// `profile`): refused, since ignored it would deploy every service, or
/// the default profile.
pub fn parse_modifiers(query: &str) -> Result<Modifiers, PluginError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(PluginError::BadRequest(format!(
            "query is longer than {MAX_QUERY_BYTES} bytes"
        )));
    }
    let mut m = Modifiers::default();
    for (key, value) in form_urlencoded::parse(query.trim_start_matches('?').as_bytes()) {
        match key.as_ref() {
            "services" => {
                let list = m.services.get_or_insert_with(Vec::new);
                for s in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if !list.iter().any(|x| x == s) {
                        list.push(s.to_string());
                    }
                }
                if list.is_empty() {
                    return Err(PluginError::BadRequest("services= names no service".into()));
                }
            }
            "deployment_profile" => {
                let v = value.trim();
                if v.is_empty() {
                    return Err(PluginError::BadRequest(
                        "deployment_profile= names no profile".into(),
                    ));
                }
                if m.profile.as_deref().is_some_and(|p| p != v) {
                    return Err(PluginError::BadRequest(
                        "deployment_profile= is given twice".into(),
                    ));
                }
                m.profile = Some(v.to_string());
            }
            other if is_misspelled_modifier(other) => {
                return Err(PluginError::BadRequest(format!(
                    "query key {other:?} is not one redeploy reads: it reads services= and \
                     deployment_profile= (lower case, with an underscore)"
                )));
            }
            _ => {}
        }
    }
    Ok(m)
}

/// Whether query key `key` is `services` or `deployment_profile` written
/// another way: another case, singular, `-` for `_`, `profile` alone,
/// with the brackets some frameworks give lists (`services[]`,
/// `services[0]`), with other characters around or inside its letters
/// (`services;`, a zero-width space), or as one word of several
/// (`services=web`, an `=` percent-encoded; `amp;services`, a URL copied
/// out of HTML; `services web`, a `+`; a full-width `＝`).
fn is_misspelled_modifier(key: &str) -> bool {
    let spelling = |word: &str| {
        let word = word.to_ascii_lowercase().replace('-', "_");
        MODIFIER_SPELLINGS.contains(&word.as_str())
    };
    // The key's words, split at anything but letters, digits, `_` and `-`.
    let mut words = key
        .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
        .filter(|word| !word.is_empty());
    // And the key with everything else left out (NUL, invisible characters
    // copied along with a URL, inside the name).
    let joined: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        .collect();
    words.any(spelling) || spelling(&joined)
}

/// The ways of writing `services` or `deployment_profile` that
/// [`is_misspelled_modifier`] refuses (lower case, `-` read as `_`).
const MODIFIER_SPELLINGS: [&str; 6] = [
    "services",
    "service",
    "deployment_profile",
    "deploymentprofile",
    "deploy_profile",
    "profile",
];
