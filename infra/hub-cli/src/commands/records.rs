//! `children` and `audit`.

use std::io::{self, Write};
use std::str::FromStr;

use hub::EventType;
use hub_cli::api::{HubClient, segment};
use reqwest::{Method, StatusCode};

use crate::output::{Colours, Table};

use super::*;

pub(super) async fn children(
    args: ChildrenArgs,
    hub: &HubClient,
    json: bool,
    colours: Colours,
) -> Result<()> {
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
                eprintln!("hub-cli: {reason}");
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

pub(super) async fn audit(
    args: AuditArgs,
    hub: &HubClient,
    json: bool,
    colours: Colours,
) -> Result<()> {
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

pub(super) fn event_types(codes: &[String]) -> Result<Vec<&'static str>> {
    codes
        .iter()
        .map(|code| {
            EventType::from_str(code.trim())
                .map(EventType::code)
                .map_err(|_| format!("--event-types: '{code}' is not an event type").into())
        })
        .collect()
}
