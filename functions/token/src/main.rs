//! `POST /oauth2/token`: a client assertion in, a hub access token out.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_token().await
}
