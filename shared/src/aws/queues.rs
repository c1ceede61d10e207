//! The queue provisioner: each subscriber's SQS queue and DLQ, their
//! policies and key grants, and their SNS topic subscriptions.

use std::collections::BTreeMap;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;

use super::{required_env, topic_arns_from_env, unavailable, unavailable_because};
use crate::access::{self, AwsPrincipal, QueueAccess};
use crate::catalogue::EventType;
use crate::dispatch::SUBSCRIBER_ATTRIBUTE;
use crate::ports::{QueueProvisioner, StoreError};
use crate::subscriber::Queues;

/// An environment variable's value, trimmed; None when unset or empty.
fn optional_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// Settings of the queues onboarding creates.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Prefix of every queue name (the stack's name), at most 39 characters
    /// so that `<prefix>-<uuid>-dlq` fits SQS's 80.
    pub name_prefix: String,
    /// Receives after which a message moves to the DLQ.
    pub max_receive_count: u32,
    /// How long an undelivered message is kept, in seconds (SQS allows 14 days).
    pub retention_seconds: u32,
    /// The KMS key (id, ARN or alias) that encrypts every queue and DLQ;
    /// `None` leaves SQS's default encryption.
    pub kms_master_key_id: Option<String>,
    /// The hub's queue for what SNS cannot deliver to a subscriber's queue
    /// (deleted, or its policy or key refusing SNS): the redrive policy of
    /// every topic subscription, so that such messages are kept for
    /// redrive rather than discarded. `None`: SNS discards them.
    pub undelivered_queue_arn: Option<String>,
}

impl QueueSettings {
    /// QUEUE_NAME_PREFIX, QUEUE_MAX_RECEIVE_COUNT, QUEUE_RETENTION_SECONDS,
    /// and QUEUE_KMS_KEY_ID and UNDELIVERED_QUEUE_ARN if set and not empty.
    pub fn from_env() -> Result<Self, StoreError> {
        let number = |name: &str| {
            required_env(name)?.parse::<u32>().map_err(|_| {
                StoreError::Configuration(format!(
                    "environment variable {name} is not a whole number"
                ))
            })
        };
        Ok(QueueSettings {
            name_prefix: required_env("QUEUE_NAME_PREFIX")?,
            max_receive_count: number("QUEUE_MAX_RECEIVE_COUNT")?,
            retention_seconds: number("QUEUE_RETENTION_SECONDS")?,
            kms_master_key_id: optional_env("QUEUE_KMS_KEY_ID"),
            undelivered_queue_arn: optional_env("UNDELIVERED_QUEUE_ARN"),
        })
    }
}

/// Creates each subscriber's queue and DLQ (or takes the queue it owns),
/// subscribes the queue to the topics of the event types it may receive,
/// filtered to its own id, and lets the subscriber's principal read them.
#[derive(Clone)]
pub struct SqsQueueProvisioner {
    sqs: aws_sdk_sqs::Client,
    sns: aws_sdk_sns::Client,
    kms: aws_sdk_kms::Client,
    topics: BTreeMap<EventType, String>,
    settings: QueueSettings,
}

impl SqsQueueProvisioner {
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        sns: aws_sdk_sns::Client,
        kms: aws_sdk_kms::Client,
        topics: BTreeMap<EventType, String>,
        settings: QueueSettings,
    ) -> Self {
        SqsQueueProvisioner {
            sqs,
            sns,
            kms,
            topics,
            settings,
        }
    }

    /// The clients of the configuration, the topics of TOPIC_ARN_*, and
    /// the settings of [`QueueSettings::from_env`].
    pub fn from_env(config: &aws_config::SdkConfig) -> Result<Self, StoreError> {
        Ok(Self::new(
            aws_sdk_sqs::Client::new(config),
            aws_sdk_sns::Client::new(config),
            aws_sdk_kms::Client::new(config),
            topic_arns_from_env()?,
            QueueSettings::from_env()?,
        ))
    }

    async fn create_queue(
        &self,
        name: String,
        attributes: Vec<(QueueAttributeName, String)>,
    ) -> Result<(String, String), StoreError> {
        let mut request = self.sqs.create_queue().queue_name(name);
        for (key, value) in attributes {
            request = request.attributes(key, value);
        }
        let url = request
            .send()
            .await
            .map_err(|error| unavailable("creating a queue", error))?
            .queue_url
            .ok_or_else(|| unavailable_because("SQS returned no queue URL"))?;
        let arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|error| unavailable("reading a queue's ARN", error))?
            .attributes
            .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| unavailable_because("SQS returned no queue ARN"))?;
        Ok((url, arn))
    }

    fn topic_arns(&self, event_types: &[EventType]) -> Result<Vec<&str>, StoreError> {
        event_types
            .iter()
            .map(|event_type| {
                self.topics
                    .get(event_type)
                    .map(String::as_str)
                    .ok_or_else(|| {
                        StoreError::Configuration(format!(
                            "no topic is configured for {event_type}"
                        ))
                    })
            })
            .collect()
    }

    async fn set_policy(
        &self,
        queue_url: &str,
        policy: serde_json::Value,
        what: &str,
    ) -> Result<(), StoreError> {
        self.sqs
            .set_queue_attributes()
            .queue_url(queue_url)
            .attributes(QueueAttributeName::Policy, policy.to_string())
            .send()
            .await
            .map_err(|error| unavailable(what, error))?;
        Ok(())
    }

    /// The queue's and DLQ's policies for these topics and this reader.
    async fn set_policies(
        &self,
        queues: &Queues,
        topic_arns: &[&str],
        reader: Option<&AwsPrincipal>,
    ) -> Result<(), StoreError> {
        self.set_policy(
            &queues.dead_letter_queue_url,
            access::dead_letter_queue_policy(&queues.dead_letter_queue_arn, reader),
            "setting the DLQ policy",
        )
        .await?;
        self.set_policy(
            &queues.queue_url,
            access::queue_policy(&queues.queue_arn, topic_arns, reader),
            "setting the queue policy",
        )
        .await
    }

    /// Lets the reader decrypt its queue's and DLQ's messages, and nothing
    /// else under the hub's key: each grant is bound to one queue's
    /// encryption context. None without a reader or a key.
    async fn grant_reader(
        &self,
        subscriber_id: &str,
        queues: &Queues,
        reader: Option<&AwsPrincipal>,
    ) -> Result<Vec<String>, StoreError> {
        let (Some(reader), Some(key)) = (reader, &self.settings.kms_master_key_id) else {
            return Ok(Vec::new());
        };
        let mut grants = Vec::new();
        for (queue_arn, which) in [
            (&queues.queue_arn, "queue"),
            (&queues.dead_letter_queue_arn, "dlq"),
        ] {
            let (context_key, context_value) = access::queue_encryption_context(queue_arn);
            let granted = self
                .kms
                .create_grant()
                .key_id(key)
                .grantee_principal(reader.arn())
                .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
                .constraints(
                    aws_sdk_kms::types::GrantConstraints::builder()
                        .encryption_context_subset(context_key, context_value)
                        .build(),
                )
                .name(format!(
                    "{}-{subscriber_id}-{which}",
                    self.settings.name_prefix
                ))
                .send()
                .await
                .map_err(|error| {
                    unavailable("granting the subscriber's principal its queue's key", error)
                })?;
            grants.extend(granted.grant_id);
        }
        Ok(grants)
    }

    async fn revoke(&self, grants: &[String]) -> Result<(), StoreError> {
        let Some(key) = &self.settings.kms_master_key_id else {
            return Ok(());
        };
        for grant in grants {
            let revoked = self
                .kms
                .revoke_grant()
                .key_id(key)
                .grant_id(grant)
                .send()
                .await;
            match revoked {
                Ok(_) => {}
                // Already revoked (an earlier, interrupted change).
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_not_found_exception()) => {}
                Err(error) => {
                    return Err(unavailable("revoking a key grant", error));
                }
            }
        }
        Ok(())
    }

    /// Subscribes the queue to one topic, raw, filtered to the subscriber.
    async fn subscribe(
        &self,
        subscriber_id: &str,
        topic_arn: &str,
        queue_arn: &str,
    ) -> Result<Option<String>, StoreError> {
        let filter = json!({ SUBSCRIBER_ATTRIBUTE: [subscriber_id] }).to_string();
        let mut request = self
            .sns
            .subscribe()
            .topic_arn(topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .attributes("RawMessageDelivery", "true")
            .attributes("FilterPolicy", &filter)
            .return_subscription_arn(true);
        if let Some(undelivered) = &self.settings.undelivered_queue_arn {
            request = request.attributes(
                "RedrivePolicy",
                json!({ "deadLetterTargetArn": undelivered }).to_string(),
            );
        }
        let subscribed = request
            .send()
            .await
            .map_err(|error| unavailable("subscribing the queue to a topic", error))?;
        Ok(subscribed.subscription_arn)
    }

    async fn unsubscribe_one(&self, subscription_arn: &str) -> Result<(), StoreError> {
        let removed = self
            .sns
            .unsubscribe()
            .subscription_arn(subscription_arn)
            .send()
            .await;
        match removed {
            Ok(_) => Ok(()),
            // Already gone (an earlier, interrupted offboarding): nothing to do.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_not_found_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(unavailable("removing a topic subscription", error)),
        }
    }
}

impl QueueProvisioner for SqsQueueProvisioner {
    async fn provision(
        &self,
        subscriber_id: &str,
        event_types: &[EventType],
        queue_access: &QueueAccess,
    ) -> Result<Queues, StoreError> {
        let topic_arns = self.topic_arns(event_types)?;
        let mut queues = match queue_access {
            // The subscriber's queue already exists, in its account: the hub
            // only subscribes it (its owner confirms each subscription).
            QueueAccess::SubscriberOwned { queue_arn } => Queues {
                queue_url: queue_arn.url(),
                queue_arn: queue_arn.arn().to_owned(),
                dead_letter_queue_url: String::new(),
                dead_letter_queue_arn: String::new(),
                topic_subscriptions: Vec::new(),
                key_grants: Vec::new(),
            },
            QueueAccess::HubOwned { principal } => {
                let retention = self.settings.retention_seconds.to_string();
                let base_name = format!("{}-{subscriber_id}", self.settings.name_prefix);
                // Both queues encrypted with the hub's key when one is configured.
                let mut common = vec![(QueueAttributeName::MessageRetentionPeriod, retention)];
                if let Some(key) = &self.settings.kms_master_key_id {
                    common.push((QueueAttributeName::KmsMasterKeyId, key.clone()));
                }
                let (dlq_url, dlq_arn) = self
                    .create_queue(format!("{base_name}-dlq"), common.clone())
                    .await?;
                let redrive = json!({
                    "deadLetterTargetArn": dlq_arn,
                    "maxReceiveCount": self.settings.max_receive_count.to_string(),
                });
                let mut attributes = common;
                attributes.push((QueueAttributeName::RedrivePolicy, redrive.to_string()));
                let (queue_url, queue_arn) = self.create_queue(base_name, attributes).await?;
                let mut queues = Queues {
                    queue_url,
                    queue_arn,
                    dead_letter_queue_url: dlq_url,
                    dead_letter_queue_arn: dlq_arn,
                    topic_subscriptions: Vec::new(),
                    key_grants: Vec::new(),
                };
                self.set_policies(&queues, &topic_arns, principal.as_ref())
                    .await?;
                queues.key_grants = self
                    .grant_reader(subscriber_id, &queues, principal.as_ref())
                    .await?;
                queues
            }
        };
        for topic_arn in topic_arns {
            queues.topic_subscriptions.extend(
                self.subscribe(subscriber_id, topic_arn, &queues.queue_arn)
                    .await?,
            );
        }
        Ok(queues)
    }

    async fn reconfigure(
        &self,
        subscriber_id: &str,
        queues: &Queues,
        event_types: &[EventType],
        queue_access: &QueueAccess,
    ) -> Result<Queues, StoreError> {
        let wanted = self.topic_arns(event_types)?;
        let mut next = queues.clone();
        // New deliveries first: the queue is admitted by the new topics
        // before they are subscribed, and subscribed before any is removed.
        if let QueueAccess::HubOwned { principal } = queue_access {
            let mut admitted: Vec<&str> = wanted.clone();
            let current = queues.topic_arns();
            admitted.extend(current.iter().map(String::as_str));
            admitted.sort_unstable();
            admitted.dedup();
            self.set_policies(queues, &admitted, principal.as_ref())
                .await?;
        }
        let current = queues.topic_arns();
        for topic_arn in &wanted {
            if !current.iter().any(|arn| arn == topic_arn) {
                next.topic_subscriptions.extend(
                    self.subscribe(subscriber_id, topic_arn, &queues.queue_arn)
                        .await?,
                );
            }
        }
        let mut kept = Vec::new();
        for subscription_arn in &next.topic_subscriptions {
            let topic = subscription_arn
                .rsplit_once(':')
                .map(|(topic, _)| topic)
                .unwrap_or_default();
            if wanted.contains(&topic) {
                kept.push(subscription_arn.clone());
            } else {
                self.unsubscribe_one(subscription_arn).await?;
            }
        }
        next.topic_subscriptions = kept;
        if let QueueAccess::HubOwned { principal } = queue_access {
            // Exactly the wanted topics now; the new reader's grants before
            // the old reader's go.
            self.set_policies(queues, &wanted, principal.as_ref())
                .await?;
            next.key_grants = self
                .grant_reader(subscriber_id, queues, principal.as_ref())
                .await?;
            self.revoke(&queues.key_grants).await?;
        }
        Ok(next)
    }

    async fn unsubscribe(&self, queues: &Queues) -> Result<(), StoreError> {
        for subscription_arn in &queues.topic_subscriptions {
            self.unsubscribe_one(subscription_arn).await?;
        }
        Ok(())
    }
}
