//! The local stack's demo clients: a publisher, two subscribers (a GP
//! practice and a health visiting team), an operator, a relationship
//! publisher and a parent's app, so the hub can be tried (and tested) with real signed-JWT
//! authentication and no setup.
//!
//! Their private keys live in the state directory (`<repo>/.local`, or
//! HUB_LOCAL_STATE_DIR), made once (ES256, P-256) and kept across runs, so a
//! token can be had at any time with `hub-local token <client>`. The hub's
//! own state lives in the emulator and is fresh on every run, so each run
//! registers the clients again, with the public halves of those keys, and
//! onboards the two subscribers through the hub's own API, as an operator
//! would.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use hub::EventType;
use hub::auth::{Client, Role};
use hub::subscriber::OdsCode;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey};

// The token endpoint's path (the template's TokenFunction route) and URL:
// the hub command line's, so that both build assertions the same way.
pub use hub_cli::api::{TOKEN_PATH, token_url};

/// The operator the local stack acts as to onboard the demo subscribers.
pub const OPERATOR: &str = "demo-operator";

pub struct DemoClient {
    pub name: &'static str,
    pub role: Role,
    /// The organisation that runs it.
    pub ods: &'static str,
    /// Shown as the subscriber's name when it is onboarded.
    pub label: &'static str,
    /// The subscriber's service type, given at onboarding (what release
    /// embargoes are keyed on): GP, CHO, UHV or EPCHR.
    pub service_type: Option<&'static str>,
}

/// The organisations the repository's sample messages name as
/// MessageHeader.responsible: the demo publisher may publish for each.
const SAMPLE_RESPONSIBLE_ODS: &[&str] = &["RR8", "X26", "A83627", "RX3EP"];

pub const DEMO_CLIENTS: &[DemoClient] = &[
    DemoClient {
        name: "demo-publisher",
        role: Role::Publisher,
        ods: "RR8",
        label: "Demo child health information service",
        service_type: None,
    },
    DemoClient {
        name: "demo-subscriber-1",
        role: Role::Subscriber,
        ods: "A83627",
        label: "Demo GP practice (Silverdale Family Practice)",
        service_type: Some("GP"),
    },
    DemoClient {
        name: "demo-subscriber-2",
        role: Role::Subscriber,
        ods: "Y12345",
        label: "Demo health visiting team",
        service_type: Some("UHV"),
    },
    DemoClient {
        name: OPERATOR,
        role: Role::Operator,
        ods: "X26",
        label: "Demo hub operator",
        service_type: None,
    },
    DemoClient {
        name: "demo-relationship-publisher",
        role: Role::RelationshipPublisher,
        ods: "X26",
        label: "Demo relay of the Validated Relationships Service's events",
        service_type: None,
    },
    DemoClient {
        name: DEMO_PARENT_APP,
        role: Role::Subscriber,
        ods: "Y05PCH",
        label: "Demo parent's app (e-Red Book)",
        service_type: Some("EPCHR"),
    },
];

/// The demo parent's app (a PCHR, registered with `pchr`): it reaches a
/// child only through a person it acts for (docs/subscribers.md, 8a).
pub const DEMO_PARENT_APP: &str = "demo-parent-app";

/// The relationship event source the demo relationship publisher may
/// publish for: the Validated Relationships Service, as in the samples of
/// events/relationships/.
const DEMO_RELATIONSHIP_SOURCE: &str = hub::relationship::VRS_SOURCE;

/// Where the local stack keeps what outlives a run: HUB_LOCAL_STATE_DIR,
/// else `.local` beside the template.
pub fn state_dir(template: &Path) -> PathBuf {
    match std::env::var_os("HUB_LOCAL_STATE_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => template.parent().unwrap_or(Path::new(".")).join(".local"),
    }
}

/// The `kid` of a demo client's key.
pub fn key_id(client: &str) -> String {
    format!("{client}-1")
}

fn key_path(state: &Path, client: &str) -> PathBuf {
    state.join("clients").join(format!("{client}.pem"))
}

/// A new P-256 private key, PKCS#8 PEM.
pub fn generate_private_key_pem() -> Result<String, String> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| "generating a P-256 key failed")?;
    let der = pair
        .to_pkcs8v1()
        .map_err(|_| "encoding a P-256 key failed")?;
    Ok(hub::auth::pem("PRIVATE KEY", der.as_ref()))
}

/// Each demo client's private key, made on first use. The directory is
/// the user's alone and each key file readable by the user alone.
pub fn ensure_keys(state: &Path) -> Result<Vec<(&'static DemoClient, EncodingKey)>, String> {
    let directory = state.join("clients");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&directory)
        .map_err(|e| format!("creating {}: {e}", directory.display()))?;
    let mut keys = Vec::new();
    for client in DEMO_CLIENTS {
        let path = key_path(state, client.name);
        if !path.exists() {
            let pem = generate_private_key_pem()?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| format!("creating {}: {e}", path.display()))?;
            file.write_all(pem.as_bytes())
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        keys.push((client, read_key(state, client.name)?));
    }
    Ok(keys)
}

/// A demo client's private key.
pub fn read_key(state: &Path, client: &str) -> Result<EncodingKey, String> {
    let path = key_path(state, client);
    let pem = std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            let known: Vec<&str> = DEMO_CLIENTS.iter().map(|c| c.name).collect();
            format!(
                "no key for client '{client}' at {}: the demo clients ({}) get their keys when \
                 the hub first runs (infra/run-local.sh); set HUB_LOCAL_STATE_DIR if it keeps \
                 its state elsewhere",
                path.display(),
                known.join(", ")
            )
        } else {
            format!("reading {}: {e}", path.display())
        }
    })?;
    EncodingKey::from_ec_pem(&pem)
        .map_err(|e| format!("{} is not a PKCS#8 P-256 key: {e}", path.display()))
}

/// A demo client's registration.
pub fn registration(client: &DemoClient, key: &EncodingKey) -> Result<Client, String> {
    let publisher = client.role == Role::Publisher;
    let parent_app = client.name == DEMO_PARENT_APP;
    Ok(Client {
        client_id: client.name.to_owned(),
        ods_code: OdsCode::parse(client.ods)
            .ok_or_else(|| format!("{}: bad ODS code {}", client.name, client.ods))?,
        roles: BTreeSet::from([client.role]),
        keys: JwkSet {
            keys: vec![
                hub::auth::public_jwk(key, Algorithm::ES256, &key_id(client.name))
                    .map_err(|e| format!("{}: deriving the public key: {e}", client.name))?,
            ],
        },
        enabled: true,
        publish_event_types: if publisher {
            EventType::ALL.iter().copied().collect()
        } else {
            BTreeSet::new()
        },
        publish_for_ods: if publisher {
            SAMPLE_RESPONSIBLE_ODS
                .iter()
                .map(|ods| (*ods).to_owned())
                .collect()
        } else {
            BTreeSet::new()
        },
        subscriber_id: None,
        // A parent's app may not declare direct care (pchr below).
        subscribe_explicit: client.role == Role::Subscriber && !parent_app,
        subscribe_generic: Default::default(),
        sensitivity_authority: false,
        relationship_sources: if client.role == Role::RelationshipPublisher {
            BTreeSet::from([DEMO_RELATIONSHIP_SOURCE.to_owned()])
        } else {
            BTreeSet::new()
        },
        pchr: parent_app.then_some(hub::pchr::PchrRegistration {
            minimum_verification: hub::pchr::VerificationLevel::P9,
        }),
    })
}

/// Signs an assertion as the client and exchanges it for an access token
/// at `<api>/oauth2/token` (the hub command line's client does both).
pub async fn request_token(
    http: &reqwest::Client,
    api: &str,
    client: &str,
    key: &EncodingKey,
) -> Result<String, String> {
    let key = hub_cli::api::ClientKey {
        client_id: client.to_owned(),
        key_id: key_id(client),
        key: key.clone(),
        algorithm: Algorithm::ES256,
    };
    let answer = hub_cli::api::request_token(http, api, &key)
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// An onboarded demo subscriber.
pub struct Onboarded {
    pub client: &'static str,
    pub ods: &'static str,
    pub subscriber_id: String,
    pub queue_url: String,
}

/// Onboards a subscriber client through the API, as the operator.
pub async fn onboard(
    http: &reqwest::Client,
    api: &str,
    operator_token: &str,
    client: &'static DemoClient,
) -> Result<Onboarded, String> {
    let event_types: Vec<&str> = EventType::ALL.iter().map(|t| t.code()).collect();
    let mut body = serde_json::json!({
        "odsCode": client.ods,
        "name": client.label,
        "eventTypes": event_types,
        "clientId": client.name,
    });
    if let Some(service_type) = client.service_type {
        body["serviceType"] = service_type.into();
    }
    let response = http
        .post(format!("{api}/subscribers"))
        .bearer_auth(operator_token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("onboarding {}: {e}", client.name))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status != reqwest::StatusCode::CREATED {
        return Err(format!(
            "onboarding {} answered {status}: {text}",
            client.name
        ));
    }
    let answer: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("onboarding {}: the answer is not JSON: {e}", client.name))?;
    let field = |name: &str| {
        answer[name].as_str().map(str::to_owned).ok_or_else(|| {
            format!(
                "onboarding {}: the answer has no {name}: {text}",
                client.name
            )
        })
    };
    Ok(Onboarded {
        client: client.name,
        ods: client.ods,
        subscriber_id: field("id")?,
        queue_url: field("queueUrl")?,
    })
}

/// The shell variable a demo client's subscriber id goes in:
/// demo-subscriber-1 -> DEMO_SUBSCRIBER_1.
pub fn variable(client: &str) -> String {
    client.to_ascii_uppercase().replace('-', "_")
}

/// Writes `<state>/demo.env`: the onboarded demo subscribers' ids and queue
/// URLs as shell assignments, so a shell can `. .local/demo.env` instead of
/// copying them from the banner. They change on every run, as the
/// emulator starts empty.
pub fn write_env(state: &Path, onboarded: &[Onboarded]) -> Result<PathBuf, String> {
    let path = state.join("demo.env");
    let mut text = String::from(
        "# Written by `hub-local run`: the demo subscribers of the hub running now.\n",
    );
    for subscriber in onboarded {
        let name = variable(subscriber.client);
        text.push_str(&format!(
            "{name}={}\n{name}_QUEUE={}\n",
            subscriber.subscriber_id, subscriber.queue_url
        ));
    }
    std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

/// The profile name of a demo client: demo-subscriber-1 -> local-subscriber-1.
pub fn profile_name(client: &str) -> String {
    format!("local-{}", client.strip_prefix("demo-").unwrap_or(client))
}

/// Writes `<state>/config.toml`: a `hub-cli` command line profile per demo
/// client (URL, key, and for a subscriber its id and queue at the
/// emulator), so that `HUB_CONFIG=.local/config.toml hub --profile
/// local-publisher ...` needs nothing else. Rewritten on every run: the
/// subscribers' ids and queues change with it.
pub fn write_config(
    state: &Path,
    api: &str,
    emulator: &str,
    onboarded: &[Onboarded],
) -> Result<PathBuf, String> {
    let path = state.join("config.toml");
    let absolute_state = std::path::absolute(state)
        .map_err(|e| format!("the absolute path of {}: {e}", state.display()))?;
    let mut text = String::from(
        "# Written by `hub-local run`: the hub command line's profiles for the demo\n\
         # clients of the hub running now (export HUB_CONFIG=<this file>).\n",
    );
    for client in DEMO_CLIENTS {
        let subscriber = onboarded.iter().find(|o| o.client == client.name);
        let profile = hub_cli::config::Profile {
            url: Some(api.to_owned()),
            client_id: Some(client.name.to_owned()),
            key_file: Some(key_path(&absolute_state, client.name)),
            key_id: Some(key_id(client.name)),
            ods_code: Some(client.ods.to_owned()),
            subscriber_id: subscriber.map(|s| s.subscriber_id.clone()),
            queue_url: subscriber.map(|s| s.queue_url.clone()),
            emulator: subscriber.map(|_| emulator.to_owned()),
        };
        text.push('\n');
        text.push_str(&hub_cli::config::profile_toml(
            &profile_name(client.name),
            &profile,
        ));
    }
    std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_made_once_private_to_the_user_and_sign_verifiable_assertions() {
        use std::os::unix::fs::PermissionsExt as _;
        let state = std::env::temp_dir().join(format!("hub-local-demo-{}", uuid::Uuid::new_v4()));
        let first = ensure_keys(&state).unwrap();
        assert_eq!(first.len(), DEMO_CLIENTS.len());
        let path = key_path(&state, "demo-publisher");
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(state.join("clients"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        ensure_keys(&state).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), pem, "kept");

        // The registration carries the public half only, and verifies what
        // the private half signs.
        let (client, key) = &first[0];
        let registered = registration(client, key).unwrap();
        let jwk = &registered.keys.keys[0];
        assert_eq!(jwk.common.key_id.as_deref(), Some("demo-publisher-1"));
        let json = serde_json::to_value(jwk).unwrap();
        assert!(json.get("d").is_none(), "no private part: {json}");
        let now = time::OffsetDateTime::now_utc();
        let url = "http://127.0.0.1:3000/oauth2/token";
        let assertion = hub::auth::sign_client_assertion(
            "demo-publisher",
            "demo-publisher-1",
            key,
            Algorithm::ES256,
            url,
            now,
        )
        .unwrap();
        let claims = hub::auth::verify_client_assertion(&assertion, &registered, url, now).unwrap();
        assert_eq!(claims.client_id, "demo-publisher");
        assert_eq!(registered.publish_event_types.len(), EventType::ALL.len());
        assert!(registered.publish_for_ods.contains("RX3EP"));
        std::fs::remove_dir_all(&state).unwrap();
    }

    #[test]
    fn a_missing_key_says_how_to_get_one() {
        let error = read_key(Path::new("/nonexistent"), "demo-publisher").unwrap_err();
        assert!(error.contains("infra/run-local.sh"), "{error}");
    }

    #[test]
    fn the_env_file_names_each_subscriber_and_its_queue() {
        let state = std::env::temp_dir().join(format!("hub-local-env-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&state).unwrap();
        let path = write_env(
            &state,
            &[Onboarded {
                client: "demo-subscriber-1",
                ods: "A83627",
                subscriber_id: "abc".into(),
                queue_url: "http://q/1".into(),
            }],
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\nDEMO_SUBSCRIBER_1=abc\nDEMO_SUBSCRIBER_1_QUEUE=http://q/1\n"));
        std::fs::remove_dir_all(&state).unwrap();
    }

    #[test]
    fn the_config_file_has_a_profile_per_demo_client() {
        let state = std::env::temp_dir().join(format!("hub-local-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&state).unwrap();
        let path = write_config(
            &state,
            "http://127.0.0.1:3000",
            "http://127.0.0.1:4566",
            &[Onboarded {
                client: "demo-subscriber-1",
                ods: "A83627",
                subscriber_id: "abc".into(),
                queue_url: "http://127.0.0.1:4566/123456789012/q".into(),
            }],
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let file = hub_cli::config::parse(&path, &text).unwrap();
        assert_eq!(file.profiles.len(), DEMO_CLIENTS.len());
        let gp = &file.profiles["local-subscriber-1"];
        assert_eq!(gp.subscriber_id.as_deref(), Some("abc"));
        assert_eq!(gp.ods_code.as_deref(), Some("A83627"));
        assert_eq!(gp.emulator.as_deref(), Some("http://127.0.0.1:4566"));
        assert!(gp.key_file.as_ref().unwrap().is_absolute());
        let publisher = &file.profiles["local-publisher"];
        assert_eq!(publisher.client_id.as_deref(), Some("demo-publisher"));
        assert_eq!(publisher.queue_url, None);
        std::fs::remove_dir_all(&state).unwrap();
    }
}
