//! `GET /Subscription/{id}`.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_read_subscription().await
}
