//! The events table's stream -> the child register, then one SNS message
//! per recipient.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_dispatch().await
}
