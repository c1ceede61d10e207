//! `GET /children/{nhsNumber}`: a child's register record (operators).

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_read_child().await
}
