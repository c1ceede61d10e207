//! `GET /audit`: the audit trail by patient or by client (operators).

use hub::aws::DynamoAuditLog;
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let audit = DynamoAuditLog::from_env(lambda::dynamodb_client(&config).await)?;
    let audit = &audit;
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(lambda::read_audit(audit, &event.payload).await)
    }))
    .await
}
