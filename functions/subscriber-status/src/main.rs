//! `GET /subscribers/{id}/status`: a subscriber's delivery counts and queue
//! depths (operators, or the subscriber itself).

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_subscriber_status().await
}
