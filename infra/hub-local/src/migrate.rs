//! `hub-local migrate subscription-bases`: gives every explicit subscription
//! made before bases were recorded the basis that holds now
//! (`hub::app::subscription::migrate_basis`): registered-gp when the child
//! register places the child at the subscription's practice, else
//! declared-direct-care, which is how the hub has read such a subscription
//! until then. Functions may not Scan, so this runs offline, by an
//! operator, against the local stack, another emulator or AWS. It writes
//! each basis once, conditionally, so a run can be repeated after any
//! failure; `--dry-run` counts without writing.

use std::collections::BTreeMap;
use std::process::ExitCode;

use hub::app::subscription::{basis_to_migrate, migrate_basis};
use hub::aws::{DynamoRegisterStore, DynamoSubscriptionStore};
use hub::criteria::Target;
use hub::ports::Adapters;

use crate::reference::{Target as TableTarget, dynamodb_client, target};
use crate::template::STACK_NAME;

/// `hub-local migrate subscription-bases`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BasesArgs {
    /// The subscriptions table; without --endpoint, a table in AWS.
    #[arg(long, value_name = "NAME")]
    pub subscriptions_table: Option<String>,
    /// The child register table (needed with --subscriptions-table).
    #[arg(long, value_name = "NAME")]
    pub register_table: Option<String>,
    /// An emulator's endpoint (default: the local stack's).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    #[arg(long, value_name = "R")]
    pub region: Option<String>,
    /// The local stack's emulator port (else HUB_EMULATOR_PORT, else 4566).
    #[arg(long, value_name = "N")]
    pub emulator_port: Option<u16>,
    /// Decide and count; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What a run did, by outcome.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// Explicit subscriptions given a basis, by basis kind.
    pub assigned: BTreeMap<&'static str, usize>,
    /// Explicit subscriptions that already had one.
    pub already: usize,
    /// Generic subscriptions: their rule is their basis.
    pub generic: usize,
}

/// Walks the subscriptions table a page at a time and records a basis on
/// each explicit subscription without one.
pub async fn subscription_bases(
    subscriptions: &DynamoSubscriptionStore,
    register: &DynamoRegisterStore,
    dry_run: bool,
) -> Result<Migrated, String> {
    let ports = Adapters::new()
        .subscriptions(subscriptions)
        .register(register);
    let mut migrated = Migrated::default();
    let mut page_token = None;
    loop {
        let page = subscriptions
            .scan_page(page_token.as_deref())
            .await
            .map_err(|error| format!("reading the subscriptions: {error}"))?;
        for subscription in &page.items {
            let explicit = matches!(subscription.criteria.target, Target::Explicit(_));
            if !explicit {
                migrated.generic += 1;
                continue;
            }
            if subscription.basis.is_some() {
                migrated.already += 1;
                continue;
            }
            let assigned = if dry_run {
                basis_to_migrate(&ports, subscription).await
            } else {
                migrate_basis(&ports, subscription).await
            }
            .map_err(|error| format!("subscription {}: {error}", subscription.id))?;
            match assigned {
                Some(basis) => *migrated.assigned.entry(basis.kind()).or_default() += 1,
                None => migrated.already += 1,
            }
        }
        match page.next {
            Some(next) => page_token = Some(next),
            None => return Ok(migrated),
        }
    }
}

/// The command: the tables, then the run, then its counts.
pub async fn command(args: BasesArgs, emulator_port: u16) -> Result<ExitCode, String> {
    let (subscriptions_table, register_table) = match (
        args.subscriptions_table,
        args.register_table,
    ) {
        (Some(subscriptions), Some(register)) => (Some(subscriptions), register),
        (None, None) => (None, format!("{STACK_NAME}-RegisterTable")),
        _ => {
            return Err(
                    "give both --subscriptions-table and --register-table, or neither (the local stack's)"
                        .into(),
                );
        }
    };
    // The endpoint and region as `reference load` chooses them: the local
    // stack's emulator unless a table or an endpoint is given.
    let target: TableTarget = target(
        subscriptions_table.clone(),
        args.endpoint,
        args.region,
        emulator_port,
    );
    let subscriptions_table =
        subscriptions_table.unwrap_or_else(|| format!("{STACK_NAME}-SubscriptionsTable"));
    let client = dynamodb_client(&target).await;
    let subscriptions = DynamoSubscriptionStore::new(client.clone(), &subscriptions_table);
    let register = DynamoRegisterStore::new(client, &register_table);
    println!(
        "Recording a basis on the explicit subscriptions of {subscriptions_table} without one \
         (register {register_table}){}.",
        if args.dry_run {
            ", writing nothing"
        } else {
            ""
        }
    );
    let migrated = subscription_bases(&subscriptions, &register, args.dry_run).await?;
    println!("{}", summary(&migrated, args.dry_run));
    Ok(ExitCode::SUCCESS)
}

/// One line of counts.
pub fn summary(migrated: &Migrated, dry_run: bool) -> String {
    let verb = if dry_run { "would record" } else { "recorded" };
    let assigned: Vec<String> = migrated
        .assigned
        .iter()
        .map(|(kind, count)| format!("{count} {kind}"))
        .collect();
    let assigned = if assigned.is_empty() {
        "none".to_owned()
    } else {
        assigned.join(", ")
    };
    format!(
        "Bases {verb}: {assigned}; {} explicit subscriptions already had one; {} generic \
         subscriptions need none.",
        migrated.already, migrated.generic
    )
}
