//! `POST /subscribers`: create a subscriber's queues and topic subscriptions.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_onboard().await
}
