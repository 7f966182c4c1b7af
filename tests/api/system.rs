use crate::api::helpers::{json, spawn_app};

#[tokio::test]
async fn health_answers_ok_with_a_request_id() {
    let app = spawn_app().await;

    let res = app.get("/health").await;

    assert_eq!(res.status().as_u16(), 200);
    let id = res
        .headers()
        .get("x-request-id")
        .expect("request id header")
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(uuid::Uuid::parse_str(&id).map(|u| u.get_version_num()), Ok(4));
    let (_, body) = json(res).await;
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn a_sane_incoming_request_id_is_echoed_and_a_bad_one_replaced() {
    let app = spawn_app().await;

    let good = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "trace-abc.123")
        .send()
        .await
        .unwrap();
    let bad = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "has spaces/and\"quotes")
        .send()
        .await
        .unwrap();

    assert_eq!(good.headers()["x-request-id"], "trace-abc.123");
    let replaced = bad.headers()["x-request-id"].to_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(replaced).is_ok(),
        "replaced with a uuid, got {replaced}"
    );
}

#[tokio::test]
async fn ready_reports_postgres_18_pgvector_08_and_migrations() {
    let app = spawn_app().await;

    let (status, body) = json(app.get("/ready").await).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert!(
        body["postgres"]["version"].as_str().unwrap().starts_with("18."),
        "{body}"
    );
    assert_eq!(body["postgres"]["database"], app.db_name);
    let vector = body["extensions"]["vector"].as_str().expect("vector installed");
    assert!(vector.starts_with("0.8."), "pgvector 0.8.x, got {vector}");
    assert!(body["extensions"]["pg_trgm"].is_string());
    assert!(body["extensions"]["btree_gist"].is_string());
    let latest = onebase::db::migrations::embedded_versions()
        .iter()
        .map(|(v, _)| *v)
        .max();
    assert_eq!(body["migrations"]["applied_version"].as_i64(), latest);
    assert_eq!(body["migrations"]["latest_version"].as_i64(), latest);
    assert_eq!(body["pool"]["max_size"], 4);
}

#[tokio::test]
async fn ready_is_503_when_the_database_is_unreachable() {
    let app = spawn_app().await;
    // A closed pool answers every checkout with an error, as an unreachable database would.
    app.pool.close();

    let res = app.get("/ready").await;

    crate::api::helpers::assert_error(res, 503, "database_unavailable").await;
}

#[tokio::test]
async fn metrics_count_requests_per_route_and_status_and_show_the_pool() {
    let app = spawn_app().await;
    app.get("/health").await;
    app.get("/health").await;
    app.get("/nope").await;

    let res = app.get("/metrics").await;

    assert_eq!(res.status().as_u16(), 200);
    let text = res.text().await.unwrap();
    assert!(
        text.contains(r#"onebase_http_requests_total{method="GET",route="/health",status="200"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"onebase_http_requests_total{method="GET",route="unmatched",status="404"} 1"#),
        "{text}"
    );
    assert!(text.contains("onebase_http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("onebase_db_pool_max_connections 4"), "{text}");
}

#[tokio::test]
async fn migrations_are_idempotent_on_restart() {
    let app = spawn_app().await;
    let before: i64 = count_meta(&app.pool).await;

    // A second server on the same database applies nothing and changes nothing.
    let applied = {
        let mut client = app.pool.get().await.unwrap();
        onebase::db::migrations::run(&mut client).await.unwrap()
    };
    onebase::startup::prepare_database(&app.pool).await.unwrap();

    assert!(applied.is_empty(), "nothing applied on restart, got {applied:?}");
    assert_eq!(count_meta(&app.pool).await, before);
    let mut client = app.pool.get().await.unwrap();
    let history = onebase::db::migrations::applied(&mut client).await.unwrap();
    assert_eq!(history.len(), onebase::db::migrations::embedded_versions().len());
}

async fn count_meta(pool: &deadpool_postgres::Pool) -> i64 {
    let client = pool.get().await.unwrap();
    client
        .query_one("SELECT count(*) FROM onebase_meta", &[])
        .await
        .unwrap()
        .get(0)
}
