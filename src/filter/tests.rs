use serde_json::json;

use super::*;

fn parse(value: serde_json::Value) -> Result<Filter, FilterError> {
    Filter::parse(&value, "filter")
}

fn error_path(value: serde_json::Value) -> String {
    parse(value).expect_err("invalid").path
}

const COLUMNS: Columns = Columns {
    metadata: "m",
    id: "id",
    created_at: "created_at",
    updated_at: "updated_at",
    text: "text",
    tsv: "tsv",
};

#[test]
fn shorthand_is_eq_and_several_keys_are_anded() {
    let filter = parse(json!({"author": "ada", "year": {"$gte": 2020, "$lt": 2030}})).unwrap();

    let Filter::And(parts) = filter else { panic!("and") };
    assert_eq!(parts.len(), 2);
    assert_eq!(
        parts[0],
        Filter::Metadata {
            path: vec!["author".into()],
            op: Op::Eq(json!("ada"))
        }
    );
    assert!(matches!(&parts[1], Filter::And(ops) if ops.len() == 2));
}

#[test]
fn dotted_paths_record_fields_and_text() {
    let filter = parse(json!({"$or": [
        {"metadata.a.b": 1}, {"a.b": 2}, {"id": {"$in": ["x", "y"]}},
        {"created_at": {"$gt": "2026-01-01T00:00:00Z"}}, {"$text": {"$contains": "cat"}}
    ]}))
    .unwrap();

    let Filter::Or(parts) = filter else { panic!("or") };
    assert_eq!(
        parts[0],
        Filter::Metadata {
            path: vec!["a".into(), "b".into()],
            op: Op::Eq(json!(1))
        }
    );
    assert_eq!(
        parts[1],
        Filter::Metadata {
            path: vec!["a".into(), "b".into()],
            op: Op::Eq(json!(2))
        }
    );
    assert!(matches!(
        parts[2],
        Filter::Record {
            field: RecordField::Id,
            ..
        }
    ));
    assert!(matches!(
        parts[3],
        Filter::Record {
            field: RecordField::CreatedAt,
            ..
        }
    ));
    assert_eq!(parts[4], Filter::Text(TextOp::Contains("cat".into())));
}

#[test]
fn errors_name_the_offending_clause() {
    assert_eq!(
        error_path(json!({"$and": [{"a": 1}, {"b": {"$gt": [1]}}]})),
        "filter.$and[1].b.$gt"
    );
    assert_eq!(error_path(json!({"a": {"$regex": "x"}})), "filter.a.$regex");
    assert_eq!(error_path(json!({"$nor": []})), "filter.$nor");
    assert_eq!(error_path(json!({"$and": []})), "filter.$and");
    assert_eq!(error_path(json!({"id": {"$exists": true}})), "filter.id.$exists");
    assert_eq!(
        error_path(json!({"created_at": {"$gt": "yesterday"}})),
        "filter.created_at.$gt"
    );
    assert_eq!(error_path(json!({"a..b": 1})), "filter.a..b");
    assert_eq!(error_path(json!({"a": {"$gt": 1, "b": 2}})), "filter.a");
    assert_eq!(
        error_path(json!({"$text": {"$contains": ""}})),
        "filter.$text.$contains"
    );
    assert_eq!(error_path(json!([1])), "filter");
    assert_eq!(parse(json!({})), Ok(Filter::And(vec![])), "{{}} matches everything");
    assert_eq!(error_path(json!({"a": {"$in": 3}})), "filter.a.$in");
}

#[test]
fn size_is_bounded() {
    let mut deep = json!({"a": 1});
    for _ in 0..=MAX_DEPTH {
        deep = json!({"$not": deep});
    }
    assert!(parse(deep).unwrap_err().message.contains("deeper"));
    let many: Vec<_> = (0..=MAX_CONDITIONS).map(|i| json!({"k": i})).collect();
    assert!(parse(json!({"$or": many})).unwrap_err().message.contains("conditions"));
}

#[test]
fn values_only_become_bind_parameters() {
    let hostile = "'; DROP TABLE tenants; --";
    let filter = parse(json!({hostile: hostile, "$text": {"$search": hostile}, "id": {"$nin": [hostile]}})).unwrap();
    let mut params = SqlParams::new();

    let sql = filter.to_sql(&COLUMNS, "english", &mut params);

    assert!(!sql.contains("DROP"), "{sql}");
    assert_eq!(params.len(), 4, "{sql}");
}
