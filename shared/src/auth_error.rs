//! Why a token or a client was refused: below both `auth` (which refuses)
//! and `error` (which carries a refusal as one of the ways a request fails).

use crate::store::StoreError;

/// Why a token or a client was refused. The messages are fixed texts: none
/// repeats anything from the token, so a refusal leaks nothing to a caller
/// who presented someone else's token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no access token was presented")]
    NoToken,
    #[error("the token is not a well-formed signed JWT")]
    Malformed,
    /// Answered as [`AuthError::BadSignature`] is, so that the token
    /// endpoint does not tell who is registered.
    #[error("{}", UNVERIFIABLE)]
    UnknownClient,
    #[error("the client is disabled")]
    DisabledClient,
    #[error("the token's signing algorithm is not accepted here")]
    UnsupportedAlgorithm,
    #[error("the token's header names no key (kid)")]
    MissingKeyId,
    /// No registered key has the token's key id.
    #[error("{}", UNVERIFIABLE)]
    UnknownKey,
    /// The key with the token's key id does not suit its algorithm.
    #[error("{}", UNVERIFIABLE)]
    KeyTypeMismatch,
    #[error("{}", UNVERIFIABLE)]
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
    #[error("the access token lives longer than the hub issues its tokens for")]
    AccessTokenTooLong,
    #[error("the token has no issue time (iat)")]
    MissingIssuedAt,
    #[error("the client assertion has no unique identifier (jti)")]
    MissingJti,
    #[error("the client assertion was already used")]
    ReplayedJti,
    /// The hub could not decide (a store could not be reached): not the
    /// client's fault, and worth its retry. The detail is for logs, never
    /// for clients.
    #[error("the hub could not complete authentication: {0}")]
    Unavailable(String),
    /// The hub could not decide because of its own fault (a corrupt stored
    /// item, a misconfigured function): not worth a retry, an operator must
    /// look. The detail is for logs, never for clients.
    #[error("the hub failed to complete authentication: {0}")]
    Failed(String),
}

/// One answer for an unknown client, an unknown key id, a key that does not
/// suit the algorithm and a signature that does not verify: whoever probes
/// the token endpoint learns nothing of which clients and keys exist.
pub(crate) const UNVERIFIABLE: &str = "the token's signature could not be verified \
    with a key registered for the client it names";

/// A store that could not be reached is a passing outage; any other store
/// failure is the hub's own, as it is for every other request
/// ([`crate::error::HubError::Store`]).
impl From<StoreError> for AuthError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => AuthError::Unavailable(error.to_string()),
            StoreError::Corrupt(_)
            | StoreError::Configuration(_)
            | StoreError::InvalidPageToken => AuthError::Failed(error.to_string()),
        }
    }
}

impl AuthError {
    /// The refusal's name, as the audit trail records it: distinct for each
    /// reason, even where the answer to the client is the same.
    pub fn name(&self) -> &'static str {
        match self {
            AuthError::NoToken => "NoToken",
            AuthError::Malformed => "Malformed",
            AuthError::UnknownClient => "UnknownClient",
            AuthError::DisabledClient => "DisabledClient",
            AuthError::UnsupportedAlgorithm => "UnsupportedAlgorithm",
            AuthError::MissingKeyId => "MissingKeyId",
            AuthError::UnknownKey => "UnknownKey",
            AuthError::KeyTypeMismatch => "KeyTypeMismatch",
            AuthError::BadSignature => "BadSignature",
            AuthError::WrongAudience => "WrongAudience",
            AuthError::WrongIssuer => "WrongIssuer",
            AuthError::MissingExpiry => "MissingExpiry",
            AuthError::Expired => "Expired",
            AuthError::NotYetValid => "NotYetValid",
            AuthError::LifetimeTooLong => "LifetimeTooLong",
            AuthError::AccessTokenTooLong => "AccessTokenTooLong",
            AuthError::MissingIssuedAt => "MissingIssuedAt",
            AuthError::MissingJti => "MissingJti",
            AuthError::ReplayedJti => "ReplayedJti",
            AuthError::Unavailable(_) => "Unavailable",
            AuthError::Failed(_) => "Failed",
        }
    }
}
