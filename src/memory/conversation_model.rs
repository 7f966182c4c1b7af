//! Conversations' and messages' request and response shapes, and their rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;
use crate::http::body::integer;
use crate::knowledge::model::validate_metadata;
use crate::knowledge::search_model::{Fusion, Scores, SearchMode, TextReason};
use crate::names::{cursor_schema, ConversationId, ConversationIdRule, UserId};

/// Characters of a message.
pub const MAX_CONTENT: usize = 100_000;
/// Messages per append.
pub const MAX_APPEND: usize = 100;

fn check_len(field: &'static str, value: Option<&String>, max: usize) -> Result<(), ApiError> {
    if value.is_some_and(|v| v.chars().count() > max) {
        return Err(ApiError::validation(field, format!("at most {max} characters")));
    }
    Ok(())
}

/// A conversation's create and update bodies: their own fields, then the details both take,
/// declared once with one validation. (serde's `flatten` would share them too, but it cannot be
/// combined with `deny_unknown_fields`, which both bodies keep.)
macro_rules! conversation_body {
    ($(#[$attr:meta])* $name:ident { $($(#[$fattr:meta])* $field:ident: $ty:ty,)* }) => {
        #[derive(Debug, Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        $(#[$attr])*
        pub struct $name {
            $($(#[$fattr])* pub $field: $ty,)*
            #[schema(max_length = 1000)]
            pub title: Option<String>,
            #[schema(max_length = 128)]
            pub channel: Option<String>,
            #[schema(max_length = 256)]
            pub assistant: Option<String>,
            /// On update, replaces the metadata.
            #[schema(value_type = Option<Object>)]
            pub metadata: Option<serde_json::Value>,
            /// Embed new messages (searchable by meaning). Absent at creation: the tenant's
            /// `embed_messages` setting.
            pub embed_messages: Option<bool>,
        }

        impl $name {
            pub fn validate(&self) -> Result<(), ApiError> {
                check_len("title", self.title.as_ref(), 1000)?;
                check_len("channel", self.channel.as_ref(), 128)?;
                check_len("assistant", self.assistant.as_ref(), 256)?;
                validate_metadata("metadata", self.metadata.clone())?;
                Ok(())
            }
        }
    };
}

conversation_body!(
    #[schema(example = json!({"id": "sess-42", "user_id": "user-7", "title": "Refund for order 1182", "channel": "web",
        "assistant": "support-bot", "metadata": {"locale": "en"}, "embed_messages": true}))]
    CreateConversation {
        /// A caller-chosen id (a session id), 1 to 128 characters of letters, digits and
        /// `_.:@=+~-`; default a UUIDv7.
        id: Option<ConversationId>,
        /// The user the conversation is with: 1 to 256 characters of letters, digits and `_.:@=+~-`.
        user_id: UserId,
    }
);

conversation_body!(
    #[schema(example = json!({"title": "Refund for order 1182 (resolved)"}))]
    UpdateConversation {}
);

#[derive(Debug, Serialize, ToSchema)]
pub struct Conversation {
    pub id: String,
    pub user_id: String,
    pub title: Option<String>,
    pub channel: Option<String>,
    pub assistant: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// Null: the tenant's `embed_messages` setting decides.
    pub embed_messages: Option<bool>,
    pub message_count: i64,
    /// The `seq` of the newest message (0 when none).
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationList {
    /// Newest first.
    pub data: Vec<Conversation>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ConversationFilter {
    /// Only this user's conversations.
    pub user_id: Option<UserId>,
    /// A filter on the metadata (JSON, as in the collections' search).
    pub filter: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    #[param(schema_with = cursor_schema::<ConversationIdRule>)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    User,
    Assistant,
    System,
    Tool,
}

impl MessageRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
            MessageRole::System => "system",
            MessageRole::Tool => "tool",
        }
    }

    pub fn parse(s: &str) -> Option<MessageRole> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "user", "content": "My order 1182 arrived broken; can I get a refund?", "metadata": {"order": 1182}}))]
pub struct MessageInput {
    pub role: MessageRole,
    /// 1 to 100000 characters.
    #[schema(min_length = 1, max_length = 100000)]
    pub content: String,
    #[schema(max_length = 256)]
    pub agent_name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub token_count: Option<i64>,
    /// US dollars as a decimal string, e.g. "0.000160".
    #[schema(value_type = Option<String>, pattern = r"^[0-9]{1,18}(\.[0-9]{1,12})?$")]
    pub cost_usd: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = -100, maximum = 100)]
    pub rating: Option<i64>,
}

/// A batch of messages: `{"messages": [...]}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBatch {
    /// 1 to 100 messages, appended in order.
    #[schema(min_items = 1, max_items = 100)]
    pub messages: Vec<MessageInput>,
}

/// One message, or a batch (the schema of [`AppendMessages`], which parses it with errors that
/// name the wrong field).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(example = json!({"messages": [
    {"role": "user", "content": "My order 1182 arrived broken; can I get a refund?"},
    {"role": "assistant", "content": "I'm sorry! I've started a refund for order 1182.", "agent_name": "support-bot"}
]}))]
#[allow(dead_code)]
pub enum MessagesBody {
    Batch(MessageBatch),
    One(MessageInput),
}

/// One message, or a batch.
#[derive(Debug)]
pub enum AppendMessages {
    One(MessageInput),
    Batch(MessageBatch),
}

impl<'de> Deserialize<'de> for AppendMessages {
    /// A body with `messages` is a batch; any other is one message (so errors name the field
    /// that is wrong rather than "no variant matched").
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        let result = if value.get("messages").is_some() {
            serde_json::from_value(value).map(AppendMessages::Batch)
        } else {
            serde_json::from_value(value).map(AppendMessages::One)
        };
        result.map_err(serde::de::Error::custom)
    }
}

impl AppendMessages {
    pub fn into_vec(self) -> Vec<MessageInput> {
        match self {
            AppendMessages::One(m) => vec![m],
            AppendMessages::Batch(b) => b.messages,
        }
    }
}

/// A message's validated input.
pub struct NewMessage {
    pub role: MessageRole,
    pub content: String,
    pub agent_name: Option<String>,
    pub metadata: serde_json::Value,
    pub token_count: Option<i32>,
    pub cost_usd: Option<String>,
    pub rating: Option<i32>,
}

pub fn validate_messages(inputs: Vec<MessageInput>) -> Result<Vec<NewMessage>, ApiError> {
    if inputs.is_empty() || inputs.len() > MAX_APPEND {
        return Err(ApiError::validation(
            "messages",
            format!("1 to {MAX_APPEND} messages per request"),
        ));
    }
    inputs
        .into_iter()
        .map(|m| {
            if m.content.is_empty() || m.content.chars().count() > MAX_CONTENT {
                return Err(ApiError::validation(
                    "content",
                    format!("1 to {MAX_CONTENT} characters"),
                ));
            }
            check_len("agent_name", m.agent_name.as_ref(), 256)?;
            let token_count = m
                .token_count
                .map(|t| {
                    i32::try_from(t)
                        .ok()
                        .filter(|t| *t >= 0)
                        .ok_or_else(|| ApiError::validation("token_count", "0 to 2147483647"))
                })
                .transpose()?;
            let rating = m.rating.map(check_rating).transpose()?;
            let cost_usd = m.cost_usd.as_ref().map(crate::runs::model::parse_cost).transpose()?;
            Ok(NewMessage {
                role: m.role,
                content: m.content,
                agent_name: m.agent_name,
                metadata: validate_metadata("metadata", m.metadata)?.unwrap_or_else(|| serde_json::json!({})),
                token_count,
                cost_usd,
                rating,
            })
        })
        .collect()
}

pub fn check_rating(rating: i64) -> Result<i32, ApiError> {
    i32::try_from(rating)
        .ok()
        .filter(|r| (-100..=100).contains(r))
        .ok_or_else(|| ApiError::validation("rating", "-100 to 100"))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: String,
    /// 1, 2, 3... in the conversation, in commit order.
    pub seq: i64,
    pub role: MessageRole,
    pub content: String,
    pub agent_name: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub token_count: Option<i32>,
    pub cost_usd: Option<String>,
    pub rating: Option<i32>,
    /// Whether the message has a vector (it is found by search).
    pub embedded: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    /// Ascending by `seq`.
    pub data: Vec<Message>,
    /// More messages follow in the paging direction (after the last with `after`, before the
    /// first otherwise).
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppendedMessages {
    pub data: Vec<Message>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct MessagePage {
    /// Messages to return, 1 to 500 (default 50). Without `before`/`after`: the last ones.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Only messages with a smaller `seq` (the last `limit` of them).
    #[param(minimum = 0)]
    pub before: Option<i64>,
    /// Only messages with a larger `seq` (the first `limit` of them).
    #[param(minimum = 0)]
    pub after: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"rating": 1, "metadata": {"helpful": true}}))]
pub struct UpdateMessage {
    /// Replaces the metadata.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = -100, maximum = 100)]
    pub rating: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"query": "when will I get my money back", "k": 5, "role": "user", "mode": "hybrid"}))]
pub struct MessageSearch {
    /// What to look for: 1 to 10000 characters. By meaning (`mode: vector`, the default), by
    /// words (`text`: BM25 over the searched messages, words lowercased and none dropped or
    /// stemmed; `"quoted phrases"` required, `-words` excluded), or both (`hybrid`).
    #[schema(min_length = 1, max_length = 10000)]
    pub query: String,
    /// Tenant-wide search only (and required there): the user whose messages to search.
    pub user_id: Option<UserId>,
    /// 1 to 100 (default 10).
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 1, maximum = 100)]
    pub k: Option<i64>,
    pub role: Option<MessageRole>,
    #[schema(max_length = 256)]
    pub agent_name: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// A filter on the messages' metadata (the collections' filter language).
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
    /// Leave out hits scoring below this: the cosine similarity (-1 to 1) in `vector` mode,
    /// the BM25 score in `text` mode, the fused score in `hybrid` mode.
    pub min_score: Option<f64>,
    /// Default `vector`. `text` and `hybrid` also search messages stored without a vector.
    pub mode: Option<SearchMode>,
    /// How `hybrid` fuses its two lists (as in the collections' search; default weighted 0.7
    /// vector / 0.3 text).
    pub fusion: Option<Fusion>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageHit {
    pub message: Message,
    /// The hit's score: its cosine similarity to the query (`vector`), its BM25 score (`text`),
    /// or the two fused (`hybrid`).
    pub score: f64,
    /// Each side's score (`vector`: cosine similarity, `distance`: cosine distance, `text`: BM25),
    /// null on the side that did not find the hit.
    pub scores: Scores,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageHits {
    /// Best first.
    pub data: Vec<MessageHit>,
    /// Why a `text` or `hybrid` search's text side found nothing: `no_words` (the query has no
    /// word), `no_match` (no searched message holds one). Null otherwise.
    pub text_reason: Option<TextReason>,
}
