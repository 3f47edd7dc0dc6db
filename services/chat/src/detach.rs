//! Socket.IO requests detached from the connection's read buffer.
//!
//! hyper parses a request's URI and header values as slices of the connection's read buffer
//! (8–16 KiB), the router keeps a clone of the URI in the request's extensions (`OriginalUri`),
//! and Socket.IO keeps each socket's request parts for the socket's lifetime. A slice keeps its
//! whole buffer alive, so every idle socket held on to the 16 KiB buffer its handshake was read
//! into: 16 KiB of the 38 KiB a socket held in the heap, measured with heaptrack and found by
//! following the pointers in a running server's memory. Copying the few hundred bytes of the URI
//! and the header values lets the buffer go once the connection is upgraded.

use axum::extract::OriginalUri;
use axum::http::{HeaderValue, Request, Uri};

/// `request` with its URI and header values copied into allocations of their own, when it is
/// bound for Socket.IO; other requests are returned as they are.
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
    for value in request.headers_mut().values_mut() {
        if let Ok(copy) = HeaderValue::from_bytes(value.as_bytes()) {
            let sensitive = value.is_sensitive();
            *value = copy;
            value.set_sensitive(sensitive);
        }
    }
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
