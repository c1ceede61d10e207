//! The replays table's stream -> one bounded step of each running replay.

// The handler future nests its ports' async calls deeper
// than rustc's default query depth allows when its layout is computed.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_replay_worker().await
}
