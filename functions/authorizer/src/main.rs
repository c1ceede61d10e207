//! The API's TOKEN authorizer: a valid hub access token of an enabled
//! client, or no entry.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_authorizer().await
}
