//! Startup steps for authentication: the JWT secret and the first-run tenant and owner key.

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use deadpool_postgres::Pool;
use rand::RngCore;

use crate::audit::{self, Event};
use crate::auth::{keys, token, Actor, Principal, Role};

/// The configured secret (which must be long enough), or the one generated on first start and
/// kept in `onebase_meta`, so that tokens survive restarts without any configuration.
pub async fn jwt_secret(pool: &Pool, configured: Option<&str>) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = configured {
        anyhow::ensure!(
            secret.len() >= token::MIN_SECRET_LEN,
            "ONEBASE_JWT_SECRET must be at least {} bytes (it is {})",
            token::MIN_SECRET_LEN,
            secret.len()
        );
        return Ok(secret.as_bytes().to_vec());
    }
    let mut fresh = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut fresh);
    let client = pool.get().await.context("connecting to PostgreSQL")?;
    client
        .execute(
            "INSERT INTO onebase_meta (key, value) VALUES ('jwt_secret', to_jsonb($1::text)) ON CONFLICT (key) DO NOTHING",
            &[&STANDARD.encode(fresh)],
        )
        .await
        .context("storing the JWT secret")?;
    let stored: String = client
        .query_one("SELECT value #>> '{}' FROM onebase_meta WHERE key = 'jwt_secret'", &[])
        .await
        .context("reading the JWT secret")?
        .get(0);
    STANDARD.decode(stored).context("decoding the stored JWT secret")
}

pub struct FirstRun {
    pub tenant_id: uuid::Uuid,
    pub owner_key: String,
}

/// On the very first start of a database, creates the `default` tenant and an owner key for it.
/// Runs at most once per database, even with several servers starting together: the marker row
/// is inserted in the same transaction.
pub async fn first_run(pool: &Pool) -> anyhow::Result<Option<FirstRun>> {
    let mut client = pool.get().await.context("connecting to PostgreSQL")?;
    let tx = client.transaction().await?;
    let claimed = tx
        .execute(
            "INSERT INTO onebase_meta (key, value) VALUES ('first_run', jsonb_build_object('at', now())) \
             ON CONFLICT (key) DO NOTHING",
            &[],
        )
        .await?;
    if claimed == 0 {
        return Ok(None);
    }
    let tenant_id: uuid::Uuid = tx
        .query_one("INSERT INTO tenants (name) VALUES ('default') RETURNING id", &[])
        .await?
        .try_get("id")?;
    let key = keys::generate();
    let key_id: uuid::Uuid = tx
        .query_one(
            "INSERT INTO api_keys (tenant_id, name, prefix, secret_hash, role, created_by) \
             VALUES ($1, 'first-run owner key', $2, $3, 'owner', 'system') RETURNING id",
            &[&tenant_id, &key.prefix, &key.hash.as_slice()],
        )
        .await?
        .try_get("id")?;
    let system = Principal {
        actor: Actor::System,
        role: Role::Admin,
        tenant_id: None,
    };
    audit::record(
        &tx,
        tenant_id,
        &system,
        Event::new("tenant.create", "tenant", tenant_id).details(serde_json::json!({"name": "default"})),
    )
    .await
    .context("recording the default tenant's creation")?;
    audit::record(
        &tx,
        tenant_id,
        &system,
        Event::new("api_key.create", "api_key", key_id).details(serde_json::json!({"role": "owner"})),
    )
    .await
    .context("recording the owner key's creation")?;
    tx.commit().await?;
    Ok(Some(FirstRun {
        tenant_id,
        owner_key: key.key,
    }))
}
