//! CSV records read a line at a time, and the code checks the sources share.

use std::io::BufRead;
use std::ops::Range;

use super::*;

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
pub(super) struct Lines<R> {
    reader: R,
    line: usize,
    buffer: Vec<u8>,
    finished: bool,
}

impl<R: BufRead> Lines<R> {
    pub(super) fn new(reader: R) -> Self {
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
    pub(super) fn next_line(&mut self) -> Option<Result<(usize, String), ReferenceError>> {
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
    pub(super) fn new(line: usize, problem: impl Into<String>) -> Self {
        ReferenceError {
            line,
            problem: problem.into(),
        }
    }

    pub(super) fn column(line: usize, column: &str, problem: impl fmt::Display) -> Self {
        Self::new(line, format!("{column}: {problem}"))
    }
}

/// A value quoted in an error: reference values are public, but a corrupt
/// row can hold anything, so only its start is shown.
pub(super) fn shown(value: &str) -> String {
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
