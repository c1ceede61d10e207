//! The audit trail, the child register and replay jobs in memory.

use std::collections::HashMap;
use std::sync::Mutex;

use super::poisoned;
use crate::audit::{AuditQuery, AuditRecord};
use crate::nhs_number::NhsNumber;
use crate::ports::{AuditLog, Page, ReplayStore, StoreError};
use crate::replay::{Admission, NotStarted, ReplayJob};

/// The audit trail in memory, in the order written.
#[derive(Default)]
pub struct MemoryAuditLog {
    records: Mutex<Vec<AuditRecord>>,
}

impl MemoryAuditLog {
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records
            .lock()
            .map(|records| records.clone())
            .unwrap_or_default()
    }
}

impl AuditLog for MemoryAuditLog {
    async fn record(&self, record: &AuditRecord) -> Result<(), StoreError> {
        self.record_all(std::slice::from_ref(record)).await
    }

    async fn record_all(&self, new: &[AuditRecord]) -> Result<(), StoreError> {
        let mut records = self.records.lock().map_err(|_| poisoned())?;
        for record in new {
            records.retain(|existing| existing.audit_id != record.audit_id);
            records.push(record.clone());
        }
        Ok(())
    }

    async fn get(&self, audit_id: &str) -> Result<Option<AuditRecord>, StoreError> {
        let records = self.records.lock().map_err(|_| poisoned())?;
        Ok(records
            .iter()
            .find(|record| record.audit_id == audit_id)
            .cloned())
    }

    async fn query(
        &self,
        query: &AuditQuery,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let records = self.records.lock().map_err(|_| poisoned())?;
        let mut matching: Vec<AuditRecord> = records
            .iter()
            .filter(|record| match query {
                AuditQuery::Patient(nhs_number) => {
                    record.nhs_number.as_deref() == Some(nhs_number.as_string().as_str())
                }
                AuditQuery::Client(client_id) => &record.client_id == client_id,
            })
            .cloned()
            .collect();
        matching.sort_by(|a, b| b.at.cmp(&a.at));
        let start = match page_token {
            None => 0,
            Some(token) => token
                .parse::<usize>()
                .ok()
                .filter(|start| *start <= matching.len())
                .ok_or(StoreError::InvalidPageToken)?,
        };
        let end = start.saturating_add(limit.max(1)).min(matching.len());
        let next = (end < matching.len()).then(|| end.to_string());
        Ok(Page {
            items: matching[start..end].to_vec(),
            next,
        })
    }
}

/// The child register in memory, with the DynamoDB adapter's versioned
/// conditional write.
#[derive(Default)]
pub struct MemoryRegisterStore {
    records: Mutex<HashMap<NhsNumber, crate::ports::Versioned<crate::register::ChildRecord>>>,
}

impl MemoryRegisterStore {
    /// The child's record as stored, if any.
    pub fn record(&self, nhs_number: NhsNumber) -> Option<crate::register::ChildRecord> {
        let records = self.records.lock().ok()?;
        records.get(&nhs_number).map(|stored| stored.value.clone())
    }

    pub fn len(&self) -> usize {
        self.records
            .lock()
            .map(|records| records.len())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl crate::ports::RegisterStore for MemoryRegisterStore {
    async fn get(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Option<crate::ports::Versioned<crate::register::ChildRecord>>, StoreError> {
        Ok(self
            .records
            .lock()
            .map_err(|_| poisoned())?
            .get(&nhs_number)
            .cloned())
    }

    async fn put(
        &self,
        record: &crate::register::ChildRecord,
        expected_version: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut records = self.records.lock().map_err(|_| poisoned())?;
        let stored_version = records.get(&record.nhs_number).map(|stored| stored.version);
        if stored_version != expected_version {
            return Ok(false);
        }
        records.insert(
            record.nhs_number,
            crate::ports::Versioned {
                value: record.clone(),
                version: expected_version.map_or(1, |version| version + 1),
            },
        );
        Ok(true)
    }
}

/// Replay jobs by id, with the holds on subscriptions and the quota counts
/// the DynamoDB table keeps beside them.
#[derive(Default)]
pub struct MemoryReplayStore {
    records: Mutex<ReplayRecords>,
}

#[derive(Default)]
struct ReplayRecords {
    jobs: HashMap<String, ReplayJob>,
    /// Hold key: (the replay holding it, until when).
    holds: HashMap<String, (String, i64)>,
    /// Quota key: replays started.
    started: HashMap<String, u32>,
}

impl MemoryReplayStore {
    /// The replay holding a subscription, if any (whatever its hold's age).
    pub fn holder(&self, subscription_id: &str) -> Option<String> {
        let records = self.records.lock().ok()?;
        records
            .holds
            .get(&format!("running#{subscription_id}"))
            .map(|(replay_id, _)| replay_id.clone())
    }
}

impl ReplayStore for MemoryReplayStore {
    async fn start(
        &self,
        job: &ReplayJob,
        admission: &Admission,
    ) -> Result<Result<(), NotStarted>, StoreError> {
        let mut records = self.records.lock().map_err(|_| poisoned())?;
        let held = records
            .holds
            .get(&admission.hold_key)
            .is_some_and(|(_, until)| *until >= admission.now);
        if held {
            return Ok(Err(NotStarted::AlreadyRunning));
        }
        let started = records
            .started
            .get(&admission.quota_key)
            .copied()
            .unwrap_or(0);
        if started >= admission.per_day {
            return Ok(Err(NotStarted::QuotaSpent));
        }
        records
            .started
            .insert(admission.quota_key.clone(), started + 1);
        records.holds.insert(
            admission.hold_key.clone(),
            (job.replay_id.clone(), admission.hold_until),
        );
        records.jobs.insert(job.replay_id.clone(), job.clone());
        Ok(Ok(()))
    }

    async fn release(&self, job: &ReplayJob) -> Result<(), StoreError> {
        let mut records = self.records.lock().map_err(|_| poisoned())?;
        let key = Admission::hold_key_of(job);
        if records
            .holds
            .get(&key)
            .is_some_and(|(replay_id, _)| *replay_id == job.replay_id)
        {
            records.holds.remove(&key);
        }
        Ok(())
    }

    async fn get(&self, replay_id: &str) -> Result<Option<ReplayJob>, StoreError> {
        Ok(self
            .records
            .lock()
            .map_err(|_| poisoned())?
            .jobs
            .get(replay_id)
            .cloned())
    }

    async fn save(&self, job: &ReplayJob) -> Result<bool, StoreError> {
        let mut records = self.records.lock().map_err(|_| poisoned())?;
        let jobs = &mut records.jobs;
        match jobs.get(&job.replay_id) {
            Some(stored) if stored.revision + 1 == job.revision => {
                jobs.insert(job.replay_id.clone(), job.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
