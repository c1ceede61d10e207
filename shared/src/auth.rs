//! Authentication of client systems, in the NHS England pattern for
//! application-restricted APIs ("signed JWT authentication"):
//!
//! 1. A client registers the public half of its signing keys (a JWKS) with
//!    the hub.
//! 2. To call the hub it signs a short-lived client assertion (RFC 7523) and
//!    exchanges it at the token endpoint (`app::auth::exchange`) for a hub
//!    access token, signed by the hub (`app::auth::HubSigner`).
//! 3. Every API call carries that access token as a bearer token, which the
//!    authorizer checks ([`verify_access_token`]) before anything else runs.
//!
//! Every check compares against the `now` the caller passes: the JWT library
//! is only asked for signatures, never for the clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

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

pub use crate::auth_error::AuthError;
use crate::catalogue::EventType;
use crate::criteria::Target;
use crate::error::HubError;
use crate::ods::OdsCode;

/// `iss` of the hub's access tokens.
pub const HUB_ISSUER: &str = "child-health-hub";
/// `aud` of the hub's access tokens: the hub's APIs, and nothing else.
pub const HUB_AUDIENCE: &str = "child-health-hub";

/// How far a client's clock may be from the hub's.
pub const CLOCK_SKEW_SECONDS: i64 = 60;

/// The longest a client assertion may live (`exp - iat`), as NHS England
/// requires: a captured assertion is worth little for long.
pub const MAX_ASSERTION_LIFETIME_SECONDS: i64 = 300;

/// How long the hub's access tokens live: the token endpoint issues them
/// for this long, and the authorizer refuses any token that claims to live
/// longer, so that a signing mistake cannot mint a token good for days.
pub const ACCESS_TOKEN_LIFETIME_SECONDS: u64 = 300;

/// Longer than any token the hub issues or accepts: refused before any
/// decoding, so an oversized header costs nothing.
pub const MAX_TOKEN_LENGTH: usize = 8 * 1024;

/// Client ids are keys of the clients table and of the audit index.
pub const MAX_CLIENT_ID_LENGTH: usize = 128;

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
    /// Whether it may subscribe to named patients (explicit subscriptions).
    #[serde(default)]
    pub subscribe_explicit: bool,
    /// The generic rule types it may subscribe with (`GP_GP_GP`, ...), each
    /// with the organisation codes it may name.
    #[serde(default)]
    pub subscribe_generic: BTreeMap<String, BTreeSet<String>>,
    /// Whether its unlabelled `pds-record-change-1` messages clear a child's
    /// sensitive flag. Any publisher's confidentiality label sets the flag;
    /// only the demographics authority may lift it (docs/subscriptions.md).
    #[serde(default)]
    pub sensitivity_authority: bool,
}

/// The authenticated client of a request: who it is and what it was
/// registered for, as the client record said when the request came in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Caller {
    pub client_id: String,
    pub ods_code: OdsCode,
    pub roles: BTreeSet<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber_id: Option<String>,
    #[serde(default)]
    pub publish_event_types: BTreeSet<EventType>,
    #[serde(default)]
    pub publish_for_ods: BTreeSet<String>,
    #[serde(default)]
    pub subscribe_explicit: bool,
    #[serde(default)]
    pub subscribe_generic: BTreeMap<String, BTreeSet<String>>,
    #[serde(default)]
    pub sensitivity_authority: bool,
}

/// The authorizer context key that carries the caller (as JSON: API
/// Gateway passes only flat string values on to the function).
pub const CALLER_CONTEXT_KEY: &str = "caller";

impl Caller {
    pub fn of(client: &Client) -> Caller {
        Caller {
            client_id: client.client_id.clone(),
            ods_code: client.ods_code.clone(),
            roles: client.roles.clone(),
            subscriber_id: client.subscriber_id.clone(),
            publish_event_types: client.publish_event_types.clone(),
            publish_for_ods: client.publish_for_ods.clone(),
            subscribe_explicit: client.subscribe_explicit,
            subscribe_generic: client.subscribe_generic.clone(),
            sensitivity_authority: client.sensitivity_authority,
        }
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// 403 unless the caller holds the role.
    pub fn require(&self, role: Role) -> Result<(), HubError> {
        if self.has_role(role) {
            Ok(())
        } else {
            Err(HubError::forbidden(format!(
                "this operation needs the {} role, which the client does not hold",
                role.name()
            )))
        }
    }

    /// 403 unless it is a publisher registered for this event type.
    pub fn may_publish_type(&self, event_type: EventType) -> Result<(), HubError> {
        self.require(Role::Publisher)?;
        if self.publish_event_types.contains(&event_type) {
            Ok(())
        } else {
            Err(HubError::forbidden_element(
                "MessageHeader.event",
                format!("the client is not registered to publish {event_type}"),
            ))
        }
    }

    /// 403 unless it may publish for the organisation a message names
    /// responsible (MessageHeader.responsible).
    pub fn may_publish_for(&self, responsible_ods: Option<&str>) -> Result<(), HubError> {
        // Without a resolvable organisation there is nothing to authorise
        // against: the message is at fault, not the client's rights.
        let Some(responsible_ods) = responsible_ods else {
            return Err(HubError::unprocessable(
                "MessageHeader.responsible",
                "MessageHeader.responsible names no organisation with an ODS code: \
                 the hub cannot tell whom the event is published for",
            ));
        };
        let permitted = self
            .publish_for_ods
            .iter()
            .any(|permitted| permitted.eq_ignore_ascii_case(responsible_ods));
        if !permitted {
            return Err(HubError::forbidden_element(
                "MessageHeader.responsible",
                "the client may not publish for the organisation named responsible",
            ));
        }
        Ok(())
    }

    /// The subscriber the caller acts as; 403 when it is none.
    pub fn subscriber(&self) -> Result<&str, HubError> {
        self.require(Role::Subscriber)?;
        self.subscriber_id.as_deref().ok_or_else(|| {
            HubError::forbidden("the client is not linked to an onboarded subscriber")
        })
    }

    /// 403 unless the caller may create a subscription for this target:
    /// explicit ones when registered for them, generic ones only for the
    /// rule types and organisation codes it was registered for.
    pub fn may_subscribe(&self, target: &Target) -> Result<(), HubError> {
        match target {
            Target::Explicit(_) if self.subscribe_explicit => Ok(()),
            Target::Explicit(_) => Err(HubError::forbidden_element(
                "Subscription.criteria",
                "the client is not registered for explicit (named patient) subscriptions",
            )),
            Target::Generic { rule, organisation } => {
                let permitted = self
                    .subscribe_generic
                    .iter()
                    .find(|(permitted, _)| permitted.eq_ignore_ascii_case(rule.code()))
                    .map(|(_, codes)| codes);
                let Some(codes) = permitted else {
                    return Err(HubError::forbidden_element(
                        "Subscription.criteria",
                        format!(
                            "the client is not registered for {} subscriptions",
                            rule.code()
                        ),
                    ));
                };
                let named = organisation.as_deref().is_some_and(|organisation| {
                    codes
                        .iter()
                        .any(|code| code.eq_ignore_ascii_case(organisation))
                });
                if named {
                    Ok(())
                } else {
                    Err(HubError::forbidden_element(
                        "Subscription.criteria",
                        format!(
                            "the client may not subscribe with {} for that organisation",
                            rule.code()
                        ),
                    ))
                }
            }
        }
    }

    /// The authorizer's context for API Gateway.
    pub fn to_context(&self) -> HashMap<String, String> {
        HashMap::from([
            (
                CALLER_CONTEXT_KEY.to_owned(),
                serde_json::to_string(self).unwrap_or_default(),
            ),
            ("clientId".to_owned(), self.client_id.clone()),
        ])
    }

    /// The caller the authorizer put in the request's context. None when
    /// there is none: a route deployed without the authorizer, which must
    /// refuse rather than act for nobody.
    pub fn from_context(context: &HashMap<String, serde_json::Value>) -> Option<Caller> {
        context
            .get(CALLER_CONTEXT_KEY)
            .and_then(serde_json::Value::as_str)
            .and_then(|json| serde_json::from_str(json).ok())
    }
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Subscriber => "subscriber",
            Role::Operator => "operator",
        }
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

/// A refused token or assertion, with the client it names for the audit
/// trail: the id it claims, or, once the hub has checked its signature with
/// that client's key (or its own), the id that signature proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: AuthError,
    pub client_id: Option<String>,
    /// Whether the signature was checked before the refusal: if not,
    /// `client_id` is only what the token claims.
    pub verified: bool,
}

impl Refusal {
    /// Refusals naming the client, verified or only claimed.
    pub fn naming(
        client_id: Option<&str>,
        verified: bool,
    ) -> impl Fn(AuthError) -> Refusal + use<> {
        let client_id = client_id.map(str::to_owned);
        move |reason| Refusal {
            reason,
            client_id: client_id.clone(),
            verified,
        }
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
fn stand_in_key(algorithm: Algorithm) -> Option<&'static DecodingKey> {
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

// ---------------------------------------------------------------------------
// The token endpoint
// ---------------------------------------------------------------------------

/// What the token endpoint answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    /// Seconds the token is valid for.
    pub expires_in: u64,
    /// Whom it was issued to.
    pub client_id: String,
    pub ods_code: OdsCode,
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

/// An ECDSA signature as KMS returns it (DER: a SEQUENCE of the INTEGERs r
/// and s) in the fixed form JWS uses: r || s, 32 bytes each for P-256.
pub fn ecdsa_der_to_fixed(der: &[u8]) -> Option<[u8; 64]> {
    /// One DER element of `tag` with a short-form length: a P-256 signature
    /// is at most 72 bytes, so no length needs the long form.
    fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&found, rest) = input.split_first()?;
        let (&length, rest) = rest.split_first()?;
        if found != tag || length >= 0x80 || rest.len() < usize::from(length) {
            return None;
        }
        Some(rest.split_at(usize::from(length)))
    }
    fn scalar(integer: &[u8], into: &mut [u8]) -> Option<()> {
        // Leading zeros only keep a DER INTEGER positive.
        let start = integer.iter().position(|&byte| byte != 0)?;
        let digits = &integer[start..];
        let offset = into.len().checked_sub(digits.len())?;
        into[offset..].copy_from_slice(digits);
        Some(())
    }
    let (sequence, trailing) = element(der, 0x30)?;
    let (r, rest) = element(sequence, 0x02)?;
    let (s, rest) = element(rest, 0x02)?;
    if !trailing.is_empty() || !rest.is_empty() {
        return None;
    }
    let mut fixed = [0u8; 64];
    let (r_half, s_half) = fixed.split_at_mut(32);
    scalar(r, r_half)?;
    scalar(s, s_half)?;
    Some(fixed)
}

/// A PEM `PUBLIC KEY` from the DER SubjectPublicKeyInfo KMS returns.
pub fn public_key_pem(spki_der: &[u8]) -> String {
    pem("PUBLIC KEY", spki_der)
}

/// DER as PEM under `label` (RFC 7468): base64 in lines of 64.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    let encoded = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// The public JWK of a client's signing key, named `kid`, for signatures:
/// what the client registers.
pub fn public_jwk(key: &EncodingKey, algorithm: Algorithm, kid: &str) -> Result<Jwk, KeyError> {
    let mut jwk =
        Jwk::from_encoding_key(key, algorithm).map_err(|_| KeyError::NotAClientSigningKey)?;
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(jwk)
}

/// RFC 7523's client assertion type.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The form body of a token request: the client credentials grant with a
/// JWT assertion (a JWT is URL-safe as it is).
pub fn token_request_form(assertion: &str) -> String {
    format!(
        "grant_type=client_credentials&client_assertion_type={}&client_assertion={assertion}",
        CLIENT_ASSERTION_TYPE.replace(':', "%3A")
    )
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

/// The ODS code of the national demographics service (PDS), the default
/// sensitivity authority.
pub const DEMOGRAPHICS_AUTHORITY_ODS: &str = "X26";

/// The largest JWKS a client may register: enough for a rotation overlap.
const MAX_CLIENT_KEYS: usize = 5;

/// The private members of RSA, EC and symmetric JWKs (RFC 7518 section 6).
const PRIVATE_KEY_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The RSA moduli the hub verifies with: none weaker than 2048 bits, none
/// longer than its RSA verifier takes.
const RSA_MODULUS_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// The smallest public exponent accepted: smaller ones (3, or 1, which
/// makes the "signature" the message itself) are refused.
const MIN_RSA_EXPONENT: u64 = 65_537;

/// The largest public exponent the RSA verifier takes (33 bits).
const MAX_RSA_EXPONENT: u64 = (1 << 33) - 1;

/// Whether a registered JWK could verify a client assertion, and is strong
/// enough to be trusted to: else the member at fault (".kid"; "" for the
/// key as a whole) and why.
fn registrable_key(jwk: &Jwk) -> Result<(), (&'static str, String)> {
    if jwk.common.key_id.as_deref().is_none_or(str::is_empty) {
        return Err((".kid", "each key needs a kid".into()));
    }
    if !matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    ) {
        return Err((
            ".use",
            "use, when given, must be sig: the hub verifies signatures with these keys".into(),
        ));
    }
    let verifies = jwk
        .common
        .key_operations
        .as_ref()
        .is_none_or(|operations| operations.contains(&KeyOperations::Verify));
    if !verifies {
        return Err((
            ".key_ops",
            "key_ops, when given, must include verify".into(),
        ));
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            registrable_rsa(&rsa.n, &rsa.e)?;
            KeyAlgorithm::RS512
        }
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            registrable_p256(&ec.x, &ec.y)?;
            KeyAlgorithm::ES256
        }
        _ => return Err(("", "each key must be an RSA or EC P-256 public key".into())),
    };
    if jwk
        .common
        .key_algorithm
        .is_some_and(|named| named != algorithm)
    {
        return Err((
            ".alg",
            "alg, when given, must be RS512 for an RSA key or ES256 for an EC P-256 key: \
             the algorithms the hub accepts for client assertions"
                .into(),
        ));
    }
    // Whatever else the verifier reads of the key must decode too.
    DecodingKey::from_jwk(jwk)
        .map(drop)
        .map_err(|_| ("", "the key's members do not decode as base64url".into()))
}

/// A big-endian unsigned integer in base64url, without its leading zeros.
fn unsigned_integer(encoded: &str) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let start = bytes
        .iter()
        .position(|&byte| byte != 0)
        .unwrap_or(bytes.len());
    Some(bytes[start..].to_vec())
}

fn registrable_rsa(n: &str, e: &str) -> Result<(), (&'static str, String)> {
    let modulus = unsigned_integer(n).ok_or((".n", "n is not base64url".to_owned()))?;
    let bits = modulus.first().map_or(0, |&top| {
        (modulus.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
    });
    // A modulus is the product of two odd primes: an even one is no key.
    let odd = modulus.last().is_some_and(|&low| low & 1 == 1);
    if !RSA_MODULUS_BITS.contains(&bits) || !odd {
        return Err((
            ".n",
            format!(
                "the RSA modulus is {bits} bits{}: the hub takes odd moduli of {} to {} bits",
                if odd { "" } else { " and even" },
                RSA_MODULUS_BITS.start(),
                RSA_MODULUS_BITS.end()
            ),
        ));
    }
    let exponent = unsigned_integer(e)
        .filter(|bytes| bytes.len() <= 8)
        .map(|bytes| {
            bytes
                .iter()
                .fold(0u64, |value, &byte| (value << 8) | u64::from(byte))
        });
    match exponent {
        Some(exponent)
            if exponent % 2 == 1 && (MIN_RSA_EXPONENT..=MAX_RSA_EXPONENT).contains(&exponent) =>
        {
            Ok(())
        }
        _ => Err((
            ".e",
            format!(
                "the RSA exponent must be odd and from {MIN_RSA_EXPONENT} to 2^33 - 1 \
                 ({MIN_RSA_EXPONENT}, AQAB, is usual)"
            ),
        )),
    }
}

/// The point (x, y) must be on the P-256 curve, as aws-lc-rs parses it: a
/// point off the curve verifies no honest signature, and is where
/// invalid-curve attacks start.
fn registrable_p256(x: &str, y: &str) -> Result<(), (&'static str, String)> {
    let coordinate = |member: &'static str, encoded: &str| {
        URL_SAFE_NO_PAD
            .decode(encoded)
            .ok()
            .filter(|bytes| bytes.len() == 32)
            .ok_or((
                member,
                format!(
                    "{} is not a P-256 coordinate: 32 bytes in base64url",
                    member.trim_start_matches('.')
                ),
            ))
    };
    let mut point = vec![0x04];
    point.extend(coordinate(".x", x)?);
    point.extend(coordinate(".y", y)?);
    aws_lc_rs::signature::ParsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        point,
    )
    .map(drop)
    .map_err(|_| {
        (
            "",
            "the EC key's point (x, y) is not on the P-256 curve".into(),
        )
    })
}

impl Client {
    /// `POST /clients`: a registration as an operator sends it. The hub
    /// decides `enabled` and the subscriber link; keys must be public,
    /// named (`kid`), and of a type the hub verifies (RSA, or EC P-256).
    pub fn from_registration(body: &str) -> Result<Client, HubError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Registration {
            client_id: String,
            ods_code: String,
            roles: BTreeSet<Role>,
            keys: JwkSet,
            #[serde(default)]
            publish_event_types: BTreeSet<EventType>,
            #[serde(default)]
            publish_for_ods: BTreeSet<String>,
            #[serde(default)]
            subscribe_explicit: bool,
            #[serde(default)]
            subscribe_generic: BTreeMap<String, BTreeSet<String>>,
            sensitivity_authority: Option<bool>,
        }
        let registration: Registration = crate::fhir::from_json_unique(body).map_err(|error| {
            HubError::bad_request(
                "$",
                format!("the body is not a valid client registration: {error}"),
            )
        })?;
        let id_ok = !registration.client_id.is_empty()
            && registration.client_id.len() <= MAX_CLIENT_ID_LENGTH
            && registration
                .client_id
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte));
        if !id_ok {
            return Err(HubError::unprocessable(
                "clientId",
                format!("clientId is 1 to {MAX_CLIENT_ID_LENGTH} letters, digits, '-', '_' or '.'"),
            ));
        }
        let ods_code = OdsCode::parse(&registration.ods_code).ok_or_else(|| {
            HubError::unprocessable(
                "odsCode",
                "odsCode is not an ODS code (3 to 10 capitals and digits)",
            )
        })?;
        if registration.roles.is_empty() {
            return Err(HubError::unprocessable("roles", "name at least one role"));
        }
        let keys = &registration.keys.keys;
        if keys.is_empty() || keys.len() > MAX_CLIENT_KEYS {
            return Err(HubError::unprocessable(
                "keys",
                format!("register 1 to {MAX_CLIENT_KEYS} public keys"),
            ));
        }
        // A private key sent by mistake must be neither stored nor silently
        // dropped (the JWK reader ignores members it does not know): its
        // holder must learn that it leaked.
        let raw: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let raw_keys = raw["keys"]["keys"].as_array().into_iter().flatten();
        for (index, key) in raw_keys.enumerate() {
            if let Some(member) = PRIVATE_KEY_MEMBERS
                .iter()
                .find(|member| key.get(**member).is_some())
            {
                return Err(HubError::unprocessable(
                    format!("keys.keys[{index}].{member}"),
                    "a private key was sent: register only the public key, and replace the leaked one",
                ));
            }
        }
        let mut key_ids = BTreeSet::new();
        for (index, jwk) in keys.iter().enumerate() {
            registrable_key(jwk).map_err(|(member, problem)| {
                HubError::unprocessable(format!("keys.keys[{index}]{member}"), problem)
            })?;
            if !key_ids.insert(jwk.common.key_id.as_deref()) {
                return Err(HubError::unprocessable(
                    format!("keys.keys[{index}].kid"),
                    "two keys have the same kid: an assertion names its key by kid",
                ));
            }
        }
        for (rule, codes) in &registration.subscribe_generic {
            let known = crate::generic::RULE_TYPES
                .iter()
                .any(|known| known.code().eq_ignore_ascii_case(rule));
            if !known || codes.is_empty() {
                return Err(HubError::unprocessable(
                    "subscribeGeneric",
                    format!("'{rule}' is not a rule type, or names no organisation"),
                ));
            }
        }
        let may_publish_record_changes = registration.roles.contains(&Role::Publisher)
            && registration
                .publish_event_types
                .contains(&EventType::PdsRecordChange);
        // By default only the demographics service (PDS, ODS X26) is the
        // authority; an operator may name another explicitly.
        let sensitivity_authority = registration.sensitivity_authority.unwrap_or(
            ods_code.as_str() == DEMOGRAPHICS_AUTHORITY_ODS && may_publish_record_changes,
        );
        if sensitivity_authority && !may_publish_record_changes {
            return Err(HubError::unprocessable(
                "sensitivityAuthority",
                "only a publisher of pds-record-change-1 can clear a sensitive flag",
            ));
        }
        Ok(Client {
            client_id: registration.client_id,
            ods_code,
            roles: registration.roles,
            keys: registration.keys,
            enabled: true,
            publish_event_types: registration.publish_event_types,
            publish_for_ods: registration.publish_for_ods,
            subscriber_id: None,
            subscribe_explicit: registration.subscribe_explicit,
            subscribe_generic: registration.subscribe_generic,
            sensitivity_authority,
        })
    }

    /// The registration as the API shows it: public keys, no secrets.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec_registration(x: &str) -> String {
        serde_json::json!({
            "clientId": "client-1",
            "odsCode": "A83627",
            "roles": ["subscriber"],
            "keys": {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": x,
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]},
        })
        .to_string()
    }

    #[test]
    fn a_registered_key_whose_numbers_are_not_base64url_is_refused() {
        let good = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
        assert!(Client::from_registration(&ec_registration(good)).is_ok());
        for bad in [
            "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRV\u{fffd}EU",
            "not base64!",
            "%%%",
        ] {
            let error = Client::from_registration(&ec_registration(bad)).unwrap_err();
            assert!(
                matches!(error, HubError::Unprocessable { .. }),
                "{bad}: {error:?}"
            );
            assert!(error.to_string().contains("keys.keys[0]"), "{bad}: {error}");
        }
    }

    /// An assertion naming no registered key is checked against these: if
    /// one failed to load, that refusal would cost less work than a wrong
    /// signature's, and tell the two apart by time.
    #[test]
    fn the_stand_in_keys_load_and_verify_nothing() {
        let key = EncodingKey::from_ec_pem(include_bytes!("../tests/keys/client-ec.pem")).unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        let token = jsonwebtoken::encode(&header, &serde_json::json!({"iss": "x"}), &key).unwrap();
        for algorithm in [Algorithm::RS512, Algorithm::ES256] {
            assert!(stand_in_key(algorithm).is_some(), "{algorithm:?}");
        }
        let stand_in = stand_in_key(Algorithm::ES256).unwrap();
        assert_eq!(
            verified_claims::<serde_json::Value>(&token, stand_in, Algorithm::ES256).err(),
            Some(AuthError::BadSignature)
        );
    }

    #[test]
    fn der_signatures_become_fixed_width_whatever_their_leading_bytes() {
        // r with a sign-keeping zero byte (33 bytes), s shorter than 32.
        let mut der = vec![0x30, 0x00, 0x02, 33, 0x00];
        der.extend([0x80; 32]);
        der.extend([0x02, 31]);
        der.extend([0x11; 31]);
        der[1] = u8::try_from(der.len() - 2).unwrap();
        let fixed = ecdsa_der_to_fixed(&der).unwrap();
        assert_eq!(&fixed[..32], &[0x80; 32]);
        assert_eq!(fixed[32], 0);
        assert_eq!(&fixed[33..], &[0x11; 31]);
    }

    #[test]
    fn malformed_der_is_refused() {
        assert_eq!(ecdsa_der_to_fixed(&[]), None);
        assert_eq!(ecdsa_der_to_fixed(&[0x30, 0x02, 0x02, 0x00]), None);
        // An integer longer than 32 significant bytes.
        let mut der = vec![0x30, 0x00, 0x02, 33];
        der.extend([0x01; 33]);
        der.extend([0x02, 1, 1]);
        der[1] = u8::try_from(der.len() - 2).unwrap();
        assert_eq!(ecdsa_der_to_fixed(&der), None);
        // Trailing bytes after the sequence.
        let mut der = vec![0x30, 6, 0x02, 1, 1, 0x02, 1, 1, 0xff];
        assert_eq!(ecdsa_der_to_fixed(&der), None);
        der.pop();
        assert!(ecdsa_der_to_fixed(&der).is_some());
    }
}
