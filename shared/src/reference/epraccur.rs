//! The NHS ODS GP practice file (`epraccur.csv`) reader.

use std::io::BufRead;

use super::*;

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
