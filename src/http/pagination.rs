//! Keyset pagination: a page size and an opaque cursor naming the last row returned.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 500;

#[derive(Debug, Clone, Copy)]
pub struct Limit(u32);

impl Limit {
    pub fn parse(limit: Option<u32>) -> Result<Self, ApiError> {
        match limit.unwrap_or(DEFAULT_LIMIT) {
            n @ 1..=MAX_LIMIT => Ok(Limit(n)),
            _ => Err(ApiError::validation("limit", format!("must be 1 to {MAX_LIMIT}"))),
        }
    }

    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch(self) -> i64 {
        i64::from(self.0) + 1
    }

    /// Cuts the extra row off; true when there is a next page.
    pub fn trim<T>(self, rows: &mut Vec<T>) -> bool {
        let more = rows.len() > self.0 as usize;
        rows.truncate(self.0 as usize);
        more
    }
}

/// Position after a row ordered by (created_at, id), encoded as `<unix micros>_<uuid>`.
#[derive(Debug, Clone, Copy)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn new(created_at: DateTime<Utc>, id: Uuid) -> Self {
        Cursor { created_at, id }
    }

    pub fn encode(&self) -> String {
        format!("{}_{}", self.created_at.timestamp_micros(), self.id.simple())
    }

    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::validation("cursor", "not a cursor returned by this endpoint");
        let (micros, id) = s.split_once('_').ok_or_else(invalid)?;
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        Ok(Cursor {
            created_at: DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?,
            id: Uuid::parse_str(id).map_err(|_| invalid())?,
        })
    }
}

/// The query parameters of a listing ordered by (created_at, id).
#[derive(Debug, Deserialize, IntoParams)]
pub struct PageParams {
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    #[param(pattern = r"^[0-9]{1,16}_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn parse(&self) -> Result<(Limit, Option<Cursor>), ApiError> {
        Ok((
            Limit::parse(self.limit)?,
            self.cursor.as_deref().map(Cursor::parse).transpose()?,
        ))
    }
}

/// The statement of one page of `from`, newest first by (created_at, id), after `cursor`:
/// `SELECT {columns} FROM {from} WHERE {conditions} ORDER BY created_at DESC, id DESC LIMIT n`.
pub fn newest_first_sql(
    columns: &str,
    from: &str,
    mut conditions: Vec<String>,
    params: &mut crate::filter::SqlParams,
    limit: Limit,
    cursor: Option<Cursor>,
) -> String {
    if let Some(c) = cursor {
        conditions.push(format!(
            "(created_at, id) < ({}, {})",
            params.push(c.created_at),
            params.push(c.id)
        ));
    }
    if conditions.is_empty() {
        conditions.push("true".into());
    }
    format!(
        "SELECT {columns} FROM {from} WHERE {} ORDER BY created_at DESC, id DESC LIMIT {}",
        conditions.join(" AND "),
        params.push(limit.fetch())
    )
}

/// Cuts a fetched page to `limit` and gives the cursor of the next one, if any.
pub fn finish_page<T>(limit: Limit, mut data: Vec<T>, position: impl Fn(&T) -> Cursor) -> (Vec<T>, Option<String>) {
    let more = limit.trim(&mut data);
    let next = more.then(|| data.last().map(|row| position(row).encode())).flatten();
    (data, next)
}
