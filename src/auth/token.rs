//! Access tokens: HS256 JWTs carrying the user, tenant and role.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;

pub const ISSUER: &str = "onebase";
/// HS256 keys shorter than the hash output weaken the MAC.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The user's tenant.
    pub tid: Uuid,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

pub fn issue(
    secret: &[u8],
    user: Uuid,
    tenant: Uuid,
    role: &str,
    ttl: std::time::Duration,
) -> Result<(String, i64), ApiError> {
    let now = chrono::Utc::now().timestamp();
    let exp = now + ttl.as_secs() as i64;
    let claims = Claims {
        sub: user,
        tid: tenant,
        role: role.to_string(),
        iat: now,
        exp,
        iss: ISSUER.into(),
    };
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((token, exp))
}

pub fn verify(secret: &[u8], token: &str) -> Result<Claims, ApiError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => ApiError::TokenExpired,
            _ => ApiError::InvalidCredentials("invalid access token".into()),
        })
}
