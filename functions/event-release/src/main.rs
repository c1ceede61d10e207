//! `POST /events/{id}/$release`: an operator releases an event withheld
//! while its child was flagged sensitive, once the flag is cleared.

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_release_event().await
}
