//! `DELETE /subscribers/{id}`: stop deliveries to a subscriber and remove its
//! subscriptions; its queues stay for the grace period.

use hub::aws::{
    DynamoAuditLog, DynamoSubscriberStore, DynamoSubscriptionStore, SqsQueueProvisioner,
    required_env,
};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = lambda::dynamodb_client(&config).await;
    let subscribers =
        DynamoSubscriberStore::new(dynamodb.clone(), required_env("SUBSCRIBERS_TABLE")?);
    let subscriptions =
        DynamoSubscriptionStore::new(dynamodb.clone(), required_env("SUBSCRIPTIONS_TABLE")?);
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let provisioner = SqsQueueProvisioner::from_env(&config)?;
    let (subscribers, subscriptions, provisioner, audit) =
        (&subscribers, &subscriptions, &provisioner, &audit);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(
            lambda::offboard(
                subscribers,
                subscriptions,
                provisioner,
                audit,
                &event.payload,
            )
            .await,
        )
    }))
    .await
}
