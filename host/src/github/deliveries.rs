//! A repository webhook's deliveries, as catch-up reads them: one page of
//! the list at a time (newest first, `cursor` pagination through the `Link`
//! header), and a request to redeliver one.
//!
//! GitHub's REST description: `GET /repos/{owner}/{repo}/hooks/{hook_id}/deliveries`
//! ("List deliveries for a repository webhook", items `hook-delivery-item`)
//! and `POST .../deliveries/{delivery_id}/attempts` ("Redeliver a delivery
//! for a repository webhook", 202).

use serde::Deserialize;
use serde_json::Value;

use super::{kind_of, next_link, ApiError, GithubClient, HOOKS_HINT, LIST_PAGE_SIZE};

/// One delivery as GitHub lists it (the fields catch-up reads of a
/// `hook-delivery-item`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct HookDelivery {
    /// GitHub's id of this delivery (or redelivery): increasing.
    pub id: u64,
    /// The GUID sent as `X-GitHub-Delivery`, which a redelivery keeps.
    pub guid: String,
    /// When it was delivered (RFC 3339).
    pub delivered_at: String,
    /// Whether it is a redelivery.
    pub redelivery: bool,
    /// The HTTP status the hook URL answered (0 when it did not answer).
    pub status_code: i64,
    /// The event, e.g. `push`.
    pub event: String,
    /// The event's action, when it has one.
    pub action: Option<String>,
}

impl HookDelivery {
    /// Whether the hook URL answered it with a 2xx status.
    pub fn answered_ok(&self) -> bool {
        (200..300).contains(&self.status_code)
    }

    /// `delivered_at` in ms since the epoch, when it parses.
    pub fn delivered_at_ms(&self) -> Option<i64> {
        let t = humantime::parse_rfc3339_weak(&self.delivered_at).ok()?;
        let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
        i64::try_from(d.as_millis()).ok()
    }
}

/// One page of a webhook's deliveries, and where the next one is.
#[derive(Debug)]
pub struct DeliveryPage {
    /// Its deliveries, newest first, as GitHub lists them.
    pub deliveries: Vec<HookDelivery>,
    /// The next (older) page's URL, from `Link: rel="next"`.
    pub next: Option<String>,
}

impl GithubClient {
    /// The page of webhook `hook_id`'s deliveries at `page` (`None`: the
    /// newest, [`LIST_PAGE_SIZE`] a page). A `next` link that leaves the
    /// API's origin is refused: the token goes with every request.
    pub async fn hook_deliveries(
        &self,
        hook_id: u64,
        page: Option<String>,
    ) -> Result<DeliveryPage, ApiError> {
        let url = match page {
            Some(url) => {
                if !self.same_origin(&url) {
                    return Err(ApiError::BadAnswer(format!(
                        "the next page of deliveries is not on {}",
                        self.api_url
                    )));
                }
                url
            }
            None => self.url(&format!(
                "/hooks/{hook_id}/deliveries?per_page={LIST_PAGE_SIZE}"
            )),
        };
        let a = self
            .with_hint(HOOKS_HINT)
            .send(reqwest::Method::GET, url, None)
            .await?;
        let items = match a.body {
            Value::Array(items) => items,
            other => {
                return Err(ApiError::BadAnswer(format!(
                    "the deliveries list is not an array: {}",
                    kind_of(&other)
                )))
            }
        };
        let deliveries = items
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<Vec<HookDelivery>, _>>()
            .map_err(|e| ApiError::BadAnswer(format!("a listed delivery: {e}")))?;
        Ok(DeliveryPage {
            deliveries,
            next: a.link.as_deref().and_then(next_link),
        })
    }

    /// Asks GitHub to deliver `delivery_id` of webhook `hook_id` again
    /// (202: accepted; the redelivery keeps the delivery's GUID). Tried
    /// once: a request whose answer was lost may have been taken, and a
    /// second would redeliver twice; the next look decides.
    pub async fn redeliver(&self, hook_id: u64, delivery_id: u64) -> Result<(), ApiError> {
        let url = self.url(&format!(
            "/hooks/{hook_id}/deliveries/{delivery_id}/attempts"
        ));
        let once = GithubClient {
            max_attempts: 1,
            ..self.with_hint(HOOKS_HINT)
        };
        match once.send(reqwest::Method::POST, url, None).await? {
            a if a.status == 202 => Ok(()),
            a => Err(ApiError::BadAnswer(format!(
                "status {} to a redelivery request",
                a.status
            ))),
        }
    }

    /// Whether `url` has the API's scheme, host and port.
    fn same_origin(&self, url: &str) -> bool {
        match (reqwest::Url::parse(url), reqwest::Url::parse(&self.api_url)) {
            (Ok(a), Ok(b)) => a.origin() == b.origin(),
            _ => false,
        }
    }

    fn with_hint(&self, hint: &'static str) -> GithubClient {
        GithubClient {
            permission_hint: hint,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(json: Value) -> HookDelivery {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_listed_delivery_reads_as_github_documents_it() {
        // The example of `hook-delivery-item` in GitHub's REST description.
        let d = item(serde_json::json!({
            "id": 42, "guid": "58474f00-b361-11eb-836d-0e4f3503ccbe",
            "delivered_at": "2019-06-03T00:57:16Z", "redelivery": false,
            "duration": 0.27, "status": "OK", "status_code": 200,
            "event": "issues", "action": "opened", "installation_id": 123,
            "repository_id": 123, "throttled_at": "2019-06-03T00:57:16Z"
        }));
        assert_eq!(d.id, 42);
        assert!(d.answered_ok());
        assert_eq!(d.delivered_at_ms(), Some(1_559_523_436_000));
        let failed = item(serde_json::json!({
            "id": 43, "guid": "g", "delivered_at": "2019-06-03T00:57:16Z",
            "redelivery": true, "duration": 10.0, "status": "failed to connect",
            "status_code": 0, "event": "push", "action": null,
            "installation_id": null, "repository_id": null
        }));
        assert!(!failed.answered_ok());
        assert_eq!(failed.action, None);
    }
}
