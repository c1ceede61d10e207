//! `DELETE /Subscription/{id}`.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_delete_subscription().await
}
