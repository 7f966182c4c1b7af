//! The memory plane: conversations and their messages (searchable by meaning when embedding is
//! on), per-agent state and resumable workflow state with optimistic concurrency, and the
//! erasure of a user. Tables in migrations/V6, under row-level security.

pub mod agent_state;
pub mod context;
pub mod conversation_model;
pub mod conversations;
pub mod memories;
pub mod memory_model;
pub mod messages;
pub mod sweep;
