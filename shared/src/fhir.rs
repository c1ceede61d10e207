//! FHIR STU3 resources read from XML or JSON into one encoding-neutral tree,
//! so that everything downstream (routing data, validation) is written once.
//!
//! The tree follows FHIR's own rules for the two encodings: an XML `value`
//! attribute and a JSON primitive both become [`Element::value`]; other XML
//! attributes (`url`, `id`) become child elements, as they are properties in
//! JSON; a JSON primitive's `_name` sibling contributes its extensions; a
//! resource is an element named after its type, so `<resource><Patient>` and
//! `"resource": {"resourceType": "Patient"}` give the same shape.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde::de::{self, MapAccess, SeqAccess, Visitor};

pub const FHIR_NAMESPACE: &str = "http://hl7.org/fhir";

/// Deeper than any FHIR message needs; refusing deeper input bounds the work
/// and the stack a hostile body can demand.
pub const MAX_DEPTH: usize = 64;

/// One element, borrowing its name and value from the body where it can:
/// reading a message allocates little more than the child lists.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Element<'a> {
    pub name: Cow<'a, str>,
    pub value: Option<Cow<'a, str>>,
    pub children: Vec<Element<'a>>,
}

/// Why a body could not be read as a FHIR resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the body is not well-formed XML: {0}")]
    Xml(String),
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    #[error("the body nests elements deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("XML document type declarations (DOCTYPE, entities) are not accepted")]
    DocType,
    #[error("the body is not a FHIR resource: {0}")]
    NotFhir(String),
}

impl<'a> Element<'a> {
    fn named(name: impl Into<Cow<'a, str>>) -> Self {
        Element {
            name: name.into(),
            ..Element::default()
        }
    }

    pub fn child(&self, name: &str) -> Option<&Element<'a>> {
        self.children.iter().find(|child| child.name == name)
    }

    pub fn children<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Element<'a>> + 's {
        self.children.iter().filter(move |child| child.name == name)
    }

    /// The primitive value of the first child called `name`.
    pub fn value_of(&self, name: &str) -> Option<&str> {
        self.child(name).and_then(|child| child.value.as_deref())
    }

    /// The extension with this url, among this element's extensions.
    pub fn extension(&self, url: &str) -> Option<&Element<'a>> {
        self.children("extension")
            .find(|extension| extension.value_of("url") == Some(url))
    }

    /// The resource held by a `resource` element (a Bundle entry's, say).
    pub fn resource(&self) -> Option<&Element<'a>> {
        self.child("resource")
            .and_then(|holder| holder.children.first())
    }
}

/// Keeps element contents out of logs: only the shape is shown.
impl fmt::Debug for Element<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Element")
            .field("name", &self.name)
            .field("children", &self.children.len())
            .finish()
    }
}

/// Reads a FHIR resource in XML (application/fhir+xml).
pub fn read_xml(text: &str) -> Result<Element<'_>, ReadError> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|error| ReadError::Xml(error.to_string()))?;
        match event {
            Event::Start(start) => {
                if stack.is_empty() {
                    check_root(&start, root.is_some())?;
                }
                let element = element_from_xml(text, &start)?;
                let in_text = stack.last().is_some_and(|parent| parent.name == "text");
                if in_text && element.name == "div" {
                    // Narrative XHTML (Narrative.div) is carried, not interpreted.
                    let end = start.to_end().into_owned();
                    reader
                        .read_to_end(end.name())
                        .map_err(|error| ReadError::Xml(error.to_string()))?;
                    attach(&mut stack, &mut root, element)?;
                } else {
                    if stack.len() >= MAX_DEPTH {
                        return Err(ReadError::TooDeep);
                    }
                    stack.push(element);
                }
            }
            Event::Empty(start) => {
                if stack.is_empty() {
                    check_root(&start, root.is_some())?;
                }
                let element = element_from_xml(text, &start)?;
                attach(&mut stack, &mut root, element)?;
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or_else(|| ReadError::Xml("unexpected closing tag".into()))?;
                attach(&mut stack, &mut root, element)?;
            }
            Event::DocType(_) => return Err(ReadError::DocType),
            Event::Eof => break,
            // FHIR XML carries data in attributes; text between elements,
            // comments and processing instructions carry none.
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(ReadError::Xml("the document ends inside an element".into()));
    }
    root.ok_or_else(|| ReadError::Xml("the document has no root element".into()))
}

/// The root element must be in the FHIR namespace, declared on it with the
/// root's own prefix (`xmlns` or `xmlns:p`), as FHIR XML always does.
fn check_root(start: &BytesStart<'_>, root_seen: bool) -> Result<(), ReadError> {
    if root_seen {
        return Err(ReadError::Xml("content after the root element".into()));
    }
    let name = start.name();
    let declaration = match name.prefix() {
        Some(prefix) => format!("xmlns:{}", prefix.into_inner()),
        None => "xmlns".to_owned(),
    };
    let in_fhir_namespace = start.attributes().flatten().any(|attribute| {
        attribute.key.into_inner() == declaration && attribute.value.as_ref() == FHIR_NAMESPACE
    });
    if in_fhir_namespace {
        Ok(())
    } else {
        Err(ReadError::NotFhir(format!(
            "the root element is not in the FHIR namespace {FHIR_NAMESPACE}"
        )))
    }
}

fn attach<'a>(
    stack: &mut [Element<'a>],
    root: &mut Option<Element<'a>>,
    element: Element<'a>,
) -> Result<(), ReadError> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None if root.is_none() => *root = Some(element),
        None => return Err(ReadError::Xml("content after the root element".into())),
    }
    Ok(())
}

/// `part` as a slice of `input` when it is one (the reader hands out
/// borrowed names and values for text without escapes), else a copy.
fn borrow_from<'a>(input: &'a str, part: &str) -> Cow<'a, str> {
    let start = (part.as_ptr() as usize).wrapping_sub(input.as_ptr() as usize);
    match input.get(start..start.wrapping_add(part.len())) {
        Some(slice) if slice.as_ptr() == part.as_ptr() => Cow::Borrowed(slice),
        _ => Cow::Owned(part.to_owned()),
    }
}

fn element_from_xml<'a>(input: &'a str, start: &BytesStart<'_>) -> Result<Element<'a>, ReadError> {
    let mut element = Element::named(borrow_from(input, start.local_name().into_inner()));
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|error| ReadError::Xml(error.to_string()))?;
        let key = attribute.key;
        if key.as_namespace_binding().is_some() {
            continue;
        }
        let key = borrow_from(input, key.local_name().into_inner());
        let value = attribute
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|error| ReadError::Xml(error.to_string()))?;
        let value = borrow_from(input, &value);
        if key == "value" {
            element.value = Some(value);
        } else {
            element.children.push(Element {
                name: key,
                value: Some(value),
                children: Vec::new(),
            });
        }
    }
    Ok(element)
}

/// Reads a FHIR resource in JSON (application/fhir+json).
pub fn read_json(text: &str) -> Result<Element<'_>, ReadError> {
    let json: Json<'_> = serde_json::from_str(text).map_err(|error| {
        if error.to_string().contains("recursion limit") {
            ReadError::TooDeep
        } else {
            ReadError::Json(error.to_string())
        }
    })?;
    let Json::Object(members) = json else {
        return Err(ReadError::NotFhir("the body is not a JSON object".into()));
    };
    resource_from_json(members, 0)
}

/// Reads any JSON body as serde_json does, except that an object with a key
/// given twice, at any depth, is refused: serde_json keeps the last one
/// silently, so a duplicate could be checked as one value and acted on, or
/// audited, as another.
pub fn from_json_unique<T: DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str::<Json<'_>>(text)?;
    serde_json::from_str(text)
}

/// JSON as written: members in order, so duplicate keys can be refused
/// (serde_json's own Value silently keeps the last).
#[derive(Clone)]
enum Json<'a> {
    Null,
    Scalar(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

/// A JSON object key, borrowed from the body unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Scalar(Cow::Borrowed(if v {
            "true"
        } else {
            "false"
        })))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Scalar(Cow::Owned(v.to_string())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Scalar(Cow::Owned(v.to_string())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json<'de>, E> {
        Ok(Json::Scalar(Cow::Owned(v.to_string())))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Scalar(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Scalar(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::Scalar(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members: Vec<(Cow<'de, str>, Json<'de>)> = Vec::new();
        // FHIR objects have a handful of keys: a scan is cheapest. A hostile
        // object with thousands gets a set, so the check stays linear.
        let mut seen: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let duplicate = match &mut seen {
                Some(set) => !set.insert(key.clone()),
                None => {
                    let duplicate = members.iter().any(|(existing, _)| *existing == key);
                    if !duplicate && members.len() >= 16 {
                        let mut set: HashSet<Cow<'de, str>> =
                            members.iter().map(|(k, _)| k.clone()).collect();
                        set.insert(key.clone());
                        seen = Some(set);
                    }
                    duplicate
                }
            };
            if duplicate {
                return Err(de::Error::custom(format_args!("duplicate key \"{key}\"")));
            }
            let value = map.next_value()?;
            members.push((key, value));
        }
        Ok(Json::Object(members))
    }
}

fn resource_from_json<'a>(
    mut members: Vec<(Cow<'a, str>, Json<'a>)>,
    depth: usize,
) -> Result<Element<'a>, ReadError> {
    let position = members
        .iter()
        .position(|(key, _)| key == "resourceType")
        .ok_or_else(|| ReadError::NotFhir("the JSON object has no resourceType".into()))?;
    let (_, resource_type) = members.remove(position);
    let Json::Scalar(resource_type) = resource_type else {
        return Err(ReadError::NotFhir("resourceType is not a string".into()));
    };
    let mut resource = Element::named(resource_type);
    resource.children = children_from_json(members, depth + 1)?;
    Ok(resource)
}

fn children_from_json<'a>(
    members: Vec<(Cow<'a, str>, Json<'a>)>,
    depth: usize,
) -> Result<Vec<Element<'a>>, ReadError> {
    if depth >= MAX_DEPTH {
        return Err(ReadError::TooDeep);
    }
    let (extras, members): (Vec<_>, Vec<_>) = members
        .into_iter()
        .partition(|(key, _)| key.starts_with('_'));
    // Keys are unique (the reader refuses duplicates), so a map finds each
    // primitive's `_name` sibling in constant time.
    let extras: HashMap<&str, &Json<'a>> = extras
        .iter()
        .map(|(key, extra)| (key.get(1..).unwrap_or_default(), extra))
        .collect();
    let mut children = Vec::with_capacity(members.len());
    for (key, value) in members {
        let extra = extras.get(key.as_ref()).copied();
        match value {
            Json::Array(items) => {
                for (index, item) in items.into_iter().enumerate() {
                    let item_extra = match extra {
                        Some(Json::Array(extra_items)) => extra_items.get(index),
                        _ => None,
                    };
                    if let Some(element) = element_from_json(&key, item, item_extra, depth)? {
                        children.push(element);
                    }
                }
            }
            value => {
                if let Some(element) = element_from_json(&key, value, extra, depth)? {
                    children.push(element);
                }
            }
        }
    }
    Ok(children)
}

fn element_from_json<'a>(
    name: &Cow<'a, str>,
    value: Json<'a>,
    extra: Option<&Json<'a>>,
    depth: usize,
) -> Result<Option<Element<'a>>, ReadError> {
    let mut element = Element::named(name.clone());
    match value {
        Json::Null => return Ok(None),
        Json::Scalar(text) => element.value = Some(text),
        Json::Array(_) => {
            return Err(ReadError::NotFhir(format!(
                "\"{name}\" holds an array inside an array"
            )));
        }
        Json::Object(members) => {
            if members.iter().any(|(key, _)| key == "resourceType") {
                element
                    .children
                    .push(resource_from_json(members, depth + 1)?);
            } else {
                element.children = children_from_json(members, depth + 1)?;
            }
        }
    }
    if let Some(Json::Object(extra_members)) = extra {
        // A primitive's extensions and id.
        element
            .children
            .extend(children_from_json(extra_members.clone(), depth + 1)?);
    }
    Ok(Some(element))
}

#[cfg(test)]
mod tests {
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
}
