//! HTTP handlers of `/v1/runs` and `/v1/usage`: extract, authorize, call the service.

use actix_web::{web, HttpRequest, HttpResponse};
use uuid::Uuid;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ErrorBody};
use crate::http::body::JsonObject;
use crate::runs::children;
use crate::runs::model::{
    Artifact, ArtifactList, CreateArtifact, CreateLlmCall, CreateRun, CreateStep, LlmCall, LlmCallList, Run, RunFilter,
    RunList, RunStats, Step, StepList, UpdateRun, UsageParams, UsageReport,
};
use crate::runs::service::{self, Created};
use crate::runs::usage;
use crate::state::AppState;

/// A run id from a path: one that is not a UUID names no run (404, as for any unknown run).
fn run_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound {
        resource: "run",
        id: id.to_string(),
    })
}

/// The `Idempotency-Key` header, if sent.
fn idempotency_header(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    match req.headers().get("idempotency-key") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.to_string()))
            .map_err(|_| ApiError::validation("Idempotency-Key", "must be visible ASCII")),
    }
}

/// Creates a run (writer). With an idempotency key (the `Idempotency-Key` header or the body's
/// `idempotency_key`), a retry of the same request returns the original run with 200, also
/// when the retries race; the same key with a different request is a 409.
#[utoipa::path(
    post, path = "/v1/runs", tag = "runs", request_body = CreateRun,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: 1 to 256 characters, unique per tenant")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Run, links(
            ("GetRun" = (operation_id = "get_run", parameters(("id" = "$response.body#/id")))),
            ("UpdateRun" = (operation_id = "update_run", parameters(("id" = "$response.body#/id")))),
            ("DeleteRun" = (operation_id = "delete_run", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 200, description = "A retry with the same idempotency key and request: the original run (header `Idempotent-Replayed: true`)", body = Run),
        (status = 400, description = "`validation_failed`: a bad field, or the header and body keys differ", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: the `index` collection does not exist", body = ErrorBody),
        (status = 409, description = "`idempotency_conflict`: the key was used for a different request; `conflict`: the id or trace_id is taken", body = ErrorBody),
    )
)]
pub async fn create_run(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    body: JsonObject<CreateRun>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let key = idempotency_header(&req)?;
    Ok(
        match service::create(&state, tenant, &principal, key, body.into_inner()).await? {
            Created::New(run) => HttpResponse::Created().json(run),
            Created::Replayed(run) => HttpResponse::Ok()
                .insert_header(("Idempotent-Replayed", "true"))
                .json(run),
        },
    )
}

/// Lists runs, newest first, by actor, status and creation time (reader).
#[utoipa::path(
    get, path = "/v1/runs", tag = "runs", params(RunFilter),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of runs (without their artifacts)", body = RunList),
        (status = 400, description = "`validation_failed` / `invalid_request`: a bad filter, limit or cursor", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
    )
)]
pub async fn list_runs(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<RunFilter>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(service::list(&state, tenant, &query).await?))
}

/// One run with its artifacts (reader).
#[utoipa::path(
    get, path = "/v1/runs/{id}", tag = "runs", params(("id" = Uuid, Path, description = "The run's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The run", body = Run),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such run in this tenant (or the id is not a UUID)", body = ErrorBody),
    )
)]
pub async fn get_run(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(service::get(&state, tenant, run_id(&id)?).await?))
}

/// Changes a run's status (queued -> running -> completed | failed | cancelled), end time,
/// error message or metadata (writer).
#[utoipa::path(
    patch, path = "/v1/runs/{id}", tag = "runs", request_body = UpdateRun,
    params(("id" = Uuid, Path, description = "The run's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The run as updated", body = Run),
        (status = 400, description = "`validation_failed`: a bad field", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such run in this tenant (or the id is not a UUID)", body = ErrorBody),
        (status = 409, description = "`invalid_transition`: the lifecycle does not allow this status change, or `completed_at` is given for a run that has not ended", body = ErrorBody),
    )
)]
pub async fn update_run(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: JsonObject<UpdateRun>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    Ok(HttpResponse::Ok().json(service::update(&state, tenant, &principal, run_id(&id)?, body.into_inner()).await?))
}

/// Deletes a run with its steps, artifacts, LLM calls and indexed document, in one transaction
/// (writer).
#[utoipa::path(
    delete, path = "/v1/runs/{id}", tag = "runs", params(("id" = Uuid, Path, description = "The run's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such run in this tenant (or the id is not a UUID)", body = ErrorBody),
    )
)]
pub async fn delete_run(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    service::delete(&state, tenant, &principal, run_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Records a step of a run (writer).
#[utoipa::path(
    post, path = "/v1/runs/{id}/steps", tag = "runs", request_body = CreateStep,
    params(("id" = Uuid, Path, description = "The run's id")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Step),
        (status = 400, description = "`validation_failed`: a bad field, or `llm_call_id` is not a call of this run", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such run in this tenant (or the id is not a UUID)", body = ErrorBody),
        (status = 409, description = "`conflict`: the run has a step of this number", body = ErrorBody),
    )
)]
pub async fn create_step(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: JsonObject<CreateStep>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let step = children::add_step(&state, tenant, &principal, run_id(&id)?, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(step))
}

/// A run's steps, by step number (reader).
#[utoipa::path(
    get, path = "/v1/runs/{id}/steps", tag = "runs", params(("id" = Uuid, Path, description = "The run's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The steps", body = StepList),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such run in this tenant (or the id is not a UUID)", body = ErrorBody),
    )
)]
pub async fn list_steps(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(StepList {
        data: children::steps(&state, tenant, run_id(&id)?).await?,
    }))
}

/// Records an artifact a run produced (writer).
#[utoipa::path(
    post, path = "/v1/runs/{id}/artifacts", tag = "runs", request_body = CreateArtifact,
    params(("id" = Uuid, Path, description = "The run's id")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Artifact),
        (status = 400, description = "`validation_failed`: a bad field", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such run in this tenant (or the id is not a UUID)", body = ErrorBody),
    )
)]
pub async fn create_artifact(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: JsonObject<CreateArtifact>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let artifact = children::add_artifact(&state, tenant, &principal, run_id(&id)?, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(artifact))
}

/// A run's artifacts, oldest first (reader).
#[utoipa::path(
    get, path = "/v1/runs/{id}/artifacts", tag = "runs", params(("id" = Uuid, Path, description = "The run's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The artifacts", body = ArtifactList),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such run in this tenant (or the id is not a UUID)", body = ErrorBody),
    )
)]
pub async fn list_artifacts(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(ArtifactList {
        data: children::list_artifacts(&state, tenant, run_id(&id)?).await?,
    }))
}

/// Records an LLM call of a run: tokens, exact cost (a decimal string) and latency (writer).
#[utoipa::path(
    post, path = "/v1/runs/{id}/llm-calls", tag = "runs", request_body = CreateLlmCall,
    params(("id" = Uuid, Path, description = "The run's id")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = LlmCall),
        (status = 400, description = "`validation_failed`: negative tokens or latency, a cost that is not a decimal string, a `step_id` that is not a step of this run", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such run in this tenant (or the id is not a UUID)", body = ErrorBody),
    )
)]
pub async fn create_llm_call(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: JsonObject<CreateLlmCall>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let call = children::add_llm_call(&state, tenant, &principal, run_id(&id)?, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(call))
}

/// A run's LLM calls, oldest first (reader).
#[utoipa::path(
    get, path = "/v1/runs/{id}/llm-calls", tag = "runs", params(("id" = Uuid, Path, description = "The run's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The LLM calls", body = LlmCallList),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such run in this tenant (or the id is not a UUID)", body = ErrorBody),
    )
)]
pub async fn list_llm_calls(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(LlmCallList {
        data: children::llm_calls(&state, tenant, run_id(&id)?).await?,
    }))
}

/// A run's totals: steps, LLM calls, tokens, exact cost and duration (reader).
#[utoipa::path(
    get, path = "/v1/runs/{id}/stats", tag = "runs", params(("id" = Uuid, Path, description = "The run's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The run's totals", body = RunStats),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such run in this tenant (or the id is not a UUID)", body = ErrorBody),
    )
)]
pub async fn run_stats(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(usage::run_stats(&state, tenant, run_id(&id)?).await?))
}

/// Tokens and cost of the tenant's LLM calls, grouped by model, provider, actor or day (reader).
#[utoipa::path(
    get, path = "/v1/usage", tag = "runs", params(UsageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Usage by group, with totals", body = UsageReport),
        (status = 400, description = "`validation_failed` / `invalid_request`: a bad group_by or time", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
    )
)]
pub async fn get_usage(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<UsageParams>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(usage::usage(&state, tenant, &query).await?))
}
