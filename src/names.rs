//! The ids callers choose themselves (conversation and user ids, agent names, memory scopes,
//! cache keys): one rule, parsed once. A request field typed [`UserId`] (or a sibling) is
//! checked as the body or query string is read, so a service only ever holds valid ids; the
//! OpenAPI schema's pattern comes from the same rule ([`CallerId`]'s `PartialSchema`).
//!
//! A malformed id is still a 400 `validation_failed` naming the field, as every other
//! validation error: the deserializer's message carries the field and the rule
//! ([`from_deserialize_error`] turns it back into that error).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use bytes::BytesMut;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type as PgType};
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::error::ApiError;

/// The characters of a caller's id, as a regex class: safe in a path, a cursor and a document id
/// without escaping.
macro_rules! id_class {
    () => {
        "A-Za-z0-9_.:@=+~-"
    };
}

/// What one kind of id is called in requests, and how long it may be.
pub trait IdRule: 'static {
    /// The schema's name in the OpenAPI document.
    const NAME: &'static str;
    /// The request field it is read from (the `field` of the error).
    const FIELD: &'static str;
    const MAX: usize;
}

/// A caller-chosen id that follows the rule: 1 to `R::MAX` characters of [`id_class`].
pub struct CallerId<R: IdRule>(String, PhantomData<R>);

macro_rules! id_kind {
    ($(#[$doc:meta])* $alias:ident, $rule:ident, $field:literal, $max:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $rule;
        impl IdRule for $rule {
            const NAME: &'static str = stringify!($alias);
            const FIELD: &'static str = $field;
            const MAX: usize = $max;
        }
        $(#[$doc])*
        pub type $alias = CallerId<$rule>;
    };
}

id_kind!(
    /// A user of the caller's application.
    UserId, UserIdRule, "user_id", 256
);
id_kind!(
    /// An agent a memory belongs to.
    AgentId, AgentIdRule, "agent_id", 256
);
id_kind!(
    /// A run a memory belongs to (the caller's own run id, not a `/v1/runs` id).
    RunRef, RunRefRule, "run_id", 256
);
id_kind!(
    /// An agent whose state a conversation keeps.
    AgentName, AgentNameRule, "agent_name", 256
);
id_kind!(
    /// A caller-chosen conversation id (a session id).
    ConversationId, ConversationIdRule, "id", 128
);
id_kind!(
    /// A cache entry's key: 190 characters at most, so that `<namespace>:<key>` fits a document
    /// id (256 bytes).
    CacheKey, CacheKeyRule, "key", 190
);

/// The fields an id is read from, for [`from_deserialize_error`] (whose `ApiError` needs a
/// `'static` field name).
const FIELDS: [&str; 6] = [
    UserIdRule::FIELD,
    AgentIdRule::FIELD,
    RunRefRule::FIELD,
    AgentNameRule::FIELD,
    ConversationIdRule::FIELD,
    CacheKeyRule::FIELD,
];

/// Marks a deserializer message that is an id's validation error: `\u{1}field\u{1}message`.
const MARK: char = '\u{1}';

impl<R: IdRule> CallerId<R> {
    /// Parses `value` under the rule, naming `field` in the error.
    pub fn parse_as(field: &'static str, value: &str) -> Result<Self, ApiError> {
        if is_valid(value, R::MAX) {
            Ok(CallerId(value.to_string(), PhantomData))
        } else {
            Err(ApiError::validation(field, rule_message(R::MAX)))
        }
    }

    /// Parses `value` under the rule, naming the rule's own field in the error.
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        Self::parse_as(R::FIELD, value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

fn is_valid(value: &str, max: usize) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'=' | b'+' | b'~' | b'-'))
}

fn rule_message(max: usize) -> String {
    format!("1 to {max} characters: letters, digits, '_', '.', ':', '@', '=', '+', '~', '-'")
}

/// The `validation_failed` error an id's deserializer reported through serde (a JSON body or
/// a query string), or `None` for any other message.
pub fn from_deserialize_error(message: &str) -> Option<ApiError> {
    let rest = message.strip_prefix(MARK)?;
    let (field, rest) = rest.split_once(MARK)?;
    let field = FIELDS.into_iter().find(|f| *f == field)?;
    // serde_json appends the position (" at line 1 column 40"); the message before it is ours.
    let message = rest.rsplit_once(" at line ").map_or(rest, |(m, _)| m);
    Some(ApiError::validation(field, message))
}

impl<R: IdRule> std::ops::Deref for CallerId<R> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<R: IdRule> AsRef<str> for CallerId<R> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<R: IdRule> fmt::Display for CallerId<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<R: IdRule> fmt::Debug for CallerId<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<R: IdRule> Clone for CallerId<R> {
    fn clone(&self) -> Self {
        CallerId(self.0.clone(), PhantomData)
    }
}

impl<R: IdRule> PartialEq for CallerId<R> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<R: IdRule> Eq for CallerId<R> {}

impl<R: IdRule> TryFrom<String> for CallerId<R> {
    type Error = String;

    /// The error is the marked message [`from_deserialize_error`] reads back.
    fn try_from(value: String) -> Result<Self, String> {
        if is_valid(&value, R::MAX) {
            Ok(CallerId(value, PhantomData))
        } else {
            Err(format!("{MARK}{}{MARK}{}", R::FIELD, rule_message(R::MAX)))
        }
    }
}

impl<'de, R: IdRule> Deserialize<'de> for CallerId<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        CallerId::try_from(value).map_err(serde::de::Error::custom)
    }
}

impl<R: IdRule> Serialize for CallerId<R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Bound as text: an id is a `text` column's value.
impl<R: IdRule> ToSql for CallerId<R> {
    fn to_sql(&self, ty: &PgType, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &PgType) -> bool {
        <String as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

impl<R: IdRule> PartialSchema for CallerId<R> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(R::MAX))
            .pattern(Some(format!("^[{}]{{1,{}}}$", id_class!(), R::MAX)))
            .description(Some(format!(
                "1 to {} characters of letters, digits and `_.:@=+~-`",
                R::MAX
            )))
            .into()
    }
}

/// The schema of a `next_cursor` over rows keyed by an id of rule `R`: `<unix micros>_<id>`.
pub fn cursor_schema<R: IdRule>() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^[0-9]{{1,16}}_[{}]{{1,{}}}$", id_class!(), R::MAX)))
        .description(Some("`next_cursor` from the previous page"))
        .build()
}

impl<R: IdRule> ToSchema for CallerId<R> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(R::NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_parses_under_its_rule_and_names_its_field_when_it_does_not() {
        assert_eq!(UserId::parse("user-7@acme.io").unwrap().as_str(), "user-7@acme.io");
        assert!(ConversationId::parse(&"x".repeat(128)).is_ok());
        let err = ConversationId::parse(&"x".repeat(129)).unwrap_err();
        assert!(matches!(err, ApiError::Validation { field: "id", .. }), "{err:?}");
        assert!(matches!(
            AgentName::parse("a b"),
            Err(ApiError::Validation {
                field: "agent_name",
                ..
            })
        ));
        assert!(CacheKey::parse("").is_err());
    }

    #[test]
    fn a_body_with_a_bad_id_is_the_same_validation_error() {
        #[derive(Deserialize, Debug)]
        struct Body {
            #[allow(dead_code)]
            user_id: Option<UserId>,
        }
        let err = serde_json::from_str::<Body>(r#"{"user_id": "no spaces"}"#).unwrap_err();
        let api = from_deserialize_error(&err.to_string()).expect("an id's error");
        match api {
            ApiError::Validation { field, message } => {
                assert_eq!(field, "user_id");
                assert_eq!(message, rule_message(256));
            }
            other => panic!("{other:?}"),
        }
        assert!(from_deserialize_error("invalid type: integer `5`, expected a string").is_none());
    }

    #[test]
    fn the_schema_pattern_is_the_rule() {
        let RefOr::T(Schema::Object(schema)) = CacheKey::schema() else {
            panic!("an inline object schema");
        };
        assert_eq!(schema.pattern.as_deref(), Some("^[A-Za-z0-9_.:@=+~-]{1,190}$"));
        assert_eq!(schema.max_length, Some(190));
    }
}
