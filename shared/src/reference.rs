//! Reference data for generic subscriptions: which areas a postcode lies in
//! (the ONS Postcode Directory, ONSPD) and which sub-ICB location a GP
//! practice belongs to (the NHS ODS file `epraccur.csv`).
//!
//! The national files are large (the ONSPD has about 2.7 million rows), so
//! they are read as iterators of `Result<(line, record), ReferenceError>`:
//! one row in memory at a time, each bad row reported with its line number
//! and the column at fault, and the rest of the file still read.
//!
//! Code systems differ between the two sources: the ONSPD names sub-ICB
//! locations by their ONS (GSS) code, `E38000225`; `epraccur.csv` names a
//! practice's commissioner by its ODS code, `15F`. Both are kept as the
//! source states them; see [`crate::generic`] for what that means for
//! matching.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io::BufRead;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ports::StoreError;

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

/// The areas a postcode lies in, as ONS codes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PostcodeArea {
    /// Local authority district (ONSPD `oslaua`), e.g. `E08000035` (Leeds).
    pub local_authority: String,
    /// Sub-ICB location, formerly the CCG (ONSPD `sicbl`, `ccg` in older
    /// releases), e.g. `E38000225`.
    pub icb_sub_location: String,
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
// Errors

/// A row of a reference file that could not be read. The problem starts with
/// the column at fault when there is one (`ctry: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ReferenceError {
    /// 1-based line of the file (the header, when there is one, is line 1).
    pub line: usize,
    pub problem: String,
}

impl ReferenceError {
    fn new(line: usize, problem: impl Into<String>) -> Self {
        ReferenceError {
            line,
            problem: problem.into(),
        }
    }

    fn column(line: usize, column: &str, problem: impl fmt::Display) -> Self {
        Self::new(line, format!("{column}: {problem}"))
    }
}

/// A value quoted in an error: reference values are public, but a corrupt
/// row can hold anything, so only its start is shown.
fn shown(value: &str) -> String {
    const LIMIT: usize = 40;
    match value.char_indices().nth(LIMIT) {
        Some((end, _)) => format!("'{}...'", &value[..end]),
        None => format!("'{value}'"),
    }
}

/// Splits a reader's results into the records and the errors, for files
/// small enough to hold (the samples, tests, a practice file).
pub fn collect<T>(
    rows: impl Iterator<Item = Result<(usize, T), ReferenceError>>,
) -> (Vec<T>, Vec<ReferenceError>) {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for row in rows {
        match row {
            Ok((_, record)) => records.push(record),
            Err(error) => errors.push(error),
        }
    }
    (records, errors)
}

// ---------------------------------------------------------------------------
// CSV

/// The fields of one CSV record, kept in one buffer (not a String per
/// field) that is reused from row to row.
#[derive(Debug, Default)]
pub struct CsvRecord {
    text: String,
    bounds: Vec<Range<usize>>,
}

impl CsvRecord {
    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
    }

    /// The field at a 0-based index, quotes removed.
    pub fn get(&self, index: usize) -> Option<&str> {
        self.bounds
            .get(index)
            .and_then(|range| self.text.get(range.clone()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).filter_map(|index| self.get(index))
    }

    /// Splits one line into fields (RFC 4180: a field may be quoted, and a
    /// quoted field may hold commas and doubled quotes). A record is one
    /// line: a quote still open at the end of the line is an error rather
    /// than a licence to read on, so that one stray quote costs one row, not
    /// the rest of a national file held in memory.
    pub fn parse_line(&mut self, line: &str) -> Result<(), String> {
        self.text.clear();
        self.bounds.clear();
        let bytes = line.as_bytes();
        let mut at = 0;
        loop {
            let start = self.text.len();
            if bytes.get(at) == Some(&b'"') {
                at += 1;
                loop {
                    let Some(offset) = line[at..].find('"') else {
                        return Err(format!(
                            "field {} opens a quote that the line does not close",
                            self.bounds.len() + 1
                        ));
                    };
                    self.text.push_str(&line[at..at + offset]);
                    at += offset + 1;
                    if bytes.get(at) == Some(&b'"') {
                        self.text.push('"');
                        at += 1;
                    } else {
                        break;
                    }
                }
                self.bounds.push(start..self.text.len());
                match bytes.get(at) {
                    None => return Ok(()),
                    Some(b',') => at += 1,
                    Some(_) => {
                        return Err(format!(
                            "field {} has text after its closing quote",
                            self.bounds.len()
                        ));
                    }
                }
            } else {
                let end = line[at..]
                    .find(',')
                    .map_or(line.len(), |offset| at + offset);
                let field = &line[at..end];
                if field.contains('"') {
                    return Err(format!(
                        "field {} has a quote but is not quoted",
                        self.bounds.len() + 1
                    ));
                }
                self.text.push_str(field);
                self.bounds.push(start..self.text.len());
                if end == line.len() {
                    return Ok(());
                }
                at = end + 1;
            }
        }
    }
}

/// The lines of a CSV source, numbered from 1, without line endings and
/// without a leading byte-order mark. Blank lines are skipped. A read error
/// is reported once and ends the lines.
struct Lines<R> {
    reader: R,
    line: usize,
    buffer: Vec<u8>,
    finished: bool,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R) -> Self {
        Lines {
            reader,
            line: 0,
            buffer: Vec::new(),
            finished: false,
        }
    }

    /// The next non-blank line and its number. Bytes that are not UTF-8
    /// (a Latin-1 practice name, say) are replaced rather than refused: the
    /// codes the hub reads are ASCII and are checked on their own.
    fn next_line(&mut self) -> Option<Result<(usize, String), ReferenceError>> {
        while !self.finished {
            self.buffer.clear();
            match self.reader.read_until(b'\n', &mut self.buffer) {
                Ok(0) => self.finished = true,
                Ok(_) => {
                    self.line += 1;
                    let mut text = String::from_utf8_lossy(&self.buffer).into_owned();
                    if self.line == 1 && text.starts_with('\u{feff}') {
                        text.replace_range(..'\u{feff}'.len_utf8(), "");
                    }
                    let trimmed_len = text.trim_end_matches(['\r', '\n']).len();
                    text.truncate(trimmed_len);
                    if !text.trim().is_empty() {
                        return Some(Ok((self.line, text)));
                    }
                }
                Err(error) => {
                    self.finished = true;
                    return Some(Err(ReferenceError::new(
                        self.line + 1,
                        format!("the file could not be read: {error}"),
                    )));
                }
            }
        }
        None
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

// ---------------------------------------------------------------------------
// ONS Postcode Directory

/// Terminated postcodes are kept: an old address can still carry one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostcodeRecord {
    pub postcode: Postcode,
    pub area: PostcodeArea,
    /// When Royal Mail terminated the postcode (`doterm`); None while live.
    pub terminated: Option<YearMonth>,
}

impl PostcodeRecord {
    pub fn is_live(&self) -> bool {
        self.terminated.is_none()
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
fn column_value<'a>(
    record: &'a CsvRecord,
    (index, name): &'a (usize, String),
) -> (&'a str, &'a str) {
    (record.get(*index).unwrap_or_default().trim(), name)
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
        let (line, header_line) = match lines.next_line() {
            Some(Ok(first)) => first,
            Some(Err(error)) => return Err(error),
            None => {
                return Err(ReferenceError::new(
                    1,
                    "the file is empty: an ONSPD file starts with its header row",
                ));
            }
        };
        let mut header = CsvRecord::default();
        header
            .parse_line(&header_line)
            .map_err(|problem| ReferenceError::new(line, format!("header: {problem}")))?;
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
        let icb_sub_location = area_code(&columns.icb_sub_location)?;

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
            area: PostcodeArea {
                local_authority,
                icb_sub_location,
                country: value.to_owned(),
            },
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

// ---------------------------------------------------------------------------
// ODS GP practices (epraccur.csv)

/// `epraccur.csv` has no header; its layout is fixed by the ODS data
/// specification for GP practices: 27 columns, of which the hub reads these
/// (1-based, as the specification numbers them). A row of any other width is
/// refused, since a changed layout could move the commissioner column and
/// put practices in the wrong area without a single error.
pub const EPRACCUR_COLUMNS: usize = 27;
/// Column 1: the practice's ODS code.
pub const EPRACCUR_ORGANISATION_CODE: usize = 1;
/// Column 2: the practice's name.
pub const EPRACCUR_NAME: usize = 2;
/// Column 13: status code, A (active), C (closed), D (dormant), P (proposed).
pub const EPRACCUR_STATUS_CODE: usize = 13;
/// Column 15: "Commissioner", the ODS code of the sub-ICB location (formerly
/// the CCG) the practice belongs to.
pub const EPRACCUR_COMMISSIONER: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PracticeStatus {
    Active,
    Closed,
    Dormant,
    Proposed,
}

impl PracticeStatus {
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "A" => Some(PracticeStatus::Active),
            "C" => Some(PracticeStatus::Closed),
            "D" => Some(PracticeStatus::Dormant),
            "P" => Some(PracticeStatus::Proposed),
            _ => None,
        }
    }
}

/// Closed practices are kept: PDS can still name one as a child's GP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PracticeRecord {
    pub area: PracticeArea,
    pub name: String,
    pub status: PracticeStatus,
}

/// Reads `epraccur.csv` row by row.
pub struct EpraccurReader<R> {
    lines: Lines<R>,
    record: CsvRecord,
}

impl<R: BufRead> EpraccurReader<R> {
    pub fn new(reader: R) -> Self {
        EpraccurReader {
            lines: Lines::new(reader),
            record: CsvRecord::default(),
        }
    }

    fn read_row(&mut self, line: usize, text: &str) -> Result<PracticeRecord, ReferenceError> {
        self.record
            .parse_line(text)
            .map_err(|problem| ReferenceError::new(line, problem))?;
        if self.record.len() != EPRACCUR_COLUMNS {
            return Err(ReferenceError::new(
                line,
                format!(
                    "the row has {} fields; epraccur.csv has {EPRACCUR_COLUMNS}",
                    self.record.len()
                ),
            ));
        }
        let field = |column: usize| self.record.get(column - 1).unwrap_or_default().trim();
        let code = |column: usize, name: &str| {
            let value = field(column);
            ods_code(value).ok_or_else(|| {
                ReferenceError::column(
                    line,
                    &format!("column {column} ({name})"),
                    format!("{} is not an ODS code", shown(value)),
                )
            })
        };
        let practice = code(EPRACCUR_ORGANISATION_CODE, "organisation code")?;
        let icb_sub_location = code(EPRACCUR_COMMISSIONER, "commissioner")?;
        let status_value = field(EPRACCUR_STATUS_CODE);
        let status = PracticeStatus::from_code(status_value).ok_or_else(|| {
            ReferenceError::column(
                line,
                &format!("column {EPRACCUR_STATUS_CODE} (status code)"),
                format!("{} is not A, C, D or P", shown(status_value)),
            )
        })?;
        Ok(PracticeRecord {
            area: PracticeArea {
                practice,
                icb_sub_location,
            },
            name: field(EPRACCUR_NAME).to_owned(),
            status,
        })
    }
}

impl<R: BufRead> Iterator for EpraccurReader<R> {
    type Item = Result<(usize, PracticeRecord), ReferenceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (line, text) = match self.lines.next_line()? {
            Ok(next) => next,
            Err(error) => return Some(Err(error)),
        };
        Some(self.read_row(line, &text).map(|record| (line, record)))
    }
}

// ---------------------------------------------------------------------------
// The port and its in-memory adapter

/// Looks up reference data. A failed lookup is an error, not `None`: an
/// unreachable table must fail (and retry) a dispatch, not pass for "unknown
/// postcode" and quietly deliver to no area subscriber.
pub trait ReferenceData: Send + Sync {
    /// The areas of a postcode, live or terminated; None if it is unknown.
    fn postcode_area(
        &self,
        postcode: &Postcode,
    ) -> impl Future<Output = Result<Option<PostcodeArea>, StoreError>> + Send;

    /// The sub-ICB location (ODS code) of a practice; None if it is unknown.
    fn practice_area(
        &self,
        ods_code: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
}

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
        self.practices.insert(
            practice.practice.to_ascii_uppercase(),
            practice.icb_sub_location,
        );
    }

    /// Loads an ONSPD file and an `epraccur.csv` file, keeping every good
    /// row; the errors are the bad rows, ONSPD's first. Only a file that
    /// cannot be read at all (no usable ONSPD header) is an `Err`.
    pub fn load(
        onspd: impl BufRead,
        epraccur: impl BufRead,
    ) -> Result<(Self, Vec<ReferenceError>), ReferenceError> {
        let mut data = MemoryReferenceData::default();
        let mut errors = Vec::new();
        for row in OnspdReader::new(onspd)? {
            match row {
                Ok((_, record)) => data.insert_postcode(record.postcode, record.area),
                Err(error) => errors.push(error),
            }
        }
        for row in EpraccurReader::new(epraccur) {
            match row {
                Ok((_, record)) => data.insert_practice(record.area),
                Err(error) => errors.push(error),
            }
        }
        Ok((data, errors))
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
        Ok(self
            .practices
            .get(&ods_code.trim().to_ascii_uppercase())
            .cloned())
    }
}
