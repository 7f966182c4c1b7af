//! The one filter language of every data plane: ChromaDB's `where` / MongoDB-style operators in
//! JSON, parsed into a [`Filter`] and compiled to a SQL condition whose every user-supplied value
//! is a bind parameter.
//!
//! ```json
//! {"$and": [{"author": "ada"}, {"year": {"$gte": 2020}}, {"tags": {"$contains": "ml"}},
//!           {"$text": {"$contains": "pgvector"}}]}
//! ```
//!
//! * `{"field": value}` is `{"field": {"$eq": value}}`; several keys in one object are ANDed, and so
//!   are several operators on one field.
//! * Fields: metadata by dotted path (`author.name`, or explicitly `metadata.author.name`), and the
//!   record fields `id`, `created_at`, `updated_at` (RFC 3339 times). `$text` takes `$contains` /
//!   `$not_contains` (a case-sensitive substring, as ChromaDB's `where_document`) or `$search`
//!   (full text, `websearch_to_tsquery` syntax, in the collection's language).
//! * Operators: `$eq $ne $gt $gte $lt $lte $in $nin $exists $contains $not_contains`, and
//!   `$and $or $not` over filters.
//! * Semantics as in MongoDB where ChromaDB is silent: `$ne` and `$nin` also match records without
//!   the field; `$gt`-style comparisons match only values of the operand's type (numbers with
//!   numbers, strings with strings); `$contains` is array membership; `$eq` on an array or object
//!   is exact equality.

mod compile;

pub use compile::{Columns, SqlParams};

use serde_json::Value;

pub use crate::error::FilterError;

/// Bounds that keep one filter cheap to parse and plan.
pub const MAX_DEPTH: usize = 16;
pub const MAX_CONDITIONS: usize = 256;
pub const MAX_LIST: usize = 1024;
const MAX_KEY_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Metadata { path: Vec<String>, op: Op },
    Record { field: RecordField, op: Op },
    Text(TextOp),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordField {
    Id,
    CreatedAt,
    UpdatedAt,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Contains(Value),
    NotContains(Value),
}

#[derive(Debug, Clone, PartialEq)]
pub enum TextOp {
    Contains(String),
    NotContains(String),
    Search(String),
}

impl Filter {
    /// Parses a filter; `root` names it in error paths (e.g. `filter`).
    pub fn parse(value: &Value, root: &str) -> Result<Filter, FilterError> {
        let mut parser = Parser { conditions: 0 };
        parser.filter(value, root, 0)
    }
}

struct Parser {
    conditions: usize,
}

fn err(path: &str, message: impl Into<String>) -> FilterError {
    FilterError {
        path: path.to_string(),
        message: message.into(),
    }
}

impl Parser {
    fn filter(&mut self, value: &Value, path: &str, depth: usize) -> Result<Filter, FilterError> {
        if depth > MAX_DEPTH {
            return Err(err(path, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let Value::Object(map) = value else {
            return Err(err(path, "a filter is a JSON object"));
        };
        if map.is_empty() {
            // `{}` matches everything, as in MongoDB and ChromaDB.
            return Ok(Filter::And(vec![]));
        }
        let mut parts = Vec::with_capacity(map.len());
        for (key, operand) in map {
            let here = format!("{path}.{key}");
            let part = match key.as_str() {
                "$and" | "$or" => {
                    let Value::Array(items) = operand else {
                        return Err(err(&here, format!("{key} takes an array of filters")));
                    };
                    if items.is_empty() {
                        return Err(err(&here, format!("{key} needs at least one filter")));
                    }
                    let filters = items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| self.filter(item, &format!("{here}[{i}]"), depth + 1))
                        .collect::<Result<Vec<_>, _>>()?;
                    if key == "$and" {
                        Filter::And(filters)
                    } else {
                        Filter::Or(filters)
                    }
                }
                "$not" => Filter::Not(Box::new(self.filter(operand, &here, depth + 1)?)),
                "$text" => self.text(operand, &here)?,
                k if k.starts_with('$') => {
                    return Err(err(
                        &here,
                        format!(
                            "unknown operator {k}; filters combine with $and, $or, $not, and match text with $text"
                        ),
                    ))
                }
                field => self.field(field, operand, &here)?,
            };
            parts.push(part);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::And(parts)
        })
    }

    fn count(&mut self, path: &str) -> Result<(), FilterError> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(err(path, format!("more than {MAX_CONDITIONS} conditions")));
        }
        Ok(())
    }

    fn text(&mut self, operand: &Value, path: &str) -> Result<Filter, FilterError> {
        let Value::Object(ops) = operand else {
            return Err(err(
                path,
                "$text takes {\"$contains\": ...}, {\"$not_contains\": ...} or {\"$search\": ...}",
            ));
        };
        let mut parts = vec![];
        for (op, value) in ops {
            let here = format!("{path}.{op}");
            self.count(&here)?;
            let Some(text) = value.as_str().filter(|s| !s.is_empty()) else {
                return Err(err(&here, "takes a non-empty string"));
            };
            let text = text.to_string();
            parts.push(Filter::Text(match op.as_str() {
                "$contains" => TextOp::Contains(text),
                "$not_contains" => TextOp::NotContains(text),
                "$search" => TextOp::Search(text),
                other => {
                    return Err(err(
                        &here,
                        format!("unknown text operator {other}; use $contains, $not_contains or $search"),
                    ))
                }
            }));
        }
        match parts.len() {
            0 => Err(err(path, "$text needs an operator")),
            1 => Ok(parts.remove(0)),
            _ => Ok(Filter::And(parts)),
        }
    }

    fn field(&mut self, key: &str, operand: &Value, path: &str) -> Result<Filter, FilterError> {
        if key.len() > MAX_KEY_LEN {
            return Err(err(path, format!("a field name is at most {MAX_KEY_LEN} bytes")));
        }
        let target = match key {
            "id" => Target::Record(RecordField::Id),
            "created_at" => Target::Record(RecordField::CreatedAt),
            "updated_at" => Target::Record(RecordField::UpdatedAt),
            _ => {
                let dotted = key.strip_prefix("metadata.").unwrap_or(key);
                let segments: Vec<String> = dotted.split('.').map(str::to_string).collect();
                if segments.iter().any(String::is_empty) {
                    return Err(err(
                        path,
                        "a field path has no empty segments (`a.b`, not `a..b` or `.a`)",
                    ));
                }
                Target::Metadata(segments)
            }
        };
        // {"field": {"$op": v, ...}} when every key is an operator; else {"field": value} is $eq.
        let ops: Vec<(String, &Value)> = match operand {
            Value::Object(map) if !map.is_empty() && map.keys().all(|k| k.starts_with('$')) => {
                map.iter().map(|(k, v)| (k.clone(), v)).collect()
            }
            Value::Object(map) if map.keys().any(|k| k.starts_with('$')) => {
                return Err(err(path, "mixes operators ($...) with plain keys"))
            }
            value => vec![("$eq".to_string(), value)],
        };
        let mut parts = Vec::with_capacity(ops.len());
        for (name, value) in ops {
            let here = format!("{path}.{name}");
            self.count(&here)?;
            let op = parse_op(&name, value, &here)?;
            parts.push(match &target {
                Target::Metadata(segments) => Filter::Metadata {
                    path: segments.clone(),
                    op,
                },
                Target::Record(field) => {
                    check_record_op(*field, &op, &here)?;
                    Filter::Record { field: *field, op }
                }
            });
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::And(parts)
        })
    }
}

enum Target {
    Metadata(Vec<String>),
    Record(RecordField),
}

fn parse_op(name: &str, value: &Value, path: &str) -> Result<Op, FilterError> {
    let comparable = |value: &Value| -> Result<Value, FilterError> {
        match value {
            Value::Number(_) | Value::String(_) => Ok(value.clone()),
            _ => Err(err(path, format!("{name} compares with a number or a string"))),
        }
    };
    let list = |value: &Value| -> Result<Vec<Value>, FilterError> {
        let Value::Array(items) = value else {
            return Err(err(path, format!("{name} takes an array")));
        };
        if items.len() > MAX_LIST {
            return Err(err(path, format!("{name} takes at most {MAX_LIST} values")));
        }
        Ok(items.clone())
    };
    Ok(match name {
        "$eq" => Op::Eq(value.clone()),
        "$ne" => Op::Ne(value.clone()),
        "$gt" => Op::Gt(comparable(value)?),
        "$gte" => Op::Gte(comparable(value)?),
        "$lt" => Op::Lt(comparable(value)?),
        "$lte" => Op::Lte(comparable(value)?),
        "$in" => Op::In(list(value)?),
        "$nin" => Op::Nin(list(value)?),
        "$exists" => Op::Exists(
            value
                .as_bool()
                .ok_or_else(|| err(path, "$exists takes true or false"))?,
        ),
        "$contains" => Op::Contains(value.clone()),
        "$not_contains" => Op::NotContains(value.clone()),
        other => {
            return Err(err(
                path,
                format!(
                    "unknown operator {other}; use $eq $ne $gt $gte $lt $lte $in $nin $exists $contains $not_contains"
                ),
            ))
        }
    })
}

/// `id` compares with strings; `created_at` / `updated_at` with RFC 3339 times. `$exists` and
/// `$contains` are for metadata.
fn check_record_op(field: RecordField, op: &Op, path: &str) -> Result<(), FilterError> {
    let values: Vec<&Value> = match op {
        Op::Eq(v) | Op::Ne(v) | Op::Gt(v) | Op::Gte(v) | Op::Lt(v) | Op::Lte(v) => vec![v],
        Op::In(vs) | Op::Nin(vs) => vs.iter().collect(),
        Op::Exists(_) | Op::Contains(_) | Op::NotContains(_) => {
            return Err(err(
                path,
                "applies to metadata fields, not id / created_at / updated_at",
            ))
        }
    };
    for value in values {
        let Some(s) = value.as_str() else {
            return Err(err(path, "compares with a string (an id, or an RFC 3339 time)"));
        };
        if field != RecordField::Id && chrono::DateTime::parse_from_rfc3339(s).is_err() {
            return Err(err(
                path,
                format!("`{s}` is not an RFC 3339 time (e.g. 2026-11-23T10:00:00Z)"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
