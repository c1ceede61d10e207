//! How an API request fails on its way in: a body the Lambda layer cannot
//! read as sent (a transport matter, refused before the domain sees it), or
//! the domain's refusal ([`HubError`]). The answer to each is
//! `http_status`'s.

use crate::auth::AuthError;
use crate::criteria::CriteriaError;
use crate::error::HubError;
use crate::message::MessageError;
use crate::ports::StoreError;

/// What the FHIR endpoints take.
pub const FHIR_MEDIA_TYPES: &str = "application/fhir+xml or application/fhir+json";

/// A request body the Lambda layer cannot read as it was sent.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("{}", media_type_problem(found.as_deref(), expected))]
    UnsupportedMediaType {
        found: Option<String>,
        expected: &'static str,
    },
    #[error("the body is {size} bytes; the hub accepts at most {limit}")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("the body is not valid UTF-8 text")]
    NotText,
    /// Answered as the bad request it always was: the element is `body`.
    #[error("body: the body is marked base64 but is not")]
    NotBase64,
}

/// What an unsupported media type's diagnostics say: the type as it was
/// sent, or that none was.
fn media_type_problem(found: Option<&str>, expected: &str) -> String {
    match found {
        Some(found) => format!("the Content-Type {found} is not {expected}"),
        None => format!("the request has no Content-Type: send {expected}"),
    }
}

impl BodyError {
    pub fn unsupported_media_type(found: Option<&str>, expected: &'static str) -> Self {
        BodyError::UnsupportedMediaType {
            found: found.filter(|media| !media.is_empty()).map(str::to_owned),
            expected,
        }
    }
}

/// Every way an API request fails: its body, or what the domain refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Hub(#[from] HubError),
}

/// The domain's failures reach a handler through [`HubError`]; these let
/// `?` carry them to the request's error directly.
macro_rules! through_hub_error {
    ($($error:ty),*) => {$(
        impl From<$error> for RequestError {
            fn from(error: $error) -> Self {
                RequestError::Hub(HubError::from(error))
            }
        }
    )*};
}

through_hub_error!(AuthError, StoreError, MessageError, CriteriaError);
