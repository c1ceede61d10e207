//! Tokens whose signature is good, so that the claims the fuzzer writes
//! reach the checks past the signature.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};

/// A compact JWS of these claims bytes, as they are, signed ES256 under `kid`.
pub fn es256_token(claims: &[u8], key: &EncodingKey, kid: &str) -> String {
    let header = format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{kid}"}}"#);
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, Algorithm::ES256)
        .expect("the test key signs");
    format!("{signing_input}.{signature}")
}
