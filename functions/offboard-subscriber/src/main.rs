//! `DELETE /subscribers/{id}`: stop deliveries to a subscriber and remove its
//! subscriptions; its queues stay for the grace period.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_offboard().await
}
