//! `embargo-release`: run on a schedule, releases the deliveries held by
//! release embargoes once due.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_embargo_release().await
}
