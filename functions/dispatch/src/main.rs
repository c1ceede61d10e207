//! The events table's stream -> one SNS message per recipient.

use hub::aws::{
    DynamoAuditLog, DynamoSubscriptionStore, SnsDeliveryPublisher, required_env,
    topic_arns_from_env,
};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let subscriptions =
        DynamoSubscriptionStore::new(dynamodb.clone(), required_env("SUBSCRIPTIONS_TABLE")?);
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let publisher =
        SnsDeliveryPublisher::new(aws_sdk_sns::Client::new(&config), topic_arns_from_env());
    let (subscriptions, publisher, audit) = (&subscriptions, &publisher, &audit);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(lambda::dispatch_batch(subscriptions, publisher, audit, event.payload).await)
    }))
    .await
}
