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
