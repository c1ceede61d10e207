//! `POST /Subscription/{id}/$backfill` and `DELETE
//! /Subscription/{id}/backfill/{grantId}`: operators open and revoke a
//! backfill grant on a subscription.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_backfill().await
}
