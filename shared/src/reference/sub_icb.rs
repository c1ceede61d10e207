//! The ONS sub-ICB location lookup: GSS codes to ODS codes.

use std::collections::HashMap;
use std::io::BufRead;

use super::*;

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
