//! A deploy's page, and its log followed live (server-sent events).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::pages::{self};
use super::Need;
use super::{blocking, error_page, html, require, Peer, Signed, UiState};
use axum::response::sse::{Event, KeepAlive, Sse};

use super::view::{self, DeployView};
use super::{
    FOLLOW_POLL, FOLLOW_RECHECK, MAX_FOLLOW, MAX_FOLLOW_EVENT_BYTES, MAX_LOG_SHOWN_BYTES,
    MAX_NOTIFICATIONS_SHOWN,
};

/// Looks at a followed log that may fail in a row (the journal is down, the
/// offset asked for is past its end) before the stream ends.
const MAX_FOLLOW_FAILURES: u32 = 10;
use crate::deploy_log::LogSource;
use crate::journal::{DeployState, EventRefs};

pub(super) async fn deploy_page(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let signed = match require(&state, &headers, peer, Need::Page).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let missing = |signed: &Signed| {
        error_page(
            StatusCode::NOT_FOUND,
            signed.chrome(),
            "No such deploy",
            "The journal has no deploy with that number.",
        )
    };
    let Ok(id) = id.parse::<i64>() else {
        return missing(&signed);
    };
    let journal = state.clone();
    let state_dir = state.state_dir();
    let found = blocking(move || {
        let journal = journal.journal();
        let Some(deploy) = journal.deploy(id)? else {
            return Ok(None);
        };
        // Its GitHub deployment: the one whose event queued it, or the one
        // requested for it on the push.
        let refs = EventRefs::of(&deploy.queued.event_json);
        let request = match refs.github_deployment_id {
            Some(_) => None,
            None => match journal.request_of_deploy(id)? {
                Some(r) => Some(r),
                // A push whose request failed, deployed directly.
                None => journal.request_fallen_back_to(id)?,
            },
        };
        let github = (
            refs.github_deployment_id,
            request,
            journal.reports(id)?,
            journal.notifications_of_deploy(id, MAX_NOTIFICATIONS_SHOWN)?,
        );
        // Its size first, then what it held up to there: the live log
        // goes on from exactly that byte, so nothing shows twice or never.
        let Some(source) = LogSource::of(journal, &state_dir, &deploy)? else {
            return Ok(Some((deploy, github, None, 0)));
        };
        let (start, size, text) = match &source {
            // The journal's copy is text: its tail starts on a character
            // boundary (the database reads no offset inside a character).
            LogSource::Journal => {
                let stored = journal.deploy_log(id)?.map(|s| s.text).unwrap_or_default();
                let wanted = stored.len().saturating_sub(MAX_LOG_SHOWN_BYTES as usize);
                let start = stored.ceil_char_boundary(wanted);
                (
                    start as u64,
                    stored.len() as u64,
                    stored[start..].to_owned(),
                )
            }
            LogSource::File(path) => {
                let size = std::fs::metadata(path).map_or(0, |m| m.len());
                let start = size.saturating_sub(MAX_LOG_SHOWN_BYTES);
                let bytes = source.read_from(journal, id, start, size - start)?;
                (
                    start,
                    start + bytes.len() as u64,
                    String::from_utf8_lossy(&bytes).into_owned(),
                )
            }
        };
        let cut = if start > 0 {
            crate::deploy_log::EARLIER_OUTPUT_CUT
        } else {
            ""
        };
        let text = format!("{cut}{text}");
        Ok(Some((deploy, github, Some(text), size)))
    })
    .await;
    let (deploy, (deployment_id, request, reports, notifications), log, shown) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return missing(&signed),
        Err(response) => return response,
    };
    let stack = signed.config.stack(&deploy.queued.stack);
    html(
        StatusCode::OK,
        pages::Deploy {
            chrome: signed.chrome(),
            stack: deploy.queued.stack.clone(),
            d: DeployView::of_stack(&deploy, stack),
            github: view::github_view(stack, deployment_id, request.as_ref(), reports),
            notifications: view::notifications_view(&notifications),
            exit_code: deploy.exit_code,
            can_cancel: signed.user.role >= crate::config::Role::Operator
                && !deploy.state.is_final(),
            follow: !deploy.state.is_final(),
            shown,
            log,
        },
    )
}

/// Where a followed log is.
struct Following {
    state: Arc<UiState>,
    id: i64,
    offset: u64,
    source: Option<LogSource>,
    last_state: Option<DeployState>,
    pending: std::collections::VecDeque<Event>,
    ended: bool,
    /// Look again at once (the first look, or the last read a full chunk).
    again: bool,
    /// Looks that failed in a row.
    failures: u32,
    until: tokio::time::Instant,
    /// The request's headers and client, to check its session again.
    headers: HeaderMap,
    peer: Option<std::net::IpAddr>,
    /// When the session was last found signed in.
    checked: tokio::time::Instant,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// What one look at a followed deploy found.
struct Look {
    state: DeployState,
    source: Option<LogSource>,
    bytes: Vec<u8>,
}

/// The live log of deploy `id`, as server-sent events: `log` (the text
/// written since; the event id is the byte offset after it, which a
/// reconnecting browser sends back as `Last-Event-ID` to resume there),
/// `state` (each new state) and `end` (the deploy ended and all of its log
/// was sent). Starts at `?from=` (the deploy page says where its log ended).
pub(super) async fn follow_log(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = require(&state, &headers, peer, Need::Page).await {
        return response;
    }
    let Ok(id) = id.parse::<i64>() else {
        return (StatusCode::NOT_FOUND, "no such deploy\n").into_response();
    };
    let Ok(slot) = state.followers.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            "too many logs followed at once\n",
        )
            .into_response();
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let offset = resume
        .or_else(|| query.get("from").and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    let following = Following {
        state,
        id,
        offset,
        source: None,
        last_state: None,
        pending: Default::default(),
        ended: false,
        again: true,
        failures: 0,
        until: tokio::time::Instant::now() + MAX_FOLLOW,
        headers,
        peer,
        checked: tokio::time::Instant::now(),
        _slot: slot,
    };
    let events = futures_util::stream::unfold(following, |mut f| async move {
        loop {
            if let Some(event) = f.pending.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(event), f));
            }
            let stopping = f.state.stopping.load(std::sync::atomic::Ordering::Relaxed);
            if f.ended || stopping || tokio::time::Instant::now() >= f.until {
                return None;
            }
            if !f.again {
                tokio::time::sleep(FOLLOW_POLL).await;
            }
            if f.checked.elapsed() >= FOLLOW_RECHECK {
                if require(&f.state, &f.headers, f.peer, Need::Page)
                    .await
                    .is_err()
                {
                    return None;
                }
                f.checked = tokio::time::Instant::now();
            }
            f.look().await;
        }
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    // A reverse proxy (nginx) would hold the events back otherwise.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

impl Following {
    /// Reads the deploy's state and what its log gained, and queues the
    /// events that say so.
    async fn look(&mut self) {
        let (state, id, offset, source) = (
            self.state.clone(),
            self.id,
            self.offset,
            self.source.clone(),
        );
        let looked = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<Look>> {
            let journal = state.journal();
            let state_dir = state.state_dir();
            let Some(deploy) = journal.deploy(id)? else {
                return Ok(None);
            };
            let source = match source {
                Some(source) => Some(source),
                None => LogSource::of(journal, &state_dir, &deploy)?,
            };
            let bytes = match &source {
                Some(source) => source.read_from(journal, id, offset, MAX_FOLLOW_EVENT_BYTES)?,
                None => Vec::new(),
            };
            Ok(Some(Look {
                state: deploy.state,
                source,
                bytes,
            }))
        })
        .await;
        let look = match looked {
            Ok(Ok(Some(look))) => look,
            Ok(Ok(None)) => {
                self.pending
                    .push_back(Event::default().event("end").data("no such deploy"));
                self.ended = true;
                return;
            }
            // The journal failed: try again at the next look.
            Ok(Err(e)) => {
                self.again = false;
                self.failures += 1;
                if self.failures == 1 {
                    tracing::warn!(deploy = self.id, error = %e, "dashboard: cannot read a followed log");
                }
                if self.failures >= MAX_FOLLOW_FAILURES {
                    self.pending
                        .push_back(Event::default().event("end").data("unreadable"));
                    self.ended = true;
                }
                return;
            }
            Err(_) => {
                self.again = false;
                return;
            }
        };
        self.failures = 0;
        self.again = look.bytes.len() as u64 >= MAX_FOLLOW_EVENT_BYTES;
        self.source = self.source.take().or(look.source);
        if !look.bytes.is_empty() {
            // Whole characters only: an incomplete one at the end waits
            // for the rest of its bytes.
            let keep = match std::str::from_utf8(&look.bytes) {
                Ok(_) => look.bytes.len(),
                Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => e.valid_up_to(),
                Err(_) => look.bytes.len(),
            };
            self.offset += keep as u64;
            // An event's data is lines: a CR LF is one line break, and a
            // lone CR (a progress bar's) becomes one.
            // Reordering characters shown escaped, as on the page.
            let text = String::from_utf8_lossy(&look.bytes[..keep])
                .replace("\r\n", "\n")
                .replace('\r', "\n");
            let text = crate::text::without_reordering(&text).into_owned();
            self.pending.push_back(
                Event::default()
                    .event("log")
                    .id(self.offset.to_string())
                    .data(text),
            );
        }
        if self.last_state != Some(look.state) {
            self.last_state = Some(look.state);
            self.pending
                .push_back(Event::default().event("state").data(look.state.as_str()));
        }
        // Ended, and the last read was not a full chunk: all of it is sent.
        if look.state.is_final() && !self.again {
            self.pending
                .push_back(Event::default().event("end").data(look.state.as_str()));
            self.ended = true;
        }
    }
}
