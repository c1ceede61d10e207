//! Reference data held in maps.

use std::collections::HashMap;

use crate::ports::{ReferenceData, StoreError};
use crate::reference::{Postcode, PostcodeArea, PracticeArea, ReferenceItem, practice_code};
#[cfg(feature = "reference-files")]
use crate::reference::{ReferenceRows, Rejected};

/// Reference data held in maps: filled before use (by a test, or from the
/// sample files), then shared read-only.
#[derive(Debug, Default, Clone)]
pub struct MemoryReferenceData {
    postcodes: HashMap<Postcode, PostcodeArea>,
    practices: HashMap<String, String>,
}

impl MemoryReferenceData {
    pub fn insert_postcode(&mut self, postcode: Postcode, area: PostcodeArea) {
        self.postcodes.insert(postcode, area);
    }

    pub fn insert_practice(&mut self, practice: PracticeArea) {
        self.practices
            .insert(practice_code(&practice.practice), practice.icb_sub_location);
    }

    pub fn insert(&mut self, item: ReferenceItem) {
        match item {
            ReferenceItem::Postcode { postcode, area, .. } => self.insert_postcode(postcode, area),
            ReferenceItem::Practice(practice) => self.insert_practice(practice),
        }
    }

    /// Loads a sub-ICB lookup, an ONSPD file and an `epraccur.csv` file as
    /// [`ReferenceRows`] reads them, keeping every good row; the rejections
    /// are the bad rows. Only what [`ReferenceRows::open`] refuses is an
    /// `Err`.
    #[cfg(feature = "reference-files")]
    pub fn load(
        sub_icb: impl std::io::BufRead,
        onspd: impl std::io::BufRead,
        epraccur: impl std::io::BufRead,
    ) -> Result<(Self, Vec<Rejected>), Rejected> {
        let mut data = MemoryReferenceData::default();
        let mut rejected = Vec::new();
        for row in ReferenceRows::open(sub_icb, onspd, epraccur)? {
            match row {
                Ok(item) => data.insert(item),
                Err(error) => rejected.push(error),
            }
        }
        Ok((data, rejected))
    }

    pub fn postcode_count(&self) -> usize {
        self.postcodes.len()
    }

    pub fn practice_count(&self) -> usize {
        self.practices.len()
    }
}

impl ReferenceData for MemoryReferenceData {
    async fn postcode_area(&self, postcode: &Postcode) -> Result<Option<PostcodeArea>, StoreError> {
        Ok(self.postcodes.get(postcode).cloned())
    }

    async fn practice_area(&self, ods_code: &str) -> Result<Option<String>, StoreError> {
        Ok(self.practices.get(&practice_code(ods_code)).cloned())
    }
}
