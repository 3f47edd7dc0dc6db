//! The HTTP middleware stack every role shares, in one place: request ids, structured request
//! logs and metrics, panic catching, sensitive-header redaction, body limits, JSON error shapes
//! for framework rejections, and graceful shutdown. [`ApiError`] is where an [`Error`] becomes an
//! HTTP response, and [`health`] serves the probes and metrics.

mod error;
pub mod health;

pub use error::{ApiError, ApiResult};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tracing::Instrument;

use chat_domain::error::RequestError;
use chat_domain::rpc::CallContext;
use chat_domain::{Error, ErrorCode};
use chat_ports::metrics::{metrics, HttpLabels};

/// `x-request-id`: set on every request (kept if the client sent one) and echoed on the response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-correlation-id`: ties together the work of several requests; defaults to the request id.
pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// Wraps a role's router with the shared middleware. `max_body_bytes` bounds request bodies read
/// by extractors (larger bodies get 413 with the error shape).
pub fn with_common_layers(router: Router, max_body_bytes: usize) -> Router {
    router
        .fallback(|| async { ApiError(RequestError::NoSuchRoute.into()) })
        .method_not_allowed_fallback(|| async {
            ApiError(Error::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            ))
        })
        .layer(middleware::from_fn(observe))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError(Error::internal("handler panicked")).into_response()
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
}

fn header_str(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(String::from)
}

const QUIET_ROUTES: [&str; 4] = ["/livez", "/readyz", "/health", "/metrics"];

/// One span per request (with its request and correlation ids), one log line per response, and
/// the request metrics.
async fn observe(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let request_id = header_str(request.headers(), &REQUEST_ID).unwrap_or_default();
    let correlation_id =
        header_str(request.headers(), &CORRELATION_ID).unwrap_or_else(|| request_id.clone());
    let span = tracing::info_span!("request", %method, %route, %request_id, %correlation_id);
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = start.elapsed();
    let labels = HttpLabels {
        method,
        route: route.clone(),
        status,
    };
    metrics().http_requests.get_or_create(&labels).inc();
    metrics()
        .http_duration
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    if status >= 500 || !QUIET_ROUTES.contains(&route.as_str()) {
        span.in_scope(|| {
            tracing::info!(
                status,
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                "request completed"
            )
        });
    }
    response
}

/// The ids of the request, for logs and for the RPC calls it makes: the request's
/// `x-request-id` (generated if absent) and `x-correlation-id` (defaults to the request id).
pub struct Ctx(pub CallContext);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let request_id = header_str(&parts.headers, &REQUEST_ID)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let correlation_id =
            header_str(&parts.headers, &CORRELATION_ID).unwrap_or_else(|| request_id.clone());
        Ok(Ctx(CallContext {
            request_id,
            correlation_id,
        }))
    }
}

/// A JSON body extractor whose rejections use the error shape: malformed JSON and wrong types
/// give 400, a wrong content type 415, an oversized body 413.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection).into()),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> Error {
    use axum::http::StatusCode;
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Error::new(
            ErrorCode::PayloadTooLarge,
            "request body is larger than allowed",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::new(
            ErrorCode::UnsupportedMediaType,
            "expected a JSON body with Content-Type: application/json",
        ),
        _ => match rejection {
            JsonRejection::JsonDataError(e) => Error::bad_request(format!(
                "invalid request body: {}",
                serde_detail(&e.body_text())
            )),
            JsonRejection::JsonSyntaxError(_) => {
                Error::bad_request("request body is not valid JSON")
            }
            other if stalled(&other) => RequestError::BodyStalled.into(),
            other => Error::bad_request(format!("could not read request body: {}", other.status())),
        },
    }
}

/// Whether reading a body failed because the client stopped sending it
/// ([`ServeLimits::body_idle`]).
pub fn stalled(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Keeps the useful part of a serde message ("missing field `email`") and drops framework
/// prefixes and line/column noise.
fn serde_detail(text: &str) -> String {
    let text = text.rsplit(": ").next().unwrap_or(text);
    match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// A query-string extractor whose rejections use the error shape (400).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(Error::bad_request(
                format!("invalid query string: {}", serde_detail(&e.body_text())),
            )
            .into()),
            Err(_) => Err(Error::bad_request("invalid query string").into()),
        }
    }
}

/// Binds the HTTP listener, with an error that says which address failed.
pub async fn bind(address: std::net::IpAddr, port: u16) -> std::io::Result<TcpListener> {
    let addr = SocketAddr::new(address, port);
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Limits on how slowly clients may send requests, and on how many are served at once.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// From the connection's opening (or the end of the previous request) to the end of the
    /// request's headers; a client slower than this is disconnected (slow-header attacks). An
    /// idle keep-alive connection is closed after it too.
    pub headers: Duration,
    /// The longest pause between two pieces of a request's body; then the request is answered
    /// 408 and the connection closed (slow-body attacks). A slow but steady upload goes on.
    pub body_idle: Duration,
    /// Requests served at once; the next is answered `503 overloaded` with `Retry-After` at
    /// once, rather than queued behind work whose callers will mostly have given up. Probes,
    /// metrics and Socket.IO (whose long-polling requests wait by design) are not counted.
    pub max_in_flight: usize,
}

/// Whether a request is left out of [`ServeLimits::max_in_flight`].
fn uncounted(path: &str) -> bool {
    QUIET_ROUTES.contains(&path) || path.starts_with("/socket.io")
}

/// Serves `app` until `shutdown` is cancelled, then stops accepting connections and lets
/// in-flight requests finish.
///
/// Connections get `TCP_NODELAY`: a Socket.IO acknowledgement is one small WebSocket frame, and
/// with Nagle's algorithm it waited for the client's delayed ACK (about 40 ms on Linux) before
/// leaving. The loop is hyper's own rather than `axum::serve`, which cannot time out a client
/// that never finishes its headers.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;
    // `with_state` turns every handler into a route once, as `axum::serve` does: a fallback
    // left a handler is made into a route on every request, and each time the layers around it
    // are built again (the Socket.IO layer would start a new engine, forgetting every session).
    // The body timeout goes around the whole router rather than through `Router::layer`, which
    // wraps each route apart.
    let app = tower::Layer::layer(
        &tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body_idle),
        app.with_state::<()>(()),
    );
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.headers);
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight));
    let builder = builder.http1_only();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
        let (app, in_flight) = (app.clone(), in_flight.clone());
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                let (app, in_flight) = (app.clone(), in_flight.clone());
                async move {
                    let permit = if uncounted(request.uri().path()) {
                        None
                    } else if let Ok(permit) = in_flight.try_acquire_owned() {
                        Some(permit)
                    } else {
                        chat_ports::metrics::shed("http");
                        let busy = Error::from(RequestError::Overloaded).retry_after(1);
                        return Ok(ApiError(busy).into_response());
                    };
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    let response = app.oneshot(request).await;
                    drop(permit);
                    response
                }
            },
        );
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_details_drop_framework_noise() {
        let text = "Failed to deserialize the JSON body into the target type: missing field `email` at line 1 column 2";
        assert_eq!(serde_detail(text), "missing field `email`");
    }
}
