//! The API's TOKEN authorizer: a valid hub access token of an enabled
//! client, or no entry.

use hub::aws::{DynamoAuditLog, DynamoClientStore, kms_verifiers, required_env};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = lambda::dynamodb_client(&config).await;
    let clients = DynamoClientStore::new(dynamodb.clone(), required_env("CLIENTS_TABLE")?);
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    // The hub's public keys, read once: the current one and, during a
    // rotation, the previous one.
    let keys = kms_verifiers(
        &aws_sdk_kms::Client::new(&config),
        &required_env("HUB_VERIFYING_KEY_IDS")?,
    )
    .await?;
    let (keys, clients, audit) = (keys.as_slice(), &clients, &audit);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        lambda::authorize(keys, clients, audit, &event.payload).await
    }))
    .await
}
