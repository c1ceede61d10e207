//! `subscriptions` and `replay`.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use hub_cli::api::{Body, HubClient, segment};
use hub_cli::config::Settings;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::output::{Colours, Table};

use super::*;

pub(super) async fn subscriptions(
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
                // The id alone on stdout, for `SUB=$(hub-cli subscriptions create ...)`.
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
pub(super) fn next_link(bundle: &Value, base: &str) -> Option<String> {
    let url = bundle["link"]
        .as_array()?
        .iter()
        .find(|link| link["relation"] == "next")?["url"]
        .as_str()?;
    Some(url.strip_prefix(base).unwrap_or(url).to_owned())
}

pub(super) async fn read_replay(hub: &HubClient, id: &str) -> Result<Value> {
    Ok(hub
        .json(
            Method::GET,
            &format!("/replays/{}", segment(id)),
            None,
            &[StatusCode::OK],
        )
        .await?)
}

pub(super) async fn replay(args: ReplayArgs, hub: &HubClient, json: bool) -> Result<()> {
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

pub(super) fn page_query(count: Option<u32>, page: &Option<String>) -> String {
    let mut query = String::new();
    if let Some(count) = count {
        query.push_str(&format!("&_count={count}"));
    }
    if let Some(page) = page {
        query.push_str(&format!("&_page={}", segment(page)));
    }
    query
}
