//! `GET /Subscription/{id}`.

use hub::aws::{DynamoAuditLog, DynamoSubscriptionStore, required_env};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = lambda::dynamodb_client(&config).await;
    let subscriptions =
        DynamoSubscriptionStore::new(dynamodb.clone(), required_env("SUBSCRIPTIONS_TABLE")?);
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let (subscriptions, audit) = (&subscriptions, &audit);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(lambda::read_subscription(subscriptions, audit, &event.payload).await)
    }))
    .await
}
