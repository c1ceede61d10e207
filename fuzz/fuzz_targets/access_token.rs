//! The Authorization header of an API call, as the token authorizer reads
//! it: raw bytes, or claims under a good signature of the hub's key.
#![no_main]

mod signed;

use std::sync::LazyLock;

use hub::auth::{self, HubVerifier};
use jsonwebtoken::EncodingKey;
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

// The test suite's hub key.
const HUB_PRIVATE: &[u8] = include_bytes!("../../shared/tests/keys/hub-ec.pem");
const HUB_PUBLIC: &[u8] = include_bytes!("../../shared/tests/keys/hub-ec.pub.pem");

static HUB_KEY: LazyLock<(EncodingKey, HubVerifier)> = LazyLock::new(|| {
    (
        EncodingKey::from_ec_pem(HUB_PRIVATE).expect("the hub test key"),
        HubVerifier::from_public_pem(HUB_PUBLIC).expect("the hub test key"),
    )
});

fuzz_target!(|data: &[u8]| {
    let (key, verifier) = &*HUB_KEY;
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a valid instant");
    match data.split_first() {
        Some((mode, claims)) if mode % 2 == 1 => {
            let token = signed::es256_token(claims, key, verifier.key_id());
            if let Ok(subject) = auth::verify_access_token(&token, verifier, now) {
                assert!(!subject.client_id.is_empty());
            }
        }
        _ => {
            let Ok(header) = std::str::from_utf8(data) else {
                return;
            };
            let _ = auth::claimed_subject(header);
            if let Ok(token) = auth::bearer_token(Some(header)) {
                // No fuzzed token carries the hub's signature.
                assert!(auth::verify_access_token(token, verifier, now).is_err());
            }
        }
    }
});
