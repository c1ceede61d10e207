//! `POST /Subscription`.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_create_subscription().await
}
