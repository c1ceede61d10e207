//! `POST /subscribers/{id}/$redrive`: moves a subscriber's DLQ back to its
//! queue, a bounded number a request (operators, or the subscriber itself).

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_redrive().await
}
