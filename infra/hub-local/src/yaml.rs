//! The one reader of CloudFormation YAML: template.yaml for the local
//! stack (crate::template) and for the tests, openapi.yaml for the tests.

use serde_norway::Value;

/// The one reader of CloudFormation YAML (template.yaml; openapi.yaml reads
/// the same): the document with every short-form tag (`!Ref X`, `!GetAtt
/// X.Arn`, `!Sub ...`) in its long form (`{Ref: X}`, `{Fn::GetAtt: [X,
/// Arn]}`, `{Fn::Sub: ...}`), so that whatever reads it handles one form.
pub fn read_yaml(source: &str) -> Result<Value, String> {
    let document: Value = serde_norway::from_str(source).map_err(|e| format!("parsing: {e}"))?;
    long_form(document)
}

/// [`read_yaml`]'s document as JSON (the tests' form): mapping keys that
/// are not strings become their YAML text.
pub fn read_json(source: &str) -> Result<serde_json::Value, String> {
    to_json(read_yaml(source)?)
}

fn long_form(value: Value) -> Result<Value, String> {
    Ok(match value {
        Value::Sequence(items) => {
            Value::Sequence(items.into_iter().map(long_form).collect::<Result<_, _>>()?)
        }
        Value::Mapping(mapping) => Value::Mapping(
            mapping
                .into_iter()
                .map(|(key, value)| Ok((key, long_form(value)?)))
                .collect::<Result<_, String>>()?,
        ),
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = long_form(tagged.value)?;
            let (key, argument) = match name {
                "Ref" | "Condition" => (name.to_owned(), inner),
                // `!GetAtt X.Arn` is `{Fn::GetAtt: [X, Arn]}`.
                "GetAtt" => match inner {
                    Value::String(path) => {
                        let (resource, attribute) = path
                            .split_once('.')
                            .ok_or_else(|| format!("!GetAtt {path}: not Resource.Attribute"))?;
                        (
                            "Fn::GetAtt".to_owned(),
                            Value::Sequence(vec![resource.into(), attribute.into()]),
                        )
                    }
                    other => ("Fn::GetAtt".to_owned(), other),
                },
                other => (format!("Fn::{other}"), inner),
            };
            let mut mapping = serde_norway::Mapping::new();
            mapping.insert(Value::String(key), argument);
            Value::Mapping(mapping)
        }
        scalar => scalar,
    })
}

fn to_json(value: Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as Json;
    Ok(match value {
        Value::Null => Json::Null,
        Value::Bool(flag) => Json::Bool(flag),
        Value::Number(number) => {
            if let Some(n) = number.as_i64() {
                Json::from(n)
            } else if let Some(n) = number.as_u64() {
                Json::from(n)
            } else {
                number.as_f64().map(Json::from).unwrap_or(Json::Null)
            }
        }
        Value::String(text) => Json::String(text),
        Value::Sequence(items) => {
            Json::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Value::Mapping(mapping) => Json::Object(
            mapping
                .into_iter()
                .map(|(key, value)| {
                    let key = match key {
                        Value::String(text) => text,
                        other => serde_norway::to_string(&other)
                            .map_err(|e| format!("a mapping key: {e}"))?
                            .trim()
                            .to_owned(),
                    };
                    Ok((key, to_json(value)?))
                })
                .collect::<Result<_, String>>()?,
        ),
        // long_form leaves none.
        Value::Tagged(tagged) => to_json(long_form(Value::Tagged(tagged))?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms_are_read_in_their_long_form() {
        let json = read_json(
            "A: !Ref X\nB: !GetAtt T.Arn\nC: !Sub \"${X}-y\"\nD: {Ref: X}\nE: !If [C, !Ref X, 1]\n",
        )
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "A": {"Ref": "X"},
                "B": {"Fn::GetAtt": ["T", "Arn"]},
                "C": {"Fn::Sub": "${X}-y"},
                "D": {"Ref": "X"},
                "E": {"Fn::If": ["C", {"Ref": "X"}, 1]},
            })
        );
    }
}
