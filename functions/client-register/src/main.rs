//! `POST /clients`: register a client system (operators).

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_register_client().await
}
