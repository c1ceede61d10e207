//! Conditions: evaluated once on the parameter values, then applied.

use std::collections::BTreeMap;

use serde_norway::Value;

use super::*;

/// Every condition of the template, evaluated on the parameters' values.
pub(super) fn evaluate_conditions(
    document: &Value,
    parameters: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, bool>, String> {
    let Some(definitions) = get(document, "Conditions").and_then(Value::as_mapping) else {
        return Ok(BTreeMap::new());
    };
    let definitions: BTreeMap<String, &Value> = definitions
        .iter()
        .filter_map(|(name, definition)| Some((text(Some(name))?, definition)))
        .collect();
    let resolver = Resolved {
        parameters: parameters.clone(),
        ..Resolved::default()
    };
    let mut values = BTreeMap::new();
    for name in definitions.keys() {
        let value = condition(name, &definitions, &resolver, &mut values, 0)?;
        values.insert(name.clone(), value);
    }
    Ok(values)
}

fn condition(
    name: &str,
    definitions: &BTreeMap<String, &Value>,
    resolver: &Resolved,
    values: &mut BTreeMap<String, bool>,
    depth: usize,
) -> Result<bool, String> {
    if let Some(value) = values.get(name) {
        return Ok(*value);
    }
    // Conditions may name each other; a cycle would never end.
    if depth > definitions.len() {
        return Err(format!("condition {name} refers to itself"));
    }
    let definition = definitions
        .get(name)
        .ok_or_else(|| format!("no condition {name}"))?;
    let value = truth(definition, definitions, resolver, values, depth + 1)
        .map_err(|e| format!("condition {name}: {e}"))?;
    values.insert(name.to_owned(), value);
    Ok(value)
}

fn truth(
    expression: &Value,
    definitions: &BTreeMap<String, &Value>,
    resolver: &Resolved,
    values: &mut BTreeMap<String, bool>,
    depth: usize,
) -> Result<bool, String> {
    let (name, argument) =
        intrinsic(expression).ok_or_else(|| format!("not a condition function: {expression:?}"))?;
    let operands = || {
        argument
            .as_sequence()
            .ok_or_else(|| format!("!{name} takes a list"))
    };
    match name.as_str() {
        "Equals" => match operands()?.as_slice() {
            [left, right] => Ok(resolver.resolve(left)? == resolver.resolve(right)?),
            _ => Err("!Equals takes two values".into()),
        },
        "Not" => match operands()?.as_slice() {
            [inner] => Ok(!truth(inner, definitions, resolver, values, depth)?),
            _ => Err("!Not takes one condition".into()),
        },
        "And" | "Or" => {
            let mut results = Vec::new();
            for operand in operands()? {
                results.push(truth(operand, definitions, resolver, values, depth)?);
            }
            Ok(if name == "And" {
                results.iter().all(|r| *r)
            } else {
                results.iter().any(|r| *r)
            })
        }
        "Condition" => {
            let other = text(Some(argument)).ok_or("!Condition takes a name")?;
            condition(&other, definitions, resolver, values, depth)
        }
        other => Err(format!("!{other} is not a condition function")),
    }
}

/// The value with every `Fn::If` replaced by its selected branch; None when
/// the value is `AWS::NoValue`, which removes it from its mapping or list.
pub(super) fn apply_conditions(
    value: &Value,
    conditions: &BTreeMap<String, bool>,
) -> Result<Option<Value>, String> {
    if let Some((name, argument)) = intrinsic(value) {
        match name.as_str() {
            "If" => {
                let [condition, when_true, when_false] = argument
                    .as_sequence()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                else {
                    return Err("!If takes [condition, value if true, value if false]".into());
                };
                let condition = text(Some(condition)).ok_or("!If names a condition")?;
                let holds = conditions
                    .get(&condition)
                    .ok_or_else(|| format!("!If: no condition {condition}"))?;
                let chosen = if *holds { when_true } else { when_false };
                return apply_conditions(chosen, conditions);
            }
            "Ref" if argument.as_str() == Some("AWS::NoValue") => return Ok(None),
            _ => {}
        }
    }
    Ok(Some(match value {
        Value::Mapping(mapping) => {
            let mut kept = serde_norway::Mapping::new();
            for (key, inner) in mapping {
                if let Some(inner) = apply_conditions(inner, conditions)? {
                    kept.insert(key.clone(), inner);
                }
            }
            Value::Mapping(kept)
        }
        Value::Sequence(items) => {
            let mut kept = Vec::new();
            for item in items {
                if let Some(item) = apply_conditions(item, conditions)? {
                    kept.push(item);
                }
            }
            Value::Sequence(kept)
        }
        scalar => scalar.clone(),
    }))
}
