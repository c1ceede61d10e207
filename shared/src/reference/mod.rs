//! Reference data for generic subscriptions: which areas a postcode lies in
//! (the ONS Postcode Directory, ONSPD) and which sub-ICB location a GP
//! practice belongs to (the NHS ODS file `epraccur.csv`).
//!
//! The national files are large (the ONSPD has about 2.7 million rows), so
//! they are read as iterators of `Result<(line, record), ReferenceError>`:
//! one row in memory at a time, each bad row reported with its line number
//! and the column at fault, and the rest of the file still read.
//!
//! Code systems differ between the sources: the ONSPD names sub-ICB
//! locations by their ONS (GSS) code, `E38000225`; `epraccur.csv` names a
//! practice's commissioner by its ODS code, `15F`, and so do the NEMS
//! criteria examples (`Organization.identifier=13T`). The hub compares ODS
//! codes: the ONSPD's codes are translated when the data is loaded, with
//! ONS's lookup "Sub ICB Location ... Names and Codes in England"
//! ([`SubIcbReader`], [`SubIcbLookup`]), which pairs both codes. A postcode
//! whose code is not in the lookup (outside England, a pseudo code, a
//! lookup older than the directory) has no sub-ICB location.
//! [`ReferenceRows`] reads the three files together into the items a store
//! keeps, counting what it read.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod codes;
pub use codes::*;

// The readers of the national files and the loader: for `hub-local
// reference load`, its tests and benchmarks; never in a Lambda.
#[cfg(feature = "reference-files")]
mod csv;
#[cfg(feature = "reference-files")]
mod epraccur;
#[cfg(feature = "reference-files")]
mod loading;
#[cfg(feature = "reference-files")]
mod onspd;
#[cfg(feature = "reference-files")]
mod sub_icb;

#[cfg(feature = "reference-files")]
pub use csv::*;
#[cfg(feature = "reference-files")]
pub use epraccur::*;
#[cfg(feature = "reference-files")]
pub use loading::*;
#[cfg(feature = "reference-files")]
pub use onspd::*;
#[cfg(feature = "reference-files")]
pub use sub_icb::*;

// ---------------------------------------------------------------------------
// Postcodes

/// A UK postcode in the ONS `pcds` form: outward code, one space, inward
/// code, upper case (`LS17 7DF`). Holding one means the text had the shape of
/// a postcode; whether it exists is for the reference data to say.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Postcode(String);

/// The text is not shaped like a UK postcode. The text itself is left out:
/// a child's postcode is personal data, and errors reach logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a UK postcode (outward code, space, inward code, e.g. LS17 7DF)")]
pub struct PostcodeError;

/// The longest text worth examining: `pcd2`'s 8 characters with room for
/// stray spaces. Anything longer is refused before it is copied.
const MAX_POSTCODE_TEXT: usize = 16;

impl Postcode {
    /// Accepts any case, with the inward code separated by whitespace or not
    /// (`ls17 7df`, `LS177DF`, the ONSPD's 7- and 8-character `pcd`/`pcd2`
    /// forms); refuses whitespace anywhere else.
    pub fn parse(text: &str) -> Result<Self, PostcodeError> {
        let text = text.trim();
        if text.len() > MAX_POSTCODE_TEXT || !text.is_ascii() {
            return Err(PostcodeError);
        }
        let mut parts = text.split_ascii_whitespace();
        let (outward, inward) = match (parts.next(), parts.next(), parts.next()) {
            (Some(joined), None, None) if joined.len() >= 5 => joined.split_at(joined.len() - 3),
            (Some(outward), Some(inward), None) => (outward, inward),
            _ => return Err(PostcodeError),
        };
        let outward = outward.to_ascii_uppercase();
        let inward = inward.to_ascii_uppercase();
        if !is_outward(outward.as_bytes(), &inward) || !is_inward(inward.as_bytes()) {
            return Err(PostcodeError);
        }
        Ok(Postcode(format!("{outward} {inward}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The outward code: postcode area and district, `LS17`.
    pub fn outward(&self) -> &str {
        self.0.split_once(' ').map_or("", |(outward, _)| outward)
    }

    /// The inward code: sector and unit, `7DF`.
    pub fn inward(&self) -> &str {
        self.0.split_once(' ').map_or("", |(_, inward)| inward)
    }
}

/// An outward code: A9, A99, A9A, AA9, AA99 or AA9A (letters upper case);
/// also GIR of the one non-geographic postcode in that form, GIR 0AA.
fn is_outward(code: &[u8], inward: &str) -> bool {
    let letter = |i: usize| code.get(i).is_some_and(u8::is_ascii_uppercase);
    let digit = |i: usize| code.get(i).is_some_and(u8::is_ascii_digit);
    if code == b"GIR" {
        return inward == "0AA";
    }
    letter(0)
        && match code.len() {
            2 => digit(1),
            3 => (digit(1) && (digit(2) || letter(2))) || (letter(1) && digit(2)),
            4 => letter(1) && digit(2) && (digit(3) || letter(3)),
            _ => false,
        }
}

/// An inward code: 9AA.
fn is_inward(code: &[u8]) -> bool {
    matches!(code, [d, a, b] if d.is_ascii_digit() && a.is_ascii_uppercase() && b.is_ascii_uppercase())
}

impl fmt::Display for Postcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A full postcode and a birth date go a long way to identify a child, so
/// debug output (which may reach logs) shows the outward code only.
impl fmt::Debug for Postcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Postcode({} ***)", self.outward())
    }
}

impl FromStr for Postcode {
    type Err = PostcodeError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for Postcode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Postcode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------
// Areas

/// The ONS codes of the countries (the ONSPD `ctry` column) and what each is.
/// `COUNTRYCODE` subscriptions name one of these.
pub const COUNTRY_CODES: [(&str, &str); 6] = [
    ("E92000001", "England"),
    ("W92000004", "Wales"),
    ("S92000003", "Scotland"),
    ("N92000002", "Northern Ireland"),
    ("L93000001", "Channel Islands"),
    ("M83000003", "Isle of Man"),
];

pub fn is_country_code(code: &str) -> bool {
    COUNTRY_CODES.iter().any(|(known, _)| *known == code)
}

/// The areas a postcode lies in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PostcodeArea {
    /// Local authority district (ONSPD `oslaua`), an ONS code, e.g.
    /// `E08000035` (Leeds).
    pub local_authority: String,
    /// Sub-ICB location, formerly the CCG, as an ODS code (`15F`): the
    /// ONSPD's `sicbl` (`ccg` in older releases) translated through the
    /// sub-ICB lookup. None where the lookup has no ODS code for it (a
    /// postcode outside England, or a pseudo code).
    pub icb_sub_location: Option<String>,
    /// Country (ONSPD `ctry`), one of [`COUNTRY_CODES`].
    pub country: String,
}

/// A GP practice and the sub-ICB location that commissions it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PracticeArea {
    /// The practice's ODS code, e.g. `A83627`.
    pub practice: String,
    /// The commissioner's ODS code as `epraccur.csv` gives it, e.g. `15F`.
    pub icb_sub_location: String,
}

// ---------------------------------------------------------------------------
// The port and its in-memory adapter

/// The areas of several postcodes and practices, as one lookup answers
/// them: only the known ones are present.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReferenceAreas {
    pub postcodes: HashMap<Postcode, PostcodeArea>,
    /// Sub-ICB location (ODS code) by practice code (as [`practice_code`]
    /// gives it).
    pub practices: HashMap<String, String>,
}

impl ReferenceAreas {
    pub fn postcode(&self, postcode: &Postcode) -> Option<&PostcodeArea> {
        self.postcodes.get(postcode)
    }

    pub fn practice(&self, code: &str) -> Option<&str> {
        self.practices.get(&practice_code(code)).map(String::as_str)
    }
}
