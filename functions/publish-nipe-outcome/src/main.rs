//! `POST /events/nipe-outcome-1`.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_publish(hub::EventType::NipeOutcome).await
}
