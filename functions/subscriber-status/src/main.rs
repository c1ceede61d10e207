//! `GET /subscribers/{id}/status`: a subscriber's delivery counts and queue
//! depths (operators, or the subscriber itself).

use hub::aws::{
    DynamoAuditLog, DynamoDeliveryStats, DynamoSubscriberStore, SqsQueueMonitor, required_env,
    topic_arns_from_env,
};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = lambda::dynamodb_client(&config).await;
    let subscribers =
        DynamoSubscriberStore::new(dynamodb.clone(), required_env("SUBSCRIBERS_TABLE")?);
    let stats = DynamoDeliveryStats::from_env(dynamodb.clone())?;
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let queues = SqsQueueMonitor::new(aws_sdk_sqs::Client::new(&config))
        .with_subscriptions(aws_sdk_sns::Client::new(&config), topic_arns_from_env());
    let (subscribers, stats, queues, audit) = (&subscribers, &stats, &queues, &audit);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(
            lambda::subscriber_status(subscribers, stats, queues, audit, &event.payload).await,
        )
    }))
    .await
}
