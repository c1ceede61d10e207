//! `GET /children/{nhsNumber}/events`: a child's event history.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_read_child_events().await
}
