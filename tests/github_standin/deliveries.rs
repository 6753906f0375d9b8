//! A webhook's deliveries, as GitHub keeps them: the stand-in sends an
//! event to a webhook's URL like GitHub does ([`GithubStandin::send_hook_event`]),
//! records how the URL answered, lists the deliveries newest first with
//! `cursor` pagination through the `Link` header, and redelivers one on
//! request (with the same GUID, `redelivery: true`) after answering 202.

use super::*;

/// One delivery of a webhook (a `hook-delivery-item`, and what was sent).
#[derive(Debug, Clone)]
pub(super) struct Logged {
    hook_id: u64,
    id: u64,
    guid: String,
    delivered_at: String,
    redelivery: bool,
    duration: f64,
    status: String,
    status_code: u16,
    event: String,
    action: Option<String>,
    body: Vec<u8>,
}

impl Logged {
    /// The `hook-delivery-item` GitHub lists.
    fn item(&self) -> Value {
        json!({
            "id": self.id,
            "guid": self.guid,
            "delivered_at": self.delivered_at,
            "redelivery": self.redelivery,
            "duration": self.duration,
            "status": self.status,
            "status_code": self.status_code,
            "event": self.event,
            "action": self.action,
            "installation_id": null,
            "repository_id": null,
        })
    }
}

/// A redelivery to send once the 202 is written.
pub(super) struct Pending {
    url: String,
    secret: String,
    logged: Logged,
}

/// Sends `event` with `guid` and `body` to `url` and logs it as a delivery
/// of `hook_id` (`redelivery` when it is one): the status the URL
/// answered, or 0 and "failed to connect to host" when nothing answered.
fn send_and_log(state: &Mutex<State>, (url, secret): (&str, &str), mut logged: Logged) -> Logged {
    let started = std::time::Instant::now();
    let answer = forward::post_event(url, secret, (&logged.event, &logged.guid), &logged.body);
    logged.duration = started.elapsed().as_secs_f64();
    logged.delivered_at = now_rfc3339();
    (logged.status_code, logged.status) = match answer {
        Ok(code) if code != 0 => (code, "OK".to_string()),
        Ok(_) => (0, "Invalid HTTP Response".to_string()),
        Err(_) => (0, "failed to connect to host".to_string()),
    };
    if !(200..300).contains(&logged.status_code) && logged.status_code != 0 {
        logged.status = format!("Invalid HTTP Response: {}", logged.status_code);
    }
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    logged.id = st.next_hook_delivery_id;
    st.next_hook_delivery_id += 1;
    st.hook_deliveries.push(logged.clone());
    logged
}

impl GithubStandin {
    /// Sends `event` (`payload`, its `action` read from it) to webhook
    /// `hook_id`'s URL, signed with its secret, with a fresh GUID, as
    /// GitHub delivers an event; logs the delivery and returns its GUID
    /// and the status the URL answered (0: nothing answered).
    pub fn send_hook_event(&self, hook_id: u64, event: &str, payload: &Value) -> (String, u16) {
        let (url, secret) = {
            let st = self.lock();
            let hook = st
                .hooks
                .iter()
                .find(|h| h.id == hook_id)
                .unwrap_or_else(|| panic!("no webhook {hook_id}"));
            (
                hook.config["url"].as_str().unwrap().to_string(),
                hook.secret.clone().unwrap_or_default(),
            )
        };
        let logged = Logged {
            hook_id,
            id: 0,
            guid: forward::delivery_id(),
            delivered_at: String::new(),
            redelivery: false,
            duration: 0.0,
            status: String::new(),
            status_code: 0,
            event: event.to_string(),
            action: payload["action"].as_str().map(str::to_string),
            body: serde_json::to_vec(payload).unwrap(),
        };
        let logged = send_and_log(&self.state, (&url, &secret), logged);
        (logged.guid, logged.status_code)
    }

    /// Webhook `hook_id`'s deliveries, oldest first, as listed items.
    pub fn hook_delivery_log(&self, hook_id: u64) -> Vec<Value> {
        self.lock()
            .hook_deliveries
            .iter()
            .filter(|d| d.hook_id == hook_id)
            .map(Logged::item)
            .collect()
    }
}

/// Sends each redelivery the stand-in accepted, on its own thread, as
/// GitHub does after answering 202.
pub(super) fn send_pending(state: &Arc<Mutex<State>>, pending: Vec<Pending>) {
    for p in pending {
        let state = state.clone();
        std::thread::spawn(move || {
            send_and_log(&state, (&p.url, &p.secret), p.logged);
        });
    }
}

/// The `id` path segment as a number.
fn id_of(segment: &str) -> Option<u64> {
    segment.parse().ok()
}

/// `GET /repos/{owner}/{repo}/hooks/{hook_id}/deliveries`: newest first,
/// `per_page` at a time (GitHub's default when absent, capped at the
/// page cap), from the `cursor` (the id of the first delivery of the
/// page) on; a `Link` header with `next` when older ones remain.
pub(super) fn list(st: &State, repo: &str, hook: &str, query: &str) -> Answer {
    let Some(hook_id) = id_of(hook).filter(|id| st.hooks.iter().any(|h| h.id == *id)) else {
        return error(404, "Not Found", DOCS_URL);
    };
    let mut per_page = DEFAULT_PER_PAGE.min(st.page_cap);
    let mut cursor: Option<u64> = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "per_page" => {
                per_page = v
                    .parse::<usize>()
                    .map_or(per_page, |n| n.clamp(1, st.page_cap))
            }
            "cursor" => match v.parse() {
                Ok(c) => cursor = Some(c),
                Err(_) => return error(400, "Bad Request", DOCS_URL),
            },
            _ => {}
        }
    }
    let mut newest_first: Vec<&Logged> = st
        .hook_deliveries
        .iter()
        .filter(|d| d.hook_id == hook_id && cursor.is_none_or(|c| d.id <= c))
        .collect();
    newest_first.sort_by_key(|d| std::cmp::Reverse(d.id));
    let more = newest_first.get(per_page).map(|d| d.id);
    let items: Vec<Value> = newest_first
        .iter()
        .take(per_page)
        .map(|d| d.item())
        .collect();
    let mut answer = Answer::json(200, Value::Array(items));
    if let Some(next) = more {
        answer.headers.push((
            "link".into(),
            format!(
                "<{}/repos/{repo}/hooks/{hook_id}/deliveries?per_page={per_page}&cursor={next}>; rel=\"next\"",
                st.base
            ),
        ));
    }
    answer
}

/// `GET .../hooks/{hook_id}/deliveries/{delivery_id}`: the delivery with
/// what was sent and how it was answered (the stand-in keeps the body,
/// not the answer's headers).
pub(super) fn get(st: &State, hook: &str, delivery: &str) -> Answer {
    let (Some(hook_id), Some(id)) = (id_of(hook), id_of(delivery)) else {
        return error(404, "Not Found", DOCS_URL);
    };
    let Some(d) = st
        .hook_deliveries
        .iter()
        .find(|d| d.hook_id == hook_id && d.id == id)
    else {
        return error(404, "Not Found", DOCS_URL);
    };
    let mut object = d.item();
    object["request"] = json!({
        "headers": {"X-GitHub-Event": d.event, "X-GitHub-Delivery": d.guid},
        "payload": serde_json::from_slice::<Value>(&d.body).unwrap_or(Value::Null),
    });
    object["response"] = json!({"headers": null, "payload": null});
    Answer::json(200, object)
}

/// `POST .../hooks/{hook_id}/deliveries/{delivery_id}/attempts`: 202, and
/// the delivery is sent again (same GUID, `redelivery: true`) once the
/// answer is written.
pub(super) fn redeliver(st: &mut State, hook: &str, delivery: &str) -> Answer {
    let (Some(hook_id), Some(id)) = (id_of(hook), id_of(delivery)) else {
        return error(404, "Not Found", DOCS_URL);
    };
    let Some(original) = st
        .hook_deliveries
        .iter()
        .find(|d| d.hook_id == hook_id && d.id == id)
        .cloned()
    else {
        return error(404, "Not Found", DOCS_URL);
    };
    let Some(h) = st.hooks.iter().find(|h| h.id == hook_id) else {
        return error(404, "Not Found", DOCS_URL);
    };
    let pending = Pending {
        url: h.config["url"].as_str().unwrap_or_default().to_string(),
        secret: h.secret.clone().unwrap_or_default(),
        logged: Logged {
            redelivery: true,
            ..original
        },
    };
    st.pending_redeliveries.push(pending);
    Answer::json(202, json!({}))
}
