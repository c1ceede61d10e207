//! The events table's stream -> the child register, then one SNS message
//! per recipient.

// The handler future nests its ports' async calls deeper
// than rustc's default query depth allows when its layout is computed.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    hub::lambda::run_dispatch().await
}
