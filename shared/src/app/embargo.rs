//! Release embargoes (crate::embargo): the hold at dispatch, the test the
//! read paths apply, and the release run.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

use time::OffsetDateTime;

use crate::audit::{AuditRecord, timestamp};
use crate::catalogue::EventType;
use crate::criteria::ServiceType;
use crate::dispatch::Delivery;
use crate::embargo::{self, Embargoes, Hold, HoldStatus, LONGEST_DELAY_DAYS};
use crate::events::{StoredEvent, received_day};
use crate::metrics::{self, MetricRecord};
use crate::nhs_number::NhsNumber;
use crate::ports::{
    AuditLog, DeliveryPublisher, EmbargoStore, EventStore, Ports, StoreError, SubscriberStore,
    SubscriptionStore,
};

/// The embargo settings for the events of one invocation, and the service
/// type of each recipient of an embargoed type: each read when first
/// needed, then kept for the rest (one Query an invocation, one keyed read
/// a recipient, not one an event). Made afresh for each invocation, so that
/// a change of setting or of service type applies from the next one on.
#[derive(Debug, Default)]
pub struct BatchSettings {
    settings: OnceLock<Embargoes>,
    service_types: Mutex<HashMap<String, Option<ServiceType>>>,
}

impl BatchSettings {
    async fn get<P: Ports>(&self, ports: &P) -> Result<&Embargoes, StoreError> {
        if let Some(read) = self.settings.get() {
            return Ok(read);
        }
        let read = ports.embargoes().settings().await?;
        Ok(self.settings.get_or_init(|| read))
    }

    /// The subscriber's registered service type (None: none, or no such
    /// subscriber).
    async fn service_type<P: Ports>(
        &self,
        ports: &P,
        subscriber_id: &str,
    ) -> Result<Option<ServiceType>, StoreError> {
        let known = |types: &Mutex<HashMap<String, Option<ServiceType>>>| {
            types
                .lock()
                .map(|types| types.get(subscriber_id).copied())
                .unwrap_or_default()
        };
        if let Some(service_type) = known(&self.service_types) {
            return Ok(service_type);
        }
        let service_type = ports
            .subscribers()
            .get(subscriber_id)
            .await?
            .and_then(|subscriber| subscriber.service_type);
        if let Ok(mut types) = self.service_types.lock() {
            types.insert(subscriber_id.to_owned(), service_type);
        }
        Ok(service_type)
    }
}

/// Holds the deliveries an embargo delays, and answers those to publish
/// now. Only for an event type some setting names does it read each
/// recipient's service type (once an invocation). A hold is audited first
/// and written conditionally, so a retried dispatch holds it once; no
/// `Deliver` record is written for it, so it grants no event read.
pub async fn hold_embargoed<P: Ports>(
    ports: &P,
    settings: &BatchSettings,
    event: &StoredEvent,
    deliveries: Vec<Delivery>,
    patient: Option<NhsNumber>,
    now: OffsetDateTime,
) -> Result<Vec<Delivery>, StoreError> {
    if deliveries.is_empty() {
        return Ok(deliveries);
    }
    let embargoes = settings.get(ports).await?;
    if !embargoes.covers(event.event_type) {
        return Ok(deliveries);
    }
    let mut now_set = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let service_type = settings
            .service_type(ports, &delivery.subscriber_id)
            .await?;
        let Some(release_at) = release_for(embargoes, service_type, event, now) else {
            now_set.push(delivery);
            continue;
        };
        let hold = Hold {
            event_key: event.event_key.clone(),
            event_type: event.event_type,
            subscriber_id: delivery.subscriber_id.clone(),
            delivery,
            patient,
            release_at: timestamp(release_at),
            status: HoldStatus::Held,
            attempts: 0,
            last_error: None,
            expires_at: event.expires_at,
        };
        ports
            .audit()
            .record(&AuditRecord::embargo_hold(
                (&hold.event_key, &hold.subscriber_id),
                &hold.release_at,
                patient,
                now,
            ))
            .await?;
        if ports.embargoes().hold(&hold).await? {
            tracing::info!(
                event_id = %event.event_id,
                subscriber_id = %hold.subscriber_id,
                release_at = %hold.release_at,
                "a delivery is held by a release embargo"
            );
            MetricRecord::for_event_type(event.event_type)
                .count(metrics::EMBARGO_HELD, 1)
                .emit();
        }
    }
    Ok(now_set)
}

/// When a delivery to a recipient of this service type is released, if an
/// embargo holds it: the service type has a delay for the event type, and
/// the event was accepted less than that delay ago.
fn release_for(
    embargoes: &Embargoes,
    service_type: Option<ServiceType>,
    event: &StoredEvent,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let delay = embargoes.delay(event.event_type, service_type?)?;
    embargo::release_at(&event.received_sort, delay).filter(|release_at| *release_at > now)
}

/// One event a read path would show: its key, type and position
/// (`received_sort`).
pub struct Shown<'a> {
    pub event_key: &'a str,
    pub event_type: EventType,
    pub received_sort: &'a str,
}

impl<'a> From<&'a crate::events::StoredEvent> for Shown<'a> {
    fn from(event: &'a crate::events::StoredEvent) -> Self {
        Shown {
            event_key: &event.event_key,
            event_type: event.event_type,
            received_sort: &event.received_sort,
        }
    }
}

impl<'a> From<&'a crate::events::EventSummary> for Shown<'a> {
    fn from(summary: &'a crate::events::EventSummary) -> Self {
        Shown {
            event_key: &summary.event_key,
            event_type: summary.event_type,
            received_sort: &summary.received_sort,
        }
    }
}

/// The events of `shown` an embargo still hides from the subscriber: of a
/// type with a delay for its service type, and accepted less than that
/// delay ago, or past it but still held (the release has not run yet).
/// One Query of the settings; the subscriber and the held items are read
/// only when some shown event is of an embargoed type.
pub async fn hidden<P: Ports>(
    ports: &P,
    subscriber_id: &str,
    shown: &[Shown<'_>],
    now: OffsetDateTime,
) -> Result<HashSet<String>, StoreError> {
    let mut hidden = HashSet::new();
    let embargoes = ports.embargoes().settings().await?;
    if !shown.iter().any(|event| embargoes.covers(event.event_type)) {
        return Ok(hidden);
    }
    let Some(service_type) = ports
        .subscribers()
        .get(subscriber_id)
        .await?
        .and_then(|subscriber| subscriber.service_type)
    else {
        return Ok(hidden);
    };
    let mut past_delay = Vec::new();
    for event in shown {
        let Some(delay) = embargoes.delay(event.event_type, service_type) else {
            continue;
        };
        match embargo::release_at(event.received_sort, delay) {
            Some(release_at) if release_at <= now => {
                past_delay.push((event.event_key.to_owned(), subscriber_id.to_owned()));
            }
            // Not yet released, or not timed (never shown early).
            _ => {
                hidden.insert(event.event_key.to_owned());
            }
        }
    }
    if !past_delay.is_empty() {
        let held = ports.embargoes().held(&past_delay).await?;
        hidden.extend(held.into_iter().map(|(event_key, _)| event_key));
    }
    Ok(hidden)
}

/// What one release run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    pub released: usize,
    pub cancelled: usize,
    pub failed: usize,
    /// The age in seconds of the oldest hold the run left held past its
    /// release time; 0 when it left none (`EmbargoOverdue`).
    pub overdue_seconds: u64,
}

/// Holds read per query.
const PAGE: usize = 100;

/// One run of the release function: every hold due by `now`, from the
/// watermark's day to today. A hold that fails stays held (its attempt and
/// error recorded) for the next run, and keeps the watermark at its day.
/// The run reads every held hold due by `now`, so those it fails are all
/// the holds left overdue: the oldest of them is its `EmbargoOverdue`,
/// with no further read.
pub async fn release_due<P: Ports>(ports: &P, now: OffsetDateTime) -> Result<Released, StoreError> {
    let today = received_day(now);
    let until = timestamp(now);
    let start = match ports.embargoes().watermark().await? {
        Some(day) => day,
        None => received_day(now - time::Duration::days(LONGEST_DELAY_DAYS)),
    };
    let mut done = Released::default();
    // The release time of the oldest hold left held.
    let mut oldest_left: Option<String> = None;
    let mut watermark = None;
    let mut day = start;
    while day <= today {
        let mut after: Option<String> = None;
        let mut left_held = false;
        loop {
            let page = ports
                .embargoes()
                .due(&day, &until, after.as_deref(), PAGE)
                .await?;
            for hold in &page.items {
                match release_one(ports, hold, now).await {
                    Ok(HoldStatus::Released) => done.released += 1,
                    Ok(_) => done.cancelled += 1,
                    Err(error) => {
                        left_held = true;
                        done.failed += 1;
                        if oldest_left
                            .as_deref()
                            .is_none_or(|oldest| hold.release_at.as_str() < oldest)
                        {
                            oldest_left = Some(hold.release_at.clone());
                        }
                        tracing::warn!(
                            event_key = %hold.event_key,
                            subscriber_id = %hold.subscriber_id,
                            error = %error,
                            "a held delivery could not be released; it stays held"
                        );
                        MetricRecord::for_event_type(hold.event_type)
                            .count(metrics::EMBARGO_RELEASE_FAILURES, 1)
                            .emit();
                        if let Err(error) = ports
                            .embargoes()
                            .attempt_failed(hold, &error.to_string())
                            .await
                        {
                            tracing::warn!(error = %error, "the failed attempt could not be recorded");
                        }
                    }
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        // Today may still hold what is not yet due; an earlier day with a
        // failure is read again next run.
        if watermark.is_none() && (left_held || day == today) {
            watermark = Some(day.clone());
        }
        match crate::replay::next_day(&day) {
            Some(next) => day = next,
            None => break,
        }
    }
    done.overdue_seconds = oldest_left
        .map(|release_at| embargo::overdue_seconds(&release_at, now))
        .unwrap_or(0);
    MetricRecord::new()
        .seconds(metrics::EMBARGO_OVERDUE, done.overdue_seconds)
        .emit();
    ports
        .embargoes()
        .set_watermark(watermark.as_deref().unwrap_or(&today))
        .await?;
    Ok(done)
}

/// Releases one hold, or cancels it when its recipient may no longer have
/// it. The release is audited before the publish and the hold marked
/// released after it: a failure before the publish leaves it held; one
/// after it sends it again on the next run (at least once, as every
/// delivery of the hub). The `Deliver` record that lets the subscriber
/// read the event back is written only once the publish succeeded: a
/// failed publish leaves the hold waiting for the next run, and the event
/// must not be readable before it is received.
async fn release_one<P: Ports>(
    ports: &P,
    hold: &Hold,
    now: OffsetDateTime,
) -> Result<HoldStatus, StoreError> {
    let event = ports
        .events()
        .get(&hold.event_key)
        .await?
        .filter(|event| event.is_live(now));
    let Some(event) = event else {
        return cancel(ports, hold, "the event has expired", now).await;
    };
    if event.sensitive {
        return cancel(ports, hold, "withheld: the event is withheld", now).await;
    }
    if super::register::any_sensitive(ports.register(), [hold.patient, event.nhs_number]).await? {
        return cancel(
            ports,
            hold,
            "withheld: the patient is flagged sensitive",
            now,
        )
        .await;
    }
    let mut delivery = hold.delivery.clone();
    let mut matches = Vec::with_capacity(delivery.matches.len());
    for matched in delivery.matches {
        let subscription = ports.subscriptions().get(&matched.subscription_id).await?;
        if subscription.is_some_and(|subscription| {
            subscription.subscriber_id == hold.subscriber_id
                && subscription.receives(&hold.event_key, now)
        }) {
            matches.push(matched);
        }
    }
    if matches.is_empty() {
        return cancel(
            ports,
            hold,
            "the subscription was deleted or has ended",
            now,
        )
        .await;
    }
    delivery.matches = matches;
    // First the release's own record, which grants no read: should the
    // run stop after the publish and the hold be cancelled by the next,
    // the trail still shows what may have been sent.
    ports
        .audit()
        .record(&AuditRecord::embargo_release(
            (&hold.event_key, &hold.subscriber_id),
            hold.patient,
            format!(
                "released from its embargo: published after this record; {}",
                delivery.basis_detail()
            ),
            now,
        ))
        .await?;
    let basis = delivery.basis_detail();
    let sent = [delivery];
    ports.publisher().publish(&event, &sent).await?;
    ports
        .audit()
        .record(
            &AuditRecord::delivery(&hold.event_key, &hold.subscriber_id, hold.patient, now)
                .detail(basis),
        )
        .await?;
    ports
        .embargoes()
        .settle(hold, HoldStatus::Released, None)
        .await?;
    MetricRecord::for_event_type(hold.event_type)
        .count(metrics::EMBARGO_RELEASED, 1)
        .emit();
    super::dispatch::Dispatcher { ports }
        .count_deliveries(&event, &sent, now)
        .await;
    Ok(HoldStatus::Released)
}

async fn cancel<P: Ports>(
    ports: &P,
    hold: &Hold,
    reason: &str,
    now: OffsetDateTime,
) -> Result<HoldStatus, StoreError> {
    ports
        .audit()
        .record(&AuditRecord::embargo_cancel(
            (&hold.event_key, &hold.subscriber_id),
            hold.patient,
            reason,
            now,
        ))
        .await?;
    ports
        .embargoes()
        .settle(hold, HoldStatus::Cancelled, Some(reason))
        .await?;
    tracing::info!(
        event_key = %hold.event_key,
        subscriber_id = %hold.subscriber_id,
        reason,
        "a held delivery was cancelled"
    );
    Ok(HoldStatus::Cancelled)
}
