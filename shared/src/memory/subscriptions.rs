//! Subscriptions and subscribers in memory.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use super::poisoned;
use crate::backfill::BackfillGrant;
use crate::basis::{Basis, Ended};
use crate::catalogue::EventType;
use crate::criteria::Target;
use crate::nhs_number::NhsNumber;
use crate::ports::{Page, StoreError, SubscriberStore, SubscriptionStore};
use crate::subscriber::Subscriber;
use crate::subscription::{DailyCount, Subscription};

/// Subscriptions by id, with an index by (NHS number, event type): the same
/// keyed access the DynamoDB adapter offers.
#[derive(Default)]
pub struct MemorySubscriptionStore {
    inner: Mutex<SubscriptionIndex>,
}

#[derive(Default)]
struct SubscriptionIndex {
    by_id: HashMap<String, Subscription>,
    explicit: HashMap<(NhsNumber, EventType), Vec<String>>,
    generic: HashMap<String, Vec<String>>,
    by_subscriber: HashMap<String, BTreeSet<String>>,
    /// Daily counts by key (DailyCount).
    counts: HashMap<String, u32>,
}

impl SubscriptionStore for MemorySubscriptionStore {
    async fn count_explicit(&self, count: &DailyCount) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        let counted = inner.counts.entry(count.key.clone()).or_default();
        if *counted >= count.per_day {
            return Ok(false);
        }
        *counted += 1;
        Ok(true)
    }

    async fn create(&self, subscription: &Subscription) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        if let Target::Explicit(nhs_number) = subscription.criteria.target {
            for event_type in &subscription.criteria.events {
                inner
                    .explicit
                    .entry((nhs_number, *event_type))
                    .or_default()
                    .push(subscription.id.clone());
            }
        }
        if let Some(key) = crate::generic::subscription_key(&subscription.criteria) {
            inner
                .generic
                .entry(key)
                .or_default()
                .push(subscription.id.clone());
        }
        inner
            .by_subscriber
            .entry(subscription.subscriber_id.clone())
            .or_default()
            .insert(subscription.id.clone());
        inner
            .by_id
            .insert(subscription.id.clone(), subscription.clone());
        Ok(())
    }

    async fn end(&self, subscription: &Subscription, ended: &Ended) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        match inner.by_id.get_mut(&subscription.id) {
            Some(stored) if stored.ended.is_none() => {
                stored.ended = Some(ended.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn assign_basis(
        &self,
        subscription: &Subscription,
        basis: &Basis,
    ) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        match inner.by_id.get_mut(&subscription.id) {
            Some(stored) if stored.basis.is_none() => {
                stored.basis = Some(basis.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn replace_backfills(
        &self,
        subscription: &Subscription,
        grants: &[BackfillGrant],
    ) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        match inner.by_id.get_mut(&subscription.id) {
            Some(stored) if stored.backfills == subscription.backfills => {
                stored.backfills = grants.to_vec();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete(&self, subscription: &Subscription) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        inner.by_id.remove(&subscription.id);
        if let Target::Explicit(nhs_number) = subscription.criteria.target {
            for event_type in &subscription.criteria.events {
                if let Some(ids) = inner.explicit.get_mut(&(nhs_number, *event_type)) {
                    ids.retain(|id| *id != subscription.id);
                }
            }
        }
        if let Some(key) = crate::generic::subscription_key(&subscription.criteria)
            && let Some(ids) = inner.generic.get_mut(&key)
        {
            ids.retain(|id| *id != subscription.id);
        }
        if let Some(ids) = inner.by_subscriber.get_mut(&subscription.subscriber_id) {
            ids.remove(&subscription.id);
        }
        Ok(())
    }

    async fn list_by_subscriber(
        &self,
        subscriber_id: &str,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<Page<Subscription>, StoreError> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        let ids = inner.by_subscriber.get(subscriber_id);
        let after = page_token.unwrap_or_default();
        let mut items: Vec<Subscription> = ids
            .into_iter()
            .flatten()
            .filter(|id| id.as_str() > after)
            .take(limit + 1)
            .filter_map(|id| inner.by_id.get(id).cloned())
            .collect();
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| last.id.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn get(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        Ok(self
            .inner
            .lock()
            .map_err(|_| poisoned())?
            .by_id
            .get(id)
            .cloned())
    }

    async fn explicit_candidates(
        &self,
        nhs_number: NhsNumber,
        event_type: EventType,
    ) -> Result<Vec<Subscription>, StoreError> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        Ok(inner
            .explicit
            .get(&(nhs_number, event_type))
            .into_iter()
            .flatten()
            .filter_map(|id| inner.by_id.get(id).cloned())
            .collect())
    }

    async fn generic_candidates(&self, keys: &[String]) -> Result<Vec<Subscription>, StoreError> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        Ok(keys
            .iter()
            .filter_map(|key| inner.generic.get(key))
            .flatten()
            .filter_map(|id| inner.by_id.get(id).cloned())
            .collect())
    }
}

#[derive(Default)]
pub struct MemorySubscriberStore {
    subscribers: Mutex<HashMap<String, Subscriber>>,
}

impl SubscriberStore for MemorySubscriberStore {
    async fn create(&self, subscriber: &Subscriber) -> Result<(), StoreError> {
        self.subscribers
            .lock()
            .map_err(|_| poisoned())?
            .insert(subscriber.id.clone(), subscriber.clone());
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Subscriber>, StoreError> {
        Ok(self
            .subscribers
            .lock()
            .map_err(|_| poisoned())?
            .get(id)
            .cloned())
    }

    async fn save(&self, subscriber: &Subscriber) -> Result<(), StoreError> {
        let mut subscribers = self.subscribers.lock().map_err(|_| poisoned())?;
        match subscribers.get(&subscriber.id) {
            Some(stored) if stored.offboarded_at.is_none() => {
                subscribers.insert(subscriber.id.clone(), subscriber.clone());
                Ok(())
            }
            _ => Err(StoreError::Unavailable(
                "the subscriber was offboarded while it was being changed".into(),
            )),
        }
    }

    async fn mark_offboarded(&self, id: &str, at: &str) -> Result<(), StoreError> {
        if let Some(subscriber) = self.subscribers.lock().map_err(|_| poisoned())?.get_mut(id) {
            subscriber.offboarded_at = Some(at.to_owned());
        }
        Ok(())
    }
}
