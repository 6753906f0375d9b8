//! Stage 1: the private `Raw*` types the TOML text is deserialized into,
//! one to one, with `#[serde(deny_unknown_fields)]`, and the opaque string
//! types that read values which may be secret without echoing them in a
//! type error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use super::{ManualSetting, PingSetting};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) stacks: Vec<RawStack>,
    #[serde(default)]
    pub(super) hook: RawHook,
    pub(super) journal: Option<RawJournal>,
    pub(super) ui: Option<RawUi>,
    #[serde(default)]
    pub(super) notifications: Vec<RawNotification>,
}

/// One `[[notifications]]` channel. `url` is read only to refuse it (a
/// chat's or webhook's URL is a credential), without echoing it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotification {
    pub(super) name: Option<String>,
    pub(super) kind: Option<String>,
    pub(super) events: Option<Vec<String>>,
    pub(super) stacks: Option<Vec<String>>,
    pub(super) give_up_after: Option<String>,
    pub(super) url: Option<OpaqueString>,
    pub(super) url_env: Option<String>,
    pub(super) url_file: Option<PathBuf>,
    pub(super) secret_env: Option<String>,
    pub(super) secret_file: Option<PathBuf>,
    pub(super) smtp_host: Option<String>,
    pub(super) smtp_port: Option<u16>,
    pub(super) tls: Option<String>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) username: Option<String>,
    pub(super) password_env: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) from: Option<String>,
    pub(super) to: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUi {
    pub(super) session_ttl: Option<String>,
    #[serde(default)]
    pub(super) users: Vec<RawUiUser>,
    pub(super) trusted_user_header: Option<String>,
    pub(super) trusted_proxies: Option<Vec<String>>,
    pub(super) trusted_role: Option<String>,
    pub(super) listen: Option<String>,
    pub(super) users_file: Option<String>,
}

/// A `[ui] users_file`: `[[users]]` as `[ui]` has them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUsersFile {
    #[serde(default)]
    pub(super) users: Vec<RawUiUser>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUiUser {
    pub(super) name: Option<String>,
    pub(super) role: Option<String>,
    pub(super) password_hash: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJournal {
    pub(super) url: Option<OpaqueString>,
    pub(super) url_env: Option<String>,
    pub(super) url_file: Option<PathBuf>,
    pub(super) pool_size: Option<usize>,
    pub(super) connect_timeout: Option<String>,
    pub(super) acquire_timeout: Option<String>,
    pub(super) answer_timeout: Option<String>,
    pub(super) lease: Option<String>,
    pub(super) runner: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHook {
    pub(super) server: Option<String>,
    pub(super) wait: Option<bool>,
    #[serde(default)]
    pub(super) repositories: BTreeMap<PathBuf, String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    pub(super) public_url: Option<String>,
    pub(super) state_dir: Option<PathBuf>,
    pub(super) max_body_bytes: Option<usize>,
    pub(super) max_concurrent_deploys: Option<usize>,
    pub(super) max_queued_deliveries: Option<usize>,
    pub(super) shutdown_grace: Option<String>,
    pub(super) replay_window: Option<String>,
    pub(super) header_timeout: Option<String>,
    pub(super) max_body_bytes_in_flight: Option<usize>,
    pub(super) max_connections: Option<usize>,
    pub(super) write_timeout: Option<String>,
    pub(super) keep_deploys: Option<String>,
    pub(super) keep_deploys_min: Option<usize>,
    pub(super) keep_deploys_max: Option<usize>,
    pub(super) keep_deliveries: Option<String>,
    pub(super) keep_refused_deliveries: Option<String>,
    pub(super) max_refused_deliveries_per_minute: Option<u32>,
    pub(super) max_deploy_log_bytes: Option<u64>,
    pub(super) keep_delivery_bodies: Option<u64>,
    pub(super) log_links: Option<String>,
    pub(super) body_timeout: Option<String>,
    pub(super) callback_hosts: Option<Vec<String>>,
    pub(super) max_event_age: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStack {
    pub(super) name: Option<String>,
    pub(super) repository: Option<String>,
    pub(super) branch: Option<String>,
    pub(super) tags: Option<String>,
    pub(super) image: Option<String>,
    pub(super) secrets: Option<OpaqueList>,
    pub(super) secrets_env: Option<Vec<String>>,
    pub(super) secrets_file: Option<PathBuf>,
    pub(super) hook_token: Option<OpaqueString>,
    pub(super) hook_token_env: Option<String>,
    pub(super) hook_token_file: Option<PathBuf>,
    pub(super) ping: Option<PingSetting>,
    pub(super) paths: Option<Vec<String>>,
    pub(super) skip_markers: Option<Vec<String>>,
    pub(super) command: Option<RawCommand>,
    pub(super) workdir: Option<PathBuf>,
    pub(super) env: Option<OpaqueMap>,
    pub(super) timeout: Option<String>,
    pub(super) http: Option<RawHttp>,
    pub(super) environment_url: Option<String>,
    #[serde(default)]
    pub(super) profiles: BTreeMap<String, RawProfile>,
    #[serde(default)]
    pub(super) services: Vec<RawService>,
    pub(super) github: Option<RawGithub>,
    pub(super) poll: Option<RawPoll>,
    pub(super) manual: Option<ManualSetting>,
    pub(super) query_services: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) url: Option<OpaqueString>,
    pub(super) headers: Option<OpaqueMap>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    pub(super) command: Option<RawCommand>,
    pub(super) env: Option<OpaqueMap>,
    pub(super) selectable: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) name: Option<String>,
    pub(super) repository: Option<String>,
    pub(super) branch: Option<String>,
    pub(super) tags: Option<String>,
    pub(super) image: Option<String>,
    pub(super) selectable: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGithub {
    pub(super) repository: Option<String>,
    pub(super) api_url: Option<String>,
    /// Accepted by the parser only so that validation can reject it with a
    /// helpful message; its value is never kept.
    pub(super) token: Option<IgnoredAny>,
    pub(super) token_env: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) environment: Option<String>,
    pub(super) transient_environment: Option<bool>,
    pub(super) production_environment: Option<bool>,
    pub(super) auto_merge: Option<bool>,
    pub(super) required_contexts: Option<Vec<String>>,
    pub(super) wait_for_event: Option<bool>,
    pub(super) accept_foreign_deployments: Option<bool>,
    pub(super) catch_up_every: Option<String>,
    pub(super) retry_request_for: Option<String>,
    pub(super) on_request_failure: Option<String>,
    pub(super) event_wait: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPoll {
    pub(super) every: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) url: Option<String>,
    /// Accepted by the parser only so that validation can reject it with a
    /// helpful message; its value is never kept.
    pub(super) token: Option<IgnoredAny>,
    pub(super) token_env: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) username: Option<String>,
    pub(super) ssh_key_file: Option<PathBuf>,
    pub(super) token_hosts: Option<Vec<String>>,
}

/// A string that may be secret. serde's own type errors quote the offending
/// value (`invalid type: string "..."`), so it is read as a generic TOML
/// value and type-checked here without echoing it.
pub(super) struct OpaqueString(pub(super) String);

/// A list of strings that may be secret (see [`OpaqueString`]).
pub(super) struct OpaqueList(pub(super) Vec<String>);

/// A table of strings whose values may be secret (see [`OpaqueString`]).
pub(super) struct OpaqueMap(pub(super) BTreeMap<String, String>);

/// A deploy command: the program and its arguments, as a list. One string
/// (`command = "docker compose up -d"`) is refused with how to write it,
/// and like [`OpaqueList`] no value is echoed (arguments may hold tokens).
pub(super) struct RawCommand(pub(super) Vec<String>);

/// What a `command` given as one string is told.
pub(super) const COMMAND_AS_ONE_STRING: &str = "a command is a list of arguments, not one \
     string: write [\"docker\", \"compose\", \"up\", \"-d\"], or [\"sh\", \"-c\", \"...\"] \
     to run a shell line";

impl<'de> Deserialize<'de> for OpaqueString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => Ok(OpaqueString(s)),
            other => Err(opaque_type_error("a string", &other)),
        }
    }
}

impl<'de> Deserialize<'de> for OpaqueList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        opaque_strings(toml::Value::deserialize(d)?, "a list of strings").map(OpaqueList)
    }
}

impl<'de> Deserialize<'de> for RawCommand {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::String(_) => Err(serde::de::Error::custom(COMMAND_AS_ONE_STRING)),
            other => opaque_strings(other, "a list of arguments").map(RawCommand),
        }
    }
}

impl<'de> Deserialize<'de> for OpaqueMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTED: &str = "a table of strings";
        match toml::Value::deserialize(d)? {
            toml::Value::Table(table) => table
                .into_iter()
                .map(|(key, value)| match value {
                    toml::Value::String(s) => Ok((key, s)),
                    other => Err(serde::de::Error::custom(format!(
                        "invalid type for `{key}`: {}, expected a string",
                        other.type_str()
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(OpaqueMap),
            other => Err(opaque_type_error(EXPECTED, &other)),
        }
    }
}

/// A TOML list of strings, or a type error that echoes no value.
fn opaque_strings<E: serde::de::Error>(
    value: toml::Value,
    expected: &str,
) -> Result<Vec<String>, E> {
    match value {
        toml::Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s),
                other => Err(opaque_type_error(expected, &other)),
            })
            .collect(),
        other => Err(opaque_type_error(expected, &other)),
    }
}

fn opaque_type_error<E: serde::de::Error>(expected: &str, found: &toml::Value) -> E {
    E::custom(format!(
        "invalid type: {}, expected {expected}",
        found.type_str()
    ))
}
