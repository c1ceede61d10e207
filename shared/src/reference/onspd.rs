//! The ONS Postcode Directory (ONSPD) reader.

use std::io::BufRead;

use super::*;

// ---------------------------------------------------------------------------
// ONS Postcode Directory

/// One ONSPD row, with its codes as the directory gives them. Terminated
/// postcodes are kept: an old address can still carry one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostcodeRecord {
    pub postcode: Postcode,
    /// Local authority district (`oslaua`), an ONS code.
    pub local_authority: String,
    /// The sub-ICB location as the ONSPD names it (`sicbl`, `ccg`): an ONS
    /// code, `E38000225` in England, other systems' codes elsewhere; None
    /// when the field is empty. [`PostcodeRecord::area`] translates it.
    pub ons_icb_sub_location: Option<String>,
    /// Country (`ctry`), one of [`COUNTRY_CODES`].
    pub country: String,
    /// When Royal Mail terminated the postcode (`doterm`); None while live.
    pub terminated: Option<YearMonth>,
}

impl PostcodeRecord {
    pub fn is_live(&self) -> bool {
        self.terminated.is_none()
    }

    /// The postcode's areas, with its sub-ICB location translated to the
    /// ODS code the lookup pairs it with (None when the lookup has none).
    pub fn area(&self, lookup: &SubIcbLookup) -> PostcodeArea {
        PostcodeArea {
            local_authority: self.local_authority.clone(),
            icb_sub_location: self
                .ons_icb_sub_location
                .as_deref()
                .and_then(|code| lookup.ods_code(code))
                .map(str::to_owned),
            country: self.country.clone(),
        }
    }
}

/// A month as the ONSPD dates are given: `YYYYMM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    pub year: u16,
    pub month: u8,
}

impl YearMonth {
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year = text[..4].parse().ok()?;
        let month = text[4..].parse().ok()?;
        (1..=12)
            .contains(&month)
            .then_some(YearMonth { year, month })
    }
}

/// The ONSPD columns the hub reads, found by header name (case-insensitive)
/// since their positions change between releases. For each, the names in
/// order of preference; then, for the area columns, the prefix of the
/// year-stamped form (`lad25cd`, `sicbl24cd`, `ctry25cd`) that later releases
/// may use — an assumption not checked here against a published file, and
/// taken only when exactly one column has that form.
const ONSPD_POSTCODE: &[&str] = &["pcds"];
const ONSPD_TERMINATED: &[&str] = &["doterm"];
const ONSPD_LOCAL_AUTHORITY: (&[&str], &[&str]) = (&["oslaua"], &["lad"]);
/// `sicbl` in current releases, `ccg` before the 2022 reorganisation.
const ONSPD_ICB_SUB_LOCATION: (&[&str], &[&str]) = (&["sicbl", "ccg"], &["sicbl", "ccg"]);
const ONSPD_COUNTRY: (&[&str], &[&str]) = (&["ctry"], &["ctry"]);

/// Where the columns the hub reads are, and under which names they were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnspdColumns {
    pub width: usize,
    pub postcode: (usize, String),
    pub terminated: (usize, String),
    pub local_authority: (usize, String),
    pub icb_sub_location: (usize, String),
    pub country: (usize, String),
}

impl OnspdColumns {
    fn from_header(header: &CsvRecord) -> Result<Self, ReferenceError> {
        let names: Vec<String> = header
            .iter()
            .map(|name| name.trim().to_ascii_lowercase())
            .collect();
        let find = |exact: &[&str], stamped: &[&str]| -> Result<(usize, String), ReferenceError> {
            for wanted in exact {
                if let Some(index) = names.iter().position(|name| name == wanted) {
                    return Ok((index, names[index].clone()));
                }
            }
            let candidates: Vec<usize> = (0..names.len())
                .filter(|&index| {
                    stamped
                        .iter()
                        .any(|prefix| is_stamped(&names[index], prefix))
                })
                .collect();
            match candidates.as_slice() {
                [index] => Ok((*index, names[*index].clone())),
                [] => Err(ReferenceError::new(
                    1,
                    format!("the header has no column {}", exact.join(" or ")),
                )),
                _ => Err(ReferenceError::new(
                    1,
                    format!(
                        "the header has no column {} and more than one year-stamped one",
                        exact.join(" or ")
                    ),
                )),
            }
        };
        Ok(OnspdColumns {
            width: names.len(),
            postcode: find(ONSPD_POSTCODE, &[])?,
            terminated: find(ONSPD_TERMINATED, &[])?,
            local_authority: find(ONSPD_LOCAL_AUTHORITY.0, ONSPD_LOCAL_AUTHORITY.1)?,
            icb_sub_location: find(ONSPD_ICB_SUB_LOCATION.0, ONSPD_ICB_SUB_LOCATION.1)?,
            country: find(ONSPD_COUNTRY.0, ONSPD_COUNTRY.1)?,
        })
    }
}

/// `<prefix><two digits>cd`, e.g. `lad25cd`.
fn is_stamped(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix("cd"))
        .is_some_and(|year| year.len() == 2 && year.bytes().all(|b| b.is_ascii_digit()))
}

/// A column's trimmed value in a record, and the column's header name.
pub(super) fn column_value<'a>(
    record: &'a CsvRecord,
    (index, name): &'a (usize, String),
) -> (&'a str, &'a str) {
    (record.get(*index).unwrap_or_default().trim(), name)
}

/// The header row of a CSV file that starts with one (`what` names the
/// file in the refusal of an empty one), and its line number.
pub(super) fn read_header<R: BufRead>(
    lines: &mut Lines<R>,
    what: &str,
) -> Result<(usize, CsvRecord), ReferenceError> {
    let (line, header_line) = match lines.next_line() {
        Some(Ok(first)) => first,
        Some(Err(error)) => return Err(error),
        None => {
            return Err(ReferenceError::new(
                1,
                format!("the file is empty: {what} starts with its header row"),
            ));
        }
    };
    let mut header = CsvRecord::default();
    header
        .parse_line(&header_line)
        .map_err(|problem| ReferenceError::new(line, format!("header: {problem}")))?;
    Ok((line, header))
}

/// Reads an ONSPD CSV file row by row.
pub struct OnspdReader<R> {
    lines: Lines<R>,
    columns: OnspdColumns,
    record: CsvRecord,
}

impl<R: BufRead> OnspdReader<R> {
    /// Reads the header row; refuses a file without the columns the hub needs.
    pub fn new(reader: R) -> Result<Self, ReferenceError> {
        let mut lines = Lines::new(reader);
        let (line, header) = read_header(&mut lines, "an ONSPD file")?;
        let columns = OnspdColumns::from_header(&header).map_err(|mut error| {
            error.line = line;
            error
        })?;
        Ok(OnspdReader {
            lines,
            columns,
            record: header,
        })
    }

    pub fn columns(&self) -> &OnspdColumns {
        &self.columns
    }

    fn read_row(&mut self, line: usize, text: &str) -> Result<PostcodeRecord, ReferenceError> {
        self.record
            .parse_line(text)
            .map_err(|problem| ReferenceError::new(line, problem))?;
        if self.record.len() != self.columns.width {
            return Err(ReferenceError::new(
                line,
                format!(
                    "the row has {} fields; the header has {}",
                    self.record.len(),
                    self.columns.width
                ),
            ));
        }
        let record = &self.record;
        let columns = &self.columns;

        let (value, name) = column_value(record, &columns.postcode);
        let postcode = Postcode::parse(value).map_err(|error| {
            ReferenceError::column(line, name, format!("{} is {error}", shown(value)))
        })?;

        let (value, name) = column_value(record, &columns.terminated);
        let terminated = match value {
            "" => None,
            _ => Some(YearMonth::parse(value).ok_or_else(|| {
                ReferenceError::column(
                    line,
                    name,
                    format!("{} is not a month YYYYMM", shown(value)),
                )
            })?),
        };

        let area_code = |column: &(usize, String)| {
            let (value, name) = column_value(record, column);
            if is_gss_code(value) {
                Ok(value.to_owned())
            } else {
                Err(ReferenceError::column(
                    line,
                    name,
                    format!(
                        "{} is not an ONS area code (a letter and 8 digits)",
                        shown(value)
                    ),
                ))
            }
        };
        let local_authority = area_code(&columns.local_authority)?;

        // Not held to the GSS shape: only England's E38 codes are looked up,
        // and the column holds other bodies' codes elsewhere in the UK (which
        // need not be GSS-shaped), so any short code is kept as given; an
        // empty field means none.
        let (value, name) = column_value(record, &columns.icb_sub_location);
        let ons_icb_sub_location = match value {
            "" => None,
            code if code.len() <= 10 && code.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                Some(code.to_ascii_uppercase())
            }
            _ => {
                return Err(ReferenceError::column(
                    line,
                    name,
                    format!("{} is not an area code (letters and digits)", shown(value)),
                ));
            }
        };

        let (value, name) = column_value(record, &columns.country);
        if !is_country_code(value) {
            return Err(ReferenceError::column(
                line,
                name,
                format!("{} is not the ONS code of a UK country", shown(value)),
            ));
        }
        Ok(PostcodeRecord {
            postcode,
            local_authority,
            ons_icb_sub_location,
            country: value.to_owned(),
            terminated,
        })
    }
}

impl<R: BufRead> Iterator for OnspdReader<R> {
    type Item = Result<(usize, PostcodeRecord), ReferenceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (line, text) = match self.lines.next_line()? {
            Ok(next) => next,
            Err(error) => return Some(Err(error)),
        };
        Some(self.read_row(line, &text).map(|record| (line, record)))
    }
}
