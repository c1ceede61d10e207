//! `POST /events/pds-change-of-gp-1`.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_publish(hub::EventType::PdsChangeOfGp).await
}
