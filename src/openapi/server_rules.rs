//! Rules the server enforces that the derived schemas do not state, written into the document so
//! that generated clients and fuzzers know them too (Schemathesis with every check on found them
//! missing):
//!
//! * a `filter` query parameter is JSON (a filter object, URL-encoded), not free text;
//! * a memory takes `expires_at` or `ttl_seconds`, not both.
//!
//! Not stated: "no U+0000 in a string". The server refuses it only where PostgreSQL would store
//! it; a search query, the embeddings endpoint's `user` and some state fields take it, and error
//! messages can echo it back, so a pattern on every string would be false.

use serde_json::{json, Map, Value};

/// Schemas that take `expires_at` or `ttl_seconds` but not both.
const ONE_EXPIRY: [&str; 2] = ["AddMemory", "UpdateMemory"];

pub fn state(doc: &mut Value) {
    filters_are_json(doc);
    for name in ONE_EXPIRY {
        if let Some(schema) = doc
            .pointer_mut(&format!("/components/schemas/{name}"))
            .and_then(Value::as_object_mut)
        {
            one_expiry(schema);
        }
    }
}

/// `filter` query parameters: `content: application/json` with an object schema in place of a
/// string schema, so that a client encodes the filter as JSON.
fn filters_are_json(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for operation in item.values_mut().filter_map(Value::as_object_mut) {
            let Some(params) = operation.get_mut("parameters").and_then(Value::as_array_mut) else {
                continue;
            };
            for param in params.iter_mut().filter_map(Value::as_object_mut) {
                if param.get("in").and_then(Value::as_str) == Some("query")
                    && param.get("name").and_then(Value::as_str) == Some("filter")
                {
                    param.remove("schema");
                    param.insert(
                        "content".into(),
                        json!({"application/json": {"schema": {"type": "object", "additionalProperties": true}}}),
                    );
                }
            }
        }
    }
}

/// Neither both present and non-null: `not` of (both present, neither null).
fn one_expiry(schema: &mut Map<String, Value>) {
    schema.insert(
        "not".into(),
        json!({
            "required": ["expires_at", "ttl_seconds"],
            "properties": {
                "expires_at": {"not": {"type": "null"}},
                "ttl_seconds": {"not": {"type": "null"}}
            }
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_query_parameter_is_json() {
        let mut doc = json!({"paths": {"/v1/x": {"get": {"parameters": [
            {"name": "filter", "in": "query", "schema": {"type": "string"}},
            {"name": "limit", "in": "query", "schema": {"type": "integer"}}
        ]}}}});

        state(&mut doc);

        let params = &doc["paths"]["/v1/x"]["get"]["parameters"];
        assert!(params[0].get("schema").is_none());
        assert_eq!(params[0]["content"]["application/json"]["schema"]["type"], "object");
        assert_eq!(params[1]["schema"]["type"], "integer");
    }

    #[test]
    fn a_memory_takes_one_expiry() {
        let mut doc = json!({"components": {"schemas": {"AddMemory": {"type": "object"}}}});

        state(&mut doc);

        let not = &doc["components"]["schemas"]["AddMemory"]["not"];
        assert_eq!(not["required"], json!(["expires_at", "ttl_seconds"]));
    }
}
