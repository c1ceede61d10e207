//! The NHS number: ten digits whose last is a Modulus 11 check digit.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A valid NHS number. It cannot be constructed from a value that fails the
/// Modulus 11 check, so holding one means the check has passed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NhsNumber([u8; 10]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    #[error("an NHS number has exactly 10 digits")]
    NotTenDigits,
    #[error("the NHS number's check digit is wrong (Modulus 11)")]
    CheckDigit,
}

impl NhsNumber {
    pub fn parse(text: &str) -> Result<Self, NhsNumberError> {
        let bytes = text.as_bytes();
        if bytes.len() != 10 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(NhsNumberError::NotTenDigits);
        }
        let mut digits = [0u8; 10];
        for (digit, byte) in digits.iter_mut().zip(bytes) {
            *digit = byte - b'0';
        }
        let weighted: u32 = digits[..9]
            .iter()
            .zip((2..=10u32).rev())
            .map(|(&digit, weight)| u32::from(digit) * weight)
            .sum();
        let check = match 11 - weighted % 11 {
            11 => 0,
            10 => return Err(NhsNumberError::CheckDigit),
            check => check,
        };
        if u32::from(digits[9]) != check {
            return Err(NhsNumberError::CheckDigit);
        }
        Ok(Self(digits))
    }

    pub fn as_string(&self) -> String {
        self.0.iter().map(|d| char::from(b'0' + d)).collect()
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for digit in self.0 {
            write!(f, "{digit}")?;
        }
        Ok(())
    }
}

/// Patient identifiers stay out of debug output that may reach logs.
impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NhsNumber(***)")
    }
}

impl FromStr for NhsNumber {
    type Err = NhsNumberError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for NhsNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NhsNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_valid_test_numbers() {
        for valid in ["9912003888", "9449305552", "9434765919", "9000000009"] {
            let number = NhsNumber::parse(valid).expect(valid);
            assert_eq!(number.to_string(), valid);
            assert_eq!(number.as_string(), valid);
        }
    }

    #[test]
    fn rejects_a_wrong_check_digit() {
        // The mother's number in the NEMS birth notification example.
        assert_eq!(
            NhsNumber::parse("1112223330"),
            Err(NhsNumberError::CheckDigit)
        );
        assert_eq!(
            NhsNumber::parse("9912003889"),
            Err(NhsNumberError::CheckDigit)
        );
    }

    #[test]
    fn rejects_numbers_whose_check_would_be_ten() {
        // 123456789x: weighted sum 210 -> 11 - 1 = 10, never valid.
        for last in 0..=9 {
            assert!(NhsNumber::parse(&format!("123456789{last}")).is_err());
        }
    }

    #[test]
    fn check_of_eleven_means_zero() {
        // 000000000x: sum 0 -> 11 -> check digit 0.
        assert!(NhsNumber::parse("0000000000").is_ok());
        assert!(NhsNumber::parse("0000000001").is_err());
    }

    #[test]
    fn rejects_wrong_shapes() {
        for bad in [
            "",
            "991200388",
            "99120038888",
            "991200388a",
            " 9912003888",
            "９912003888",
        ] {
            assert_eq!(
                NhsNumber::parse(bad),
                Err(NhsNumberError::NotTenDigits),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_output_hides_the_number() {
        let number = NhsNumber::parse("9912003888").unwrap();
        assert!(!format!("{number:?}").contains("9912003888"));
    }
}
