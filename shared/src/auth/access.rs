//! Hub access tokens: their claims, signing input and verification.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ods::OdsCode;

use super::*;

// ---------------------------------------------------------------------------
// Hub access tokens
// ---------------------------------------------------------------------------

/// A hub key that cannot be used: a configuration fault, found at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the hub's private key is not a PKCS#8 PEM P-256 (ES256) key")]
    NotEs256PrivateKey,
    #[error("the hub's public key is not a PEM P-256 (ES256) key")]
    NotEs256PublicKey,
    #[error("the hub's public key is not the public half of its private key")]
    NotAPair,
    #[error("the key is not an RSA or P-256 signing key")]
    NotAClientSigningKey,
}

#[derive(Serialize, Deserialize)]
struct AccessClaims {
    iss: String,
    aud: String,
    sub: String,
    ods: String,
    roles: BTreeSet<Role>,
    iat: i64,
    exp: i64,
    jti: String,
}

/// An access token's claims as read, before they are checked.
#[derive(Deserialize)]
pub struct RawAccessClaims {
    iss: Option<String>,
    aud: Option<Audience>,
    sub: Option<String>,
    ods: Option<String>,
    #[serde(default)]
    roles: BTreeSet<Role>,
    exp: Option<NumericDate>,
    iat: Option<NumericDate>,
    nbf: Option<NumericDate>,
}

impl RawAccessClaims {
    /// The client the token names (`sub`), whether or not its claims pass.
    pub fn subject(&self) -> Option<&str> {
        self.sub.as_deref()
    }
}

/// The JWS signing input (header and claims) of an access token for the
/// client, under the hub key `key_id`, living `lifetime_seconds` from `now`:
/// what the hub's signing key signs.
pub fn access_token_signing_input(
    client: &Client,
    key_id: &str,
    lifetime_seconds: u64,
    now: OffsetDateTime,
) -> Result<String, AuthError> {
    let issued = now.unix_timestamp();
    let lifetime = i64::try_from(lifetime_seconds).unwrap_or(i64::MAX);
    let claims = AccessClaims {
        iss: HUB_ISSUER.to_owned(),
        aud: HUB_AUDIENCE.to_owned(),
        sub: client.client_id.clone(),
        ods: client.ods_code.as_str().to_owned(),
        roles: client.roles.clone(),
        iat: issued,
        exp: issued.saturating_add(lifetime),
        jti: uuid::Uuid::new_v4().to_string(),
    };
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key_id.to_owned());
    Ok(format!(
        "{}.{}",
        base64_json(&header)?,
        base64_json(&claims)?
    ))
}

/// A JWS segment: the value as JSON, base64url without padding.
fn base64_json<T: Serialize>(value: &T) -> Result<String, AuthError> {
    serde_json::to_vec(value)
        .map(|json| URL_SAFE_NO_PAD.encode(json))
        .map_err(|error| AuthError::Unavailable(format!("encoding failed: {error}")))
}

/// Verifies the hub's access tokens: all the authorizer needs is the public
/// key.
#[derive(Debug, Clone)]
pub struct HubVerifier {
    key: DecodingKey,
    jwk: Jwk,
    /// The RFC 7638 thumbprint of the public key: its `kid`, so that a key
    /// rotation can tell tokens of the old key from those of the new.
    key_id: String,
}

impl HubVerifier {
    pub fn from_public_pem(public_key_pem: &[u8]) -> Result<Self, KeyError> {
        let key =
            DecodingKey::from_ec_pem(public_key_pem).map_err(|_| KeyError::NotEs256PublicKey)?;
        let jwk = Jwk::from_decoding_key(&key, Some(Algorithm::ES256))
            .map_err(|_| KeyError::NotEs256PublicKey)?;
        let on_p256 = matches!(
            &jwk.algorithm,
            AlgorithmParameters::EllipticCurve(parameters) if parameters.curve == EllipticCurve::P256
        );
        if !on_p256 {
            return Err(KeyError::NotEs256PublicKey);
        }
        let key_id = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| KeyError::NotEs256PublicKey)?;
        Ok(HubVerifier { key, jwk, key_id })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key as a JWK, with its `kid`: what the hub would publish.
    pub fn jwk(&self) -> Jwk {
        let mut jwk = self.jwk.clone();
        jwk.common.key_id = Some(self.key_id.clone());
        jwk
    }
}

/// Whom a valid access token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSubject {
    pub client_id: String,
    pub ods_code: OdsCode,
    pub roles: BTreeSet<Role>,
}

impl TokenSubject {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The hub keys access tokens may be signed with, found by `kid`: during a
/// rotation the authorizer trusts the new key and the old one.
pub trait HubKeys {
    fn find(&self, key_id: &str) -> Option<&HubVerifier>;
}

impl HubKeys for HubVerifier {
    fn find(&self, key_id: &str) -> Option<&HubVerifier> {
        (self.key_id == key_id).then_some(self)
    }
}

impl HubKeys for [HubVerifier] {
    fn find(&self, key_id: &str) -> Option<&HubVerifier> {
        self.iter().find(|verifier| verifier.key_id == key_id)
    }
}

impl HubKeys for Vec<HubVerifier> {
    fn find(&self, key_id: &str) -> Option<&HubVerifier> {
        self.as_slice().find(key_id)
    }
}

/// Verifies a hub access token: ES256 under one of the hub's keys, issued
/// by and for the hub, unexpired, already issued, and living no longer than
/// the hub issues its tokens for.
pub fn verify_access_token<K: HubKeys + ?Sized>(
    token: &str,
    keys: &K,
    now: OffsetDateTime,
) -> Result<TokenSubject, AuthError> {
    access_token_claims(access_token_signature(token, keys)?, now)
}

/// The access token's claims once its signature verifies with the hub key
/// its `kid` names.
pub fn access_token_signature<K: HubKeys + ?Sized>(
    token: &str,
    keys: &K,
) -> Result<RawAccessClaims, AuthError> {
    let header = read_header(token)?;
    let algorithm = accepted_algorithm(&header, ACCESS_TOKEN_ALGORITHMS)?;
    let kid = header.kid.as_deref().ok_or(AuthError::MissingKeyId)?;
    let verifier = keys.find(kid).ok_or(AuthError::UnknownKey)?;
    verified_claims(token, &verifier.key, algorithm)
}

/// The checks of a hub access token's claims, once its signature verified.
pub fn access_token_claims(
    claims: RawAccessClaims,
    now: OffsetDateTime,
) -> Result<TokenSubject, AuthError> {
    if claims.iss.as_deref() != Some(HUB_ISSUER) {
        return Err(AuthError::WrongIssuer);
    }
    if !claims
        .aud
        .is_some_and(|audience| audience.includes(HUB_AUDIENCE))
    {
        return Err(AuthError::WrongAudience);
    }
    let now = now.unix_timestamp();
    let expires = seconds(claims.exp.as_ref())?.ok_or(AuthError::MissingExpiry)?;
    // No skew on exp: the hub set it, by the hub's clock.
    if now >= expires {
        return Err(AuthError::Expired);
    }
    // The hub always sets iat: without it the lifetime cannot be bounded.
    let issued = seconds(claims.iat.as_ref())?.ok_or(AuthError::MissingIssuedAt)?;
    let latest_start = now.saturating_add(CLOCK_SKEW_SECONDS);
    let not_before = seconds(claims.nbf.as_ref())?;
    if issued > latest_start || not_before.is_some_and(|not_before| not_before > latest_start) {
        return Err(AuthError::NotYetValid);
    }
    let longest = i64::try_from(ACCESS_TOKEN_LIFETIME_SECONDS).unwrap_or(i64::MAX);
    if expires.saturating_sub(issued) > longest {
        return Err(AuthError::AccessTokenTooLong);
    }
    let client_id = claims
        .sub
        .filter(|sub| !sub.is_empty())
        .ok_or(AuthError::Malformed)?;
    let ods_code = claims
        .ods
        .as_deref()
        .and_then(OdsCode::parse)
        .ok_or(AuthError::Malformed)?;
    Ok(TokenSubject {
        client_id,
        ods_code,
        roles: claims.roles,
    })
}
