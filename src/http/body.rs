//! Request-body extraction that matches what the OpenAPI schema promises.
//!
//! * [`JsonObject`]: actix's `Json<T>` with a derived `Deserialize` also takes a JSON *array*,
//!   because serde maps a sequence onto a struct's fields in order (`[null, null]` would be read
//!   as `{}`). The schemas say `type: object`, so anything else is refused as `invalid_request`.
//!   It also refuses U+0000 in any string of the body, key or value: PostgreSQL cannot store it,
//!   and one rule for every field (rather than wherever a write happens to fail) is one the
//!   OpenAPI document can state (`openapi::server_rules`).
//! * [`integer`]: JSON Schema's `integer` includes numbers written with a zero fraction (`5.0`),
//!   which serde's integer types refuse; these helpers take them, and only them.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::{web, FromRequest, HttpRequest};
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::error::ApiError;

/// A JSON request body that must be a JSON object with no U+0000 in it, deserialized into `T`.
/// Limits, content type and syntax errors are those of `web::Json` (configured in
/// [`crate::api::configure`]).
pub struct JsonObject<T>(pub T);

impl<T> JsonObject<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(ObjectVisitor(PhantomData)).map(ObjectOnly)
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonObject<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        // Read as raw JSON first (syntax checked, nothing built), so that the text can be checked
        // for U+0000 before any field is; then parsed into `T`.
        let raw = web::Json::<Box<RawValue>>::from_request(req, payload);
        Box::pin(async move {
            let raw = raw.await?.into_inner();
            if has_nul_escape(raw.get().as_bytes()) {
                return Err(ApiError::InvalidRequest(crate::error::NUL_MESSAGE.into()).into());
            }
            match serde_json::from_str::<ObjectOnly<T>>(raw.get()) {
                Ok(ObjectOnly(value)) => Ok(JsonObject(value)),
                Err(err) => Err(body_error(&err).into()),
            }
        })
    }
}

/// True when JSON text holds the escape of U+0000. A raw NUL byte is not valid JSON (the parser
/// refuses it); in a string it can only be written `\u0000`, and a backslash outside a string is
/// not valid either, so walking the escapes finds every one.
pub fn has_nul_escape(json: &[u8]) -> bool {
    let mut i = 0;
    while let Some(at) = json[i..].iter().position(|b| *b == b'\\') {
        let escape = i + at;
        if json.get(escape + 1) == Some(&b'u') && json.get(escape + 2..escape + 6) == Some(b"0000") {
            return true;
        }
        // Skip the escaped character, so that `\\` is not read as the start of another escape.
        i = escape + 2;
        if i >= json.len() {
            return false;
        }
    }
    false
}

/// The error of a body that is JSON but not of the request's shape: a caller id's rule
/// (`validation_failed`, naming the field), else `invalid_request`; or not JSON at all.
pub fn body_error(err: &serde_json::Error) -> ApiError {
    if err.is_data() {
        crate::names::from_deserialize_error(&err.to_string())
            .unwrap_or_else(|| ApiError::InvalidRequest(format!("invalid request body: {err}")))
    } else {
        ApiError::InvalidJson(err.to_string())
    }
}

/// `deserialize_with` helpers for integer fields that JSON Schema calls `integer`.
pub mod integer {
    use super::*;

    /// An integer written as `5`, `-5` or `5.0` (a zero fraction), converted to `T` if it fits.
    struct Integer<T>(T);

    impl<'de, T: TryFrom<i128>> Deserialize<'de> for Integer<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct IntegerVisitor<T>(PhantomData<T>);
            impl<T: TryFrom<i128>> IntegerVisitor<T> {
                fn fit<E: serde::de::Error>(v: i128) -> Result<Integer<T>, E> {
                    T::try_from(v)
                        .map(Integer)
                        .map_err(|_| E::custom(format!("integer {v} is out of range")))
                }
            }
            impl<T: TryFrom<i128>> Visitor<'_> for IntegerVisitor<T> {
                type Value = Integer<T>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an integer")
                }
                fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                    Self::fit(i128::from(v))
                }
                fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                    Self::fit(i128::from(v))
                }
                fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                    // 2^63 and beyond do not fit any target type; the cast saturates, fit() refuses.
                    if v.fract() == 0.0 && v.is_finite() && v.abs() < 9.3e18 {
                        Self::fit(v as i128)
                    } else {
                        Err(E::invalid_type(serde::de::Unexpected::Float(v), &self))
                    }
                }
            }
            deserializer.deserialize_any(IntegerVisitor(PhantomData))
        }
    }

    /// For required `T` fields (with `#[serde(default)]`, absent is `T::default()`).
    pub fn required<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<T, D::Error> {
        Ok(Integer::<T>::deserialize(d)?.0)
    }

    /// For `Option<T>` fields (use with `#[serde(default)]`): absent or null is `None`.
    pub fn option<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<Option<T>, D::Error> {
        Ok(Option::<Integer<T>>::deserialize(d)?.map(|i| i.0))
    }

    /// For `Option<Option<T>>` fields that tell absent (`None`, with `#[serde(default)]`) from an
    /// explicit null (`Some(None)`).
    pub fn nullable<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Ok(Some(Option::<Integer<T>>::deserialize(d)?.map(|i| i.0)))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn only_an_escape_of_u0000_is_a_nul() {
        assert!(has_nul_escape(br#"{"a": "x\u0000y"}"#));
        assert!(has_nul_escape(br#"{"\u0000": 1}"#));
        assert!(
            has_nul_escape(br#"{"a": "\\\u0000"}"#),
            "an escaped backslash, then the escape"
        );
        assert!(
            !has_nul_escape(br#"{"a": "\\u0000"}"#),
            "a backslash, then the text u0000"
        );
        assert!(!has_nul_escape(br#"{"a": "\u0001 \n \\"}"#));
        assert!(!has_nul_escape(br#"{"a": "trailing \"#));
    }

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default, deserialize_with = "integer::option")]
        n: Option<i64>,
        #[serde(default, deserialize_with = "integer::nullable")]
        m: Option<Option<u32>>,
    }

    fn parse(json: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str::<ObjectOnly<Body>>(json).map(|b| b.0)
    }

    #[test]
    fn objects_are_taken_and_arrays_refused() {
        assert_eq!(parse(r#"{"n": 3}"#).unwrap(), Body { n: Some(3), m: None });
        let err = parse("[null, null]").unwrap_err();
        assert!(err.is_data() && err.to_string().contains("a JSON object"), "{err}");
        assert!(parse(r#"{"x": 1}"#).unwrap_err().to_string().contains("unknown field"));
    }

    #[test]
    fn integers_may_have_a_zero_fraction_only() {
        assert_eq!(parse(r#"{"n": 2066803.0}"#).unwrap().n, Some(2066803));
        assert_eq!(parse(r#"{"m": null}"#).unwrap().m, Some(None));
        assert_eq!(parse(r#"{"m": 7.0}"#).unwrap().m, Some(Some(7)));
        assert!(parse(r#"{"n": 1.5}"#).is_err());
        assert!(parse(r#"{"m": -1}"#).unwrap_err().to_string().contains("out of range"));
        assert!(parse(r#"{"n": 1e30}"#).is_err());
        assert!(parse(r#"{"n": "3"}"#).is_err());
    }
}
