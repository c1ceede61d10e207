//! Resolving intrinsic functions against the running stack.

use std::collections::BTreeMap;

use serde_norway::Value;

use super::*;

/// What `!Ref` and `!GetAtt` resolve to once the resources exist.
#[derive(Debug, Default)]
pub struct Resolved {
    pub parameters: BTreeMap<String, String>,
    pub refs: BTreeMap<String, String>,
    pub attributes: BTreeMap<(String, String), String>,
}

impl Resolved {
    fn pseudo(&self, name: &str) -> Option<String> {
        match name {
            "AWS::Region" => Some(REGION.into()),
            "AWS::AccountId" => Some(ACCOUNT_ID.into()),
            "AWS::StackName" => Some(STACK_NAME.into()),
            "AWS::StackId" => Some(format!(
                "arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{STACK_NAME}/00000000-0000-0000-0000-000000000000"
            )),
            "AWS::Partition" => Some("aws".into()),
            "AWS::URLSuffix" => Some("amazonaws.com".into()),
            _ => None,
        }
    }

    fn reference(&self, name: &str) -> Result<String, String> {
        self.parameters
            .get(name)
            .or_else(|| self.refs.get(name))
            .cloned()
            .or_else(|| self.pseudo(name))
            .ok_or_else(|| format!("!Ref {name}: no such parameter or resource"))
    }

    fn attribute(&self, path: &str) -> Result<String, String> {
        let (id, attribute) = path
            .split_once('.')
            .ok_or_else(|| format!("!GetAtt {path}: expected Resource.Attribute"))?;
        self.attributes
            .get(&(id.to_owned(), attribute.to_owned()))
            .cloned()
            .ok_or_else(|| format!("!GetAtt {path}: not known locally"))
    }

    fn substitute(
        &self,
        pattern: &str,
        variables: &BTreeMap<String, String>,
    ) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = pattern;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| format!("!Sub {pattern}: unclosed ${{"))?;
            let name = &rest[start + 2..start + end];
            let value = if let Some(literal) = name.strip_prefix('!') {
                // ${!Name} is the literal text ${Name}.
                format!("${{{literal}}}")
            } else if let Some(value) = variables.get(name) {
                value.clone()
            } else if name.contains('.') && !name.starts_with("AWS::") {
                self.attribute(name)?
            } else {
                self.reference(name)?
            };
            out.push_str(&value);
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Resolves a template value to text: a scalar, or one of the
    /// intrinsics the local stack knows (!Ref, !Sub, !GetAtt, !Join,
    /// !Select; !If and conditions were applied when the template was read).
    pub fn resolve(&self, value: &Value) -> Result<String, String> {
        if let Value::String(_) | Value::Number(_) | Value::Bool(_) = value {
            return text(Some(value)).ok_or_else(|| "bad scalar".into());
        }
        let (name, argument) =
            intrinsic(value).ok_or_else(|| format!("cannot resolve {value:?}"))?;
        match (name.as_str(), argument) {
            ("Ref", Value::String(name)) => self.reference(name),
            ("Sub", Value::String(pattern)) => self.substitute(pattern, &BTreeMap::new()),
            ("Sub", Value::Sequence(parts)) => {
                let [Value::String(pattern), variables] = parts.as_slice() else {
                    return Err("!Sub takes a pattern, or [pattern, {variables}]".into());
                };
                let mut resolved = BTreeMap::new();
                for (key, inner) in variables.as_mapping().into_iter().flatten() {
                    let key = text(Some(key)).ok_or("a !Sub variable has no name")?;
                    resolved.insert(key, self.resolve(inner)?);
                }
                self.substitute(pattern, &resolved)
            }
            ("GetAtt", Value::String(path)) => self.attribute(path),
            ("GetAtt", Value::Sequence(parts)) => {
                let parts: Vec<String> = parts.iter().filter_map(|p| text(Some(p))).collect();
                self.attribute(&parts.join("."))
            }
            ("Join", Value::Sequence(parts)) => {
                let [separator, Value::Sequence(items)] = parts.as_slice() else {
                    return Err("!Join takes [separator, [values]]".into());
                };
                let separator = text(Some(separator)).ok_or("!Join: bad separator")?;
                let items = items
                    .iter()
                    .map(|item| self.resolve(item))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(items.join(&separator))
            }
            ("Select", Value::Sequence(parts)) => {
                let [index, Value::Sequence(items)] = parts.as_slice() else {
                    return Err("!Select takes [index, [values]]".into());
                };
                let index: usize = self
                    .resolve(index)?
                    .parse()
                    .map_err(|_| "!Select: the index is not a number")?;
                let item = items.get(index).ok_or("!Select: index out of range")?;
                self.resolve(item)
            }
            (other, _) => Err(format!("the local stack does not resolve !{other} here")),
        }
    }
}
