//! Authentication and authorisation through the local stack: the token
//! endpoint, the TOKEN authorizer in front of every other route (as API
//! Gateway runs it) and its gateway responses, and the functions' own role
//! and ownership checks. The domain crate unit-tests each refusal; these
//! prove they hold through the API.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use e2e_tests::{
    DEMO_OPERATOR, DEMO_PUBLISHER, DEMO_SUBSCRIBER, Hub, TestClient, fixture, subscription_resource,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

const XML: &str = "application/fhir+xml";
const VACCINATION_CRITERIA: &str = "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|9912003888&MessageHeader.event=vaccinations-1";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A jti no other assertion of this run uses.
fn jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("e2e-{}-{}", now(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Assertion claims for the client, valid now unless changed.
fn assertion_claims(client_id: &str, audience: &str) -> Value {
    let issued = now();
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": issued,
        "exp": issued + 240,
        "jti": jti(),
    })
}

fn sign(algorithm: Algorithm, kid: &str, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("signing a test token")
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// An unsigned JWT (`alg: none`): header and claims, empty signature.
fn unsigned(kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    format!("{}.{}.", segment(&header), segment(claims))
}

/// The token's claims as JSON (nothing verified).
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a payload segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

fn header_of(token: &str) -> Value {
    let header = token.split('.').next().expect("a header segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url")).expect("JSON")
}

/// The token with its claims replaced and its signature kept.
fn with_claims(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], segment(claims), parts[2])
}

/// A refusal: 401, a FHIR OperationOutcome with a security or login issue,
/// and nothing of the presented token in it.
async fn assert_refused(response: reqwest::Response, presented: &str, what: &str) -> Value {
    assert_eq!(response.status(), 401, "{what}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/fhir+json"),
        "{what}: {content_type}"
    );
    let body = response.text().await.expect("a body");
    for part in presented.split('.').filter(|part| part.len() >= 8) {
        assert!(
            !body.contains(part),
            "{what}: the refusal repeats the token: {body}"
        );
    }
    let outcome: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{what}");
    let code = outcome["issue"][0]["code"].as_str().unwrap_or_default();
    assert!(
        ["security", "login"].contains(&code),
        "{what}: issue code {code}"
    );
    assert!(
        outcome["issue"][0]["diagnostics"].is_string(),
        "{what}: {outcome}"
    );
    outcome
}

async fn diagnostics(response: reqwest::Response, presented: &str, what: &str) -> String {
    assert_refused(response, presented, what).await["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A request to a route behind the authorizer, with this Authorization.
async fn probe(hub: &Hub, authorization: Option<&str>) -> reqwest::Response {
    let mut request = hub.http.get(hub.url("/Subscription"));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request.send().await.expect("GET /Subscription")
}

async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.expect("a request").status().as_u16()
}

/// The hub's token-signing key in the emulator: the KMS client and the
/// alias the template gives it.
async fn hub_signing_key(hub: &Hub) -> (aws_sdk_kms::Client, String) {
    let kms = aws_sdk_kms::Client::new(&hub.config);
    let alias = kms
        .list_aliases()
        .send()
        .await
        .expect("listing KMS aliases")
        .aliases
        .unwrap_or_default()
        .into_iter()
        .filter_map(|alias| alias.alias_name)
        .find(|name| name.ends_with("-token-signing"))
        .expect("the template's token-signing alias");
    (kms, alias)
}

/// A token with these claims signed by the hub's own KMS key, as the token
/// endpoint signs them: what only the hub can make.
async fn hub_signed(hub: &Hub, kid: &str, claims: &Value) -> String {
    let (kms, alias) = hub_signing_key(hub).await;
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
    let input = format!("{}.{}", segment(&header), segment(claims));
    let der = kms
        .sign()
        .key_id(alias)
        .message(aws_sdk_kms::primitives::Blob::new(input.as_bytes()))
        .message_type(aws_sdk_kms::types::MessageType::Raw)
        .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .expect("KMS Sign")
        .signature
        .expect("a signature");
    let fixed = hub::auth::ecdsa_der_to_fixed(der.as_ref()).expect("a P-256 signature");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(fixed))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_assertion_gets_a_bearer_token_that_opens_the_api() {
    let hub = Hub::shared().await;
    let client = hub.demo_client(DEMO_SUBSCRIBER);
    let response = hub.exchange(&client.assertion(&hub.token_url())).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"].to_string().trim_matches('"'), "300");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(header_of(token)["alg"], "ES256");
    assert_eq!(claims_of(token)["sub"], DEMO_SUBSCRIBER);

    let listed = probe(&hub, Some(&format!("Bearer {token}"))).await;
    assert_eq!(listed.status(), 200);
    // The scheme is case-insensitive.
    let listed = probe(&hub, Some(&format!("bearer {token}"))).await;
    assert_eq!(listed.status(), 200);

    // The CLI gets one the same way.
    let binary = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/hub-local");
    let output = tokio::process::Command::new(binary)
        .args(["token", DEMO_PUBLISHER, "--api", &hub.api])
        .env("HUB_LOCAL_STATE_DIR", &hub.state_dir)
        .output()
        .await
        .expect("hub-local token");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(printed.lines().count(), 1, "the token alone: {printed}");
    assert_eq!(claims_of(printed.trim())["sub"], DEMO_PUBLISHER);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_endpoint_refuses_every_bad_assertion_with_401() {
    let hub = Hub::shared().await;
    let url = hub.token_url();
    // A client with the committed test key, whose public half is at hand
    // as PEM: what an attacker would use as an HMAC secret.
    let client = hub.register_client("publisher", "A83627", json!({})).await;
    let id = client.client_id.as_str();
    let kid = client.kid.as_str();
    let key = &client.key;
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/keys");
    let public_pem = std::fs::read(keys.join("client-ec.pub.pem")).unwrap();
    let other_key =
        EncodingKey::from_ec_pem(&std::fs::read(keys.join("hub-ec.pem")).unwrap()).unwrap();
    let valid = assertion_claims(id, &url);
    let with = |changes: Value| {
        let mut claims = assertion_claims(id, &url);
        for (name, value) in changes.as_object().unwrap() {
            claims[name] = value.clone();
        }
        claims
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            sign(
                Algorithm::ES256,
                kid,
                &with(json!({"iat": now() - 900, "exp": now() - 600})),
                key,
            ),
            "expired",
        ),
        (
            "not yet valid",
            sign(
                Algorithm::ES256,
                kid,
                &with(json!({"iat": now() + 600, "exp": now() + 800})),
                key,
            ),
            "not valid yet",
        ),
        (
            "living longer than 5 minutes",
            sign(
                Algorithm::ES256,
                kid,
                &with(json!({"exp": now() + 3600})),
                key,
            ),
            "longer than 5 minutes",
        ),
        (
            "for another token URL",
            sign(
                Algorithm::ES256,
                kid,
                &with(json!({"aud": url.replace("http://", "https://")})),
                key,
            ),
            "audience",
        ),
        (
            "signed by another key",
            sign(Algorithm::ES256, kid, &valid, &other_key),
            "signature",
        ),
        ("alg none", unsigned(kid, &valid), "algorithm"),
        (
            "HS256 with the client's public key as secret",
            sign(
                Algorithm::HS256,
                kid,
                &valid,
                &EncodingKey::from_secret(&public_pem),
            ),
            "algorithm",
        ),
        (
            "an unknown client",
            sign(
                Algorithm::ES256,
                "whatever-1",
                &assertion_claims("no-such-client", &url),
                key,
            ),
            "could not be verified",
        ),
        (
            "an unknown key id",
            sign(Algorithm::ES256, "not-my-key", &valid, key),
            "could not be verified",
        ),
        (
            "tampered",
            with_claims(
                &sign(Algorithm::ES256, kid, &valid, key),
                &with(json!({"exp": now() + 280})),
            ),
            "signature",
        ),
        ("not a JWT", "not-a-jwt".to_owned(), "well-formed"),
    ];
    for (what, assertion, expected) in cases {
        let detail = diagnostics(hub.exchange(&assertion).await, &assertion, what).await;
        assert!(detail.contains(expected), "{what}: {detail}");
    }

    // A replayed assertion: accepted once, refused the second time.
    let assertion = sign(Algorithm::ES256, kid, &assertion_claims(id, &url), key);
    assert_eq!(hub.exchange(&assertion).await.status(), 200);
    let detail = diagnostics(hub.exchange(&assertion).await, &assertion, "replayed").await;
    assert!(detail.contains("already used"), "{detail}");

    // The form itself: the grant and the assertion type are required.
    let response = hub
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&client_assertion_type=x&client_assertion={}",
            client.assertion(&url)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = hub
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_authorizer_refuses_every_bad_access_token_with_401() {
    let hub = Hub::shared().await;
    let token = hub.token(DEMO_SUBSCRIBER).await;
    let genuine = claims_of(&token);
    let hub_kid = header_of(&token)["kid"].as_str().unwrap().to_owned();

    // No header at all: API Gateway refuses without calling the authorizer.
    let detail = diagnostics(probe(&hub, None).await, "", "no token").await;
    assert!(detail.contains("no access token"), "{detail}");

    // A hub-signed token is accepted (the control for what follows).
    let control = hub_signed(&hub, &hub_kid, &genuine).await;
    assert_eq!(
        probe(&hub, Some(&format!("Bearer {control}")))
            .await
            .status(),
        200
    );

    let with = |changes: Value| {
        let mut claims = genuine.clone();
        for (name, value) in changes.as_object().unwrap() {
            claims[name] = value.clone();
        }
        claims
    };
    let (kms, alias) = hub_signing_key(&hub).await;
    let hub_public_pem = hub::auth::public_key_pem(
        kms.get_public_key()
            .key_id(alias)
            .send()
            .await
            .unwrap()
            .public_key
            .unwrap()
            .as_ref(),
    );
    let assertion = hub.demo_client(DEMO_SUBSCRIBER).assertion(&hub.token_url());
    let cases: Vec<(&str, String, &str)> = vec![
        ("the scheme alone", "Bearer".to_owned(), "no access token"),
        (
            "another scheme",
            format!("Basic {}", URL_SAFE_NO_PAD.encode("user:password")),
            "well-formed",
        ),
        ("not a JWT", "Bearer not-a-jwt".to_owned(), "well-formed"),
        (
            "expired, though signed by the hub",
            format!(
                "Bearer {}",
                hub_signed(
                    &hub,
                    &hub_kid,
                    &with(json!({"iat": now() - 900, "exp": now() - 600}))
                )
                .await
            ),
            "expired",
        ),
        (
            "not yet valid, though signed by the hub",
            format!(
                "Bearer {}",
                hub_signed(
                    &hub,
                    &hub_kid,
                    &with(json!({"iat": now() + 600, "exp": now() + 900}))
                )
                .await
            ),
            "not valid yet",
        ),
        (
            "for another audience, though signed by the hub",
            format!(
                "Bearer {}",
                hub_signed(&hub, &hub_kid, &with(json!({"aud": "someone-else"}))).await
            ),
            "audience",
        ),
        (
            "signed by another key under the hub's kid",
            format!(
                "Bearer {}",
                sign(Algorithm::ES256, &hub_kid, &genuine, &e2e_tests::test_key())
            ),
            "signature",
        ),
        (
            "alg none",
            format!("Bearer {}", unsigned(&hub_kid, &genuine)),
            "algorithm",
        ),
        (
            "HS256 with the hub's public key as secret",
            format!(
                "Bearer {}",
                sign(
                    Algorithm::HS256,
                    &hub_kid,
                    &genuine,
                    &EncodingKey::from_secret(hub_public_pem.as_bytes())
                )
            ),
            "algorithm",
        ),
        (
            "tampered: the roles of an operator",
            format!(
                "Bearer {}",
                with_claims(&token, &with(json!({"roles": ["operator"]})))
            ),
            "signature",
        ),
        (
            "a client assertion instead of an access token",
            format!("Bearer {assertion}"),
            "could not be verified",
        ),
    ];
    for (what, authorization, expected) in cases {
        let detail = diagnostics(
            probe(&hub, Some(&authorization)).await,
            &authorization,
            what,
        )
        .await;
        assert!(detail.contains(expected), "{what}: {detail}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_client_gets_no_new_token_and_its_issued_tokens_stop_working() {
    let hub = Hub::shared().await;
    let client = hub
        .register_client(
            "publisher",
            "A83627",
            json!({"publishEventTypes": ["vaccinations-1"], "publishForOds": ["A83627"]}),
        )
        .await;
    let token = hub.token_for(&client).await;
    // A message of this test's own: the stack is shared.
    let vaccination = e2e_tests::as_new_message(
        &fixture("nems/vaccinations-1-new.xml"),
        e2e_tests::VACCINATION_HEADER_ID,
    );
    let (published, outcome) = hub
        .publish_as(&token, "vaccinations-1", Some(XML), &vaccination)
        .await;
    assert_eq!(published, 202, "{outcome}");

    // Only an operator may disable a client.
    let path = format!("/clients/{}", client.client_id);
    let publisher = hub.token(DEMO_PUBLISHER).await;
    assert_eq!(
        status(hub.request(Method::DELETE, &path, &publisher)).await,
        403
    );
    let operator = hub.token(DEMO_OPERATOR).await;
    assert_eq!(
        status(hub.request(Method::DELETE, &path, &operator)).await,
        204
    );

    let response = hub
        .request(Method::POST, "/events/vaccinations-1", &token)
        .header("content-type", XML)
        .body(vaccination)
        .send()
        .await
        .unwrap();
    let detail = diagnostics(response, &token, "an issued token of a disabled client").await;
    assert!(detail.contains("disabled"), "{detail}");
    let assertion = client.assertion(&hub.token_url());
    let detail = diagnostics(
        hub.exchange(&assertion).await,
        &assertion,
        "a new assertion of a disabled client",
    )
    .await;
    assert!(detail.contains("disabled"), "{detail}");
    // Disabling an unknown client is 404.
    assert_eq!(
        status(hub.request(Method::DELETE, "/clients/no-such-client", &operator)).await,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn publishers_may_publish_only_their_event_types_for_their_organisations() {
    let hub = Hub::shared().await;
    // A message of this test's own: the stack is shared.
    let vaccination = e2e_tests::as_new_message(
        &fixture("nems/vaccinations-1-new.xml"),
        e2e_tests::VACCINATION_HEADER_ID,
    );
    let register = |types: Value, ods: Value| {
        let hub = &hub;
        async move {
            let client = hub
                .register_client(
                    "publisher",
                    "A83627",
                    json!({"publishEventTypes": types, "publishForOds": ods}),
                )
                .await;
            hub.token_for(&client).await
        }
    };
    let only_vaccinations = register(json!(["vaccinations-1"]), json!(["A83627"])).await;
    let (status, outcome) = hub
        .publish_as(
            &only_vaccinations,
            "pds-change-of-address-1",
            Some(XML),
            &fixture("nems/PDS-Change-Of-Address-ems-example.xml"),
        )
        .await;
    assert_eq!(status, 403, "{outcome}");
    assert_eq!(outcome["issue"][0]["code"], "forbidden");
    assert_eq!(
        e2e_tests::first_issue_expression(&outcome),
        "MessageHeader.event"
    );

    // The vaccination names A83627 responsible.
    let another_organisation = register(json!(["vaccinations-1"]), json!(["RR8"])).await;
    let (status, outcome) = hub
        .publish_as(
            &another_organisation,
            "vaccinations-1",
            Some(XML),
            &vaccination,
        )
        .await;
    assert_eq!(status, 403, "{outcome}");
    assert_eq!(
        e2e_tests::first_issue_expression(&outcome),
        "MessageHeader.responsible"
    );

    // A subscriber or an operator is no publisher.
    for client in [DEMO_SUBSCRIBER, DEMO_OPERATOR] {
        let token = hub.token(client).await;
        let (status, outcome) = hub
            .publish_as(&token, "vaccinations-1", Some(XML), &vaccination)
            .await;
        assert_eq!(status, 403, "{client}: {outcome}");
    }

    // Nothing refused was stored: the permitted publisher's publish is new.
    let (status, outcome) = hub
        .publish_as(
            &only_vaccinations,
            "vaccinations-1",
            Some(XML),
            &vaccination,
        )
        .await;
    assert_eq!(status, 202, "{outcome}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_sees_and_changes_only_its_own_subscriptions() {
    let hub = Hub::shared().await;
    let gp = hub.onboard("A83627", &["vaccinations-1"]).await;
    let other = hub.onboard("RR8", &["vaccinations-1"]).await;
    let (created, theirs) = hub.subscribe(&other, "RR8", VACCINATION_CRITERIA).await;
    assert_eq!(created, 201, "{theirs}");
    let path = format!("/Subscription/{}", theirs["id"].as_str().unwrap());

    // Another subscriber's subscription is not found for the caller: its
    // existence is not the caller's business.
    assert_eq!(
        status(hub.request(Method::GET, &path, &gp.token)).await,
        404
    );
    assert_eq!(
        status(hub.request(Method::DELETE, &path, &gp.token)).await,
        404
    );
    assert_eq!(
        status(hub.request(Method::GET, &path, &other.token)).await,
        200,
        "still there for its owner"
    );

    // Nor may it create one for another subscriber.
    let resource = subscription_resource(&other.id, "RR8", VACCINATION_CRITERIA);
    let response = hub
        .request(Method::POST, "/Subscription", &gp.token)
        .header("content-type", "application/fhir+json")
        .body(resource.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let outcome: Value = response.json().await.unwrap();
    assert_eq!(
        e2e_tests::first_issue_expression(&outcome),
        "Subscription.channel.endpoint"
    );

    // The list is the caller's, whatever the query names.
    let listed: Value = hub
        .request(
            Method::GET,
            &format!("/Subscription?subscriber={}", other.id),
            &gp.token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["entry"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );

    // A client that is no subscriber has no subscriptions to manage.
    for client in [DEMO_PUBLISHER, DEMO_OPERATOR] {
        let token = hub.token(client).await;
        assert_eq!(
            status(hub.request(Method::GET, "/Subscription", &token)).await,
            403,
            "{client}"
        );
        assert_eq!(status(hub.request(Method::GET, &path, &token)).await, 403);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_operators_onboard_register_clients_and_read_the_audit_trail() {
    let hub = Hub::shared().await;
    let client: TestClient = hub
        .register_client("subscriber", "A83627", json!({"subscribeExplicit": true}))
        .await;
    let onboarding = json!({
        "odsCode": "A83627",
        "name": "x",
        "eventTypes": ["vaccinations-1"],
        "clientId": client.client_id,
    })
    .to_string();
    let registration = json!({
        "clientId": "test-not-by-an-operator",
        "odsCode": "A83627",
        "roles": ["operator"],
        "keys": {"keys": [hub::auth::public_jwk(&e2e_tests::test_key(), Algorithm::ES256, "k1").unwrap()]},
    })
    .to_string();
    // Callers of this test's own, so that the trail read below holds only
    // what this test did (the stack is shared).
    let publisher = hub.register_client("publisher", "A83627", json!({})).await;
    let subscriber = hub
        .register_client("subscriber", "A83627", json!({"subscribeExplicit": true}))
        .await;
    for caller in [&publisher, &subscriber] {
        let token = hub.token_for(caller).await;
        let caller = &caller.client_id;
        let onboard = hub
            .request(Method::POST, "/subscribers", &token)
            .header("content-type", "application/json")
            .body(onboarding.clone());
        assert_eq!(status(onboard).await, 403, "{caller} onboarding");
        let register = hub
            .request(Method::POST, "/clients", &token)
            .header("content-type", "application/json")
            .body(registration.clone());
        assert_eq!(status(register).await, 403, "{caller} registering");
        let audit = hub.request(Method::GET, "/audit?client=demo-publisher", &token);
        assert_eq!(status(audit).await, 403, "{caller} reading the audit");
        let offboard = hub.request(
            Method::DELETE,
            "/subscribers/00000000-0000-4000-8000-000000000000",
            &token,
        );
        assert_eq!(status(offboard).await, 403, "{caller} offboarding");
    }

    // The operator may; each caller's trail shows its four refusals.
    let operator = hub.token(DEMO_OPERATOR).await;
    for caller in [&publisher, &subscriber] {
        let response = hub
            .request(
                Method::GET,
                &format!("/audit?client={}", caller.client_id),
                &operator,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let trail: Value = response.json().await.unwrap();
        let entries = trail["entries"].as_array().expect("entries");
        let refused = entries
            .iter()
            .filter(|entry| entry.to_string().contains("403"))
            .count();
        assert!(
            refused >= 4,
            "the refused calls of {} are audited: {trail}",
            caller.client_id
        );
    }
    let onboard = hub
        .request(Method::POST, "/subscribers", &operator)
        .header("content-type", "application/json")
        .body(onboarding);
    assert_eq!(status(onboard).await, 201);
}

/// The public JWK of the test key under `kid`, as JSON to change.
fn test_jwk(kid: &str) -> Value {
    serde_json::to_value(
        hub::auth::public_jwk(&e2e_tests::test_key(), Algorithm::ES256, kid).unwrap(),
    )
    .unwrap()
}

/// The public JWK of the committed RSA test key (2048 bits).
fn rsa_jwk(kid: &str) -> Value {
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/keys");
    let key =
        EncodingKey::from_rsa_pem(&std::fs::read(keys.join("client-rsa.pem")).unwrap()).unwrap();
    serde_json::to_value(hub::auth::public_jwk(&key, Algorithm::RS512, kid).unwrap()).unwrap()
}

fn changed(mut jwk: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().unwrap() {
        jwk[name] = value.clone();
    }
    jwk
}

#[tokio::test(flavor = "multi_thread")]
async fn registering_weak_unusable_or_private_keys_is_refused_with_422() {
    let hub = Hub::shared().await;
    // A 1024-bit modulus (of a key made with openssl and thrown away).
    let rsa_1024 = "pxfH8kGS9MRX1OemcRcj0MKEfJbOtsPuZuUHdQBiyOFsFgWnwx-uErwFvXI5g7nsykTV0VAMdSwcF64o8c0xkFxsUAVfJx-Y9CHZl5-C3yUsQXnbvF2g2AWN3VTt_feudcNHRyCi67VGuzCIHFpj8CgNgnyQ-Li3ua3GuPKwr-U";
    let mut off_curve = test_jwk("k1");
    let mut y = URL_SAFE_NO_PAD
        .decode(off_curve["y"].as_str().unwrap())
        .unwrap();
    y[31] ^= 1;
    off_curve["y"] = json!(URL_SAFE_NO_PAD.encode(y));
    let cases = [
        (
            "RSA-1024",
            vec![changed(rsa_jwk("k1"), json!({"n": rsa_1024}))],
            "keys.keys[0].n",
        ),
        (
            "RSA e=1",
            vec![changed(rsa_jwk("k1"), json!({"e": "AQ"}))],
            "keys.keys[0].e",
        ),
        ("an EC point off P-256", vec![off_curve], "keys.keys[0]"),
        (
            "two keys with one kid",
            vec![rsa_jwk("k1"), test_jwk("k1")],
            "keys.keys[1].kid",
        ),
        (
            "alg HS256",
            vec![changed(test_jwk("k1"), json!({"alg": "HS256"}))],
            "keys.keys[0].alg",
        ),
        (
            "use enc",
            vec![changed(test_jwk("k1"), json!({"use": "enc"}))],
            "keys.keys[0].use",
        ),
        (
            "an RSA key with its primes",
            vec![changed(rsa_jwk("k1"), json!({"p": "AQAB", "q": "AQAB"}))],
            "keys.keys[0].p",
        ),
        (
            "a private EC key",
            vec![changed(test_jwk("k1"), json!({"d": "AQAB"}))],
            "keys.keys[0].d",
        ),
    ];
    for (what, keys, expression) in cases {
        let client_id = format!(
            "test-weak-{}",
            what.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        );
        let response = hub
            .register(&json!({
                "clientId": client_id,
                "odsCode": "A83627",
                "roles": ["publisher"],
                "keys": {"keys": keys},
            }))
            .await;
        assert_eq!(response.status(), 422, "{what}");
        let outcome: Value = response.json().await.unwrap();
        assert_eq!(
            e2e_tests::first_issue_expression(&outcome),
            expression,
            "{what}: {outcome}"
        );
    }
    // The control: both test keys, each under its own kid, are registered.
    let response = hub
        .register(&json!({
            "clientId": "test-strong-keys",
            "odsCode": "A83627",
            "roles": ["publisher"],
            "keys": {"keys": [rsa_jwk("k1"), test_jwk("k2")]},
        }))
        .await;
    assert_eq!(response.status(), 201);
}

/// The audit trail of a client as the demo operator reads it, newest first.
async fn trail_of(hub: &Hub, client_id: &str) -> Vec<Value> {
    let operator = hub.token(DEMO_OPERATOR).await;
    let response = hub
        .request(
            Method::GET,
            &format!("/audit?client={client_id}&_count=100"),
            &operator,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let trail: Value = response.json().await.unwrap();
    trail["entries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_assertions_are_filed_under_the_client_they_claim_verified_or_not() {
    let hub = Hub::shared().await;
    let url = hub.token_url();
    let client = hub.register_client("publisher", "A83627", json!({})).await;
    let id = client.client_id.as_str();
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/keys");
    let public_pem = std::fs::read(keys.join("client-ec.pub.pem")).unwrap();
    let valid = assertion_claims(id, &url);
    for assertion in [
        unsigned(&client.kid, &valid),
        sign(
            Algorithm::HS256,
            &client.kid,
            &valid,
            &EncodingKey::from_secret(&public_pem),
        ),
    ] {
        assert_eq!(hub.exchange(&assertion).await.status(), 401);
    }
    let replayed = client.assertion(&url);
    assert_eq!(hub.exchange(&replayed).await.status(), 200);
    assert_eq!(hub.exchange(&replayed).await.status(), 401);

    let details: Vec<String> = trail_of(&hub, id)
        .await
        .iter()
        .filter(|entry| entry["action"] == "token" && entry["status"] == 401)
        .map(|entry| entry["detail"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        details,
        [
            "ReplayedJti",
            "UnsupportedAlgorithm (claimed, unverified)",
            "UnsupportedAlgorithm (claimed, unverified)",
        ],
        "newest first"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_endpoint_answers_unknown_clients_keys_and_bad_signatures_alike() {
    let hub = Hub::shared().await;
    let url = hub.token_url();
    let client = hub.register_client("publisher", "A83627", json!({})).await;
    let (id, kid, key) = (client.client_id.as_str(), client.kid.as_str(), &client.key);
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/keys");
    let other_key =
        EncodingKey::from_ec_pem(&std::fs::read(keys.join("hub-ec.pem")).unwrap()).unwrap();
    let tampered = with_claims(
        &sign(Algorithm::ES256, kid, &assertion_claims(id, &url), key),
        &assertion_claims(id, &url),
    );
    let cases = [
        (
            "an unknown client",
            sign(
                Algorithm::ES256,
                kid,
                &assertion_claims("test-no-such-client", &url),
                key,
            ),
        ),
        (
            "an unknown kid",
            sign(
                Algorithm::ES256,
                "not-my-key",
                &assertion_claims(id, &url),
                key,
            ),
        ),
        (
            "a wrong key",
            sign(
                Algorithm::ES256,
                kid,
                &assertion_claims(id, &url),
                &other_key,
            ),
        ),
        ("a bad signature", tampered),
    ];
    let mut answers = std::collections::BTreeSet::new();
    for (what, assertion) in cases {
        let response = hub.exchange(&assertion).await;
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.text().await.unwrap();
        assert_eq!(status, 401, "{what}: {body}");
        answers.insert((status, content_type, body));
    }
    assert_eq!(answers.len(), 1, "{answers:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_authorizer_refuses_hub_tokens_that_live_too_long_or_have_no_iat() {
    let hub = Hub::shared().await;
    let token = hub.token(DEMO_SUBSCRIBER).await;
    let genuine = claims_of(&token);
    let kid = header_of(&token)["kid"].as_str().unwrap().to_owned();
    let mut for_a_day = genuine.clone();
    for_a_day["exp"] = json!(now() + 86_400);
    let mut no_iat = genuine.clone();
    no_iat.as_object_mut().unwrap().remove("iat");
    for (what, claims, expected) in [
        ("living a day", for_a_day, "lives longer"),
        ("without iat", no_iat, "issue time"),
    ] {
        let authorization = format!("Bearer {}", hub_signed(&hub, &kid, &claims).await);
        let detail = diagnostics(
            probe(&hub, Some(&authorization)).await,
            &authorization,
            what,
        )
        .await;
        assert!(detail.contains(expected), "{what}: {detail}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsupported_content_type_is_named_as_sent_not_as_rust_debug_text() {
    let hub = Hub::shared().await;
    for (content_type, expected) in [
        (Some("text/plain"), "the Content-Type text/plain is not"),
        (None, "no Content-Type"),
    ] {
        let mut request = hub
            .http
            .post(hub.token_url())
            .body("grant_type=client_credentials");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 415);
        let outcome: Value = response.json().await.unwrap();
        let diagnostics = outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or_default();
        assert!(diagnostics.contains(expected), "{diagnostics}");
        assert!(
            !diagnostics.contains("Some(") && !diagnostics.contains("None"),
            "{diagnostics}"
        );
    }
}
