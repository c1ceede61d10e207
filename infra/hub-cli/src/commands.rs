//! The commands that call the hub's API (all but `poll` and `publish`):
//! each sends one request, or a few, and shows the answer.

use std::error::Error;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use hub::EventType;
use hub_cli::api::{Body, ClientKey, HubClient, segment};
use hub_cli::config::Settings;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::Command;
use crate::output::{Colours, Table};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

#[derive(Debug, Subcommand)]
pub enum Subscriptions {
    /// Create a subscription from a criteria string (docs/subscriptions.md)
    ///
    /// Prints the new subscription's id (with --json, the subscription).
    #[command(
        after_help = "Example:\n  hub --profile local-subscriber-1 subscriptions create \\\n    \
        --criteria '/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|9912003888&MessageHeader.event=vaccinations-1&tag=gp-care'"
    )]
    Create(CreateSubscription),
    /// List your subscriptions
    List,
    /// Show one of your subscriptions, as the hub keeps it
    Get(IdArgs),
    /// Delete one of your subscriptions: nothing is delivered for it afterwards
    Delete(IdArgs),
}

#[derive(Debug, Args)]
pub struct CreateSubscription {
    /// The criteria: /Bundle?type=message&... (explicit: Patient.identifier; generic: an area or practice)
    #[arg(long, value_name = "CRITERIA")]
    pub criteria: String,

    /// Why you subscribe (Subscription.reason)
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "Subscribed with the hub command line"
    )]
    pub reason: String,

    /// When the subscription ends, a FHIR instant (Subscription.end)
    #[arg(long, value_name = "INSTANT")]
    pub end: Option<String>,

    /// Your subscriber id (the channel's endpoint) [default: HUB_SUBSCRIBER_ID, else the profile's]
    #[arg(long, value_name = "ID")]
    pub subscriber_id: Option<String>,

    /// Your organisation's ODS code (the contact) [default: HUB_ODS_CODE, else the profile's]
    #[arg(long, value_name = "CODE")]
    pub ods_code: Option<String>,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The id
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The subscription to replay to (its id)
    pub subscription: String,

    /// The window's start: a FHIR instant, dateTime or date (midnight UTC)
    #[arg(long, value_name = "WHEN")]
    pub since: String,

    /// The window's end, excluded [default: now]
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,

    /// Wait for the replay to finish, showing its progress
    #[arg(long)]
    pub follow: bool,

    /// With --follow, give up waiting after this long (the replay goes on)
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct ReplayIdArgs {
    /// The replay's id (`hub replay` prints it)
    pub id: String,
}

#[derive(Debug, Args)]
pub struct EventArgs {
    /// The event's id (its MessageHeader.id)
    pub id: String,

    /// The event type, when the id was published under several
    #[arg(long, value_name = "CODE")]
    pub event_type: Option<String>,
}

#[derive(Debug, Args)]
pub struct ChildrenArgs {
    /// The child's NHS number
    pub nhs_number: String,

    /// List the child's events instead of the register record
    #[arg(long)]
    pub events: bool,

    /// With --events: one event type only
    #[arg(long, value_name = "CODE", requires = "events")]
    pub event_type: Option<String>,

    /// Entries per page
    #[arg(long, value_name = "N")]
    pub count: Option<u32>,

    /// The page (from the `next` link of the previous one)
    #[arg(long, value_name = "PAGE")]
    pub page: Option<String>,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("whose").required(true))]
pub struct AuditArgs {
    /// A patient's NHS number
    #[arg(long, value_name = "NHS", group = "whose")]
    pub patient: Option<String>,

    /// A client id
    #[arg(long, value_name = "ID", group = "whose")]
    pub client: Option<String>,

    /// Entries per page
    #[arg(long, value_name = "N")]
    pub count: Option<u32>,

    /// The page (from the `next` of the previous one)
    #[arg(long, value_name = "PAGE")]
    pub page: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Clients {
    /// Register a client, or replace its registration, from a JSON file (docs/security.md)
    Register(RegisterArgs),
    /// Disable a client: its tokens stop working at once
    Disable(IdArgs),
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The registration: {clientId, odsCode, roles, keys (a JWKS), ...}
    pub file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Subscribers {
    /// Onboard a subscriber for a registered subscriber client: its queue, its topics
    #[command(
        after_help = "Example:\n  hub --profile local-operator subscribers onboard --client demo-subscriber-2 \\\n    \
        --ods Y12345 --name 'Health visiting team' --event-types vaccinations-1,newborn-hearing-1"
    )]
    Onboard(OnboardArgs),
    /// Change a subscriber's event types or AWS principal; its queues stay
    Update(UpdateArgs),
    /// Offboard a subscriber: no more deliveries; its queues are kept 14 days
    Offboard(IdArgs),
    /// A subscriber's delivery status: messages per event type, queue and DLQ depths
    Status(SubscriberIdArgs),
    /// Move a subscriber's dead-lettered messages back to its queue
    Redrive(SubscriberIdArgs),
}

#[derive(Debug, Args)]
pub struct OnboardArgs {
    /// The registered client that will act as the subscriber
    #[arg(long, value_name = "CLIENT_ID")]
    pub client: String,

    /// The subscriber's organisation (the client's ODS code)
    #[arg(long, value_name = "CODE")]
    pub ods: String,

    /// The subscriber's name
    #[arg(long, value_name = "TEXT")]
    pub name: String,

    /// The event types it may receive, comma separated [default: all ten]
    #[arg(long, value_name = "CODES", value_delimiter = ',')]
    pub event_types: Vec<String>,

    /// The AWS account or role that may read the hub-owned queue
    #[arg(long, value_name = "ARN", conflicts_with = "queue_arn")]
    pub aws_principal: Option<String>,

    /// A queue in the subscriber's own account, instead of a hub-owned one
    #[arg(long, value_name = "ARN")]
    pub queue_arn: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The subscriber's id
    pub id: String,

    /// The event types, comma separated
    #[arg(long, value_name = "CODES", value_delimiter = ',')]
    pub event_types: Option<Vec<String>>,

    /// The AWS account or role that may read its queue
    #[arg(long, value_name = "ARN")]
    pub aws_principal: Option<String>,
}

#[derive(Debug, Args)]
pub struct SubscriberIdArgs {
    /// The subscriber's id [default: HUB_SUBSCRIBER_ID, else the profile's]
    pub id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Reference {
    /// Load the ONS Postcode Directory, ODS epraccur and the sub-ICB lookup
    ///
    /// Runs `hub-local reference load` (installed beside `hub`) with the
    /// arguments given: it writes the reference table directly, with AWS
    /// credentials, not through the API. Its options: --onspd FILE
    /// --epraccur FILE --sub-icb FILE [--table NAME] [--endpoint URL]
    /// [--region R] [--in-flight N] [--progress-every N] [--create-table]
    /// [--check]; without --table, the running local stack's table.
    #[command(
        after_help = "Example:\n  hub reference load --sub-icb SICBL.csv --onspd ONSPD.csv --epraccur epraccur.csv --check"
    )]
    Load(ReferenceArgs),
}

#[derive(Debug, Args)]
pub struct ReferenceArgs {
    /// The options of `hub-local reference load`
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "OPTIONS"
    )]
    pub options: Vec<String>,
}

/// The API client the settings describe.
pub fn client(settings: &Settings) -> Result<HubClient> {
    let profile = &settings.profile;
    let url = settings.require("url", &profile.url)?;
    let client_id = settings.require("client_id", &profile.client_id)?;
    let key_file = profile
        .key_file
        .as_ref()
        .ok_or_else(|| settings.missing("key_file"))?;
    let pem = std::fs::read(key_file)
        .map_err(|e| format!("reading the key file {}: {e}", key_file.display()))?;
    let key = ClientKey::from_pem(client_id, &settings.key_id(client_id), &pem)
        .map_err(|e| format!("{}: {e}", key_file.display()))?;
    Ok(HubClient::new(url, key)?)
}

pub async fn run(command: Command, hub: &HubClient, settings: &Settings, json: bool) -> Result<()> {
    let colours = Colours::for_stdout();
    let out = &mut io::stdout();
    match command {
        Command::Token => {
            let answer = hub.new_token().await?;
            if json {
                writeln!(out, "{answer:#}")?;
            } else {
                writeln!(
                    out,
                    "{}",
                    answer["access_token"].as_str().unwrap_or_default()
                )?;
            }
        }
        Command::Subscriptions(command) => {
            subscriptions(command, hub, settings, json, colours).await?
        }
        Command::Replay(args) => replay(args, hub, json).await?,
        Command::Replays(args) => {
            let job = read_replay(hub, &args.id).await?;
            show(out, &job, json, colours)?;
        }
        Command::Events(args) => {
            let mut path = format!("/events/{}", segment(&args.id));
            if let Some(code) = &args.event_type {
                path.push_str(&format!("?eventType={}", segment(code)));
            }
            let answer = hub
                .call(Method::GET, &path, None, &[StatusCode::OK])
                .await?;
            // The message exactly as published, whatever --json says, byte
            // for byte (no newline added), so that `> file` keeps it whole.
            write!(out, "{}", answer.body)?;
        }
        Command::Children(args) => children(args, hub, json, colours).await?,
        Command::Audit(args) => audit(args, hub, json, colours).await?,
        Command::Clients(Clients::Register(args)) => {
            let text = std::fs::read_to_string(&args.file)
                .map_err(|e| format!("reading {}: {e}", args.file.display()))?;
            let registration: Value = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not JSON: {e}", args.file.display()))?;
            let answer = hub
                .call(
                    Method::POST,
                    "/clients",
                    Some(Body {
                        content_type: "application/json",
                        text,
                    }),
                    &[StatusCode::CREATED, StatusCode::OK],
                )
                .await?;
            let what = if answer.status == StatusCode::CREATED {
                "registered"
            } else {
                "registration replaced"
            };
            let id = registration["clientId"].as_str().unwrap_or("the client");
            finish(
                out,
                json,
                &answer.json("POST /clients").unwrap_or(Value::Null),
                &format!("{id}: {what}"),
            )?;
        }
        Command::Clients(Clients::Disable(args)) => {
            hub.call(
                Method::DELETE,
                &format!("/clients/{}", segment(&args.id)),
                None,
                &[StatusCode::NO_CONTENT],
            )
            .await?;
            finish(
                out,
                json,
                &json!({"clientId": args.id, "enabled": false}),
                &format!("{}: disabled", args.id),
            )?;
        }
        Command::Subscribers(command) => subscribers(command, hub, settings, json, colours).await?,
        Command::Poll(_) | Command::Publish(_) | Command::Reference(_) | Command::Config => {
            return Err("this command does not call the API".into());
        }
    }
    Ok(())
}

/// After a change: JSON, or one line saying what was done.
fn finish(out: &mut impl Write, json: bool, answer: &Value, said: &str) -> io::Result<()> {
    if json {
        writeln!(out, "{answer:#}")
    } else {
        writeln!(out, "{said}")
    }
}

/// A JSON object as `key: value` lines (nested values as compact JSON).
fn show(out: &mut impl Write, value: &Value, json: bool, colours: Colours) -> io::Result<()> {
    if json {
        return writeln!(out, "{value:#}");
    }
    let Some(object) = value.as_object() else {
        return writeln!(out, "{value}");
    };
    let width = object.keys().map(|key| key.len()).max().unwrap_or(0);
    for (key, value) in object {
        let text = match value {
            // A register fact: its value, when and by which event it changed.
            Value::Object(fact) if fact.contains_key("value") && fact.contains_key("changedAt") => {
                format!(
                    "{}  (since {}, by {})",
                    text(&value["value"]),
                    text(&value["changedAt"]),
                    text(&value["byEvent"])
                )
            }
            other => text(other),
        };
        let label = format!("{key:<width$}");
        writeln!(out, "{}  {text}", colours.bold(&label))?;
    }
    Ok(())
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

async fn subscriptions(
    command: Subscriptions,
    hub: &HubClient,
    settings: &Settings,
    json: bool,
    colours: Colours,
) -> Result<()> {
    let out = &mut io::stdout();
    match command {
        Subscriptions::Create(args) => {
            let subscriber = match &args.subscriber_id {
                Some(id) => id.as_str(),
                None => settings.require("subscriber_id", &settings.profile.subscriber_id)?,
            };
            let ods = match &args.ods_code {
                Some(code) => code.as_str(),
                None => settings.require("ods_code", &settings.profile.ods_code)?,
            };
            let mut resource = json!({
                "resourceType": "Subscription",
                "meta": {"profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/EMS-Subscription-1"]},
                "status": "requested",
                "contact": [{
                    "system": "url",
                    "value": format!("https://directory.spineservices.nhs.uk/STU3/Organization/{ods}"),
                    "use": "work"
                }],
                "reason": args.reason,
                "criteria": args.criteria,
                "channel": {"type": "message", "endpoint": subscriber}
            });
            if let Some(end) = &args.end {
                resource["end"] = json!(end);
            }
            let body = Body {
                content_type: "application/fhir+json",
                text: resource.to_string(),
            };
            let answer = hub
                .call(
                    Method::POST,
                    "/Subscription",
                    Some(body),
                    &[StatusCode::CREATED],
                )
                .await?
                .json("POST /Subscription")?;
            if json {
                writeln!(out, "{answer:#}")?;
            } else {
                // The id alone on stdout, for `SUB=$(hub subscriptions create ...)`.
                writeln!(out, "{}", text(&answer["id"]))?;
                eprintln!("subscription created ({})", text(&answer["status"]));
            }
        }
        Subscriptions::List => {
            let mut entries = Vec::new();
            let mut page = Some("/Subscription?_count=100".to_owned());
            while let Some(path) = page.take() {
                let bundle = hub
                    .json(Method::GET, &path, None, &[StatusCode::OK])
                    .await?;
                entries.extend(bundle["entry"].as_array().cloned().unwrap_or_default());
                page = next_link(&bundle, hub.url());
            }
            if json {
                let resources: Vec<&Value> = entries.iter().map(|e| &e["resource"]).collect();
                writeln!(out, "{:#}", json!(resources))?;
                return Ok(());
            }
            let mut table = Table::new(&["ID", "STATUS", "END", "CRITERIA"]);
            for entry in &entries {
                let resource = &entry["resource"];
                table.row(vec![
                    text(&resource["id"]),
                    text(&resource["status"]),
                    text(&resource["end"]),
                    text(&resource["criteria"]),
                ]);
            }
            if table.is_empty() {
                writeln!(out, "no subscriptions")?;
            } else {
                write!(out, "{}", table.render(colours))?;
            }
        }
        Subscriptions::Get(args) => {
            let answer = hub
                .json(
                    Method::GET,
                    &format!("/Subscription/{}", segment(&args.id)),
                    None,
                    &[StatusCode::OK],
                )
                .await?;
            writeln!(out, "{answer:#}")?;
        }
        Subscriptions::Delete(args) => {
            hub.call(
                Method::DELETE,
                &format!("/Subscription/{}", segment(&args.id)),
                None,
                &[StatusCode::NO_CONTENT],
            )
            .await?;
            finish(
                out,
                json,
                &json!({"id": args.id, "deleted": true}),
                &format!("subscription {} deleted", args.id),
            )?;
        }
    }
    Ok(())
}

/// The `next` link of a searchset Bundle, as a path on the hub.
fn next_link(bundle: &Value, base: &str) -> Option<String> {
    let url = bundle["link"]
        .as_array()?
        .iter()
        .find(|link| link["relation"] == "next")?["url"]
        .as_str()?;
    Some(url.strip_prefix(base).unwrap_or(url).to_owned())
}

async fn read_replay(hub: &HubClient, id: &str) -> Result<Value> {
    Ok(hub
        .json(
            Method::GET,
            &format!("/replays/{}", segment(id)),
            None,
            &[StatusCode::OK],
        )
        .await?)
}

async fn replay(args: ReplayArgs, hub: &HubClient, json: bool) -> Result<()> {
    let mut path = format!(
        "/Subscription/{}/$replay?since={}",
        segment(&args.subscription),
        segment(&args.since)
    );
    if let Some(until) = &args.until {
        path.push_str(&format!("&until={}", segment(until)));
    }
    let mut job = hub
        .json(Method::POST, &path, None, &[StatusCode::ACCEPTED])
        .await?;
    let id = text(&job["id"]);
    let out = &mut io::stdout();
    if !json {
        writeln!(
            out,
            "replay {id} started: {} to {}",
            text(&job["since"]),
            text(&job["until"])
        )?;
        if let Some(detail) = job["detail"].as_str() {
            writeln!(out, "  {detail}")?;
        }
    }
    if args.follow {
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        let mut last = String::new();
        while job["status"] == "running" {
            if Instant::now() >= deadline {
                return Err(format!(
                    "replay {id} is still running after {} seconds (hub replays {id} shows its progress)",
                    args.timeout
                )
                .into());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            job = read_replay(hub, &id).await?;
            let progress = progress_line(&job);
            if !json && progress != last {
                writeln!(out, "{progress}")?;
                last = progress;
            }
        }
    }
    if json {
        writeln!(out, "{job:#}")?;
    } else if !args.follow {
        writeln!(
            out,
            "{} (hub replays {id}, or --follow, shows its progress)",
            progress_line(&job)
        )?;
    } else if job["status"] != "completed" {
        return Err(format!(
            "replay {id} {}: {}",
            text(&job["status"]),
            text(&job["detail"])
        )
        .into());
    }
    Ok(())
}

fn progress_line(job: &Value) -> String {
    format!(
        "  {}: {} scanned, {} delivered",
        text(&job["status"]),
        text(&job["scanned"]),
        text(&job["delivered"])
    )
}

fn page_query(count: Option<u32>, page: &Option<String>) -> String {
    let mut query = String::new();
    if let Some(count) = count {
        query.push_str(&format!("&_count={count}"));
    }
    if let Some(page) = page {
        query.push_str(&format!("&_page={}", segment(page)));
    }
    query
}

async fn children(args: ChildrenArgs, hub: &HubClient, json: bool, colours: Colours) -> Result<()> {
    let out = &mut io::stdout();
    let nhs = segment(&args.nhs_number);
    if !args.events {
        let record = hub
            .json(
                Method::GET,
                &format!("/children/{nhs}"),
                None,
                &[StatusCode::OK],
            )
            .await?;
        return Ok(show(out, &record, json, colours)?);
    }
    let mut path = format!(
        "/children/{nhs}/events?{}",
        page_query(args.count, &args.page)
    );
    if let Some(code) = &args.event_type {
        path.push_str(&format!("&eventType={}", segment(code)));
    }
    let bundle = hub
        .json(
            Method::GET,
            &path.replace("?&", "?"),
            None,
            &[StatusCode::OK],
        )
        .await?;
    if json {
        writeln!(out, "{bundle:#}")?;
        return Ok(());
    }
    let mut table = Table::new(&["EVENT TYPE", "EVENT ID", "RESOURCE"]);
    for entry in bundle["entry"].as_array().into_iter().flatten() {
        if entry["search"]["mode"] == "outcome" {
            for reason in hub_cli::api::outcome_reasons(&entry["resource"].to_string()) {
                eprintln!("hub: {reason}");
            }
            continue;
        }
        // fullUrl: /events/{id}?eventType={code}
        let url = text(&entry["fullUrl"]);
        let (id, event_type) = url
            .trim_start_matches("/events/")
            .split_once("?eventType=")
            .map_or((url.clone(), "-".to_owned()), |(id, code)| {
                (id.to_owned(), code.to_owned())
            });
        table.row(vec![
            event_type,
            id,
            text(&entry["resource"]["resourceType"]),
        ]);
    }
    writeln!(out, "{} events", text(&bundle["total"]))?;
    if !table.is_empty() {
        write!(out, "{}", table.render(colours))?;
    }
    if let Some(next) = next_link(&bundle, hub.url()) {
        writeln!(out, "more: {next}")?;
    }
    Ok(())
}

async fn audit(args: AuditArgs, hub: &HubClient, json: bool, colours: Colours) -> Result<()> {
    let query = match (&args.patient, &args.client) {
        (Some(patient), _) => format!("patient={}", segment(patient)),
        (None, Some(client)) => format!("client={}", segment(client)),
        (None, None) => return Err("give --patient or --client".into()),
    };
    let path = format!("/audit?{query}{}", page_query(args.count, &args.page));
    let page = hub
        .json(Method::GET, &path, None, &[StatusCode::OK])
        .await?;
    let out = &mut io::stdout();
    if json {
        writeln!(out, "{page:#}")?;
        return Ok(());
    }
    let mut table = Table::new(&[
        "AT",
        "ACTION",
        "STATUS",
        "CLIENT",
        "NHS NUMBER",
        "EVENT",
        "DETAIL",
    ]);
    for entry in page["entries"].as_array().into_iter().flatten() {
        table.row(vec![
            text(&entry["at"]),
            text(&entry["action"]),
            text(&entry["status"]),
            text(&entry["clientId"]),
            text(&entry["nhsNumber"]),
            text(&entry["eventKey"]),
            text(&entry["detail"]),
        ]);
    }
    if table.is_empty() {
        writeln!(out, "no audit entries")?;
    } else {
        write!(out, "{}", table.render(colours))?;
    }
    if let Some(next) = page["next"].as_str() {
        writeln!(out, "more: --page {next}")?;
    }
    Ok(())
}

fn event_types(codes: &[String]) -> Result<Vec<&'static str>> {
    codes
        .iter()
        .map(|code| {
            EventType::from_str(code.trim())
                .map(EventType::code)
                .map_err(|_| format!("--event-types: '{code}' is not an event type").into())
        })
        .collect()
}

async fn subscribers(
    command: Subscribers,
    hub: &HubClient,
    settings: &Settings,
    json: bool,
    colours: Colours,
) -> Result<()> {
    let out = &mut io::stdout();
    let own = |id: Option<String>| -> Result<String> {
        Ok(match id {
            Some(id) => id,
            None => settings
                .require("subscriber_id", &settings.profile.subscriber_id)?
                .to_owned(),
        })
    };
    match command {
        Subscribers::Onboard(args) => {
            let types = if args.event_types.is_empty() {
                EventType::ALL.iter().map(|t| t.code()).collect()
            } else {
                event_types(&args.event_types)?
            };
            let mut body = json!({
                "clientId": args.client,
                "odsCode": args.ods,
                "name": args.name,
                "eventTypes": types,
            });
            if let Some(principal) = &args.aws_principal {
                body["awsPrincipal"] = json!(principal);
            }
            if let Some(queue) = &args.queue_arn {
                body["queueArn"] = json!(queue);
            }
            let answer = hub
                .json(
                    Method::POST,
                    "/subscribers",
                    Some(&body),
                    &[StatusCode::CREATED],
                )
                .await?;
            show(out, &answer, json, colours)?;
        }
        Subscribers::Update(args) => {
            let mut body = json!({});
            if let Some(codes) = &args.event_types {
                body["eventTypes"] = json!(event_types(codes)?);
            }
            if let Some(principal) = &args.aws_principal {
                body["awsPrincipal"] = json!(principal);
            }
            let answer = hub
                .json(
                    Method::PATCH,
                    &format!("/subscribers/{}", segment(&args.id)),
                    Some(&body),
                    &[StatusCode::OK],
                )
                .await?;
            show(out, &answer, json, colours)?;
        }
        Subscribers::Offboard(args) => {
            let answer = hub
                .json(
                    Method::DELETE,
                    &format!("/subscribers/{}", segment(&args.id)),
                    None,
                    &[StatusCode::OK],
                )
                .await?;
            let days = text(&answer["queueKeptForDays"]);
            finish(
                out,
                json,
                &answer,
                &format!(
                    "subscriber {} offboarded; its queues are kept {days} days",
                    args.id
                ),
            )?;
        }
        Subscribers::Status(args) => {
            let id = own(args.id)?;
            let status = hub
                .json(
                    Method::GET,
                    &format!("/subscribers/{}/status", segment(&id)),
                    None,
                    &[StatusCode::OK],
                )
                .await?;
            if json {
                writeln!(out, "{status:#}")?;
                return Ok(());
            }
            writeln!(out, "{}  {id}", colours.bold("subscriber"))?;
            writeln!(
                out,
                "{}  {}",
                colours.bold("last delivery"),
                text(&status["lastDeliveryAt"])
            )?;
            let queue = &status["queue"];
            if queue.is_null() {
                writeln!(
                    out,
                    "{}  its own (not the hub's to read)",
                    colours.bold("queue")
                )?;
            } else {
                writeln!(
                    out,
                    "{}  {} waiting, {} in flight, {} delayed",
                    colours.bold("queue"),
                    text(&queue["waiting"]),
                    text(&queue["inFlight"]),
                    text(&queue["delayed"])
                )?;
            }
            let dlq = text(&status["deadLetterQueue"]["waiting"]);
            let dlq = if dlq != "0" && dlq != "-" {
                colours.red(&dlq)
            } else {
                dlq
            };
            writeln!(out, "{}  {dlq} waiting", colours.bold("dead-letter queue"))?;
            let mut table = Table::new(&["EVENT TYPE", "DELIVERED", "LAST DELIVERY"]);
            for row in status["eventTypes"].as_array().into_iter().flatten() {
                table.row(vec![
                    text(&row["eventType"]),
                    text(&row["delivered"]),
                    text(&row["lastDeliveryAt"]),
                ]);
            }
            write!(out, "\n{}", table.render(colours))?;
        }
        Subscribers::Redrive(args) => {
            let id = own(args.id)?;
            let answer = hub
                .json(
                    Method::POST,
                    &format!("/subscribers/{}/$redrive", segment(&id)),
                    None,
                    &[StatusCode::OK],
                )
                .await?;
            finish(
                out,
                json,
                &answer,
                &format!(
                    "{} moved back to the queue; {}",
                    text(&answer["moved"]),
                    if answer["remaining"] == true {
                        "more remain on the dead-letter queue (run it again)"
                    } else {
                        "the dead-letter queue is empty"
                    }
                ),
            )?;
        }
    }
    Ok(())
}

/// `hub reference load`: `hub-local reference load`, the one loader, with
/// the arguments as given.
pub fn reference(command: Reference) -> Result<ExitCode> {
    let Reference::Load(args) = command;
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("hub-local")))
        .filter(|path| path.exists());
    let program = beside.unwrap_or_else(|| PathBuf::from("hub-local"));
    let status = std::process::Command::new(&program)
        .args(["reference", "load"])
        .args(&args.options)
        .status()
        .map_err(|e| {
            format!(
                "running {}: {e} (hub-local is built with the hub: cargo build -p hub-local)",
                program.display()
            )
        })?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// `hub config`: the settings in force, the key file's path but never the key.
pub fn show_config(settings: &Settings, json: bool) -> Result<()> {
    let profile = &settings.profile;
    let value = json!({
        "configFile": settings.path.display().to_string(),
        "url": profile.url,
        "clientId": profile.client_id,
        "keyFile": profile.key_file.as_ref().map(|p| p.display().to_string()),
        "keyId": profile.client_id.as_deref().map(|id| settings.key_id(id)),
        "odsCode": profile.ods_code,
        "subscriberId": profile.subscriber_id,
        "queueUrl": profile.queue_url,
        "emulator": profile.emulator,
    });
    Ok(show(
        &mut io::stdout(),
        &value,
        json,
        Colours::for_stdout(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_is_a_path_on_the_hub() {
        let bundle = json!({"link": [
            {"relation": "self", "url": "https://hub.example/prod/Subscription?_count=2"},
            {"relation": "next", "url": "https://hub.example/prod/Subscription?_count=2&_page=abc"}
        ]});
        assert_eq!(
            next_link(&bundle, "https://hub.example/prod").as_deref(),
            Some("/Subscription?_count=2&_page=abc")
        );
        assert_eq!(next_link(&json!({"link": []}), "https://hub.example"), None);
    }

    #[test]
    fn an_object_is_shown_as_aligned_lines_with_register_facts_spelt_out() {
        let record = json!({
            "nhsNumber": "9912003888",
            "gpPractice": {"value": "B86056", "changedAt": "2017-11-01T15:00:33Z", "byEvent": "pds-change-of-gp-1/x"},
            "death": null,
        });
        let mut out = Vec::new();
        show(&mut out, &record, false, Colours::never()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "death       -\n\
             gpPractice  B86056  (since 2017-11-01T15:00:33Z, by pds-change-of-gp-1/x)\n\
             nhsNumber   9912003888\n"
        );
        let mut out = Vec::new();
        show(&mut out, &record, true, Colours::never()).unwrap();
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed, record, "--json: the hub's JSON as it is");
    }
}
