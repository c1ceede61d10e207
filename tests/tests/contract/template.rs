//! The security properties of the deployed stack, read from template.yaml
//! itself (no AWS, no emulator), so that a later change cannot loosen them
//! silently: encryption with the hub's key, TLS-only topics and queues, the
//! authorizer on every route but the token endpoint, gateway refusals as
//! OperationOutcomes, and least-privilege function policies. Then the
//! monitoring: every alarm and dashboard metric of the hub's own namespace
//! is one the code emits (hub::metrics), and every failure queue has an
//! alarm.
//!
//! CloudFormation's short tags (`!Ref X`, `!GetAtt X.Arn`, `!Sub ...`) are
//! read into their long forms (`{"Ref": X}`, `{"Fn::GetAtt": [X, "Arn"]}`,
//! `{"Fn::Sub": ...}`), so each check handles one form only.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use hub::auth::AuthError;
use hub::lambda::Answer;
use hub::outcome::{Issue, OperationOutcome, Severity};
use serde_json::{Value, json};

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");

/// The template as JSON, CloudFormation tags in their long form.
fn template() -> &'static Value {
    static TEMPLATE_JSON: OnceLock<Value> = OnceLock::new();
    TEMPLATE_JSON.get_or_init(|| e2e_tests::read_yaml(TEMPLATE))
}

fn template_source() -> String {
    std::fs::read_to_string(TEMPLATE).expect("template.yaml is readable")
}

fn resources() -> &'static serde_json::Map<String, Value> {
    template()["Resources"]
        .as_object()
        .expect("the template has Resources")
}

fn of_type(kind: &str) -> Vec<(&'static str, &'static Value)> {
    resources()
        .iter()
        .filter(|(_, resource)| resource["Type"] == kind)
        .map(|(id, resource)| (id.as_str(), resource))
        .collect()
}

/// Every resource of a type the template must have: a check looping over
/// them would pass on none, so none fails here.
fn present(kind: &str) -> Vec<(&'static str, &'static Value)> {
    let found = of_type(kind);
    assert!(!found.is_empty(), "the template has no {kind}");
    found
}

/// The hub deploys 32 functions: fewer means the template (or its reading)
/// lost some, and the checks over them would pass on what is left.
const FUNCTIONS: usize = 32;

fn resource(id: &str) -> &'static Value {
    resources()
        .get(id)
        .unwrap_or_else(|| panic!("the template has no resource {id}"))
}

fn functions() -> Vec<(&'static str, &'static Value)> {
    let found = of_type("AWS::Serverless::Function");
    assert!(
        found.len() >= FUNCTIONS,
        "{} functions in the template, not {FUNCTIONS}",
        found.len()
    );
    found
}

/// A value, or each item of a list; the branches of an `Fn::If` both count
/// (either may be deployed) and `AWS::NoValue` is no item.
fn items(value: &Value) -> Vec<&Value> {
    match value {
        Value::Null => Vec::new(),
        Value::Array(list) => list.iter().flat_map(items).collect(),
        Value::Object(map) if map.contains_key("Fn::If") => {
            let branches = map["Fn::If"].as_array().expect("Fn::If [cond, a, b]");
            branches[1..].iter().flat_map(items).collect()
        }
        Value::Object(map) if map.get("Ref") == Some(&json!("AWS::NoValue")) => Vec::new(),
        other => vec![other],
    }
}

fn is_ref(value: &Value, id: &str) -> bool {
    value == &json!({ "Ref": id })
}

/// `!Ref Key` or `!GetAtt Key.Arn`: how a property names a KMS key.
fn names_key(value: &Value, key: &str) -> bool {
    is_ref(value, key) || value == &json!({"Fn::GetAtt": [key, "Arn"]})
}

/// The resource a policy statement names, as `Id` (`!GetAtt Id.Arn`,
/// `!Ref Id`), `Id/index/Name` (`!Sub "${Id.Arn}/index/Name"`), the
/// pattern of any other `!Sub`, or the text of any other value.
fn resource_name(value: &Value) -> String {
    if let Some(id) = value["Fn::GetAtt"].as_array().and_then(|p| p[0].as_str())
        && value["Fn::GetAtt"][1] == "Arn"
    {
        return id.to_owned();
    }
    if let Some(id) = value["Ref"].as_str() {
        return id.to_owned();
    }
    if let Some(pattern) = value["Fn::Sub"].as_str()
        && let Some(rest) = pattern.strip_prefix("${")
        && let Some((id, tail)) = rest.split_once(".Arn}")
    {
        return format!("{id}{tail}");
    }
    // Any other pattern as written (the subscriber queues' prefix).
    if let Some(pattern) = value["Fn::Sub"].as_str() {
        return pattern.to_owned();
    }
    value
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| value.to_string())
}

/// One policy statement and where it comes from.
struct Statement {
    owner: String,
    value: &'static Value,
}

impl Statement {
    fn actions(&self) -> Vec<String> {
        assert!(
            self.value.get("NotAction").is_none() && self.value.get("NotResource").is_none(),
            "{}: NotAction / NotResource grant everything else",
            self.owner
        );
        items(&self.value["Action"])
            .into_iter()
            .map(|action| {
                action
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: an action is not text", self.owner))
                    .to_owned()
            })
            .collect()
    }

    fn resources(&self) -> Vec<&'static Value> {
        items(&self.value["Resource"])
    }

    fn resource_names(&self) -> Vec<String> {
        self.resources().into_iter().map(resource_name).collect()
    }

    fn allows(&self) -> bool {
        self.value["Effect"] == "Allow"
    }

    fn allows_on(&self, action: &str, resource: &str) -> bool {
        self.allows()
            && self.actions().iter().any(|a| a == action)
            && self.resource_names().iter().any(|r| r == resource)
    }
}

fn document_statements(owner: &str, document: &'static Value) -> Vec<Statement> {
    items(&document["Statement"])
        .into_iter()
        .map(|value| Statement {
            owner: owner.to_owned(),
            value,
        })
        .collect()
}

/// Every statement a function's role gets from its template `Policies`:
/// inline statements, and those of the template's own managed policies.
/// Anything else (an AWS managed policy, a SAM policy template) is refused:
/// its permissions would not be visible here.
fn function_statements(id: &str, function: &'static Value) -> Vec<Statement> {
    let mut statements = Vec::new();
    for policy in items(&function["Properties"]["Policies"]) {
        if let Some(managed) = policy["Ref"].as_str() {
            let target = resource(managed);
            assert_eq!(
                target["Type"], "AWS::IAM::ManagedPolicy",
                "{id}: policy {managed} is not a managed policy of this template"
            );
            statements.extend(document_statements(
                &format!("{id} (through {managed})"),
                &target["Properties"]["PolicyDocument"],
            ));
        } else if policy.get("Statement").is_some() {
            statements.extend(document_statements(id, policy));
        } else {
            panic!("{id}: policy {policy} is neither inline nor one of the template's own");
        }
    }
    statements
}

/// Every identity-policy statement of the template: functions' and the
/// template's managed policies'.
fn all_identity_statements() -> Vec<Statement> {
    let mut statements: Vec<Statement> = functions()
        .into_iter()
        .flat_map(|(id, function)| function_statements(id, function))
        .collect();
    for (id, policy) in present("AWS::IAM::ManagedPolicy") {
        statements.extend(document_statements(
            id,
            &policy["Properties"]["PolicyDocument"],
        ));
    }
    assert!(!statements.is_empty(), "the template grants nothing");
    statements
}

fn api_events(function: &'static Value) -> Vec<(&'static str, &'static Value)> {
    function["Properties"]["Events"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, event)| event["Type"] == "Api")
        .map(|(name, event)| (name.as_str(), &event["Properties"]))
        .collect()
}

fn environment(function: &'static Value) -> &'static Value {
    &function["Properties"]["Environment"]["Variables"]
}

/// A TLS-only statement: deny, anyone, when aws:SecureTransport is false.
fn is_tls_deny(statement: &Statement) -> bool {
    let value = statement.value;
    let anyone = value["Principal"] == "*" || value["Principal"] == json!({"AWS": "*"});
    let insecure = &value["Condition"]["Bool"]["aws:SecureTransport"];
    value["Effect"] == "Deny" && anyone && (*insecure == "false" || *insecure == json!(false))
}

#[test]
fn every_table_is_encrypted_with_the_hub_data_key() {
    let tables = of_type("AWS::DynamoDB::Table");
    assert!(tables.len() >= 6, "the hub has at least six tables");
    for (id, table) in tables {
        let sse = &table["Properties"]["SSESpecification"];
        assert_eq!(sse["SSEEnabled"], true, "{id}: SSEEnabled must be true");
        assert_eq!(sse["SSEType"], "KMS", "{id}: SSEType must be KMS");
        assert!(
            names_key(&sse["KMSMasterKeyId"], "HubDataKey"),
            "{id}: KMSMasterKeyId must be HubDataKey, not {}",
            sse["KMSMasterKeyId"]
        );
    }
}

#[test]
fn data_tables_are_recoverable_and_kept() {
    // The replay table holds assertion ids for five minutes, the reference
    // table public data reloaded from its files: nothing to keep.
    for (id, table) in present("AWS::DynamoDB::Table") {
        if id == "ReplayTable" || id == "ReferenceTable" {
            continue;
        }
        assert_eq!(
            table["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
            true,
            "{id}: point-in-time recovery must be on"
        );
        for policy in ["DeletionPolicy", "UpdateReplacePolicy"] {
            assert_eq!(table[policy], "Retain", "{id}: {policy} must be Retain");
        }
    }
    let audit = resource("AuditTable");
    let indexes: Vec<(String, String, String)> =
        items(&audit["Properties"]["GlobalSecondaryIndexes"])
            .into_iter()
            .map(|index| {
                let key = |kind: &str| {
                    items(&index["KeySchema"])
                        .into_iter()
                        .find(|k| k["KeyType"] == kind)
                        .and_then(|k| k["AttributeName"].as_str())
                        .unwrap_or_default()
                        .to_owned()
                };
                (
                    index["IndexName"].as_str().unwrap_or_default().to_owned(),
                    key("HASH"),
                    key("RANGE"),
                )
            })
            .collect();
    for expected in [
        ("ByPatient", "nhsNumber", "at"),
        ("ByClient", "clientId", "at"),
    ] {
        assert!(
            indexes.iter().any(|(name, hash, range)| (
                name.as_str(),
                hash.as_str(),
                range.as_str()
            ) == expected),
            "AuditTable: index {expected:?} is missing, found {indexes:?}"
        );
    }
}

#[test]
fn every_topic_is_encrypted_and_refuses_plain_http() {
    let topics = of_type("AWS::SNS::Topic");
    let event_topics = topics.iter().filter(|(id, _)| *id != "AlarmTopic");
    assert_eq!(event_topics.count(), 10, "one topic per event type");
    let policies = of_type("AWS::SNS::TopicPolicy");
    for (id, topic) in topics {
        assert!(
            names_key(&topic["Properties"]["KmsMasterKeyId"], "HubDataKey"),
            "{id}: KmsMasterKeyId must be HubDataKey"
        );
        let protected = policies.iter().any(|(policy_id, policy)| {
            items(&policy["Properties"]["Topics"])
                .iter()
                .any(|t| is_ref(t, id))
                && document_statements(policy_id, &policy["Properties"]["PolicyDocument"])
                    .iter()
                    .any(|statement| {
                        is_tls_deny(statement)
                            && statement.resource_names().iter().any(|r| r == id)
                            && ["sns:Publish", "sns:Subscribe"]
                                .iter()
                                .all(|needed| statement.actions().iter().any(|a| a == needed))
                    })
        });
        assert!(
            protected,
            "{id}: no AWS::SNS::TopicPolicy denies sns:Publish and sns:Subscribe on it without TLS"
        );
    }
}

#[test]
fn every_queue_is_encrypted_and_refuses_plain_http() {
    let policies = of_type("AWS::SQS::QueuePolicy");
    for (id, queue) in present("AWS::SQS::Queue") {
        assert!(
            names_key(&queue["Properties"]["KmsMasterKeyId"], "HubDataKey"),
            "{id}: KmsMasterKeyId must be HubDataKey"
        );
        let protected = policies.iter().any(|(policy_id, policy)| {
            items(&policy["Properties"]["Queues"])
                .iter()
                .any(|q| is_ref(q, id))
                && document_statements(policy_id, &policy["Properties"]["PolicyDocument"])
                    .iter()
                    .any(|statement| {
                        is_tls_deny(statement)
                            && statement.resource_names().iter().any(|r| r == id)
                            && statement.actions().iter().any(|a| a == "sqs:*" || a == "*")
                    })
        });
        assert!(
            protected,
            "{id}: no AWS::SQS::QueuePolicy denies sqs:* on it without TLS"
        );
    }
}

#[test]
fn the_keys_are_what_they_claim() {
    let signing = resource("HubSigningKey");
    assert_eq!(signing["Type"], "AWS::KMS::Key", "HubSigningKey");
    assert_eq!(
        signing["Properties"]["KeySpec"], "ECC_NIST_P256",
        "HubSigningKey: tokens are ES256"
    );
    assert_eq!(
        signing["Properties"]["KeyUsage"], "SIGN_VERIFY",
        "HubSigningKey: a signing key"
    );

    let data = resource("HubDataKey");
    assert_eq!(data["Type"], "AWS::KMS::Key", "HubDataKey");
    assert_eq!(
        data["Properties"]["EnableKeyRotation"], true,
        "HubDataKey: EnableKeyRotation must be true"
    );
    assert!(
        matches!(
            data["Properties"].get("KeySpec"),
            None | Some(Value::String(_))
        ) && data["Properties"]["KeySpec"] != "ECC_NIST_P256",
        "HubDataKey: a symmetric key"
    );
    // The retained tables are unreadable without it.
    for policy in ["DeletionPolicy", "UpdateReplacePolicy"] {
        assert_eq!(
            data[policy], "Retain",
            "HubDataKey: {policy} must be Retain"
        );
    }

    // The token endpoint signs with it; the authorizer trusts it first.
    assert!(
        is_ref(
            &environment(resource("TokenFunction"))["HUB_SIGNING_KEY_ID"],
            "HubSigningKey"
        ),
        "TokenFunction: HUB_SIGNING_KEY_ID must be !Ref HubSigningKey"
    );
    for choice in items(&environment(resource("AuthorizerFunction"))["HUB_VERIFYING_KEY_IDS"]) {
        let first = choice["Fn::Join"][1][0].clone();
        assert!(
            is_ref(choice, "HubSigningKey") || is_ref(&first, "HubSigningKey"),
            "AuthorizerFunction: HUB_VERIFYING_KEY_IDS must start with HubSigningKey, not {choice}"
        );
    }

    for (id, key) in present("AWS::KMS::Key") {
        for statement in document_statements(id, &key["Properties"]["KeyPolicy"]) {
            let principal = &statement.value["Principal"];
            assert!(
                !(statement.allows() && (principal == "*" || principal == &json!({"AWS": "*"}))),
                "{id}: the key policy allows anyone"
            );
            if principal.get("Service").is_some() {
                assert!(
                    statement.value.get("Condition").is_some(),
                    "{id}: a service principal without a condition (confused deputy)"
                );
                for action in statement.actions() {
                    assert!(
                        ["kms:GenerateDataKey*", "kms:Decrypt"].contains(&action.as_str()),
                        "{id}: a service may only encrypt and decrypt, not {action}"
                    );
                }
            }
        }
    }
}

#[test]
fn every_route_but_the_token_endpoint_needs_the_authorizer() {
    let apis = of_type("AWS::Serverless::Api");
    assert_eq!(
        apis.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        ["HubApi"],
        "one API, HubApi"
    );
    for kind in [
        "AWS::ApiGateway::RestApi",
        "AWS::Serverless::HttpApi",
        "AWS::ApiGatewayV2::Api",
    ] {
        assert!(of_type(kind).is_empty(), "an API outside HubApi: {kind}");
    }
    let auth = &resource("HubApi")["Properties"]["Auth"];
    assert_eq!(
        auth["DefaultAuthorizer"], "HubTokenAuthorizer",
        "HubApi: DefaultAuthorizer"
    );
    let authorizer = &auth["Authorizers"]["HubTokenAuthorizer"];
    assert_eq!(
        authorizer["FunctionArn"],
        json!({"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}),
        "HubApi: HubTokenAuthorizer runs AuthorizerFunction"
    );
    assert!(
        authorizer.get("FunctionPayloadType").is_none()
            || authorizer["FunctionPayloadType"] == "TOKEN",
        "HubApi: HubTokenAuthorizer is a TOKEN authorizer"
    );
    assert_eq!(
        authorizer["Identity"]["Header"], "Authorization",
        "HubApi: HubTokenAuthorizer reads Authorization"
    );
    assert_eq!(
        authorizer["Identity"]["ReauthorizeEvery"], 0,
        "HubApi: HubTokenAuthorizer must not cache (a disabled client is refused at once)"
    );

    let mut open_routes = Vec::new();
    for (id, function) in functions() {
        assert!(
            function["Properties"].get("FunctionUrlConfig").is_none(),
            "{id}: a function URL bypasses the authorizer"
        );
        for (name, event) in function["Properties"]["Events"]
            .as_object()
            .into_iter()
            .flatten()
        {
            assert!(
                event["Type"] != "HttpApi",
                "{id}: event {name} is on an HTTP API without the authorizer"
            );
        }
        for (name, event) in api_events(function) {
            assert!(
                is_ref(&event["RestApiId"], "HubApi"),
                "{id}: event {name} is not on HubApi (SAM would make an API without the authorizer)"
            );
            match &event["Auth"]["Authorizer"] {
                Value::Null => {}
                Value::String(none) if none == "NONE" => open_routes.push(format!(
                    "{} {}",
                    event["Method"]
                        .as_str()
                        .unwrap_or_default()
                        .to_ascii_uppercase(),
                    event["Path"].as_str().unwrap_or_default()
                )),
                other => assert_eq!(
                    other, "HubTokenAuthorizer",
                    "{id}: event {name} uses another authorizer"
                ),
            }
        }
    }
    assert_eq!(
        open_routes,
        ["POST /oauth2/token"],
        "only the token endpoint opts out of the authorizer"
    );
}

/// A gateway response's body for the given substitutions, as JSON.
fn gateway_body(kind: &str, substitutions: &[(&str, &str)]) -> Value {
    let response = &resource("HubApi")["Properties"]["GatewayResponses"][kind];
    let mut body = response["ResponseTemplates"]["application/json"]
        .as_str()
        .unwrap_or_else(|| panic!("HubApi: {kind} has no application/json template"))
        .to_owned();
    for (variable, value) in substitutions {
        body = body.replace(variable, value);
    }
    assert!(
        !body.contains("$context"),
        "HubApi: {kind} uses a variable this test does not know: {body}"
    );
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("HubApi: {kind} does not render valid JSON ({e}): {body}"))
}

#[test]
fn gateway_refusals_are_operation_outcomes_like_the_hubs() {
    let responses = &resource("HubApi")["Properties"]["GatewayResponses"];
    for (kind, status) in [
        ("UNAUTHORIZED", Some(401)),
        ("ACCESS_DENIED", Some(401)),
        ("AUTHORIZER_FAILURE", Some(503)),
        ("DEFAULT_4XX", None),
        ("DEFAULT_5XX", None),
    ] {
        let response = &responses[kind];
        assert!(
            response.is_object(),
            "HubApi: GatewayResponses.{kind} is missing"
        );
        let declared = response["StatusCode"]
            .as_u64()
            .or_else(|| response["StatusCode"].as_str().and_then(|s| s.parse().ok()));
        assert_eq!(declared, status, "HubApi: {kind} status");
        assert_eq!(
            response["ResponseParameters"]["Headers"]["Content-Type"], "'application/fhir+json'",
            "HubApi: {kind} must answer application/fhir+json"
        );
    }

    assert_eq!(
        gateway_body("UNAUTHORIZED", &[]),
        AuthError::NoToken.outcome().to_json(),
        "HubApi: UNAUTHORIZED"
    );
    // The authorizer's deny context carries the issue code and the fixed text.
    for refusal in [
        AuthError::Expired,
        AuthError::Malformed,
        AuthError::BadSignature,
        AuthError::UnknownClient,
        AuthError::DisabledClient,
        AuthError::WrongAudience,
    ] {
        let outcome = refusal.outcome().to_json();
        let code = outcome["issue"][0]["code"].as_str().unwrap().to_owned();
        let diagnostics = refusal.to_string();
        assert!(
            !diagnostics.contains(['"', '\\']),
            "{refusal:?}: the deny context must be quote-free to fit the ACCESS_DENIED template"
        );
        assert_eq!(
            gateway_body(
                "ACCESS_DENIED",
                &[
                    ("$context.authorizer.code", &code),
                    ("$context.authorizer.diagnostics", &diagnostics),
                ],
            ),
            outcome,
            "HubApi: ACCESS_DENIED for {refusal:?}"
        );
    }
    assert_eq!(
        gateway_body("AUTHORIZER_FAILURE", &[]),
        AuthError::Unavailable("a store failed".into())
            .outcome()
            .to_json(),
        "HubApi: AUTHORIZER_FAILURE"
    );
    // API Gateway substitutes $context.error.messageString already quoted.
    assert_eq!(
        gateway_body(
            "DEFAULT_4XX",
            &[(
                "$context.error.messageString",
                r#""Missing Authentication Token""#
            )],
        ),
        OperationOutcome::single(Issue {
            severity: Severity::Error,
            code: "invalid",
            spine_code: "BAD_REQUEST",
            diagnostics: "Missing Authentication Token".into(),
            expression: Vec::new(),
        })
        .to_json(),
        "HubApi: DEFAULT_4XX"
    );
    assert_eq!(
        gateway_body("DEFAULT_5XX", &[]),
        OperationOutcome::single(Issue {
            severity: Severity::Error,
            code: "exception",
            spine_code: "SERVICE_UNAVAILABLE",
            diagnostics: "the hub could not complete the request; try again later".into(),
            expression: Vec::new(),
        })
        .to_json(),
        "HubApi: DEFAULT_5XX"
    );
}

/// The one resource pattern allowed a wildcard: the subscriber queues
/// onboarding creates at run time, under the stack's prefix.
const SUBSCRIBER_QUEUES: &str =
    "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:chhub-${Stage}-sub-*";

/// The functions that work on the subscriber queues, and so may name them
/// by their prefix.
const QUEUE_FUNCTIONS: [&str; 4] = [
    "OnboardSubscriberFunction",
    "SubscriberStatusFunction",
    "SubscriberRedriveFunction",
    "SubscriberUpdateFunction",
];

/// Actions IAM cannot scope to a resource, and so are granted on "*".
const ACTIONS_WITHOUT_RESOURCES: [&str; 1] = ["dynamodb:DescribeEndpoints"];

#[test]
fn no_policy_grants_wildcards() {
    for statement in all_identity_statements() {
        let owner = &statement.owner;
        let actions = statement.actions();
        assert!(!actions.is_empty(), "{owner}: a statement without actions");
        for action in &actions {
            assert!(!action.contains('*'), "{owner}: wildcard action {action}");
        }
        let resources = statement.resources();
        assert!(
            !resources.is_empty(),
            "{owner}: a statement without resources"
        );
        for resource in resources {
            let text = resource
                .as_str()
                .or_else(|| resource["Fn::Sub"].as_str())
                .unwrap_or_default();
            let unscoped = actions
                .iter()
                .all(|a| ACTIONS_WITHOUT_RESOURCES.contains(&a.as_str()));
            assert!(
                text != "*" || unscoped,
                "{owner}: Resource \"*\" for {actions:?}"
            );
            assert!(
                !text.contains('*')
                    || (text == "*" && unscoped)
                    || (text == SUBSCRIBER_QUEUES && QUEUE_FUNCTIONS.contains(&owner.as_str())),
                "{owner}: wildcard resource {text} for {actions:?}"
            );
        }
    }
}

#[test]
fn nothing_scans_and_only_two_functions_delete() {
    assert!(
        !template_source().contains("dynamodb:Scan"),
        "template.yaml grants dynamodb:Scan somewhere: every read has a key or an index"
    );
    for statement in all_identity_statements() {
        for action in statement.actions() {
            if action == "dynamodb:DeleteItem" || action == "dynamodb:BatchWriteItem" {
                let deleter = ["SubscriptionDeleteFunction", "OffboardSubscriberFunction"]
                    .contains(&statement.owner.as_str());
                // BatchWriteItem can delete too: only dispatch and the replay
                // worker have it, on the audit table, where they add records.
                let dispatch_audit = ["DispatchFunction", "ReplayWorkerFunction"]
                    .contains(&statement.owner.as_str())
                    && action == "dynamodb:BatchWriteItem"
                    && statement.resource_names() == ["AuditTable"];
                assert!(
                    (deleter && action == "dynamodb:DeleteItem") || dispatch_audit,
                    "{}: {action} on {:?}",
                    statement.owner,
                    statement.resource_names()
                );
            }
        }
    }
}

#[test]
fn the_audit_trail_is_only_ever_added_to() {
    for statement in all_identity_statements() {
        for resource in statement.resource_names() {
            if resource == "AuditTable" {
                for action in statement.actions() {
                    assert!(
                        [
                            "dynamodb:PutItem",
                            "dynamodb:BatchWriteItem",
                            "dynamodb:GetItem"
                        ]
                        .contains(&action.as_str()),
                        "{}: {action} on the audit trail",
                        statement.owner
                    );
                }
            } else if resource.starts_with("AuditTable/") {
                for action in statement.actions() {
                    assert_eq!(
                        action, "dynamodb:Query",
                        "{}: {action} on {resource}",
                        statement.owner
                    );
                }
            }
        }
    }
}

#[test]
fn publish_functions_only_store_events_versions_audit_and_sensitive_flags() {
    let expected: BTreeSet<(String, String)> = [
        ("dynamodb:PutItem", "EventsTable"),
        ("dynamodb:GetItem", "EventsTable"),
        ("dynamodb:PutItem", "AuditTable"),
        ("dynamodb:GetItem", "RegisterTable"),
        // A labelled message flags its child before it is stored.
        ("dynamodb:PutItem", "RegisterTable"),
        // The current version of the focus resource: read, then replaced or
        // checked in the event's transaction.
        ("dynamodb:GetItem", "VersionsTable"),
        ("dynamodb:PutItem", "VersionsTable"),
        ("dynamodb:ConditionCheckItem", "VersionsTable"),
        // Through HubTablesKeyPolicy: DynamoDB decrypting the table keys.
        ("kms:Decrypt", "HubDataKey"),
        ("dynamodb:DescribeEndpoints", "*"),
    ]
    .into_iter()
    .map(|(a, r)| (a.to_owned(), r.to_owned()))
    .collect();
    let publishers: Vec<_> = functions()
        .into_iter()
        .filter(|(_, f)| {
            f["Properties"]["CodeUri"]
                .as_str()
                .is_some_and(|uri| uri == "functions/publish")
        })
        .collect();
    assert_eq!(publishers.len(), 10, "one publish function per event type");
    for (id, function) in publishers {
        let mut granted = BTreeSet::new();
        for statement in function_statements(id, function) {
            assert!(statement.allows(), "{id}: only Allow statements expected");
            for action in statement.actions() {
                for resource in statement.resource_names() {
                    granted.insert((action.clone(), resource));
                }
            }
        }
        assert_eq!(granted, expected, "{id}: what a publish function may do");
    }
}

#[test]
fn kms_use_is_scoped() {
    for statement in all_identity_statements() {
        let owner = &statement.owner;
        let actions = statement.actions();
        if !actions.iter().any(|a| a.starts_with("kms:")) {
            continue;
        }
        assert!(
            actions.iter().all(|a| a.starts_with("kms:")),
            "{owner}: keep KMS actions in statements of their own"
        );
        let names = statement.resource_names();
        let grants = actions
            .iter()
            .any(|a| a == "kms:CreateGrant" || a == "kms:RevokeGrant");
        if grants {
            // Grants let a subscriber's own principal read its queue: made
            // by onboarding and changes alone, Decrypt only, bound to one
            // queue's encryption context.
            assert!(
                ["OnboardSubscriberFunction", "SubscriberUpdateFunction"].contains(&owner.as_str()),
                "{owner}: manages key grants"
            );
            assert_eq!(names, ["HubDataKey"], "{owner}");
            assert_eq!(actions.len(), 1, "{owner}: one grant action a statement");
            if actions[0] == "kms:CreateGrant" {
                let condition = &statement.value["Condition"];
                assert_eq!(
                    condition["ForAllValues:StringEquals"]["kms:GrantOperations"],
                    serde_json::json!(["Decrypt"]),
                    "{owner}"
                );
                assert_eq!(
                    condition["StringEquals"]["kms:GrantConstraintType"], "EncryptionContextSubset",
                    "{owner}"
                );
            }
        } else if names.iter().any(|r| r == "HubDataKey") {
            assert_eq!(names, ["HubDataKey"], "{owner}");
            assert!(
                !statement.value["Condition"]["StringEquals"]["kms:ViaService"].is_null(),
                "{owner}: HubDataKey only through a service (kms:ViaService)"
            );
            for action in &actions {
                assert!(
                    ["kms:Decrypt", "kms:GenerateDataKey"].contains(&action.as_str()),
                    "{owner}: {action} on HubDataKey"
                );
            }
        } else {
            for action in &actions {
                assert!(
                    ["kms:Sign", "kms:GetPublicKey"].contains(&action.as_str()),
                    "{owner}: {action} on {names:?}"
                );
                if action == "kms:Sign" {
                    assert_eq!(
                        owner, "TokenFunction",
                        "only the token endpoint signs tokens"
                    );
                    assert_eq!(
                        names,
                        ["HubSigningKey"],
                        "{owner}: signs with HubSigningKey only"
                    );
                }
            }
        }
    }

    // DynamoDB decrypts each table's key as the caller: every function that
    // touches a table needs HubTablesKeyPolicy, or it fails in AWS.
    for (id, function) in functions() {
        let statements = function_statements(id, function);
        let uses_tables = statements
            .iter()
            .any(|s| s.actions().iter().any(|a| a.starts_with("dynamodb:")));
        let has_key_policy = items(&function["Properties"]["Policies"])
            .iter()
            .any(|p| is_ref(p, "HubTablesKeyPolicy"));
        assert!(
            !uses_tables || has_key_policy,
            "{id}: uses the encrypted tables without HubTablesKeyPolicy"
        );
    }
    let key_policy = document_statements(
        "HubTablesKeyPolicy",
        &resource("HubTablesKeyPolicy")["Properties"]["PolicyDocument"],
    );
    let key_statements: Vec<_> = key_policy
        .iter()
        .filter(|s| s.actions().iter().any(|a| a.starts_with("kms:")))
        .collect();
    assert_eq!(
        key_statements.len(),
        1,
        "HubTablesKeyPolicy: one key statement"
    );
    assert_eq!(
        key_statements[0].actions(),
        ["kms:Decrypt"],
        "HubTablesKeyPolicy"
    );
    assert_eq!(
        key_statements[0].value["Condition"]["StringEquals"]["kms:ViaService"],
        json!({"Fn::Sub": "dynamodb.${AWS::Region}.amazonaws.com"}),
        "HubTablesKeyPolicy: only through DynamoDB"
    );
}

#[test]
fn every_api_function_writes_the_audit_trail() {
    let mut audited = Vec::new();
    for (id, function) in functions() {
        let is_api = !api_events(function).is_empty();
        if !(is_api || id == "DispatchFunction" || id == "AuthorizerFunction") {
            continue;
        }
        assert!(
            is_ref(&environment(function)["AUDIT_TABLE"], "AuditTable"),
            "{id}: AUDIT_TABLE must be !Ref AuditTable"
        );
        assert!(
            function_statements(id, function)
                .iter()
                .any(|s| s.allows_on("dynamodb:PutItem", "AuditTable")),
            "{id}: needs dynamodb:PutItem on AuditTable"
        );
        audited.push(id);
    }
    assert!(
        audited.len() >= 20,
        "every API function is audited, found only {audited:?}"
    );
}

/// Every function opens its DynamoDB connection during init
/// (`hub::lambda::dynamodb_client`), and the two that publish to SNS their
/// SNS connection (`hub::lambda::sns_client`, on the first topic).
#[test]
fn every_function_may_open_its_connections_during_init() {
    for (id, function) in functions() {
        let statements = function_statements(id, function);
        assert!(
            statements.iter().any(|s| s.allows()
                && s.actions()
                    .iter()
                    .any(|a| a == "dynamodb:DescribeEndpoints")
                && items(&s.value["Resource"]).iter().any(|r| *r == "*")),
            "{id}: needs dynamodb:DescribeEndpoints (init warm-up)"
        );
        if ["DispatchFunction", "ReplayWorkerFunction"].contains(&id) {
            assert!(
                statements
                    .iter()
                    .any(|s| s.allows_on("sns:GetTopicAttributes", "PdsBirthNotificationTopic")),
                "{id}: needs sns:GetTopicAttributes on the first topic (init warm-up)"
            );
        }
    }
}

/// What each function's code calls, by the adapter methods its handler
/// uses (shared/src/aws.rs). The emulator enforces no IAM, so a permission
/// missing here would only show once deployed, as a 503.
#[test]
fn every_function_may_do_what_its_code_does() {
    let required: &[(&str, &[(&str, &str)])] = &[
        (
            "TokenFunction",
            &[
                ("dynamodb:GetItem", "ClientsTable"),
                ("dynamodb:PutItem", "ReplayTable"),
                ("dynamodb:PutItem", "AuditTable"),
                ("kms:Sign", "HubSigningKey"),
                ("kms:GetPublicKey", "HubSigningKey"),
            ],
        ),
        (
            "AuthorizerFunction",
            &[
                ("dynamodb:GetItem", "ClientsTable"),
                ("dynamodb:PutItem", "AuditTable"),
                ("kms:GetPublicKey", "HubSigningKey"),
            ],
        ),
        (
            "OnboardSubscriberFunction",
            &[
                ("dynamodb:GetItem", "ClientsTable"),
                ("dynamodb:UpdateItem", "ClientsTable"),
                ("dynamodb:GetItem", "SubscribersTable"),
                ("dynamodb:PutItem", "SubscribersTable"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "OffboardSubscriberFunction",
            &[
                ("dynamodb:GetItem", "SubscribersTable"),
                ("dynamodb:UpdateItem", "SubscribersTable"),
                ("dynamodb:Query", "SubscriptionsTable/index/BySubscriber"),
                ("dynamodb:DeleteItem", "SubscriptionsTable"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "SubscriptionCreateFunction",
            &[
                ("dynamodb:GetItem", "SubscribersTable"),
                ("dynamodb:GetItem", "RegisterTable"),
                ("dynamodb:BatchGetItem", "ReferenceTable"),
                ("dynamodb:Query", "RelationshipsTable"),
                ("dynamodb:GetItem", "RelationshipsTable"),
                ("dynamodb:Query", "SubscriptionsTable"),
                ("dynamodb:PutItem", "SubscriptionsTable"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "SubscriptionReadFunction",
            &[
                ("dynamodb:GetItem", "SubscriptionsTable"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "SubscriptionListFunction",
            &[
                ("dynamodb:Query", "SubscriptionsTable/index/BySubscriber"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "SubscriptionDeleteFunction",
            &[
                ("dynamodb:GetItem", "SubscriptionsTable"),
                ("dynamodb:DeleteItem", "SubscriptionsTable"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "ClientRegisterFunction",
            &[
                ("dynamodb:UpdateItem", "ClientsTable"),
                ("dynamodb:GetItem", "ClientsTable"),
                ("dynamodb:PutItem", "AuditTable"),
                // Client narrowing (app::narrowing).
                ("dynamodb:Query", "SubscriptionsTable/index/BySubscriber"),
                ("dynamodb:UpdateItem", "SubscriptionsTable"),
                ("dynamodb:GetItem", "RelationshipsTable"),
            ],
        ),
        (
            "ClientDisableFunction",
            &[
                ("dynamodb:UpdateItem", "ClientsTable"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "AuditReadFunction",
            &[
                ("dynamodb:Query", "AuditTable/index/ByPatient"),
                ("dynamodb:Query", "AuditTable/index/ByClient"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "EventReadFunction",
            &[
                ("dynamodb:BatchGetItem", "EventsTable"),
                ("dynamodb:Query", "SubscriptionsTable"),
                ("dynamodb:Query", "RelationshipsTable"),
                ("dynamodb:GetItem", "RelationshipsTable"),
                ("dynamodb:GetItem", "RegisterTable"),
                ("dynamodb:GetItem", "AuditTable"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "ChildEventsFunction",
            &[
                ("dynamodb:Query", "EventsTable/index/ByPatient"),
                ("dynamodb:BatchGetItem", "EventsTable"),
                ("dynamodb:Query", "SubscriptionsTable"),
                ("dynamodb:Query", "RelationshipsTable"),
                ("dynamodb:GetItem", "RelationshipsTable"),
                ("dynamodb:GetItem", "RegisterTable"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "SubscriptionReplayFunction",
            &[
                ("dynamodb:GetItem", "SubscriptionsTable"),
                ("dynamodb:Query", "RelationshipsTable"),
                ("dynamodb:GetItem", "RelationshipsTable"),
                ("dynamodb:PutItem", "ReplaysTable"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "SubscriptionBackfillFunction",
            &[
                ("dynamodb:GetItem", "SubscriptionsTable"),
                ("dynamodb:UpdateItem", "SubscriptionsTable"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "ReplayReadFunction",
            &[
                ("dynamodb:GetItem", "ReplaysTable"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "ReplayWorkerFunction",
            &[
                ("dynamodb:Query", "EventsTable/index/ByPatient"),
                ("dynamodb:Query", "EventsTable/index/ByDay"),
                ("dynamodb:BatchGetItem", "EventsTable"),
                ("dynamodb:GetItem", "SubscriptionsTable"),
                ("dynamodb:GetItem", "RegisterTable"),
                ("dynamodb:BatchGetItem", "ReferenceTable"),
                ("dynamodb:GetItem", "ReplaysTable"),
                ("dynamodb:PutItem", "ReplaysTable"),
                ("dynamodb:UpdateItem", "DeliveryStatsTable"),
                ("dynamodb:GetItem", "AuditTable"),
                ("dynamodb:BatchWriteItem", "AuditTable"),
                ("sns:Publish", "VaccinationsTopic"),
            ],
        ),
        (
            "ChildReadFunction",
            &[
                ("dynamodb:GetItem", "RegisterTable"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "ChildRelationshipsFunction",
            &[
                ("dynamodb:Query", "RelationshipsTable"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "RelationshipPublishFunction",
            &[
                ("dynamodb:GetItem", "RelationshipsTable"),
                ("dynamodb:PutItem", "RelationshipsTable"),
                ("dynamodb:Query", "SubscriptionsTable"),
                ("dynamodb:UpdateItem", "SubscriptionsTable"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "PersonActedForPutFunction",
            &[
                ("dynamodb:PutItem", "RelationshipsTable"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "PersonActedForDeleteFunction",
            &[
                ("dynamodb:GetItem", "RelationshipsTable"),
                ("dynamodb:Query", "RelationshipsTable/index/ByPerson"),
                ("dynamodb:UpdateItem", "RelationshipsTable"),
                ("dynamodb:Query", "SubscriptionsTable"),
                ("dynamodb:UpdateItem", "SubscriptionsTable"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "PersonChildrenFunction",
            &[
                ("dynamodb:GetItem", "RelationshipsTable"),
                ("dynamodb:Query", "RelationshipsTable/index/ByPerson"),
                ("dynamodb:PutItem", "AuditTable"),
            ],
        ),
        (
            "DispatchFunction",
            &[
                ("dynamodb:GetItem", "RegisterTable"),
                ("dynamodb:PutItem", "RegisterTable"),
                ("dynamodb:BatchGetItem", "ReferenceTable"),
                ("dynamodb:Query", "SubscriptionsTable"),
                ("dynamodb:UpdateItem", "SubscriptionsTable"),
                ("dynamodb:Query", "RelationshipsTable"),
                ("dynamodb:GetItem", "RelationshipsTable"),
                ("dynamodb:PutItem", "RelationshipsTable"),
                ("dynamodb:BatchWriteItem", "AuditTable"),
                ("dynamodb:PutItem", "AuditTable"),
                ("dynamodb:UpdateItem", "DeliveryStatsTable"),
                ("sns:Publish", "VaccinationsTopic"),
            ],
        ),
        (
            "SubscriberStatusFunction",
            &[
                ("dynamodb:GetItem", "SubscribersTable"),
                ("dynamodb:Query", "DeliveryStatsTable"),
                ("dynamodb:PutItem", "AuditTable"),
                ("sqs:GetQueueAttributes", SUBSCRIBER_QUEUES),
            ],
        ),
        (
            "SubscriberRedriveFunction",
            &[
                ("dynamodb:GetItem", "SubscribersTable"),
                ("dynamodb:PutItem", "AuditTable"),
                ("sqs:ReceiveMessage", SUBSCRIBER_QUEUES),
                ("sqs:SendMessage", SUBSCRIBER_QUEUES),
                ("sqs:DeleteMessage", SUBSCRIBER_QUEUES),
                ("sqs:GetQueueAttributes", SUBSCRIBER_QUEUES),
                ("kms:Decrypt", "HubDataKey"),
                ("kms:GenerateDataKey", "HubDataKey"),
            ],
        ),
    ];
    for (id, needs) in required {
        let statements = function_statements(id, resource(id));
        for (action, target) in *needs {
            assert!(
                statements
                    .iter()
                    .any(|statement| statement.allows_on(action, target)),
                "{id} calls {action} on {target} but is not allowed to"
            );
        }
    }
}

/// Status and redrive touch the subscriber queues and nothing else of SQS,
/// and only status reads the delivery counts; only dispatch writes them.
#[test]
fn delivery_status_functions_stay_within_the_subscriber_queues() {
    for id in ["SubscriberStatusFunction", "SubscriberRedriveFunction"] {
        for statement in function_statements(id, resource(id)) {
            let sqs = statement.actions().iter().any(|a| a.starts_with("sqs:"));
            if sqs {
                assert_eq!(
                    statement.resource_names(),
                    [SUBSCRIBER_QUEUES],
                    "{id}: SQS only on the subscriber queues"
                );
            }
        }
    }
    let status_sqs: BTreeSet<String> = function_statements(
        "SubscriberStatusFunction",
        resource("SubscriberStatusFunction"),
    )
    .iter()
    .flat_map(|s| s.actions())
    .filter(|a| a.starts_with("sqs:"))
    .collect();
    assert_eq!(
        status_sqs,
        BTreeSet::from(["sqs:GetQueueAttributes".to_owned()]),
        "the status reads no message"
    );
    for statement in all_identity_statements() {
        if statement
            .resource_names()
            .iter()
            .any(|r| r == "DeliveryStatsTable")
        {
            for action in statement.actions() {
                let allowed = match statement.owner.as_str() {
                    "DispatchFunction" | "ReplayWorkerFunction" | "EmbargoReleaseFunction" => {
                        action == "dynamodb:UpdateItem"
                    }
                    "SubscriberStatusFunction" => action == "dynamodb:Query",
                    _ => false,
                };
                assert!(
                    allowed,
                    "{}: {action} on DeliveryStatsTable",
                    statement.owner
                );
            }
        }
    }
    for (id, path, method) in [
        (
            "SubscriberStatusFunction",
            "/subscribers/{id}/status",
            "get",
        ),
        (
            "SubscriberRedriveFunction",
            "/subscribers/{id}/$redrive",
            "post",
        ),
    ] {
        let routes: Vec<(String, String)> = api_events(resource(id))
            .into_iter()
            .map(|(_, event)| {
                (
                    event["Path"].as_str().unwrap_or_default().to_owned(),
                    event["Method"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert_eq!(routes, [(path.to_owned(), method.to_owned())], "{id}");
    }
}

// ---------------------------------------------------------------------------
// Monitoring
// ---------------------------------------------------------------------------

/// The hub's metric namespace as the template writes it.
const HUB_NAMESPACE: &str = "ChildHealthEventsHub/${Stage}";

fn alarms() -> Vec<(&'static str, &'static Value)> {
    present("AWS::CloudWatch::Alarm")
}

fn sub_text(value: &Value) -> Option<&str> {
    value["Fn::Sub"].as_str().or_else(|| value.as_str())
}

/// The metric names a Metrics Insights query or a SEARCH expression of the
/// hub's namespace reads: `FN(Name) FROM "<namespace>"` and
/// `{<namespace>,...} MetricName="Name"` (quotes escaped or not).
fn hub_metrics_in_expression(expression: &str) -> Vec<String> {
    let mut names = Vec::new();
    let from_hub = format!("FROM \"{HUB_NAMESPACE}\"");
    if let Some((select, _)) = expression.split_once(&from_hub)
        && let Some((_, call)) = select.rsplit_once('(')
        && let Some((name, _)) = call.split_once(')')
    {
        names.push(name.to_owned());
    }
    for search in expression.split("SEARCH(").skip(1) {
        if !search.starts_with(&format!("'{{{HUB_NAMESPACE},")) {
            continue;
        }
        let search = search.replace("\\\"", "\"");
        if let Some((_, rest)) = search.split_once("MetricName=\"")
            && let Some((name, _)) = rest.split_once('"')
        {
            names.push(name.to_owned());
        }
    }
    names
}

/// Every metric of the hub's namespace an alarm reads.
fn hub_metrics_of_alarm(alarm: &'static Value) -> Vec<String> {
    let properties = &alarm["Properties"];
    let hub_metric = |metric: &Value| {
        (sub_text(&metric["Namespace"]) == Some(HUB_NAMESPACE))
            .then(|| metric["MetricName"].as_str().unwrap_or_default().to_owned())
    };
    let mut names: Vec<String> = hub_metric(properties).into_iter().collect();
    for query in properties["Metrics"].as_array().into_iter().flatten() {
        names.extend(hub_metric(&query["MetricStat"]["Metric"]));
        if let Some(expression) = sub_text(&query["Expression"]) {
            names.extend(hub_metrics_in_expression(expression));
        }
    }
    names
}

/// Every metric of the hub's namespace the dashboard shows.
fn hub_metrics_of_dashboard() -> Vec<String> {
    let body = sub_text(&resource("HubDashboard")["Properties"]["DashboardBody"])
        .expect("the dashboard body is a !Sub text");
    let body: Value = serde_json::from_str(body).expect("the dashboard body is JSON");
    let mut names = Vec::new();
    for widget in body["widgets"]
        .as_array()
        .expect("the dashboard has widgets")
    {
        for line in widget["properties"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            match line.as_array().map(Vec::as_slice) {
                Some([Value::Object(options), ..]) => {
                    let expression = options["expression"].as_str().unwrap_or_default();
                    names.extend(hub_metrics_in_expression(expression));
                }
                Some([namespace, name, ..]) if namespace == HUB_NAMESPACE => {
                    names.push(name.as_str().unwrap_or_default().to_owned());
                }
                _ => {}
            }
        }
    }
    names
}

#[test]
fn functions_write_their_metrics_to_the_stage_namespace() {
    let globals = &template()["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(
        sub_text(&globals[hub::metrics::NAMESPACE_VARIABLE]),
        Some(HUB_NAMESPACE),
        "Globals: {} must be {HUB_NAMESPACE}",
        hub::metrics::NAMESPACE_VARIABLE
    );
}

#[test]
fn alarms_and_dashboard_read_only_metrics_the_hub_emits() {
    let mut read = Vec::new();
    for (id, alarm) in alarms() {
        read.extend(
            hub_metrics_of_alarm(alarm)
                .into_iter()
                .map(|name| (id, name)),
        );
    }
    read.extend(
        hub_metrics_of_dashboard()
            .into_iter()
            .map(|name| ("HubDashboard", name)),
    );
    for (id, name) in &read {
        assert!(
            hub::metrics::ALL.contains(&name.as_str()),
            "{id} reads {name}, which the hub does not emit (shared/src/metrics.rs)"
        );
    }
    // The parsing above found what the template is known to read, so an
    // empty list cannot pass for a correct one.
    for (id, name) in [
        ("DispatchRetriesAlarm", hub::metrics::DISPATCH_FAILURES),
        ("ReplayWorkerErrorsAlarm", hub::metrics::REPLAY_FAILURES),
        ("PublishFailuresAlarm", hub::metrics::PUBLISH_FAILED),
        ("EmbargoOverdueAlarm", hub::metrics::EMBARGO_OVERDUE),
        ("HubDashboard", hub::metrics::PUBLISH_ACCEPTED),
        ("HubDashboard", hub::metrics::DELIVERIES),
        ("HubDashboard", hub::metrics::PUBLISH_LATENCY),
        ("HubDashboard", hub::metrics::DISPATCH_DELAY),
    ] {
        assert!(
            read.iter()
                .any(|(reader, read_name)| *reader == id && read_name == name),
            "{id} should read {name}; found {read:?}"
        );
    }
}

#[test]
fn every_queue_of_the_template_has_an_alarm_on_waiting_messages() {
    for (queue, _) in present("AWS::SQS::Queue") {
        let watched = alarms().iter().any(|(_, alarm)| {
            let properties = &alarm["Properties"];
            properties["Namespace"] == "AWS/SQS"
                && properties["MetricName"] == "ApproximateNumberOfMessagesVisible"
                && items(&properties["Dimensions"]).iter().any(|dimension| {
                    dimension["Name"] == "QueueName"
                        && dimension["Value"] == json!({"Fn::GetAtt": [queue, "QueueName"]})
                })
        });
        assert!(
            watched,
            "{queue}: no alarm on ApproximateNumberOfMessagesVisible (a failure queue must be watched)"
        );
    }
}

#[test]
fn every_alarm_is_named_for_its_stage_and_notifies_the_alarm_topic() {
    let alarms = alarms();
    assert!(alarms.len() >= 10, "the on-call alarms are missing");
    for (id, alarm) in alarms {
        let properties = &alarm["Properties"];
        // The data key lets CloudWatch use it for alarms of this prefix only.
        let name = sub_text(&properties["AlarmName"]).unwrap_or_default();
        assert!(
            name.starts_with("chhub-${Stage}-"),
            "{id}: AlarmName must start with chhub-${{Stage}}-, not {name:?}"
        );
        for actions in ["AlarmActions", "OKActions"] {
            let expected = json!({"Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]});
            assert_eq!(properties[actions], expected, "{id}: {actions}");
        }
        assert!(
            properties["AlarmDescription"]
                .as_str()
                .is_some_and(|text| text.contains("docs/deploy.md#alarms")),
            "{id}: the description should point the on-call person to docs/deploy.md#alarms"
        );
    }
}

#[test]
fn subscriber_queue_alarms_cover_the_queues_onboarding_creates() {
    // The prefix onboarding is given must be the one the queries read.
    let prefix = sub_text(&environment(resource("OnboardSubscriberFunction"))["QUEUE_NAME_PREFIX"])
        .expect("onboarding has QUEUE_NAME_PREFIX");
    for (id, pattern) in [
        ("SubscriberQueueAgeAlarm", format!("LIKE '{prefix}-%'")),
        (
            "SubscriberDeadLetterAlarm",
            format!("LIKE '{prefix}-%-dlq'"),
        ),
    ] {
        let expression =
            sub_text(&resource(id)["Properties"]["Metrics"][0]["Expression"]).unwrap_or_default();
        assert!(
            expression.contains(&pattern) && expression.contains("GROUP BY QueueName"),
            "{id}: the query should read every queue {pattern}, one contributor each: {expression}"
        );
    }
}

#[test]
fn functions_run_on_the_architecture_parameter() {
    let parameter = &template()["Parameters"]["Architecture"];
    assert_eq!(parameter["Default"], "arm64");
    assert_eq!(parameter["AllowedValues"], json!(["arm64", "x86_64"]));
    assert_eq!(
        template()["Globals"]["Function"]["Architectures"],
        json!([{"Ref": "Architecture"}])
    );
    for (id, function) in functions() {
        assert!(
            function["Properties"].get("Architectures").is_none(),
            "{id}: the architecture is the stack's (Globals), not the function's"
        );
    }
}

/// Release embargoes: the table holds its items under pk/sk with a TTL; the
/// release function runs on a schedule, one run at a time, and may neither
/// scan nor delete (the global checks above); the function reads held
/// items by key and writes them with conditions only.
#[test]
fn the_embargo_release_runs_alone_on_a_schedule_over_its_keyed_table() {
    let table = resource("EmbargoTable");
    let keys: Vec<&str> = table["Properties"]["KeySchema"]
        .as_array()
        .expect("a key schema")
        .iter()
        .filter_map(|key| key["AttributeName"].as_str())
        .collect();
    assert_eq!(keys, ["pk", "sk"]);
    assert_eq!(
        table["Properties"]["TimeToLiveSpecification"]["AttributeName"],
        "expiresAt"
    );
    let function = resource("EmbargoReleaseFunction");
    assert_eq!(function["Properties"]["ReservedConcurrentExecutions"], 1);
    let schedules: Vec<&Value> = function["Properties"]["Events"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, event)| event)
        .filter(|event| event["Type"] == "Schedule")
        .collect();
    assert_eq!(schedules.len(), 1, "one schedule");
    assert_eq!(schedules[0]["Properties"]["Schedule"], "rate(5 minutes)");
    let actions: BTreeSet<String> = function_statements("EmbargoReleaseFunction", function)
        .iter()
        .filter(|statement| {
            statement
                .resource_names()
                .iter()
                .any(|name| name == "EmbargoTable")
        })
        .flat_map(|statement| statement.actions())
        .collect();
    for forbidden in [
        "dynamodb:Scan",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
    ] {
        assert!(!actions.contains(forbidden), "{forbidden} on EmbargoTable");
    }
    assert!(
        actions.contains("dynamodb:Query"),
        "the holds due are queried"
    );
}
