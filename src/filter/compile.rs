//! Compiling a [`Filter`] to a SQL condition. User values only ever become bind parameters; the
//! SQL text holds nothing but the column expressions the caller names and fixed operators.

use serde_json::Value;
use tokio_postgres::types::ToSql;

use super::{Filter, Op, RecordField, TextOp};

/// The column expressions a filter is compiled against (e.g. `c.metadata`). They come from the
/// server's own code, never from a request.
#[derive(Debug, Clone, Copy)]
pub struct Columns<'a> {
    pub metadata: &'a str,
    pub id: &'a str,
    pub created_at: &'a str,
    pub updated_at: &'a str,
    pub text: &'a str,
    pub tsv: &'a str,
}

/// Bind parameters collected while building a statement.
#[derive(Default)]
pub struct SqlParams {
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl SqlParams {
    pub fn new() -> Self {
        SqlParams::default()
    }

    /// Adds a parameter; returns its placeholder (`$3`).
    pub fn push<T: ToSql + Sync + Send + 'static>(&mut self, value: T) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    pub fn as_refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}

impl Filter {
    /// A SQL boolean expression for this filter; `language` is the `regconfig` (a bind value)
    /// that `$text.$search` parses its query with.
    pub fn to_sql(&self, cols: &Columns, language: &str, params: &mut SqlParams) -> String {
        match self {
            Filter::And(parts) => join(parts, " AND ", cols, language, params),
            Filter::Or(parts) => join(parts, " OR ", cols, language, params),
            Filter::Not(inner) => format!("NOT coalesce({}, false)", inner.to_sql(cols, language, params)),
            Filter::Metadata { path, op } => metadata(cols.metadata, path, op, params),
            Filter::Record { field, op } => {
                let column = match field {
                    RecordField::Id => cols.id,
                    RecordField::CreatedAt => cols.created_at,
                    RecordField::UpdatedAt => cols.updated_at,
                };
                record(column, *field, op, params)
            }
            Filter::Text(op) => match op {
                TextOp::Contains(s) => format!("(strpos({}, {}) > 0)", cols.text, params.push(s.clone())),
                TextOp::NotContains(s) => format!("(strpos({}, {}) = 0)", cols.text, params.push(s.clone())),
                TextOp::Search(q) => format!(
                    "({} @@ websearch_to_tsquery({}::text::regconfig, {}))",
                    cols.tsv,
                    params.push(language.to_string()),
                    params.push(q.clone())
                ),
            },
        }
    }
}

fn join(parts: &[Filter], sep: &str, cols: &Columns, language: &str, params: &mut SqlParams) -> String {
    if parts.is_empty() {
        return if sep == " AND " { "true".into() } else { "false".into() };
    }
    let parts: Vec<String> = parts.iter().map(|p| p.to_sql(cols, language, params)).collect();
    format!("({})", parts.join(sep))
}

/// `{"a": {"b": value}}` for the path `a.b`: the shape `@>` containment matches.
fn nested(path: &[String], value: Value) -> Value {
    path.iter().rev().fold(value, |inner, key| {
        let mut map = serde_json::Map::new();
        map.insert(key.clone(), inner);
        Value::Object(map)
    })
}

fn metadata(column: &str, path: &[String], op: &Op, params: &mut SqlParams) -> String {
    let at = |params: &mut SqlParams| format!("({column} #> {}::text[])", params.push(path.to_vec()));
    let eq = |value: &Value, params: &mut SqlParams| -> String {
        match value {
            // Containment uses the GIN index; for a scalar at a path it is exact equality
            // (numbers by value: 1 matches 1.0).
            Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                format!("({column} @> {}::jsonb)", params.push(nested(path, value.clone())))
            }
            Value::Null => format!("(coalesce(jsonb_typeof({}), 'null') = 'null')", at(params)),
            Value::Array(_) | Value::Object(_) => format!("({} = {}::jsonb)", at(params), params.push(value.clone())),
        }
    };
    match op {
        Op::Eq(v) => eq(v, params),
        Op::Ne(v) => format!("(NOT {})", eq(v, params)),
        Op::Gt(v) | Op::Gte(v) | Op::Lt(v) | Op::Lte(v) => {
            let sql_op = match op {
                Op::Gt(_) => ">",
                Op::Gte(_) => ">=",
                Op::Lt(_) => "<",
                _ => "<=",
            };
            let kind = if v.is_number() { "number" } else { "string" };
            let value = at(params);
            format!(
                "(jsonb_typeof({value}) = '{kind}' AND {value} {sql_op} {}::jsonb)",
                params.push(v.clone())
            )
        }
        Op::In(vs) if vs.is_empty() => "false".to_string(),
        Op::In(vs) => format!("({} = ANY({}::jsonb[]))", at(params), params.push(vs.clone())),
        Op::Nin(vs) if vs.is_empty() => "true".to_string(),
        Op::Nin(vs) => format!(
            "(NOT coalesce({} = ANY({}::jsonb[]), false))",
            at(params),
            params.push(vs.clone())
        ),
        Op::Exists(true) => format!("({} IS NOT NULL)", at(params)),
        Op::Exists(false) => format!("({} IS NULL)", at(params)),
        Op::Contains(v) => format!(
            "({column} @> {}::jsonb)",
            params.push(nested(path, Value::Array(vec![v.clone()])))
        ),
        Op::NotContains(v) => format!(
            "(NOT ({column} @> {}::jsonb))",
            params.push(nested(path, Value::Array(vec![v.clone()])))
        ),
    }
}

/// Record fields are real columns: `id` text, the times timestamptz. The parser has checked the
/// values (strings; RFC 3339 for times) and refused the metadata-only operators.
fn record(column: &str, field: RecordField, op: &Op, params: &mut SqlParams) -> String {
    let bind = |value: &Value, params: &mut SqlParams| -> String {
        let s = value.as_str().unwrap_or_default().to_string();
        match field {
            RecordField::Id => params.push(s),
            RecordField::CreatedAt | RecordField::UpdatedAt => {
                let time = chrono::DateTime::parse_from_rfc3339(&s)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .unwrap_or_default();
                params.push(time)
            }
        }
    };
    let list = |values: &[Value], params: &mut SqlParams| -> String {
        match field {
            RecordField::Id => params.push(
                values
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>(),
            ),
            RecordField::CreatedAt | RecordField::UpdatedAt => params.push(
                values
                    .iter()
                    .map(|v| {
                        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default())
                            .map(|t| t.with_timezone(&chrono::Utc))
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>(),
            ),
        }
    };
    match op {
        Op::Eq(v) => format!("({column} = {})", bind(v, params)),
        Op::Ne(v) => format!("({column} <> {})", bind(v, params)),
        Op::Gt(v) => format!("({column} > {})", bind(v, params)),
        Op::Gte(v) => format!("({column} >= {})", bind(v, params)),
        Op::Lt(v) => format!("({column} < {})", bind(v, params)),
        Op::Lte(v) => format!("({column} <= {})", bind(v, params)),
        Op::In(vs) => format!("({column} = ANY({}))", list(vs, params)),
        Op::Nin(vs) => format!("(NOT ({column} = ANY({})))", list(vs, params)),
        // Refused by the parser for record fields.
        Op::Exists(_) | Op::Contains(_) | Op::NotContains(_) => "false".to_string(),
    }
}
