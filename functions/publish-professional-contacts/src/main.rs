//! `POST /events/professional-contacts-1`.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_publish(hub::EventType::ProfessionalContacts).await
}
