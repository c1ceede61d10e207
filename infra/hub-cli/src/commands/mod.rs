//! The commands that call the hub's API (all but `poll` and `publish`):
//! each sends one request, or a few, and shows the answer.

use std::error::Error;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use hub_cli::api::{Body, ClientKey, HubClient, segment};
use hub_cli::config::Settings;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::Command;
use crate::output::Colours;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

mod args;
mod records;
mod subscribers;
mod subscriptions;

pub use args::*;
use records::*;
use subscribers::*;
use subscriptions::*;

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

/// `hub-cli reference load`: `hub-local reference load`, the one loader, with
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

/// `hub-cli config`: the settings in force, the key file's path but never the key.
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
mod tests;
