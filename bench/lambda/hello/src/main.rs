//! Hello world on lambda_runtime: the baseline of bench/lambda/init.py.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(json!({ "hello": "world", "got": event.payload.is_object() }))
    }))
    .await
}
