//! `POST /Subscription/{id}/$replay`: starts a replay of a window of stored
//! events to the subscription's subscriber.

use hub::aws::{DynamoAuditLog, DynamoReplayStore, DynamoSubscriptionStore, required_env};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = lambda::dynamodb_client(&config).await;
    let subscriptions =
        DynamoSubscriptionStore::new(dynamodb.clone(), required_env("SUBSCRIPTIONS_TABLE")?);
    let jobs = DynamoReplayStore::from_env(dynamodb.clone())?;
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let (subscriptions, jobs, audit) = (&subscriptions, &jobs, &audit);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(lambda::start_replay(subscriptions, jobs, audit, &event.payload).await)
    }))
    .await
}
