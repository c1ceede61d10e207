//! Key formats: ECDSA signatures from DER, PEM, public JWKs.

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey};

use super::*;

/// An ECDSA signature as KMS returns it (DER: a SEQUENCE of the INTEGERs r
/// and s) in the fixed form JWS uses: r || s, 32 bytes each for P-256.
pub fn ecdsa_der_to_fixed(der: &[u8]) -> Option<[u8; 64]> {
    /// One DER element of `tag` with a short-form length: a P-256 signature
    /// is at most 72 bytes, so no length needs the long form.
    fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&found, rest) = input.split_first()?;
        let (&length, rest) = rest.split_first()?;
        if found != tag || length >= 0x80 || rest.len() < usize::from(length) {
            return None;
        }
        Some(rest.split_at(usize::from(length)))
    }
    fn scalar(integer: &[u8], into: &mut [u8]) -> Option<()> {
        // Leading zeros only keep a DER INTEGER positive.
        let start = integer.iter().position(|&byte| byte != 0)?;
        let digits = &integer[start..];
        let offset = into.len().checked_sub(digits.len())?;
        into[offset..].copy_from_slice(digits);
        Some(())
    }
    let (sequence, trailing) = element(der, 0x30)?;
    let (r, rest) = element(sequence, 0x02)?;
    let (s, rest) = element(rest, 0x02)?;
    if !trailing.is_empty() || !rest.is_empty() {
        return None;
    }
    let mut fixed = [0u8; 64];
    let (r_half, s_half) = fixed.split_at_mut(32);
    scalar(r, r_half)?;
    scalar(s, s_half)?;
    Some(fixed)
}

/// A PEM `PUBLIC KEY` from the DER SubjectPublicKeyInfo KMS returns.
pub fn public_key_pem(spki_der: &[u8]) -> String {
    pem("PUBLIC KEY", spki_der)
}

/// DER as PEM under `label` (RFC 7468): base64 in lines of 64.
pub fn pem(label: &str, der: &[u8]) -> String {
    let config = ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF);
    ::pem::encode_config(&::pem::Pem::new(label, der), config)
}

/// The public JWK of a client's signing key, named `kid`, for signatures:
/// what the client registers.
pub fn public_jwk(key: &EncodingKey, algorithm: Algorithm, kid: &str) -> Result<Jwk, KeyError> {
    let mut jwk =
        Jwk::from_encoding_key(key, algorithm).map_err(|_| KeyError::NotAClientSigningKey)?;
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(jwk)
}
