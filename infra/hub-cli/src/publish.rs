//! `hub-cli publish`: posts event message files to their event type's route and
//! sums up what the hub made of them.

use std::error::Error;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use clap::Args;
use hub::fhir::Element;
use hub::{Encoding, EventMessage, EventType};
use hub_cli::api::{Body, HubClient, segment};
use reqwest::{Method, StatusCode};
use serde::Serialize;

use crate::output::{Colours, Table};

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Message files (XML or JSON), or folders whose .xml and .json files are all published
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,

    /// Publish every file to this event type's route instead of the one its MessageHeader names
    #[arg(long, value_name = "CODE", value_parser = event_type)]
    pub event_type: Option<EventType>,
}

fn event_type(code: &str) -> Result<EventType, String> {
    EventType::from_str(code).map_err(|_| {
        let codes: Vec<&str> = EventType::ALL.iter().map(|t| t.code()).collect();
        format!("not an event type; one of {}", codes.join(", "))
    })
}

/// What became of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accepted,
    Duplicate,
    Rejected,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileResult {
    pub file: String,
    pub verdict: Verdict,
    /// The route's event type, when one was found.
    pub event_type: Option<&'static str>,
    /// The hub's status; none when the file was never sent.
    pub status: Option<u16>,
    /// Why it was rejected: the OperationOutcome's issues, or what kept it
    /// from being sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// The files to publish: each file named, and each folder's .xml and .json
/// files, in name order.
fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|file| {
                    file.is_file()
                        && file
                            .extension()
                            .is_some_and(|ext| ext == "xml" || ext == "json")
                })
                .collect();
            found.sort();
            files.extend(found);
        } else if path.exists() {
            files.push(path.clone());
        } else {
            return Err(format!("{}: no such file or folder", path.display()));
        }
    }
    Ok(files)
}

/// The encoding a message's first character shows.
pub fn encoding_of(text: &str) -> Option<Encoding> {
    match text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .chars()
        .next()
    {
        Some('<') => Some(Encoding::Xml),
        Some('{') => Some(Encoding::Json),
        _ => None,
    }
}

/// The event type a message's header names. A message the hub would
/// refuse still goes to its type's route when the code can be read, so
/// that the hub's own reasons are what the publisher sees.
pub fn event_type_of(text: &str, encoding: Encoding) -> Result<EventType, String> {
    if let Ok(message) = EventMessage::read(text, encoding) {
        return Ok(message.event_type);
    }
    let bundle = encoding
        .read(text)
        .map_err(|e| format!("unreadable: {e}"))?;
    let code = bundle
        .child("entry")
        .and_then(Element::resource)
        .filter(|resource| resource.name == "MessageHeader")
        .and_then(|header| header.child("event"))
        .and_then(|event| event.value_of("code"))
        .ok_or("no event type: Bundle.entry[0] is not a MessageHeader with an event code (--event-type picks the route)")?;
    event_type(code).map_err(|e| format!("MessageHeader.event.code '{code}': {e}"))
}

async fn publish_one(hub: &HubClient, path: &Path, forced: Option<EventType>) -> FileResult {
    let file = path.display().to_string();
    let rejected =
        |event_type: Option<EventType>, status: Option<u16>, reasons: Vec<String>| FileResult {
            file: file.clone(),
            verdict: Verdict::Rejected,
            event_type: event_type.map(EventType::code),
            status,
            reasons,
        };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return rejected(None, None, vec![format!("reading the file: {e}")]),
    };
    let Some(encoding) = encoding_of(&text) else {
        return rejected(None, None, vec!["neither XML nor JSON".into()]);
    };
    let event_type = match forced.map_or_else(|| event_type_of(&text, encoding), Ok) {
        Ok(event_type) => event_type,
        Err(reason) => return rejected(None, None, vec![reason]),
    };
    let body = Body {
        content_type: encoding.media_type(),
        text,
    };
    let route = format!("/events/{}", segment(event_type.code()));
    match hub.send(Method::POST, &route, Some(body)).await {
        Ok(answer) => {
            let verdict = match answer.status {
                StatusCode::ACCEPTED => Verdict::Accepted,
                StatusCode::OK => Verdict::Duplicate,
                _ => {
                    return rejected(
                        Some(event_type),
                        Some(answer.status.as_u16()),
                        answer.reasons(),
                    );
                }
            };
            FileResult {
                file,
                verdict,
                event_type: Some(event_type.code()),
                status: Some(answer.status.as_u16()),
                reasons: Vec::new(),
            }
        }
        Err(error) => rejected(Some(event_type), None, vec![crate::one_line(&error)]),
    }
}

/// A progress line on stderr, redrawn in place; only on a terminal.
struct Progress {
    on: bool,
    total: usize,
}

impl Progress {
    const WIDTH: usize = 30;

    fn show(&self, done: usize, file: &Path) {
        if !self.on {
            return;
        }
        let filled = Self::WIDTH * done / self.total.max(1);
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        eprint!(
            "\r\x1b[2K[{}{}] {done}/{} {name}",
            "#".repeat(filled),
            "-".repeat(Self::WIDTH - filled),
            self.total
        );
        let _ = io::stderr().flush();
    }

    fn clear(&self) {
        if self.on {
            eprint!("\r\x1b[2K");
        }
    }
}

pub async fn run(
    args: PublishArgs,
    hub: &HubClient,
    json: bool,
) -> Result<ExitCode, Box<dyn Error>> {
    let files = files(&args.paths)?;
    if files.is_empty() {
        return Err("no .xml or .json files to publish".into());
    }
    let colours = Colours::for_stdout();
    let progress = Progress {
        on: io::stderr().is_terminal(),
        total: files.len(),
    };
    let mut results = Vec::with_capacity(files.len());
    let mut out = io::stdout();
    for (done, path) in files.iter().enumerate() {
        progress.show(done, path);
        let result = publish_one(hub, path, args.event_type).await;
        progress.clear();
        if !json {
            writeln!(out, "{}", result_line(&result, colours))?;
        }
        results.push(result);
    }
    progress.clear();
    let count = |verdict| results.iter().filter(|r| r.verdict == verdict).count();
    let (accepted, duplicate, rejected) = (
        count(Verdict::Accepted),
        count(Verdict::Duplicate),
        count(Verdict::Rejected),
    );
    if json {
        let summary = serde_json::json!({
            "accepted": accepted,
            "duplicate": duplicate,
            "rejected": rejected,
            "files": results,
        });
        writeln!(out, "{summary:#}")?;
    } else {
        let mut table = Table::new(&["ACCEPTED", "DUPLICATE", "REJECTED", "FILES"]);
        table.row(vec![
            accepted.to_string(),
            duplicate.to_string(),
            rejected.to_string(),
            results.len().to_string(),
        ]);
        write!(out, "\n{}", table.render(colours))?;
    }
    Ok(if rejected > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One file's line: its verdict, the status, the route, the file, and
/// the reasons of a rejection indented below.
fn result_line(result: &FileResult, colours: Colours) -> String {
    let verdict = match result.verdict {
        Verdict::Accepted => colours.green("accepted "),
        Verdict::Duplicate => colours.yellow("duplicate"),
        Verdict::Rejected => colours.red("rejected "),
    };
    let status = result
        .status
        .map_or_else(|| "---".to_owned(), |status| status.to_string());
    let mut line = format!(
        "{verdict}  {status}  {:<25} {}",
        result.event_type.unwrap_or("-"),
        result.file
    );
    for reason in &result.reasons {
        line.push_str(&format!("\n    {reason}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(path),
        )
        .unwrap()
    }

    #[test]
    fn the_encoding_is_read_from_the_content() {
        assert_eq!(encoding_of("\u{feff}  <Bundle/>"), Some(Encoding::Xml));
        assert_eq!(encoding_of("\n{\"resourceType\":1}"), Some(Encoding::Json));
        assert_eq!(encoding_of("Bundle"), None);
        assert_eq!(encoding_of(""), None);
    }

    #[test]
    fn the_route_is_the_message_headers_event_type() {
        let xml = fixture("events/nems/vaccinations-1-new.xml");
        assert_eq!(
            event_type_of(&xml, Encoding::Xml),
            Ok(EventType::from_str("vaccinations-1").unwrap())
        );
        let json = fixture("events/nems-json/PDS-Change-Of-GP-ems-example.json");
        assert_eq!(
            event_type_of(&json, Encoding::Json).map(EventType::code),
            Ok("pds-change-of-gp-1")
        );
        // A message the hub will refuse still finds its route.
        let broken = xml.replacen("<type value=\"message\"/>", "<type value=\"document\"/>", 1);
        assert_ne!(broken, xml);
        assert_eq!(
            event_type_of(&broken, Encoding::Xml).map(EventType::code),
            Ok("vaccinations-1")
        );
        let error =
            event_type_of(r#"<Bundle xmlns="http://hl7.org/fhir"/>"#, Encoding::Xml).unwrap_err();
        assert!(error.starts_with("no event type"), "{error}");
        let error = event_type_of("{", Encoding::Json).unwrap_err();
        assert!(error.starts_with("unreadable"), "{error}");
    }

    #[test]
    fn a_rejection_shows_its_reasons() {
        let result = FileResult {
            file: "a.xml".into(),
            verdict: Verdict::Rejected,
            event_type: Some("vaccinations-1"),
            status: Some(422),
            reasons: vec!["must be 'message' (Bundle.type)".into()],
        };
        let line = result_line(&result, Colours::never());
        assert_eq!(
            line,
            "rejected   422  vaccinations-1            a.xml\n    must be 'message' (Bundle.type)"
        );
    }
}
