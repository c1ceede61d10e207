//! `POST /Subscription`.

use hub::aws::{DynamoSubscriberStore, DynamoSubscriptionStore, required_env};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let subscriptions =
        DynamoSubscriptionStore::new(dynamodb.clone(), required_env("SUBSCRIPTIONS_TABLE")?);
    let subscribers = DynamoSubscriberStore::new(dynamodb, required_env("SUBSCRIBERS_TABLE")?);
    let (subscriptions, subscribers) = (&subscriptions, &subscribers);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(
            lambda::create_subscription(subscriptions, subscribers, &event.payload).await,
        )
    }))
    .await
}
