//! `POST /subscribers`: create a subscriber's queues and topic subscriptions.

use hub::aws::{
    DynamoAuditLog, DynamoClientStore, DynamoSubscriberStore, QueueSettings, SqsQueueProvisioner,
    required_env, topic_arns_from_env,
};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let subscribers =
        DynamoSubscriberStore::new(dynamodb.clone(), required_env("SUBSCRIBERS_TABLE")?);
    let clients = DynamoClientStore::new(dynamodb.clone(), required_env("CLIENTS_TABLE")?);
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let settings = QueueSettings::from_env()?;
    let provisioner = SqsQueueProvisioner::new(
        aws_sdk_sqs::Client::new(&config),
        aws_sdk_sns::Client::new(&config),
        topic_arns_from_env(),
        settings,
    );
    let (subscribers, provisioner, clients, audit) = (&subscribers, &provisioner, &clients, &audit);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(
            lambda::onboard(subscribers, provisioner, clients, audit, &event.payload).await,
        )
    }))
    .await
}
