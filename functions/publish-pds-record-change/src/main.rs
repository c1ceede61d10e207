//! `POST /events/pds-record-change-1`.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_publish(hub::EventType::PdsRecordChange).await
}
