//! `POST /Subscription`.

use hub::aws::{DynamoAuditLog, DynamoSubscriberStore, DynamoSubscriptionStore, required_env};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = lambda::dynamodb_client(&config).await;
    let subscriptions =
        DynamoSubscriptionStore::new(dynamodb.clone(), required_env("SUBSCRIPTIONS_TABLE")?);
    let subscribers =
        DynamoSubscriberStore::new(dynamodb.clone(), required_env("SUBSCRIBERS_TABLE")?);
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let (subscriptions, subscribers, audit) = (&subscriptions, &subscribers, &audit);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(
            lambda::create_subscription(subscriptions, subscribers, audit, &event.payload).await,
        )
    }))
    .await
}
