//! Retention in one place: each rule deletes exactly what is due, under the server's values or a
//! tenant's overrides, through the periodic sweep job; `GET /v1/admin/retention` and `/metrics`
//! report it.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::helpers::{json, spawn_app_with, TestApp, ADMIN_KEY};

async fn call_as(app: &TestApp, key: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.with(method, path, key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    json(req.send().await.unwrap()).await
}

async fn exec(app: &TestApp, sql: &str) -> u64 {
    app.pool.get().await.unwrap().execute(sql, &[]).await.unwrap()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.pool.get().await.unwrap().query_one(sql, &[]).await.unwrap().get(0)
}

/// Rows for one tenant in every table a rule covers: one due, one not (by the values given).
async fn seed(app: &TestApp, key: &str, tenant: uuid::Uuid, tag: &str, ages: [&str; 10]) {
    let [audit_due, audit_kept, hist_due, hist_kept, exp_due, exp_kept, conv_due, conv_kept, job_due, job_kept] = ages;
    for (actor, age) in [("due", audit_due), ("kept", audit_kept)] {
        exec(
            app,
            &format!(
                "INSERT INTO audit_log (tenant_id, actor_type, actor_id, action, resource_type, created_at) \
             VALUES ('{tenant}', 'system', '{tag}-{actor}', 'test.seed', 'test', now() - interval '{age}')"
            ),
        )
        .await;
    }
    for v in 1..=3 {
        let (s, body) = call_as(app, key, Method::PUT, "/v1/cache/ns/versions", Some(json!({"data": v}))).await;
        assert!(s == 200 || s == 201, "{body}");
    }
    exec(app, &format!("UPDATE cache_history SET replaced_at = now() - interval '{hist_due}' WHERE tenant_id = '{tenant}' AND version = 1")).await;
    exec(app, &format!("UPDATE cache_history SET replaced_at = now() - interval '{hist_kept}' WHERE tenant_id = '{tenant}' AND version = 2")).await;
    for (k, age) in [("expired-due", exp_due), ("expired-kept", exp_kept)] {
        let (s, _) = call_as(
            app,
            key,
            Method::PUT,
            &format!("/v1/cache/ns/{k}"),
            Some(json!({"data": k})),
        )
        .await;
        assert_eq!(s, 201);
        exec(app, &format!("UPDATE cache_entries SET expires_at = now() - interval '{age}' WHERE tenant_id = '{tenant}' AND key = '{k}'")).await;
    }
    for (content, ttl) in [("I live in Lisbon", 3600), ("I am allergic to peanuts", 3600)] {
        let (s, body) = call_as(
            app,
            key,
            Method::POST,
            "/v1/memories",
            Some(json!({"content": content, "user_id": "u1", "ttl_seconds": ttl})),
        )
        .await;
        assert_eq!(s, 201, "{body}");
    }
    exec(app, &format!("UPDATE memories SET expires_at = now() - interval '1 second' WHERE tenant_id = '{tenant}' AND content LIKE '%Lisbon%'")).await;
    for (id, age) in [("conv-due", conv_due), ("conv-kept", conv_kept)] {
        let (s, body) = call_as(
            app,
            key,
            Method::POST,
            "/v1/conversations",
            Some(json!({"id": id, "user_id": "u1"})),
        )
        .await;
        assert_eq!(s, 201, "{body}");
        let (s, _) = call_as(
            app,
            key,
            Method::POST,
            &format!("/v1/conversations/{id}/messages"),
            Some(json!({"role": "user", "content": "hello"})),
        )
        .await;
        assert_eq!(s, 201);
        exec(app, &format!("UPDATE conversations SET updated_at = now() - interval '{age}' WHERE tenant_id = '{tenant}' AND id = '{id}'")).await;
    }
    for (name, age) in [("job-due", job_due), ("job-kept", job_kept)] {
        exec(
            app,
            &format!(
                "INSERT INTO jobs (tenant_id, kind, state, collection_name, finished_at) \
             VALUES ('{tenant}', 'reindex', 'completed', '{tag}-{name}', now() - interval '{age}')"
            ),
        )
        .await;
    }
}

#[tokio::test]
async fn each_rule_deletes_exactly_what_is_due_with_tenant_overrides() {
    let app = spawn_app_with(|c| {
        c.sweep_interval_secs = 3600.0; // run by hand below
        c.retention_audit_log_days = 90;
        c.cache_history_days = 90;
        c.cache_keep_expired_secs = 3600;
        c.retention_conversations_days = 0;
        c.retention_jobs_days = 30;
    })
    .await;
    let a = app.default_tenant;
    let b = app.create_tenant("strict").await;
    let (_, key_b) = app.create_key(b, "owner").await;

    // Bad overrides are refused and change nothing.
    for (settings, needle) in [
        (json!({"retention": {"audit_log_days": -1}}), "audit_log_days"),
        (json!({"retention": {"audit_days": 10}}), "not a retention setting"),
        (json!({"retention": 7}), "must be an object"),
        (json!({"retention": {"jobs_days": "ten"}}), "jobs_days"),
    ] {
        let (status, body) = call_as(
            &app,
            ADMIN_KEY,
            Method::PATCH,
            &format!("/v1/tenants/{b}"),
            Some(json!({"settings": settings})),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains(needle), "{body}");
    }
    let overrides = json!({"retention": {"audit_log_days": 10, "conversations_days": 5, "cache_history_days": 0,
        "cache_keep_expired_secs": 0, "jobs_days": 1}});
    let (status, body) = call_as(
        &app,
        ADMIN_KEY,
        Method::PATCH,
        &format!("/v1/tenants/{b}"),
        Some(json!({"settings": overrides})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Tenant A on the server's values: audit 90 d, history 90 d, expired kept 1 h,
    // conversations forever, jobs 30 d.
    seed(
        &app,
        &app.owner_key,
        a,
        "a",
        [
            "100 days",
            "50 days",
            "100 days",
            "10 days",
            "2 hours",
            "30 minutes",
            "1000 days",
            "1 day",
            "40 days",
            "20 days",
        ],
    )
    .await;
    // Tenant B on its own: audit 10 d, history forever, expired at once, conversations 5 d,
    // jobs 1 d.
    seed(
        &app,
        &key_b,
        b,
        "b",
        [
            "50 days",
            "5 days",
            "5000 days",
            "5000 days",
            "1 minute",
            "-1 hour",
            "6 days",
            "4 days",
            "2 days",
            "12 hours",
        ],
    )
    .await;
    exec(&app, "INSERT INTO admin_audit_log (actor_type, actor_id, action, resource_type, created_at) VALUES \
        ('admin', 'due', 'test.seed', 'test', now() - interval '100 days'), ('admin', 'kept', 'test.seed', 'test', now() - interval '10 days')").await;
    // Tenant B's history rows are all kept, so one of tenant A's is the only due one; B's
    // not-yet-expired entry (expires in an hour) stays.
    let before_a_conversations = count(
        &app,
        &format!("SELECT count(*) FROM conversations WHERE tenant_id = '{a}'"),
    )
    .await;
    assert_eq!(before_a_conversations, 2);

    // Run the sweep now, on the jobs machinery.
    let started = count(
        &app,
        "SELECT count(*) FROM jobs WHERE kind = 'sweep' AND state = 'completed'",
    )
    .await;
    assert_eq!(
        exec(
            &app,
            "UPDATE jobs SET run_after = now() WHERE kind = 'sweep' AND state = 'queued'"
        )
        .await,
        1
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(
        &app,
        "SELECT count(*) FROM jobs WHERE kind = 'sweep' AND state IN ('completed', 'failed')",
    )
    .await
        <= started
    {
        assert!(Instant::now() < deadline, "the sweep did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, view) = call_as(&app, ADMIN_KEY, Method::GET, "/v1/admin/retention", None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["last_run"]["state"], "completed", "{view}");
    let expected = json!({"audit_log": 3, "cache_expired": 2, "cache_history": 1, "memories_expired": 2,
        "conversations": 1, "jobs_finished": 2});
    assert_eq!(view["last_run"]["report"]["deleted"], expected, "{view}");
    let rules = view["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 6);
    let audit = rules.iter().find(|r| r["rule"] == "audit_log").unwrap();
    assert_eq!(audit["server_value"], 90.0);
    assert_eq!(audit["tenant_setting"], "retention.audit_log_days");
    assert_eq!(
        audit["tenant_overrides"],
        json!([{"tenant_id": b, "tenant": "strict", "value": 10.0}]),
        "{audit}"
    );
    assert_eq!(audit["last_deleted"], 3);
    let (status, _) = call_as(&app, &app.owner_key, Method::GET, "/v1/admin/retention", None).await;
    assert_eq!(status, 403, "a tenant's owner does not read the server's rules");

    // Exactly the due rows went.
    let left = |sql: String| {
        let app = &app;
        async move {
            let client = app.pool.get().await.unwrap();
            let rows = client.query(&sql, &[]).await.unwrap();
            rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        left("SELECT actor_id FROM audit_log WHERE action = 'test.seed' ORDER BY 1".into()).await,
        ["a-kept", "b-kept"]
    );
    assert_eq!(
        left("SELECT actor_id FROM admin_audit_log WHERE action = 'test.seed' ORDER BY 1".into()).await,
        ["kept"]
    );
    assert_eq!(
        left("SELECT (CASE WHEN tenant_id = (SELECT id FROM tenants WHERE name = 'strict') THEN 'b' ELSE 'a' END) || version FROM cache_history ORDER BY 1".into()).await,
        ["a2", "b1", "b2"]
    );
    assert_eq!(
        left("SELECT (CASE WHEN tenant_id = (SELECT id FROM tenants WHERE name = 'strict') THEN 'b-' ELSE 'a-' END) || key FROM cache_entries ORDER BY 1".into()).await,
        ["a-expired-kept", "a-versions", "b-expired-kept", "b-versions"]
    );
    assert_eq!(
        left("SELECT content FROM memories ORDER BY 1".into()).await,
        ["I am allergic to peanuts", "I am allergic to peanuts"]
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM memory_history WHERE reason = 'expired'").await,
        2,
        "the purge is in the history"
    );
    assert_eq!(
        left("SELECT (CASE WHEN tenant_id = (SELECT id FROM tenants WHERE name = 'strict') THEN 'b-' ELSE 'a-' END) || id FROM conversations ORDER BY 1".into()).await,
        ["a-conv-due", "a-conv-kept", "b-conv-kept"],
        "tenant A keeps conversations forever (the server's 0), B for 5 days"
    );
    assert_eq!(
        count(&app, &format!("SELECT count(*) FROM messages WHERE tenant_id = '{b}'")).await,
        1,
        "the deleted conversation's messages went with it"
    );
    assert_eq!(
        left("SELECT collection_name FROM jobs WHERE kind = 'reindex' ORDER BY 1".into()).await,
        ["a-job-kept", "b-job-kept"]
    );

    // The same in /metrics.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for (rule, n) in expected.as_object().unwrap() {
        let line = format!("onebase_retention_deleted_total{{rule=\"{rule}\"}} {n}");
        assert!(metrics.lines().any(|l| l == line), "no `{line}` in /metrics");
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("onebase_retention_last_run_timestamp_seconds ") && !l.ends_with(" 0")),
        "{metrics}"
    );
}
