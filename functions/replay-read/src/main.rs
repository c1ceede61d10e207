//! `GET /replays/{id}`: a replay's progress.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_read_replay().await
}
