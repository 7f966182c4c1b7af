//! HTTP handlers of `/v1/conversations`, `/v1/messages/search` and `/v1/users/{user_id}/data`.

use actix_web::{web, HttpRequest, HttpResponse};
use uuid::Uuid;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ErrorBody};
use crate::http::body::JsonObject;
use crate::memory::agent_state::{
    self as states, AgentState, Erased, HistoryPage, PutAgentState, PutWorkflow, Workflow, WorkflowHistory,
};
use crate::memory::conversation_model::{
    AppendMessages, AppendedMessages, Conversation, ConversationFilter, ConversationList, CreateConversation, Message,
    MessageHits, MessageList, MessagePage, MessageSearch, MessagesBody, UpdateConversation, UpdateMessage,
};
use crate::memory::{conversations, messages};
use crate::names::{AgentName, UserId};
use crate::state::AppState;

const ID: &str = "The conversation's id";

/// Starts a conversation; the id may be the caller's (a session id) (writer).
#[utoipa::path(
    post, path = "/v1/conversations", tag = "conversations", request_body = CreateConversation,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Conversation, links(
            ("GetConversation" = (operation_id = "get_conversation", parameters(("id" = "$response.body#/id")))),
            ("DeleteConversation" = (operation_id = "delete_conversation", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, description = "`validation_failed`: a bad id, user_id or field", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 409, description = "`conflict`: a conversation with this id exists", body = ErrorBody),
    )
)]
pub async fn create_conversation(
    state: web::Data<AppState>,
    principal: Principal,
    body: JsonObject<CreateConversation>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    Ok(HttpResponse::Created().json(conversations::create(&state, tenant, &principal, body.into_inner()).await?))
}

/// Lists conversations, newest first, by user and a metadata filter (reader).
#[utoipa::path(
    get, path = "/v1/conversations", tag = "conversations", params(ConversationFilter),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of conversations", body = ConversationList),
        (status = 400, description = "`validation_failed` / `invalid_filter`: a bad user_id, filter, limit or cursor", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
    )
)]
pub async fn list_conversations(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<ConversationFilter>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(conversations::list(&state, tenant, &query).await?))
}

/// A conversation (reader).
#[utoipa::path(
    get, path = "/v1/conversations/{id}", tag = "conversations", params(("id" = String, Path, description = ID)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The conversation", body = Conversation),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation in this tenant", body = ErrorBody),
    )
)]
pub async fn get_conversation(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(conversations::get(&state, tenant, &id).await?))
}

/// Changes a conversation's title, channel, assistant, metadata or embedding switch (writer).
#[utoipa::path(
    patch, path = "/v1/conversations/{id}", tag = "conversations", request_body = UpdateConversation,
    params(("id" = String, Path, description = ID)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The conversation as updated", body = Conversation),
        (status = 400, description = "`validation_failed`: a bad field", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation in this tenant", body = ErrorBody),
    )
)]
pub async fn update_conversation(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: JsonObject<UpdateConversation>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    Ok(HttpResponse::Ok().json(conversations::update(&state, tenant, &principal, &id, body.into_inner()).await?))
}

/// Deletes a conversation with its messages and vectors, agent states and workflow (writer).
#[utoipa::path(
    delete, path = "/v1/conversations/{id}", tag = "conversations", params(("id" = String, Path, description = ID)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation in this tenant", body = ErrorBody),
    )
)]
pub async fn delete_conversation(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    conversations::delete(&state, tenant, &principal, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Appends one message or a batch (`{"messages": [...]}`), numbered in commit order; embedded
/// and written with their vectors in one transaction when the conversation (or the tenant)
/// has embedding on (writer).
#[utoipa::path(
    post, path = "/v1/conversations/{id}/messages", tag = "conversations", request_body = MessagesBody,
    params(("id" = String, Path, description = ID)),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The messages as stored", body = AppendedMessages),
        (status = 400, description = "`validation_failed` / `invalid_request`: a bad role, content over 100000 characters, a bad field", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation in this tenant", body = ErrorBody),
    )
)]
pub async fn append_messages(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: JsonObject<AppendMessages>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let data = messages::append(&state, tenant, &principal, &id, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(AppendedMessages { data }))
}

/// Messages in order: the last `limit` by default, or a page after or before a `seq` (reader).
#[utoipa::path(
    get, path = "/v1/conversations/{id}/messages", tag = "conversations", params(("id" = String, Path, description = ID), MessagePage),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Messages, ascending by seq", body = MessageList),
        (status = 400, description = "`validation_failed` / `invalid_request`: a bad limit, before or after", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation in this tenant", body = ErrorBody),
    )
)]
pub async fn list_messages(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    query: web::Query<MessagePage>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(messages::list(&state, tenant, &id, &query).await?))
}

/// Changes a message's metadata or rating (nothing else of a message changes) (writer).
#[utoipa::path(
    patch, path = "/v1/conversations/{id}/messages/{mid}", tag = "conversations", request_body = UpdateMessage,
    params(("id" = String, Path, description = ID), ("mid" = Uuid, Path, description = "The message's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The message as updated", body = Message),
        (status = 400, description = "`validation_failed` / `invalid_request`: a bad rating or metadata, or a field that cannot change", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such message in this conversation", body = ErrorBody),
    )
)]
pub async fn update_message(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String)>,
    body: JsonObject<UpdateMessage>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let (id, mid) = path.into_inner();
    let mid = Uuid::parse_str(&mid).map_err(|_| ApiError::NotFound {
        resource: "message",
        id: mid.clone(),
    })?;
    Ok(HttpResponse::Ok().json(messages::update(&state, tenant, &principal, &id, mid, body.into_inner()).await?))
}

/// Finds a conversation's messages by meaning, with role, agent, time and metadata filters
/// (reader).
#[utoipa::path(
    post, path = "/v1/conversations/{id}/messages/search", tag = "conversations", request_body = MessageSearch,
    params(("id" = String, Path, description = ID)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Hits, best first", body = MessageHits),
        (status = 400, description = "`validation_failed` / `invalid_filter`: a bad query, k, filter, or a `user_id` (tenant-wide search only)", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation in this tenant", body = ErrorBody),
    )
)]
pub async fn search_conversation(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: JsonObject<MessageSearch>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(messages::search(&state, tenant, Some(&id), body.into_inner()).await?))
}

/// Finds a user's messages across their conversations by meaning (`user_id` required) (reader).
#[utoipa::path(
    post, path = "/v1/messages/search", tag = "conversations", request_body = MessageSearch,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Hits, best first", body = MessageHits),
        (status = 400, description = "`validation_failed` / `invalid_filter`: no user_id, a bad query, k or filter", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
    )
)]
pub async fn search_messages(
    state: web::Data<AppState>,
    principal: Principal,
    body: JsonObject<MessageSearch>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(messages::search(&state, tenant, None, body.into_inner()).await?))
}

fn saved<T: serde::Serialize>(value: &T, version: i64, created: bool) -> HttpResponse {
    let mut builder = if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    builder.insert_header(("ETag", format!("\"{version}\""))).json(value)
}

/// Saves an agent's state in the conversation; `If-Match: <version>` makes it conditional
/// (writer).
#[utoipa::path(
    put, path = "/v1/conversations/{id}/agents/{agent_name}/state", tag = "conversations", request_body = PutAgentState,
    params(
        ("id" = String, Path, description = ID),
        ("agent_name" = AgentName, Path, description = "The agent"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "Save only if the state is at this version (its ETag)", pattern = r#"^(W/)?"?[1-9][0-9]{0,17}"?$"#),
    ),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created (version 1); `ETag` is the version", body = AgentState),
        (status = 200, description = "Saved; `ETag` is the new version", body = AgentState),
        (status = 400, description = "`validation_failed`: state is not a JSON object, a bad agent name, or If-Match is not a version", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation in this tenant", body = ErrorBody),
        (status = 412, description = "`version_conflict`: the state is at another version than If-Match names", body = ErrorBody),
    )
)]
pub async fn put_agent_state(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: JsonObject<PutAgentState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let (id, agent) = path.into_inner();
    let wanted = states::if_match(req.headers())?;
    let s = states::put_agent_state(&state, tenant, &principal, &id, &agent, wanted, body.into_inner()).await?;
    Ok(saved(&s.value, s.value.version, s.created))
}

/// An agent's current state in the conversation, with its version as `ETag` (reader).
#[utoipa::path(
    get, path = "/v1/conversations/{id}/agents/{agent_name}/state", tag = "conversations",
    params(
        ("id" = String, Path, description = ID),
        ("agent_name" = AgentName, Path, description = "The agent"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The state", body = AgentState),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, or no state of this agent", body = ErrorBody),
    )
)]
pub async fn get_agent_state(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    let (id, agent) = path.into_inner();
    let s = states::get_agent_state(&state, tenant, &id, &agent).await?;
    Ok(saved(&s, s.version, false))
}

/// Saves the conversation's workflow (type, current step, state) and appends the save to its
/// history; `If-Match: <version>` makes it conditional (writer).
#[utoipa::path(
    put, path = "/v1/conversations/{id}/workflow", tag = "conversations", request_body = PutWorkflow,
    params(
        ("id" = String, Path, description = ID),
        ("If-Match" = Option<String>, Header, nullable = false, description = "Save only if the workflow is at this version (its ETag)", pattern = r#"^(W/)?"?[1-9][0-9]{0,17}"?$"#),
    ),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created (version 1); `ETag` is the version", body = Workflow),
        (status = 200, description = "Saved; `ETag` is the new version", body = Workflow),
        (status = 400, description = "`validation_failed`: state is not a JSON object, a bad field, or If-Match is not a version", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation in this tenant", body = ErrorBody),
        (status = 412, description = "`version_conflict`: the workflow is at another version than If-Match names", body = ErrorBody),
    )
)]
pub async fn put_workflow(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    id: web::Path<String>,
    body: JsonObject<PutWorkflow>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let wanted = states::if_match(req.headers())?;
    let w = states::put_workflow(&state, tenant, &principal, &id, wanted, body.into_inner()).await?;
    Ok(saved(&w.value, w.value.version, w.created))
}

/// The conversation's workflow as last saved: where a restarted orchestrator resumes (reader).
#[utoipa::path(
    get, path = "/v1/conversations/{id}/workflow", tag = "conversations", params(("id" = String, Path, description = ID)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The workflow", body = Workflow),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, or it has no workflow", body = ErrorBody),
    )
)]
pub async fn get_workflow(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    let w = states::get_workflow(&state, tenant, &id).await?;
    Ok(saved(&w, w.version, false))
}

/// Every save of the conversation's workflow, oldest first (reader).
#[utoipa::path(
    get, path = "/v1/conversations/{id}/workflow/history", tag = "conversations",
    params(("id" = String, Path, description = ID), HistoryPage),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The saves", body = WorkflowHistory),
        (status = 400, description = "`validation_failed` / `invalid_request`: a bad after or limit", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation in this tenant", body = ErrorBody),
    )
)]
pub async fn workflow_history(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    query: web::Query<HistoryPage>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(states::workflow_history(&state, tenant, &id, &query).await?))
}

/// Erases a user: their conversations, messages and vectors, agent states, workflows and
/// workflow history, memories and memory history, in one transaction; returns the counts
/// (owner).
#[utoipa::path(
    delete, path = "/v1/users/{user_id}/data", tag = "conversations",
    params(("user_id" = UserId, Path, description = "The user")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What was removed (zeros for a user with no data)", body = Erased),
        (status = 403, description = "`forbidden`: needs an owner of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: the user id breaks the naming rules, so no user has it", body = ErrorBody),
    )
)]
pub async fn erase_user(
    state: web::Data<AppState>,
    principal: Principal,
    user: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Owner)?;
    Ok(HttpResponse::Ok().json(states::erase_user(&state, tenant, &principal, &user).await?))
}
