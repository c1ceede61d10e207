//! Release embargoes in memory: the settings and the held deliveries.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use super::poisoned;
use crate::catalogue::EventType;
use crate::criteria::ServiceType;
use crate::embargo::{EmbargoSetting, Embargoes, Hold, HoldStatus};
use crate::ports::{EmbargoStore, Page, StoreError};

#[derive(Default)]
struct State {
    settings: BTreeMap<(EventType, ServiceType), EmbargoSetting>,
    /// By (release day, due key), as the table's DUE# items.
    holds: BTreeMap<(String, String), Hold>,
    watermark: Option<String>,
}

#[derive(Default)]
pub struct MemoryEmbargoStore {
    state: Mutex<State>,
}

impl MemoryEmbargoStore {
    /// Every hold, whatever its status (for tests).
    pub fn holds(&self) -> Vec<Hold> {
        self.state
            .lock()
            .map(|state| state.holds.values().cloned().collect())
            .unwrap_or_default()
    }
}

fn place(hold: &Hold) -> (String, String) {
    (hold.release_day().to_owned(), hold.due_key())
}

impl EmbargoStore for MemoryEmbargoStore {
    async fn settings(&self) -> Result<Embargoes, StoreError> {
        let state = self.state.lock().map_err(|_| poisoned())?;
        Ok(Embargoes(state.settings.values().cloned().collect()))
    }

    async fn put_setting(&self, setting: &EmbargoSetting) -> Result<(), StoreError> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        state
            .settings
            .insert((setting.event_type, setting.service_type), setting.clone());
        Ok(())
    }

    async fn remove_setting(
        &self,
        event_type: EventType,
        service_type: ServiceType,
        _at: &str,
    ) -> Result<bool, StoreError> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        Ok(state.settings.remove(&(event_type, service_type)).is_some())
    }

    async fn hold(&self, hold: &Hold) -> Result<bool, StoreError> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        let already = state.holds.values().any(|held| {
            held.event_key == hold.event_key && held.subscriber_id == hold.subscriber_id
        });
        if already {
            return Ok(false);
        }
        state.holds.insert(place(hold), hold.clone());
        Ok(true)
    }

    async fn due(
        &self,
        day: &str,
        until: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Hold>, StoreError> {
        let state = self.state.lock().map_err(|_| poisoned())?;
        let mut items: Vec<Hold> = state
            .holds
            .iter()
            .filter(|((held_day, key), hold)| {
                held_day == day
                    && after.is_none_or(|after| key.as_str() > after)
                    && hold.release_at.as_str() <= until
                    && hold.status == HoldStatus::Held
            })
            .map(|(_, hold)| hold.clone())
            .take(limit + 1)
            .collect();
        let next = (items.len() > limit).then(|| {
            items.truncate(limit);
            items.last().map(Hold::due_key).unwrap_or_default()
        });
        Ok(Page { items, next })
    }

    async fn attempt_failed(&self, hold: &Hold, error: &str) -> Result<(), StoreError> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        if let Some(stored) = state.holds.get_mut(&place(hold)) {
            stored.attempts += 1;
            stored.last_error = Some(error.to_owned());
        }
        Ok(())
    }

    async fn settle(
        &self,
        hold: &Hold,
        status: HoldStatus,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        match state.holds.get_mut(&place(hold)) {
            Some(stored) if stored.status == HoldStatus::Held => {
                stored.status = status;
                stored.attempts += 1;
                if let Some(detail) = detail {
                    stored.last_error = Some(detail.to_owned());
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn held(
        &self,
        keys: &[(String, String)],
    ) -> Result<HashSet<(String, String)>, StoreError> {
        let state = self.state.lock().map_err(|_| poisoned())?;
        Ok(state
            .holds
            .values()
            .filter(|hold| hold.status == HoldStatus::Held)
            .map(|hold| (hold.event_key.clone(), hold.subscriber_id.clone()))
            .filter(|key| keys.contains(key))
            .collect())
    }

    async fn watermark(&self) -> Result<Option<String>, StoreError> {
        let state = self.state.lock().map_err(|_| poisoned())?;
        Ok(state.watermark.clone())
    }

    async fn set_watermark(&self, day: &str) -> Result<(), StoreError> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        state.watermark = Some(day.to_owned());
        Ok(())
    }
}
