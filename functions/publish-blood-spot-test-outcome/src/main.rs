//! `POST /events/blood-spot-test-outcome-1`.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_publish(hub::EventType::BloodSpotTestOutcome).await
}
