//! The cache's request and response shapes, and the namespace and key rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::http::body::integer;
use crate::knowledge::index_text::IndexTarget;
use crate::names::{cursor_schema, CacheKey, CacheKeyRule};

pub const MAX_NAMESPACE: usize = 64;
/// Keys stop at 190 characters so that `<namespace>:<key>` fits a document id (256 bytes).
pub const MAX_KEY: usize = 190;
pub const DEFAULT_TTL_SECS: i64 = 86_400;
pub const MAX_TTL_SECS: i64 = 315_360_000;

/// 1 to 64 characters: letters, digits, `_`, `.`, `-`.
pub fn check_namespace(namespace: &str) -> Result<(), ApiError> {
    let ok = !namespace.is_empty()
        && namespace.len() <= MAX_NAMESPACE
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    ok.then_some(())
        .ok_or_else(|| ApiError::validation("namespace", "1 to 64 characters: letters, digits, '_', '.', '-'"))
}

/// 1 to 190 characters: letters, digits, `_`, `.`, `:`, `@`, `=`, `+`, `~`, `-`.
pub fn check_key(key: &str) -> Result<(), ApiError> {
    CacheKey::parse(key).map(|_| ())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "data": {"code": "8471.30.01", "summary": "Portable automatic data processing machines under 10 kg", "duty": "0%"},
    "metadata": {"source": "usitc"},
    "ttl_seconds": 86400,
    "index": {"collection": "rulings", "text_field": "summary"}
}))]
pub struct PutEntry {
    /// The tool's result: any JSON value.
    pub data: serde_json::Value,
    /// A JSON object of at most 64 KiB.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Seconds until the entry expires: 1 to 315360000 (default 86400, a day).
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 1, maximum = 315360000)]
    pub ttl_seconds: Option<i64>,
    /// Index the entry's text into this collection (document id `<namespace>:<key>`) in the same
    /// transaction. Remembered: later stores of the key re-index changed data there.
    pub index: Option<IndexTarget>,
}

/// A cache entry as read.
#[derive(Debug, Serialize, ToSchema)]
pub struct CacheEntry {
    pub namespace: String,
    pub key: String,
    pub data: serde_json::Value,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// `sha256:<hex>` of the canonical JSON of `data` (sorted keys, no whitespace).
    #[schema(example = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub content_hash: String,
    /// 1, plus one for each change of the data.
    pub version: i32,
    /// When the data was last stored (changed or not).
    pub fetched_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// When the data last changed (its first store counts).
    pub changed_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Seconds since `fetched_at`.
    pub age_seconds: f64,
    /// Past `expires_at`, or older than the request's `max_age_seconds`.
    pub stale: bool,
    /// The collection the entry's text is indexed in, if any.
    pub indexed_in: Option<String>,
    /// PUT only: true when the data differs from the previous version (or the entry is new).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
    /// PUT only: true when the key had no entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct GetParams {
    /// 404 when the entry was fetched longer ago than this many seconds (0 to 315360000).
    #[param(minimum = 0, maximum = 315360000)]
    pub max_age_seconds: Option<u64>,
    /// Return an expired or too-old entry anyway, flagged `stale: true` (default false).
    pub allow_stale: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// Entries whose data changed at or after this time (RFC 3339).
    pub changed_since: Option<DateTime<Utc>>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    #[param(schema_with = cursor_schema::<CacheKeyRule>)]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CacheEntryList {
    /// Oldest change first.
    pub data: Vec<CacheEntry>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CacheVersion {
    pub version: i32,
    pub data: serde_json::Value,
    pub content_hash: String,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub fetched_at: DateTime<Utc>,
    /// When a changed store replaced this version.
    pub replaced_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct HistoryParams {
    /// Versions to return, newest first: 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CacheHistory {
    /// Earlier versions, newest first.
    pub data: Vec<CacheVersion>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CacheDeleted {
    pub deleted: i64,
}

/// Keyset position after an entry of a listing ordered by (changed_at, key).
pub fn encode_cursor(changed_at: DateTime<Utc>, key: &str) -> String {
    format!("{}_{key}", changed_at.timestamp_micros())
}

pub fn parse_cursor(cursor: &str) -> Result<(DateTime<Utc>, String), ApiError> {
    let invalid = || ApiError::validation("cursor", "not a cursor returned by this endpoint");
    let (micros, key) = cursor.split_once('_').ok_or_else(invalid)?;
    let at = micros
        .parse()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid)?;
    check_key(key).map_err(|_| invalid())?;
    Ok((at, key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        assert!(
            check_namespace("tariffs.v2").is_ok() && check_namespace("").is_err() && check_namespace("a/b").is_err()
        );
        assert!(check_namespace(&"n".repeat(64)).is_ok() && check_namespace(&"n".repeat(65)).is_err());
        assert!(check_key("hs:8471.30.01").is_ok() && check_key("bad key").is_err() && check_key("é").is_err());
        assert!(check_key(&"k".repeat(190)).is_ok() && check_key(&"k".repeat(191)).is_err());
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        assert_eq!(
            parse_cursor(&encode_cursor(at, "a_b:c")).unwrap(),
            (at, "a_b:c".to_string())
        );
        assert!(parse_cursor("x_y").is_err());
    }
}
