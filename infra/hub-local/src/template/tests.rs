use std::collections::BTreeMap;
use std::path::Path;

use serde_norway::Value;

use super::*;

const TEMPLATE: &str = r#"
Parameters:
  Stage:
    Type: String
    Default: dev
  UseCmk:
    Type: String
    Default: "false"
Conditions:
  IsDev: !Equals [!Ref Stage, dev]
  IsProd: !Not [!Condition IsDev]
  WithCmk: !And [!Equals ["true", !Ref UseCmk], !Condition IsDev]
  Either:
    Fn::Or:
      - Condition: IsProd
      - !Equals [!Ref "AWS::Region", eu-west-2]
Globals:
  Function:
    Timeout: 10
    Environment:
      Variables:
        STAGE: !Ref Stage
Resources:
  HubApi:
    Type: AWS::Serverless::Api
    Properties:
      StageName: !Ref Stage
      AccessLogSetting:
        DestinationArn: !GetAtt ApiAccessLogs.Arn
        Format: '{"requestId":"$context.requestId","status":"$context.status"}'
      MethodSettings:
        - ResourcePath: "/*"
          HttpMethod: "*"
          ThrottlingBurstLimit: 10
      Auth:
        DefaultAuthorizer: HubTokenAuthorizer
        Authorizers:
          HubTokenAuthorizer:
            FunctionArn: !GetAtt AuthorizerFunction.Arn
            Identity:
              Header: Authorization
              ReauthorizeEvery: 0
      GatewayResponses:
        UNAUTHORIZED:
          StatusCode: 401
          ResponseParameters:
            Headers:
              Content-Type: "'application/fhir+json'"
              X-Request: method.request.header.x-request
          ResponseTemplates:
            application/json: '{"code":"$context.authorizer.code"}'
  ApiAccessLogs:
    Type: AWS::Logs::LogGroup
    Properties:
      RetentionInDays: 30
  HubSigningKey:
    Type: AWS::KMS::Key
    Properties:
      KeySpec: ECC_NIST_P256
      KeyUsage: SIGN_VERIFY
  HubSigningKeyAlias:
    Type: AWS::KMS::Alias
    Properties:
      AliasName: !Sub "alias/chhub-${Stage}-signing"
      TargetKeyId: !Ref HubSigningKey
  ProdOnlyTable:
    Type: AWS::DynamoDB::Table
    Condition: IsProd
    Properties: {}
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      SSESpecification: !If
        - WithCmk
        - {SSEEnabled: true, SSEType: KMS, KMSMasterKeyId: !Ref HubDataKey}
        - !Ref AWS::NoValue
      TimeToLiveSpecification: {AttributeName: expiresAt, Enabled: true}
  TopicPolicy:
    Type: AWS::SNS::TopicPolicy
    Properties: {}
  TokenFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/token
      Environment:
        Variables:
          KEY: !If [IsDev, !Ref HubSigningKeyAlias, !Ref AWS::NoValue]
          GONE: !If [IsProd, x, !Ref AWS::NoValue]
          JOINED: !Join [",", [a, !Ref Stage, !If [IsProd, c, !Ref AWS::NoValue]]]
          PICKED: !Select [1, [x, !Sub ["${Name}-y", {Name: !Ref Stage}]]]
          EITHER: !If [Either, yes, no]
      Events:
        Token:
          Type: Api
          Properties:
            RestApiId: !Ref HubApi
            Path: /oauth2/token
            Method: post
            Auth:
              Authorizer: NONE
  AuthorizerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/authorizer
  ReadFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/read
      Events:
        Read:
          Type: Api
          Properties:
            Path: /things/{id}
            Method: get
"#;

fn environment(template: &Template, function: &str) -> BTreeMap<String, Value> {
    template
        .functions
        .iter()
        .find(|f| f.logical_id == function)
        .unwrap()
        .environment
        .iter()
        .cloned()
        .collect()
}

#[test]
fn conditions_select_resources_and_branches() {
    let template = Template::parse(TEMPLATE).unwrap();
    assert_eq!(
        template
            .tables
            .iter()
            .map(|t| t.logical_id.as_str())
            .collect::<Vec<_>>(),
        ["Table"],
        "the prod-only table is left out"
    );
    let table = &template.tables[0].properties;
    assert!(
        get(table, "SSESpecification").is_none(),
        "NoValue removes it"
    );
    assert!(get(table, "TimeToLiveSpecification").is_some());

    let mut resolved = Resolved {
        parameters: template.parameters.clone(),
        ..Resolved::default()
    };
    resolved.refs.insert(
        "HubSigningKeyAlias".into(),
        "alias/chhub-dev-signing".into(),
    );
    let environment = environment(&template, "TokenFunction");
    assert!(!environment.contains_key("GONE"));
    let value = |name: &str| resolved.resolve(&environment[name]).unwrap();
    assert_eq!(value("KEY"), "alias/chhub-dev-signing");
    assert_eq!(value("STAGE"), "dev");
    assert_eq!(value("JOINED"), "a,dev");
    assert_eq!(value("PICKED"), "dev-y");
    assert_eq!(value("EITHER"), "yes");
}

#[test]
fn kms_keys_aliases_and_the_api_are_read() {
    let template = Template::parse(TEMPLATE).unwrap();
    assert_eq!(template.kms_keys[0].logical_id, "HubSigningKey");
    assert_eq!(
        get(&template.kms_keys[0].properties, "KeySpec").and_then(Value::as_str),
        Some("ECC_NIST_P256")
    );
    let resolved = Resolved {
        parameters: template.parameters.clone(),
        ..Resolved::default()
    };
    assert_eq!(
        resolved.resolve(&template.kms_aliases[0].name).unwrap(),
        "alias/chhub-dev-signing"
    );

    let api = &template.api;
    assert_eq!(api.logical_id.as_deref(), Some("HubApi"));
    assert_eq!(
        api.default_authorizer.as_deref(),
        Some("HubTokenAuthorizer")
    );
    let authorizer = &api.authorizers["HubTokenAuthorizer"];
    assert_eq!(authorizer.function_logical_id, "AuthorizerFunction");
    assert_eq!(authorizer.header, "Authorization");
    let unauthorized = &api.gateway_responses["UNAUTHORIZED"];
    assert_eq!(unauthorized.status, Some(401));
    assert_eq!(
        unauthorized.headers,
        [
            (
                "Content-Type".to_owned(),
                HeaderSource::Static("application/fhir+json".into())
            ),
            (
                "X-Request".to_owned(),
                HeaderSource::RequestHeader("x-request".into())
            ),
        ]
    );
    assert_eq!(
        unauthorized.templates["application/json"],
        r#"{"code":"$context.authorizer.code"}"#
    );

    let route = |function: &str| {
        template
            .functions
            .iter()
            .find(|f| f.logical_id == function)
            .unwrap()
            .routes[0]
            .clone()
    };
    assert_eq!(
        resolved
            .resolve(api.access_log_format.as_ref().unwrap())
            .unwrap(),
        r#"{"requestId":"$context.requestId","status":"$context.status"}"#
    );
    assert_eq!(route("TokenFunction").auth, RouteAuth::None);
    assert_eq!(route("ReadFunction").auth, RouteAuth::Default);
}

#[test]
fn a_condition_cycle_or_unknown_condition_is_an_error() {
    let cycle = "Conditions:\n  A: !Condition B\n  B: !Not [!Condition A]\nResources: {}\n";
    assert!(Template::parse(cycle).is_err());
    let unknown = "Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n    Condition: Nope\n";
    assert!(Template::parse(unknown).is_err());
}

#[test]
fn the_project_template_reads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
    let template = Template::load(&path, &BTreeMap::new()).unwrap();
    assert!(!template.functions.is_empty());
}

#[test]
fn overrides_replace_defaults_before_conditions_are_evaluated() {
    let overrides = BTreeMap::from([("Stage".to_owned(), "prod".to_owned())]);
    let template = Template::parse_with(TEMPLATE, &overrides).unwrap();
    assert_eq!(template.parameters["Stage"], "prod");
    assert_eq!(template.parameters["UseCmk"], "false", "the default");
    assert!(
        template
            .tables
            .iter()
            .any(|t| t.logical_id == "ProdOnlyTable"),
        "IsProd holds"
    );
    let environment = environment(&template, "TokenFunction");
    assert!(!environment.contains_key("KEY"), "IsDev does not");
    assert!(environment.contains_key("GONE"));

    let unknown = BTreeMap::from([("Nope".to_owned(), "x".to_owned())]);
    let error = Template::parse_with(TEMPLATE, &unknown).unwrap_err();
    assert!(error.contains("Nope"), "{error}");
}
