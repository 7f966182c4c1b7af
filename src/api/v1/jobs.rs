//! HTTP handlers of `/v1/jobs`: a tenant's jobs, their progress, and cancelling.

use actix_web::{web, HttpResponse};
use uuid::Uuid;

use crate::auth::{Principal, Role};
use crate::db::tenant_tx;
use crate::error::{ApiError, ErrorBody};
use crate::http::pagination::{Cursor, Limit};
use crate::jobs::model::{Job, JobFilter, JobList};
use crate::jobs::store;
use crate::state::AppState;

/// Lists the tenant's jobs, newest first (reader).
#[utoipa::path(
    get, path = "/v1/jobs", tag = "jobs", params(JobFilter),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = 400, description = "`validation_failed` / `invalid_request`: a bad state, kind, limit or cursor", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
    )
)]
pub async fn list_jobs(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<JobFilter>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    if query.collection.as_ref().is_some_and(|c| c.is_empty() || c.len() > 63) {
        return Err(ApiError::validation(
            "collection",
            "a collection name is 1 to 63 characters",
        ));
    }
    let limit = Limit::parse(query.limit)?;
    let cursor = query.cursor.as_deref().map(Cursor::parse).transpose()?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let page = store::list(&tx, &query, limit, cursor).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(page))
}

/// One job: its state, progress (done, total, rate, ETA) and errors (reader).
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 400, description = "`invalid_request`: the id is not a UUID", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such job in this tenant", body = ErrorBody),
    )
)]
pub async fn get_job(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let job = store::get(&tx, id.into_inner()).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(job))
}

/// Cancels a job (writer): a queued one at once, a running one at its next checkpoint, leaving
/// consistent data (an import keeps the whole documents it wrote; a reindex or re-embed keeps
/// the old index or vectors).
#[utoipa::path(
    delete, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's id")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Cancel asked for: the job as it is now (`cancelled` if it was queued, else `cancel_requested`)", body = Job),
        (status = 400, description = "`invalid_request`: the id is not a UUID", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such job in this tenant", body = ErrorBody),
        (status = 409, description = "`job_finished`: the job has completed, failed or been cancelled already", body = ErrorBody),
    )
)]
pub async fn cancel_job(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let job = store::cancel(&tx, id.into_inner()).await?;
    crate::audit::record(
        &tx,
        tenant,
        &principal,
        crate::audit::Event::new("job.cancel", "job", job.id).details(serde_json::json!({"kind": job.kind.as_str()})),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Accepted().json(job))
}
