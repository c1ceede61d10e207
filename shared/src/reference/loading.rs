//! Loading: the three files read together into the items a store keeps.

use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;

use super::*;

// ---------------------------------------------------------------------------
// Loading: the three files into the items a store keeps

/// The files of a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReferenceFile {
    SubIcbLookup,
    Onspd,
    Epraccur,
}

impl fmt::Display for ReferenceFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReferenceFile::SubIcbLookup => "sub-ICB lookup",
            ReferenceFile::Onspd => "ONSPD",
            ReferenceFile::Epraccur => "epraccur",
        })
    }
}

/// A row refused, and the file it is in: `ONSPD line 5: ctry: ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} {error}")]
pub struct Rejected {
    pub file: ReferenceFile,
    pub error: ReferenceError,
}

impl Rejected {
    fn new(file: ReferenceFile) -> impl Fn(ReferenceError) -> Rejected {
        move |error| Rejected { file, error }
    }
}

/// What a load read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadCounts {
    /// Sub-ICB locations in the lookup.
    pub sub_icb_locations: usize,
    /// Postcode items, live and terminated.
    pub postcodes: usize,
    pub terminated: usize,
    /// Postcodes left without a sub-ICB location: outside England, pseudo
    /// codes, and the codes of `unknown_sub_icb_codes`.
    pub without_sub_icb: usize,
    /// England sub-ICB codes (`E38…`) the lookup lacks, with the number of
    /// postcodes naming each: the lookup and the directory are of
    /// different releases.
    pub unknown_sub_icb_codes: BTreeMap<String, usize>,
    /// Practice items.
    pub practices: usize,
    /// Practices whose commissioner is none of the lookup's ODS codes:
    /// outside England, or a lookup of another year.
    pub practices_outside_lookup: usize,
    /// Rows refused, by file.
    pub rejected: BTreeMap<ReferenceFile, usize>,
}

impl LoadCounts {
    pub fn rejected_total(&self) -> usize {
        self.rejected.values().sum()
    }

    /// Postcode and practice items.
    pub fn items(&self) -> usize {
        self.postcodes + self.practices
    }
}

/// The sub-ICB lookup, the ONSPD and `epraccur.csv` read together as the
/// items to store, postcodes first, each refused row an `Err` (the
/// lookup's first), the rest still read. The lookup is read whole when
/// opening (about a hundred rows); the two large files one row at a time.
pub struct ReferenceRows<A, B> {
    lookup: SubIcbLookup,
    lookup_errors: std::vec::IntoIter<ReferenceError>,
    onspd: Option<OnspdReader<A>>,
    epraccur: EpraccurReader<B>,
    counts: LoadCounts,
}

impl<A: BufRead, B: BufRead> ReferenceRows<A, B> {
    /// Refuses what would make the whole load wrong rather than a few rows:
    /// a header without the columns needed, or a lookup without one good
    /// row (every postcode would lose its sub-ICB location).
    pub fn open(sub_icb: impl BufRead, onspd: A, epraccur: B) -> Result<Self, Rejected> {
        let (lookup, lookup_errors) =
            SubIcbLookup::read(sub_icb).map_err(Rejected::new(ReferenceFile::SubIcbLookup))?;
        if lookup.is_empty() {
            return Err(Rejected {
                file: ReferenceFile::SubIcbLookup,
                error: ReferenceError::new(
                    1,
                    format!(
                        "the lookup has no usable row ({} refused)",
                        lookup_errors.len()
                    ),
                ),
            });
        }
        let onspd = OnspdReader::new(onspd).map_err(Rejected::new(ReferenceFile::Onspd))?;
        let counts = LoadCounts {
            sub_icb_locations: lookup.len(),
            ..LoadCounts::default()
        };
        Ok(ReferenceRows {
            lookup,
            lookup_errors: lookup_errors.into_iter(),
            onspd: Some(onspd),
            epraccur: EpraccurReader::new(epraccur),
            counts,
        })
    }

    /// The counts so far; final once the iterator is exhausted.
    pub fn counts(&self) -> &LoadCounts {
        &self.counts
    }

    pub fn lookup(&self) -> &SubIcbLookup {
        &self.lookup
    }

    fn reject(&mut self, file: ReferenceFile, error: ReferenceError) -> Rejected {
        *self.counts.rejected.entry(file).or_default() += 1;
        Rejected { file, error }
    }

    fn postcode(&mut self, record: PostcodeRecord) -> ReferenceItem {
        let area = record.area(&self.lookup);
        let terminated = !record.is_live();
        let counts = &mut self.counts;
        counts.postcodes += 1;
        if terminated {
            counts.terminated += 1;
        }
        if area.icb_sub_location.is_none() {
            counts.without_sub_icb += 1;
            if let Some(code) = record
                .ons_icb_sub_location
                .filter(|code| code.starts_with("E38"))
            {
                *counts.unknown_sub_icb_codes.entry(code).or_default() += 1;
            }
        }
        ReferenceItem::Postcode {
            postcode: record.postcode,
            area,
            terminated,
        }
    }

    fn practice(&mut self, record: PracticeRecord) -> ReferenceItem {
        self.counts.practices += 1;
        if !self.lookup.has_ods_code(&record.area.icb_sub_location) {
            self.counts.practices_outside_lookup += 1;
        }
        ReferenceItem::Practice(record.area)
    }
}

impl<A: BufRead, B: BufRead> Iterator for ReferenceRows<A, B> {
    type Item = Result<ReferenceItem, Rejected>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(error) = self.lookup_errors.next() {
            return Some(Err(self.reject(ReferenceFile::SubIcbLookup, error)));
        }
        if let Some(onspd) = &mut self.onspd {
            match onspd.next() {
                Some(Ok((_, record))) => return Some(Ok(self.postcode(record))),
                Some(Err(error)) => return Some(Err(self.reject(ReferenceFile::Onspd, error))),
                None => self.onspd = None,
            }
        }
        match self.epraccur.next()? {
            Ok((_, record)) => Some(Ok(self.practice(record))),
            Err(error) => Some(Err(self.reject(ReferenceFile::Epraccur, error))),
        }
    }
}
