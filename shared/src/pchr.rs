//! Parents' apps (personal child health records, serviceType EPCHR): the
//! people a PCHR acts for, as it attests them, and the identity levels it
//! attests. A PCHR may subscribe to a child only through a relationship
//! between the child and a person it acts for (crate::basis).

use serde::{Deserialize, Serialize};

use crate::error::HubError;
use crate::nhs_number::NhsNumber;

/// How well a person's identity was proven (NHS login's levels; VRS's
/// `England-NHSIdentityProofingLevel`), in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum VerificationLevel {
    /// Medium: a verified identity, not yet checked against NHS records in
    /// person or by photo.
    P5,
    /// High: the person's identity is verified against their NHS record.
    P9,
}

impl VerificationLevel {
    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "P5" => Some(VerificationLevel::P5),
            "P9" => Some(VerificationLevel::P9),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            VerificationLevel::P5 => "P5",
            VerificationLevel::P9 => "P9",
        }
    }
}

/// A PCHR client's registration member (`pchr` on `POST /clients`): the
/// lowest identity level it may act for a person at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PchrRegistration {
    pub minimum_verification: VerificationLevel,
}

/// Whether the PCHR still acts for the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActingStatus {
    Active,
    Ended,
}

/// A person a PCHR (its subscriber) acts for, as it attested them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActedFor {
    pub subscriber_id: String,
    pub person: NhsNumber,
    pub verification_level: VerificationLevel,
    /// How the PCHR verified the person (`nhs-login`).
    pub method: String,
    /// When it verified them, as it says (FHIR instant).
    pub verified_at: String,
    /// When the hub recorded the attestation.
    pub attested_at: String,
    pub status: ActingStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
}

impl ActedFor {
    /// Whether it lets the PCHR subscribe to the person's children now.
    pub fn holds(&self, minimum: VerificationLevel) -> bool {
        self.status == ActingStatus::Active && self.verification_level >= minimum
    }
}

/// The body of `PUT /subscribers/{id}/people/{nhsNumber}`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    pub verification_level: VerificationLevel,
    pub method: String,
    pub verified_at: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AttestationBody {
    verification_level: String,
    method: String,
    verified_at: String,
}

const MAX_METHOD_CHARS: usize = 64;

impl Attestation {
    /// Reads the body; each refusal names its member.
    pub fn read(body: &str, minimum: VerificationLevel) -> Result<Self, HubError> {
        let parsed: AttestationBody = crate::fhir::from_json_unique(body).map_err(|error| {
            HubError::bad_request("$", format!("the body is not a valid attestation: {error}"))
        })?;
        let verification_level =
            VerificationLevel::parse(&parsed.verification_level).ok_or_else(|| {
                HubError::unprocessable(
                    "verificationLevel",
                    format!(
                        "'{}' is not an identity proofing level (P5, P9)",
                        parsed.verification_level
                    ),
                )
            })?;
        if verification_level < minimum {
            return Err(HubError::unprocessable(
                "verificationLevel",
                format!(
                    "the client acts only for people verified to {} or above",
                    minimum.code()
                ),
            ));
        }
        let method_ok = !parsed.method.is_empty()
            && parsed.method.len() <= MAX_METHOD_CHARS
            && parsed
                .method
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !method_ok {
            return Err(HubError::unprocessable(
                "method",
                "the verification method is a lower-case code (e.g. nhs-login)",
            ));
        }
        crate::fhir_time::parse_instant(&parsed.verified_at).map_err(|_| {
            HubError::unprocessable("verifiedAt", "not a FHIR instant with a time zone")
        })?;
        Ok(Attestation {
            verification_level,
            method: parsed.method,
            verified_at: parsed.verified_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_order_p9_above_p5() {
        assert!(VerificationLevel::P9 > VerificationLevel::P5);
        assert_eq!(VerificationLevel::parse("P9"), Some(VerificationLevel::P9));
        assert_eq!(VerificationLevel::parse("p9"), None);
    }

    #[test]
    fn an_attestation_below_the_minimum_or_malformed_is_refused_naming_the_member() {
        let body = |level: &str, method: &str, at: &str| {
            serde_json::json!({"verificationLevel": level, "method": method, "verifiedAt": at})
                .to_string()
        };
        let read = Attestation::read(
            &body("P9", "nhs-login", "2026-12-07T10:00:00Z"),
            VerificationLevel::P9,
        )
        .expect("a good attestation");
        assert_eq!(read.verification_level, VerificationLevel::P9);
        for (text, member) in [
            (
                body("P5", "nhs-login", "2026-12-07T10:00:00Z"),
                "verificationLevel",
            ),
            (
                body("P7", "nhs-login", "2026-12-07T10:00:00Z"),
                "verificationLevel",
            ),
            (body("P9", "NHS Login", "2026-12-07T10:00:00Z"), "method"),
            (body("P9", "nhs-login", "yesterday"), "verifiedAt"),
        ] {
            let error = Attestation::read(&text, VerificationLevel::P9).unwrap_err();
            assert!(format!("{error:?}").contains(member), "{text}: {error:?}");
        }
        assert!(
            Attestation::read("{\"verificationLevel\":\"P9\"}", VerificationLevel::P5).is_err()
        );
    }

    #[test]
    fn an_ended_or_lower_attestation_does_not_hold() {
        let mut acted = ActedFor {
            subscriber_id: "s".into(),
            person: NhsNumber::parse("9449305552").expect("valid"),
            verification_level: VerificationLevel::P9,
            method: "nhs-login".into(),
            verified_at: "2026-12-07T10:00:00Z".into(),
            attested_at: "2026-12-07T10:00:01.000Z".into(),
            status: ActingStatus::Active,
            ended_at: None,
        };
        assert!(acted.holds(VerificationLevel::P9));
        acted.verification_level = VerificationLevel::P5;
        assert!(!acted.holds(VerificationLevel::P9));
        assert!(acted.holds(VerificationLevel::P5));
        acted.status = ActingStatus::Ended;
        assert!(!acted.holds(VerificationLevel::P5));
    }
}
