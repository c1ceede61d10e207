//! `DELETE /embargoes/{eventType}/{serviceType}`: end a release embargo
//! (operators).

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_delete_embargo().await
}
