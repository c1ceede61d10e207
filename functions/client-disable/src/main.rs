//! `DELETE /clients/{id}`: disable a client system (operators).

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_disable_client().await
}
