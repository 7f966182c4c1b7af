//! Rules the server enforces that the derived schemas do not state, written into the document so
//! that generated clients and fuzzers know them too (Schemathesis with every check on found them
//! missing):
//!
//! * a `filter` query parameter is JSON (a filter object, URL-encoded), not free text;
//! * a memory takes `expires_at` or `ttl_seconds`, not both;
//! * no string holds U+0000: the server refuses it in every body (`http::body::JsonObject`),
//!   path and query string (`api::refuse_nul`), so every string schema without a rule of its own
//!   says so. Error bodies are left out: a message may quote what the request sent.

use serde_json::{json, Map, Value};

/// Schemas that take `expires_at` or `ttl_seconds` but not both.
const ONE_EXPIRY: [&str; 2] = ["AddMemory", "UpdateMemory"];

/// A string without U+0000 (ECMA-262 and Python both read `\u0000` in a pattern).
const NO_NUL: &str = "^[^\\u0000]*$";

/// Schemas whose strings may quote a request's text back.
const ECHOES: [&str; 1] = ["ErrorBody"];

pub fn state(doc: &mut Value) {
    filters_are_json(doc);
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        for (name, schema) in schemas.iter_mut() {
            if !ECHOES.contains(&name.as_str()) {
                no_nul(schema);
            }
        }
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for operation in item.values_mut().filter_map(Value::as_object_mut) {
                for part in ["parameters", "requestBody"] {
                    if let Some(value) = operation.get_mut(part) {
                        no_nul(value);
                    }
                }
            }
        }
    }
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

/// Every string schema in `value` with no pattern, format, enum or const of its own gets
/// [`NO_NUL`]. (Those with one already rule U+0000 out: the ids' patterns, dates, uuids.)
fn no_nul(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let is_string = match map.get("type") {
                Some(Value::String(t)) => t == "string",
                Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
                _ => false,
            };
            let ruled = ["pattern", "format", "enum", "const"]
                .iter()
                .any(|k| map.contains_key(*k));
            if is_string && !ruled {
                map.insert("pattern".into(), NO_NUL.into());
            }
            map.values_mut().for_each(no_nul);
        }
        Value::Array(items) => items.iter_mut().for_each(no_nul),
        _ => {}
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
    fn strings_without_a_rule_of_their_own_refuse_nul() {
        let mut doc = json!({"components": {"schemas": {
            "Note": {"type": "object", "properties": {
                "text": {"type": "string"},
                "maybe": {"type": ["string", "null"]},
                "at": {"type": "string", "format": "date-time"},
                "id": {"type": "string", "pattern": "^[a-z]+$"},
                "tags": {"type": "array", "items": {"type": "string"}}
            }},
            "ErrorBody": {"type": "object", "properties": {"message": {"type": "string"}}}
        }}, "paths": {"/v1/x": {"get": {"parameters": [{"name": "q", "in": "query", "schema": {"type": "string"}}]}}}});

        state(&mut doc);

        let note = &doc["components"]["schemas"]["Note"]["properties"];
        assert_eq!(note["text"]["pattern"], NO_NUL);
        assert_eq!(note["maybe"]["pattern"], NO_NUL);
        assert_eq!(note["tags"]["items"]["pattern"], NO_NUL);
        assert!(note["at"].get("pattern").is_none());
        assert_eq!(note["id"]["pattern"], "^[a-z]+$");
        assert!(doc["components"]["schemas"]["ErrorBody"]["properties"]["message"]
            .get("pattern")
            .is_none());
        assert_eq!(
            doc["paths"]["/v1/x"]["get"]["parameters"][0]["schema"]["pattern"],
            NO_NUL
        );
        assert_eq!(NO_NUL, r"^[^\u0000]*$");
    }

    #[test]
    fn a_memory_takes_one_expiry() {
        let mut doc = json!({"components": {"schemas": {"AddMemory": {"type": "object"}}}});

        state(&mut doc);

        let not = &doc["components"]["schemas"]["AddMemory"]["not"];
        assert_eq!(not["required"], json!(["expires_at", "ttl_seconds"]));
    }
}
