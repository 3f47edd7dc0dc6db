//! The RPC contract between roles, independent of the transport: each [`RpcPattern`] names one
//! operation (`user.login`) with its request and response types, and every reply travels in one
//! versioned envelope.
//!
//! Wire format (version 1): the request body is the request as JSON; the reply body is
//! `{"v":1,"ok":<response>}` or `{"v":1,"error":{"code":..,"message":..}}`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Version of the RPC envelope.
pub const WIRE_VERSION: u8 = 1;
/// One RPC operation: its name and its request and response types.
pub trait RpcPattern: Send + Sync + 'static {
    /// The pattern name, for example `user.login`.
    const NAME: &'static str;
    type Request: Serialize + DeserializeOwned + Send + Sync + 'static;
    type Response: Serialize + DeserializeOwned + Send + 'static;
}

/// Declares an [`RpcPattern`]: `rpc_pattern!(/// doc
/// UserLogin, "user.login", LoginRequest => AuthSession);`
#[macro_export]
macro_rules! rpc_pattern {
    ($(#[$doc:meta])* $name:ident, $wire:literal, $req:ty => $resp:ty) => {
        $(#[$doc])*
        pub struct $name;
        impl $crate::rpc::RpcPattern for $name {
            const NAME: &'static str = $wire;
            type Request = $req;
            type Response = $resp;
        }
    };
}

/// Ids that follow a request across roles, for logs.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// Id of the originating HTTP request (or socket event).
    pub request_id: String,
    /// Id tying several requests together; defaults to the request id.
    pub correlation_id: String,
}

impl CallContext {
    /// A context for work that does not come from a request (start-up, background jobs).
    pub fn internal() -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        CallContext {
            request_id: id.clone(),
            correlation_id: id,
        }
    }
}

#[derive(Serialize)]
struct OkReply<'a, T> {
    v: u8,
    ok: &'a T,
}

#[derive(Serialize)]
struct ErrorReply<'a> {
    v: u8,
    error: &'a Error,
}

#[derive(Deserialize)]
struct Reply<T> {
    #[serde(default = "Option::default")]
    ok: Option<T>,
    #[serde(default)]
    error: Option<Error>,
}

/// The reply body, and the outcome label for metrics (`ok` or the error code), which the caller
/// would otherwise have to parse back out of the body. The value is serialised once, straight
/// into the body. A refusal or failure is logged here, where it leaves the role.
pub fn encode_reply<T: Serialize>(result: Result<T, Error>) -> (Vec<u8>, &'static str) {
    let error = match result {
        Ok(value) => match serde_json::to_vec(&OkReply {
            v: WIRE_VERSION,
            ok: &value,
        }) {
            Ok(body) => return (body, "ok"),
            Err(e) => Error::internal(format!("cannot encode a reply: {e}")),
        },
        Err(e) => e,
    };
    error.log_at_boundary("rpc");
    let body = serde_json::to_vec(&ErrorReply {
        v: WIRE_VERSION,
        error: &error,
    })
    .unwrap_or_default();
    (body, error.code.as_str())
}

/// The response in a reply body, or the error it carries.
pub fn decode_reply<T: DeserializeOwned>(pattern: &str, body: &[u8]) -> Result<T, Error> {
    let reply: Reply<T> = serde_json::from_slice(body).map_err(|e| {
        Error::internal(format!(
            "reply to {pattern} does not match its contract: {e}"
        ))
    })?;
    match (reply.error, reply.ok) {
        (Some(error), _) => Err(error),
        (None, Some(value)) => Ok(value),
        // `null` or absent: a unit or optional response.
        (None, None) => T::deserialize(serde_json::Value::Null)
            .map_err(|e| Error::internal(format!("reply to {pattern} has no value: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn replies_carry_either_a_value_or_an_error() {
        let (ok, outcome) = encode_reply::<u32>(Ok(7));
        assert_eq!(outcome, "ok");
        assert_eq!(decode_reply::<u32>("p", &ok).unwrap(), 7);
        let (err, outcome) = encode_reply::<u32>(Err(Error::conflict("taken")));
        assert_eq!(outcome, "conflict");
        assert_eq!(
            decode_reply::<u32>("p", &err).unwrap_err().code,
            ErrorCode::Conflict
        );
        let (unit, _) = encode_reply::<()>(Ok(()));
        decode_reply::<()>("p", &unit).unwrap();
        let (none, _) = encode_reply::<Option<u32>>(Ok(None));
        assert_eq!(decode_reply::<Option<u32>>("p", &none).unwrap(), None);
        let (some, _) = encode_reply(Ok(Some(3u32)));
        assert_eq!(decode_reply::<Option<u32>>("p", &some).unwrap(), Some(3));
        assert_eq!(
            decode_reply::<u32>("p", br#"{"v":1,"ok":"seven"}"#)
                .unwrap_err()
                .code,
            ErrorCode::Internal
        );
    }
}
