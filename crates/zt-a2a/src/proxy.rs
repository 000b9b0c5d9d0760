//! The proxy's routes: the rewritten agent card, and every JSON-RPC call decided, then
//! forwarded or refused.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::Semaphore;
use zt_contract::names::ResourceName;
use zt_contract::{Decision, DecisionRequest};
use zt_listener::{AllowedOrigins, BodyTimeout, Limits, PageGuard};

use crate::error::{plain_error, ProxyError, RpcRefusal};
use crate::limits::{MAX_CALLS_IN_FLIGHT, MAX_REQUEST_BYTES};
use crate::refusal::Refusal;
use crate::rpc::RpcCall;
use crate::upstream::{CardError, CARD_PATH};
use crate::{card, extended_card, ProxyConfig};

/// The proxy's state: what it was configured with, which web pages may call it, and the calls
/// being read or decided ([`MAX_CALLS_IN_FLIGHT`]).
struct Proxy {
    config: ProxyConfig,
    pages: PageGuard,
    calls: Semaphore,
}

/// The proxy as an axum router, taking calls from the web pages `pages` lets through ([`serve`]
/// builds it from its listener's address).
pub fn router(config: ProxyConfig, pages: PageGuard) -> Router {
    let state = Arc::new(Proxy {
        config,
        pages,
        calls: Semaphore::new(MAX_CALLS_IN_FLIGHT),
    });
    Router::new()
        .route(CARD_PATH, get(agent_card))
        // The 0.2/0.3 well-known name of the same card.
        .route("/.well-known/agent.json", get(agent_card))
        .fallback(call)
        .with_state(state)
}

/// Serves the proxy on `listener` until `shutdown` completes, under `limits` (connections,
/// header and body time; see [`zt_listener`]), taking calls from web pages of `allowed_origins`
/// besides this machine's own (see [`PageGuard`]). Past the connection cap, or past
/// [`MAX_CALLS_IN_FLIGHT`] calls being read or decided, a call gets a 503 JSON-RPC error.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ProxyConfig,
    limits: Limits,
    allowed_origins: AllowedOrigins,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let pages = PageGuard::new(listener.local_addr()?, allowed_origins);
    let apps = zt_listener::Apps {
        regular: router(config, pages),
        overflow: Router::new().fallback(|| async {
            RpcRefusal::from(ProxyError::TooManyConnections).into_response()
        }),
    };
    zt_listener::serve_connections(
        listener,
        zt_listener::PLAIN_HTTP,
        apps,
        limits,
        None,
        shutdown,
    )
    .await;
    Ok(())
}

async fn agent_card(State(proxy): State<Arc<Proxy>>) -> Response {
    match proxy.config.upstream.card().await {
        Ok(mut card) => {
            card::rewrite(&mut card, &proxy.config.public_url);
            axum::Json(card).into_response()
        }
        Err(e) => {
            let status = match e {
                CardError::Timeout => StatusCode::GATEWAY_TIMEOUT,
                CardError::Unavailable | CardError::Status(_) | CardError::Malformed => {
                    StatusCode::BAD_GATEWAY
                }
            };
            tracing::warn!(error = %e, "agent card unavailable");
            plain_error(status, &e.to_string())
        }
    }
}

async fn call(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    match decide_and_forward(&proxy, request).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

async fn decide_and_forward(proxy: &Proxy, request: Request) -> Result<Response, RpcRefusal> {
    let config = &proxy.config;
    let (parts, body) = request.into_parts();
    // The proxy calls with the agent's credential: a page must not borrow it.
    if let Some(why) = proxy.pages.refusal(&parts.headers) {
        return Err(ProxyError::ForeignPage(why).into());
    }
    let agent_path = match config
        .interface_paths
        .resolve(&config.upstream, parts.uri.path())
        .await
    {
        Ok(Some(path)) => path,
        Ok(None) => return Err(ProxyError::NoInterface(parts.uri.path().to_string()).into()),
        Err(e) => {
            tracing::warn!(error = %e, "agent card unavailable");
            return Err(ProxyError::CardUnavailable.into());
        }
    };
    // An interface of the agent, asked with another method than JSON-RPC's.
    if parts.method != Method::POST {
        return Err(ProxyError::MethodNotAllowed(parts.method).into());
    }
    if !zt_listener::is_utf8_json(&parts.headers) {
        return Err(ProxyError::UnsupportedContentType.into());
    }
    // Reading its body, a call holds at most the body limit, as the connection cap bounds; a
    // client trickling one in takes no place below. Once read, until decided, it holds its
    // parsed tree for a moment and waits for the control plane: only so many at once.
    let body = read_body(body, BodyTimeout::of(&parts.extensions)).await?;
    let Ok(permit) = proxy.calls.try_acquire() else {
        return Err(ProxyError::TooManyCalls.into());
    };
    let call = RpcCall::parse(&body)?;
    let action = format!("{}{}", config.action_prefix(), call.method.action);
    let resource = call.resource().to_string();
    // A name the control plane would refuse is the caller's error, not an outage.
    if let Err(e) = ResourceName::parse(&resource) {
        return Err(
            ProxyError::InvalidParams(format!("the resource the call names: {e}")).with_id(call.id),
        );
    }
    let decision_request = DecisionRequest {
        actor: config.actor.clone(),
        action: action.clone(),
        resource: resource.clone(),
        ..DecisionRequest::default()
    };
    let refusal = match config.control_plane.decide(&decision_request).await {
        Ok(decision) if decision.decision == Decision::Allow => None,
        Ok(decision) => Some(Refusal::Denied(Box::new(decision))),
        Err(e) => {
            tracing::warn!(%action, error = %e, "no valid decision: failing closed");
            Some(Refusal::ControlPlaneUnavailable {
                action: action.clone(),
                resource,
            })
        }
    };
    tracing::info!(
        %action,
        method = %call.method_name,
        protocol = call.method.generation.as_str(),
        forwarded = refusal.is_none(),
        "a2a call"
    );
    if let Some(refusal) = refusal {
        return Ok(refusal.answer(&call));
    }
    drop(permit);
    let response = config
        .upstream
        .forward(&agent_path, &parts.headers, body)
        .await
        .map_err(|e| e.with_id(call.id.clone()))?;
    if call.method.action != extended_card::EXTENDED_CARD_ACTION {
        return Ok(response);
    }
    extended_card::rewrite_response(response, &config.public_url)
        .await
        .map_err(|e| e.with_id(call.id.clone()))
}

/// The request body, at most [`MAX_REQUEST_BYTES`], received within `deadline` of its headers.
async fn read_body(body: Body, deadline: Duration) -> Result<Bytes, ProxyError> {
    let reading = Limited::new(body, MAX_REQUEST_BYTES).collect();
    match tokio::time::timeout(deadline, reading).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ProxyError::TooLarge),
        Ok(Err(_)) => Err(ProxyError::BodyUnreadable),
        Err(_) => Err(ProxyError::BodyTimeout(deadline)),
    }
}
