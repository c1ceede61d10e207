//! The events table's stream -> one SNS message per recipient.

use hub::aws::{DynamoSubscriptionStore, SnsDeliveryPublisher, required_env, topic_arns_from_env};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let subscriptions = DynamoSubscriptionStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        required_env("SUBSCRIPTIONS_TABLE")?,
    );
    let publisher =
        SnsDeliveryPublisher::new(aws_sdk_sns::Client::new(&config), topic_arns_from_env());
    let (subscriptions, publisher) = (&subscriptions, &publisher);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(lambda::dispatch_batch(subscriptions, publisher, event.payload).await)
    }))
    .await
}
