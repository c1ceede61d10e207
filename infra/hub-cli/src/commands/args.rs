//! The command-line arguments of the API commands.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum Subscriptions {
    /// Create a subscription from a criteria string (docs/subscriptions.md)
    ///
    /// Prints the new subscription's id (with --json, the subscription).
    #[command(
        after_help = "Example:\n  hub-cli --profile local-subscriber-1 subscriptions create \\\n    \
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
    /// The replay's id (`hub-cli replay` prints it)
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
        after_help = "Example:\n  hub-cli --profile local-operator subscribers onboard --client demo-subscriber-2 \\\n    \
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

    /// Its service type (GP, CHO, UHV or EPCHR): what release embargoes apply to it
    #[arg(long, value_name = "TYPE")]
    pub service_type: Option<String>,
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

    /// Its service type (GP, CHO, UHV or EPCHR): what release embargoes apply
    /// to events dispatched from now on
    #[arg(long, value_name = "TYPE")]
    pub service_type: Option<String>,
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
    /// Runs `hub-local reference load` (installed beside `hub-cli`) with the
    /// arguments given: it writes the reference table directly, with AWS
    /// credentials, not through the API. Its options: --onspd FILE
    /// --epraccur FILE --sub-icb FILE [--table NAME] [--endpoint URL]
    /// [--region R] [--in-flight N] [--progress-every N] [--create-table]
    /// [--check]; without --table, the running local stack's table.
    #[command(
        after_help = "Example:\n  hub-cli reference load --sub-icb SICBL.csv --onspd ONSPD.csv --epraccur epraccur.csv --check"
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
