//! FHIR OperationOutcome: how the hub answers, in success and in refusal.

use serde_json::json;

use crate::message::Encoding;

pub const SPINE_ERROR_SYSTEM: &str =
    "https://fhir.nhs.uk/STU3/CodeSystem/Spine-ErrorOrWarningCode-1";
const PROFILE: &str = "https://fhir.nhs.uk/STU3/StructureDefinition/Spine-OperationOutcome-1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Information,
    Warning,
    Error,
}

impl Severity {
    fn code(self) -> &'static str {
        match self {
            Severity::Information => "information",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    /// FHIR IssueType: invalid, structure, required, value, duplicate, ...
    pub code: &'static str,
    /// Spine-ErrorOrWarningCode-1 code, as NEMS answers.
    pub spine_code: &'static str,
    pub diagnostics: String,
    /// FHIRPath expressions of the elements at fault.
    pub expression: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationOutcome {
    pub issues: Vec<Issue>,
}

impl OperationOutcome {
    pub fn single(issue: Issue) -> Self {
        OperationOutcome {
            issues: vec![issue],
        }
    }

    pub fn information(spine_code: &'static str, diagnostics: impl Into<String>) -> Self {
        Self::single(Issue {
            severity: Severity::Information,
            code: "informational",
            spine_code,
            diagnostics: diagnostics.into(),
            expression: Vec::new(),
        })
    }

    pub fn with(mut self, issue: Issue) -> Self {
        self.issues.push(issue);
        self
    }

    pub fn to_json(&self) -> serde_json::Value {
        let issues: Vec<_> = self
            .issues
            .iter()
            .map(|issue| {
                let mut value = json!({
                    "severity": issue.severity.code(),
                    "code": issue.code,
                    "details": {"coding": [{"system": SPINE_ERROR_SYSTEM, "code": issue.spine_code}]},
                    "diagnostics": issue.diagnostics,
                });
                if !issue.expression.is_empty() {
                    value["expression"] = json!(issue.expression);
                }
                value
            })
            .collect();
        json!({
            "resourceType": "OperationOutcome",
            "meta": {"profile": [PROFILE]},
            "issue": issues,
        })
    }

    pub fn to_xml(&self) -> String {
        let mut xml =
            String::from("<OperationOutcome xmlns=\"http://hl7.org/fhir\"><meta><profile value=\"");
        xml.push_str(PROFILE);
        xml.push_str("\"/></meta>");
        for issue in &self.issues {
            xml.push_str("<issue><severity value=\"");
            xml.push_str(issue.severity.code());
            xml.push_str("\"/><code value=\"");
            xml.push_str(issue.code);
            xml.push_str("\"/><details><coding><system value=\"");
            xml.push_str(SPINE_ERROR_SYSTEM);
            xml.push_str("\"/><code value=\"");
            xml.push_str(issue.spine_code);
            xml.push_str("\"/></coding></details><diagnostics value=\"");
            xml.push_str(&escape_xml(&issue.diagnostics));
            xml.push_str("\"/>");
            for expression in &issue.expression {
                xml.push_str("<expression value=\"");
                xml.push_str(&escape_xml(expression));
                xml.push_str("\"/>");
            }
            xml.push_str("</issue>");
        }
        xml.push_str("</OperationOutcome>");
        xml
    }

    pub fn render(&self, encoding: Encoding) -> String {
        match encoding {
            Encoding::Json => self.to_json().to_string(),
            Encoding::Xml => self.to_xml(),
        }
    }
}

pub fn escape_xml(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir;

    fn sample() -> OperationOutcome {
        OperationOutcome::single(Issue {
            severity: Severity::Error,
            code: "value",
            spine_code: "INVALID_NHS_NUMBER",
            diagnostics: "NHS number <1112223330> fails \"Modulus 11\" & more".into(),
            expression: vec!["Bundle.entry[0].resource.ofType(MessageHeader).id".into()],
        })
    }

    #[test]
    fn json_and_xml_read_back_alike() {
        let outcome = sample();
        for encoding in [Encoding::Json, Encoding::Xml] {
            let rendered = outcome.render(encoding);
            let tree = match encoding {
                Encoding::Json => fhir::read_json(&rendered),
                Encoding::Xml => fhir::read_xml(&rendered),
            }
            .unwrap();
            assert_eq!(tree.name, "OperationOutcome");
            let issue = tree.child("issue").unwrap();
            assert_eq!(issue.value_of("severity"), Some("error"));
            assert_eq!(issue.value_of("code"), Some("value"));
            assert_eq!(
                issue.value_of("diagnostics"),
                Some(outcome.issues[0].diagnostics.as_str())
            );
            assert_eq!(
                issue.value_of("expression"),
                Some("Bundle.entry[0].resource.ofType(MessageHeader).id")
            );
            let coding = issue
                .child("details")
                .and_then(|d| d.child("coding"))
                .unwrap();
            assert_eq!(coding.value_of("code"), Some("INVALID_NHS_NUMBER"));
        }
    }
}
