use super::*;

const XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Bundle xmlns="http://hl7.org/fhir">
  <!-- a comment -->
  <type value="message"/>
  <entry>
    <resource>
      <Patient>
        <text><div xmlns="http://www.w3.org/1999/xhtml"><p>narrative &amp; more</p></div></text>
        <extension url="http://example.org/ext"><valueString value="a &lt; b"/></extension>
        <name><given value="Jack"/><given value="Peter"/></name>
        <birthDate value="2013-10-12">
          <extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">
            <valueDateTime value="2013-10-12T12:00:00+00:00"/>
          </extension>
        </birthDate>
      </Patient>
    </resource>
  </entry>
</Bundle>"#;

const JSON: &str = r#"{
      "resourceType": "Bundle",
      "type": "message",
      "entry": [{
        "resource": {
          "resourceType": "Patient",
          "text": {"div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>narrative</p></div>"},
          "extension": [{"url": "http://example.org/ext", "valueString": "a < b"}],
          "name": [{"given": ["Jack", "Peter"]}],
          "birthDate": "2013-10-12",
          "_birthDate": {"extension": [{
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
            "valueDateTime": "2013-10-12T12:00:00+00:00"
          }]}
        }
      }]
    }"#;

fn check_shape(bundle: &Element) {
    assert_eq!(bundle.name, "Bundle");
    assert_eq!(bundle.value_of("type"), Some("message"));
    let patient = bundle.child("entry").and_then(Element::resource).unwrap();
    assert_eq!(patient.name, "Patient");
    let ext = patient.extension("http://example.org/ext").unwrap();
    assert_eq!(ext.value_of("valueString"), Some("a < b"));
    let given: Vec<_> = patient
        .child("name")
        .unwrap()
        .children("given")
        .filter_map(|g| g.value.as_deref())
        .collect();
    assert_eq!(given, ["Jack", "Peter"]);
    let birth_date = patient.child("birthDate").unwrap();
    assert_eq!(birth_date.value.as_deref(), Some("2013-10-12"));
    let birth_time = birth_date
        .extension("http://hl7.org/fhir/StructureDefinition/patient-birthTime")
        .and_then(|e| e.value_of("valueDateTime"));
    assert_eq!(birth_time, Some("2013-10-12T12:00:00+00:00"));
}

#[test]
fn xml_and_json_give_the_same_shape() {
    check_shape(&read_xml(XML).unwrap());
    check_shape(&read_json(JSON).unwrap());
}

#[test]
fn xml_refuses_doctype_and_entities() {
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><Bundle xmlns="http://hl7.org/fhir"><id value="&xxe;"/></Bundle>"#;
    assert_eq!(read_xml(xxe), Err(ReadError::DocType));
    let undeclared = r#"<Bundle xmlns="http://hl7.org/fhir"><id value="&lol;"/></Bundle>"#;
    assert!(matches!(read_xml(undeclared), Err(ReadError::Xml(_))));
}

#[test]
fn xml_outside_the_fhir_namespace_is_not_fhir() {
    assert!(matches!(read_xml("<Bundle/>"), Err(ReadError::NotFhir(_))));
    let prefixed =
        r#"<f:Bundle xmlns:f="http://hl7.org/fhir"><f:type value="message"/></f:Bundle>"#;
    assert_eq!(
        read_xml(prefixed).unwrap().value_of("type"),
        Some("message")
    );
}

#[test]
fn malformed_xml_is_refused() {
    for bad in [
        "",
        "not xml",
        r#"<Bundle xmlns="http://hl7.org/fhir"><type value="message"></Bundle>"#,
        r#"<Bundle xmlns="http://hl7.org/fhir"/><Bundle xmlns="http://hl7.org/fhir"/>"#,
        r#"<Bundle xmlns="http://hl7.org/fhir"><type value="x"/>"#,
    ] {
        assert!(read_xml(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn deep_nesting_is_refused() {
    let deep_xml = format!(
        r#"<Bundle xmlns="http://hl7.org/fhir">{}{}</Bundle>"#,
        "<a>".repeat(200),
        "</a>".repeat(200)
    );
    assert_eq!(read_xml(&deep_xml), Err(ReadError::TooDeep));
    let deep_json = format!(
        r#"{{"resourceType":"Bundle","a":{}1{}}}"#,
        r#"{"a":"#.repeat(100),
        "}".repeat(100)
    );
    assert_eq!(read_json(&deep_json), Err(ReadError::TooDeep));
}

#[test]
fn json_refuses_duplicate_keys_and_non_resources() {
    assert!(matches!(
        read_json(r#"{"resourceType":"Bundle","type":"message","type":"batch"}"#),
        Err(ReadError::Json(_))
    ));
    assert!(matches!(read_json("[]"), Err(ReadError::NotFhir(_))));
    assert!(matches!(
        read_json(r#"{"type":"message"}"#),
        Err(ReadError::NotFhir(_))
    ));
    assert!(matches!(read_json("{"), Err(ReadError::Json(_))));
}

#[test]
fn json_bodies_refuse_duplicate_keys_at_any_depth() {
    let nested = r#"{"keys":{"keys":[{"kid":"a","kty":"EC","kid":"b"}]}}"#;
    let error = from_json_unique::<serde_json::Value>(nested).unwrap_err();
    assert!(
        error.to_string().contains("duplicate key \"kid\""),
        "{error}"
    );
    let unique = r#"{"a":[1,{"b":2.5,"c":null}],"kid":"a"}"#;
    assert_eq!(
        from_json_unique::<serde_json::Value>(unique).unwrap(),
        serde_json::json!({"a": [1, {"b": 2.5, "c": null}], "kid": "a"})
    );
}

#[test]
fn json_numbers_out_of_range_are_refused() {
    for number in ["1e400", "-1e400", &format!("1{}", "0".repeat(400))] {
        let resource = format!(r#"{{"resourceType":"Bundle","total":{number}}}"#);
        assert!(
            matches!(read_json(&resource), Err(ReadError::Json(_))),
            "{number}"
        );
        assert!(from_json_unique::<serde_json::Value>(&format!("[{number}]")).is_err());
    }
}
fn patient_with(inside: &str) -> String {
    format!(
        r#"<Patient xmlns="http://hl7.org/fhir">{inside}<birthDate value="2013-10-12"/></Patient>"#
    )
}

fn narrative(xhtml: &str) -> String {
    patient_with(&format!(
        r#"<text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml">{xhtml}</div></text>"#
    ))
}

#[test]
fn narratives_hold_only_safe_xhtml_in_both_encodings() {
    let plain = r#"<p class="x">Jack &amp; <b>Jill</b> &#233;<br/><img src="a.png" alt="a"/></p>"#;
    assert!(read_xml(&narrative(plain)).is_ok());
    for (what, xhtml) in [
        ("a script", "<script>alert(1)</script>"),
        ("a script in capitals", "<SCRIPT>alert(1)</SCRIPT>"),
        ("an iframe", r#"<iframe src="https://example.org"/>"#),
        ("an event handler", r#"<p onclick="alert(1)">x</p>"#),
        (
            "an event handler in capitals",
            r#"<img src="a.png" ONERROR="alert(1)"/>"#,
        ),
        (
            "a javascript link",
            r#"<a href="javascript:alert(1)">x</a>"#,
        ),
        (
            "an element in another namespace",
            r#"<s:p xmlns:s="urn:x">x</s:p>"#,
        ),
    ] {
        assert!(
            matches!(read_xml(&narrative(xhtml)), Err(ReadError::Narrative(_))),
            "XML with {what}"
        );
        let json = serde_json::json!({
            "resourceType": "Patient",
            "text": {"status": "generated", "div": format!(r#"<div xmlns="http://www.w3.org/1999/xhtml">{xhtml}</div>"#)},
        });
        assert!(
            matches!(read_json(&json.to_string()), Err(ReadError::Narrative(_))),
            "JSON with {what}"
        );
    }
    let outside_xhtml =
        patient_with(r#"<text><status value="generated"/><div><p>x</p></div></text>"#);
    assert!(matches!(
        read_xml(&outside_xhtml),
        Err(ReadError::Narrative(_))
    ));
}

#[test]
fn xml_refuses_what_subscribers_parsers_refuse() {
    for (what, xml) in [
        (
            "a DOCTYPE in the narrative",
            narrative(r#"<!DOCTYPE p [<!ENTITY e "x">]><p>&e;</p>"#),
        ),
        (
            "an undefined entity in the narrative",
            narrative("<p>&lol;</p>"),
        ),
        (
            "an undefined entity in an attribute of the narrative",
            narrative(r#"<p title="&lol;">x</p>"#),
        ),
        (
            "an undefined entity between elements",
            patient_with("&lol;"),
        ),
        (
            "U+0001 in an attribute",
            patient_with("<gender value=\"ma\u{1}le\"/>"),
        ),
        (
            "a reference to U+0001 in an attribute",
            patient_with(r#"<gender value="ma&#1;le"/>"#),
        ),
        (
            "a reference to U+0001 in the narrative",
            narrative("<p>&#x1;</p>"),
        ),
        ("U+FFFE between elements", patient_with("\u{FFFE}")),
    ] {
        let read = read_xml(&xml);
        assert!(
            matches!(read, Err(ReadError::Xml(_) | ReadError::DocType)),
            "{what}: {read:?}"
        );
    }
    assert!(read_xml(&patient_with("<gender value=\"ma&#x6C;e\"/>\t\r\n")).is_ok());
}

#[test]
fn xml_elements_and_attributes_outside_the_fhir_namespace_are_refused() {
    for xml in [
        patient_with(r#"<gender xmlns="urn:x" value="male"/>"#),
        patient_with(r#"<x:gender xmlns:x="urn:x" value="male"/>"#),
        patient_with(r#"<gender xmlns:x="urn:x" x:value="female" value="male"/>"#),
    ] {
        assert!(
            matches!(read_xml(&xml), Err(ReadError::NotFhir(_))),
            "{xml}"
        );
    }
}

fn cardinality(resource: Result<Element<'_>, ReadError>) -> Result<(), CardinalityError> {
    check_cardinality(&resource.unwrap())
}

#[test]
fn singletons_given_twice_or_as_json_arrays_are_refused() {
    let header = |inside: &str| {
        format!(
            r#"<Bundle xmlns="http://hl7.org/fhir"><type value="message"/><entry><fullUrl value="urn:uuid:1"/><resource><MessageHeader>{inside}</MessageHeader></resource></entry></Bundle>"#
        )
    };
    const AT: &str = "Bundle.entry[0].resource.ofType(MessageHeader)";
    let event = r#"<event><code value="vaccinations-1"/></event>"#;
    assert_eq!(cardinality(read_xml(&header(event))), Ok(()));
    for (inside, expression) in [
        (format!("{event}{event}"), format!("{AT}.event")),
        (
            r#"<responsible><reference value="a"/></responsible><responsible><reference value="b"/></responsible>"#.to_owned(),
            format!("{AT}.responsible"),
        ),
        (
            r#"<responsible><reference value="a"/><reference value="b"/></responsible>"#.to_owned(),
            format!("{AT}.responsible.reference"),
        ),
        (
            r#"<event><code value="a"/><code value="b"/></event>"#.to_owned(),
            format!("{AT}.event.code"),
        ),
        (
            r#"<meta><versionId value="1"/><versionId value="2"/></meta>"#.to_owned(),
            format!("{AT}.meta.versionId"),
        ),
        (
            r#"<extension url="a"><valueString value="x"/><valueCode value="y"/></extension>"#.to_owned(),
            format!("{AT}.extension.valueCode"),
        ),
        (
            r#"<extension url="a"><url value="b"/></extension>"#.to_owned(),
            format!("{AT}.extension.url"),
        ),
        (r#"<id value="a"/><id value="b"/>"#.to_owned(), format!("{AT}.id")),
    ] {
        let refused = cardinality(read_xml(&header(&inside))).unwrap_err();
        assert_eq!(refused.expression, expression, "{inside}");
    }
    let second_resource = header("").replace("</MessageHeader>", "</MessageHeader><Patient/>");
    assert_eq!(
        cardinality(read_xml(&second_resource))
            .unwrap_err()
            .expression,
        "Bundle.entry[0].resource"
    );
    let same_full_url = header("").replace(
        "</entry>",
        r#"</entry><entry><fullUrl value="urn:uuid:1"/></entry>"#,
    );
    assert_eq!(
        cardinality(read_xml(&same_full_url))
            .unwrap_err()
            .expression,
        "Bundle.entry[1].fullUrl"
    );
    let json = |header: serde_json::Value| {
        serde_json::json!({"resourceType": "Bundle", "type": "message", "entry": [{"resource": header}]})
            .to_string()
    };
    let one = serde_json::json!({"resourceType": "MessageHeader", "event": {"code": "a"}});
    assert_eq!(cardinality(read_json(&json(one))), Ok(()));
    for (header, expression) in [
        (
            serde_json::json!({"resourceType": "MessageHeader", "event": [{"code": "a"}]}),
            format!("{AT}.event"),
        ),
        (
            serde_json::json!({"resourceType": "MessageHeader", "event": {"code": ["a"]}}),
            format!("{AT}.event.code"),
        ),
        (
            serde_json::json!({"resourceType": "MessageHeader", "timestamp": ["a", "b"]}),
            format!("{AT}.timestamp"),
        ),
    ] {
        let refused = cardinality(read_json(&json(header.clone()))).unwrap_err();
        assert_eq!(refused.expression, expression, "{header}");
    }
}
