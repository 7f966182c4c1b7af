//! The request shapes every front door and plane shares: JSON bodies that must be objects,
//! integers JSON Schema's way, and keyset pagination (its parameters, cursor and page SQL).

pub mod body;
pub mod pagination;
