//! `hub-local reference load`: loads the reference data generic
//! subscriptions need (postcode and practice areas) into the reference
//! table, from the real public files: ONS's sub-ICB location lookup, the
//! ONS Postcode Directory and the ODS `epraccur.csv`. `run` loads the
//! samples of events/reference the same way.
//!
//! One thread reads the files (`hub::reference::ReferenceRows`, one row in
//! memory at a time) and hands batches of 25 items to the writer, which
//! keeps several BatchWriteItem requests in flight. The channel between
//! them is bounded, so a national file never sits in memory: reading waits
//! for writing. Puts overwrite, so a load can be run again, whole, after
//! any failure.
//!
//! A malformed row is reported with its file and line (the first
//! [`REPORTED_REJECTIONS`], then a count) and the load goes on with the
//! rest: one bad row in 2.7 million should not leave a table half loaded.
//! The command still exits with status 3 when any row was rejected, so that
//! a script notices. `--check` reads, translates and counts without
//! writing.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hub::aws::{DynamoReferenceData, reference_item_size};
use hub::reference::{LoadCounts, ReferenceItem, ReferenceRows};

use crate::resources::create_template_table;
use crate::template::{REGION, STACK_NAME, Template};

/// The template's reference table, named in the local stack as every table
/// is: `<stack>-<logical id>`.
pub const REFERENCE_TABLE: &str = "ReferenceTable";

/// Rejected rows printed one by one; beyond this they are only counted.
pub const REPORTED_REJECTIONS: usize = 100;

/// The exit status of a load that wrote every good row but rejected some.
const EXIT_REJECTED: u8 = 3;

/// BatchWriteItem's limit.
const BATCH: usize = 25;

/// The sample files in events/reference, as `run` loads them.
pub const SAMPLE_SUB_ICB: &str = "sub-icb-sample.csv";
pub const SAMPLE_ONSPD: &str = "onspd-sample.csv";
pub const SAMPLE_EPRACCUR: &str = "epraccur-sample.csv";

/// `hub-local reference load`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// The ONS Postcode Directory (CSV).
    #[arg(long, value_name = "FILE")]
    pub onspd: PathBuf,
    /// ODS's GP practices (epraccur.csv).
    #[arg(long, value_name = "FILE")]
    pub epraccur: PathBuf,
    /// ONS's sub-ICB location lookup (CSV).
    #[arg(long, value_name = "FILE")]
    pub sub_icb: PathBuf,
    /// The table to load; without --endpoint, a table in AWS.
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
    /// An emulator's endpoint (default: the local stack's).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    #[arg(long, value_name = "R")]
    pub region: Option<String>,
    /// The local stack's emulator port (else HUB_EMULATOR_PORT, else 4566).
    #[arg(long, value_name = "N")]
    pub emulator_port: Option<u16>,
    /// BatchWriteItem requests in flight at once.
    #[arg(long, value_name = "N", value_parser = positive)]
    pub in_flight: Option<usize>,
    /// A progress line every N items written.
    #[arg(long, value_name = "N", value_parser = positive)]
    pub progress_every: Option<usize>,
    /// Create the table (as template.yaml declares it) if it is missing.
    #[arg(long)]
    pub create_table: bool,
    /// Read, translate and count; write nothing.
    #[arg(long)]
    pub check: bool,
}

fn positive(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("'{text}' is not a positive number"))
}

/// The three files of a load.
#[derive(Debug, Clone)]
pub struct Files {
    pub sub_icb: PathBuf,
    pub onspd: PathBuf,
    pub epraccur: PathBuf,
}

impl Files {
    /// The samples, in events/reference beside the template.
    pub fn samples(template: &Path) -> Self {
        let directory = template
            .parent()
            .unwrap_or(Path::new("."))
            .join("events/reference");
        Files {
            sub_icb: directory.join(SAMPLE_SUB_ICB),
            onspd: directory.join(SAMPLE_ONSPD),
            epraccur: directory.join(SAMPLE_EPRACCUR),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// BatchWriteItem requests in flight at once.
    pub in_flight: usize,
    /// Print a progress line every this many items written; None: quiet.
    pub progress_every: Option<usize>,
    /// Print each rejected row (up to [`REPORTED_REJECTIONS`]).
    pub report_rejections: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            in_flight: 8,
            progress_every: Some(100_000),
            report_rejections: true,
        }
    }
}

/// What a load did.
#[derive(Debug, Clone)]
pub struct Report {
    pub counts: LoadCounts,
    /// Items written (postcodes and practices).
    pub written: usize,
    /// Their size as DynamoDB counts it (without its ~100 bytes of
    /// per-item storage overhead).
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.written as f64 / self.elapsed.as_secs_f64().max(0.001)
    }
}

fn open(path: &Path) -> Result<BufReader<File>, String> {
    File::open(path)
        .map(|file| BufReader::with_capacity(1 << 20, file))
        .map_err(|error| format!("{}: {error}", path.display()))
}

/// A batch of items and their size.
type Batch = (Vec<ReferenceItem>, u64);

/// Reads the files (on the calling thread, which must not be an async
/// one) and sends batches until the files end or the writer goes away.
fn read(
    files: &Files,
    report_rejections: bool,
    batches: tokio::sync::mpsc::Sender<Batch>,
) -> Result<LoadCounts, String> {
    let mut rows = ReferenceRows::open(
        open(&files.sub_icb)?,
        open(&files.onspd)?,
        open(&files.epraccur)?,
    )
    .map_err(|rejected| {
        let path = match rejected.file {
            hub::reference::ReferenceFile::SubIcbLookup => &files.sub_icb,
            hub::reference::ReferenceFile::Onspd => &files.onspd,
            hub::reference::ReferenceFile::Epraccur => &files.epraccur,
        };
        format!("{}: {rejected}", path.display())
    })?;
    let mut batch = Vec::with_capacity(BATCH);
    let mut bytes = 0u64;
    let mut reported = 0;
    for row in rows.by_ref() {
        match row {
            Ok(item) => {
                bytes += reference_item_size(&item) as u64;
                batch.push(item);
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if batches
                        .blocking_send((full, std::mem::take(&mut bytes)))
                        .is_err()
                    {
                        // The writer stopped; it reports why.
                        return Ok(rows.counts().clone());
                    }
                }
            }
            Err(rejected) => {
                if report_rejections && reported < REPORTED_REJECTIONS {
                    eprintln!("rejected: {rejected}");
                    reported += 1;
                }
            }
        }
    }
    if !batch.is_empty() {
        let _ = batches.blocking_send((batch, bytes));
    }
    Ok(rows.counts().clone())
}

/// What one write task came to: the items and bytes it wrote, or why not.
type WriteOutcome = Result<Result<(usize, u64), String>, tokio::task::JoinError>;

/// What has been written, and when to say so.
struct Progress {
    started: Instant,
    every: Option<usize>,
    next: usize,
    written: usize,
    bytes: u64,
}

impl Progress {
    /// Counts a finished write and prints a progress line when one is
    /// due; gives back the error of a failed write.
    fn done(&mut self, outcome: WriteOutcome) -> Option<String> {
        match outcome {
            Ok(Ok((count, size))) => {
                self.written += count;
                self.bytes += size;
                if let Some(every) = self.every
                    && self.written >= self.next
                {
                    let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
                    println!(
                        "  {} items written in {elapsed:.1} s ({:.0} items/s)",
                        self.written,
                        self.written as f64 / elapsed
                    );
                    self.next = (self.written / every + 1) * every;
                }
                None
            }
            Ok(Err(error)) => Some(error),
            Err(error) => Some(format!("a write task failed: {error}")),
        }
    }
}

/// Loads the files into the table (None: reads and counts only). A failed
/// write ends the load (after the requests in flight finish) with an error;
/// rejected rows do not.
pub async fn load(
    store: Option<&DynamoReferenceData>,
    files: &Files,
    options: &Options,
) -> Result<Report, String> {
    let started = Instant::now();
    let in_flight = options.in_flight.max(1);
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Batch>(in_flight * 2);
    let reader = {
        let files = files.clone();
        let report_rejections = options.report_rejections;
        tokio::task::spawn_blocking(move || read(&files, report_rejections, sender))
    };

    let mut writes = tokio::task::JoinSet::new();
    let mut progress = Progress {
        started,
        every: options.progress_every,
        next: options.progress_every.unwrap_or(usize::MAX),
        written: 0,
        bytes: 0,
    };
    let mut failure = None;
    while let Some((batch, size)) = receiver.recv().await {
        while writes.len() >= in_flight && failure.is_none() {
            if let Some(outcome) = writes.join_next().await {
                failure = progress.done(outcome);
            }
        }
        if failure.is_some() {
            break;
        }
        let Some(store) = store.cloned() else {
            progress.done(Ok(Ok((batch.len(), size))));
            continue;
        };
        writes.spawn(async move {
            store
                .put_batch(&batch)
                .await
                .map(|()| (batch.len(), size))
                .map_err(|error| error.to_string())
        });
    }
    // Closing the channel stops the reader if the writer gave up early.
    drop(receiver);
    while let Some(outcome) = writes.join_next().await {
        if let Some(error) = progress.done(outcome) {
            failure.get_or_insert(error);
        }
    }
    let counts = reader
        .await
        .map_err(|error| format!("the reading thread failed: {error}"))??;
    if let Some(error) = failure {
        return Err(format!(
            "{error}\n{} items were written before the failure; puts overwrite, so \
             running the same load again is safe",
            progress.written
        ));
    }
    Ok(Report {
        counts,
        written: progress.written,
        bytes: progress.bytes,
        elapsed: started.elapsed(),
    })
}

fn size(bytes: u64) -> String {
    if bytes < 1_000_000 {
        format!("{bytes} bytes")
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

/// The final counts, one per line.
pub fn summary(report: &Report) -> String {
    let counts = &report.counts;
    let mut lines = vec![
        format!(
            "Loaded {} items in {:.1} s ({:.0} items/s), {} as DynamoDB sizes items.",
            report.written,
            report.elapsed.as_secs_f64(),
            report.rate(),
            size(report.bytes)
        ),
        format!(
            "  sub-ICB locations in the lookup: {}",
            counts.sub_icb_locations
        ),
        format!(
            "  postcodes: {} ({} terminated, {} without a sub-ICB location)",
            counts.postcodes, counts.terminated, counts.without_sub_icb
        ),
    ];
    if !counts.unknown_sub_icb_codes.is_empty() {
        let codes: Vec<String> = counts
            .unknown_sub_icb_codes
            .iter()
            .take(20)
            .map(|(code, postcodes)| format!("{code} ({postcodes})"))
            .collect();
        lines.push(format!(
            "  England sub-ICB codes not in the lookup: {}{} — are the lookup and the \
             directory of the same release?",
            codes.join(", "),
            if counts.unknown_sub_icb_codes.len() > codes.len() {
                ", ..."
            } else {
                ""
            }
        ));
    }
    lines.push(format!(
        "  practices: {} ({} with a commissioner outside the lookup)",
        counts.practices, counts.practices_outside_lookup
    ));
    let rejected: Vec<String> = counts
        .rejected
        .iter()
        .map(|(file, count)| format!("{count} in {file}"))
        .collect();
    lines.push(format!(
        "  rejected rows: {}{}",
        counts.rejected_total(),
        if rejected.is_empty() {
            String::new()
        } else {
            format!(" ({})", rejected.join(", "))
        }
    ));
    if counts.rejected_total() > REPORTED_REJECTIONS {
        lines.push(format!(
            "  (the first {REPORTED_REJECTIONS} are listed above)"
        ));
    }
    lines.join("\n")
}

/// Where a load goes: the table, and the endpoint (None: AWS itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub table: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

/// `--endpoint` means an emulator; `--table` without it means AWS, with
/// the default credential chain; neither means the local stack's table in
/// its emulator.
pub fn target(
    table: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    emulator_port: u16,
) -> Target {
    match (table, endpoint) {
        (Some(table), None) => Target {
            table,
            endpoint: None,
            region,
        },
        (table, endpoint) => Target {
            table: table.unwrap_or_else(local_table),
            endpoint: Some(
                endpoint.unwrap_or_else(|| crate::emulator::emulator_endpoint(emulator_port)),
            ),
            region: Some(region.unwrap_or_else(|| REGION.to_owned())),
        },
    }
}

/// The local stack's reference table.
pub fn local_table() -> String {
    format!("{STACK_NAME}-{REFERENCE_TABLE}")
}

/// A DynamoDB client for the target's endpoint (an emulator) or AWS.
pub async fn dynamodb_client(target: &Target) -> aws_sdk_dynamodb::Client {
    let config = match &target.endpoint {
        Some(endpoint) => {
            let mut config = crate::emulator::emulator_config(endpoint)
                .await
                .into_builder();
            if let Some(region) = &target.region {
                config = config.region(aws_config::Region::new(region.clone()));
            }
            config.build()
        }
        None => {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
            if let Some(region) = &target.region {
                loader = loader.region(aws_config::Region::new(region.clone()));
            }
            loader.load().await
        }
    };
    aws_sdk_dynamodb::Client::new(&config)
}

/// Checks the table is there before reading a national file; creates it
/// (as template.yaml declares it) when asked to.
async fn ensure_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    create: bool,
) -> Result<(), String> {
    match client.describe_table().table_name(table).send().await {
        Ok(_) => return Ok(()),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) => {}
        Err(error) => {
            return Err(format!(
                "reading table {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(error)
            ));
        }
    }
    if !create {
        return Err(format!(
            "table {table} does not exist: start the local stack (infra/run-local.sh), name \
             another with --table, or pass --create-table"
        ));
    }
    // The schema is the template's own: the template this binary was built
    // with, as the load may go to an emulator or AWS without a checkout.
    let template = Template::parse(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../template.yaml"
    )))?;
    create_template_table(client, &template, REFERENCE_TABLE, table).await?;
    println!("Created table {table}.");
    Ok(())
}

/// The table's item count and size as DynamoDB reports them (AWS updates
/// them about every six hours; the emulator at once).
async fn table_size(client: &aws_sdk_dynamodb::Client, table: &str) -> Option<(i64, i64)> {
    let description = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .ok()?
        .table?;
    Some((description.item_count?, description.table_size_bytes?))
}

/// `hub-local reference load ...`
pub async fn command(args: LoadArgs, emulator_port: u16) -> Result<ExitCode, String> {
    let files = Files {
        sub_icb: args.sub_icb,
        onspd: args.onspd,
        epraccur: args.epraccur,
    };
    let defaults = Options::default();
    let options = Options {
        in_flight: args.in_flight.unwrap_or(defaults.in_flight),
        progress_every: Some(
            args.progress_every
                .unwrap_or(defaults.progress_every.unwrap_or(100_000)),
        ),
        report_rejections: true,
    };
    // Every file must open before anything is written.
    for path in [&files.sub_icb, &files.onspd, &files.epraccur] {
        open(path)?;
    }
    let target = target(args.table, args.endpoint, args.region, emulator_port);
    // Read, translate and count, write nothing: to try a new release of
    // the files before loading it.
    if args.check {
        println!(
            "Checking {}, {} and {} (nothing is written).",
            files.sub_icb.display(),
            files.onspd.display(),
            files.epraccur.display()
        );
        let report = load(None, &files, &options).await?;
        println!("{}", summary(&report).replacen("Loaded", "Read", 1));
        return Ok(exit_status(&report));
    }
    let client = dynamodb_client(&target).await;
    ensure_table(&client, &target.table, args.create_table).await?;
    println!(
        "Loading {}, {} and {} into {} ({}), {} requests in flight.",
        files.sub_icb.display(),
        files.onspd.display(),
        files.epraccur.display(),
        target.table,
        target.endpoint.as_deref().unwrap_or("AWS"),
        options.in_flight
    );
    let store = DynamoReferenceData::new(client.clone(), &target.table);
    let report = load(Some(&store), &files, &options).await?;
    println!("{}", summary(&report));
    // The emulator counts items but reports no size.
    if let Some((items, bytes)) = table_size(&client, &target.table).await {
        let bytes = u64::try_from(bytes).unwrap_or_default();
        match bytes {
            0 => println!("  the table reports {items} items"),
            _ => println!("  the table reports {items} items, {}", size(bytes)),
        }
    }
    Ok(exit_status(&report))
}

fn exit_status(report: &Report) -> ExitCode {
    if report.counts.rejected_total() > 0 {
        ExitCode::from(EXIT_REJECTED)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    #[test]
    fn the_target_is_the_local_stack_an_emulator_or_aws() {
        assert_eq!(
            target(None, None, None, 4566),
            Target {
                table: "chhub-local-ReferenceTable".into(),
                endpoint: Some("http://127.0.0.1:4566".into()),
                region: Some("eu-west-2".into()),
            }
        );
        assert_eq!(
            target(some("T"), some("http://127.0.0.1:9000"), None, 4566),
            Target {
                table: "T".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-west-2".into()),
            }
        );
        assert_eq!(
            target(some("hub-ReferenceTable-X"), None, some("eu-west-1"), 4566),
            Target {
                table: "hub-ReferenceTable-X".into(),
                endpoint: None,
                region: Some("eu-west-1".into()),
            }
        );
    }

    #[test]
    fn the_samples_are_found_beside_the_template() {
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let files = Files::samples(&template);
        for path in [&files.sub_icb, &files.onspd, &files.epraccur] {
            assert!(path.exists(), "{}", path.display());
        }
    }
}
