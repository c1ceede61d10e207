use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::*;

fn ec_registration(x: &str) -> String {
    serde_json::json!({
        "clientId": "client-1",
        "odsCode": "A83627",
        "roles": ["subscriber"],
        "keys": {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": x,
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]},
    })
    .to_string()
}

#[test]
fn a_registered_key_whose_numbers_are_not_base64url_is_refused() {
    let good = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    assert!(Client::from_registration(&ec_registration(good)).is_ok());
    for bad in [
        "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRV\u{fffd}EU",
        "not base64!",
        "%%%",
    ] {
        let error = Client::from_registration(&ec_registration(bad)).unwrap_err();
        assert!(
            matches!(error, HubError::Unprocessable { .. }),
            "{bad}: {error:?}"
        );
        assert!(error.to_string().contains("keys.keys[0]"), "{bad}: {error}");
    }
}

/// An assertion naming no registered key is checked against these: if
/// one failed to load, that refusal would cost less work than a wrong
/// signature's, and tell the two apart by time.
#[test]
fn the_stand_in_keys_load_and_verify_nothing() {
    let key = EncodingKey::from_ec_pem(include_bytes!("../../tests/keys/client-ec.pem")).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    let token = jsonwebtoken::encode(&header, &serde_json::json!({"iss": "x"}), &key).unwrap();
    for algorithm in [Algorithm::RS512, Algorithm::ES256] {
        assert!(stand_in_key(algorithm).is_some(), "{algorithm:?}");
    }
    let stand_in = stand_in_key(Algorithm::ES256).unwrap();
    assert_eq!(
        verified_claims::<serde_json::Value>(&token, stand_in, Algorithm::ES256).err(),
        Some(AuthError::BadSignature)
    );
}

#[test]
fn der_signatures_become_fixed_width_whatever_their_leading_bytes() {
    // r with a sign-keeping zero byte (33 bytes), s shorter than 32.
    let mut der = vec![0x30, 0x00, 0x02, 33, 0x00];
    der.extend([0x80; 32]);
    der.extend([0x02, 31]);
    der.extend([0x11; 31]);
    der[1] = u8::try_from(der.len() - 2).unwrap();
    let fixed = ecdsa_der_to_fixed(&der).unwrap();
    assert_eq!(&fixed[..32], &[0x80; 32]);
    assert_eq!(fixed[32], 0);
    assert_eq!(&fixed[33..], &[0x11; 31]);
}

#[test]
fn malformed_der_is_refused() {
    assert_eq!(ecdsa_der_to_fixed(&[]), None);
    assert_eq!(ecdsa_der_to_fixed(&[0x30, 0x02, 0x02, 0x00]), None);
    // An integer longer than 32 significant bytes.
    let mut der = vec![0x30, 0x00, 0x02, 33];
    der.extend([0x01; 33]);
    der.extend([0x02, 1, 1]);
    der[1] = u8::try_from(der.len() - 2).unwrap();
    assert_eq!(ecdsa_der_to_fixed(&der), None);
    // Trailing bytes after the sequence.
    let mut der = vec![0x30, 6, 0x02, 1, 1, 0x02, 1, 1, 0xff];
    assert_eq!(ecdsa_der_to_fixed(&der), None);
    der.pop();
    assert!(ecdsa_der_to_fixed(&der).is_some());
}

fn relationship_registration(roles: &[&str], sources: Option<&[&str]>) -> String {
    let mut registration: serde_json::Value = serde_json::from_str(&ec_registration(
        "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    ))
    .unwrap();
    registration["roles"] = serde_json::json!(roles);
    if let Some(sources) = sources {
        registration["relationshipSources"] = serde_json::json!(sources);
    }
    registration.to_string()
}

const VRS: &str = "uk.nhs.validated-relationships-service";

#[test]
fn a_relationship_publisher_names_its_sources_and_only_it_does() {
    let client = Client::from_registration(&relationship_registration(
        &["relationship-publisher"],
        Some(&[VRS]),
    ))
    .unwrap();
    assert!(client.roles.contains(&Role::RelationshipPublisher));
    assert_eq!(
        client.to_json()["relationshipSources"],
        serde_json::json!([VRS])
    );
    for (roles, sources) in [
        (&["relationship-publisher"][..], None),
        (&["relationship-publisher"][..], Some(&[][..])),
        (&["subscriber"][..], Some(&[VRS][..])),
        (
            &["relationship-publisher"][..],
            Some(&["no spaces please"][..]),
        ),
    ] {
        let error =
            Client::from_registration(&relationship_registration(roles, sources)).unwrap_err();
        assert!(
            matches!(&error, HubError::Unprocessable { expression, .. } if expression == "relationshipSources"),
            "{roles:?} {sources:?}: {error:?}"
        );
    }
    // A registration without the member reads as before, with no sources.
    let subscriber = Client::from_registration(&ec_registration(
        "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    ))
    .unwrap();
    assert!(subscriber.relationship_sources.is_empty());
    assert_eq!(
        subscriber.to_json()["relationshipSources"],
        serde_json::json!([])
    );
}

#[test]
fn a_relationship_publisher_publishes_only_for_its_sources() {
    let client = Client::from_registration(&relationship_registration(
        &["relationship-publisher"],
        Some(&[VRS]),
    ))
    .unwrap();
    let caller = Caller::of(&client);
    assert!(caller.may_publish_relationships(VRS, "source").is_ok());
    let other = caller
        .may_publish_relationships("uk.nhs.other", "source")
        .unwrap_err();
    assert!(
        matches!(&other, HubError::Forbidden { expression: Some(e), .. } if e == "source"),
        "{other:?}"
    );
    let mut publisher = caller.clone();
    publisher.roles = BTreeSet::from([Role::Publisher]);
    assert!(matches!(
        publisher.may_publish_relationships(VRS, "source"),
        Err(HubError::Forbidden {
            expression: None,
            ..
        })
    ));
    // The caller survives the authorizer's context.
    let context: HashMap<String, serde_json::Value> = caller
        .to_context()
        .into_iter()
        .map(|(key, value)| (key, serde_json::Value::String(value)))
        .collect();
    assert_eq!(Caller::from_context(&context), Some(caller));
}
