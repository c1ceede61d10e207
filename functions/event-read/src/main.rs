//! `GET /events/{id}`: a stored event as published, to its publisher, the
//! subscribers it was delivered to, and operators.

use hub::aws::{
    DynamoAuditLog, DynamoEventStore, DynamoRegisterStore, DynamoSubscriptionStore, required_env,
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
    let register = DynamoRegisterStore::from_env(dynamodb.clone())?;
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let (events, subscriptions, register, audit) = (&events, &subscriptions, &register, &audit);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(
            lambda::read_event(events, subscriptions, register, audit, &event.payload).await,
        )
    }))
    .await
}
