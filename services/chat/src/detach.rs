//! Socket.IO requests detached from the connection's read buffer.
//!
//! hyper parses a request's URI and header values as slices of the connection's read buffer
//! (8–16 KiB), the router keeps a clone of the URI in the request's extensions (`OriginalUri`),
//! and Socket.IO keeps each socket's request parts for the socket's lifetime. A slice keeps its
//! whole buffer alive, so every idle socket held on to the 16 KiB buffer its handshake was read
//! into: 16 KiB of the 38 KiB a socket held in the heap, measured with heaptrack and found by
//! following the pointers in a running server's memory. Copying the few hundred bytes of the URI
//! and the header values lets the buffer go once the connection is upgraded.
//!
//! Only the headers Engine.IO reads are kept: nothing here reads a socket's request afterwards,
//! and a browser's cookies, user agent and the rest would otherwise stay with every socket it
//! opens, twice (Engine.IO and Socket.IO each keep the request's parts). With the Node client's
//! six short headers this saves ~0.2 KiB of an idle socket's 20.7 KiB of heap; a browser's
//! headers are often a kilobyte or more. The layers outside this one (CORS) have seen them all.

use axum::extract::OriginalUri;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Request, Uri};

/// The headers a Socket.IO request keeps: the websocket handshake's (Engine.IO answers the
/// key) and the body's type (Engine.IO checks it on polling posts).
const KEPT: [HeaderName; 6] = [
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::UPGRADE,
    header::CONNECTION,
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
];

/// `request` with its URI and the headers it keeps copied into allocations of their own, when
/// it is bound for Socket.IO; other requests are returned as they are.
pub fn detach_socket_request<B>(mut request: Request<B>) -> Request<B> {
    if !request.uri().path().starts_with("/socket.io") {
        return request;
    }
    // Parsing what was already a valid URI cannot fail; if it did, the original is kept.
    if let Ok(uri) = request.uri().to_string().parse::<Uri>() {
        // The router keeps the URI as it arrived for handlers that ask for it.
        if let Some(OriginalUri(original)) = request.extensions_mut().get_mut::<OriginalUri>() {
            *original = uri.clone();
        }
        *request.uri_mut() = uri;
    }
    let kept = KEPT
        .iter()
        .filter(|name| request.headers().contains_key(*name))
        .count();
    let mut headers = HeaderMap::with_capacity(kept);
    for name in &KEPT {
        for value in request.headers().get_all(name) {
            // Copying bytes that were a valid header value cannot fail.
            if let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) {
                copy.set_sensitive(value.is_sensitive());
                headers.append(name.clone(), copy);
            }
        }
    }
    *request.headers_mut() = headers;
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;

    /// Whether `part` lies inside `buffer`'s memory.
    fn inside(buffer: &Bytes, part: &[u8]) -> bool {
        let range = buffer.as_ptr_range();
        range.contains(&part.as_ptr())
    }

    fn request_sharing(buffer: &Bytes, path: &str) -> Request<()> {
        let at = |s: &str| {
            let start = buffer
                .windows(s.len())
                .position(|w| w == s.as_bytes())
                .unwrap();
            buffer.slice(start..start + s.len())
        };
        let mut request = Request::new(());
        *request.uri_mut() = Uri::from_maybe_shared(at(path)).unwrap();
        let original = OriginalUri(request.uri().clone());
        request.extensions_mut().insert(original);
        request.headers_mut().insert(
            "sec-websocket-key",
            HeaderValue::from_maybe_shared(at("dGhlIHNhbXBsZSBub25jZQ==")).unwrap(),
        );
        request
    }

    #[test]
    fn a_socket_request_no_longer_points_into_the_read_buffer() {
        let path = "/socket.io/?EIO=4&transport=websocket";
        let buffer = Bytes::from(format!(
            "GET {path} HTTP/1.1\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n{}",
            " ".repeat(8192)
        ));
        let shared = request_sharing(&buffer, path);
        let value = &shared.headers()["sec-websocket-key"];
        assert!(inside(&buffer, value.as_bytes()), "the test's premise");

        let detached = detach_socket_request(shared);
        assert_eq!(detached.uri().to_string(), path);
        let value = &detached.headers()["sec-websocket-key"];
        assert_eq!(value, "dGhlIHNhbXBsZSBub25jZQ==");
        assert!(!inside(&buffer, value.as_bytes()));
        let query = detached.uri().query().unwrap();
        assert!(!inside(&buffer, query.as_bytes()));
        let OriginalUri(original) = detached.extensions().get::<OriginalUri>().unwrap();
        assert_eq!(original.to_string(), path);
        assert!(!inside(&buffer, original.query().unwrap().as_bytes()));
    }

    #[test]
    fn a_socket_request_keeps_only_the_headers_engine_io_reads() {
        let mut request = Request::new(());
        *request.uri_mut() = Uri::from_static("/socket.io/?EIO=4&transport=polling");
        for (name, value) in [
            ("cookie", "session=secret; theme=dark"),
            ("user-agent", "Mozilla/5.0"),
            ("content-type", "text/plain;charset=UTF-8"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("connection", "Upgrade"),
            ("origin", "https://chat.example"),
        ] {
            request
                .headers_mut()
                .append(name, HeaderValue::from_static(value));
        }
        let detached = detach_socket_request(request);
        let mut names: Vec<&str> = detached.headers().keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["connection", "content-type", "sec-websocket-key"]);
        assert_eq!(
            detached.headers()["content-type"],
            "text/plain;charset=UTF-8"
        );
    }

    #[test]
    fn other_requests_are_left_as_they_are() {
        let path = "/groups?limit=5";
        let buffer = Bytes::from(format!(
            "GET {path} HTTP/1.1\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        ));
        let request = detach_socket_request(request_sharing(&buffer, path));
        let value = &request.headers()["sec-websocket-key"];
        assert!(inside(&buffer, value.as_bytes()));
    }
}
