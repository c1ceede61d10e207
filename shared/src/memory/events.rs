//! The event store in memory.

use std::collections::HashMap;
use std::sync::Mutex;

use super::poisoned;
use crate::events::{CurrentVersion, EventSummary, StoredEvent, place};
use crate::nhs_number::NhsNumber;
use crate::ports::{EventStore, Insert, Page, StoreError};

#[derive(Default)]
pub struct MemoryEventStore {
    events: Mutex<HashMap<String, StoredEvent>>,
    /// Held under the events lock's protection: written only while it is held.
    current: Mutex<HashMap<String, CurrentVersion>>,
}

impl MemoryEventStore {
    /// The stored event with this MessageHeader.id (of any event type).
    pub fn by_message_id(&self, message_id: &str) -> Option<StoredEvent> {
        let events = self.events.lock().ok()?;
        events
            .values()
            .find(|event| event.event_id == message_id)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.events.lock().map(|events| events.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl EventStore for MemoryEventStore {
    async fn set_withheld(&self, event_key: &str, withheld: bool) -> Result<(), StoreError> {
        let mut events = self.events.lock().map_err(|_| poisoned())?;
        if let Some(event) = events.get_mut(event_key) {
            event.sensitive = withheld;
        }
        Ok(())
    }

    async fn insert(&self, event: &StoredEvent) -> Result<Insert, StoreError> {
        let mut events = self.events.lock().map_err(|_| poisoned())?;
        match events.get(&event.event_key) {
            Some(existing) if existing.payload_sha256 == event.payload_sha256 => {
                Ok(Insert::Duplicate)
            }
            Some(_) => Ok(Insert::Conflict),
            None => {
                let mut current = self.current.lock().map_err(|_| poisoned())?;
                let mut stored = event.clone();
                if let Some(identifier) = event.focus_identifier.as_deref() {
                    let placement = place(event, current.get(identifier));
                    stored.out_of_order = placement.out_of_order;
                    if placement.becomes_current
                        && let Some(version) = CurrentVersion::of(event)
                    {
                        current.insert(identifier.to_owned(), version);
                    }
                }
                let out_of_order = stored.out_of_order;
                events.insert(event.event_key.clone(), stored);
                Ok(Insert::Stored { out_of_order })
            }
        }
    }

    async fn get_many(&self, event_keys: &[String]) -> Result<Vec<StoredEvent>, StoreError> {
        let events = self.events.lock().map_err(|_| poisoned())?;
        Ok(event_keys
            .iter()
            .filter_map(|key| events.get(key).cloned())
            .collect())
    }

    async fn patient_events(&self, nhs_number: NhsNumber) -> Result<Vec<EventSummary>, StoreError> {
        let events = self.events.lock().map_err(|_| poisoned())?;
        let mut found: Vec<EventSummary> = events
            .values()
            .filter(|event| event.nhs_number == Some(nhs_number))
            .map(EventSummary::of)
            .collect();
        found.sort_by(|a, b| a.received_sort.cmp(&b.received_sort));
        Ok(found)
    }

    async fn received_on(
        &self,
        day: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<String>, StoreError> {
        let events = self.events.lock().map_err(|_| poisoned())?;
        let mut found: Vec<&StoredEvent> = events
            .values()
            .filter(|event| {
                event.received_day == day
                    && after.is_none_or(|after| event.received_sort.as_str() > after)
            })
            .collect();
        found.sort_by(|a, b| a.received_sort.cmp(&b.received_sort));
        let more = found.len() > limit;
        found.truncate(limit);
        Ok(Page {
            next: more
                .then(|| found.last().map(|event| event.received_sort.clone()))
                .flatten(),
            items: found
                .into_iter()
                .map(|event| event.received_sort.clone())
                .collect(),
        })
    }

    async fn get(&self, event_key: &str) -> Result<Option<StoredEvent>, StoreError> {
        Ok(self
            .events
            .lock()
            .map_err(|_| poisoned())?
            .get(event_key)
            .cloned())
    }
}
