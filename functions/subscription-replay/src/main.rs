//! `POST /Subscription/{id}/$replay`: starts a replay of a window of stored
//! events to the subscription's subscriber.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_start_replay().await
}
