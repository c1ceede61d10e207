//! `POST /clients`: register a client system (operators).

use hub::aws::{DynamoAuditLog, DynamoClientStore, required_env};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = lambda::dynamodb_client(&config).await;
    let clients = DynamoClientStore::new(dynamodb.clone(), required_env("CLIENTS_TABLE")?);
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let (clients, audit) = (&clients, &audit);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(lambda::register_client(clients, audit, &event.payload).await)
    }))
    .await
}
