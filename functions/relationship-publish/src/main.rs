//! `POST /relationship-events`: parent and carer relationships from
//! relationship publishers (VRS events).

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_publish_relationship().await
}
