//! What a store answers besides its values: its failures and its pages. The
//! domain speaks of both (a refusal carries a store failure; a listing is a
//! page), so they sit below the ports that return them.

/// What an unavailable store carries: the error it met (an SDK error with
/// what the hub was doing), or the hub's own words.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a port could not answer. Each kind is answered differently
/// (lambda/http_status.rs): only `Unavailable` is worth a caller's retry.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store or service could not be reached, refused the call
    /// (throttled, access denied, a missing table) or did not settle
    /// (writes that kept conflicting): 503, try again. The cause keeps its
    /// chain; its text (which names the service's error code) is for logs,
    /// never for clients.
    #[error("a backing service failed: {0}")]
    Unavailable(#[source] BoxError),
    /// An item read back that the hub cannot use (it does not decode, or
    /// contradicts its key): 500, an operator must look. The text names
    /// the kind of item and, where the key identifies no one, its key;
    /// never its content.
    #[error("a stored item cannot be read: {0}")]
    Corrupt(String),
    /// A setting the function needs is missing or invalid (a table or
    /// topic not named, a number that is not one): 500. Settings are read
    /// at start-up where they can be, so that such a function fails to
    /// start rather than answer.
    #[error("the hub is misconfigured: {0}")]
    Configuration(String),
    /// A listing's page token that no page of ours produced.
    #[error("the page token is not one the hub issued")]
    InvalidPageToken,
}

/// Equal when of the same kind with the same text: the cause of an
/// unavailable store is compared by what it says (tests compare results).
impl PartialEq for StoreError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (StoreError::Unavailable(a), StoreError::Unavailable(b)) => {
                a.to_string() == b.to_string()
            }
            (StoreError::Corrupt(a), StoreError::Corrupt(b))
            | (StoreError::Configuration(a), StoreError::Configuration(b)) => a == b,
            (StoreError::InvalidPageToken, StoreError::InvalidPageToken) => true,
            _ => false,
        }
    }
}

/// One page of a listing, and the token of the next page if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}
