//! Client assertions (RFC 7523): reading and verifying them, and signing
//! them for the project's own clients.

use std::sync::LazyLock;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::Deserialize;
use time::OffsetDateTime;

use super::*;

// ---------------------------------------------------------------------------
// Client assertions
// ---------------------------------------------------------------------------

/// What a verified client assertion established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionClaims {
    pub client_id: String,
    pub jti: String,
    pub expires_at: OffsetDateTime,
    pub issued_at: Option<OffsetDateTime>,
}

/// An assertion's claims as read, before they are checked.
#[derive(Deserialize)]
pub struct RawAssertion {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<NumericDate>,
    iat: Option<NumericDate>,
    nbf: Option<NumericDate>,
    jti: Option<String>,
}

/// A claim of a token, read without verifying anything: whom the token
/// says it comes from, to choose whose keys verify it and to name the
/// client in the audit record of a refusal, never to decide anything else.
/// Bounded: the id becomes a key of a DynamoDB read, which refuses keys
/// over 2 KB with an error rather than a miss.
fn claimed_id(token: &str, claim: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_LENGTH {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Map<String, serde_json::Value> = decode_segment(payload).ok()?;
    claims
        .get(claim)?
        .as_str()
        .filter(|id| !id.is_empty() && id.len() <= MAX_CLIENT_ID_LENGTH)
        .map(str::to_owned)
}

/// The client an assertion claims to come from (`iss`), whatever its
/// algorithm: an unsigned or HMAC assertion is refused, but filed under
/// the client it claims.
pub fn claimed_client_id(assertion: &str) -> Option<String> {
    claimed_id(assertion, "iss")
}

/// The client an access token names (`sub`), read without verifying it.
pub fn claimed_subject(authorization: &str) -> Option<String> {
    claimed_id(bearer_token(Some(authorization)).ok()?, "sub")
}

/// The algorithm and key id of an assertion's header: all the header must
/// say, checked before the client is looked up, so that no refusal of a
/// malformed header depends on whether the client it names exists.
pub fn assertion_header(assertion: &str) -> Result<(Algorithm, String), AuthError> {
    let header = read_header(assertion)?;
    let algorithm = accepted_algorithm(&header, ASSERTION_ALGORITHMS)?;
    let kid = header.kid.ok_or(AuthError::MissingKeyId)?;
    Ok((algorithm, kid))
}

/// The assertion's claims once its signature verifies with the client key
/// its `kid` names. For an unknown client, an unknown `kid` or a key that
/// does not suit the algorithm the signature is checked all the same, with
/// a stand-in key, and the refusal answered as a wrong signature is: the
/// answer, and as far as can be the work, tell nothing of which clients
/// and keys exist.
pub fn assertion_signature(
    assertion: &str,
    client: Option<&Client>,
    kid: &str,
    algorithm: Algorithm,
) -> Result<RawAssertion, AuthError> {
    let key = client
        .ok_or(AuthError::UnknownClient)
        .and_then(|client| client.keys.find(kid).ok_or(AuthError::UnknownKey))
        .and_then(|jwk| client_key(jwk, algorithm));
    match key {
        Ok(key) => verified_claims(assertion, &key, algorithm),
        Err(reason) => match stand_in_key(algorithm) {
            Some(stand_in) => match verified_claims::<RawAssertion>(assertion, stand_in, algorithm)
            {
                // A signature refused for its form is refused so with any key.
                Err(AuthError::BadSignature) | Ok(_) => Err(reason),
                Err(other) => Err(other),
            },
            None => Err(reason),
        },
    }
}

/// Public keys whose private halves were discarded when they were made:
/// what an assertion that names no registered key is checked against.
pub(super) fn stand_in_key(algorithm: Algorithm) -> Option<&'static DecodingKey> {
    static RSA: LazyLock<Option<DecodingKey>> = LazyLock::new(|| {
        DecodingKey::from_rsa_components(
            "ktwi3r0Y7gjvjB_kYWIjHi58jOh0Z74YpyVAXV34Y6WLoNO3bEhSYYl3zFPhhJFrMKxr6syCMcNbLH3dT894\
             YDDSrFuezASo9JQUJfjIhcTuYXrPHW0B-1cg6PzITkqE0p3CeaBh7nx9iZJrik8JE4-zlSkNfxRfz3F5cpwU\
             qpsfkGCcfwottiCORnJCkMONfq6--YXwpkZT8TDItqEx9FgYit8M6UzjKvyHU4uyITYDGH_znMjJQ1Ua8tg\
             bUkD_ELeAbyzcXnh7xi9drxXj43zUi0wpa7x8dedIEYR-9yjUb5uXfs_0ljubis8_nlUM1BrwQa4tKE2Prg\
             f0nQKu2Q",
            "AQAB",
        )
        .ok()
    });
    static EC: LazyLock<Option<DecodingKey>> = LazyLock::new(|| {
        DecodingKey::from_ec_components(
            "YqNUa8FUZ1_2NX6xdEF9yp890mYWtEVAsYyUYlV3EBk",
            "OdvauzzSjIrC_BNHNMfKqHJ7fJTll2cWEVgnpo3rwUE",
        )
        .ok()
    });
    match algorithm {
        Algorithm::RS512 => RSA.as_ref(),
        Algorithm::ES256 => EC.as_ref(),
        _ => None,
    }
}

/// Verifies a client assertion (RFC 7523, as NHS England uses it) against
/// the registered client: RS512 or ES256 with the client key its `kid`
/// names; `iss` and `sub` the client id; `aud` the token endpoint's URL;
/// unexpired, already issued, at most 5 minutes long; a `jti`.
pub fn verify_client_assertion(
    assertion: &str,
    client: &Client,
    token_endpoint_url: &str,
    now: OffsetDateTime,
) -> Result<AssertionClaims, AuthError> {
    let (algorithm, kid) = assertion_header(assertion)?;
    let claims = assertion_signature(assertion, Some(client), &kid, algorithm)?;
    assertion_claims(claims, client, token_endpoint_url, now)
}

/// The checks of a client assertion's claims, once its signature verified.
pub fn assertion_claims(
    claims: RawAssertion,
    client: &Client,
    token_endpoint_url: &str,
    now: OffsetDateTime,
) -> Result<AssertionClaims, AuthError> {
    let client_id = client.client_id.as_str();
    if claims.iss.as_deref() != Some(client_id) || claims.sub.as_deref() != Some(client_id) {
        return Err(AuthError::WrongIssuer);
    }
    if !claims
        .aud
        .is_some_and(|audience| audience.includes(token_endpoint_url))
    {
        return Err(AuthError::WrongAudience);
    }
    let now = now.unix_timestamp();
    let expires = seconds(claims.exp.as_ref())?.ok_or(AuthError::MissingExpiry)?;
    let issued = seconds(claims.iat.as_ref())?;
    let not_before = seconds(claims.nbf.as_ref())?;
    // The skew applies to exp too: the client's clock set it.
    if now >= expires.saturating_add(CLOCK_SKEW_SECONDS) {
        return Err(AuthError::Expired);
    }
    let latest_start = now.saturating_add(CLOCK_SKEW_SECONDS);
    if issued.is_some_and(|issued| issued > latest_start)
        || not_before.is_some_and(|not_before| not_before > latest_start)
    {
        return Err(AuthError::NotYetValid);
    }
    // Without iat the lifetime counts from now, with the skew the client's
    // clock may be ahead by.
    let lifetime = match issued {
        Some(issued) => expires.saturating_sub(issued),
        None => expires
            .saturating_sub(now)
            .saturating_sub(CLOCK_SKEW_SECONDS),
    };
    if lifetime > MAX_ASSERTION_LIFETIME_SECONDS {
        return Err(AuthError::LifetimeTooLong);
    }
    let jti = claims
        .jti
        .filter(|jti| !jti.is_empty())
        .ok_or(AuthError::MissingJti)?;
    if jti.len() > MAX_JTI_LENGTH {
        return Err(AuthError::Malformed);
    }
    Ok(AssertionClaims {
        client_id: client.client_id.clone(),
        jti,
        expires_at: instant(expires)?,
        issued_at: issued.map(instant).transpose()?,
    })
}

/// The verification key of a client JWK, if it suits the algorithm: an RSA
/// key for RS512, a P-256 key for ES256, and no `alg`, `use` or `key_ops` of
/// its own that says otherwise.
fn client_key(jwk: &Jwk, algorithm: Algorithm) -> Result<DecodingKey, AuthError> {
    let right_type = match (&jwk.algorithm, algorithm) {
        (AlgorithmParameters::RSA(_), Algorithm::RS512) => true,
        (AlgorithmParameters::EllipticCurve(parameters), Algorithm::ES256) => {
            parameters.curve == EllipticCurve::P256
        }
        _ => false,
    };
    let right_algorithm = jwk
        .common
        .key_algorithm
        .is_none_or(|key_algorithm| key_algorithm == KeyAlgorithm::from(algorithm));
    let for_signatures = matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    );
    let for_verifying = jwk
        .common
        .key_operations
        .as_ref()
        .is_none_or(|operations| operations.contains(&KeyOperations::Verify));
    if !(right_type && right_algorithm && for_signatures && for_verifying) {
        return Err(AuthError::KeyTypeMismatch);
    }
    DecodingKey::from_jwk(jwk).map_err(|_| AuthError::KeyTypeMismatch)
}

/// RFC 7523's client assertion type.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The form body of a token request: the client credentials grant with a
/// JWT assertion.
pub fn token_request_form(assertion: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_assertion_type", CLIENT_ASSERTION_TYPE)
        .append_pair("client_assertion", assertion)
        .finish()
}

/// A client assertion as a client system signs it (RFC 7523): for the
/// project's own tools and tests that act as clients.
pub fn sign_client_assertion(
    client_id: &str,
    key_id: &str,
    key: &EncodingKey,
    algorithm: Algorithm,
    token_endpoint_url: &str,
    now: OffsetDateTime,
) -> Result<String, AuthError> {
    let issued = now.unix_timestamp();
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint_url,
        "iat": issued,
        "exp": issued + MAX_ASSERTION_LIFETIME_SECONDS - CLOCK_SKEW_SECONDS,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    let mut header = Header::new(algorithm);
    header.kid = Some(key_id.to_owned());
    jsonwebtoken::encode(&header, &claims, key)
        .map_err(|error| AuthError::Unavailable(format!("signing failed: {error}")))
}
