//! `GET /events/{eventType}/{id}`: a stored event, to whom it was delivered.

use hub::aws::{DynamoAuditLog, DynamoEventStore, required_env};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let events = DynamoEventStore::new(dynamodb.clone(), required_env("EVENTS_TABLE")?);
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let (events, audit) = (&events, &audit);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(lambda::read_event(events, audit, &event.payload).await)
    }))
    .await
}
