//! Registered clients, seen assertions and the hub's PEM signing key, in memory.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use time::OffsetDateTime;

use super::poisoned;
use crate::app::auth::HubSigner;
use crate::auth::Client;
use crate::auth::{HubVerifier, KeyError};
use crate::ports::{ClientStore, HubSigningKey, StoreError, UsedAssertionIds};

/// Registered clients, put in by the test or the local stack that uses it.
#[derive(Default)]
pub struct MemoryClientStore {
    clients: Mutex<HashMap<String, Client>>,
}

impl MemoryClientStore {
    /// Registers the client, replacing any registered under its id.
    pub fn put(&self, client: Client) -> Result<(), StoreError> {
        self.clients
            .lock()
            .map_err(|_| poisoned())?
            .insert(client.client_id.clone(), client);
        Ok(())
    }
}

impl ClientStore for MemoryClientStore {
    async fn get(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        Ok(self
            .clients
            .lock()
            .map_err(|_| poisoned())?
            .get(client_id)
            .cloned())
    }

    async fn register(&self, client: &Client) -> Result<bool, StoreError> {
        let mut clients = self.clients.lock().map_err(|_| poisoned())?;
        let mut registered = client.clone();
        let existing = clients.get(&client.client_id);
        if let Some(existing) = existing {
            // As the DynamoDB adapter: the link stays, and a disabled client
            // stays disabled.
            registered.subscriber_id = existing.subscriber_id.clone();
            registered.enabled = existing.enabled;
        }
        let created = existing.is_none();
        clients.insert(client.client_id.clone(), registered);
        Ok(created)
    }

    async fn disable(&self, client_id: &str) -> Result<bool, StoreError> {
        let mut clients = self.clients.lock().map_err(|_| poisoned())?;
        Ok(clients
            .get_mut(client_id)
            .map(|client| client.enabled = false)
            .is_some())
    }

    async fn link_subscriber(
        &self,
        client_id: &str,
        subscriber_id: &str,
    ) -> Result<(), StoreError> {
        let mut clients = self.clients.lock().map_err(|_| poisoned())?;
        match clients.get_mut(client_id) {
            Some(client) => {
                client.subscriber_id = Some(subscriber_id.to_owned());
                Ok(())
            }
            None => Err(StoreError::Unavailable(
                format!("no client {client_id} to link").into(),
            )),
        }
    }
}

/// The (client id, jti) pairs seen, each with the time it may be forgotten.
#[derive(Default)]
pub struct MemoryUsedAssertionIds {
    seen: Mutex<HashMap<(String, String), OffsetDateTime>>,
}

impl MemoryUsedAssertionIds {
    /// Drops the records whose assertions have expired. Nothing calls it on
    /// its own: the guard takes no clock, so a test with a fixed `now` never
    /// loses a record it still needs.
    pub fn forget_expired(&self, now: OffsetDateTime) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.retain(|_, expires_at| *expires_at > now);
        }
    }

    pub fn len(&self) -> usize {
        self.seen.lock().map(|seen| seen.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl UsedAssertionIds for MemoryUsedAssertionIds {
    async fn remember(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut seen = self.seen.lock().map_err(|_| poisoned())?;
        match seen.entry((client_id.to_owned(), jti.to_owned())) {
            Entry::Occupied(_) => Ok(false),
            Entry::Vacant(entry) => {
                entry.insert(expires_at);
                Ok(true)
            }
        }
    }
}

/// A hub signing key held in memory, read from PEM.
#[derive(Debug, Clone)]
pub struct PemSigningKey {
    key: EncodingKey,
    verifier: HubVerifier,
}

impl PemSigningKey {
    /// A PKCS#8 PEM P-256 private key and its public key. The public key is
    /// checked against the private one, so a mix-up of keys fails at
    /// start-up rather than on every call.
    pub fn from_pem(private_key_pem: &[u8], public_key_pem: &[u8]) -> Result<Self, KeyError> {
        let key =
            EncodingKey::from_ec_pem(private_key_pem).map_err(|_| KeyError::NotEs256PrivateKey)?;
        let derived = Jwk::from_encoding_key(&key, Algorithm::ES256)
            .map_err(|_| KeyError::NotEs256PrivateKey)?;
        let verifier = HubVerifier::from_public_pem(public_key_pem)?;
        if derived.algorithm != verifier.jwk().algorithm {
            return Err(KeyError::NotAPair);
        }
        Ok(PemSigningKey { key, verifier })
    }
}

impl HubSigningKey for PemSigningKey {
    fn key_id(&self) -> &str {
        self.verifier.key_id()
    }

    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, StoreError> {
        let signature = jsonwebtoken::crypto::sign(signing_input, &self.key, Algorithm::ES256)
            .map_err(|error| StoreError::Unavailable(format!("signing failed: {error}").into()))?;
        URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|error| StoreError::Unavailable(format!("signing failed: {error}").into()))
    }
}

/// The signing key of `MemoryPorts`: none until a test sets one, when
/// signing fails as it would on an unconnected port.
impl HubSigningKey for Option<PemSigningKey> {
    fn key_id(&self) -> &str {
        self.as_ref().map_or("", PemSigningKey::key_id)
    }

    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, StoreError> {
        match self {
            Some(key) => key.sign(signing_input).await,
            None => Err(StoreError::Configuration(
                "no hub signing key is set in these in-memory ports".into(),
            )),
        }
    }
}

impl HubSigner<PemSigningKey> {
    pub fn from_pem(private_key_pem: &[u8], public_key_pem: &[u8]) -> Result<Self, KeyError> {
        PemSigningKey::from_pem(private_key_pem, public_key_pem).map(HubSigner::new)
    }

    /// The verifier of the tokens this signer issues.
    pub fn verifier(&self) -> &HubVerifier {
        &self.key().verifier
    }
}
