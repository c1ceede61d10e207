//! Reading FHIR JSON, with duplicate keys refused.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde::de::{self, MapAccess, SeqAccess, Visitor};

use super::*;

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
