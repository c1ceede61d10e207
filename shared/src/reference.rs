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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::BufRead;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
fn column_value<'a>(
    record: &'a CsvRecord,
    (index, name): &'a (usize, String),
) -> (&'a str, &'a str) {
    (record.get(*index).unwrap_or_default().trim(), name)
}

/// The header row of a CSV file that starts with one (`what` names the
/// file in the refusal of an empty one), and its line number.
fn read_header<R: BufRead>(
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
// ONS sub-ICB location lookup

/// One row of ONS's "Sub ICB Location ... Names and Codes in England": a
/// sub-ICB location (a CCG in older files) under both its codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubIcbRecord {
    /// The ONS code, `E38000225`.
    pub ons_code: String,
    /// The ODS code, `15F`, upper case.
    pub ods_code: String,
    /// The name; empty when the file has no name column.
    pub name: String,
}

/// Where the lookup's columns are, and under which names they were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubIcbColumns {
    pub width: usize,
    /// `…CD`: the ONS code.
    pub ons_code: (usize, String),
    /// `…CDH`: the ODS code.
    pub ods_code: (usize, String),
    /// `…NM`, when present.
    pub name: Option<(usize, String)>,
}

/// The stems of sub-ICB location columns (and of the CCGs before them):
/// `SICBL22CD`, `CCG21CD`, `LOC22CD`. Consulted only when a file pairs
/// codes of more than one kind of area, as the lookups to ICBs and regions
/// do (`SICBL22CD` beside `ICB22CD` and `NHSER22CD`).
const SUB_ICB_STEMS: [&str; 3] = ["sicbl", "ccg", "loc"];

impl SubIcbColumns {
    /// The columns are found by suffix, not by name, since ONS stamps the
    /// year into every name (`SICBL22CD`, `SICBL23CD`, `CCG21CD`): the ONS
    /// code is `<stem>CD` and the ODS code `<stem>CDH` of the same stem.
    fn from_header(header: &CsvRecord, line: usize) -> Result<Self, ReferenceError> {
        let names: Vec<String> = header
            .iter()
            .map(|name| name.trim().to_ascii_lowercase())
            .collect();
        let position = |wanted: &str| names.iter().position(|name| name == wanted);
        let pairs: Vec<&str> = names
            .iter()
            .filter_map(|name| name.strip_suffix("cdh"))
            .filter(|stem| !stem.is_empty() && position(&format!("{stem}cd")).is_some())
            .collect();
        let stem = match pairs.as_slice() {
            [stem] => *stem,
            [] => {
                return Err(ReferenceError::new(
                    line,
                    "the header has no pair of columns <name>CD (ONS code) and <name>CDH \
                     (ODS code), such as SICBL22CD and SICBL22CDH",
                ));
            }
            several => {
                let named: Vec<&str> = several
                    .iter()
                    .copied()
                    .filter(|stem| SUB_ICB_STEMS.iter().any(|prefix| stem.starts_with(prefix)))
                    .collect();
                match named.as_slice() {
                    [stem] => *stem,
                    _ => {
                        return Err(ReferenceError::new(
                            line,
                            "the header has several <name>CD/<name>CDH pairs and not exactly \
                             one of sub-ICB locations (SICBL.., CCG.. or LOC..)",
                        ));
                    }
                }
            }
        };
        let column = |suffix: &str| {
            let name = format!("{stem}{suffix}");
            position(&name).map(|index| (index, name))
        };
        let missing = || ReferenceError::new(line, "the header lost a column it was found with");
        Ok(SubIcbColumns {
            width: names.len(),
            ons_code: column("cd").ok_or_else(missing)?,
            ods_code: column("cdh").ok_or_else(missing)?,
            name: column("nm"),
        })
    }
}

/// Reads the sub-ICB lookup CSV row by row.
pub struct SubIcbReader<R> {
    lines: Lines<R>,
    columns: SubIcbColumns,
    record: CsvRecord,
}

impl<R: BufRead> SubIcbReader<R> {
    /// Reads the header row; refuses a file without the two code columns.
    pub fn new(reader: R) -> Result<Self, ReferenceError> {
        let mut lines = Lines::new(reader);
        let (line, header) = read_header(&mut lines, "the sub-ICB lookup")?;
        let columns = SubIcbColumns::from_header(&header, line)?;
        Ok(SubIcbReader {
            lines,
            columns,
            record: header,
        })
    }

    pub fn columns(&self) -> &SubIcbColumns {
        &self.columns
    }

    fn read_row(&mut self, line: usize, text: &str) -> Result<SubIcbRecord, ReferenceError> {
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
        let (value, name) = column_value(&self.record, &self.columns.ons_code);
        // E38 is the GSS entity code of sub-ICB locations and of the CCGs
        // before them; any other code here means another kind of area.
        if !(is_gss_code(value) && value.starts_with("E38")) {
            return Err(ReferenceError::column(
                line,
                name,
                format!(
                    "{} is not the ONS code of a sub-ICB location (E38 and 6 digits)",
                    shown(value)
                ),
            ));
        }
        let ons_code = value.to_owned();
        let (value, name) = column_value(&self.record, &self.columns.ods_code);
        let ods_code = ods_code(value).ok_or_else(|| {
            ReferenceError::column(line, name, format!("{} is not an ODS code", shown(value)))
        })?;
        let name = self
            .columns
            .name
            .as_ref()
            .map(|column| column_value(&self.record, column).0.to_owned())
            .unwrap_or_default();
        Ok(SubIcbRecord {
            ons_code,
            ods_code,
            name,
        })
    }
}

impl<R: BufRead> Iterator for SubIcbReader<R> {
    type Item = Result<(usize, SubIcbRecord), ReferenceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (line, text) = match self.lines.next_line()? {
            Ok(next) => next,
            Err(error) => return Some(Err(error)),
        };
        Some(self.read_row(line, &text).map(|record| (line, record)))
    }
}

/// The sub-ICB locations by ONS code, with their ODS codes: about a hundred
/// entries, held in memory while the ONSPD is translated.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SubIcbLookup {
    by_ons: HashMap<String, String>,
}

impl SubIcbLookup {
    /// Adds a pair. A different ODS code for an ONS code already held is
    /// refused (the first is kept) and the one held is given back: one of
    /// the two rows is wrong, and guessing which would put children in the
    /// wrong area without a trace.
    pub fn insert(&mut self, ons_code: &str, ods_code: &str) -> Result<(), String> {
        let ons_code = ons_code.trim().to_ascii_uppercase();
        let ods_code = ods_code.trim().to_ascii_uppercase();
        match self.by_ons.get(&ons_code) {
            Some(held) if *held != ods_code => Err(held.clone()),
            Some(_) => Ok(()),
            None => {
                self.by_ons.insert(ons_code, ods_code);
                Ok(())
            }
        }
    }

    /// The ODS code of the sub-ICB location with this ONS code.
    pub fn ods_code(&self, ons_code: &str) -> Option<&str> {
        self.by_ons.get(ons_code).map(String::as_str)
    }

    /// Whether an ODS code is one of the lookup's sub-ICB locations.
    pub fn has_ods_code(&self, ods_code: &str) -> bool {
        self.by_ons.values().any(|held| held == ods_code)
    }

    pub fn len(&self) -> usize {
        self.by_ons.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ons.is_empty()
    }

    /// Reads a whole lookup file: the lookup, and the rows refused (a
    /// repeated ONS code with another ODS code among them). Only a file
    /// without a usable header is an `Err`.
    pub fn read(reader: impl BufRead) -> Result<(Self, Vec<ReferenceError>), ReferenceError> {
        let mut lookup = SubIcbLookup::default();
        let mut errors = Vec::new();
        for row in SubIcbReader::new(reader)? {
            match row {
                Ok((line, record)) => {
                    if let Err(held) = lookup.insert(&record.ons_code, &record.ods_code) {
                        errors.push(ReferenceError::new(
                            line,
                            format!(
                                "{} is paired with {} here and with {} on an earlier line",
                                record.ons_code, record.ods_code, held
                            ),
                        ));
                    }
                }
                Err(error) => errors.push(error),
            }
        }
        Ok((lookup, errors))
    }
}

// ---------------------------------------------------------------------------
// Loading: the three files into the items a store keeps

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
