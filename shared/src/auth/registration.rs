//! Client registration: the checks a registered JWKS must pass.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use serde::Deserialize;

use crate::catalogue::EventType;
use crate::error::HubError;
use crate::ods::OdsCode;

use super::*;

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

/// The longest relationship source name (the signal's `source`, a URI).
const MAX_RELATIONSHIP_SOURCE_LENGTH: usize = 128;

/// A relationship publisher names the sources it publishes for, and only it
/// names any: a source list on another client would be a permission that
/// looks granted and is not.
fn check_relationship_sources(
    roles: &BTreeSet<Role>,
    sources: &BTreeSet<String>,
) -> Result<(), HubError> {
    let publisher = roles.contains(&Role::RelationshipPublisher);
    if publisher && sources.is_empty() {
        return Err(HubError::unprocessable(
            "relationshipSources",
            "a relationship publisher names the sources it publishes for \
             (e.g. uk.nhs.validated-relationships-service)",
        ));
    }
    if !publisher && !sources.is_empty() {
        return Err(HubError::unprocessable(
            "relationshipSources",
            "only a client with the relationship-publisher role has relationship sources",
        ));
    }
    let valid = |source: &String| {
        !source.is_empty()
            && source.len() <= MAX_RELATIONSHIP_SOURCE_LENGTH
            && source
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:/".contains(&byte))
    };
    if let Some(source) = sources.iter().find(|source| !valid(source)) {
        return Err(HubError::unprocessable(
            "relationshipSources",
            format!(
                "'{source}' is not a source name: 1 to {MAX_RELATIONSHIP_SOURCE_LENGTH} letters, \
                 digits, '-', '_', '.', ':' or '/'"
            ),
        ));
    }
    Ok(())
}

/// A parent's app is a subscriber that reaches children only through the
/// people it acts for: never by an area rule, never on a declaration.
fn check_pchr(
    roles: &BTreeSet<Role>,
    pchr: Option<&crate::pchr::PchrRegistration>,
    subscribe_explicit: bool,
    subscribe_generic: &BTreeMap<String, BTreeSet<String>>,
) -> Result<(), HubError> {
    if pchr.is_none() {
        return Ok(());
    }
    if !roles.contains(&Role::Subscriber) {
        return Err(HubError::unprocessable(
            "pchr",
            "a parent's app (pchr) is a client with the subscriber role",
        ));
    }
    if !subscribe_generic.is_empty() {
        return Err(HubError::unprocessable(
            "subscribeGeneric",
            "a parent's app subscribes to the children of the people it acts for,              never to an area or practice",
        ));
    }
    if subscribe_explicit {
        return Err(HubError::unprocessable(
            "subscribeExplicit",
            "a parent's app may not declare direct care: it subscribes through the              relationships of the people it acts for (pchr)",
        ));
    }
    Ok(())
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
            #[serde(default)]
            relationship_sources: BTreeSet<String>,
            #[serde(default)]
            pchr: Option<crate::pchr::PchrRegistration>,
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
        check_relationship_sources(&registration.roles, &registration.relationship_sources)?;
        check_pchr(
            &registration.roles,
            registration.pchr.as_ref(),
            registration.subscribe_explicit,
            &registration.subscribe_generic,
        )?;
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
            relationship_sources: registration.relationship_sources,
            pchr: registration.pchr,
        })
    }

    /// The registration as the API shows it: public keys, no secrets.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
