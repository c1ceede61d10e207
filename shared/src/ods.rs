//! ODS organisation codes: how the hub names the organisations of clients,
//! subscribers and practices.

use serde::{Deserialize, Serialize};

/// An ODS organisation code: 3 to 10 upper-case letters and digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OdsCode(String);

impl OdsCode {
    pub fn parse(text: &str) -> Option<Self> {
        let valid = (3..=10).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        valid.then(|| OdsCode(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OdsCode {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        OdsCode::parse(&text).ok_or_else(|| format!("'{text}' is not an ODS code"))
    }
}

impl From<OdsCode> for String {
    fn from(code: OdsCode) -> Self {
        code.0
    }
}
