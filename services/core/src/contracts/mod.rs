//! Wire contracts between roles and with clients: RPC patterns and their request and response
//! types. JSON field names are camelCase, as the seed's frontend expects.

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
