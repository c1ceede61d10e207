//! Authentication: client assertions (RFC 7523, as NHS England uses them),
//! their exchange for hub access tokens, and the access tokens' checks.
//! Each refusal is asserted by its own reason. The keys are the test-only
//! ones of tests/keys (see its README).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hub::EventType;
use hub::HubError;
use hub::app::auth::{HubSigner, exchange};
use hub::auth::{
    AuthError, Caller, Client, HubVerifier, KeyError, Role, TokenSubject, bearer_token,
    claimed_client_id, verify_access_token, verify_client_assertion,
};
use hub::lambda::Answer;
use hub::memory::{MemoryClientStore, MemoryUsedAssertionIds, PemSigningKey};
use hub::outcome::Severity;
use hub::ports::{ClientStore, StoreError};
use hub::subscriber::OdsCode;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const TOKEN_URL: &str = "https://hub.example.nhs.uk/oauth2/token";
const CLIENT_ID: &str = "vaccination-system";
const RSA_KID: &str = "client-rsa-1";
const EC_KID: &str = "client-ec-1";

/// When the tests' tokens are presented.
const NOW: OffsetDateTime = datetime!(2024-06-01 12:00:00 UTC);

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

fn key_file(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn client_rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&key_file("client-rsa.pem")).unwrap()
}

fn client_ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(&key_file("client-ec.pem")).unwrap()
}

fn other_rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&key_file("other-rsa.pem")).unwrap()
}

fn hub_private_key() -> EncodingKey {
    EncodingKey::from_ec_pem(&key_file("hub-ec.pem")).unwrap()
}

fn public_jwk(key: &EncodingKey, algorithm: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, algorithm).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

fn client() -> Client {
    Client {
        client_id: CLIENT_ID.to_owned(),
        ods_code: OdsCode::parse("RX1").unwrap(),
        roles: BTreeSet::from([Role::Publisher, Role::Subscriber]),
        keys: JwkSet {
            keys: vec![
                public_jwk(&client_rsa_key(), Algorithm::RS512, RSA_KID),
                public_jwk(&client_ec_key(), Algorithm::ES256, EC_KID),
            ],
        },
        enabled: true,
        publish_event_types: BTreeSet::from([EventType::Vaccinations]),
        publish_for_ods: BTreeSet::from(["RX1".to_owned()]),
        subscriber_id: Some("subscriber-1".to_owned()),
        subscribe_explicit: true,
        subscribe_generic: BTreeMap::new(),
        sensitivity_authority: false,
        relationship_sources: Default::default(),
        pchr: None,
    }
}

fn seconds_from_now(seconds: i64) -> i64 {
    NOW.unix_timestamp() + seconds
}

/// A valid assertion's claims: issued now, for the 5 minutes allowed.
fn assertion_claims(jti: &str) -> Value {
    json!({
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": TOKEN_URL,
        "iat": seconds_from_now(0),
        "exp": seconds_from_now(300),
        "jti": jti,
    })
}

/// `claims` with the fields of `changes` set, and those set to null removed.
fn changed(mut claims: Value, changes: Value) -> Value {
    if let (Some(claims), Some(changes)) = (claims.as_object_mut(), changes.as_object()) {
        for (name, value) in changes {
            if value.is_null() {
                claims.remove(name);
            } else {
                claims.insert(name.clone(), value.clone());
            }
        }
    }
    claims
}

fn signed(algorithm: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn rs512(claims: &Value) -> String {
    signed(Algorithm::RS512, Some(RSA_KID), &client_rsa_key(), claims)
}

fn es256(claims: &Value) -> String {
    signed(Algorithm::ES256, Some(EC_KID), &client_ec_key(), claims)
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn verify(assertion: &str) -> Result<hub::auth::AssertionClaims, AuthError> {
    verify_client_assertion(assertion, &client(), TOKEN_URL, NOW)
}

fn hub_signer() -> HubSigner<PemSigningKey> {
    HubSigner::from_pem(&key_file("hub-ec.pem"), &key_file("hub-ec.pub.pem")).unwrap()
}

fn hub_verifier() -> HubVerifier {
    HubVerifier::from_public_pem(&key_file("hub-ec.pub.pem")).unwrap()
}

/// Access-token claims as the hub writes them, for tokens built by hand.
fn access_claims() -> Value {
    json!({
        "iss": "child-health-hub",
        "aud": "child-health-hub",
        "sub": CLIENT_ID,
        "ods": "RX1",
        "roles": ["publisher"],
        "iat": seconds_from_now(0),
        "exp": seconds_from_now(300),
        "jti": "c2b1f7a0-1d1e-4a53-9a41-5b0f2f0d8c11",
    })
}

/// A token signed with the hub's own private key, whatever its claims.
fn hub_signed(claims: &Value) -> String {
    let kid = hub_verifier().key_id().to_owned();
    signed(Algorithm::ES256, Some(&kid), &hub_private_key(), claims)
}

fn stores() -> (MemoryClientStore, MemoryUsedAssertionIds) {
    let clients = MemoryClientStore::default();
    clients.put(client()).unwrap();
    (clients, MemoryUsedAssertionIds::default())
}

// ---------------------------------------------------------------------------
// Valid assertions and the whole exchange
// ---------------------------------------------------------------------------

#[test]
fn an_rs512_assertion_is_accepted() {
    let verified = verify(&rs512(&assertion_claims("jti-rs512"))).unwrap();
    assert_eq!(verified.client_id, CLIENT_ID);
    assert_eq!(verified.jti, "jti-rs512");
    assert_eq!(verified.expires_at, NOW + Duration::minutes(5));
    assert_eq!(verified.issued_at, Some(NOW));
}

#[test]
fn an_es256_assertion_is_accepted() {
    let verified = verify(&es256(&assertion_claims("jti-es256"))).unwrap();
    assert_eq!(verified.client_id, CLIENT_ID);
    assert_eq!(verified.jti, "jti-es256");
}

#[test]
fn an_assertion_may_name_its_audience_in_a_list_and_leave_out_iat() {
    let claims = changed(
        assertion_claims("jti-list"),
        json!({"aud": ["https://elsewhere.example", TOKEN_URL], "iat": null}),
    );
    assert!(verify(&rs512(&claims)).is_ok());
}

#[test]
fn the_client_id_is_read_from_iss_before_verification() {
    assert_eq!(
        claimed_client_id(&rs512(&assertion_claims("jti-peek"))),
        Some(CLIENT_ID.to_owned())
    );
    let no_issuer = changed(assertion_claims("jti-peek"), json!({"iss": null}));
    assert_eq!(claimed_client_id(&rs512(&no_issuer)), None);
    assert_eq!(claimed_client_id(""), None);
}

#[tokio::test]
async fn an_exchanged_token_identifies_the_client_to_the_authorizer() {
    let (clients, replay_guard) = stores();
    let signer = hub_signer();
    let assertion = es256(&assertion_claims("jti-exchange"));

    let access = exchange(&assertion, &clients, &replay_guard, TOKEN_URL, &signer, NOW)
        .await
        .unwrap();
    assert_eq!(access.expires_in, 300);

    let caller = verify_access_token(&access.token, signer.verifier(), NOW).unwrap();
    assert_eq!(
        caller,
        TokenSubject {
            client_id: CLIENT_ID.to_owned(),
            ods_code: OdsCode::parse("RX1").unwrap(),
            roles: BTreeSet::from([Role::Publisher, Role::Subscriber]),
        }
    );
    assert!(caller.has_role(Role::Publisher));
    assert!(!caller.has_role(Role::Operator));

    // The authorizer needs only the public key.
    let bearer = format!("Bearer {}", access.token);
    let token = bearer_token(Some(&bearer)).unwrap();
    assert_eq!(verify_access_token(token, &hub_verifier(), NOW), Ok(caller));
}

#[tokio::test]
async fn the_access_token_lives_as_long_as_the_signer_says() {
    let (clients, replay_guard) = stores();
    let signer = hub_signer().with_lifetime_seconds(60);
    let assertion = rs512(&assertion_claims("jti-lifetime"));
    let access = exchange(&assertion, &clients, &replay_guard, TOKEN_URL, &signer, NOW)
        .await
        .unwrap();
    assert_eq!(access.expires_in, 60);
    let verifier = signer.verifier();
    let just_before = NOW + Duration::seconds(59);
    assert!(verify_access_token(&access.token, verifier, just_before).is_ok());
    assert_eq!(
        verify_access_token(&access.token, verifier, NOW + Duration::seconds(60)),
        Err(AuthError::Expired)
    );
}

// ---------------------------------------------------------------------------
// No token, or not a token
// ---------------------------------------------------------------------------

#[test]
fn no_token_is_refused_as_no_token() {
    assert_eq!(bearer_token(None), Err(AuthError::NoToken));
    assert_eq!(bearer_token(Some("  ")), Err(AuthError::NoToken));
    assert_eq!(bearer_token(Some("Bearer ")), Err(AuthError::NoToken));
    assert_eq!(bearer_token(Some("bearer abc")), Ok("abc"));
    assert_eq!(
        bearer_token(Some("Basic dXNlcjpwYXNz")),
        Err(AuthError::Malformed)
    );
    assert_eq!(verify(""), Err(AuthError::NoToken));
    assert_eq!(
        verify_access_token("", &hub_verifier(), NOW),
        Err(AuthError::NoToken)
    );
}

#[tokio::test]
async fn garbage_is_refused_as_malformed() {
    let (clients, replay_guard) = stores();
    let not_json = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode("{not json"),
        segment(&json!({}))
    );
    let four_parts = format!("{}.extra", rs512(&assertion_claims("jti-four")));
    let oversized = format!(
        "{}.{}.c2ln",
        segment(&json!({"alg": "RS512", "kid": RSA_KID})),
        "A".repeat(10_000)
    );
    let bad_payload = format!(
        "{}.%%%.c2ln",
        segment(&json!({"alg": "RS512", "kid": RSA_KID}))
    );
    for garbage in [
        "garbage",
        "a.b.c",
        not_json.as_str(),
        four_parts.as_str(),
        oversized.as_str(),
        bad_payload.as_str(),
    ] {
        assert_eq!(verify(garbage), Err(AuthError::Malformed), "{garbage}");
        assert_eq!(
            verify_access_token(garbage, &hub_verifier(), NOW),
            Err(AuthError::Malformed),
            "{garbage}"
        );
        assert_eq!(
            exchange(
                garbage,
                &clients,
                &replay_guard,
                TOKEN_URL,
                &hub_signer(),
                NOW
            )
            .await
            .map_err(|refusal| refusal.reason),
            Err(AuthError::Malformed),
            "{garbage}"
        );
    }
}

#[test]
fn a_valid_header_on_a_damaged_signature_is_malformed_or_refused() {
    let token = rs512(&assertion_claims("jti-sig"));
    let (unsigned, _) = token.rsplit_once('.').unwrap();
    assert_eq!(
        verify(&format!("{unsigned}.!!!")),
        Err(AuthError::Malformed)
    );
    assert_eq!(
        verify(&format!("{unsigned}.")),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn a_critical_header_extension_is_refused() {
    let mut header = Header::new(Algorithm::RS512);
    header.kid = Some(RSA_KID.to_owned());
    header.crit = Some(vec!["exp-ext".to_owned()]);
    let token =
        jsonwebtoken::encode(&header, &assertion_claims("jti-crit"), &client_rsa_key()).unwrap();
    assert_eq!(verify(&token), Err(AuthError::Malformed));
}

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

#[test]
fn an_expired_assertion_is_refused() {
    let claims = changed(
        assertion_claims("jti-old"),
        json!({"iat": seconds_from_now(-400), "exp": seconds_from_now(-100)}),
    );
    assert_eq!(verify(&rs512(&claims)), Err(AuthError::Expired));
}

#[test]
fn an_assertion_just_expired_is_accepted_within_the_clock_skew() {
    let claims = changed(
        assertion_claims("jti-skew"),
        json!({"iat": seconds_from_now(-300), "exp": seconds_from_now(-30)}),
    );
    assert!(verify(&rs512(&claims)).is_ok());
}

#[test]
fn an_assertion_issued_in_the_future_is_not_yet_valid() {
    let claims = changed(
        assertion_claims("jti-future"),
        json!({"iat": seconds_from_now(120), "exp": seconds_from_now(300)}),
    );
    assert_eq!(verify(&rs512(&claims)), Err(AuthError::NotYetValid));

    let not_before = changed(
        assertion_claims("jti-nbf"),
        json!({"nbf": seconds_from_now(120)}),
    );
    assert_eq!(verify(&es256(&not_before)), Err(AuthError::NotYetValid));

    // A client clock 30 seconds ahead is tolerated.
    let slightly_ahead = changed(
        assertion_claims("jti-ahead"),
        json!({"iat": seconds_from_now(30), "exp": seconds_from_now(330)}),
    );
    assert!(verify(&rs512(&slightly_ahead)).is_ok());
}

#[test]
fn an_assertion_living_over_five_minutes_is_refused() {
    let claims = changed(
        assertion_claims("jti-long"),
        json!({"exp": seconds_from_now(301)}),
    );
    assert_eq!(verify(&rs512(&claims)), Err(AuthError::LifetimeTooLong));

    let without_iat = changed(
        assertion_claims("jti-long-no-iat"),
        json!({"iat": null, "exp": seconds_from_now(3600)}),
    );
    assert_eq!(
        verify(&es256(&without_iat)),
        Err(AuthError::LifetimeTooLong)
    );
}

#[test]
fn an_assertion_without_expiry_is_refused() {
    let claims = changed(assertion_claims("jti-no-exp"), json!({"exp": null}));
    assert_eq!(verify(&rs512(&claims)), Err(AuthError::MissingExpiry));
}

#[tokio::test]
async fn an_expired_access_token_is_refused() {
    let access = hub_signer().issue(&client(), NOW).await.unwrap();
    let later = NOW + Duration::minutes(6);
    assert_eq!(
        verify_access_token(&access.token, &hub_verifier(), later),
        Err(AuthError::Expired)
    );
}

#[tokio::test]
async fn an_access_token_from_the_future_is_not_yet_valid() {
    let access = hub_signer().issue(&client(), NOW).await.unwrap();
    let earlier = NOW - Duration::minutes(2);
    assert_eq!(
        verify_access_token(&access.token, &hub_verifier(), earlier),
        Err(AuthError::NotYetValid)
    );
    let not_before = changed(access_claims(), json!({"nbf": seconds_from_now(120)}));
    assert_eq!(
        verify_access_token(&hub_signed(&not_before), &hub_verifier(), NOW),
        Err(AuthError::NotYetValid)
    );
}

// ---------------------------------------------------------------------------
// Audience, issuer, jti
// ---------------------------------------------------------------------------

#[test]
fn an_assertion_for_another_audience_is_refused() {
    let other_endpoint = changed(
        assertion_claims("jti-aud"),
        json!({"aud": "https://other.example.nhs.uk/oauth2/token"}),
    );
    assert_eq!(
        verify(&rs512(&other_endpoint)),
        Err(AuthError::WrongAudience)
    );
    let no_audience = changed(assertion_claims("jti-aud"), json!({"aud": null}));
    assert_eq!(verify(&es256(&no_audience)), Err(AuthError::WrongAudience));
}

#[test]
fn an_assertion_from_another_issuer_is_refused() {
    let other_issuer = changed(assertion_claims("jti-iss"), json!({"iss": "someone-else"}));
    assert_eq!(verify(&rs512(&other_issuer)), Err(AuthError::WrongIssuer));
    let other_subject = changed(assertion_claims("jti-sub"), json!({"sub": "someone-else"}));
    assert_eq!(verify(&rs512(&other_subject)), Err(AuthError::WrongIssuer));
    let no_subject = changed(assertion_claims("jti-sub"), json!({"sub": null}));
    assert_eq!(verify(&es256(&no_subject)), Err(AuthError::WrongIssuer));
}

#[test]
fn an_assertion_without_jti_is_refused() {
    let no_jti = changed(assertion_claims("unused"), json!({"jti": null}));
    assert_eq!(verify(&rs512(&no_jti)), Err(AuthError::MissingJti));
    let empty_jti = assertion_claims("");
    assert_eq!(verify(&rs512(&empty_jti)), Err(AuthError::MissingJti));
}

#[test]
fn an_access_token_for_another_audience_or_from_another_issuer_is_refused() {
    let verifier = hub_verifier();
    let other_audience = changed(access_claims(), json!({"aud": "another-api"}));
    assert_eq!(
        verify_access_token(&hub_signed(&other_audience), &verifier, NOW),
        Err(AuthError::WrongAudience)
    );
    let other_issuer = changed(access_claims(), json!({"iss": "another-hub"}));
    assert_eq!(
        verify_access_token(&hub_signed(&other_issuer), &verifier, NOW),
        Err(AuthError::WrongIssuer)
    );
}

// ---------------------------------------------------------------------------
// Keys, signatures and algorithms
// ---------------------------------------------------------------------------

#[test]
fn an_assertion_signed_by_another_key_under_the_clients_kid_is_refused() {
    let forged = signed(
        Algorithm::RS512,
        Some(RSA_KID),
        &other_rsa_key(),
        &assertion_claims("jti-forged"),
    );
    assert_eq!(verify(&forged), Err(AuthError::BadSignature));
}

#[test]
fn an_assertion_whose_kid_the_client_did_not_register_is_refused() {
    let unknown = signed(
        Algorithm::RS512,
        Some("rotated-away"),
        &client_rsa_key(),
        &assertion_claims("jti-kid"),
    );
    assert_eq!(verify(&unknown), Err(AuthError::UnknownKey));
    let no_kid = signed(
        Algorithm::RS512,
        None,
        &client_rsa_key(),
        &assertion_claims("jti-kid"),
    );
    assert_eq!(verify(&no_kid), Err(AuthError::MissingKeyId));
}

#[test]
fn an_assertion_whose_kid_names_a_key_of_the_wrong_type_is_refused() {
    // ES256 signed by the client's EC key, but naming its RSA key.
    let crossed = signed(
        Algorithm::ES256,
        Some(RSA_KID),
        &client_ec_key(),
        &assertion_claims("jti-crossed"),
    );
    assert_eq!(verify(&crossed), Err(AuthError::KeyTypeMismatch));
}

#[test]
fn an_unsigned_assertion_is_refused_for_its_algorithm() {
    for alg in ["none", "None", "NONE"] {
        let unsigned = format!(
            "{}.{}.",
            segment(&json!({"alg": alg, "typ": "JWT", "kid": RSA_KID})),
            segment(&assertion_claims("jti-none"))
        );
        assert_eq!(verify(&unsigned), Err(AuthError::UnsupportedAlgorithm));
    }
    let no_alg = format!(
        "{}.{}.",
        segment(&json!({"typ": "JWT", "kid": RSA_KID})),
        segment(&assertion_claims("jti-no-alg"))
    );
    assert_eq!(verify(&no_alg), Err(AuthError::UnsupportedAlgorithm));
}

#[test]
fn an_hmac_assertion_keyed_with_the_clients_public_key_is_refused() {
    // The algorithm-confusion attack: the public key is no secret, so an
    // HMAC "signed" with it would verify if the hub let the token choose.
    for (public_pem, kid) in [
        (key_file("client-rsa.pub.pem"), RSA_KID),
        (key_file("client-ec.pub.pem"), EC_KID),
    ] {
        let secret = EncodingKey::from_secret(&public_pem);
        for algorithm in [Algorithm::HS256, Algorithm::HS512] {
            let confused = signed(algorithm, Some(kid), &secret, &assertion_claims("jti-hs"));
            assert_eq!(verify(&confused), Err(AuthError::UnsupportedAlgorithm));
        }
    }
}

#[test]
fn an_assertion_in_an_algorithm_outside_the_pattern_is_refused() {
    // RS256 with the client's real key: a sound signature, but NHS England's
    // pattern names RS512 (and the hub adds ES256) only.
    let rs256 = signed(
        Algorithm::RS256,
        Some(RSA_KID),
        &client_rsa_key(),
        &assertion_claims("jti-rs256"),
    );
    assert_eq!(verify(&rs256), Err(AuthError::UnsupportedAlgorithm));
}

#[test]
fn an_hmac_access_token_keyed_with_the_hubs_public_key_is_refused() {
    let secret = EncodingKey::from_secret(&key_file("hub-ec.pub.pem"));
    let kid = hub_verifier().key_id().to_owned();
    let confused = signed(Algorithm::HS256, Some(&kid), &secret, &access_claims());
    assert_eq!(
        verify_access_token(&confused, &hub_verifier(), NOW),
        Err(AuthError::UnsupportedAlgorithm)
    );
    let unsigned = format!(
        "{}.{}.",
        segment(&json!({"alg": "none", "kid": kid})),
        segment(&access_claims())
    );
    assert_eq!(
        verify_access_token(&unsigned, &hub_verifier(), NOW),
        Err(AuthError::UnsupportedAlgorithm)
    );
}

#[tokio::test]
async fn a_tampered_access_token_is_refused() {
    let access = hub_signer().issue(&client(), NOW).await.unwrap();
    let [header, payload, signature]: [&str; 3] = access
        .token
        .split('.')
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["roles"] = json!(["operator", "publisher", "subscriber"]);
    let tampered = format!("{header}.{}.{signature}", segment(&claims));
    assert_eq!(
        verify_access_token(&tampered, &hub_verifier(), NOW),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn a_token_the_hub_did_not_sign_is_refused_as_an_access_token() {
    // A client's own ES256 token, dressed as a hub token.
    let forged = signed(
        Algorithm::ES256,
        Some(hub_verifier().key_id()),
        &client_ec_key(),
        &access_claims(),
    );
    assert_eq!(
        verify_access_token(&forged, &hub_verifier(), NOW),
        Err(AuthError::BadSignature)
    );
    // A client assertion presented as an access token.
    let assertion = es256(&assertion_claims("jti-as-access"));
    assert_eq!(
        verify_access_token(&assertion, &hub_verifier(), NOW),
        Err(AuthError::UnknownKey)
    );
}

// ---------------------------------------------------------------------------
// The exchange: clients and replays
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_replayed_assertion_is_refused() {
    let (clients, replay_guard) = stores();
    let signer = hub_signer();
    let assertion = rs512(&assertion_claims("jti-once"));
    assert!(
        exchange(&assertion, &clients, &replay_guard, TOKEN_URL, &signer, NOW)
            .await
            .is_ok()
    );
    let a_second_later = NOW + Duration::seconds(1);
    assert_eq!(
        exchange(
            &assertion,
            &clients,
            &replay_guard,
            TOKEN_URL,
            &signer,
            a_second_later
        )
        .await
        .map_err(|refusal| refusal.reason),
        Err(AuthError::ReplayedJti)
    );
    // A new assertion with the same jti is a replay too.
    let same_jti = es256(&assertion_claims("jti-once"));
    assert_eq!(
        exchange(&same_jti, &clients, &replay_guard, TOKEN_URL, &signer, NOW)
            .await
            .map_err(|refusal| refusal.reason),
        Err(AuthError::ReplayedJti)
    );
    let fresh = es256(&assertion_claims("jti-twice"));
    assert!(
        exchange(&fresh, &clients, &replay_guard, TOKEN_URL, &signer, NOW)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_forged_assertion_does_not_use_up_its_jti() {
    let (clients, replay_guard) = stores();
    let signer = hub_signer();
    let forged = signed(
        Algorithm::RS512,
        Some(RSA_KID),
        &other_rsa_key(),
        &assertion_claims("jti-next"),
    );
    assert_eq!(
        exchange(&forged, &clients, &replay_guard, TOKEN_URL, &signer, NOW)
            .await
            .map_err(|refusal| refusal.reason),
        Err(AuthError::BadSignature)
    );
    assert!(replay_guard.is_empty());
    let genuine = rs512(&assertion_claims("jti-next"));
    assert!(
        exchange(&genuine, &clients, &replay_guard, TOKEN_URL, &signer, NOW)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_unknown_client_is_refused() {
    let (clients, replay_guard) = stores();
    let claims = changed(
        assertion_claims("jti-stranger"),
        json!({"iss": "stranger", "sub": "stranger"}),
    );
    assert_eq!(
        exchange(
            &rs512(&claims),
            &clients,
            &replay_guard,
            TOKEN_URL,
            &hub_signer(),
            NOW
        )
        .await
        .map_err(|refusal| refusal.reason),
        Err(AuthError::UnknownClient)
    );
}

#[tokio::test]
async fn a_disabled_client_is_refused() {
    let (clients, replay_guard) = stores();
    clients
        .put(Client {
            enabled: false,
            ..client()
        })
        .unwrap();
    let assertion = es256(&assertion_claims("jti-disabled"));
    assert_eq!(
        exchange(
            &assertion,
            &clients,
            &replay_guard,
            TOKEN_URL,
            &hub_signer(),
            NOW
        )
        .await
        .map_err(|refusal| refusal.reason),
        Err(AuthError::DisabledClient)
    );
    // Only the holder of the client's key learns that it is disabled.
    let forged = signed(
        Algorithm::RS512,
        Some(RSA_KID),
        &other_rsa_key(),
        &assertion_claims("jti-disabled-forged"),
    );
    assert_eq!(
        exchange(
            &forged,
            &clients,
            &replay_guard,
            TOKEN_URL,
            &hub_signer(),
            NOW
        )
        .await
        .map_err(|refusal| refusal.reason),
        Err(AuthError::BadSignature)
    );
}

/// A client table that cannot be read.
struct UnreachableClients;

impl ClientStore for UnreachableClients {
    async fn get(&self, _client_id: &str) -> Result<Option<Client>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }

    async fn register(&self, _client: &Client) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }

    async fn disable(&self, _client_id: &str) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }

    async fn link_subscriber(&self, _client: &str, _subscriber: &str) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
}

#[tokio::test]
async fn a_store_failure_is_unavailable_not_a_refusal() {
    let assertion = rs512(&assertion_claims("jti-outage"));
    let refusal = exchange(
        &assertion,
        &UnreachableClients,
        &MemoryUsedAssertionIds::default(),
        TOKEN_URL,
        &hub_signer(),
        NOW,
    )
    .await
    .unwrap_err()
    .reason;
    assert!(matches!(refusal, AuthError::Unavailable(_)), "{refusal:?}");
    let outcome = refusal.outcome();
    assert!(!outcome.issues[0].diagnostics.contains("connection refused"));
}

// ---------------------------------------------------------------------------
// Refusals as the client sees them
// ---------------------------------------------------------------------------

#[test]
fn every_refusal_is_a_401_with_a_security_outcome() {
    let refusals = [
        AuthError::NoToken,
        AuthError::Malformed,
        AuthError::UnknownClient,
        AuthError::DisabledClient,
        AuthError::UnsupportedAlgorithm,
        AuthError::MissingKeyId,
        AuthError::UnknownKey,
        AuthError::KeyTypeMismatch,
        AuthError::BadSignature,
        AuthError::WrongAudience,
        AuthError::WrongIssuer,
        AuthError::MissingExpiry,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::LifetimeTooLong,
        AuthError::AccessTokenTooLong,
        AuthError::MissingIssuedAt,
        AuthError::MissingJti,
        AuthError::ReplayedJti,
    ];
    // These read as a bad signature does (see the test below).
    let alike = [
        AuthError::UnknownClient,
        AuthError::UnknownKey,
        AuthError::KeyTypeMismatch,
    ];
    let mut diagnostics = BTreeSet::new();
    for refusal in &refusals {
        let outcome = refusal.outcome();
        let [issue] = outcome.issues.as_slice() else {
            panic!("{refusal:?}: one issue expected");
        };
        assert_eq!(issue.severity, Severity::Error);
        assert!(["security", "login"].contains(&issue.code), "{refusal:?}");
        assert_eq!(issue.spine_code, "ACCESS_DENIED");
        diagnostics.insert(issue.diagnostics.clone());
    }
    assert_eq!(
        diagnostics.len(),
        refusals.len() - alike.len(),
        "each other reason reads differently"
    );
    let names: BTreeSet<&str> = refusals.iter().map(AuthError::name).collect();
    assert_eq!(
        names.len(),
        refusals.len(),
        "the audit trail tells each apart"
    );
    assert_eq!(AuthError::NoToken.outcome().issues[0].code, "login");
    assert_eq!(AuthError::BadSignature.outcome().issues[0].code, "security");
}

#[test]
fn a_refusal_repeats_nothing_of_the_token() {
    let claims = changed(
        assertion_claims("jti-secret-value"),
        json!({"aud": "https://attacker.example/<script>"}),
    );
    let token = rs512(&claims);
    let refusal = verify(&token).unwrap_err();
    let rendered = refusal.outcome().to_json().to_string();
    for part in token.split('.') {
        assert!(!rendered.contains(part));
    }
    for secret in ["jti-secret-value", "attacker.example", CLIENT_ID] {
        assert!(!rendered.contains(secret), "{rendered}");
    }
}

// ---------------------------------------------------------------------------
// Registration and hub keys
// ---------------------------------------------------------------------------

#[test]
fn a_client_registration_reads_from_camel_case_json() {
    let registered = serde_json::to_value(client()).unwrap();
    assert_eq!(registered["clientId"], CLIENT_ID);
    assert_eq!(registered["odsCode"], "RX1");
    assert_eq!(registered["roles"], json!(["publisher", "subscriber"]));
    assert_eq!(registered["publishEventTypes"], json!(["vaccinations-1"]));
    assert_eq!(registered["publishForOds"], json!(["RX1"]));
    assert_eq!(registered["subscriberId"], "subscriber-1");
    assert_eq!(registered["keys"]["keys"][0]["kid"], RSA_KID);
    assert_eq!(registered["keys"]["keys"][1]["crv"], "P-256");
    let read: Client = serde_json::from_value(registered).unwrap();
    assert_eq!(read, client());
    let caller = Caller::of(&read);
    assert!(caller.may_publish_type(EventType::Vaccinations).is_ok());
    assert!(caller.may_publish_for(Some("RX1")).is_ok());
    assert!(caller.may_publish_for(Some("rx1")).is_ok());
    assert!(caller.may_publish_for(Some("RX2")).is_err());
    assert!(caller.may_publish_for(None).is_err());
    assert!(
        caller
            .may_publish_type(EventType::PdsBirthNotification)
            .is_err()
    );
}

#[test]
fn the_hub_refuses_keys_that_do_not_make_an_es256_pair() {
    let hub_private = key_file("hub-ec.pem");
    assert_eq!(
        HubSigner::from_pem(&hub_private, &key_file("client-ec.pub.pem")).unwrap_err(),
        KeyError::NotAPair
    );
    assert_eq!(
        HubSigner::from_pem(&key_file("client-rsa.pem"), &key_file("hub-ec.pub.pem")).unwrap_err(),
        KeyError::NotEs256PrivateKey
    );
    assert_eq!(
        HubSigner::from_pem(&hub_private, &key_file("client-rsa.pub.pem")).unwrap_err(),
        KeyError::NotEs256PublicKey
    );
    assert_eq!(
        HubVerifier::from_public_pem(b"not a key").unwrap_err(),
        KeyError::NotEs256PublicKey
    );
}

#[test]
fn the_hub_publishes_its_public_key_under_its_kid() {
    let verifier = hub_verifier();
    let jwk = verifier.jwk();
    assert_eq!(jwk.common.key_id.as_deref(), Some(verifier.key_id()));
    let published = serde_json::to_value(&jwk).unwrap();
    assert_eq!(published["kty"], "EC");
    assert_eq!(published["crv"], "P-256");
    assert!(published.get("d").is_none(), "no private part");
}

#[test]
fn the_token_request_form_carries_the_grant_and_the_escaped_assertion_type() {
    assert_eq!(
        hub::auth::token_request_form("a.b.c"),
        "grant_type=client_credentials\
         &client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
         &client_assertion=a.b.c"
    );
    let fields = hub::text::form_fields(&hub::auth::token_request_form("a.b.c")).unwrap();
    assert!(fields.contains(&(
        "client_assertion_type".to_owned(),
        hub::auth::CLIENT_ASSERTION_TYPE.to_owned()
    )));
}

// ---------------------------------------------------------------------------
// Issue 18: registration, filing of refusals, enumeration, token lifetime
// ---------------------------------------------------------------------------

/// A registration of `keys` (JWKs as JSON) for a new client.
fn registration_of(keys: Vec<Value>) -> String {
    json!({
        "clientId": "new-client",
        "odsCode": "A83627",
        "roles": ["publisher"],
        "keys": {"keys": keys},
    })
    .to_string()
}

fn rsa_jwk() -> Value {
    serde_json::to_value(public_jwk(&client_rsa_key(), Algorithm::RS512, RSA_KID)).unwrap()
}

fn ec_jwk() -> Value {
    serde_json::to_value(public_jwk(&client_ec_key(), Algorithm::ES256, EC_KID)).unwrap()
}

/// A 1024-bit RSA modulus (of a key made with openssl and thrown away).
const RSA_1024_MODULUS: &str = "pxfH8kGS9MRX1OemcRcj0MKEfJbOtsPuZuUHdQBiyOFsFgWnwx-uErwFvXI5g7nsykTV0VAMdSwcF64o8c0xkFxsUAVfJx-Y9CHZl5-C3yUsQXnbvF2g2AWN3VTt_feudcNHRyCi67VGuzCIHFpj8CgNgnyQ-Li3ua3GuPKwr-U";

#[test]
fn registration_refuses_weak_unusable_and_private_keys_with_422() {
    // The control: the test keys, with and without alg and use.
    assert!(Client::from_registration(&registration_of(vec![rsa_jwk(), ec_jwk()])).is_ok());
    let mut bare = ec_jwk();
    bare.as_object_mut()
        .unwrap()
        .retain(|name, _| name != "alg" && name != "use");
    assert!(Client::from_registration(&registration_of(vec![bare])).is_ok());

    let with = |jwk: Value, changes: Value| changed(jwk, changes);
    let mut off_curve = ec_jwk();
    // The same x with y moved by one: no longer a point of P-256.
    let mut y = URL_SAFE_NO_PAD
        .decode(off_curve["y"].as_str().unwrap())
        .unwrap();
    y[31] ^= 1;
    off_curve["y"] = json!(URL_SAFE_NO_PAD.encode(y));
    let cases: Vec<(&str, Vec<Value>, &str)> = vec![
        (
            "RSA-1024",
            vec![with(rsa_jwk(), json!({"n": RSA_1024_MODULUS}))],
            "keys.keys[0].n",
        ),
        (
            "RSA e=1",
            vec![with(rsa_jwk(), json!({"e": "AQ"}))],
            "keys.keys[0].e",
        ),
        (
            "RSA e=3",
            vec![with(rsa_jwk(), json!({"e": "Aw"}))],
            "keys.keys[0].e",
        ),
        (
            "RSA e even",
            vec![with(rsa_jwk(), json!({"e": "AQAA"}))],
            "keys.keys[0].e",
        ),
        ("EC point off P-256", vec![off_curve], "keys.keys[0]"),
        (
            "EC coordinate too short",
            vec![with(ec_jwk(), json!({"x": "AQAB"}))],
            "keys.keys[0].x",
        ),
        (
            "two keys with one kid",
            vec![rsa_jwk(), with(ec_jwk(), json!({"kid": RSA_KID}))],
            "keys.keys[1].kid",
        ),
        (
            "alg HS256",
            vec![with(ec_jwk(), json!({"alg": "HS256"}))],
            "keys.keys[0].alg",
        ),
        (
            "alg RS512 on an EC key",
            vec![with(ec_jwk(), json!({"alg": "RS512"}))],
            "keys.keys[0].alg",
        ),
        (
            "alg RS256, which the hub does not accept",
            vec![with(rsa_jwk(), json!({"alg": "RS256"}))],
            "keys.keys[0].alg",
        ),
        (
            "use enc",
            vec![with(ec_jwk(), json!({"use": "enc"}))],
            "keys.keys[0].use",
        ),
        (
            "key_ops without verify",
            vec![with(ec_jwk(), json!({"key_ops": ["sign"]}))],
            "keys.keys[0].key_ops",
        ),
        (
            "an RSA key with its primes",
            vec![
                rsa_jwk(),
                with(rsa_jwk(), json!({"kid": "k2", "p": "AQAB", "q": "AQAB"})),
            ],
            "keys.keys[1].p",
        ),
    ];
    let private = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
        .map(|member| (member, with(rsa_jwk(), json!({member: "AQAB"}))));
    let private_cases = private
        .iter()
        .map(|(member, jwk)| (*member, vec![jwk.clone()], format!("keys.keys[0].{member}")));
    let cases = cases
        .into_iter()
        .map(|(what, keys, expression)| (what, keys, expression.to_owned()))
        .chain(private_cases);
    for (what, keys, expression) in cases {
        let error = Client::from_registration(&registration_of(keys)).unwrap_err();
        assert!(
            matches!(error, HubError::Unprocessable { .. }),
            "{what}: {error:?}"
        );
        let outcome = error.outcome();
        assert_eq!(
            outcome.issues[0].expression,
            vec![expression.clone()],
            "{what}: {error}"
        );
    }
}

#[tokio::test]
async fn unsigned_and_hmac_assertions_are_filed_under_the_client_they_claim() {
    let (clients, replay_guard) = stores();
    let unsigned = format!(
        "{}.{}.",
        segment(&json!({"alg": "none", "kid": RSA_KID})),
        segment(&assertion_claims("jti-filed-none"))
    );
    let hmac = signed(
        Algorithm::HS256,
        Some(EC_KID),
        &EncodingKey::from_secret(&key_file("client-ec.pub.pem")),
        &assertion_claims("jti-filed-hs256"),
    );
    for assertion in [unsigned, hmac] {
        let refusal = exchange(
            &assertion,
            &clients,
            &replay_guard,
            TOKEN_URL,
            &hub_signer(),
            NOW,
        )
        .await
        .unwrap_err();
        assert_eq!(
            refusal,
            hub::auth::Refusal {
                reason: AuthError::UnsupportedAlgorithm,
                client_id: Some(CLIENT_ID.to_owned()),
                verified: false,
            }
        );
    }
}

#[tokio::test]
async fn refusals_after_the_signature_was_checked_name_the_client_as_verified() {
    let (clients, replay_guard) = stores();
    let assertion = es256(&assertion_claims("jti-verified-replay"));
    let exchanged = |assertion: String| {
        let (clients, replay_guard) = (&clients, &replay_guard);
        async move {
            exchange(
                &assertion,
                clients,
                replay_guard,
                TOKEN_URL,
                &hub_signer(),
                NOW,
            )
            .await
        }
    };
    assert!(exchanged(assertion.clone()).await.is_ok());
    let replayed = exchanged(assertion).await.unwrap_err();
    assert_eq!(replayed.reason, AuthError::ReplayedJti);
    assert_eq!(replayed.client_id.as_deref(), Some(CLIENT_ID));
    assert!(replayed.verified);

    let expired = changed(
        assertion_claims("jti-verified-expired"),
        json!({"iat": seconds_from_now(-900), "exp": seconds_from_now(-600)}),
    );
    let refused = exchanged(es256(&expired)).await.unwrap_err();
    assert_eq!(
        (refused.reason, refused.verified),
        (AuthError::Expired, true)
    );

    // A signature by another key proves nothing of the client.
    let forged = signed(
        Algorithm::RS512,
        Some(RSA_KID),
        &other_rsa_key(),
        &assertion_claims("jti-verified-forged"),
    );
    let refused = exchanged(forged).await.unwrap_err();
    assert_eq!(refused.reason, AuthError::BadSignature);
    assert_eq!(refused.client_id.as_deref(), Some(CLIENT_ID));
    assert!(!refused.verified);

    clients
        .put(Client {
            enabled: false,
            ..client()
        })
        .unwrap();
    let refused = exchanged(es256(&assertion_claims("jti-verified-disabled")))
        .await
        .unwrap_err();
    assert_eq!(
        (refused.reason, refused.verified),
        (AuthError::DisabledClient, true)
    );
}

#[tokio::test]
async fn unknown_client_unknown_kid_wrong_key_and_bad_signature_are_answered_alike() {
    let (clients, replay_guard) = stores();
    let stranger = changed(
        assertion_claims("jti-alike-stranger"),
        json!({"iss": "stranger", "sub": "stranger"}),
    );
    let tampered = {
        let token = es256(&assertion_claims("jti-alike-tampered"));
        let parts: Vec<&str> = token.split('.').collect();
        let claims = changed(
            assertion_claims("jti-alike-tampered"),
            json!({"exp": seconds_from_now(200)}),
        );
        format!("{}.{}.{}", parts[0], segment(&claims), parts[2])
    };
    let cases = [
        (
            "an unknown client",
            es256(&stranger),
            AuthError::UnknownClient,
        ),
        (
            "an unknown kid",
            signed(
                Algorithm::ES256,
                Some("no-such-kid"),
                &client_ec_key(),
                &assertion_claims("jti-alike-kid"),
            ),
            AuthError::UnknownKey,
        ),
        (
            "an RS512 assertion under the EC key's kid",
            signed(
                Algorithm::RS512,
                Some(EC_KID),
                &client_rsa_key(),
                &assertion_claims("jti-alike-type"),
            ),
            AuthError::KeyTypeMismatch,
        ),
        (
            "a signature by another key",
            signed(
                Algorithm::RS512,
                Some(RSA_KID),
                &other_rsa_key(),
                &assertion_claims("jti-alike-wrong"),
            ),
            AuthError::BadSignature,
        ),
        ("a tampered assertion", tampered, AuthError::BadSignature),
    ];
    let mut answers = BTreeSet::new();
    for (what, assertion, expected) in cases {
        let refusal = exchange(
            &assertion,
            &clients,
            &replay_guard,
            TOKEN_URL,
            &hub_signer(),
            NOW,
        )
        .await
        .unwrap_err();
        // The audit trail still tells them apart.
        assert_eq!(refusal.reason, expected, "{what}");
        answers.insert(refusal.reason.outcome().to_json().to_string());
    }
    assert_eq!(answers.len(), 1, "{answers:?}");
    // A malformed signature is refused as malformed whether or not the
    // client exists.
    for claims in [stranger, assertion_claims("jti-alike-malformed")] {
        let (unsigned, _) = es256(&claims)
            .rsplit_once('.')
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .unwrap();
        let refusal = exchange(
            &format!("{unsigned}.!!!"),
            &clients,
            &replay_guard,
            TOKEN_URL,
            &hub_signer(),
            NOW,
        )
        .await
        .unwrap_err();
        assert_eq!(refusal.reason, AuthError::Malformed);
    }
}

#[test]
fn an_access_token_living_longer_than_the_hub_issues_or_without_iat_is_refused() {
    let verifier = hub_verifier();
    let longest = changed(access_claims(), json!({"exp": seconds_from_now(300)}));
    assert!(verify_access_token(&hub_signed(&longest), &verifier, NOW).is_ok());
    let for_a_day = changed(access_claims(), json!({"exp": seconds_from_now(86_400)}));
    assert_eq!(
        verify_access_token(&hub_signed(&for_a_day), &verifier, NOW),
        Err(AuthError::AccessTokenTooLong)
    );
    let a_second_too_long = changed(access_claims(), json!({"exp": seconds_from_now(301)}));
    assert_eq!(
        verify_access_token(&hub_signed(&a_second_too_long), &verifier, NOW),
        Err(AuthError::AccessTokenTooLong)
    );
    let no_iat = changed(access_claims(), json!({"iat": null}));
    assert_eq!(
        verify_access_token(&hub_signed(&no_iat), &verifier, NOW),
        Err(AuthError::MissingIssuedAt)
    );
}
