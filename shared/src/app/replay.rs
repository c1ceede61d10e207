//! Replay steps: the worker that advances a replay job (the job and its
//! rules are in `crate::replay`).

use time::OffsetDateTime;

use super::dispatch::Dispatcher;
use crate::audit::{self, AuditRecord};
use crate::catalogue::EventType;
use crate::criteria::Target;
use crate::dispatch::{Delivery, Registering, Route};
use crate::events::StoredEvent;
use crate::generic;
use crate::nhs_number::NhsNumber;
use crate::ports::{
    Adapters, AuditLog, DeliveryPublisher, EventStore, Page, Ports, ReplayStore, StoreError,
    SubscriptionStore,
};
use crate::replay::{ReplayJob, ReplayStatus, STEP_DAYS, STEP_EVENTS, next_day};
use crate::subscription::Subscription;

/// A subscription store that offers one subscription as the only
/// candidate: dispatch's routing, asked about one subscription.
pub struct Only<'a, S> {
    pub store: &'a S,
    pub subscription: &'a Subscription,
}

impl<S: SubscriptionStore> SubscriptionStore for Only<'_, S> {
    async fn delete(&self, subscription: &Subscription) -> Result<(), StoreError> {
        self.store.delete(subscription).await
    }

    async fn list_by_subscriber(
        &self,
        subscriber_id: &str,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<Page<Subscription>, StoreError> {
        self.store
            .list_by_subscriber(subscriber_id, limit, page_token)
            .await
    }

    async fn create(&self, subscription: &Subscription) -> Result<(), StoreError> {
        self.store.create(subscription).await
    }

    async fn count_explicit(
        &self,
        count: &crate::subscription::DailyCount,
    ) -> Result<bool, StoreError> {
        self.store.count_explicit(count).await
    }

    async fn get(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        self.store.get(id).await
    }

    async fn end(
        &self,
        subscription: &Subscription,
        ended: &crate::basis::Ended,
    ) -> Result<bool, StoreError> {
        self.store.end(subscription, ended).await
    }

    async fn assign_basis(
        &self,
        subscription: &Subscription,
        basis: &crate::basis::Basis,
    ) -> Result<bool, StoreError> {
        self.store.assign_basis(subscription, basis).await
    }

    async fn replace_backfills(
        &self,
        subscription: &Subscription,
        grants: &[crate::backfill::BackfillGrant],
    ) -> Result<bool, StoreError> {
        self.store.replace_backfills(subscription, grants).await
    }

    async fn explicit_candidates(
        &self,
        nhs_number: NhsNumber,
        event_type: EventType,
    ) -> Result<Vec<Subscription>, StoreError> {
        let criteria = &self.subscription.criteria;
        Ok((criteria.target == Target::Explicit(nhs_number)
            && criteria.events.contains(&event_type))
        .then(|| self.subscription.clone())
        .into_iter()
        .collect())
    }

    async fn generic_candidates(&self, keys: &[String]) -> Result<Vec<Subscription>, StoreError> {
        Ok(generic::subscription_key(&self.subscription.criteria)
            .filter(|key| keys.contains(key))
            .map(|_| self.subscription.clone())
            .into_iter()
            .collect())
    }
}

/// What one step of a replay reads and writes.
pub struct Replayer<'a, P> {
    pub ports: &'a P,
}

/// The next events of a window, and where the scan stands after them.
struct Batch {
    /// (position, event key), in order of arrival.
    events: Vec<(String, String)>,
    /// The position once all of them are handled.
    resume: String,
    /// Nothing of the window is left after them.
    finished: bool,
}

impl<P: Ports> Replayer<'_, P> {
    /// Advances the replay by one bounded step. The job is saved after each
    /// delivery; an error leaves it where the last save put it, for the
    /// next step (the stream's retry) to resume from. None: no such job.
    pub async fn step(
        &self,
        replay_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ReplayJob>, StoreError> {
        let Some(mut job) = self.ports.replays().get(replay_id).await? else {
            return Ok(None);
        };
        if job.status != ReplayStatus::Running {
            return Ok(Some(job));
        }
        let subscription = self
            .ports
            .subscriptions()
            .get(&job.subscription_id)
            .await?
            .filter(|subscription| {
                subscription.subscriber_id == job.subscriber_id && subscription.is_active(now)
            });
        let Some(subscription) = subscription else {
            job.status = ReplayStatus::Stopped;
            job.completed_at = Some(audit::timestamp(now));
            job.detail = Some("the subscription was deleted or has ended".into());
            self.save(&mut job, now).await?;
            return Ok(Some(job));
        };
        // Judged again at each step: a backfill grant that has expired or
        // been revoked since the job began no longer opens the earlier record.
        let floor = crate::replay::disclosure_floor(&subscription, now)
            .map(|from| (from, crate::events::first_position(from)));
        let batch = self.next_batch(&job, &subscription).await?;
        let keys: Vec<String> = batch.events.iter().map(|(_, key)| key.clone()).collect();
        let mut found = self.ports.events().get_many(&keys).await?;
        found.sort_by(|a, b| a.received_sort.cmp(&b.received_sort));
        // An event a release embargo holds for the subscriber is left to
        // the hold, which delivers it when released.
        let shown: Vec<super::embargo::Shown> =
            found.iter().map(super::embargo::Shown::from).collect();
        let held = super::embargo::hidden(self.ports, &job.subscriber_id, &shown, now).await?;
        // Dispatch's ports, but with this subscription as the only one.
        let ports = &self.ports;
        let only = Adapters::new()
            .events(ports.events())
            .subscriptions(Only {
                store: ports.subscriptions(),
                subscription: &subscription,
            })
            .publisher(ports.publisher())
            .audit(ports.audit())
            .register(ports.register())
            .reference(ports.reference())
            .relationships(ports.relationships())
            .stats(ports.stats());
        let dispatcher = Dispatcher { ports: &only };
        for event in &found {
            job.scanned += 1;
            job.position = event.received_sort.clone();
            if !event.is_live(now) || held.contains(&event.event_key) {
                continue;
            }
            if let Some((from, position)) = &floor
                && event.received_sort < *position
            {
                job.detail = Some(format!(
                    "events accepted before {} are no longer disclosed to it (its backfill \
                     grant ended during the replay): they were not replayed",
                    audit::timestamp(*from)
                ));
                continue;
            }
            let route = dispatcher
                .route_as(event, now, Registering::ReadOnly)
                .await?;
            // A sensitive child's events stay withheld, as at first dispatch;
            // a replay ends no subscription (it changes nothing), while a lost
            // basis still keeps the event from it.
            let Route::Deliver {
                deliveries,
                patient,
                endings: _,
            } = route
            else {
                continue;
            };
            for mut delivery in deliveries {
                delivery.replay_id = Some(job.replay_id.clone());
                self.record_delivery(&job, event, &delivery, patient, now)
                    .await?;
                let sent = [delivery];
                self.ports.publisher().publish(event, &sent).await?;
                crate::metrics::MetricRecord::for_event_type(event.event_type)
                    .count(crate::metrics::REPLAY_DELIVERIES, 1)
                    .emit();
                dispatcher.count_deliveries(event, &sent, now).await;
                job.delivered += 1;
                self.save(&mut job, now).await?;
            }
        }
        job.position = batch.resume;
        if batch.finished {
            job.status = ReplayStatus::Completed;
            job.completed_at = Some(audit::timestamp(now));
        }
        self.save(&mut job, now).await?;
        Ok(Some(job))
    }

    /// The delivery's audit records: the replay's own, and the first
    /// delivery's when the subscriber never had the event before (what lets
    /// it read the event back).
    async fn record_delivery(
        &self,
        job: &ReplayJob,
        event: &StoredEvent,
        delivery: &Delivery,
        patient: Option<NhsNumber>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let subscriber_id = delivery.subscriber_id.as_str();
        let mut records = vec![
            AuditRecord::delivery(&event.event_key, subscriber_id, patient, now)
                .with_id(format!("replay/{}/{}", job.replay_id, event.event_key))
                .subscription(job.subscription_id.clone())
                .detail(format!(
                    "replay {}; {}",
                    job.replay_id,
                    delivery.basis_detail()
                )),
        ];
        let first = audit::delivery_id(&event.event_key, subscriber_id);
        if self.ports.audit().get(&first).await?.is_none() {
            records.push(
                AuditRecord::delivery(&event.event_key, subscriber_id, patient, now)
                    .detail(delivery.basis_detail()),
            );
        }
        self.ports.audit().record_all(&records).await
    }

    async fn save(&self, job: &mut ReplayJob, now: OffsetDateTime) -> Result<(), StoreError> {
        job.revision += 1;
        job.updated_at = audit::timestamp(now);
        if self.ports.replays().save(job).await? {
            if job.status != ReplayStatus::Running {
                // Finished: the subscription may replay again. (Should this
                // fail, the worker releases it on the finished job's record.)
                self.ports.replays().release(job).await?;
            }
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                format!(
                    "replay {} was saved by another worker meanwhile",
                    job.replay_id
                )
                .into(),
            ))
        }
    }

    async fn next_batch(
        &self,
        job: &ReplayJob,
        subscription: &Subscription,
    ) -> Result<Batch, StoreError> {
        match subscription.criteria.target {
            // An explicit subscription's events are its patient's: read
            // through the patient index, not day by day.
            Target::Explicit(nhs_number) => {
                let all = self.ports.events().patient_events(nhs_number).await?;
                let mut remaining = all.iter().filter(|summary| {
                    summary.received_sort > job.position
                        && summary.received_sort < job.until
                        && subscription.criteria.events.contains(&summary.event_type)
                });
                let events: Vec<(String, String)> = remaining
                    .by_ref()
                    .take(STEP_EVENTS)
                    .map(|summary| (summary.received_sort.clone(), summary.event_key.clone()))
                    .collect();
                let finished = remaining.next().is_none();
                let resume = events
                    .last()
                    .map_or_else(|| job.position.clone(), |(position, _)| position.clone());
                Ok(Batch {
                    events,
                    resume,
                    finished,
                })
            }
            _ => self.next_batch_by_day(job).await,
        }
    }

    async fn next_batch_by_day(&self, job: &ReplayJob) -> Result<Batch, StoreError> {
        let mut events = Vec::new();
        let mut position = job.position.clone();
        let last_day = job.until.get(..10).unwrap_or_default().to_owned();
        for _ in 0..STEP_DAYS {
            let day = position.get(..10).unwrap_or_default().to_owned();
            let page = self
                .ports
                .events()
                .received_on(&day, Some(&position), STEP_EVENTS - events.len())
                .await?;
            for found in page.items {
                if found.as_str() >= job.until.as_str() {
                    return Ok(Batch {
                        events,
                        resume: position,
                        finished: true,
                    });
                }
                if let Some((_, key)) = found.split_once('#') {
                    events.push((found.clone(), key.to_owned()));
                }
                position = found;
            }
            if page.next.is_some() || events.len() == STEP_EVENTS {
                return Ok(Batch {
                    events,
                    resume: position,
                    finished: false,
                });
            }
            // The day is done: on to the next, unless it was the last.
            if day >= last_day {
                return Ok(Batch {
                    events,
                    resume: position,
                    finished: true,
                });
            }
            position = next_day(&day).unwrap_or_else(|| last_day.clone());
        }
        Ok(Batch {
            events,
            resume: position,
            finished: false,
        })
    }
}
