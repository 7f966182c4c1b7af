//! The filter language against real PostgreSQL: every operator, compiled to SQL with bind
//! parameters, run over a small table of records.

use onebase::filter::{Columns, Filter, SqlParams};
use serde_json::json;

use crate::api::helpers::spawn_app;

const COLUMNS: Columns = Columns {
    metadata: "metadata",
    id: "id",
    created_at: "created_at",
    updated_at: "updated_at",
    text: "body",
    tsv: "tsv",
};

async fn matching(client: &deadpool_postgres::Object, filter: serde_json::Value) -> Vec<String> {
    let filter = Filter::parse(&filter, "filter").expect("valid filter");
    let mut params = SqlParams::new();
    let condition = filter.to_sql(&COLUMNS, "english", &mut params);
    let sql = format!("SELECT id FROM filter_records WHERE {condition} ORDER BY id");
    let rows = client
        .query(&sql, &params.as_refs())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn every_operator_means_what_it_means_in_chroma_and_mongodb() {
    let app = spawn_app().await;
    let client = app.pool.get().await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE filter_records (id text PRIMARY KEY, metadata jsonb NOT NULL, body text NOT NULL,
               tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED,
               created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
             INSERT INTO filter_records (id, metadata, body, created_at, updated_at) VALUES
               ('a', '{\"author\": \"ada\", \"year\": 2020, \"tags\": [\"ml\", \"db\"], \"info\": {\"pages\": 10}}',
                'Vectors live beside rows', '2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z'),
               ('b', '{\"author\": \"bob\", \"year\": 2021.0, \"tags\": [\"db\"], \"info\": {\"pages\": 30}, \"draft\": true}',
                'Running databases in production', '2026-02-01T00:00:00Z', '2026-02-02T00:00:00Z'),
               ('c', '{\"author\": \"cy\", \"year\": \"2022\", \"tags\": [], \"score\": null}',
                'The cat sat on the mat', '2026-03-01T00:00:00Z', '2026-03-02T00:00:00Z'),
               ('d', '{}', 'Nothing here', '2026-04-01T00:00:00Z', '2026-04-02T00:00:00Z');",
        )
        .await
        .unwrap();
    let cases = [
        (json!({"author": "ada"}), vec!["a"]),
        (json!({"author": {"$eq": "bob"}}), vec!["b"]),
        (json!({"year": 2021}), vec!["b"]), // 2021 matches 2021.0
        (json!({"author": {"$ne": "ada"}}), vec!["b", "c", "d"]), // includes records without the field
        (json!({"year": {"$gt": 2020}}), vec!["b"]), // the string "2022" is not a number
        (json!({"year": {"$gte": 2020}}), vec!["a", "b"]),
        (json!({"year": {"$lt": 2021}}), vec!["a"]),
        (json!({"year": {"$lte": 2021}}), vec!["a", "b"]),
        (json!({"year": {"$gte": "2000"}}), vec!["c"]), // strings with strings
        (json!({"author": {"$in": ["ada", "cy", "zed"]}}), vec!["a", "c"]),
        (json!({"author": {"$in": []}}), vec![]),
        (json!({"author": {"$nin": ["ada"]}}), vec!["b", "c", "d"]),
        (json!({"draft": {"$exists": true}}), vec!["b"]),
        (json!({"draft": {"$exists": false}}), vec!["a", "c", "d"]),
        (json!({"score": {"$exists": true}}), vec!["c"]), // present, with a null value
        (json!({"score": null}), vec!["a", "b", "c", "d"]), // null or missing, as MongoDB
        (json!({"tags": {"$contains": "db"}}), vec!["a", "b"]),
        (json!({"tags": {"$not_contains": "ml"}}), vec!["b", "c", "d"]),
        (json!({"tags": ["db"]}), vec!["b"]), // $eq on an array is exact
        (json!({"info.pages": {"$gt": 20}}), vec!["b"]),
        (json!({"metadata.info.pages": 10}), vec!["a"]),
        (
            json!({"$and": [{"tags": {"$contains": "db"}}, {"year": {"$gt": 2020}}]}),
            vec!["b"],
        ),
        (json!({"$or": [{"author": "ada"}, {"author": "cy"}]}), vec!["a", "c"]),
        (json!({"$not": {"author": "ada"}}), vec!["b", "c", "d"]),
        (json!({"id": {"$in": ["a", "d"]}}), vec!["a", "d"]),
        (json!({"id": {"$gt": "b"}}), vec!["c", "d"]),
        (
            json!({"created_at": {"$gte": "2026-02-01T00:00:00Z"}}),
            vec!["b", "c", "d"],
        ),
        (json!({"updated_at": {"$lt": "2026-02-02T00:00:00+00:00"}}), vec!["a"]),
        (json!({"$text": {"$contains": "cat"}}), vec!["c"]),
        (json!({"$text": {"$contains": "Cat"}}), vec![]), // case-sensitive, as ChromaDB
        (json!({"$text": {"$not_contains": "a"}}), vec!["a", "d"]),
        (json!({"$text": {"$search": "database"}}), vec!["b"]), // stemmed
        (json!({"$text": {"$search": "vector -rows"}}), vec![]),
        (json!({"$text": {"$search": "\"cat sat\""}}), vec!["c"]),
    ];
    let mut wrong = vec![];
    for (filter, expected) in cases {
        let got = matching(&client, filter.clone()).await;
        if got != expected {
            wrong.push(format!("{filter}: got {got:?}, expected {expected:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
