//! `GET /events/{id}`: a stored event as published, to its publisher, the
//! subscribers it was delivered to, and operators.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_read_event().await
}
