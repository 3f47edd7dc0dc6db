//! The reference web client (`examples/web`, built into `examples/web/dist` by `npm run build`
//! there and committed), compiled into the binary so `chat-server all` serves a working chat at
//! `/` with nothing else installed. Only `all` mounts it (`CHAT_WEB_CLIENT=false` turns it off);
//! the separate roles behind an Ingress never do.

use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../../../examples/web/dist/index.html");
const SCRIPT: &str = include_str!("../../../examples/web/dist/app.js");
const STYLE: &str = include_str!("../../../examples/web/dist/style.css");

/// The page may load only its own script and style, and talk only to its own origin; pictures
/// may also come from blob URLs (downloaded attachments) and the web (profile pictures).
const POLICY: &str = "default-src 'self'; img-src 'self' blob: data: http: https:; \
     object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Small, and changes with every release of the binary: always revalidated.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
}

/// `/`, `/app.js` and `/style.css`.
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { file("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { file("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/style.css",
            get(|| async { file("text/css; charset=utf-8", STYLE) }),
        )
}
