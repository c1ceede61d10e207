//! Text decoding shared by the criteria parser, the token endpoint's form
//! body, the local stack's paths and the deployment's numeric settings.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Decodes %XX escapes; None for a malformed escape or a non-UTF-8 result.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes.get(index + 1..index + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            decoded.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// The text with every byte but RFC 3986's unreserved characters
/// percent-encoded: safe in any part of a URL.
pub fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, NOT_UNRESERVED).to_string()
}

/// Every byte but RFC 3986's unreserved characters (letters, digits and
/// `-._~`).
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The fields of an `application/x-www-form-urlencoded` body, in order;
/// None when a field is not well encoded.
pub fn form_fields(body: &str) -> Option<Vec<(String, String)>> {
    body.split('&')
        .filter(|field| !field.is_empty())
        .map(|field| {
            let (name, value) = field.split_once('=').unwrap_or((field, ""));
            let decode = |part: &str| percent_decode(&part.replace('+', " "));
            Some((decode(name)?, decode(value)?))
        })
        .collect()
}

/// A numeric setting (an environment variable the Lambda layer reads at
/// start-up): None when there is none (absent or blank), else a whole number
/// above zero. Anything else is refused, not replaced by a default: an
/// operator who set it meant something else. `unit` names what it counts
/// in the refusal (`of days `, or empty).
pub fn whole_number_above_zero(setting: Option<&str>, unit: &str) -> Result<Option<u32>, String> {
    match setting.map(str::trim).filter(|setting| !setting.is_empty()) {
        None => Ok(None),
        Some(setting) => setting
            .parse()
            .ok()
            .filter(|&number: &u32| number > 0)
            .map(Some)
            .ok_or_else(|| format!("'{setting}' is not a whole number {unit}above zero")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_refuses_malformed_ones() {
        assert_eq!(percent_decode("a%7Cb").as_deref(), Some("a|b"));
        assert_eq!(percent_decode("a%7cb").as_deref(), Some("a|b"));
        for bad in ["%", "%7", "%zz", "%+1", "%ff"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn reads_form_fields() {
        let fields =
            form_fields("grant_type=client_credentials&client_assertion=a.b%2Bc.d&x=one+two")
                .unwrap();
        assert_eq!(
            fields,
            vec![
                ("grant_type".into(), "client_credentials".into()),
                ("client_assertion".into(), "a.b+c.d".into()),
                ("x".into(), "one two".into()),
            ]
        );
        assert_eq!(form_fields("a=%zz"), None);
        assert_eq!(form_fields("").unwrap(), vec![]);
    }
}
