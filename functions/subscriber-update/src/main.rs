//! `PATCH /subscribers/{id}`: change a subscriber's event types or the AWS
//! principal that reads its queue; its queues and their messages stay.

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
            lambda::change_subscriber(
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
