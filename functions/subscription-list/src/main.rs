//! `GET /Subscription`: a subscriber's subscriptions, paged.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_list_subscriptions().await
}
