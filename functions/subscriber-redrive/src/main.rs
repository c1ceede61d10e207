//! `POST /subscribers/{id}/$redrive`: moves a subscriber's DLQ back to its
//! queue, a bounded number a request (operators, or the subscriber itself).

use hub::aws::{DynamoAuditLog, DynamoSubscriberStore, SqsQueueMonitor, required_env};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = lambda::dynamodb_client(&config).await;
    let subscribers =
        DynamoSubscriberStore::new(dynamodb.clone(), required_env("SUBSCRIBERS_TABLE")?);
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let queues = SqsQueueMonitor::new(aws_sdk_sqs::Client::new(&config));
    let (subscribers, queues, audit) = (&subscribers, &queues, &audit);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(lambda::redrive(subscribers, queues, audit, &event.payload).await)
    }))
    .await
}
