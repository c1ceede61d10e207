//! The replays table's stream -> one bounded step of each running replay.

// The handler future nests its ports' async calls deeper
// than rustc's default query depth allows when its layout is computed.
#![recursion_limit = "256"]

use hub::app::replay::Replayer;
use hub::aws::{
    DynamoAuditLog, DynamoDeliveryStats, DynamoEventStore, DynamoReferenceData,
    DynamoRegisterStore, DynamoReplayStore, DynamoSubscriptionStore, SnsDeliveryPublisher,
    required_env, topic_arns_from_env,
};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = lambda::dynamodb_client(&config).await;
    let events = DynamoEventStore::from_env(dynamodb.clone())?;
    let subscriptions =
        DynamoSubscriptionStore::new(dynamodb.clone(), required_env("SUBSCRIPTIONS_TABLE")?);
    let register = DynamoRegisterStore::new(dynamodb.clone(), required_env("REGISTER_TABLE")?);
    let reference = DynamoReferenceData::new(dynamodb.clone(), required_env("REFERENCE_TABLE")?);
    let jobs = DynamoReplayStore::from_env(dynamodb.clone())?;
    let stats = DynamoDeliveryStats::from_env(dynamodb.clone())?;
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let topics = topic_arns_from_env();
    let publisher = SnsDeliveryPublisher::new(lambda::sns_client(&config, &topics).await, topics);
    let replayer = Replayer {
        events: &events,
        subscriptions: &subscriptions,
        publisher: &publisher,
        audit: &audit,
        register: &register,
        reference: &reference,
        jobs: &jobs,
        stats: &stats,
    };
    let replayer = &replayer;
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(lambda::replay_batch(replayer, event.payload).await)
    }))
    .await
}
