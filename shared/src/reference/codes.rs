//! What the stores and the Lambdas use of reference data: the code checks,
//! the store's keys and the items it keeps. The readers of the national
//! files, which only the loader needs, are behind the feature
//! `reference-files`.

use super::*;

/// The key prefix of postcode items: `POSTCODE#LS17 7DF`.
pub const POSTCODE_KEY_PREFIX: &str = "POSTCODE#";
/// The key prefix of practice items: `PRACTICE#A83627`.
pub const PRACTICE_KEY_PREFIX: &str = "PRACTICE#";

/// The store key of a postcode: its `pcds` form, one space, upper case.
pub fn postcode_key(postcode: &Postcode) -> String {
    format!("{POSTCODE_KEY_PREFIX}{}", postcode.as_str())
}

/// A practice code as it is stored and compared: trimmed, upper case.
pub fn practice_code(code: &str) -> String {
    code.trim().to_ascii_uppercase()
}

/// The store key of a practice.
pub fn practice_key(code: &str) -> String {
    format!("{PRACTICE_KEY_PREFIX}{}", practice_code(code))
}

/// What a reference store keeps: one item per postcode and per practice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceItem {
    Postcode {
        postcode: Postcode,
        area: PostcodeArea,
        terminated: bool,
    },
    Practice(PracticeArea),
}

impl ReferenceItem {
    pub fn key(&self) -> String {
        match self {
            ReferenceItem::Postcode { postcode, .. } => postcode_key(postcode),
            ReferenceItem::Practice(practice) => practice_key(&practice.practice),
        }
    }
}

/// A GSS (ONS) area code: one letter and eight digits, `E08000035`. Pseudo
/// codes such as `E99999999` ("no such area here") have the same shape.
pub fn is_gss_code(code: &str) -> bool {
    let bytes = code.as_bytes();
    bytes.len() == 9 && bytes[0].is_ascii_uppercase() && bytes[1..].iter().all(u8::is_ascii_digit)
}

/// An ODS organisation code: 3 to 10 letters and digits (`15F`, `X2C4Y`,
/// `A83627`). Given back in upper case.
pub fn ods_code(code: &str) -> Option<String> {
    let code = code.trim();
    ((3..=10).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| code.to_ascii_uppercase())
}
