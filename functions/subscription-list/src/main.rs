//! `GET /Subscription`: a subscriber's subscriptions, paged.

use hub::aws::{DynamoSubscriptionStore, required_env};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let subscriptions = DynamoSubscriptionStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        required_env("SUBSCRIPTIONS_TABLE")?,
    );
    let subscriptions = &subscriptions;
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(lambda::list_subscriptions(subscriptions, &event.payload).await)
    }))
    .await
}
