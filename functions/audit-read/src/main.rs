//! `GET /audit`: the audit trail by patient or by client (operators).

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_read_audit().await
}
