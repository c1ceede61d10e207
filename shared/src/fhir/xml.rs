//! Reading FHIR XML: well-formedness, namespaces and narrative checks.

use std::borrow::Cow;

use quick_xml::XmlVersion;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::*;

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
pub(super) fn check_narrative_xhtml(xhtml: &str) -> Result<(), ReadError> {
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
