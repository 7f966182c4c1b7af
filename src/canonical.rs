//! Canonical JSON and its hash: object keys sorted, no whitespace, numbers as serde_json prints
//! them. Two values that differ only in key order or formatting hash the same, which is what
//! the cache's change detection and the runs' idempotency check compare.

use sha2::{Digest, Sha256};

/// Appends the canonical text of `value` to `out`.
pub fn write(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The canonical text of `value`.
pub fn text(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// SHA-256 of the canonical text.
pub fn hash(value: &serde_json::Value) -> Vec<u8> {
    Sha256::digest(text(value).as_bytes()).to_vec()
}

/// `sha256:<hex>`, as responses show a hash.
pub fn display(hash: &[u8]) -> String {
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn key_order_and_whitespace_do_not_change_the_hash() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b": [1, {"y": 2, "x": "s"}], "a": null}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"a":null,"b":[1,{"x":"s","y":2}]}"#).unwrap();
        assert_eq!(super::text(&a), r#"{"a":null,"b":[1,{"x":"s","y":2}]}"#);
        assert_eq!(super::hash(&a), super::hash(&b));
        assert_ne!(super::hash(&json!({"a": 1})), super::hash(&json!({"a": 2})));
        assert_ne!(super::hash(&json!([1, 2])), super::hash(&json!([2, 1])));
    }
}
