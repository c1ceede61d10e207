//! Authentication of client systems, in the NHS England pattern for
//! application-restricted APIs ("signed JWT authentication"):
//!
//! 1. A client registers the public half of its signing keys (a JWKS) with
//!    the hub.
//! 2. To call the hub it signs a short-lived client assertion (RFC 7523) and
//!    exchanges it at the token endpoint ([`exchange`]) for a hub access
//!    token, signed by the hub ([`HubSigner`]).
//! 3. Every API call carries that access token as a bearer token, which the
//!    authorizer checks ([`verify_access_token`]) before anything else runs.
//!
//! Every check compares against the `now` the caller passes: the JWT library
//! is only asked for signatures, never for the clock.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse,
    ThumbprintHash,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::catalogue::EventType;
use crate::outcome::{Issue, OperationOutcome, Severity};
use crate::ports::{ClientStore, ReplayGuard, StoreError};
use crate::subscriber::OdsCode;

/// `iss` of the hub's access tokens.
pub const HUB_ISSUER: &str = "child-health-hub";
/// `aud` of the hub's access tokens: the hub's APIs, and nothing else.
pub const HUB_AUDIENCE: &str = "child-health-hub";

/// How far a client's clock may be from the hub's.
pub const CLOCK_SKEW_SECONDS: i64 = 60;

/// The longest a client assertion may live (`exp - iat`), as NHS England
/// requires: a captured assertion is worth little for long.
pub const MAX_ASSERTION_LIFETIME_SECONDS: i64 = 300;

pub const DEFAULT_ACCESS_TOKEN_LIFETIME_SECONDS: u64 = 300;

/// Longer than any token the hub issues or accepts: refused before any
/// decoding, so an oversized header costs nothing.
pub const MAX_TOKEN_LENGTH: usize = 8 * 1024;

/// The replay guard stores every `jti`; a bound keeps its records small.
const MAX_JTI_LENGTH: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Publishes events.
    Publisher,
    /// Subscribes to events and reads its queue.
    Subscriber,
    /// Onboards and offboards subscribers.
    Operator,
}

/// A client system registered with the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Client {
    /// `iss` and `sub` of its client assertions.
    pub client_id: String,
    /// The organisation that runs the system.
    pub ods_code: OdsCode,
    pub roles: BTreeSet<Role>,
    /// The public keys its assertions are verified with, chosen by `kid`:
    /// several let it rotate keys without a gap.
    pub keys: JwkSet,
    pub enabled: bool,
    /// The event types it may publish.
    #[serde(default)]
    pub publish_event_types: BTreeSet<EventType>,
    /// The organisations it may publish for (MessageHeader.responsible).
    #[serde(default)]
    pub publish_for_ods: BTreeSet<String>,
    /// The subscriber record it acts as, when it subscribes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber_id: Option<String>,
}

impl Client {
    /// Whether it may publish this event type on behalf of this organisation.
    pub fn may_publish(&self, event_type: EventType, responsible_ods: &str) -> bool {
        self.enabled
            && self.roles.contains(&Role::Publisher)
            && self.publish_event_types.contains(&event_type)
            && self.publish_for_ods.contains(responsible_ods)
    }
}

/// Why a token or a client was refused. The messages are fixed texts: none
/// repeats anything from the token, so a refusal leaks nothing to a caller
/// who presented someone else's token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no access token was presented")]
    NoToken,
    #[error("the token is not a well-formed signed JWT")]
    Malformed,
    #[error("the client is not registered with the hub")]
    UnknownClient,
    #[error("the client is disabled")]
    DisabledClient,
    #[error("the token's signing algorithm is not accepted here")]
    UnsupportedAlgorithm,
    #[error("the token's header names no key (kid)")]
    MissingKeyId,
    #[error("no registered key has the token's key id")]
    UnknownKey,
    #[error("the key with the token's key id does not suit the token's algorithm")]
    KeyTypeMismatch,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token is not addressed to this audience")]
    WrongAudience,
    #[error("the token's issuer or subject is not the expected one")]
    WrongIssuer,
    #[error("the token has no expiry time (exp)")]
    MissingExpiry,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the client assertion lives longer than 5 minutes")]
    LifetimeTooLong,
    #[error("the client assertion has no unique identifier (jti)")]
    MissingJti,
    #[error("the client assertion was already used")]
    ReplayedJti,
    /// The hub could not decide (a store failed): not the client's fault.
    /// The detail is for logs, never for clients.
    #[error("the hub could not complete authentication: {0}")]
    Unavailable(String),
}

impl From<StoreError> for AuthError {
    fn from(error: StoreError) -> Self {
        AuthError::Unavailable(error.to_string())
    }
}

impl AuthError {
    /// 401 for every refusal; 503 when the hub itself failed, since telling
    /// a client its credentials are wrong during an outage would send it to
    /// fix what is not broken.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Unavailable(_) => 503,
            _ => 401,
        }
    }

    pub fn outcome(&self) -> OperationOutcome {
        let (code, spine_code, diagnostics) = match self {
            AuthError::Unavailable(_) => (
                "transient",
                "SERVICE_UNAVAILABLE",
                "the hub could not complete authentication; try again later".to_owned(),
            ),
            // The client should authenticate (again): no token, or its
            // token ran out.
            AuthError::NoToken | AuthError::Expired => ("login", "ACCESS_DENIED", self.to_string()),
            refusal => ("security", "ACCESS_DENIED", refusal.to_string()),
        };
        OperationOutcome::single(Issue {
            severity: Severity::Error,
            code,
            spine_code,
            diagnostics,
            expression: Vec::new(),
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let header = authorization.map(str::trim).unwrap_or_default();
    if header.is_empty() {
        return Err(AuthError::NoToken);
    }
    let (scheme, token) = header.split_once(' ').unwrap_or((header, ""));
    // The scheme is case-insensitive (RFC 7235).
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return Err(AuthError::Malformed);
    }
    match token.trim() {
        "" => Err(AuthError::NoToken),
        token => Ok(token),
    }
}

// ---------------------------------------------------------------------------
// Reading a token before its signature is checked
// ---------------------------------------------------------------------------

/// The header fields read before verification. `alg` is a plain string so
/// that "none" and unknown algorithms are refused by name, rather than
/// failing as unreadable.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// A compact JWS: three base64url segments. Only the header is read, to
/// choose the algorithm and the key; nothing in it is trusted beyond that.
fn read_header(token: &str) -> Result<RawHeader, AuthError> {
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

fn decode_segment<T: DeserializeOwned>(segment: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)
}

/// Algorithms by the name a JWT header gives them.
type Accepted = &'static [(&'static str, Algorithm)];

const ASSERTION_ALGORITHMS: Accepted = &[("RS512", Algorithm::RS512), ("ES256", Algorithm::ES256)];
const ACCESS_TOKEN_ALGORITHMS: Accepted = &[("ES256", Algorithm::ES256)];

/// Refuses every algorithm but the ones named, before any key is touched:
/// otherwise a token could pick an algorithm (HMAC, "none") under which the
/// client's public key, or nothing, verifies it.
fn accepted_algorithm(header: &RawHeader, accepted: Accepted) -> Result<Algorithm, AuthError> {
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
fn verified_claims<T: DeserializeOwned>(
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
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn includes(&self, expected: &str) -> bool {
        match self {
            Audience::One(audience) => audience == expected,
            Audience::Many(audiences) => audiences.iter().any(|audience| audience == expected),
        }
    }
}

/// A NumericDate: seconds since the epoch, which RFC 7519 lets be fractional.
#[derive(Deserialize)]
#[serde(transparent)]
struct NumericDate(serde_json::Number);

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

fn seconds(date: Option<&NumericDate>) -> Result<Option<i64>, AuthError> {
    date.map(NumericDate::seconds).transpose()
}

fn instant(seconds: i64) -> Result<OffsetDateTime, AuthError> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| AuthError::Malformed)
}

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

#[derive(Deserialize)]
struct UnverifiedAssertion {
    iss: Option<String>,
}

#[derive(Deserialize)]
struct RawAssertion {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<NumericDate>,
    iat: Option<NumericDate>,
    nbf: Option<NumericDate>,
    jti: Option<String>,
}

/// The client id an assertion claims to come from, to look the client up.
/// Nothing is verified yet: the id only says whose keys to verify with.
pub fn peek_client_id(assertion: &str) -> Result<String, AuthError> {
    let header = read_header(assertion)?;
    accepted_algorithm(&header, ASSERTION_ALGORITHMS)?;
    let payload = assertion.split('.').nth(1).ok_or(AuthError::Malformed)?;
    let claims: UnverifiedAssertion = decode_segment(payload)?;
    match claims.iss {
        Some(client_id) if !client_id.is_empty() => Ok(client_id),
        _ => Err(AuthError::Malformed),
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
    let header = read_header(assertion)?;
    let algorithm = accepted_algorithm(&header, ASSERTION_ALGORITHMS)?;
    let kid = header.kid.as_deref().ok_or(AuthError::MissingKeyId)?;
    let jwk = client.keys.find(kid).ok_or(AuthError::UnknownKey)?;
    let key = client_key(jwk, algorithm)?;
    let claims: RawAssertion = verified_claims(assertion, &key, algorithm)?;

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

// ---------------------------------------------------------------------------
// The token endpoint
// ---------------------------------------------------------------------------

/// What the token endpoint answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    /// Seconds the token is valid for.
    pub expires_in: u64,
}

/// Exchanges a client assertion for a hub access token: the client must be
/// registered and enabled, the assertion valid, and its `jti` not used before.
pub async fn exchange<C: ClientStore, R: ReplayGuard>(
    assertion: &str,
    clients: &C,
    replay_guard: &R,
    token_endpoint_url: &str,
    signer: &HubSigner,
    now: OffsetDateTime,
) -> Result<AccessToken, AuthError> {
    let client_id = peek_client_id(assertion)?;
    let client = clients
        .get(&client_id)
        .await?
        .ok_or(AuthError::UnknownClient)?;
    let claims = verify_client_assertion(assertion, &client, token_endpoint_url, now)?;
    // Checked after the signature, so that only the key's holder learns
    // that its client is disabled.
    if !client.enabled {
        return Err(AuthError::DisabledClient);
    }
    // Remembered only once verified: a forged assertion must not be able to
    // use up a jti its client has yet to send.
    let forget_after = claims
        .expires_at
        .saturating_add(time::Duration::seconds(CLOCK_SKEW_SECONDS));
    if !replay_guard
        .remember(&claims.client_id, &claims.jti, forget_after)
        .await?
    {
        return Err(AuthError::ReplayedJti);
    }
    signer.issue(&client, now)
}

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

#[derive(Deserialize)]
struct RawAccessClaims {
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

/// Issues the hub's access tokens, signed ES256.
#[derive(Debug, Clone)]
pub struct HubSigner {
    key: EncodingKey,
    verifier: HubVerifier,
    lifetime_seconds: u64,
}

impl HubSigner {
    /// The hub's key pair: a PKCS#8 PEM P-256 private key and its public key.
    /// The public key is checked against the private one, so a mix-up of
    /// keys fails at start-up rather than on every call.
    pub fn from_pem(private_key_pem: &[u8], public_key_pem: &[u8]) -> Result<Self, KeyError> {
        let key =
            EncodingKey::from_ec_pem(private_key_pem).map_err(|_| KeyError::NotEs256PrivateKey)?;
        let derived = Jwk::from_encoding_key(&key, Algorithm::ES256)
            .map_err(|_| KeyError::NotEs256PrivateKey)?;
        let verifier = HubVerifier::from_public_pem(public_key_pem)?;
        if derived.algorithm != verifier.jwk.algorithm {
            return Err(KeyError::NotAPair);
        }
        Ok(HubSigner {
            key,
            verifier,
            lifetime_seconds: DEFAULT_ACCESS_TOKEN_LIFETIME_SECONDS,
        })
    }

    pub fn with_lifetime_seconds(mut self, seconds: u64) -> Self {
        self.lifetime_seconds = seconds;
        self
    }

    /// The verifier of the tokens this signer issues.
    pub fn verifier(&self) -> &HubVerifier {
        &self.verifier
    }

    pub fn issue(&self, client: &Client, now: OffsetDateTime) -> Result<AccessToken, AuthError> {
        let issued = now.unix_timestamp();
        let lifetime = i64::try_from(self.lifetime_seconds).unwrap_or(i64::MAX);
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
        header.kid = Some(self.verifier.key_id.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|error| AuthError::Unavailable(format!("signing failed: {error}")))?;
        Ok(AccessToken {
            token,
            expires_in: self.lifetime_seconds,
        })
    }
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

/// The authenticated client of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub client_id: String,
    pub ods_code: OdsCode,
    pub roles: BTreeSet<Role>,
}

impl Caller {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Verifies a hub access token: ES256 under the hub's key, issued by and
/// for the hub, unexpired and already issued.
pub fn verify_access_token(
    token: &str,
    verifier: &HubVerifier,
    now: OffsetDateTime,
) -> Result<Caller, AuthError> {
    let header = read_header(token)?;
    let algorithm = accepted_algorithm(&header, ACCESS_TOKEN_ALGORITHMS)?;
    let kid = header.kid.as_deref().ok_or(AuthError::MissingKeyId)?;
    if kid != verifier.key_id {
        return Err(AuthError::UnknownKey);
    }
    let claims: RawAccessClaims = verified_claims(token, &verifier.key, algorithm)?;

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
    let latest_start = now.saturating_add(CLOCK_SKEW_SECONDS);
    let issued = seconds(claims.iat.as_ref())?;
    let not_before = seconds(claims.nbf.as_ref())?;
    if issued.is_some_and(|issued| issued > latest_start)
        || not_before.is_some_and(|not_before| not_before > latest_start)
    {
        return Err(AuthError::NotYetValid);
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
    Ok(Caller {
        client_id,
        ods_code,
        roles: claims.roles,
    })
}
