//! Stage 2 for the `[ui]` table: who may sign in to the dashboard
//! ([`crate::ui`]) and how. No table leaves the dashboard off; a table that
//! gives no way to sign in (no users, no trusted header) is refused.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{RawUi, RawUiUser, RawUsersFile};
use super::secrets::SecretSource;
use super::server::{duration, non_zero};
use super::{ConfigError, Result, SecretScope};

/// How long a session lasts unless `session_ttl` says otherwise.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// The longest `session_ttl` allowed: a stolen cookie is good for no more.
pub const MAX_SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The longest user name accepted.
pub const MAX_USER_NAME_BYTES: usize = 64;

/// What a signed-in user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read every page; change nothing.
    Viewer,
    /// Also see hook URLs and deploy (redeploy now, redeploy a commit).
    Operator,
}

impl Role {
    /// The name the config and the pages use.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }

    fn parse(key: &str, value: &str) -> std::result::Result<Role, String> {
        match value {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            other => Err(format!("{key} {other:?} is not \"viewer\" or \"operator\"")),
        }
    }
}

/// A local user of the dashboard.
#[derive(Clone, PartialEq, Eq)]
pub struct UiUser {
    /// The name signed in with.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// The Argon2id hash of the password, as a PHC string
    /// (`redeploy ui passwd` prints one); left out of `Debug`.
    pub password_hash: String,
}

impl std::fmt::Debug for UiUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiUser")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// An identity proxy (oauth2-proxy, Authelia...) in front of the dashboard
/// that names the signed-in user in a header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedProxy {
    /// The header, lower case (`trusted_user_header`).
    pub header: String,
    /// The proxy's addresses (`trusted_proxies`): the header is believed
    /// only on connections from one of them, and ignored otherwise.
    pub from: Vec<IpAddr>,
    /// The role of a user the proxy names (`trusted_role`, default viewer).
    pub role: Role,
}

/// The validated `[ui]` table, when the dashboard is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UiConfig {
    /// How long a session lasts after sign-in (`session_ttl`).
    pub session_ttl: Duration,
    /// Local users (`[[ui.users]]`), names unique.
    pub users: Vec<UiUser>,
    /// The identity proxy, if any.
    pub proxy: Option<TrustedProxy>,
    /// The dashboard's own address (`listen`), read when `serve` starts:
    /// then `/ui/` is served there and not on `server.listen`, so the hook
    /// port can be public and the dashboard private.
    pub listen: Option<SocketAddr>,
    /// The file more users come from (`users_file`), if any.
    pub users_file: Option<PathBuf>,
}

impl UiConfig {
    /// The local user called `name`.
    pub fn user(&self, name: &str) -> Option<&UiUser> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// Validates `[ui]`: `None` when the dashboard is off.
pub(super) fn validate_ui(
    raw: Option<RawUi>,
    base_dir: &Path,
    sources: &dyn SecretSource,
    scope: SecretScope<'_>,
) -> Result<Option<UiConfig>> {
    let Some(mut raw) = raw else {
        return Ok(None);
    };
    let err = |message: String| ConfigError::invalid(format!("ui: {message}"));
    let listen = raw
        .listen
        .as_deref()
        .map(|a| {
            a.parse::<SocketAddr>().map_err(|_| {
                err(format!(
                    "listen {a:?} is not an address and port like 127.0.0.1:9091"
                ))
            })
        })
        .transpose()?;
    let users_file = raw
        .users_file
        .as_deref()
        .map(|p| super::server::resolve(base_dir, Path::new(p)));
    // The users file holds password hashes: read only where the dashboard's
    // users matter (`serve` and its reloads, `config check`), so a git
    // server's hook need not be able to read it.
    let from_file = users_file.is_some() && matches!(scope, SecretScope::Server);
    if let (Some(path), true) = (&users_file, from_file) {
        let text = sources
            .read(path)
            .map_err(|e| err(format!("users_file {}: {e}", path.display())))?;
        let file: RawUsersFile = toml::from_str(&text)
            .map_err(|e| err(format!("users_file {}: {}", path.display(), e.message())))?;
        raw.users.extend(file.users);
    }
    let session_ttl = duration("session_ttl", raw.session_ttl, DEFAULT_SESSION_TTL)
        .and_then(|d| non_zero("session_ttl", d))
        .map_err(err)?;
    if session_ttl > MAX_SESSION_TTL {
        return Err(err(format!(
            "session_ttl {} is longer than {}",
            humantime::format_duration(session_ttl),
            humantime::format_duration(MAX_SESSION_TTL)
        )));
    }
    let mut users: Vec<UiUser> = Vec::with_capacity(raw.users.len());
    for (i, user) in raw.users.into_iter().enumerate() {
        let user = validate_user(user).map_err(|m| err(format!("users[{i}]: {m}")))?;
        if users.iter().any(|u| u.name == user.name) {
            return Err(err(format!(
                "users[{i}]: name {:?} is used by more than one user",
                user.name
            )));
        }
        users.push(user);
    }
    let proxy = match (raw.trusted_user_header, raw.trusted_proxies) {
        (None, None) => {
            if raw.trusted_role.is_some() {
                return Err(err("trusted_role needs trusted_user_header".into()));
            }
            None
        }
        (Some(header), Some(from)) => {
            let header = header.trim().to_ascii_lowercase();
            if axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() || header.is_empty() {
                return Err(err(format!(
                    "trusted_user_header {header:?} is not a header name"
                )));
            }
            if from.is_empty() {
                return Err(err(
                    "trusted_proxies is empty: name the proxy's addresses".into()
                ));
            }
            let from = from
                .iter()
                .map(|a| {
                    a.parse::<IpAddr>()
                        .map_err(|_| err(format!("trusted_proxies: {a:?} is not an IP address")))
                })
                .collect::<Result<Vec<_>>>()?;
            let role = match raw.trusted_role {
                Some(role) => Role::parse("trusted_role", &role).map_err(err)?,
                None => Role::Viewer,
            };
            Some(TrustedProxy { header, from, role })
        }
        (Some(_), None) => return Err(err(
            "trusted_user_header needs trusted_proxies (the addresses the header is believed from)"
                .into(),
        )),
        (None, Some(_)) => return Err(err("trusted_proxies needs trusted_user_header".into())),
    };
    // Without the file read, its users are unknown here, not missing.
    let unread_file = users_file.is_some() && !from_file;
    if users.is_empty() && proxy.is_none() && !unread_file {
        return Err(err(
            "no way to sign in: add [[ui.users]] (with `redeploy ui passwd`) or trusted_user_header"
                .into(),
        ));
    }
    Ok(Some(UiConfig {
        session_ttl,
        users,
        proxy,
        listen,
        users_file,
    }))
}

fn validate_user(raw: RawUiUser) -> std::result::Result<UiUser, String> {
    let name = raw.name.ok_or("name is missing")?;
    if name.is_empty()
        || name.len() > MAX_USER_NAME_BYTES
        || name.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(format!(
            "name {name:?} must be 1 to {MAX_USER_NAME_BYTES} bytes without spaces or control characters"
        ));
    }
    let role = Role::parse("role", raw.role.as_deref().unwrap_or("viewer"))?;
    let hash = raw.password_hash.ok_or_else(|| {
        format!("user {name:?}: password_hash is missing (`redeploy ui passwd` prints one)")
    })?;
    let parsed = argon2::password_hash::phc::PasswordHash::new(&hash).map_err(|_| {
        format!(
            "user {name:?}: password_hash is not a PHC string (`redeploy ui passwd` prints one)"
        )
    })?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "user {name:?}: password_hash uses {}, not argon2id",
            parsed.algorithm
        ));
    }
    // The costs `redeploy ui passwd` uses, and the decoy hash an unknown
    // name is checked against: a hash of other costs (or none at all)
    // would take another time to check, and tell which names exist.
    let params = argon2::Params::try_from(&parsed).ok();
    let standard = argon2::Params::DEFAULT;
    let same_costs = params.is_some_and(|p| {
        (p.m_cost(), p.t_cost(), p.p_cost())
            == (standard.m_cost(), standard.t_cost(), standard.p_cost())
    });
    if parsed.salt.is_none() || parsed.hash.is_none() || !same_costs {
        return Err(format!(
            "user {name:?}: password_hash must be one `redeploy ui passwd` printed \
             (argon2id, m={}, t={}, p={}, with salt and hash)",
            standard.m_cost(),
            standard.t_cost(),
            standard.p_cost()
        ));
    }
    Ok(UiUser {
        name,
        role,
        password_hash: hash,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// An Argon2id hash (of "pw"), as `redeploy ui passwd` prints one.
    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$aDAHJzzDQ+JlEwvBLVGVVQ$rLfsWeVGqRpk1dYl/gkwhf2o79Y1jpO2TAJzXPa/WXE";

    fn parse(ui: &str) -> Result<Option<super::UiConfig>, String> {
        crate::config::parse(&format!("[ui]\n{ui}\n"), Path::new("/"))
            .map(|c| c.ui)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn no_ui_table_leaves_the_dashboard_off() {
        let config = crate::config::parse("", Path::new("/")).unwrap();
        assert_eq!(config.ui, None);
    }

    #[test]
    fn users_and_a_trusted_proxy_are_read_with_defaults() {
        let ui = parse(&format!(
            "users = [{{ name = \"alice\", password_hash = \"{HASH}\" }}]\n\
             trusted_user_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"10.0.0.1\", \"::1\"]"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(ui.session_ttl, super::DEFAULT_SESSION_TTL);
        assert_eq!(ui.users[0].role, super::Role::Viewer);
        let proxy = ui.proxy.unwrap();
        assert_eq!(proxy.header, "x-forwarded-user");
        assert_eq!(proxy.from.len(), 2);
        assert_eq!(proxy.role, super::Role::Viewer);
        // The hash stays out of Debug.
        assert!(!format!("{:?}", ui.users).contains("argon2id"));
    }

    #[test]
    fn a_ui_table_that_cannot_sign_anyone_in_is_refused() {
        let user = |name: &str, extra: &str| {
            format!("{{ name = \"{name}\", password_hash = \"{HASH}\"{extra} }}")
        };
        for (ui, says) in [
            ("", "no way to sign in"),
            ("users = []", "no way to sign in"),
            ("users = [{ name = \"a\" }]", "password_hash is missing"),
            (
                "users = [{ name = \"a\", password_hash = \"hunter2\" }]",
                "not a PHC string",
            ),
            (
                "users = [{ name = \"a\", password_hash = \"$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A\" }]",
                "uses argon2i, not argon2id",
            ),
            (&format!("users = [{}, {}]", user("a", ""), user("a", "")), "used by more than one user"),
            (&format!("users = [{}]", user("a b", "")), "without spaces"),
            (&format!("users = [{}]", user("a", ", role = \"admin\"")), "\"admin\" is not"),
            (&format!("users = [{}]\nsession_ttl = \"0s\"", user("a", "")), "session_ttl"),
            (&format!("users = [{}]\nsession_ttl = \"60d\"", user("a", "")), "longer than"),
            ("trusted_user_header = \"X-User\"", "needs trusted_proxies"),
            ("trusted_proxies = [\"127.0.0.1\"]", "needs trusted_user_header"),
            ("trusted_user_header = \"X-User\"\ntrusted_proxies = [\"proxy.local\"]", "not an IP address"),
            ("trusted_user_header = \"X User\"\ntrusted_proxies = [\"127.0.0.1\"]", "not a header name"),
            (&format!("users = [{}]\ntrusted_role = \"operator\"", user("a", "")), "trusted_role needs"),
            (
                "users = [{ name = \"a\", password_hash = \"$argon2id$v=19$m=65536,t=3,p=4$aDAHJzzDQ+JlEwvBLVGVVQ$rLfsWeVGqRpk1dYl/gkwhf2o79Y1jpO2TAJzXPa/WXE\" }]",
                "must be one `redeploy ui passwd` printed",
            ),
            (
                "users = [{ name = \"a\", password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$aDAHJzzDQ+JlEwvBLVGVVQ\" }]",
                "must be one `redeploy ui passwd` printed",
            ),
        ] {
            let err = parse(ui).unwrap_err();
            assert!(err.contains(says), "{ui}: {err}");
            assert!(!err.contains("rLfsWeVGq"), "the hash is not echoed: {err}");
        }
    }
}
