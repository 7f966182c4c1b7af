//! The naming rule of identifiers callers choose themselves: conversation and user ids, agent
//! names, memory scopes, cache keys.

use crate::error::ApiError;

/// 1 to `max` characters of letters, digits and `_.:@=+~-` (safe in a path, a cursor and a
/// document id without escaping).
pub fn check_ref(field: &'static str, value: &str, max: usize) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'=' | b'+' | b'~' | b'-'));
    ok.then_some(()).ok_or_else(|| {
        ApiError::validation(
            field,
            format!("1 to {max} characters: letters, digits, '_', '.', ':', '@', '=', '+', '~', '-'"),
        )
    })
}
