//! The unguessable, expiring links to deploy logs that deployment statuses
//! and registry callbacks carry.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Config;
use crate::journal::Journal;

/// The name of the journal's key that signs log links.
pub const LOG_KEY_NAME: &str = "log-links";

/// Hex characters of a log link's key (128 bits).
pub const LOG_LINK_KEY_CHARS: usize = 32;

/// Signs and checks the unguessable links to deploy logs that deployment
/// statuses carry as `log_url`:
/// `{public_url}/logs/{deploy_id}/{expires}-{mac}`, where `expires` is the
/// Unix time (seconds) the link stops working and `mac` an HMAC-SHA256 of
/// the deploy id and that time with the server's log key, so neither can be
/// changed. Links live `server.log_links` (default
/// [`crate::config::DEFAULT_LOG_LINKS`]); with `log_links = "off"` there
/// are none and every `/logs/` request is 404.
#[derive(Clone)]
pub struct LogLinks {
    base: Option<String>,
    key: Vec<u8>,
    lifetime: Option<Duration>,
}

/// Seconds since the Unix epoch, now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl LogLinks {
    /// Log links under `public_url`, keyed by the journal's log key
    /// (created on first use), valid for `server.log_links`.
    pub fn new(config: &Config, journal: &Journal) -> anyhow::Result<LogLinks> {
        let candidate = crate::tokens::generate_token()?;
        let key = journal.ensure_server_key(LOG_KEY_NAME, &candidate)?;
        Ok(LogLinks {
            base: config.server.public_url.clone(),
            key: key.into_bytes(),
            lifetime: config.server.log_links,
        })
    }

    /// The key in the link of deploy `id` that stops working at `expires`
    /// (Unix seconds): `{expires}-{mac}`.
    pub fn key_for(&self, id: i64, expires: u64) -> String {
        format!("{expires}-{}", self.mac(id, expires))
    }

    fn mac(&self, id: i64, expires: u64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("deploy-log:{id}:{expires}").as_bytes());
        let mut hex = hex::encode(mac.finalize().into_bytes());
        hex.truncate(LOG_LINK_KEY_CHARS);
        hex
    }

    /// Whether `presented` is a key of deploy `id` that has not expired
    /// at `now` (Unix seconds); the MAC is compared in constant time. Always
    /// false when links are off.
    pub fn verify_at(&self, id: i64, presented: &str, now: u64) -> bool {
        use subtle::ConstantTimeEq as _;
        if self.lifetime.is_none() {
            return false;
        }
        let Some((expires_text, mac)) = presented.split_once('-') else {
            return false;
        };
        // Only the canonical spelling (no sign, no leading zero): another
        // spelling of the same time is another link.
        let Some(expires) = expires_text
            .parse::<u64>()
            .ok()
            .filter(|e| e.to_string() == expires_text)
        else {
            return false;
        };
        let expected = self.mac(id, expires);
        let authentic =
            mac.len() == expected.len() && bool::from(expected.as_bytes().ct_eq(mac.as_bytes()));
        authentic && now < expires
    }

    /// [`LogLinks::verify_at`] now.
    pub fn verify(&self, id: i64, presented: &str) -> bool {
        self.verify_at(id, presented, unix_now())
    }

    /// Whether `url` is a link this server made (with its log key) to
    /// deploy `id`'s log, expired or not, under any public URL: its last
    /// two path segments are `{id}/{key}` after `logs`, and the key's MAC
    /// verifies. A link to another deploy, or one another server's key
    /// made, is not.
    pub fn names_deploy(&self, url: &str, id: i64) -> bool {
        let path = url.split(['?', '#']).next().unwrap_or_default();
        let mut segments = path.rsplit('/');
        let (Some(key), Some(deploy), Some("logs")) =
            (segments.next(), segments.next(), segments.next())
        else {
            return false;
        };
        if deploy != id.to_string() {
            return false;
        }
        // Any expiry: an expired link still names its deploy.
        let Some((expires, _)) = key.split_once('-') else {
            return false;
        };
        let Ok(expires) = expires.parse::<u64>() else {
            return false;
        };
        self.lifetime.is_some() && self.verify_at(id, key, expires.saturating_sub(1))
    }

    /// The public link to deploy `id`'s log, valid from now for the
    /// configured lifetime; `None` without a public URL or with links off.
    pub fn url(&self, id: i64) -> Option<String> {
        let lifetime = self.lifetime?;
        let base = self.base.as_ref()?;
        let expires = unix_now().saturating_add(lifetime.as_secs().max(1));
        Some(format!("{base}/logs/{id}/{}", self.key_for(id, expires)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(lifetime: Option<Duration>) -> LogLinks {
        LogLinks {
            base: Some("https://deploy.example.com".into()),
            key: b"k".to_vec(),
            lifetime,
        }
    }

    #[test]
    fn log_keys_verify_only_their_deploy_until_they_expire() {
        let links = links(Some(Duration::from_secs(60)));
        let k = links.key_for(7, 1_000);
        assert!(k.starts_with("1000-"));
        assert_eq!(k.len(), 5 + LOG_LINK_KEY_CHARS);
        assert!(links.verify_at(7, &k, 999));
        assert!(!links.verify_at(7, &k, 1_000), "expired");
        assert!(!links.verify_at(8, &k, 999), "another deploy");
        assert!(!links.verify_at(7, &k[1..], 999));
        // The expiry is covered by the MAC: a later one is a wrong key.
        let moved = k.replacen("1000-", "9000-", 1);
        assert!(!links.verify_at(7, &moved, 999));
        let padded = k.replacen("1000-", "01000-", 1);
        assert!(!links.verify_at(7, &padded, 999));
        let url = links.url(7).unwrap();
        assert!(
            url.starts_with("https://deploy.example.com/logs/7/"),
            "{url}"
        );
        let key = url.rsplit('/').next().unwrap();
        assert!(links.verify(7, key));
    }

    #[test]
    fn a_link_names_its_deploy_whatever_its_expiry_and_base() {
        let links = links(Some(Duration::from_secs(60)));
        let key = links.key_for(7, 1_000);
        assert!(links.names_deploy(&format!("https://deploy.example.com/logs/7/{key}"), 7));
        assert!(links.names_deploy(&format!("https://other.example/x/logs/7/{key}"), 7));
        assert!(!links.names_deploy(&format!("https://deploy.example.com/logs/7/{key}"), 8));
        assert!(!links.names_deploy(&format!("https://deploy.example.com/logs/8/{key}"), 8));
        assert!(!links.names_deploy(&format!("https://deploy.example.com/log/7/{key}"), 7));
        let forged = links.key_for(7, 1_000).replacen("1000-", "2000-", 1);
        assert!(!links.names_deploy(&format!("https://deploy.example.com/logs/7/{forged}"), 7));
        let other_key = LogLinks {
            key: b"another server".to_vec(),
            ..links.clone()
        };
        assert!(!other_key.names_deploy(&format!("https://deploy.example.com/logs/7/{key}"), 7));
        assert!(!links.names_deploy("", 7) && !links.names_deploy("7", 7));
    }

    #[test]
    fn links_off_issue_and_accept_nothing() {
        let on = links(Some(Duration::from_secs(60)));
        let off = links(None);
        assert_eq!(off.url(7), None);
        assert!(!off.verify_at(7, &on.key_for(7, 1_000), 999));
    }
}
