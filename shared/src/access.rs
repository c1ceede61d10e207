//! Who reads a subscriber's deliveries, and the policy documents that let
//! exactly them: a queue the hub owns, read by the subscriber's own AWS
//! principal, or a queue in the subscriber's own account that the hub's
//! topics deliver to.

use serde::{Deserialize, Serialize};
use serde_json::json;

/// An AWS account (as its root principal) or an IAM role: who polls a
/// hub-owned queue from the subscriber's own AWS account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AwsPrincipal(String);

impl AwsPrincipal {
    /// A 12-digit account id, `arn:aws:iam::<account>:root`, or
    /// `arn:aws:iam::<account>:role/<path/><name>`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if is_account(text) {
            return Some(AwsPrincipal(format!("arn:aws:iam::{text}:root")));
        }
        let rest = text.strip_prefix("arn:")?;
        let (partition, rest) = rest.split_once(":iam::")?;
        if !is_partition(partition) {
            return None;
        }
        let (account, resource) = rest.split_once(':')?;
        if !is_account(account) {
            return None;
        }
        let valid = resource == "root"
            || resource.strip_prefix("role/").is_some_and(|path| {
                let name = path.rsplit('/').next().unwrap_or_default();
                (1..=64).contains(&name.len())
                    && path.len() <= 512
                    && path.split('/').all(|part| {
                        !part.is_empty()
                            && part
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
                    })
            });
        valid.then(|| AwsPrincipal(text.to_owned()))
    }

    pub fn arn(&self) -> &str {
        &self.0
    }

    /// The account the principal belongs to.
    pub fn account(&self) -> &str {
        self.0.split(':').nth(4).unwrap_or_default()
    }
}

impl TryFrom<String> for AwsPrincipal {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        AwsPrincipal::parse(&text).ok_or_else(|| format!("'{text}' is not an AWS account or role"))
    }
}

impl From<AwsPrincipal> for String {
    fn from(principal: AwsPrincipal) -> Self {
        principal.0
    }
}

/// A standard SQS queue's ARN (`arn:aws:sqs:<region>:<account>:<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QueueArn(String);

impl QueueArn {
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let mut parts = text.split(':');
        let (
            Some("arn"),
            Some(partition),
            Some("sqs"),
            Some(region),
            Some(account),
            Some(name),
            None,
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return None;
        };
        let region_ok = !region.is_empty()
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        // SNS standard topics cannot deliver to FIFO queues.
        let name_ok = (1..=80).contains(&name.len())
            && !name.ends_with(".fifo")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        (is_partition(partition) && region_ok && is_account(account) && name_ok)
            .then(|| QueueArn(text.to_owned()))
    }

    pub fn arn(&self) -> &str {
        &self.0
    }

    fn part(&self, index: usize) -> &str {
        self.0.split(':').nth(index).unwrap_or_default()
    }

    pub fn region(&self) -> &str {
        self.part(3)
    }

    pub fn account(&self) -> &str {
        self.part(4)
    }

    pub fn name(&self) -> &str {
        self.part(5)
    }

    /// The queue's URL, as SQS forms it from the ARN.
    pub fn url(&self) -> String {
        format!(
            "https://sqs.{}.amazonaws.com/{}/{}",
            self.region(),
            self.account(),
            self.name()
        )
    }
}

impl TryFrom<String> for QueueArn {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        QueueArn::parse(&text).ok_or_else(|| format!("'{text}' is not a standard SQS queue ARN"))
    }
}

impl From<QueueArn> for String {
    fn from(arn: QueueArn) -> Self {
        arn.0
    }
}

fn is_account(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

fn is_partition(text: &str) -> bool {
    matches!(text, "aws" | "aws-us-gov" | "aws-cn")
}

/// Where a subscriber's deliveries go, and who reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum QueueAccess {
    /// A queue and DLQ the hub creates, read by the subscriber's principal
    /// (None: only principals of the hub's own account, such as the local
    /// stack's demo subscribers).
    #[serde(rename_all = "camelCase")]
    HubOwned {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        principal: Option<AwsPrincipal>,
    },
    /// A queue in the subscriber's own account; its DLQ is its own too.
    #[serde(rename_all = "camelCase")]
    SubscriberOwned { queue_arn: QueueArn },
}

impl Default for QueueAccess {
    fn default() -> Self {
        QueueAccess::HubOwned { principal: None }
    }
}

impl QueueAccess {
    pub fn principal(&self) -> Option<&AwsPrincipal> {
        match self {
            QueueAccess::HubOwned { principal } => principal.as_ref(),
            QueueAccess::SubscriberOwned { .. } => None,
        }
    }

    pub fn is_subscriber_owned(&self) -> bool {
        matches!(self, QueueAccess::SubscriberOwned { .. })
    }
}

/// What a subscriber's principal may do on its queue and DLQ: read, delete,
/// extend the time it holds a message, and read the queue's attributes.
pub const READER_ACTIONS: [&str; 4] = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
];

/// The policy of a hub-owned queue: exactly the given topics deliver to
/// it, the subscriber's principal (if any) reads it, and nothing reaches
/// it without TLS.
pub fn queue_policy(
    queue_arn: &str,
    topic_arns: &[&str],
    reader: Option<&AwsPrincipal>,
) -> serde_json::Value {
    let mut statements = vec![topics_deliver(queue_arn, topic_arns)];
    statements.extend(reader.map(|reader| reader_statement(queue_arn, reader)));
    statements.push(deny_insecure_transport(queue_arn));
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The policy of a hub-owned DLQ: SQS moves messages into it itself; the
/// subscriber's principal (if any) reads it; TLS only.
pub fn dead_letter_queue_policy(
    queue_arn: &str,
    reader: Option<&AwsPrincipal>,
) -> serde_json::Value {
    let mut statements: Vec<serde_json::Value> = reader
        .map(|reader| reader_statement(queue_arn, reader))
        .into_iter()
        .collect();
    statements.push(deny_insecure_transport(queue_arn));
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The statements a subscriber puts in the policy of a queue it owns: the
/// hub's topics of its event types deliver to it, over TLS only.
pub fn own_queue_policy(queue_arn: &QueueArn, topic_arns: &[&str]) -> serde_json::Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            topics_deliver(queue_arn.arn(), topic_arns),
            deny_insecure_transport(queue_arn.arn()),
        ]
    })
}

/// The statement a subscriber adds to the key policy of the KMS key that
/// encrypts a queue it owns: SNS may use the key for the hub's topics only.
/// (A queue encrypted with the AWS-managed key `alias/aws/sqs` cannot
/// receive from SNS at all: its key policy cannot be changed.)
pub fn own_queue_key_statement(topic_arns: &[&str]) -> serde_json::Value {
    json!({
        "Sid": "ChildHealthEventsHubTopics",
        "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"},
        "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
        "Resource": "*",
        "Condition": {"ArnEquals": {"aws:SourceArn": topic_arns}}
    })
}

/// The encryption context SQS gives KMS for a queue's messages: a grant
/// constrained to it lets its grantee decrypt that queue's messages only.
pub fn queue_encryption_context(queue_arn: &str) -> (&'static str, String) {
    ("aws:sqs:arn", queue_arn.to_owned())
}

fn topics_deliver(queue_arn: &str, topic_arns: &[&str]) -> serde_json::Value {
    json!({
        "Sid": "HubTopicsDeliver",
        "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": topic_arns}}
    })
}

fn reader_statement(queue_arn: &str, reader: &AwsPrincipal) -> serde_json::Value {
    json!({
        "Sid": "SubscriberReads",
        "Effect": "Allow",
        "Principal": {"AWS": reader.arn()},
        "Action": READER_ACTIONS,
        "Resource": queue_arn
    })
}

/// Any principal, any SQS action, refused without TLS.
fn deny_insecure_transport(queue_arn: &str) -> serde_json::Value {
    json!({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "sqs:*",
        "Resource": queue_arn,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_are_accounts_or_roles() {
        assert_eq!(
            AwsPrincipal::parse("111122223333").unwrap().arn(),
            "arn:aws:iam::111122223333:root"
        );
        let role = AwsPrincipal::parse("arn:aws:iam::111122223333:role/chis/poller").unwrap();
        assert_eq!(role.account(), "111122223333");
        for bad in [
            "",
            "11112222333",
            "arn:aws:iam::111122223333:user/alice",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:iam::1111222233:role/x",
            "arn:aws:sts::111122223333:assumed-role/x/y",
            "arn:other:iam::111122223333:role/x",
            "*",
        ] {
            assert!(AwsPrincipal::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn queue_arns_are_standard_queues() {
        let arn = QueueArn::parse("arn:aws:sqs:eu-west-2:111122223333:chis-events").unwrap();
        assert_eq!(
            arn.url(),
            "https://sqs.eu-west-2.amazonaws.com/111122223333/chis-events"
        );
        for bad in [
            "arn:aws:sqs:eu-west-2:111122223333:events.fifo",
            "arn:aws:sns:eu-west-2:111122223333:topic",
            "arn:aws:sqs:eu-west-2:111122223333",
            "arn:aws:sqs:eu-west-2:111122223333:a:b",
            "arn:aws:sqs:eu-west-2:12345:q",
        ] {
            assert!(QueueArn::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_hub_owned_queue_admits_the_topics_and_the_reader_over_tls() {
        let reader = AwsPrincipal::parse("arn:aws:iam::111122223333:role/poller").unwrap();
        let topics = ["arn:aws:sns:eu-west-2:999988887777:vaccinations"];
        let policy = queue_policy(
            "arn:aws:sqs:eu-west-2:999988887777:q",
            &topics,
            Some(&reader),
        );
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 3);
        assert_eq!(statements[0]["Principal"]["Service"], "sns.amazonaws.com");
        assert_eq!(
            statements[0]["Condition"]["ArnEquals"]["aws:SourceArn"][0],
            topics[0]
        );
        assert_eq!(statements[1]["Principal"]["AWS"], reader.arn());
        assert_eq!(statements[1]["Action"], json!(READER_ACTIONS));
        assert_eq!(
            statements[1]["Resource"],
            "arn:aws:sqs:eu-west-2:999988887777:q"
        );
        assert_eq!(statements[2]["Effect"], "Deny");
        assert_eq!(
            statements[2]["Condition"]["Bool"]["aws:SecureTransport"],
            "false"
        );
        // Without a reader, only the topics and the TLS rule.
        let policy = queue_policy("arn:aws:sqs:eu-west-2:999988887777:q", &topics, None);
        assert_eq!(policy["Statement"].as_array().unwrap().len(), 2);
        let dlq =
            dead_letter_queue_policy("arn:aws:sqs:eu-west-2:999988887777:q-dlq", Some(&reader));
        assert_eq!(dlq["Statement"][0]["Principal"]["AWS"], reader.arn());
        assert_eq!(dlq["Statement"][1]["Effect"], "Deny");
    }
}
