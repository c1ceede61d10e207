//! `PATCH /subscribers/{id}`: change a subscriber's event types or the AWS
//! principal that reads its queue; its queues and their messages stay.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_change_subscriber().await
}
