//! `GET /children/{nhsNumber}`: a child's register record (operators).

use hub::aws::{DynamoAuditLog, DynamoRegisterStore};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = lambda::dynamodb_client(&config).await;
    let register = DynamoRegisterStore::from_env(dynamodb.clone())?;
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let (register, audit) = (&register, &audit);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(lambda::read_child(register, audit, &event.payload).await)
    }))
    .await
}
