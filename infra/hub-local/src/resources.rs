//! Creating the template's resources in the emulator: DynamoDB tables and
//! KMS keys as the template describes them, and the names CloudFormation
//! would give topics and queues. The tests create their tables through
//! [`create_template_table`], so the template is the one source of every
//! table's schema.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
};
use serde_norway::Value;

use crate::template::{self, Resolved, STACK_NAME, Template};

/// Creates the table `logical_id` of the template under `name`, with its
/// keys, indexes, stream and TTL; returns (table ARN, stream ARN).
pub async fn create_template_table(
    client: &aws_sdk_dynamodb::Client,
    template: &Template,
    logical_id: &str,
    name: &str,
) -> Result<(String, Option<String>), String> {
    let table = template
        .tables
        .iter()
        .find(|table| table.logical_id == logical_id)
        .ok_or_else(|| format!("the template has no table {logical_id}"))?;
    create_table(client, name, &table.properties).await
}

pub fn attribute_type(text: &str) -> ScalarAttributeType {
    match text {
        "N" => ScalarAttributeType::N,
        "B" => ScalarAttributeType::B,
        _ => ScalarAttributeType::S,
    }
}

pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    properties: &Value,
) -> Result<(String, Option<String>), String> {
    let list = |key: &str| {
        properties
            .get(key)
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default()
    };
    let field = |value: &Value, key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for definition in list("AttributeDefinitions") {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(field(&definition, "AttributeName"))
                .attribute_type(attribute_type(&field(&definition, "AttributeType")))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    let key_schema = |keys: &[Value]| {
        keys.iter()
            .map(|key| {
                let key_type = if field(key, "KeyType") == "RANGE" {
                    KeyType::Range
                } else {
                    KeyType::Hash
                };
                KeySchemaElement::builder()
                    .attribute_name(field(key, "AttributeName"))
                    .key_type(key_type)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, String>>()
    };
    request = request.set_key_schema(Some(key_schema(&list("KeySchema"))?));
    for index in list("GlobalSecondaryIndexes") {
        let keys = index
            .get("KeySchema")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        let projection = index
            .get("Projection")
            .map(|p| field(p, "ProjectionType"))
            .unwrap_or_default();
        let included: Vec<String> = index
            .get("Projection")
            .and_then(|p| p.get("NonKeyAttributes"))
            .and_then(Value::as_sequence)
            .map(|names| {
                names
                    .iter()
                    .filter_map(|name| name.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(field(&index, "IndexName"))
                .set_key_schema(Some(key_schema(&keys)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(projection.as_str()))
                        .set_non_key_attributes((!included.is_empty()).then_some(included))
                        .build(),
                )
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if let Some(view) = properties
        .get("StreamSpecification")
        .map(|s| field(s, "StreamViewType"))
    {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view.as_str()))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    let created = request.send().await.map_err(|e| {
        format!(
            "creating table {name}: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(e)
        )
    })?;
    let description = created.table_description;
    let arn = description
        .as_ref()
        .and_then(|d| d.table_arn.clone())
        .unwrap_or_default();
    let stream = description.and_then(|d| d.latest_stream_arn);
    // TTL is switched on as the template asks, though moto never deletes
    // expired items: nothing in the hub may depend on TTL for correctness
    // (the replay guard refuses a used jti whether or not its record is
    // gone), so a local run that keeps them behaves the same.
    // PointInTimeRecoverySpecification and SSESpecification are not
    // applied: they protect data at rest in AWS and change no behaviour.
    if let Some(ttl) = properties.get("TimeToLiveSpecification")
        && ttl.get("Enabled").and_then(Value::as_bool) == Some(true)
    {
        let specification = aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
            .attribute_name(field(ttl, "AttributeName"))
            .enabled(true)
            .build()
            .map_err(|e| e.to_string())?;
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(specification)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "enabling TTL on {name}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                )
            })?;
    }
    Ok((arn, stream))
}

/// Creates a KMS key as the template describes it; returns (KeyId, Arn).
/// moto signs and verifies for real (ECC_NIST_P256 with ECDSA_SHA_256 among
/// others) and answers GetPublicKey, so the token function signs with it
/// as it does in AWS. The KeyPolicy is not passed on: moto evaluates key
/// policies only for Deny statements on DescribeKey, and locally every
/// process holds the same credentials, so it would restrict nothing.
pub async fn create_kms_key(
    kms: &aws_sdk_kms::Client,
    resolved: &Resolved,
    spec: &template::KmsKeySpec,
) -> Result<(String, String), String> {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType};
    let property = |key: &str| -> Result<Option<String>, String> {
        spec.properties
            .get(key)
            .map(|value| resolved.resolve(value))
            .transpose()
            .map_err(|e| format!("{}: {key}: {e}", spec.logical_id))
    };
    let mut request = kms.create_key().description(
        property("Description")?.unwrap_or_else(|| format!("{STACK_NAME} {}", spec.logical_id)),
    );
    if let Some(key_spec) = property("KeySpec")? {
        request = request.key_spec(KeySpec::from(key_spec.as_str()));
    }
    if let Some(usage) = property("KeyUsage")? {
        request = request.key_usage(KeyUsageType::from(usage.as_str()));
    }
    let metadata = request
        .send()
        .await
        .map_err(|e| {
            format!(
                "creating KMS key {}: {}",
                spec.logical_id,
                aws_sdk_kms::error::DisplayErrorContext(e)
            )
        })?
        .key_metadata
        .ok_or_else(|| format!("creating KMS key {}: no metadata", spec.logical_id))?;
    Ok((metadata.key_id, metadata.arn.unwrap_or_default()))
}

/// The name a topic or queue gets: the template's own, else one made as
/// CloudFormation makes them, from the stack and the logical id.
pub fn physical_name(resolved: &Resolved, spec: &template::NamedSpec) -> Result<String, String> {
    match &spec.name {
        Some(name) => resolved.resolve(name),
        None => Ok(format!("{STACK_NAME}-{}", spec.logical_id)),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::demo;
    use crate::emulator::{emulator_config, emulator_endpoint, moto_server, start_emulator};

    /// The template's signing key, made in the project's moto as `run`
    /// makes it, signs hub access tokens through KMS (by its alias) that
    /// verify with the public key KMS gives out.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_p256_kms_key_in_moto_signs_verifiable_access_tokens() {
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let (mut emulator, port) = start_emulator(&moto_server(&template).unwrap(), 0)
            .await
            .unwrap();
        let kms = aws_sdk_kms::Client::new(&emulator_config(&emulator_endpoint(port)).await);
        let parsed = Template::parse(
            "Resources:\n  Signing:\n    Type: AWS::KMS::Key\n    Properties:\n      KeySpec: ECC_NIST_P256\n      KeyUsage: SIGN_VERIFY\n      KeyPolicy: {}\n  Data:\n    Type: AWS::KMS::Key\n",
        )
        .unwrap();
        let resolved = Resolved::default();
        let (key_id, arn) = create_kms_key(&kms, &resolved, &parsed.kms_keys[0])
            .await
            .unwrap();
        assert!(arn.ends_with(&key_id), "{arn}");
        create_kms_key(&kms, &resolved, &parsed.kms_keys[1])
            .await
            .unwrap();
        kms.create_alias()
            .alias_name("alias/test-signing")
            .target_key_id(&key_id)
            .send()
            .await
            .unwrap();

        let signing = hub::aws::KmsSigningKey::load(kms.clone(), "alias/test-signing")
            .await
            .unwrap();
        let signer = hub::app::auth::HubSigner::new(signing);
        let pem = demo::generate_private_key_pem().unwrap();
        let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
        let client = demo::registration(&demo::DEMO_CLIENTS[0], &key).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let issued = signer.issue(&client, now).await.unwrap();
        let verifier = hub::aws::kms_verifier(&kms, &key_id).await.unwrap();
        let subject = hub::auth::verify_access_token(&issued.token, &verifier, now).unwrap();
        assert_eq!(subject.client_id, "demo-publisher");
        let _ = emulator.kill().await;
    }
}
