//! The client assertion of a token request (RFC 7523): raw text, or claims
//! under a good signature of a registered client's key.
#![no_main]

mod signed;

use std::sync::LazyLock;

use hub::auth::{self, Client, Role};
use hub::subscriber::OdsCode;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

const TOKEN_ENDPOINT: &str = "https://hub.example/oauth2/token";

// The test suite's client keys.
const CLIENT_EC_PRIVATE: &[u8] = include_bytes!("../../shared/tests/keys/client-ec.pem");
const CLIENT_RSA_PRIVATE: &[u8] = include_bytes!("../../shared/tests/keys/client-rsa.pem");

static CLIENT: LazyLock<(EncodingKey, Client)> = LazyLock::new(|| {
    let ec = EncodingKey::from_ec_pem(CLIENT_EC_PRIVATE).expect("the client test key");
    let rsa = EncodingKey::from_rsa_pem(CLIENT_RSA_PRIVATE).expect("the client test key");
    let keys = jsonwebtoken::jwk::JwkSet {
        keys: vec![
            auth::public_jwk(&ec, Algorithm::ES256, "ec-1").expect("a JWK"),
            auth::public_jwk(&rsa, Algorithm::RS512, "rsa-1").expect("a JWK"),
        ],
    };
    let client = Client {
        client_id: "fuzz-client".into(),
        ods_code: OdsCode::parse("A83627").expect("an ODS code"),
        roles: [Role::Publisher].into(),
        keys,
        enabled: true,
        publish_event_types: Default::default(),
        publish_for_ods: Default::default(),
        subscriber_id: None,
        subscribe_explicit: false,
        subscribe_generic: Default::default(),
        sensitivity_authority: false,
        relationship_sources: Default::default(),
        pchr: None,
    };
    (ec, client)
});

fuzz_target!(|data: &[u8]| {
    let (key, client) = &*CLIENT;
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a valid instant");
    match data.split_first() {
        Some((mode, claims)) if mode % 2 == 1 => {
            let assertion = signed::es256_token(claims, key, "ec-1");
            let claimed = auth::claimed_client_id(&assertion);
            if let Ok(claims) =
                auth::verify_client_assertion(&assertion, client, TOKEN_ENDPOINT, now)
            {
                assert_eq!(claimed.as_deref(), Some(client.client_id.as_str()));
                assert!(!claims.jti.is_empty());
            }
        }
        _ => {
            let Ok(assertion) = std::str::from_utf8(data) else {
                return;
            };
            let _ = auth::claimed_client_id(assertion);
            // No fuzzed assertion carries the client's signature.
            assert!(auth::verify_client_assertion(assertion, client, TOKEN_ENDPOINT, now).is_err());
        }
    }
});
