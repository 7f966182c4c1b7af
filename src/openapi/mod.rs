//! The OpenAPI document, generated from the handlers' annotations.

mod server_rules;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::v1::{
    audit, auth, cache, collection_jobs, collections, conversations as memory, docs, documents, embeddings, jobs, keys,
    memories, ops, runs, system, tenants,
};
use crate::embed::ModelInfo;
use crate::error::ErrorBody;
use crate::knowledge::doc_model::DocumentOrder;
use crate::knowledge::import::OnError;
use crate::names::{AgentId, AgentName, CacheKey, ConversationId, RunRef, UserId};
use crate::state::EmbedLimits;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "onebase",
        description = "One server and one PostgreSQL database for everything an AI application stores. \
            Every error is a JSON object with a stable `code`, a human `message` and the `request_id` \
            (also sent as the `x-request-id` header). Errors common to all endpoints: \
            `route_not_found` (404), `method_not_allowed` (405), `invalid_json` and `invalid_request` (400), \
            `payload_too_large` (413), `unsupported_media_type` (415), `database_unavailable` (503), \
            `internal_error` (500). Authenticated endpoints take `Authorization: Bearer <credential>`: \
            an API key (`ob_...`), an access token from `/v1/auth/login`, or the admin key. \
            Request bodies are JSON objects. No string may contain U+0000 (PostgreSQL cannot store it): \
            such a request is a 400 `invalid_request` and writes nothing. An `integer` may be written \
            with a zero fraction (`5.0`)."
    ),
    paths(
        system::health, system::ready, system::metrics, docs::openapi_json, docs::docs_redirect,
        tenants::create_tenant, tenants::list_tenants, tenants::get_tenant, tenants::update_tenant,
        tenants::delete_tenant, keys::create_key, keys::list_keys, keys::revoke_key,
        auth::register, auth::login, auth::me,
        audit::list_audit,
        embeddings::create_embeddings, embeddings::list_models, embeddings::get_model,
        collections::create_collection, collections::list_collections, collections::get_collection,
        collections::update_collection, collections::delete_collection,
        documents::create_documents, documents::upsert_documents, documents::list_documents,
        documents::delete_documents, documents::get_document, documents::delete_document, documents::get_chunks,
        documents::search_collection, documents::search_collections,
        collection_jobs::import_collection, collection_jobs::reindex_collection, collection_jobs::reembed_collection,
        jobs::list_jobs, jobs::get_job, jobs::cancel_job,
        runs::create_run, runs::list_runs, runs::get_run, runs::update_run, runs::delete_run,
        runs::create_step, runs::list_steps, runs::create_artifact, runs::list_artifacts,
        runs::create_llm_call, runs::list_llm_calls, runs::run_stats, runs::get_usage,
        cache::put_entry, cache::get_entry, cache::delete_entry, cache::entry_history,
        cache::list_entries, cache::delete_namespace,
        memory::create_conversation, memory::list_conversations, memory::get_conversation,
        memory::update_conversation, memory::delete_conversation, memory::append_messages, memory::list_messages,
        memory::update_message, memory::search_conversation, memory::search_messages, memory::put_agent_state,
        memory::get_agent_state, memory::put_workflow, memory::get_workflow, memory::workflow_history,
        memory::erase_user, memories::conversation_context, memories::add_memory, memories::list_memories,
        memories::search_memories, memories::get_memory, memories::update_memory, memories::delete_memory,
        memories::memory_history, ops::tenant_stats, ops::database_stats, ops::retention,
    ),
    // Named schemas that only parameters refer to (utoipa collects those of bodies itself): the
    // caller ids, and the enums of query strings.
    components(schemas(
        ErrorBody, AgentId, AgentName, CacheKey, ConversationId, RunRef, UserId, DocumentOrder, OnError
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "system", description = "Health, readiness, metrics and API docs"),
        (name = "tenants", description = "Tenants (organizations) and their API keys"),
        (name = "auth", description = "Users, login and access tokens"),
        (name = "audit", description = "The audit log of every change"),
        (name = "embeddings", description = "Text embeddings from the in-process model (OpenAI-compatible)"),
        (name = "collections", description = "Document collections: their tables, vector index, text search and chunking"),
        (name = "documents", description = "Documents, their chunks and vectors, written in one transaction"),
        (name = "search", description = "Vector, full-text and hybrid search with filters"),
        (name = "jobs", description = "Background jobs: imports, merges, reindexing, re-embedding; their progress and cancelling"),
        (name = "runs", description = "Agent runs, their steps, artifacts and LLM calls; run totals and usage"),
        (name = "conversations", description = "Conversations, their messages (searchable by meaning), agent and workflow state, and erasure of a user"),
        (name = "memories", description = "Long-term memories by user, agent or run: deduplicated, searchable by meaning, with history and TTL"),
        (name = "cache", description = "A tool-result cache with TTLs, change detection, history and optional indexing"),
        (name = "operations", description = "Storage statistics of a tenant and of the whole database"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (ob_...), an access token (JWT) or the admin key"))
                    .build(),
            ),
        );
    }
}

/// The served OpenAPI document: the annotations' spec, this server's configured limits, and the
/// error responses every operation shares (see [`add_common_responses`]). Built once at startup.
pub fn document(embed_limits: &EmbedLimits, model: &ModelInfo) -> anyhow::Result<serde_json::Value> {
    let mut doc = serde_json::to_value(ApiDoc::openapi())?;
    crate::embeddings::document_limits(&mut doc, embed_limits, model.dims);
    crate::knowledge::model::document_limits(&mut doc, model.max_length);
    add_common_responses(&mut doc);
    camel_case_links(&mut doc);
    close_objects(&mut doc["components"]["schemas"]);
    server_rules::state(&mut doc);
    Ok(doc)
}

/// Every request body refuses unknown fields (`deny_unknown_fields`) and every response has
/// exactly its listed fields, so each object schema with `properties` is closed:
/// `additionalProperties: false`. utoipa says so for plain structs but not for the variants of
/// internally tagged enums (`IndexSpec`).
fn close_objects(schema: &mut serde_json::Value) {
    use serde_json::Value;
    match schema {
        Value::Object(map) => {
            if map.get("properties").is_some_and(Value::is_object) && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (key, value) in map.iter_mut() {
                if key != "example" && key != "examples" {
                    close_objects(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// utoipa 5.5 serializes a Link Object's fields in snake_case (`operation_id`); OpenAPI spells
/// them `operationId`, `operationRef` and `requestBody`, and tools ignore links without them.
fn camel_case_links(doc: &mut serde_json::Value) {
    use serde_json::Value;
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let operations = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    let responses = operations
        .filter_map(|op| op.get_mut("responses").and_then(Value::as_object_mut))
        .flat_map(|responses| responses.values_mut());
    for links in responses.filter_map(|r| r.get_mut("links").and_then(Value::as_object_mut)) {
        for link in links.values_mut().filter_map(Value::as_object_mut) {
            for (from, to) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(value) = link.remove(from) {
                    link.insert(to.to_string(), value);
                }
            }
        }
    }
}

/// An error code that many operations can return, with what it means there.
struct CommonError {
    status: &'static str,
    code: &'static str,
    why: &'static str,
}

const BODY_ERRORS: &[CommonError] = &[
    CommonError {
        status: "400",
        code: "invalid_json",
        why: "the body is not valid JSON",
    },
    CommonError {
        status: "400",
        code: "invalid_request",
        why: "the body does not match the schema",
    },
    CommonError {
        status: "413",
        code: "payload_too_large",
        why: "the body exceeds the server's body limit",
    },
    CommonError {
        status: "415",
        code: "unsupported_media_type",
        why: "the body is not sent as `application/json`",
    },
];
const PARAMETER_ERRORS: &[CommonError] = &[CommonError {
    status: "400",
    code: "invalid_request",
    why: "a malformed path parameter or query string",
}];
const AUTH_ERRORS: &[CommonError] = &[
    CommonError {
        status: "401",
        code: "missing_credentials",
        why: "no `Authorization: Bearer` header",
    },
    CommonError {
        status: "401",
        code: "invalid_credentials",
        why: "an unknown, revoked or malformed credential",
    },
    CommonError {
        status: "401",
        code: "token_expired",
        why: "an access token past its expiry",
    },
];
const OPTIONAL_AUTH_ERRORS: &[CommonError] = &[
    CommonError {
        status: "401",
        code: "invalid_credentials",
        why: "a credential was sent but is not valid",
    },
    CommonError {
        status: "401",
        code: "token_expired",
        why: "an access token past its expiry",
    },
];
const DATABASE_ERRORS: &[CommonError] = &[
    CommonError {
        status: "500",
        code: "internal_error",
        why: "a bug; details are in the server log under the `request_id`",
    },
    CommonError {
        status: "503",
        code: "database_unavailable",
        why: "the database cannot be reached",
    },
];

/// Documents, on every operation, the errors that come from the framework rather than the handler:
/// a malformed body (400, 413, 415) where there is one, a malformed path or query (400) where there
/// are parameters, credentials (401) and the database (500, 503) where the operation is
/// authenticated. An already documented status keeps its description, and the codes it does not
/// mention yet are appended to it.
fn add_common_responses(doc: &mut serde_json::Value) {
    use serde_json::Value;
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for op in item.values_mut() {
            let mut errors: Vec<&CommonError> = vec![];
            if op.get("requestBody").is_some() {
                errors.extend(BODY_ERRORS);
            }
            let has_parameters = op
                .get("parameters")
                .and_then(Value::as_array)
                .is_some_and(|p| p.iter().any(|p| matches!(p["in"].as_str(), Some("path" | "query"))));
            if has_parameters {
                errors.extend(PARAMETER_ERRORS);
            }
            if let Some(security) = op.get("security").and_then(Value::as_array) {
                let optional = security.iter().any(|s| s.as_object().is_some_and(|s| s.is_empty()));
                errors.extend(if optional { OPTIONAL_AUTH_ERRORS } else { AUTH_ERRORS });
                errors.extend(DATABASE_ERRORS);
            }
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            for error in errors {
                let response = responses.entry(error.status).or_insert_with(|| {
                    serde_json::json!({
                        "description": "",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
                    })
                });
                let Some(description) = response.get_mut("description") else {
                    continue;
                };
                let text = description.as_str().unwrap_or_default();
                let code = format!("`{}`", error.code);
                if !text.contains(&code) {
                    let sep = if text.is_empty() { "" } else { "; " };
                    *description = Value::String(format!("{text}{sep}{code}: {}", error.why));
                }
            }
        }
    }
}
