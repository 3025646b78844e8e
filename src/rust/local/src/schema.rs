//! ARM request bodies checked against Microsoft's published models.
//!
//! The models come from the management SDKs that AutoRest generates from the swagger files
//! of Azure/azure-rest-api-specs (see `schemas/README.md` for which wheel, version and
//! sha256, and `tools/arm-schema.py` for how they were extracted). A body is refused when
//! it lacks a required property, has a property of the wrong type, an enum value the spec
//! does not list, a read-only property, or a property the model does not have.
//!
//! Azure itself ignores read-only and unknown properties (the SDK's own words: "ignored
//! when sending a request"). We refuse them: a client that sends them has a bug (a typo,
//! or a property of another api-version) that Azure would hide, and refusing is never
//! looser than Azure. The error's shape (`InvalidRequestContent` and Json.NET's wording) is
//! from memory of ARM's answers, not from the spec.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct SchemaFile {
    models: HashMap<String, ModelFile>,
    enums: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct ModelFile {
    fields: Vec<Field>,
}

#[derive(Deserialize, Clone)]
struct Field {
    key: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    readonly: bool,
    #[serde(default, rename = "enum")]
    enum_name: Option<String>,
    #[serde(default)]
    constraints: Option<Constraints>,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct Constraints {
    min_length: Option<usize>,
    max_length: Option<usize>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    min_items: Option<usize>,
    max_items: Option<usize>,
}

/// A model's properties as the JSON nests them: `properties.image` (a flattened key) is
/// the member `image` of the object `properties`.
enum Node {
    Leaf(Field),
    Object(BTreeMap<String, Node>),
}

impl Node {
    fn required(&self) -> bool {
        match self {
            Node::Leaf(f) => f.required,
            Node::Object(members) => members.values().any(Node::required),
        }
    }
}

/// One vendored api-version of one resource provider.
pub struct Schema {
    name: &'static str,
    models: HashMap<String, BTreeMap<String, Node>>,
    enums: HashMap<String, Vec<String>>,
}

/// A body that does not match the model: where, and what is wrong.
#[derive(Debug, PartialEq)]
pub struct Mismatch {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Mismatch {
    /// Json.NET's wording, which ARM passes on in `InvalidRequestContent`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "The request content was invalid and could not be deserialized: '{} Path '{}'.'",
            self.message, self.path
        )
    }
}

/// Splits a flattened key on its unescaped dots (AutoRest writes a literal dot as `\.`).
fn key_segments(key: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                chars.next();
                out.last_mut().expect("one segment").push('.');
            }
            '.' => out.push(String::new()),
            c => out.last_mut().expect("one segment").push(c),
        }
    }
    out
}

fn insert(members: &mut BTreeMap<String, Node>, segments: &[String], field: Field) {
    let (first, rest) = segments.split_first().expect("a key has a segment");
    if rest.is_empty() {
        members.insert(first.clone(), Node::Leaf(field));
        return;
    }
    let node = members
        .entry(first.clone())
        .or_insert_with(|| Node::Object(BTreeMap::new()));
    match node {
        Node::Object(inner) => insert(inner, rest, field),
        Node::Leaf(_) => panic!("schema: '{first}' is both a property and an object"),
    }
}

impl Schema {
    fn parse(name: &'static str, json: &str) -> Schema {
        let file: SchemaFile =
            serde_json::from_str(json).unwrap_or_else(|e| panic!("schema {name}: {e}"));
        let models = file
            .models
            .into_iter()
            .map(|(model, m)| {
                let mut members = BTreeMap::new();
                for field in m.fields {
                    insert(&mut members, &key_segments(&field.key), field);
                }
                (model, members)
            })
            .collect();
        Schema {
            name,
            models,
            enums: file.enums,
        }
    }

    /// Checks `body` against `model`; the first mismatch found is the answer.
    pub fn check(&self, model: &str, body: &Value) -> Result<(), Mismatch> {
        let members = self.model(model);
        self.check_object(model, members, body, "")
    }

    fn model(&self, model: &str) -> &BTreeMap<String, Node> {
        self.models
            .get(model)
            .unwrap_or_else(|| panic!("schema {}: no model {model}", self.name))
    }

    fn check_object(
        &self,
        type_name: &str,
        members: &BTreeMap<String, Node>,
        value: &Value,
        path: &str,
    ) -> Result<(), Mismatch> {
        let Some(object) = value.as_object() else {
            return Err(mismatch(
                path,
                format!(
                    "Expected an object of type '{type_name}', got {}.",
                    kind(value)
                ),
            ));
        };
        for (name, member) in object {
            let here = join(path, name);
            let Some(node) = members.get(name) else {
                return Err(mismatch(
                    &here,
                    format!("Could not find member '{name}' on object of type '{type_name}'."),
                ));
            };
            if member.is_null() {
                continue;
            }
            match node {
                Node::Leaf(field) if field.readonly => {
                    return Err(mismatch(
                        &here,
                        format!("'{name}' is read-only: only the service sets it."),
                    ))
                }
                Node::Leaf(field) => self.check_field(field, member, &here)?,
                Node::Object(inner) => self.check_object(type_name, inner, member, &here)?,
            }
        }
        for (name, node) in members {
            if node.required() && object.get(name).is_none_or(Value::is_null) {
                return Err(mismatch(
                    path,
                    format!("Required property '{name}' not found in JSON."),
                ));
            }
        }
        Ok(())
    }

    fn check_field(&self, field: &Field, value: &Value, path: &str) -> Result<(), Mismatch> {
        self.check_type(&field.ty, value, path)?;
        if let Some(name) = &field.enum_name {
            let values = &self.enums[name];
            if !value
                .as_str()
                .is_some_and(|v| values.iter().any(|e| e == v))
            {
                return Err(mismatch(
                    path,
                    format!(
                        "Error converting value {value} to type '{name}': the allowed values are {}.",
                        values.join(", ")
                    ),
                ));
            }
        }
        if let Some(c) = &field.constraints {
            check_constraints(c, value, path)?;
        }
        Ok(())
    }

    fn check_type(&self, ty: &str, value: &Value, path: &str) -> Result<(), Mismatch> {
        if let Some(inner) = ty.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            let Some(items) = value.as_array() else {
                return Err(wrong_type(path, ty, value));
            };
            for (i, item) in items.iter().enumerate() {
                self.check_type(inner, item, &format!("{path}[{i}]"))?;
            }
            return Ok(());
        }
        if let Some(inner) = ty.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            let Some(entries) = value.as_object() else {
                return Err(wrong_type(path, ty, value));
            };
            for (k, item) in entries {
                self.check_type(inner, item, &join(path, k))?;
            }
            return Ok(());
        }
        let ok = match ty {
            "str" | "duration" => value.is_string(),
            "iso-8601" => value.as_str().is_some_and(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .is_ok()
            }),
            "int" | "long" => value.is_i64() || value.is_u64(),
            "float" => value.is_number(),
            "bool" => value.is_boolean(),
            "object" => true,
            model => return self.check_object(model, self.model(model), value, path),
        };
        if ok {
            Ok(())
        } else {
            Err(wrong_type(path, ty, value))
        }
    }
}

fn check_constraints(c: &Constraints, value: &Value, path: &str) -> Result<(), Mismatch> {
    let fail = |what: String| Err(mismatch(path, what));
    if let Some(s) = value.as_str() {
        let n = s.chars().count();
        if c.min_length.is_some_and(|m| n < m) || c.max_length.is_some_and(|m| n > m) {
            return fail(format!("The length {n} is outside the allowed range."));
        }
    }
    if let Some(x) = value.as_f64() {
        if c.minimum.is_some_and(|m| x < m) || c.maximum.is_some_and(|m| x > m) {
            return fail(format!("The value {x} is outside the allowed range."));
        }
    }
    if let Some(items) = value.as_array() {
        let n = items.len();
        if c.min_items.is_some_and(|m| n < m) || c.max_items.is_some_and(|m| n > m) {
            return fail(format!("{n} items is outside the allowed count."));
        }
    }
    Ok(())
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(path: &str, ty: &str, value: &Value) -> Mismatch {
    mismatch(path, format!("Expected {ty}, got {}.", kind(value)))
}

fn mismatch(path: &str, message: String) -> Mismatch {
    Mismatch {
        path: path.to_string(),
        message,
    }
}

/// The api-version of the vendored Microsoft.ContainerInstance models.
pub const CONTAINER_INSTANCE_API: &str = "2023-05-01";

/// Microsoft.ContainerInstance 2023-05-01 (azure-mgmt-containerinstance 10.1.0).
pub fn container_instance() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Schema::parse(
            "containerinstance-2023-05-01",
            include_str!("../schemas/containerinstance-2023-05-01.json"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn group() -> Value {
        json!({
            "location": "westeurope",
            "properties": {
                "osType": "Linux",
                "restartPolicy": "Never",
                "containers": [{
                    "name": "job",
                    "properties": {
                        "image": "r:1",
                        "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.5}},
                        "environmentVariables": [{"name": "A", "secureValue": "x"}]
                    }
                }]
            }
        })
    }

    fn refused(body: &Value) -> Mismatch {
        container_instance()
            .check("ContainerGroup", body)
            .expect_err("the body should be refused")
    }

    #[test]
    fn a_minimal_group_conforms() {
        container_instance()
            .check("ContainerGroup", &group())
            .unwrap();
    }

    #[test]
    fn each_kind_of_mismatch_is_refused_with_its_path() {
        let mut b = group();
        b["properties"]["containers"][0]["properties"]
            .as_object_mut()
            .unwrap()
            .remove("image");
        let m = refused(&b);
        assert_eq!(m.path, "properties.containers[0].properties");
        assert!(m.message.contains("Required property 'image'"), "{m}");

        let mut b = group();
        b["properties"]["osType"] = json!("linux-ish");
        let m = refused(&b);
        assert_eq!(m.path, "properties.osType");
        assert!(m.message.contains("Windows, Linux"), "{m}");

        let mut b = group();
        b["properties"]["containers"][0]["properties"]["resources"]["requests"]["cpu"] = json!("1");
        assert_eq!(
            refused(&b).path,
            "properties.containers[0].properties.resources.requests.cpu"
        );

        let mut b = group();
        b["properties"]["restartPolicyy"] = json!("Never");
        let m = refused(&b);
        assert!(
            m.message.contains("Could not find member 'restartPolicyy'"),
            "{m}"
        );

        let mut b = group();
        b["properties"]["provisioningState"] = json!("Succeeded");
        assert!(refused(&b).message.contains("read-only"));

        let mut b = group();
        b["tags"] = json!({"a": 1});
        assert_eq!(refused(&b).path, "tags.a");

        let mut b = group();
        b.as_object_mut().unwrap().remove("properties");
        assert!(refused(&b)
            .message
            .contains("Required property 'properties'"));
    }

    #[test]
    fn flattened_keys_split_on_unescaped_dots() {
        assert_eq!(key_segments("properties.image"), ["properties", "image"]);
        assert_eq!(key_segments(r"a\.b.c"), ["a.b", "c"]);
    }
}
