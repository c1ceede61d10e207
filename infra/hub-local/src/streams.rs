//! The DynamoDB stream event source mapping: what Lambda does for the
//! deployed dispatch function. Records are read from the emulator's stream
//! in order, handed over in batches as aws_lambda_events' DynamoDB event,
//! and a batch that fails is retried from the first failed record (partial
//! batch response), halved on function errors when the template asks for
//! bisection, and sent to the on-failure queue after the retry limit.

use std::collections::VecDeque;
use std::time::Duration;

use aws_lambda_events::dynamodb::{Event, EventRecord, StreamRecord, StreamViewType};
use aws_lambda_events::streams::DynamoDbEventResponse;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use serde_json::json;

use crate::runtime::{Function, InvokeError};
use crate::template::{ACCOUNT_ID, REGION, StreamSource};

/// A record read from the stream, with the shard it came from.
#[derive(Clone)]
struct Pending {
    shard_id: String,
    record: Record,
}

impl Pending {
    fn sequence_number(&self) -> Option<&str> {
        self.record.dynamodb.as_ref()?.sequence_number.as_deref()
    }

    fn arrival(&self) -> Option<String> {
        let at = self
            .record
            .dynamodb
            .as_ref()?
            .approximate_creation_date_time?;
        at.fmt(aws_sdk_dynamodbstreams::primitives::DateTimeFormat::DateTime)
            .ok()
    }
}

pub struct StreamMapping {
    pub source: StreamSource,
    pub stream_arn: String,
    pub function: Function,
    pub on_failure_queue_url: Option<String>,
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub sqs: aws_sdk_sqs::Client,
}

const POLL_INTERVAL: Duration = Duration::from_millis(100);

impl StreamMapping {
    pub async fn run(self) {
        let mut iterators: Vec<(String, Option<String>)> = Vec::new();
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut attempts: u32 = 0;
        let full_batch = self.source.batch_size.max(1);
        let mut batch_limit = full_batch;
        loop {
            if pending.len() < batch_limit {
                self.fill(&mut iterators, &mut pending).await;
            }
            if pending.is_empty() {
                tokio::time::sleep(POLL_INTERVAL).await;
                continue;
            }
            let size = batch_limit.min(pending.len());
            let batch: Vec<Pending> = pending.iter().take(size).cloned().collect();
            match self.invoke(&batch).await {
                Ok(None) => {
                    pending.drain(..size);
                    attempts = 0;
                    batch_limit = full_batch;
                }
                Ok(Some(failed_at)) => {
                    // Everything before the first failed record is done.
                    pending.drain(..failed_at);
                    attempts += 1;
                    let left = size - failed_at;
                    if self.source.bisect_on_error && left > 1 {
                        // Halving what is left isolates a record that keeps
                        // failing, so that only it is given up on and the
                        // records behind it are still delivered.
                        batch_limit = left.div_ceil(2);
                    } else if attempts > self.source.maximum_retry_attempts {
                        if !self
                            .give_up(
                                &batch[failed_at..],
                                "the function reported the record as failed",
                            )
                            .await
                        {
                            tokio::time::sleep(backoff(attempts)).await;
                            continue;
                        }
                        pending.drain(..left);
                        attempts = 0;
                        batch_limit = full_batch;
                        continue;
                    }
                    tokio::time::sleep(backoff(attempts)).await;
                }
                Err(error) => {
                    eprintln!("[hub] stream batch of {size} failed: {error}");
                    attempts += 1;
                    if self.source.bisect_on_error && size > 1 {
                        batch_limit = size.div_ceil(2);
                    } else if attempts > self.source.maximum_retry_attempts {
                        if !self.give_up(&batch, &error.to_string()).await {
                            tokio::time::sleep(backoff(attempts)).await;
                            continue;
                        }
                        pending.drain(..size);
                        attempts = 0;
                        batch_limit = full_batch;
                        continue;
                    }
                    tokio::time::sleep(backoff(attempts)).await;
                }
            }
        }
    }

    /// Reads what the stream has beyond what is pending.
    async fn fill(
        &self,
        iterators: &mut Vec<(String, Option<String>)>,
        pending: &mut VecDeque<Pending>,
    ) {
        if iterators.is_empty() {
            let Ok(description) = self
                .streams
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .send()
                .await
            else {
                return;
            };
            for shard in description
                .stream_description
                .and_then(|d| d.shards)
                .unwrap_or_default()
            {
                let Some(shard_id) = shard.shard_id else {
                    continue;
                };
                let iterator = self
                    .streams
                    .get_shard_iterator()
                    .stream_arn(&self.stream_arn)
                    .shard_id(&shard_id)
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .ok()
                    .and_then(|output| output.shard_iterator);
                iterators.push((shard_id, iterator));
            }
        }
        for (shard_id, iterator) in iterators.iter_mut() {
            let Some(current) = iterator.clone() else {
                continue;
            };
            match self
                .streams
                .get_records()
                .shard_iterator(current)
                .send()
                .await
            {
                Ok(output) => {
                    pending.extend(
                        output
                            .records
                            .unwrap_or_default()
                            .into_iter()
                            .map(|record| Pending {
                                shard_id: shard_id.clone(),
                                record,
                            }),
                    );
                    *iterator = output.next_shard_iterator;
                }
                Err(error) => eprintln!(
                    "[hub] reading the stream: {}",
                    aws_sdk_dynamodbstreams::error::DisplayErrorContext(error)
                ),
            }
        }
    }

    /// Invokes the function; Ok(Some(index)) names the first failed record.
    async fn invoke(&self, batch: &[Pending]) -> Result<Option<usize>, InvokeError> {
        let mut event = Event::default();
        event.records = batch
            .iter()
            .map(|pending| lambda_record(&pending.record, &self.stream_arn))
            .collect();
        let payload =
            serde_json::to_vec(&event).map_err(|e| InvokeError::Runtime(e.to_string()))?;
        let answer = self.function.invoke(payload).await?;
        if !self.source.report_batch_item_failures {
            return Ok(None);
        }
        // As Lambda does: a response it cannot read, or a failure naming a
        // record not in the batch, fails the whole batch.
        let whole_batch =
            || InvokeError::Function("the partial batch response is not valid".into());
        let response: DynamoDbEventResponse =
            serde_json::from_slice(&answer).map_err(|_| whole_batch())?;
        let mut first_failed = None;
        for failure in &response.batch_item_failures {
            let position = failure.item_identifier.as_deref().and_then(|sequence| {
                batch
                    .iter()
                    .position(|pending| pending.sequence_number() == Some(sequence))
            });
            let position = position.ok_or_else(whole_batch)?;
            first_failed = Some(first_failed.map_or(position, |first: usize| first.min(position)));
        }
        Ok(first_failed)
    }

    /// Sends the context of records given up on to the on-failure queue, in
    /// the form Lambda's on-failure destination gives it (the shard, the
    /// first and last sequence numbers and arrival times), so an operator
    /// can read those records from the stream, or the events of that time
    /// from the table, and dispatch them again. False when that context
    /// could not be sent: the records are then kept and tried again, never
    /// dropped without a trace.
    async fn give_up(&self, records: &[Pending], reason: &str) -> bool {
        eprintln!(
            "[hub] giving up on {} stream record(s) after retries: {reason}",
            records.len()
        );
        let Some(queue_url) = &self.on_failure_queue_url else {
            return true;
        };
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return true;
        };
        let context = json!({
            "requestContext": {
                "requestId": uuid::Uuid::new_v4().to_string(),
                "functionArn": format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{}", self.function.name()),
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": self.source.maximum_retry_attempts + 1,
            },
            "responseContext": {"functionError": reason},
            "version": "1.0",
            "DDBStreamBatchInfo": {
                "shardId": first.shard_id,
                "startSequenceNumber": first.sequence_number(),
                "endSequenceNumber": last.sequence_number(),
                "approximateArrivalOfFirstRecord": first.arrival(),
                "approximateArrivalOfLastRecord": last.arrival(),
                "batchSize": records.len(),
                "streamArn": self.stream_arn,
            }
        });
        match self
            .sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(context.to_string())
            .send()
            .await
        {
            Ok(_) => true,
            Err(error) => {
                eprintln!(
                    "[hub] could not record the failure, keeping the records: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(error)
                );
                false
            }
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 * 2u64.pow(attempt.min(5)))
}

fn lambda_record(record: &Record, stream_arn: &str) -> EventRecord {
    let change = record
        .dynamodb
        .clone()
        .unwrap_or_else(|| aws_sdk_dynamodbstreams::types::StreamRecord::builder().build());
    let mut stream_record = StreamRecord::default();
    stream_record.keys = change.keys.clone().unwrap_or_default().into();
    stream_record.new_image = change.new_image.clone().unwrap_or_default().into();
    stream_record.old_image = change.old_image.clone().unwrap_or_default().into();
    stream_record.sequence_number = change.sequence_number.clone();
    stream_record.size_bytes = change.size_bytes.unwrap_or_default();
    stream_record.stream_view_type = Some(StreamViewType::NewImage);
    let mut event_record = EventRecord::default();
    event_record.aws_region = REGION.into();
    event_record.change = stream_record;
    event_record.event_id = record.event_id.clone().unwrap_or_default();
    event_record.event_name = record
        .event_name
        .as_ref()
        .map(|name| name.as_str().to_owned())
        .unwrap_or_default();
    event_record.event_source = Some("aws:dynamodb".into());
    event_record.event_version = record.event_version.clone();
    event_record.event_source_arn = Some(stream_arn.to_owned());
    event_record
}
