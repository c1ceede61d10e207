//! What a store answers besides its values: its failures and its pages. The
//! domain speaks of both (a refusal carries a store failure; a listing is a
//! page), so they sit below the ports that return them.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store or service could not be reached or refused the call; the
    /// detail is for logs, never for clients.
    #[error("a backing service failed: {0}")]
    Unavailable(String),
    /// A listing's page token that no page of ours produced.
    #[error("the page token is not one the hub issued")]
    InvalidPageToken,
}

/// One page of a listing, and the token of the next page if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}
