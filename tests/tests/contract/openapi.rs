//! openapi.yaml describes the API template.yaml deploys: the same routes,
//! both ways, every refusal documented as the hub's OperationOutcome, the
//! token endpoint the only one without the bearer token, and the
//! OperationOutcome schema the shape shared/src/outcome.rs renders.
//! (infra/test.sh validates the file against the OpenAPI schema itself.)

use std::collections::BTreeSet;
use std::sync::OnceLock;

use hub::outcome::{Issue, OperationOutcome, Severity};
use serde_json::Value;

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
const OPENAPI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml");

const OUTCOME_REF: &str = "#/components/schemas/OperationOutcome";
const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

fn template() -> &'static Value {
    static PARSED: OnceLock<Value> = OnceLock::new();
    PARSED.get_or_init(|| e2e_tests::read_yaml(TEMPLATE))
}

fn openapi() -> &'static Value {
    static PARSED: OnceLock<Value> = OnceLock::new();
    PARSED.get_or_init(|| e2e_tests::read_yaml(OPENAPI))
}

type Route = (String, String);

/// (METHOD, path) of every `Type: Api` event of every function.
fn template_routes() -> BTreeSet<Route> {
    let resources = template()["Resources"]
        .as_object()
        .expect("the template has Resources");
    let mut routes = BTreeSet::new();
    for (id, resource) in resources {
        let Some(events) = resource["Properties"]["Events"].as_object() else {
            continue;
        };
        for (name, event) in events {
            if event["Type"] != "Api" {
                continue;
            }
            let properties = &event["Properties"];
            let method = properties["Method"]
                .as_str()
                .unwrap_or_else(|| panic!("{id}.{name} has a Method"));
            let path = properties["Path"]
                .as_str()
                .unwrap_or_else(|| panic!("{id}.{name} has a Path"));
            let route = (method.to_ascii_uppercase(), path.to_owned());
            assert!(
                routes.insert(route.clone()),
                "{route:?} is served by two functions"
            );
        }
    }
    routes
}

/// Every operation of openapi.yaml, with its route.
fn operations() -> Vec<(Route, &'static Value)> {
    let paths = openapi()["paths"]
        .as_object()
        .expect("openapi.yaml has paths");
    let mut operations = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is a mapping");
        for (key, operation) in item {
            if HTTP_METHODS.contains(&key.as_str()) {
                operations.push(((key.to_ascii_uppercase(), path.clone()), operation));
            }
        }
    }
    operations
}

/// What a local `$ref` (`#/a/b`) points to; anything else as it is.
fn resolve(value: &'static Value) -> &'static Value {
    let mut value = value;
    for _ in 0..10 {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
            return value;
        };
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{reference} is not a local reference"));
        value = openapi()
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{reference} points to nothing"));
    }
    panic!("a $ref chain longer than 10");
}

#[test]
fn every_route_of_the_template_is_documented_and_nothing_else() {
    let deployed = template_routes();
    let documented: BTreeSet<Route> = operations().into_iter().map(|(route, _)| route).collect();
    assert!(
        deployed.len() >= 28,
        "the template's routes were not all read: {deployed:?}"
    );
    let undocumented: Vec<_> = deployed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes in template.yaml missing from openapi.yaml: {undocumented:?}"
    );
    let not_deployed: Vec<_> = documented.difference(&deployed).collect();
    assert!(
        not_deployed.is_empty(),
        "operations in openapi.yaml that template.yaml does not deploy: {not_deployed:?}"
    );
}

#[test]
fn every_operation_documents_a_refusal_as_an_operation_outcome() {
    let mut missing = Vec::new();
    for (route, operation) in operations() {
        let responses = operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{route:?} has responses"));
        let documented = responses
            .iter()
            .filter(|(status, _)| status.starts_with('4'))
            .any(|(_, response)| {
                resolve(response)["content"]
                    .as_object()
                    .is_some_and(|content| {
                        content
                            .values()
                            .any(|media| media["schema"]["$ref"] == OUTCOME_REF)
                    })
            });
        if !documented {
            missing.push(route);
        }
    }
    assert!(
        missing.is_empty(),
        "operations without a 4xx OperationOutcome response: {missing:?}"
    );
}

#[test]
fn only_the_token_endpoint_goes_without_the_bearer_token() {
    let schemes = openapi()["components"]["securitySchemes"]
        .as_object()
        .expect("openapi.yaml declares its security schemes");
    let bearer: Vec<&String> = schemes
        .iter()
        .filter(|(_, scheme)| scheme["type"] == "http" && scheme["scheme"] == "bearer")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(bearer.len(), 1, "one bearer scheme: {schemes:?}");
    let bearer = bearer[0];
    let global = &openapi()["security"];
    for (route, operation) in operations() {
        let security = operation.get("security").unwrap_or(global);
        let requirements = security.as_array().expect("security is a list");
        if route == ("POST".to_owned(), "/oauth2/token".to_owned()) {
            assert!(requirements.is_empty(), "the token endpoint needs no token");
            continue;
        }
        assert!(
            requirements
                .iter()
                .any(|requirement| requirement.get(bearer.as_str()).is_some()),
            "{route:?} must require the bearer token"
        );
        // What the authorizer's gateway responses answer on every such route.
        for status in ["401", "503"] {
            let response = &operation["responses"][status];
            assert!(
                !response.is_null(),
                "{route:?} does not document the gateway's {status}"
            );
            assert_eq!(
                resolve(response)["content"]["application/fhir+json"]["schema"]["$ref"],
                OUTCOME_REF,
                "{route:?}: the {status} is an application/fhir+json OperationOutcome"
            );
        }
    }
}

/// The schema's properties and required fields, by name.
fn shape(schema: &'static Value) -> (BTreeSet<&'static str>, BTreeSet<&'static str>) {
    let schema = resolve(schema);
    let properties = schema["properties"]
        .as_object()
        .expect("an object schema")
        .keys()
        .map(String::as_str)
        .collect();
    let required = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    (properties, required)
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// Each object of the rendered outcome has exactly the schema's properties
/// when all are present, and at least its required ones when some are not.
#[test]
fn the_operation_outcome_schema_is_what_the_hub_renders() {
    let schema = &openapi()["components"]["schemas"]["OperationOutcome"];
    let issue_schema = &resolve(schema)["properties"]["issue"]["items"];
    let coding_schema =
        &resolve(issue_schema)["properties"]["details"]["properties"]["coding"]["items"];
    let with_expression = OperationOutcome::single(Issue {
        severity: Severity::Error,
        code: "value",
        spine_code: "INVALID_NHS_NUMBER",
        diagnostics: "the NHS number fails its check digit".into(),
        expression: vec!["Bundle.entry[0].resource.ofType(MessageHeader).id".into()],
    })
    .to_json();
    let without_expression =
        OperationOutcome::information("MULTIPLE_MATCHES", "name one with ?eventType=").to_json();
    for rendered in [&with_expression, &without_expression] {
        let (properties, required) = shape(schema);
        assert_eq!(keys(rendered), properties);
        assert!(required.is_subset(&properties));
        let meta_profile = &resolve(schema)["properties"]["meta"]["properties"]["profile"];
        assert_eq!(
            rendered["meta"]["profile"][0],
            meta_profile["items"]["enum"][0]
        );
        let issue = &rendered["issue"][0];
        let (issue_properties, issue_required) = shape(issue_schema);
        assert!(issue_required.is_subset(&keys(issue)), "{issue}");
        assert!(keys(issue).is_subset(&issue_properties), "{issue}");
        let severities = resolve(issue_schema)["properties"]["severity"]["enum"]
            .as_array()
            .expect("severity is an enum");
        assert!(severities.contains(&issue["severity"]));
        let coding = &issue["details"]["coding"][0];
        let (coding_properties, _) = shape(coding_schema);
        assert_eq!(keys(coding), coding_properties);
        assert_eq!(
            coding["system"],
            resolve(coding_schema)["properties"]["system"]["enum"][0]
        );
    }
    assert!(with_expression["issue"][0]["expression"].is_array());
    assert!(without_expression["issue"][0].get("expression").is_none());
}
