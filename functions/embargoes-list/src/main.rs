//! `GET /embargoes`: the release embargoes in effect (operators).

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_list_embargoes().await
}
