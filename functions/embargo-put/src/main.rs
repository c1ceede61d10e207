//! `PUT /embargoes/{eventType}/{serviceType}`: set a release embargo
//! (operators).

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_put_embargo().await
}
