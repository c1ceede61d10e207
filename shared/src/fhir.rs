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
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde::de::{self, MapAccess, SeqAccess, Visitor};

pub const FHIR_NAMESPACE: &str = "http://hl7.org/fhir";
/// The namespace of a Narrative's `div`.
pub const XHTML_NAMESPACE: &str = "http://www.w3.org/1999/xhtml";

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
    /// The element was an item of a JSON array, which FHIR JSON writes
    /// only for an element that may repeat.
    pub json_array_item: bool,
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
    #[error("the narrative (text.div) is not FHIR's safe XHTML: {0}")]
    Narrative(String),
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
///
/// Only well-formed XML a subscriber's parser reads the same way is
/// accepted: every character is one XML allows, no DOCTYPE or entity other
/// than XML's five predefined ones, every element in the FHIR namespace (the
/// narrative's XHTML aside), no attribute in another namespace.
pub fn read_xml(text: &str) -> Result<Element<'_>, ReadError> {
    check_xml_chars(text)?;
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let (namespace, event) = reader.read_resolved_event().map_err(xml_error)?;
        let namespace = Namespace::of(&namespace);
        match event {
            Event::Start(start) => {
                if stack.is_empty() {
                    check_root(&start, root.is_some())?;
                }
                if is_narrative(&stack, &start) {
                    check_narrative_element(namespace, &start)?;
                    read_narrative(&mut reader, MAX_DEPTH.saturating_sub(stack.len() + 1))?;
                    let element =
                        Element::named(borrow_from(text, start.local_name().into_inner()));
                    attach(&mut stack, &mut root, element)?;
                } else {
                    let element = fhir_element(text, namespace, &start)?;
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
                let element = if is_narrative(&stack, &start) {
                    check_narrative_element(namespace, &start)?;
                    Element::named(borrow_from(text, start.local_name().into_inner()))
                } else {
                    fhir_element(text, namespace, &start)?
                };
                attach(&mut stack, &mut root, element)?;
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or_else(|| ReadError::Xml("unexpected closing tag".into()))?;
                attach(&mut stack, &mut root, element)?;
            }
            Event::GeneralRef(reference) => check_reference(&reference)?,
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

fn xml_error(error: quick_xml::Error) -> ReadError {
    ReadError::Xml(error.to_string())
}

/// The namespaces an element of a FHIR resource may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Namespace {
    Fhir,
    Xhtml,
    Other,
}

impl Namespace {
    fn of(resolved: &ResolveResult<'_>) -> Self {
        match resolved {
            ResolveResult::Bound(namespace) if namespace.0 == FHIR_NAMESPACE => Namespace::Fhir,
            ResolveResult::Bound(namespace) if namespace.0 == XHTML_NAMESPACE => Namespace::Xhtml,
            _ => Namespace::Other,
        }
    }
}

/// A Narrative's `div` (`text.div`): XHTML, carried rather than read.
fn is_narrative(stack: &[Element<'_>], start: &BytesStart<'_>) -> bool {
    stack.last().is_some_and(|parent| parent.name == "text")
        && start.local_name().into_inner() == "div"
}

/// An element of the resource itself: in the FHIR namespace, so that no
/// reader can take a foreign `<responsible xmlns="urn:x">` for FHIR's.
fn fhir_element<'a>(
    input: &'a str,
    namespace: Namespace,
    start: &BytesStart<'_>,
) -> Result<Element<'a>, ReadError> {
    if namespace != Namespace::Fhir {
        return Err(ReadError::NotFhir(format!(
            "the element '{}' is not in the FHIR namespace {FHIR_NAMESPACE}",
            start.name().into_inner()
        )));
    }
    element_from_xml(input, start)
}

/// Every character is one XML 1.0 allows (its Char production): a control
/// character makes the document one that subscribers' parsers refuse.
fn check_xml_chars(text: &str) -> Result<(), ReadError> {
    match text.chars().find(|&c| !is_xml_char(c)) {
        None => Ok(()),
        Some(c) => Err(ReadError::Xml(format!(
            "the character U+{:04X} is not allowed in XML",
            u32::from(c)
        ))),
    }
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// A reference in text: a character reference to a character XML allows,
/// or one of the five entities XML predefines; any other needs a DOCTYPE,
/// which the hub refuses.
fn check_reference(reference: &BytesRef<'_>) -> Result<(), ReadError> {
    let name: &str = reference;
    match reference.resolve_char_ref() {
        Ok(Some(c)) if is_xml_char(c) => Ok(()),
        Ok(None) if matches!(name, "lt" | "gt" | "amp" | "apos" | "quot") => Ok(()),
        _ => Err(ReadError::Xml(format!(
            "the reference &{name}; is not a character or predefined entity of XML"
        ))),
    }
}

/// Elements of narrative XHTML that FHIR allows (the basic formatting,
/// list, table, link and image elements of its rule txt-1, as its reference
/// validator lists them): scripts, forms, frames and objects are not.
#[rustfmt::skip]
const NARRATIVE_ELEMENTS: [&str; 51] = [
    "p", "br", "div", "h1", "h2", "h3", "h4", "h5", "h6", "a", "span", "b", "em", "i", "strong",
    "small", "big", "tt", "dfn", "q", "var", "abbr", "acronym", "cite", "blockquote", "hr",
    "address", "bdo", "kbd", "sub", "sup", "ul", "ol", "li", "dl", "dt", "dd", "pre", "table",
    "caption", "colgroup", "col", "thead", "tr", "tfoot", "tbody", "th", "td", "code", "samp", "img",
];

/// An element of a Narrative's XHTML: in the XHTML namespace, one FHIR's
/// narrative rules allow, without event handlers or script links.
fn check_narrative_element(namespace: Namespace, start: &BytesStart<'_>) -> Result<(), ReadError> {
    let name = start.local_name().into_inner();
    if namespace != Namespace::Xhtml {
        return Err(ReadError::Narrative(format!(
            "the element '{name}' is not in the XHTML namespace {XHTML_NAMESPACE}"
        )));
    }
    if !NARRATIVE_ELEMENTS.contains(&name) {
        return Err(ReadError::Narrative(format!(
            "the element '{name}' is not one of the narrative's basic formatting elements"
        )));
    }
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|error| ReadError::Xml(error.to_string()))?;
        let key = attribute.key.local_name().into_inner();
        let value = attribute
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|error| ReadError::Xml(error.to_string()))?;
        check_xml_chars(&value)?;
        if key.len() > 2 && key[..2].eq_ignore_ascii_case("on") {
            return Err(ReadError::Narrative(format!(
                "the event handler attribute '{key}' of '{name}' is not allowed"
            )));
        }
        let scheme = value.trim_start().split(':').next().unwrap_or_default();
        if matches!(key, "href" | "src")
            && value.contains(':')
            && (scheme.eq_ignore_ascii_case("javascript")
                || scheme.eq_ignore_ascii_case("vbscript"))
        {
            return Err(ReadError::Narrative(format!(
                "the {key} of '{name}' is a script"
            )));
        }
    }
    Ok(())
}

/// Reads a narrative's XHTML up to the end of its `div` (whose start the
/// reader has just read), checking every element and reference in it.
fn read_narrative(reader: &mut NsReader<&[u8]>, depth_left: usize) -> Result<(), ReadError> {
    let mut depth = 1usize;
    loop {
        let (namespace, event) = reader.read_resolved_event().map_err(xml_error)?;
        let namespace = Namespace::of(&namespace);
        match event {
            Event::Start(start) => {
                check_narrative_element(namespace, &start)?;
                depth += 1;
                if depth > depth_left {
                    return Err(ReadError::TooDeep);
                }
            }
            Event::Empty(start) => check_narrative_element(namespace, &start)?,
            Event::End(_) => {
                depth -= 1;
                if depth == 0 {
                    return Ok(());
                }
            }
            Event::GeneralRef(reference) => check_reference(&reference)?,
            Event::DocType(_) => return Err(ReadError::DocType),
            Event::Eof => {
                return Err(ReadError::Xml(
                    "the document ends inside the narrative".into(),
                ));
            }
            _ => {}
        }
    }
}

/// A narrative's XHTML as JSON carries it (`text.div`, a string): checked
/// as the XML reader checks it, so that both encodings refuse the same.
fn check_narrative_xhtml(xhtml: &str) -> Result<(), ReadError> {
    check_xml_chars(xhtml)?;
    let mut reader = NsReader::from_str(xhtml);
    let mut read_div = false;
    loop {
        let (namespace, event) = reader.read_resolved_event().map_err(xml_error)?;
        let namespace = Namespace::of(&namespace);
        match event {
            Event::Start(start) if !read_div && start.local_name().into_inner() == "div" => {
                check_narrative_element(namespace, &start)?;
                read_narrative(&mut reader, MAX_DEPTH)?;
                read_div = true;
            }
            Event::Empty(start) if !read_div && start.local_name().into_inner() == "div" => {
                check_narrative_element(namespace, &start)?;
                read_div = true;
            }
            Event::Text(text) if text.as_ref().trim_ascii().is_empty() => {}
            Event::Eof if read_div => return Ok(()),
            Event::DocType(_) => return Err(ReadError::DocType),
            _ => {
                return Err(ReadError::Narrative(
                    "the narrative is not one XHTML div element".into(),
                ));
            }
        }
    }
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
        // FHIR's attributes (value, url, id) are in no namespace: `x:value`
        // beside `value` would be two values, one per reader.
        if key.prefix().is_some() {
            return Err(ReadError::NotFhir(format!(
                "the attribute '{}' is not a FHIR attribute",
                key.into_inner()
            )));
        }
        let key = borrow_from(input, key.local_name().into_inner());
        let value = attribute
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|error| ReadError::Xml(error.to_string()))?;
        check_xml_chars(&value)?;
        let value = borrow_from(input, &value);
        if key == "value" {
            element.value = Some(value);
        } else {
            element.children.push(Element {
                name: key,
                value: Some(value),
                ..Element::default()
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
    let resource = resource_from_json(members, 0)?;
    check_json_narratives(&resource)?;
    Ok(resource)
}

/// Every Narrative's `div` of a JSON resource, checked as XML's are.
fn check_json_narratives(element: &Element<'_>) -> Result<(), ReadError> {
    if element.name == "text"
        && let Some(div) = element.value_of("div")
    {
        check_narrative_xhtml(div)?;
    }
    element.children.iter().try_for_each(check_json_narratives)
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
                    if let Some(mut element) = element_from_json(&key, item, item_extra, depth)? {
                        element.json_array_item = true;
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

/// An element given more often than FHIR STU3 allows, or in a form
/// (a JSON array) that says it may repeat when it may not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardinalityError {
    /// The FHIRPath of the element at fault.
    pub expression: String,
    pub problem: String,
}

/// Checks that no element of a resource that FHIR STU3 allows at most once
/// (0..1 or 1..1) is given twice, or as a JSON array: where the hub reads the
/// first and a subscriber's FHIR library the last, the two would act on
/// different messages. The types the hub reads are listed in [`singletons`];
/// every element, of whatever type, has at most one `id` and its extensions
/// are checked; a Bundle's entries have distinct fullUrls and `Type/id`s.
pub fn check_cardinality(resource: &Element<'_>) -> Result<(), CardinalityError> {
    check_resource(resource).map_err(|(mut segments, problem)| {
        segments.push(resource.name.to_string());
        segments.reverse();
        CardinalityError {
            expression: segments.join("."),
            problem,
        }
    })
}

/// A failed check: the path's segments, innermost first, and the problem.
type Refusal = (Vec<String>, String);

/// The elements every resource has at most once (Resource, DomainResource).
const RESOURCE_SINGLETONS: [&str; 5] = ["id", "meta", "implicitRules", "language", "text"];

/// The elements of a type that FHIR STU3 allows at most once, beyond those
/// of every resource and every element (`id`). A choice `value[x]` counts
/// every `valueString`, `valueIdentifier`... as one element.
#[rustfmt::skip]
fn singletons(type_name: &str) -> &'static [&'static str] {
    match type_name {
        "Bundle" => &["identifier", "type", "total", "signature"],
        "Bundle.entry" => &["fullUrl", "resource", "search", "request", "response"],
        "MessageHeader" => &[
            "event", "receiver", "sender", "timestamp", "enterer", "author", "source",
            "responsible", "reason", "response",
        ],
        "MessageHeader.source" => &["name", "software", "version", "contact", "endpoint"],
        "MessageHeader.destination" => &["name", "target", "endpoint"],
        "MessageHeader.response" => &["identifier", "code", "details"],
        "Patient" => &[
            "active", "gender", "birthDate", "deceased[x]", "maritalStatus",
            "multipleBirth[x]", "animal", "managingOrganization",
        ],
        "Patient.link" => &["other", "type"],
        "RelatedPerson" => &["active", "patient", "relationship", "gender", "birthDate", "period"],
        "Immunization" => &[
            "status", "notGiven", "vaccineCode", "patient", "encounter", "date",
            "primarySource", "reportOrigin", "location", "manufacturer", "lotNumber",
            "expirationDate", "site", "route", "doseQuantity", "explanation",
        ],
        "Encounter" => &[
            "status", "class", "priority", "subject", "appointment", "period", "length",
            "hospitalization", "serviceProvider", "partOf",
        ],
        "EpisodeOfCare" => &["status", "patient", "managingOrganization", "period", "careManager"],
        "Communication" => &[
            "status", "notDone", "notDoneReason", "subject", "context", "sent", "received",
            "sender",
        ],
        "Communication.payload" => &["content[x]"],
        "Procedure" => &[
            "status", "notDone", "notDoneReason", "category", "code", "subject", "context",
            "performed[x]", "location", "outcome",
        ],
        "Organization" => &["active", "name", "partOf"],
        "Subscription" => &["status", "end", "reason", "criteria", "error", "channel"],
        "Subscription.channel" => &["type", "endpoint", "payload"],
        "Meta" => &["versionId", "lastUpdated"],
        "Identifier" => &["use", "type", "system", "value", "period", "assigner"],
        "Coding" => &["system", "version", "code", "display", "userSelected"],
        "CodeableConcept" => &["text"],
        "Reference" => &["reference", "identifier", "display"],
        "Extension" => &["url", "value[x]"],
        "HumanName" => &["use", "text", "family", "period"],
        "Address" => &[
            "use", "type", "text", "city", "district", "state", "postalCode", "country",
            "period",
        ],
        "ContactPoint" => &["system", "value", "use", "rank", "period"],
        "Period" => &["start", "end"],
        "Narrative" => &["status", "div"],
        _ => &[],
    }
}

/// The type of a child element, for the types of [`singletons`]; `Element`
/// (only `id` and extensions checked) for the rest.
fn child_type(parent: &str, child: &str) -> &'static str {
    match (parent, child) {
        (_, "extension" | "modifierExtension") => "Extension",
        (_, "meta") => "Meta",
        (_, "identifier") if parent != "MessageHeader.response" => "Identifier",
        (_, "coding") => "Coding",
        (_, "period") => "Period",
        (_, "address") => "Address",
        (_, "telecom") | ("Subscription" | "MessageHeader.source", "contact") => "ContactPoint",
        (_, "text") => "Narrative",
        ("Bundle", "entry") => "Bundle.entry",
        ("MessageHeader", "event") | ("Encounter", "class") => "Coding",
        ("MessageHeader", "source") => "MessageHeader.source",
        ("MessageHeader", "destination") => "MessageHeader.destination",
        ("MessageHeader", "response") => "MessageHeader.response",
        ("Patient" | "RelatedPerson", "name") => "HumanName",
        ("Patient", "link") => "Patient.link",
        ("Communication", "payload") => "Communication.payload",
        ("Subscription", "channel") => "Subscription.channel",
        (
            "MessageHeader",
            "receiver" | "sender" | "enterer" | "author" | "responsible" | "focus",
        )
        | ("MessageHeader.destination", "target")
        | ("Patient", "generalPractitioner" | "managingOrganization")
        | ("Patient.link", "other")
        | ("RelatedPerson", "patient")
        | ("Immunization", "patient" | "encounter" | "location" | "manufacturer")
        | ("Encounter", "subject" | "serviceProvider" | "partOf" | "episodeOfCare")
        | ("EpisodeOfCare", "patient" | "managingOrganization" | "careManager")
        | ("Communication", "subject" | "recipient" | "context" | "sender" | "topic")
        | ("Procedure", "subject" | "context" | "location")
        | ("Organization", "partOf")
        | ("Identifier", "assigner")
        | ("Extension", "valueReference") => "Reference",
        ("Immunization", "vaccineCode" | "site" | "route" | "reportOrigin")
        | ("Procedure", "outcome" | "code" | "category" | "notDoneReason")
        | ("Communication", "notDoneReason")
        | ("RelatedPerson", "relationship")
        | ("Patient", "maritalStatus")
        | ("Identifier", "type")
        | ("Extension", "valueCodeableConcept") => "CodeableConcept",
        ("Extension", "valueIdentifier") => "Identifier",
        ("Extension", "valueCoding") => "Coding",
        ("Extension", "valueHumanName") => "HumanName",
        _ => "Element",
    }
}

/// The child names a singleton counts: `value[x]` matches `valueString`.
fn is_occurrence(singleton: &str, name: &str) -> bool {
    match singleton.strip_suffix("[x]") {
        Some(prefix) => name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase())),
        None => name == singleton,
    }
}

fn check_singletons(element: &Element<'_>, names: &[&str]) -> Result<(), Refusal> {
    for &singleton in names {
        let mut occurrences = element
            .children
            .iter()
            .filter(|child| is_occurrence(singleton, &child.name));
        let Some(first) = occurrences.next() else {
            continue;
        };
        if let Some(second) = occurrences.next() {
            let problem = if second.name == first.name {
                "is given more than once; FHIR allows it once".to_owned()
            } else {
                format!(
                    "is given as both {} and {}; FHIR allows one",
                    first.name, second.name
                )
            };
            return Err((vec![second.name.to_string()], problem));
        }
        if first.json_array_item {
            return Err((
                vec![first.name.to_string()],
                "is a JSON array; FHIR allows one value, written without an array".to_owned(),
            ));
        }
    }
    Ok(())
}

fn check_resource(resource: &Element<'_>) -> Result<(), Refusal> {
    check_singletons(resource, &RESOURCE_SINGLETONS)?;
    check_element(resource, &resource.name)?;
    if resource.name == "Bundle" {
        check_entries_distinct(resource)?;
    }
    Ok(())
}

fn check_element(element: &Element<'_>, type_name: &str) -> Result<(), Refusal> {
    check_singletons(element, &["id"])?;
    check_singletons(element, singletons(type_name))?;
    let mut entries = 0;
    for child in &element.children {
        let segment = |child: &Element<'_>| {
            if type_name == "Bundle" && child.name == "entry" {
                format!("entry[{entries}]")
            } else {
                child.name.to_string()
            }
        };
        let checked = if is_resource_holder(type_name, &child.name) {
            check_holder(child)
        } else {
            check_element(child, child_type(type_name, &child.name))
        };
        checked.map_err(|(mut segments, problem)| {
            segments.push(segment(child));
            (segments, problem)
        })?;
        if child.name == "entry" {
            entries += 1;
        }
    }
    Ok(())
}

fn is_resource_holder(parent_type: &str, name: &str) -> bool {
    (parent_type == "Bundle.entry" && name == "resource") || name == "contained"
}

/// An entry's `resource` (or a `contained`): exactly one resource.
fn check_holder(holder: &Element<'_>) -> Result<(), Refusal> {
    match holder.children.as_slice() {
        [resource] => check_resource(resource).map_err(|(mut segments, problem)| {
            segments.push(format!("ofType({})", resource.name));
            (segments, problem)
        }),
        _ => Err((
            Vec::new(),
            format!("holds {} resources; FHIR allows one", holder.children.len()),
        )),
    }
}

/// References resolve by fullUrl or `Type/id`: two entries answering to the
/// same one would let the hub and a subscriber resolve it differently.
fn check_entries_distinct(bundle: &Element<'_>) -> Result<(), Refusal> {
    let mut full_urls = HashSet::new();
    let mut type_ids = HashSet::new();
    for (index, entry) in bundle.children("entry").enumerate() {
        if let Some(full_url) = entry.value_of("fullUrl")
            && !full_urls.insert(full_url)
        {
            return Err((
                vec!["fullUrl".to_owned(), format!("entry[{index}]")],
                format!("'{full_url}' is the fullUrl of an earlier entry"),
            ));
        }
        if let Some(resource) = entry.resource()
            && let Some(id) = resource.value_of("id")
            && !type_ids.insert((resource.name.as_ref(), id))
        {
            return Err((
                vec![
                    "id".to_owned(),
                    format!("ofType({})", resource.name),
                    "resource".to_owned(),
                    format!("entry[{index}]"),
                ],
                format!(
                    "'{}/{id}' is the type and id of an earlier entry",
                    resource.name
                ),
            ));
        }
    }
    Ok(())
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
        let plain =
            r#"<p class="x">Jack &amp; <b>Jill</b> &#233;<br/><img src="a.png" alt="a"/></p>"#;
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
}
