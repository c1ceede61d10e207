//! Parent and carer relationships in memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::poisoned;
use crate::nhs_number::NhsNumber;
use crate::pchr::{ActedFor, ActingStatus};
use crate::ports::{Recorded, RelationshipStore, StoreError};
use crate::relationship::{Relationship, RelationshipChange};

/// The relationships by child and key (`PERSON#<person>#<source>`), and the
/// SHA-256 of each relationship event seen, by its key.
#[derive(Default)]
pub struct MemoryRelationshipStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    relationships: BTreeMap<(NhsNumber, String), Relationship>,
    seen: HashMap<String, String>,
    /// The people each PCHR acts for, by subscriber and person.
    acting: HashMap<(String, NhsNumber), ActedFor>,
}

impl MemoryRelationshipStore {
    /// Every relationship held, by child then key.
    pub fn all(&self) -> Vec<Relationship> {
        self.state
            .lock()
            .map(|state| state.relationships.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl RelationshipStore for MemoryRelationshipStore {
    async fn record(&self, change: &RelationshipChange) -> Result<Recorded, StoreError> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        if let Some(sha256) = state.seen.get(&change.event_key()) {
            return Ok(if *sha256 == change.body_sha256 {
                Recorded::Duplicate
            } else {
                Recorded::Conflict
            });
        }
        state
            .seen
            .insert(change.event_key(), change.body_sha256.clone());
        let relationship = &change.relationship;
        let key = (relationship.child_nhs, relationship.key());
        let recorded = match state.relationships.get(&key) {
            None => Recorded::Created,
            Some(held) if held.source_last_updated < relationship.source_last_updated => {
                Recorded::Updated
            }
            Some(_) => return Ok(Recorded::OutOfOrder),
        };
        state.relationships.insert(key, relationship.clone());
        Ok(recorded)
    }

    async fn for_child(&self, child: NhsNumber) -> Result<Vec<Relationship>, StoreError> {
        let state = self.state.lock().map_err(|_| poisoned())?;
        Ok(state
            .relationships
            .values()
            .filter(|relationship| relationship.child_nhs == child)
            .cloned()
            .collect())
    }

    async fn between(
        &self,
        child: NhsNumber,
        person: NhsNumber,
    ) -> Result<Vec<Relationship>, StoreError> {
        Ok(self
            .for_child(child)
            .await?
            .into_iter()
            .filter(|relationship| relationship.person_nhs == person)
            .collect())
    }

    async fn children_of(&self, person: NhsNumber) -> Result<Vec<Relationship>, StoreError> {
        let state = self.state.lock().map_err(|_| poisoned())?;
        Ok(state
            .relationships
            .values()
            .filter(|relationship| relationship.person_nhs == person)
            .cloned()
            .collect())
    }

    async fn act_for(&self, acted: &ActedFor) -> Result<(), StoreError> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        state
            .acting
            .insert((acted.subscriber_id.clone(), acted.person), acted.clone());
        Ok(())
    }

    async fn acted_for(
        &self,
        subscriber_id: &str,
        person: NhsNumber,
    ) -> Result<Option<ActedFor>, StoreError> {
        let state = self.state.lock().map_err(|_| poisoned())?;
        Ok(state
            .acting
            .get(&(subscriber_id.to_owned(), person))
            .cloned())
    }

    async fn stop_acting_for(
        &self,
        subscriber_id: &str,
        person: NhsNumber,
        at: &str,
    ) -> Result<bool, StoreError> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        match state.acting.get_mut(&(subscriber_id.to_owned(), person)) {
            Some(acted) if acted.status == ActingStatus::Active => {
                acted.status = ActingStatus::Ended;
                acted.ended_at = Some(at.to_owned());
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
