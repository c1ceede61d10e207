//! The hub's token-signing key in KMS, and the verifiers of its tokens.

use super::{unavailable, unavailable_because};
use crate::ports::StoreError;

/// The hub's token-signing key in KMS (ECC_NIST_P256, SIGN_VERIFY): tokens
/// are signed by KMS, so no function ever holds the private key.
#[derive(Clone)]
pub struct KmsSigningKey {
    client: aws_sdk_kms::Client,
    key_id: String,
    verifier: crate::auth::HubVerifier,
}

impl KmsSigningKey {
    /// Reads the key's public half once, at start-up: its thumbprint is the
    /// `kid` of every token.
    pub async fn load(client: aws_sdk_kms::Client, key_id: &str) -> Result<Self, StoreError> {
        let verifier = kms_verifier(&client, key_id).await?;
        Ok(KmsSigningKey {
            client,
            key_id: key_id.to_owned(),
            verifier,
        })
    }
}

/// The verifier of the tokens a KMS key signs, from its public key.
pub async fn kms_verifier(
    client: &aws_sdk_kms::Client,
    key_id: &str,
) -> Result<crate::auth::HubVerifier, StoreError> {
    let output = client
        .get_public_key()
        .key_id(key_id)
        .send()
        .await
        .map_err(|error| unavailable("reading the hub's public key", error))?;
    let der = output
        .public_key
        .ok_or_else(|| unavailable_because("KMS returned no public key"))?;
    let pem = crate::auth::public_key_pem(der.as_ref());
    // A key of another kind (not ECC_NIST_P256): the wrong key is configured.
    crate::auth::HubVerifier::from_public_pem(pem.as_bytes()).map_err(|error| {
        StoreError::Configuration(format!("the hub's key {key_id} cannot verify: {error}"))
    })
}

/// The verifiers of every key id in a comma-separated list: the current
/// signing key first, then any older one still trusted during a rotation.
pub async fn kms_verifiers(
    client: &aws_sdk_kms::Client,
    key_ids: &str,
) -> Result<Vec<crate::auth::HubVerifier>, StoreError> {
    let mut verifiers = Vec::new();
    for key_id in key_ids
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
    {
        verifiers.push(kms_verifier(client, key_id).await?);
    }
    if verifiers.is_empty() {
        return Err(StoreError::Configuration(
            "no hub verifying key is configured".into(),
        ));
    }
    Ok(verifiers)
}

impl crate::ports::HubSigningKey for KmsSigningKey {
    fn key_id(&self) -> &str {
        self.verifier.key_id()
    }

    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, StoreError> {
        use aws_sdk_kms::primitives::Blob;
        use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
        let output = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(signing_input))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|error| unavailable("signing a token", error))?;
        let der = output
            .signature
            .ok_or_else(|| unavailable_because("KMS returned no signature"))?;
        crate::auth::ecdsa_der_to_fixed(der.as_ref())
            .map(Vec::from)
            .ok_or_else(|| unavailable_because("KMS returned an unreadable signature"))
    }
}
