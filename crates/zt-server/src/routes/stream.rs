//! `GET /audit/stream`: the audit log as server-sent events, for SIEMs. Sends the committed
//! records from `from` (default 0), then follows new commits as they happen, each as
//! `id: <seq>`, `event: record`, `data: <one JSON line>` in the requested `format` (`jsonl`,
//! the stored line, or `ocsf`). Resumable: a `Last-Event-ID` header (what an `EventSource`
//! sends when it reconnects) wins over `from`, and the stream restarts at that id + 1, so a
//! reconnecting client gets exactly the records it has not seen. Admin-only, like
//! `/audit/records`.
//!
//! Each client costs one page of records at most: the stream reads a page only when the
//! client has taken the previous one (reads go through the ledger's reader pool on the
//! blocking pool, never through the writer), so a slow client slows only itself. New commits
//! are noticed by looking at the committed tree size every [`POLL`]. Streams end when the
//! server starts draining (`AppState::draining`), so they never hold up the drain.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use zt_siem::Format;

use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::state::SharedState;

/// Records read from the store at a time, per client.
const PAGE: usize = 256;
/// How often a client that has seen every committed record looks for new ones.
pub(crate) const POLL: Duration = Duration::from_millis(200);
/// Interval of keep-alive comments on an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The stream router.
pub(crate) fn router() -> Router<SharedState> {
    Router::new().route("/audit/stream", get(stream))
}

/// Where to start and what to send.
#[derive(Debug, PartialEq, Eq)]
struct StreamParams {
    from: u64,
    format: Format,
}

/// Parses `from=SEQ&format=jsonl|ocsf` strictly, then lets `Last-Event-ID` override `from`.
fn stream_params(query: Option<&str>, headers: &HeaderMap) -> Result<StreamParams, ApiError> {
    let mut params = StreamParams {
        from: 0,
        format: Format::Jsonl,
    };
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "from" => {
                params.from = value.parse().map_err(|_| {
                    ApiError::InvalidRequest("`from` must be a non-negative integer".into())
                })?
            }
            "format" => {
                params.format = value
                    .parse()
                    .map_err(|e: zt_siem::SiemError| ApiError::InvalidRequest(e.to_string()))?
            }
            other => {
                return Err(ApiError::InvalidRequest(format!(
                    "unknown query parameter `{}`",
                    other.chars().take(40).collect::<String>()
                )))
            }
        }
    }
    if let Some(last) = headers.get("last-event-id") {
        let bad = || ApiError::InvalidRequest("`Last-Event-ID` must be a record seq".into());
        let last = last.to_str().map_err(|_| bad())?.trim();
        if !last.is_empty() {
            let seen: u64 = last.parse().map_err(|_| bad())?;
            params.from = seen.checked_add(1).ok_or_else(bad)?;
        }
    }
    Ok(params)
}

async fn stream(
    State(state): State<SharedState>,
    caller: AdminCaller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = stream_params(query.as_deref(), &headers)?;
    let cursor = Cursor {
        caller,
        stopping: stop_signal(&state),
        state,
        next: params.from,
        format: params.format,
        page: VecDeque::new(),
        done: false,
    };
    let events = futures_util::stream::unfold(cursor, Cursor::next_event);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// One client's position in the log.
struct Cursor {
    state: SharedState,
    /// Asked again before every page: a removed admin's stream ends.
    caller: AdminCaller,
    /// The seq of the next record to send.
    next: u64,
    format: Format,
    /// Records read but not sent yet (at most [`PAGE`]).
    page: VecDeque<String>,
    stopping: Pin<Box<dyn Future<Output = ()> + Send>>,
    done: bool,
}

impl Cursor {
    /// The next event, waiting for a commit if the client has seen them all; `None` ends the
    /// stream (shutdown, or after an `error` event).
    async fn next_event(mut self) -> Option<(Result<Event, Infallible>, Cursor)> {
        loop {
            if self.done {
                return None;
            }
            if let Some(line) = self.page.pop_front() {
                let seq = self.next;
                self.next += 1;
                let event = match self.format.render(&line) {
                    Ok(data) => Event::default()
                        .id(seq.to_string())
                        .event("record")
                        .data(data),
                    Err(e) => {
                        tracing::error!(seq, error = %e, "audit record cannot be exported");
                        self.fail(&format!("record {seq} cannot be exported"))
                    }
                };
                return Some((Ok(event), self));
            }
            let committed = self.state.ledger.tree_size();
            if self.next < committed {
                if !self.caller.still_admin(&self.state) {
                    let event = self.fail("the admin credential of this stream is no longer valid");
                    return Some((Ok(event), self));
                }
                let want = usize::try_from(committed - self.next).unwrap_or(PAGE);
                let (ledger, from) = (self.state.ledger.clone(), self.next);
                let read = tokio::task::spawn_blocking(move || ledger.read(from, want.min(PAGE)));
                match read.await {
                    Ok(Ok(lines)) if !lines.is_empty() => {
                        self.page = lines.into();
                        continue;
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "reading audit records for a stream failed");
                        let event = self.fail("reading audit records failed");
                        return Some((Ok(event), self));
                    }
                    Err(_) => {
                        let event = self.fail("internal error");
                        return Some((Ok(event), self));
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = &mut self.stopping => return None,
            }
        }
    }

    /// An `error` event, after which the stream ends; the client may resume from its last id.
    fn fail(&mut self, message: &str) -> Event {
        self.done = true;
        let body = zt_contract::ErrorBody {
            ok: false,
            error: message.to_string(),
        };
        Event::default()
            .event("error")
            .data(serde_json::to_string(&body).unwrap_or_default())
    }
}

/// Resolves when the server starts draining, so that the stream ends and the graceful drain
/// (which waits for every response to finish) can complete.
fn stop_signal(state: &SharedState) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let mut draining = state.draining.subscribe();
    Box::pin(async move {
        // An error means the state is gone: the server is stopping too.
        let _ = draining.wait_for(|draining| *draining).await;
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn last_event_id(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn params_are_strict_and_last_event_id_wins() {
        let none = HeaderMap::new();
        let p = |q: &str, h: &HeaderMap| stream_params(Some(q), h);
        assert_eq!(
            stream_params(None, &none).unwrap(),
            StreamParams {
                from: 0,
                format: Format::Jsonl
            }
        );
        assert_eq!(p("from=5&format=ocsf", &none).unwrap().from, 5);
        assert_eq!(p("format=ocsf", &none).unwrap().format, Format::Ocsf);
        assert_eq!(p("from=5", &last_event_id("41")).unwrap().from, 42);
        assert_eq!(p("", &last_event_id("")).unwrap().from, 0);
        for bad in ["from=-1", "from=x", "format=xml", "limit=3", "evil"] {
            assert!(p(bad, &none).is_err(), "{bad}");
        }
        assert!(p("", &last_event_id("abc")).is_err());
        assert!(p("", &last_event_id("18446744073709551615")).is_err());
    }
}
