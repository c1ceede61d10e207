//! `GET /children/{nhsNumber}/relationships`: a child's parent and carer
//! relationships (operators).

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_read_child_relationships().await
}
