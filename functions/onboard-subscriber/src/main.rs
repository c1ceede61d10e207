//! `POST /subscribers`: create a subscriber's queues and topic subscriptions.

use hub::aws::{
    DynamoAuditLog, DynamoClientStore, DynamoSubscriberStore, SqsQueueProvisioner, required_env,
};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = lambda::dynamodb_client(&config).await;
    let subscribers =
        DynamoSubscriberStore::new(dynamodb.clone(), required_env("SUBSCRIBERS_TABLE")?);
    let clients = DynamoClientStore::new(dynamodb.clone(), required_env("CLIENTS_TABLE")?);
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let provisioner = SqsQueueProvisioner::from_env(&config)?;
    let (subscribers, provisioner, clients, audit) = (&subscribers, &provisioner, &clients, &audit);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(
            lambda::onboard(subscribers, provisioner, clients, audit, &event.payload).await,
        )
    }))
    .await
}
