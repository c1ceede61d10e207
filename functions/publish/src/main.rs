//! `POST /events/{code}`: one binary for the ten publish functions, each
//! deployed with its own `EVENT_TYPE` (template.yaml). A missing or unknown
//! code stops the function at init, before it answers any request.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    let code = std::env::var("EVENT_TYPE")
        .map_err(|_| "EVENT_TYPE is not set: it names the event type this function takes")?;
    let event_type: hub::EventType = code
        .parse()
        .map_err(|_| format!("EVENT_TYPE {code:?} is not an event type of the catalogue"))?;
    hub::lambda::run_publish(event_type).await
}
