//! `POST /events/newborn-hearing-1`.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_publish(hub::EventType::NewbornHearing).await
}
