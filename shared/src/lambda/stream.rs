//! The stream handlers: dispatch of newly stored events, and the replay
//! worker.

use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use std::collections::BTreeSet;
use time::OffsetDateTime;
use tracing::{error, info};

use crate::app::dispatch::Dispatcher;
use crate::app::embargo::BatchSettings;
use crate::app::replay::Replayer;
use crate::dispatch::Dispatched;
use crate::events::StoredEvent;
use crate::ports::{Adapters, Ports, ReplayStore};
use crate::{metrics, replay};

use super::runtime::{Error, LambdaEvent, run, service_fn, start};

/// The events table's stream: dispatch every newly stored event. On the
/// first failure the rest of the batch is left for the retry, which restarts
/// at the failed record (the stream keeps order per shard).
pub async fn dispatch_batch<P: Ports>(
    dispatcher: &Dispatcher<'_, P>,
    batch: StreamEvent,
) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    // The embargo settings, read once for the batch.
    let settings = BatchSettings::default();
    for record in batch.records {
        // Events are written once: only an INSERT is a new event.
        if record.event_name != "INSERT" {
            continue;
        }
        let sequence_number = record.change.sequence_number.clone();
        let dispatched = match serde_dynamo::from_item::<_, StoredEvent>(record.change.new_image) {
            Ok(event) => dispatcher
                .dispatch_in_batch(&event, OffsetDateTime::now_utc(), &settings)
                .await
                .map(|outcome| (event, outcome))
                .map_err(|error| error.to_string()),
            Err(error) => Err(format!("the stream record is not a stored event: {error}")),
        };
        match dispatched {
            Ok((event, Dispatched::Delivered { recipients })) => {
                info!(event_id = %event.event_id, event_type = %event.event_type, recipients, "dispatched");
                dispatch_metrics(&event, OffsetDateTime::now_utc())
                    .count(
                        metrics::DELIVERIES,
                        u64::try_from(recipients).unwrap_or(u64::MAX),
                    )
                    .emit();
            }
            Ok((event, Dispatched::Withheld)) => {
                info!(event_id = %event.event_id, event_type = %event.event_type, "withheld: sensitive patient");
                dispatch_metrics(&event, OffsetDateTime::now_utc())
                    .count(metrics::DISPATCH_WITHHELD, 1)
                    .emit();
            }
            Err(error) => {
                error!(sequence_number = ?sequence_number, error = %error, "dispatch failed; the batch resumes here");
                metrics::MetricRecord::new()
                    .count(metrics::DISPATCH_FAILURES, 1)
                    .emit();
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = sequence_number;
                response.batch_item_failures.push(failure);
                break;
            }
        }
    }
    response
}

/// The metrics of one dispatched event, with the delay since its acceptance
/// (none when the stored time cannot be read: the delivery still counts).
fn dispatch_metrics(event: &StoredEvent, now: OffsetDateTime) -> metrics::MetricRecord {
    let record = metrics::MetricRecord::for_event_type(event.event_type);
    record_dispatch_delay(record, &event.received_at, now)
}

fn record_dispatch_delay(
    record: metrics::MetricRecord,
    received_at: &str,
    now: OffsetDateTime,
) -> metrics::MetricRecord {
    let delay = crate::fhir_time::parse_instant(received_at)
        .ok()
        .and_then(|received| std::time::Duration::try_from(now - received).ok());
    match delay {
        Some(delay) => record.milliseconds(metrics::DISPATCH_DELAY, delay),
        None => record,
    }
}

/// The replay worker: each change to a running replay's record (its
/// creation, then each save) prompts one bounded step of it. A step that
/// fails is reported, so that the stream retries from it; the job resumes
/// from its last save.
pub async fn replay_batch<P: Ports>(
    replayer: &Replayer<'_, P>,
    batch: StreamEvent,
) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    let mut stepped = BTreeSet::new();
    for record in batch.records {
        let sequence_number = record.change.sequence_number.clone();
        let Ok(job) = serde_dynamo::from_item::<_, replay::ReplayJob>(record.change.new_image)
        else {
            // A removal (TTL), or a subscription's hold or a subscriber's
            // count (replay::Admission), not a job: nothing to advance.
            continue;
        };
        if job.status != replay::ReplayStatus::Running {
            // A finished job's hold on its subscription is released by the
            // step that finished it; again here in case that step failed
            // after its save.
            if let Err(error) = replayer.ports.replays().release(&job).await {
                error!(replay_id = %job.replay_id, error = %error, "a finished replay's subscription could not be released");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = sequence_number;
                response.batch_item_failures.push(failure);
                break;
            }
            continue;
        }
        // The records of one batch are of the same few jobs: one step each.
        if !stepped.insert(job.replay_id.clone()) {
            continue;
        }
        match replayer
            .step(&job.replay_id, OffsetDateTime::now_utc())
            .await
        {
            Ok(Some(job)) => {
                info!(replay_id = %job.replay_id, scanned = job.scanned, delivered = job.delivered, status = ?job.status, "replay step");
            }
            Ok(None) => {}
            Err(error) => {
                error!(replay_id = %job.replay_id, error = %error, "replay step failed; it resumes from its last save");
                metrics::MetricRecord::new()
                    .count(metrics::REPLAY_FAILURES, 1)
                    .emit();
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = sequence_number;
                response.batch_item_failures.push(failure);
                break;
            }
        }
    }
    response
}

/// The main of dispatch: the events table's stream.
pub async fn run_dispatch() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .subscriptions(aws.subscriptions()?)
        .register(aws.register()?)
        .reference(aws.reference()?)
        .relationships(aws.relationships()?)
        .stats(aws.stats()?)
        .events(aws.events()?)
        .audit(aws.audit()?)
        .publisher(aws.publisher().await?)
        .subscribers(aws.subscribers()?)
        .embargoes(aws.embargoes()?);
    let dispatcher = &Dispatcher { ports: &ports };
    run(service_fn(move |event: LambdaEvent<_>| async move {
        // Boxed: the batch's future nests every port's calls, and laid out
        // inside the runtime's future it passes rustc's default query depth.
        let batch: std::pin::Pin<Box<dyn Future<Output = _> + Send + '_>> =
            Box::pin(dispatch_batch(dispatcher, event.payload));
        Ok::<_, Error>(batch.await)
    }))
    .await
}

/// The main of the replay worker: the replays table's stream.
pub async fn run_replay_worker() -> Result<(), Error> {
    let aws = start().await;
    let ports = Adapters::new()
        .events(aws.events()?)
        .subscriptions(aws.subscriptions()?)
        .register(aws.register()?)
        .reference(aws.reference()?)
        .relationships(aws.relationships()?)
        .replays(aws.replays()?)
        .stats(aws.stats()?)
        .audit(aws.audit()?)
        .publisher(aws.publisher().await?)
        .subscribers(aws.subscribers()?)
        .embargoes(aws.embargoes()?);
    let replayer = &Replayer { ports: &ports };
    run(service_fn(move |event: LambdaEvent<_>| async move {
        // Boxed, as dispatch's batch is.
        let batch: std::pin::Pin<Box<dyn Future<Output = _> + Send + '_>> =
            Box::pin(replay_batch(replayer, event.payload));
        Ok::<_, Error>(batch.await)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::EventType;

    #[test]
    fn dispatch_delay_runs_from_acceptance() {
        let received = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let record = metrics::MetricRecord::for_event_type(EventType::Vaccinations);
        let emf = record_dispatch_delay(
            record.clone(),
            &crate::fhir_time::format_instant(received),
            received + time::Duration::milliseconds(1_500),
        )
        .to_emf("ns", 0);
        assert_eq!(emf[metrics::DISPATCH_DELAY], 1500.0);
        // An unreadable time leaves the delay out, not the record.
        let emf =
            record_dispatch_delay(record.count(metrics::DELIVERIES, 2), "yesterday", received)
                .to_emf("ns", 0);
        assert!(emf.get(metrics::DISPATCH_DELAY).is_none());
        assert_eq!(emf[metrics::DELIVERIES], 2.0);
    }
}
