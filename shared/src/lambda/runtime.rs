//! Start-up of every function: tracing, the SDK configuration and the
//! clients whose connections are opened during init.

use std::future::Future;

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use tracing::info;

use crate::auth::HubVerifier;
use crate::aws::{
    DynamoAuditLog, DynamoClientStore, DynamoDeliveryStats, DynamoEventStore, DynamoReferenceData,
    DynamoRegisterStore, DynamoRelationshipStore, DynamoReplayStore, DynamoSubscriberStore,
    DynamoSubscriptionStore, DynamoUsedAssertionIds, KmsSigningKey, SnsDeliveryPublisher,
    SqsQueueMonitor, SqsQueueProvisioner, kms_verifiers, required_env, topic_arns_from_env,
};
use crate::catalogue::EventType;
use crate::ports::StoreError;

pub use lambda_runtime::{Error, LambdaEvent, run, service_fn};

/// Libraries whose debug logs would carry message bodies, tokens or
/// patient identifiers.
const LIBRARIES_CAPPED_AT_INFO: [&str; 7] = [
    "lambda_runtime",
    "lambda_runtime_api_client",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "hyper",
    "hyper_util",
];

/// Logs go to stdout (CloudWatch); JSON when the function's log format is
/// JSON. Level from AWS_LAMBDA_LOG_LEVEL, else RUST_LOG, else info.
pub fn init_tracing() {
    use tracing_subscriber::Layer;
    // Metrics are log lines too: their namespace is set with the logs'.
    crate::metrics::use_namespace(
        std::env::var(crate::metrics::NAMESPACE_VARIABLE)
            .ok()
            .as_deref(),
    );
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let setting = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let filter = log_filter(setting.as_deref());
    let layer = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT")
        .is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry();
    if json {
        let layer = layer.json().with_current_span(false).with_filter(filter);
        registry.with(layer).init();
    } else {
        registry
            .with(layer.with_ansi(false).with_filter(filter))
            .init();
    }
}

/// The log filter of a level setting (`debug`, or per target:
/// `info,hub=debug`); info when unset or unreadable. The libraries of
/// [`LIBRARIES_CAPPED_AT_INFO`] log at most at INFO, and no more than the
/// default level. A plain target filter, not `EnvFilter`: its regular
/// expressions would cost binary size and start-up time for syntax
/// (span and field filters) a Lambda log level never uses.
fn log_filter(setting: Option<&str>) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};

    // Lambda's log levels include FATAL, which tracing calls ERROR.
    let requested = setting
        .map(|setting| setting.to_ascii_lowercase().replace("fatal", "error"))
        .and_then(|setting| setting.parse::<Targets>().ok())
        .unwrap_or_default();
    let default = requested.default_level().unwrap_or(LevelFilter::INFO);
    let requested = requested.with_default(default);
    let capped = default.min(LevelFilter::INFO);
    LIBRARIES_CAPPED_AT_INFO
        .iter()
        .fold(requested, |targets, library| {
            targets.with_target(*library, capped)
        })
}

/// The SDK configuration, loaded once per container. AWS_ENDPOINT_URL, when
/// set, points every client at the local emulator.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// How long init waits for a warm-up call (Lambda allows 10 s of init).
const WARM_UP_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The DynamoDB client, its connection opened during init.
///
/// Every function's first invocation calls DynamoDB (at least the audit
/// record): without this its caller would wait for the TCP and TLS
/// handshakes and the credentials. `DescribeEndpoints` reads nothing of the
/// hub's; its answer is ignored.
pub async fn dynamodb_client(config: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    let client = aws_sdk_dynamodb::Client::new(config);
    let once = aws_sdk_dynamodb::config::Builder::default()
        .retry_config(aws_config::retry::RetryConfig::disabled());
    warm_up(
        "dynamodb",
        client
            .describe_endpoints()
            .customize()
            .config_override(once)
            .send(),
    )
    .await;
    client
}

/// The SNS client for these topics, its connection opened during init by
/// reading one topic's attributes (see [`dynamodb_client`]).
pub async fn sns_client(
    config: &aws_config::SdkConfig,
    topics: &std::collections::BTreeMap<EventType, String>,
) -> aws_sdk_sns::Client {
    let client = aws_sdk_sns::Client::new(config);
    if let Some(topic) = topics.values().next() {
        let once = aws_sdk_sns::config::Builder::default()
            .retry_config(aws_config::retry::RetryConfig::disabled());
        warm_up(
            "sns",
            client
                .get_topic_attributes()
                .topic_arn(topic)
                .customize()
                .config_override(once)
                .send(),
        )
        .await;
    }
    client
}

/// One call, not retried and bounded in time, whose only purpose is the
/// connection it leaves in the client's pool. A failure costs nothing but
/// the first invocation connecting itself.
async fn warm_up<T, E>(service: &'static str, call: impl Future<Output = Result<T, E>>) {
    match tokio::time::timeout(WARM_UP_LIMIT, call).await {
        Ok(Ok(_)) => tracing::debug!(service, "connection opened during init"),
        Ok(Err(_)) => info!(
            service,
            "warm-up call failed: the first invocation connects"
        ),
        Err(_) => info!(
            service,
            "warm-up call timed out: the first invocation connects"
        ),
    }
}

/// Every function's start: tracing, the SDK configuration, and the DynamoDB
/// client every function uses, its connection opened during init.
pub(super) async fn start() -> Aws {
    init_tracing();
    let config = sdk_config().await;
    let dynamodb = dynamodb_client(&config).await;
    Aws { config, dynamodb }
}

/// What a function's adapters are built from: the one place that says which
/// settings (environment variables) each AWS adapter reads. A function's
/// main connects the adapters it uses to `ports::Adapters`, at init, so a
/// missing setting fails the start, as the function's template entry
/// provides only its own tables and topics.
pub(super) struct Aws {
    config: aws_config::SdkConfig,
    dynamodb: aws_sdk_dynamodb::Client,
}

impl Aws {
    pub(super) fn events(&self) -> Result<DynamoEventStore, StoreError> {
        DynamoEventStore::from_env(self.dynamodb.clone())
    }

    pub(super) fn subscriptions(&self) -> Result<DynamoSubscriptionStore, StoreError> {
        Ok(DynamoSubscriptionStore::new(
            self.dynamodb.clone(),
            required_env("SUBSCRIPTIONS_TABLE")?,
        ))
    }

    pub(super) fn subscribers(&self) -> Result<DynamoSubscriberStore, StoreError> {
        Ok(DynamoSubscriberStore::new(
            self.dynamodb.clone(),
            required_env("SUBSCRIBERS_TABLE")?,
        ))
    }

    pub(super) fn clients(&self) -> Result<DynamoClientStore, StoreError> {
        Ok(DynamoClientStore::new(
            self.dynamodb.clone(),
            required_env("CLIENTS_TABLE")?,
        ))
    }

    /// The assertion ids already exchanged (the template's REPLAY_TABLE).
    pub(super) fn used_ids(&self) -> Result<DynamoUsedAssertionIds, StoreError> {
        Ok(DynamoUsedAssertionIds::new(
            self.dynamodb.clone(),
            required_env("REPLAY_TABLE")?,
        ))
    }

    pub(super) fn audit(&self) -> Result<DynamoAuditLog, StoreError> {
        DynamoAuditLog::from_env(self.dynamodb.clone())
    }

    pub(super) fn replays(&self) -> Result<DynamoReplayStore, StoreError> {
        DynamoReplayStore::from_env(self.dynamodb.clone())
    }

    pub(super) fn register(&self) -> Result<DynamoRegisterStore, StoreError> {
        DynamoRegisterStore::from_env(self.dynamodb.clone())
    }

    pub(super) fn relationships(&self) -> Result<DynamoRelationshipStore, StoreError> {
        DynamoRelationshipStore::from_env(self.dynamodb.clone())
    }

    pub(super) fn stats(&self) -> Result<DynamoDeliveryStats, StoreError> {
        DynamoDeliveryStats::from_env(self.dynamodb.clone())
    }

    pub(super) fn reference(&self) -> Result<DynamoReferenceData, StoreError> {
        DynamoReferenceData::from_env(self.dynamodb.clone())
    }

    pub(super) fn embargoes(&self) -> Result<crate::aws::DynamoEmbargoStore, StoreError> {
        crate::aws::DynamoEmbargoStore::from_env(self.dynamodb.clone())
    }

    pub(super) fn provisioner(&self) -> Result<SqsQueueProvisioner, StoreError> {
        SqsQueueProvisioner::from_env(&self.config)
    }

    /// The event types' topics, the SNS connection opened during init.
    pub(super) async fn publisher(&self) -> Result<SnsDeliveryPublisher, StoreError> {
        let topics = topic_arns_from_env()?;
        Ok(SnsDeliveryPublisher::new(
            sns_client(&self.config, &topics).await,
            topics,
        ))
    }

    /// The subscriber queues' depths and DLQs.
    pub(super) fn queues(&self) -> SqsQueueMonitor {
        SqsQueueMonitor::new(aws_sdk_sqs::Client::new(&self.config))
    }

    /// The queues as [`Aws::queues`], and the states of their topic
    /// subscriptions.
    pub(super) fn queues_with_subscriptions(&self) -> Result<SqsQueueMonitor, StoreError> {
        Ok(self.queues().with_subscriptions(
            aws_sdk_sns::Client::new(&self.config),
            topic_arns_from_env()?,
        ))
    }

    /// The KMS key the hub signs its access tokens with.
    pub(super) async fn signing_key(&self) -> Result<KmsSigningKey, StoreError> {
        KmsSigningKey::load(
            aws_sdk_kms::Client::new(&self.config),
            &required_env("HUB_SIGNING_KEY_ID")?,
        )
        .await
    }

    /// The hub's public keys, read once: the current one and, during a
    /// rotation, the previous one.
    pub(super) async fn verifiers(&self) -> Result<Vec<HubVerifier>, StoreError> {
        kms_verifiers(
            &aws_sdk_kms::Client::new(&self.config),
            &required_env("HUB_VERIFYING_KEY_IDS")?,
        )
        .await
    }
}

/// Answers API Gateway requests with `handler` until the runtime stops.
pub(super) async fn serve_api<H, Fut>(handler: H) -> Result<(), Error>
where
    H: Fn(ApiGatewayProxyRequest) -> Fut,
    Fut: Future<Output = ApiGatewayProxyResponse>,
{
    let handler = &handler;
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayProxyRequest>| {
            // Boxed: the handlers' futures nest deeply enough to overflow
            // the compiler's layout queries when inlined into the runtime's.
            let answer = Box::pin(handler(event.payload));
            async move { Ok::<_, Error>(answer.await) }
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_level_comes_from_the_setting_and_libraries_stay_at_info() {
        use tracing::Level;
        let hub = "hub::dispatch";
        let sdk = "aws_smithy_runtime::client::orchestrator";
        for (setting, hub_level, sdk_level) in [
            (None, Level::INFO, Level::INFO),
            (Some("DEBUG"), Level::DEBUG, Level::INFO),
            (Some("trace"), Level::TRACE, Level::INFO),
            (Some("WARN"), Level::WARN, Level::WARN),
            (Some("FATAL"), Level::ERROR, Level::ERROR),
            (Some("info,hub=debug"), Level::DEBUG, Level::INFO),
            (Some("aws_smithy_runtime=trace"), Level::INFO, Level::INFO),
            (Some("not a level!"), Level::INFO, Level::INFO),
        ] {
            let filter = log_filter(setting);
            for (target, wanted) in [(hub, hub_level), (sdk, sdk_level)] {
                assert!(
                    filter.would_enable(target, &wanted),
                    "{setting:?}: {target} at {wanted}"
                );
                let finer = match wanted {
                    Level::ERROR => Level::WARN,
                    Level::WARN => Level::INFO,
                    Level::INFO => Level::DEBUG,
                    _ => Level::TRACE,
                };
                if wanted != Level::TRACE {
                    assert!(
                        !filter.would_enable(target, &finer),
                        "{setting:?}: {target} not at {finer}"
                    );
                }
            }
        }
    }
}
