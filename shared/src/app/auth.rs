//! The token endpoint's exchange, the hub's token signer and the
//! authorizer's check of a caller: the use cases over the client store, the
//! replay guard and the signing key (the checks themselves are in
//! `crate::auth`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;

use crate::auth::Client;
use crate::auth::{
    ACCESS_TOKEN_LIFETIME_SECONDS, AccessToken, AuthError, CLOCK_SKEW_SECONDS, Caller, HubKeys,
    Refusal, access_token_claims, access_token_signature, access_token_signing_input,
    assertion_claims, assertion_header, assertion_signature, bearer_token, claimed_client_id,
    claimed_subject,
};
use crate::ports::{ClientStore, HubSigningKey, UsedAssertionIds};

/// Exchanges a client assertion for a hub access token: the client must be
/// registered and enabled, the assertion valid, and its `jti` not used before.
/// A refusal names the client the assertion claims, as verified once its
/// signature was checked.
pub async fn exchange<C: ClientStore, R: UsedAssertionIds, K: HubSigningKey>(
    assertion: &str,
    clients: &C,
    used_ids: &R,
    token_endpoint_url: &str,
    signer: &HubSigner<K>,
    now: OffsetDateTime,
) -> Result<AccessToken, Refusal> {
    let claimed = claimed_client_id(assertion);
    let unverified = Refusal::naming(claimed.as_deref(), false);
    let (algorithm, kid) = assertion_header(assertion).map_err(&unverified)?;
    let client_id = claimed
        .as_deref()
        .ok_or(AuthError::Malformed)
        .map_err(&unverified)?;
    let client = clients
        .get(client_id)
        .await
        .map_err(|error| unverified(error.into()))?;
    let claims =
        assertion_signature(assertion, client.as_ref(), &kid, algorithm).map_err(&unverified)?;
    let Some(client) = client else {
        return Err(unverified(AuthError::UnknownClient));
    };
    // From here on the assertion is known to come from the client's key.
    let verified = Refusal::naming(Some(&client.client_id), true);
    let claims = assertion_claims(claims, &client, token_endpoint_url, now).map_err(&verified)?;
    // Checked after the signature, so that only the key's holder learns
    // that its client is disabled.
    if !client.enabled {
        return Err(verified(AuthError::DisabledClient));
    }
    // Remembered only once verified: a forged assertion must not be able to
    // use up a jti its client has yet to send.
    let forget_after = claims
        .expires_at
        .saturating_add(time::Duration::seconds(CLOCK_SKEW_SECONDS));
    let first_use = used_ids
        .remember(&claims.client_id, &claims.jti, forget_after)
        .await
        .map_err(|error| verified(error.into()))?;
    if !first_use {
        return Err(verified(AuthError::ReplayedJti));
    }
    signer.issue(&client, now).await.map_err(&verified)
}

/// Issues the hub's access tokens, signed ES256 with `K`.
#[derive(Debug, Clone)]
pub struct HubSigner<K> {
    key: K,
    lifetime_seconds: u64,
}

impl<K: HubSigningKey> HubSigner<K> {
    /// The key it signs with.
    pub fn key(&self) -> &K {
        &self.key
    }

    pub fn new(key: K) -> Self {
        HubSigner {
            key,
            lifetime_seconds: ACCESS_TOKEN_LIFETIME_SECONDS,
        }
    }

    /// Shorter tokens (tests): never longer than
    /// [`ACCESS_TOKEN_LIFETIME_SECONDS`], which the authorizer would refuse.
    pub fn with_lifetime_seconds(mut self, seconds: u64) -> Self {
        self.lifetime_seconds = seconds.min(ACCESS_TOKEN_LIFETIME_SECONDS);
        self
    }

    pub async fn issue(
        &self,
        client: &Client,
        now: OffsetDateTime,
    ) -> Result<AccessToken, AuthError> {
        let signing_input =
            access_token_signing_input(client, self.key.key_id(), self.lifetime_seconds, now)?;
        let signature = self.key.sign(signing_input.as_bytes()).await?;
        Ok(AccessToken {
            token: format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)),
            expires_in: self.lifetime_seconds,
            client_id: client.client_id.clone(),
            ods_code: client.ods_code.clone(),
        })
    }
}

/// What the authorizer does with an `Authorization` header: a valid hub
/// token of a client that is still registered and enabled. The caller's
/// roles and permissions come from the client record as it is now, so that
/// disabling a client or narrowing its rights takes effect at once rather
/// than when its tokens run out. A refusal names the client the token
/// claims, as verified once the hub's signature on it was checked.
pub async fn authenticate<K: HubKeys + ?Sized, C: ClientStore>(
    authorization: Option<&str>,
    keys: &K,
    clients: &C,
    now: OffsetDateTime,
) -> Result<Caller, Refusal> {
    let claimed = authorization.and_then(claimed_subject);
    let unverified = Refusal::naming(claimed.as_deref(), false);
    let token = bearer_token(authorization).map_err(&unverified)?;
    let claims = access_token_signature(token, keys).map_err(&unverified)?;
    let verified = Refusal::naming(claims.subject(), true);
    let subject = access_token_claims(claims, now).map_err(&verified)?;
    let client = clients
        .get(&subject.client_id)
        .await
        .map_err(|error| verified(error.into()))?
        .ok_or(AuthError::UnknownClient)
        .map_err(&verified)?;
    if !client.enabled {
        return Err(verified(AuthError::DisabledClient));
    }
    Ok(Caller::of(&client))
}
