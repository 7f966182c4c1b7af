//! All integration tests live in one binary so the crate links once (see tests/api/).
mod api;
