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

use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};

pub use crate::auth_error::AuthError;
use crate::catalogue::EventType;
use crate::criteria::Target;
use crate::error::HubError;
use crate::ods::OdsCode;

mod access;
mod assertion;
mod keys;
mod registration;
mod token;

pub use access::*;
pub use assertion::*;
pub use keys::*;
pub use registration::*;
use token::*;

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
    /// Publishes parent and carer relationship events (VRS's) for the
    /// sources it is registered for (`relationshipSources`).
    #[serde(rename = "relationship-publisher")]
    RelationshipPublisher,
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
    /// The relationship event sources it may publish for (the signal's
    /// `source`, e.g. `uk.nhs.validated-relationships-service`), as a
    /// relationship publisher. Written even when empty: the clients store
    /// replaces only the members a registration writes, and a
    /// re-registration without sources must leave none behind.
    #[serde(default)]
    pub relationship_sources: BTreeSet<String>,
    /// A parent's app (PCHR, serviceType EPCHR): the lowest identity level
    /// it may act for a person at. It subscribes only to the children of
    /// the people it acts for. Written even when absent, as above.
    #[serde(default)]
    pub pchr: Option<crate::pchr::PchrRegistration>,
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
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub relationship_sources: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pchr: Option<crate::pchr::PchrRegistration>,
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
            relationship_sources: client.relationship_sources.clone(),
            pchr: client.pchr,
        }
    }

    /// What its explicit subscriptions may rest on (crate::basis).
    pub fn permits(&self) -> crate::basis::Permits {
        crate::basis::Permits {
            grants: self.subscribe_generic.clone(),
            pchr: self.pchr,
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

    /// 403 unless it is a relationship publisher registered for this
    /// source (the signal's `source`, `expression` in the body).
    pub fn may_publish_relationships(
        &self,
        source: &str,
        expression: &str,
    ) -> Result<(), HubError> {
        self.require(Role::RelationshipPublisher)?;
        if self.relationship_sources.contains(source) {
            Ok(())
        } else {
            Err(HubError::forbidden_element(
                expression,
                "the client is not registered to publish relationships from this source",
            ))
        }
    }

    /// The subscriber the caller acts as; 403 when it is none.
    pub fn subscriber(&self) -> Result<&str, HubError> {
        self.require(Role::Subscriber)?;
        self.subscriber_id.as_deref().ok_or_else(|| {
            HubError::forbidden("the client is not linked to an onboarded subscriber")
        })
    }

    /// Whether it may subscribe to named patients: registered for explicit
    /// subscriptions, or a parent's app (through its relationships).
    pub fn may_subscribe_explicitly(&self) -> bool {
        self.subscribe_explicit || self.pchr.is_some()
    }

    /// 403 unless the caller may create a subscription for this target:
    /// explicit ones when registered for them, generic ones only for the
    /// rule types and organisation codes it was registered for.
    pub fn may_subscribe(&self, target: &Target) -> Result<(), HubError> {
        match target {
            Target::Explicit(_) if self.may_subscribe_explicitly() => Ok(()),
            Target::Explicit(_) => Err(HubError::forbidden_element(
                "Subscription.criteria",
                "the client is not registered for explicit (named patient) subscriptions",
            )),
            Target::Generic { rule, organisation } => {
                let registered = self
                    .subscribe_generic
                    .keys()
                    .any(|permitted| permitted.eq_ignore_ascii_case(rule.code()));
                if !registered {
                    return Err(HubError::forbidden_element(
                        "Subscription.criteria",
                        format!(
                            "the client is not registered for {} subscriptions",
                            rule.code()
                        ),
                    ));
                }
                let named = organisation.as_deref().is_some_and(|organisation| {
                    crate::basis::granted(&self.subscribe_generic, rule.code(), organisation)
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
            Role::RelationshipPublisher => "relationship-publisher",
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

#[cfg(test)]
mod tests;
