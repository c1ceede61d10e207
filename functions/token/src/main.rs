//! `POST /oauth2/token`: a client assertion in, a hub access token out.

use hub::app::auth::HubSigner;
use hub::aws::{DynamoAuditLog, DynamoClientStore, DynamoReplayGuard, KmsSigningKey, required_env};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = lambda::dynamodb_client(&config).await;
    let clients = DynamoClientStore::new(dynamodb.clone(), required_env("CLIENTS_TABLE")?);
    let replay_guard = DynamoReplayGuard::new(dynamodb.clone(), required_env("REPLAY_TABLE")?);
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let key = KmsSigningKey::load(
        aws_sdk_kms::Client::new(&config),
        &required_env("HUB_SIGNING_KEY_ID")?,
    )
    .await?;
    let signer = HubSigner::new(key);
    let configured_url = std::env::var("TOKEN_ENDPOINT_URL").ok();
    let (clients, replay_guard, signer, audit, configured_url) = (
        &clients,
        &replay_guard,
        &signer,
        &audit,
        configured_url.as_deref(),
    );
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(
            lambda::token(
                clients,
                replay_guard,
                signer,
                audit,
                configured_url,
                &event.payload,
            )
            .await,
        )
    }))
    .await
}
