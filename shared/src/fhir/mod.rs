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
use std::fmt;

mod cardinality;
mod json;
mod xml;

pub use cardinality::*;
pub use json::*;
pub use xml::*;

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

#[cfg(test)]
mod tests;
