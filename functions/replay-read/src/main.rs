//! `GET /replays/{id}`: a replay's progress.

use hub::aws::{DynamoAuditLog, DynamoReplayStore};
use hub::lambda::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let config = lambda::sdk_config().await;
    let dynamodb = lambda::dynamodb_client(&config).await;
    let jobs = DynamoReplayStore::from_env(dynamodb.clone())?;
    let audit = DynamoAuditLog::from_env(dynamodb)?;
    let (jobs, audit) = (&jobs, &audit);
    lambda::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(lambda::read_replay(jobs, audit, &event.payload).await)
    }))
    .await
}
