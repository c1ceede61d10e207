//! The replays table's stream -> one bounded step of each running replay.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_replay_worker().await
}
