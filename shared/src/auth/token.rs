//! Reading a token before its signature is checked.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::*;

// ---------------------------------------------------------------------------
// Reading a token before its signature is checked
// ---------------------------------------------------------------------------

/// The header fields read before verification. `alg` is a plain string so
/// that "none" and unknown algorithms are refused by name, rather than
/// failing as unreadable.
#[derive(Deserialize)]
pub(super) struct RawHeader {
    alg: Option<String>,
    pub(super) kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// A compact JWS: three base64url segments. Only the header is read, to
/// choose the algorithm and the key; nothing in it is trusted beyond that.
pub(super) fn read_header(token: &str) -> Result<RawHeader, AuthError> {
    if token.trim().is_empty() {
        return Err(AuthError::NoToken);
    }
    if token.len() > MAX_TOKEN_LENGTH {
        return Err(AuthError::Malformed);
    }
    let segments: Vec<&str> = token.split('.').collect();
    let [header, payload, _signature] = segments.as_slice() else {
        return Err(AuthError::Malformed);
    };
    // Only the syntax of the payload and signature: their content waits for
    // the signature check.
    if payload.is_empty() || !segments.iter().all(|segment| is_base64url(segment)) {
        return Err(AuthError::Malformed);
    }
    let header: RawHeader = decode_segment(header)?;
    // A critical extension is one the hub would have to understand to
    // verify safely, and it understands none.
    if header.crit.is_some() {
        return Err(AuthError::Malformed);
    }
    Ok(header)
}

fn is_base64url(segment: &str) -> bool {
    segment
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

pub(super) fn decode_segment<T: DeserializeOwned>(segment: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)
}

/// Algorithms by the name a JWT header gives them.
type Accepted = &'static [(&'static str, Algorithm)];

pub(super) const ASSERTION_ALGORITHMS: Accepted =
    &[("RS512", Algorithm::RS512), ("ES256", Algorithm::ES256)];
pub(super) const ACCESS_TOKEN_ALGORITHMS: Accepted = &[("ES256", Algorithm::ES256)];

/// Refuses every algorithm but the ones named, before any key is touched:
/// otherwise a token could pick an algorithm (HMAC, "none") under which the
/// client's public key, or nothing, verifies it.
pub(super) fn accepted_algorithm(
    header: &RawHeader,
    accepted: Accepted,
) -> Result<Algorithm, AuthError> {
    let name = header
        .alg
        .as_deref()
        .ok_or(AuthError::UnsupportedAlgorithm)?;
    accepted
        .iter()
        .find(|(accepted_name, _)| *accepted_name == name)
        .map(|(_, algorithm)| *algorithm)
        .ok_or(AuthError::UnsupportedAlgorithm)
}

/// Verifies the signature with `key` under `algorithm` and reads the claims.
/// The library's own claim checks are all off: they read the system clock,
/// and the hub checks each claim itself to name each refusal.
pub(super) fn verified_claims<T: DeserializeOwned>(
    token: &str,
    key: &DecodingKey,
    algorithm: Algorithm,
) -> Result<T, AuthError> {
    let mut validation = Validation::new(algorithm);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<T>(token, key, &validation)
        .map(|data| data.claims)
        .map_err(|error| match error.kind() {
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => AuthError::Malformed,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::UnsupportedAlgorithm
            | ErrorKind::InvalidAlgorithmName => AuthError::UnsupportedAlgorithm,
            ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_) => AuthError::KeyTypeMismatch,
            // Whatever else the library reports, the token is not verified.
            _ => AuthError::BadSignature,
        })
}

/// `aud`: one string or a list of them (RFC 7519).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub(super) fn includes(&self, expected: &str) -> bool {
        match self {
            Audience::One(audience) => audience == expected,
            Audience::Many(audiences) => audiences.iter().any(|audience| audience == expected),
        }
    }
}

/// A NumericDate: seconds since the epoch, which RFC 7519 lets be fractional.
#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct NumericDate(serde_json::Number);

impl NumericDate {
    fn seconds(&self) -> Result<i64, AuthError> {
        if let Some(seconds) = self.0.as_i64() {
            return Ok(seconds);
        }
        match self.0.as_f64() {
            Some(seconds) if seconds.is_finite() && seconds.abs() < 1e15 => {
                Ok(seconds.floor() as i64)
            }
            _ => Err(AuthError::Malformed),
        }
    }
}

pub(super) fn seconds(date: Option<&NumericDate>) -> Result<Option<i64>, AuthError> {
    date.map(NumericDate::seconds).transpose()
}

pub(super) fn instant(seconds: i64) -> Result<OffsetDateTime, AuthError> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| AuthError::Malformed)
}
