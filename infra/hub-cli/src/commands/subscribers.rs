//! `subscribers`: onboarding and updating subscriber organisations.

use std::io::{self, Write};

use hub::EventType;
use hub_cli::api::{HubClient, segment};
use hub_cli::config::Settings;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::output::{Colours, Table};

use super::*;

pub(super) async fn subscribers(
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
            if let Some(service_type) = &args.service_type {
                body["serviceType"] = json!(service_type);
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
            if let Some(service_type) = &args.service_type {
                body["serviceType"] = json!(service_type);
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
