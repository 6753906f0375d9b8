//! Who is signed in: passwords, sessions, CSRF tokens and the login limiter.
//! The limiter and the tokens are pure (the clock and the random bytes are
//! passed in; only a new password hash draws its own salt); the journal
//! keeps the sessions ([`crate::journal::Journal`]'s
//! `ui_session` calls) and [`super`] does the HTTP.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

use crate::config::{Role, UiConfig};

/// The longest password accepted (`redeploy ui passwd` refuses a longer
/// one, and a sign-in with one is wrong without hashing it): enough for any
/// passphrase, and a bound on what one sign-in costs to check.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Random bytes in a session id (hex in the cookie).
pub const SESSION_ID_BYTES: usize = 32;

/// Failed sign-ins allowed per client address, and per user name, within
/// [`LOGIN_WINDOW`]; the next is refused (429) until the oldest ages out.
pub const MAX_LOGIN_FAILURES: usize = 5;

/// The window [`MAX_LOGIN_FAILURES`] counts in.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Addresses and names the limiter tracks at most; past it, those whose
/// newest failure is oldest are forgotten first.
pub const MAX_TRACKED_LOGIN_KEYS: usize = 10_000;

/// A signed-in user, as the pages see them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The name.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// How they signed in: the session (its id, for the CSRF token and
    /// sign-out), or `None` for a user an identity proxy named.
    pub session: Option<String>,
}

/// The hash of a session id, as the journal stores it: a copy of the
/// journal holds no session anybody could present.
pub fn session_hash(id: &str) -> String {
    sha256_hex(id)
}

/// The digest a session keeps of the password hash its user signed in
/// with: when the hash changes (a new password), the session ends.
pub fn credential(password_hash: &str) -> String {
    sha256_hex(password_hash)
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A new session id from `random` bytes.
pub fn session_id(random: &[u8; SESSION_ID_BYTES]) -> String {
    hex::encode(random)
}

/// The CSRF token of whoever `subject` names (a session id, or a user named
/// by a proxy), keyed by the server's key: an attacker's page can neither
/// read it (same-origin policy) nor compute it.
pub fn csrf_token(key: &[u8], purpose: &str, subject: &str) -> String {
    hex::encode(csrf_mac(key, purpose, subject).finalize().into_bytes())
}

/// Whether `presented` is the CSRF token of `subject`, compared in
/// constant time.
pub fn csrf_ok(key: &[u8], purpose: &str, subject: &str, presented: &str) -> bool {
    match hex::decode(presented) {
        Ok(bytes) => csrf_mac(key, purpose, subject).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// The HMAC a CSRF token is: of `purpose` and `subject` under `key`.
fn csrf_mac(key: &[u8], purpose: &str, subject: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(subject.as_bytes());
    mac
}

/// Checks passwords against the config's Argon2id hashes. A name that is
/// no user's is checked against a hash of its own, made once with the
/// same parameters, so a wrong name costs what a wrong password costs and
/// both get the same answer.
pub struct Passwords {
    decoy: String,
}

impl Passwords {
    /// Makes the decoy hash (random salt; some tens of milliseconds).
    pub fn new() -> anyhow::Result<Passwords> {
        Ok(Passwords {
            decoy: hash_password(b"no user has this password")?,
        })
    }

    /// The local user `name` if `password` is theirs; `None` for a wrong
    /// password and for a name that is no user's alike.
    pub fn check(&self, ui: &UiConfig, name: &str, password: &str) -> Option<User> {
        let user = ui.user(name);
        let hash = user.map_or(self.decoy.as_str(), |u| u.password_hash.as_str());
        let matches = argon2::Argon2::default()
            .verify_password(password.as_bytes(), hash)
            .is_ok();
        match user {
            Some(user) if matches => Some(User {
                name: user.name.clone(),
                role: user.role,
                session: None,
            }),
            _ => None,
        }
    }
}

/// An Argon2id hash of `password` with a random salt, as a PHC string
/// (what `[[ui.users]] password_hash` holds).
pub fn hash_password(password: &[u8]) -> anyhow::Result<String> {
    argon2::Argon2::default()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password failed: {e}"))
}

/// What the limiter counts a failure against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LoginKey {
    /// The client's address.
    Client(IpAddr),
    /// The user name tried.
    Name(String),
}

/// Counts failed sign-ins per client address and per user name; pure (the
/// caller passes the time in milliseconds).
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: HashMap<LoginKey, VecDeque<i64>>,
}

impl LoginLimiter {
    /// How long until `keys` may try again: `None` when none of them has
    /// [`MAX_LOGIN_FAILURES`] failures within [`LOGIN_WINDOW`] of `now_ms`.
    pub fn wait(&mut self, keys: &[LoginKey], now_ms: i64) -> Option<Duration> {
        let window = LOGIN_WINDOW.as_millis() as i64;
        let mut longest = None;
        for key in keys {
            let Some(times) = self.failures.get_mut(key) else {
                continue;
            };
            while times.front().is_some_and(|&t| t <= now_ms - window) {
                times.pop_front();
            }
            if times.len() >= MAX_LOGIN_FAILURES {
                let oldest = times.front().copied().unwrap_or(now_ms);
                let wait = Duration::from_millis((oldest + window - now_ms).max(1) as u64);
                longest = longest.max(Some(wait));
            }
        }
        longest
    }

    /// Counts a failed sign-in against each of `keys`.
    pub fn failed(&mut self, keys: &[LoginKey], now_ms: i64) {
        if self.failures.len() + keys.len() > MAX_TRACKED_LOGIN_KEYS {
            self.forget_oldest(now_ms);
        }
        for key in keys {
            let times = self.failures.entry(key.clone()).or_default();
            times.push_back(now_ms);
            while times.len() > MAX_LOGIN_FAILURES {
                times.pop_front();
            }
        }
    }

    /// Forgets what has aged out, then, if still too many, the keys whose
    /// newest failure is oldest, down to three quarters of the cap.
    fn forget_oldest(&mut self, now_ms: i64) {
        let window = LOGIN_WINDOW.as_millis() as i64;
        self.failures
            .retain(|_, times| times.back().is_some_and(|&t| t > now_ms - window));
        let keep = MAX_TRACKED_LOGIN_KEYS * 3 / 4;
        if self.failures.len() > keep {
            let mut newest: Vec<(i64, LoginKey)> = self
                .failures
                .iter()
                .map(|(k, t)| (t.back().copied().unwrap_or(0), k.clone()))
                .collect();
            newest.sort_unstable_by_key(|(t, _)| *t);
            let drop = newest.len() - keep;
            for (_, key) in newest.into_iter().take(drop) {
                self.failures.remove(&key);
            }
        }
    }

    /// A sign-in counted as failed at `attempt_ms` ([`LoginLimiter::failed`])
    /// succeeded: forgets every failure of its user name, and of the other
    /// keys (the client address) only the one this attempt counted. The
    /// address's earlier failures stay: one account's password must not
    /// buy an address more guesses at other names.
    pub fn succeeded(&mut self, keys: &[LoginKey], attempt_ms: i64) {
        for key in keys {
            if matches!(key, LoginKey::Name(_)) {
                self.failures.remove(key);
                continue;
            }
            if let Some(times) = self.failures.get_mut(key) {
                if let Some(at) = times.iter().rposition(|&t| t == attempt_ms) {
                    times.remove(at);
                }
                if times.is_empty() {
                    self.failures.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UiUser;

    fn ui(hash: &str) -> UiConfig {
        UiConfig {
            session_ttl: Duration::from_secs(60),
            users: vec![UiUser {
                name: "alice".into(),
                role: Role::Operator,
                password_hash: hash.into(),
            }],
            proxy: None,
            listen: None,
            users_file: None,
        }
    }

    #[test]
    fn a_password_is_checked_against_its_argon2id_hash() {
        let hash = hash_password(b"correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let passwords = Passwords::new().unwrap();
        let ui = ui(&hash);
        let user = passwords.check(&ui, "alice", "correct horse").unwrap();
        assert_eq!((user.name.as_str(), user.role), ("alice", Role::Operator));
        assert_eq!(passwords.check(&ui, "alice", "correct horsE"), None);
        assert_eq!(passwords.check(&ui, "bob", "correct horse"), None);
        assert_eq!(passwords.check(&ui, "alice", ""), None);
    }

    #[test]
    fn a_csrf_token_belongs_to_one_key_purpose_and_subject() {
        let token = csrf_token(b"key", "session", "abc");
        assert!(csrf_ok(b"key", "session", "abc", &token));
        assert!(!csrf_ok(b"other key", "session", "abc", &token));
        assert!(!csrf_ok(b"key", "login", "abc", &token));
        assert!(!csrf_ok(b"key", "session", "abd", &token));
        assert!(!csrf_ok(b"key", "session", "abc", ""));
        assert!(!csrf_ok(b"key", "session", "abc", "not hex"));
        assert!(!csrf_ok(b"key", "session", "abc", &token[..62]));
    }

    #[test]
    fn the_limiter_refuses_after_the_failures_allowed_until_they_age_out() {
        let mut limiter = LoginLimiter::default();
        let ip = LoginKey::Client("192.0.2.1".parse().unwrap());
        let name = LoginKey::Name("alice".into());
        let keys = [ip.clone(), name.clone()];
        for i in 0..MAX_LOGIN_FAILURES as i64 {
            assert_eq!(limiter.wait(&keys, 1_000 + i), None);
            limiter.failed(&keys, 1_000 + i);
        }
        let window = LOGIN_WINDOW.as_millis() as i64;
        let now = 1_000 + MAX_LOGIN_FAILURES as i64;
        assert_eq!(
            limiter.wait(&keys, now),
            Some(Duration::from_millis((1_000 + window - now) as u64))
        );
        // The same name from another address is refused too, and another
        // name from the same address.
        let elsewhere = LoginKey::Client("192.0.2.2".parse().unwrap());
        assert!(limiter
            .wait(&[elsewhere.clone(), name.clone()], now)
            .is_some());
        assert!(limiter
            .wait(&[ip.clone(), LoginKey::Name("bob".into())], now)
            .is_some());
        assert_eq!(
            limiter.wait(&[elsewhere, LoginKey::Name("bob".into())], now),
            None
        );
        // A success forgets the name's failures, and of the address's only
        // the one its own attempt counted.
        limiter.succeeded(&keys, 1_000 + MAX_LOGIN_FAILURES as i64 - 1);
        let other_address = LoginKey::Client("192.0.2.3".parse().unwrap());
        assert_eq!(limiter.wait(&[other_address, name.clone()], now), None);
        let carol = LoginKey::Name("carol".into());
        assert_eq!(limiter.wait(&[ip.clone(), carol.clone()], now), None);
        limiter.failed(&[ip.clone(), carol.clone()], now);
        assert!(limiter.wait(&[ip.clone(), carol], now).is_some());
        // Once the oldest failure ages out, one more try is allowed.
        assert_eq!(limiter.wait(&keys, 1_000 + window), None);
    }

    #[test]
    fn successful_sign_ins_from_one_address_never_lock_it() {
        let mut limiter = LoginLimiter::default();
        let ip = LoginKey::Client("192.0.2.1".parse().unwrap());
        let keys = [LoginKey::Name("alice".into()), ip.clone()];
        for at in 0..(3 * MAX_LOGIN_FAILURES as i64) {
            assert_eq!(limiter.wait(&keys, at), None, "sign-in {at}");
            limiter.failed(&keys, at);
            limiter.succeeded(&keys, at);
        }
        assert!(!limiter.failures.contains_key(&ip));
    }

    #[test]
    fn the_limiter_tracks_a_bounded_number_of_keys() {
        let mut limiter = LoginLimiter::default();
        for i in 0..(MAX_TRACKED_LOGIN_KEYS as i64 + 10) {
            limiter.failed(&[LoginKey::Name(format!("user{i}"))], i);
        }
        assert!(limiter.failures.len() <= MAX_TRACKED_LOGIN_KEYS);
        // The newest are kept.
        let newest = MAX_TRACKED_LOGIN_KEYS as i64 + 9;
        assert!(limiter
            .failures
            .contains_key(&LoginKey::Name(format!("user{newest}"))));
    }
}
