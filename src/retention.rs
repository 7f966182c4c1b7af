//! The retention rules, in one place: every rule that deletes data because of its age, its
//! server-wide value (flags) and the tenant's override in its settings (`retention.<key>`).
//! The sweep that applies them is `ops::retention`; the planes' sweeps delete in batches of
//! [`BATCH`]; `/metrics` counts per rule.

use crate::error::ApiError;

/// Rows one statement deletes at most.
pub const BATCH: i64 = 5_000;

/// The server-wide values (flags); a tenant's `settings.retention` overrides each.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Days the audit log keeps a row (0: forever).
    pub audit_log_days: u32,
    /// Seconds past `expires_at` after which a cache entry is removed (0: at once).
    pub cache_keep_expired_secs: u64,
    /// Days the cache keeps a replaced version (0: forever).
    pub cache_history_days: u32,
    /// Days a conversation may go untouched before it is deleted (0: forever).
    pub conversations_days: u32,
    /// Days a finished job stays listed (0: forever).
    pub jobs_days: u32,
}

/// The rules, in the order the sweep applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    AuditLog,
    CacheExpired,
    CacheHistory,
    MemoriesExpired,
    Conversations,
    JobsFinished,
}

pub const RULES: [Rule; 6] = [
    Rule::AuditLog,
    Rule::CacheExpired,
    Rule::CacheHistory,
    Rule::MemoriesExpired,
    Rule::Conversations,
    Rule::JobsFinished,
];

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::AuditLog => "audit_log",
            Rule::CacheExpired => "cache_expired",
            Rule::CacheHistory => "cache_history",
            Rule::MemoriesExpired => "memories_expired",
            Rule::Conversations => "conversations",
            Rule::JobsFinished => "jobs_finished",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Rule::AuditLog => "audit log rows (the tenant's and the admin's) older than this",
            Rule::CacheExpired => "cache entries expired for longer than this, with their indexed documents",
            Rule::CacheHistory => "replaced cache versions older than this",
            Rule::MemoriesExpired => "memories past their expires_at (never returned once expired; the deletion is kept in their history)",
            Rule::Conversations => "conversations untouched (no message, state or workflow save) for longer than this, with everything in them",
            Rule::JobsFinished => "jobs finished longer ago than this (and sweep runs beyond the last 100)",
        }
    }

    /// The key under a tenant's `settings.retention` that overrides the server's value.
    pub fn tenant_key(self) -> Option<&'static str> {
        match self {
            Rule::AuditLog => Some("audit_log_days"),
            Rule::CacheExpired => Some("cache_keep_expired_secs"),
            Rule::CacheHistory => Some("cache_history_days"),
            Rule::MemoriesExpired => None,
            Rule::Conversations => Some("conversations_days"),
            Rule::JobsFinished => Some("jobs_days"),
        }
    }

    /// Seconds per unit of the rule's value.
    pub fn unit(self) -> (&'static str, f64) {
        match self {
            Rule::CacheExpired | Rule::MemoriesExpired => ("seconds", 1.0),
            _ => ("days", 86_400.0),
        }
    }

    /// What a value of 0 means.
    pub fn zero_means(self) -> &'static str {
        match self {
            Rule::CacheExpired | Rule::MemoriesExpired => "deleted as soon as expired",
            _ => "kept forever",
        }
    }

    /// The server-wide value, in the rule's unit.
    pub fn server_value(self, r: &Retention) -> f64 {
        match self {
            Rule::AuditLog => r.audit_log_days as f64,
            Rule::CacheExpired => r.cache_keep_expired_secs as f64,
            Rule::CacheHistory => r.cache_history_days as f64,
            Rule::MemoriesExpired => 0.0,
            Rule::Conversations => r.conversations_days as f64,
            Rule::JobsFinished => r.jobs_days as f64,
        }
    }

    pub fn from_key(key: &str) -> Option<Rule> {
        RULES.into_iter().find(|r| r.tenant_key() == Some(key))
    }
}

/// The largest value a rule takes: a century.
const MAX_DAYS: f64 = 36_500.0;

/// Checks a tenant's `settings.retention` (when present): an object of the known keys, each a
/// number from 0 to a century (`null` falls back to the server's value).
pub fn validate_tenant_settings(settings: &serde_json::Value) -> Result<(), ApiError> {
    let Some(retention) = settings.get("retention") else {
        return Ok(());
    };
    let known = RULES
        .iter()
        .filter_map(|r| r.tenant_key())
        .collect::<Vec<_>>()
        .join(", ");
    let Some(map) = retention.as_object() else {
        return Err(ApiError::validation(
            "settings.retention",
            format!("must be an object with any of: {known}"),
        ));
    };
    for (key, value) in map {
        let field = "settings.retention";
        let Some(rule) = Rule::from_key(key) else {
            return Err(ApiError::validation(
                field,
                format!("`{key}` is not a retention setting (known: {known})"),
            ));
        };
        if value.is_null() {
            continue;
        }
        let (unit, scale) = rule.unit();
        let max = MAX_DAYS * 86_400.0 / scale;
        match value.as_f64() {
            Some(v) if (0.0..=max).contains(&v) => {}
            _ => {
                return Err(ApiError::validation(
                    field,
                    format!("`{key}` must be a number of {unit} from 0 to {max} (or null)"),
                ))
            }
        }
    }
    Ok(())
}
