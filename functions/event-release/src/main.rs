//! `POST /events/{id}/$release`: an operator releases an event withheld
//! while its child was flagged sensitive, once the flag is cleared.

use hub::aws::{DynamoAuditLog, DynamoEventStore, DynamoRegisterStore};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = lambda::dynamodb_client(&config).await;
    let events = DynamoEventStore::from_env(dynamodb.clone())?;
    let register = DynamoRegisterStore::from_env(dynamodb.clone())?;
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let (events, register, audit) = (&events, &register, &audit);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(lambda::release_event(events, register, audit, &event.payload).await)
    }))
    .await
}
