//! Wire contracts between roles and with clients: RPC patterns and their request and response
//! types. JSON field names are camelCase, as the seed's frontend expects.

pub mod assets;
pub mod auth;
pub mod groups;
pub mod messages;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One page of a listing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub data: Vec<T>,
    /// The page number, from 1.
    pub page: u32,
    /// The page size actually used (capped at 100).
    pub limit: u32,
    /// Items matching the query across all pages.
    pub total: u64,
}

/// Regular expressions the OpenAPI document gives for the text rules the services check, so a
/// client generated from it (or a schema-driven fuzzer) knows them. Control characters are
/// Unicode's `Cc`, as `char::is_control`.
pub mod patterns {
    /// Not blank, no control characters (first and last names).
    pub const NAME: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";
    /// No control characters (a group name; blank means none).
    pub const NO_CONTROL: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";
    /// Not blank.
    pub const NOT_BLANK: &str = r"\S";
    /// A file name: not a path (no `/`, `\`, `..`), no surrounding spaces, no control characters.
    pub const FILENAME: &str = r"^(?!.*\.\.)(?!\.$)[^\s/\\\x00-\x1f\x7f-\x9f]([^/\\\x00-\x1f\x7f-\x9f]*[^\s/\\\x00-\x1f\x7f-\x9f])?$";
    /// A picture: an http(s) URL or an absolute path, no spaces or control characters.
    pub const PICTURE_URL: &str = r"^(https?://|/)[^\s\x00-\x1f\x7f-\x9f]*$";
}

/// A count that JSON may write as `3` or `3.0` (JSON Schema's `integer` admits both); a fraction,
/// a negative number or one beyond `u32` is refused.
pub(crate) mod whole {
    use serde::{de::Error, Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let n = f64::deserialize(d)?;
        if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) {
            Ok(n as u32)
        } else {
            Err(D::Error::custom(format!(
                "expected a whole number from 0 to {}, found {n}",
                u32::MAX
            )))
        }
    }
}

/// A field that may be absent but never `null`: absent is `None`, `null` is refused.
pub(crate) mod present {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        String::deserialize(d).map(Some)
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
pub(crate) mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Option<String>>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}
