//! ARM request bodies checked against Microsoft's published models.
//!
//! The models come from the management SDKs that AutoRest generates from the swagger files
//! of Azure/azure-rest-api-specs (see `schemas/README.md` for which wheel, version and
//! sha256, and `tools/arm-schema.py` for how they were extracted). A body is refused when
//! it lacks a required property, has a property of the wrong type, an enum value the spec
//! does not list, a value outside the spec's constraints (lengths, ranges, counts,
//! pattern, constant), a read-only property, or a property the model does not have. A
//! polymorphic model (ACR's RunRequest) is checked as the subtype its discriminator names.
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
    /// A polymorphic model's discriminator property and its values' models
    /// (`{"type": {"DockerBuildRequest": "DockerBuildRequest", ...}}`).
    #[serde(default)]
    subtypes: Option<HashMap<String, HashMap<String, String>>>,
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
    /// The only value the property may have.
    #[serde(default)]
    constant: Option<Value>,
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
    pattern: Option<Pattern>,
}

/// A swagger `pattern` of the one shape the vendored files use: a whole string of
/// characters from one class, `^[a-zA-Z0-9]*$` (or `+`). Any other pattern fails when the
/// schema is loaded, so a new file that needs more says so in the tests.
#[derive(Clone)]
struct Pattern {
    source: String,
    ranges: Vec<(char, char)>,
    at_least_one: bool,
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        Pattern::parse(&source)
            .ok_or_else(|| serde::de::Error::custom(format!("unsupported pattern {source:?}")))
    }
}

impl Pattern {
    fn parse(source: &str) -> Option<Pattern> {
        let inner = source.strip_prefix("^[")?;
        let (class, at_least_one) = match inner.strip_suffix("]*$") {
            Some(c) => (c, false),
            None => (inner.strip_suffix("]+$")?, true),
        };
        let chars: Vec<char> = class.chars().collect();
        if chars.is_empty() || chars.iter().any(|c| matches!(c, '\\' | '[' | ']' | '^')) {
            return None;
        }
        let mut ranges = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            if i + 2 < chars.len() && chars[i + 1] == '-' {
                ranges.push((chars[i], chars[i + 2]));
                i += 3;
            } else {
                ranges.push((chars[i], chars[i]));
                i += 1;
            }
        }
        Some(Pattern {
            source: source.to_string(),
            ranges,
            at_least_one,
        })
    }

    fn matches(&self, s: &str) -> bool {
        (!self.at_least_one || !s.is_empty())
            && s.chars()
                .all(|c| self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi))
    }
}

/// A model's properties as the JSON nests them: `properties.image` (a flattened key) is
/// the member `image` of the object `properties`.
enum Node {
    Leaf(Box<Field>),
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
    /// Polymorphic models: their discriminator property and its values' models.
    subtypes: HashMap<String, (String, HashMap<String, String>)>,
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
        members.insert(first.clone(), Node::Leaf(Box::new(field)));
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
        let mut models = HashMap::new();
        let mut subtypes = HashMap::new();
        for (model, m) in file.models {
            let mut members = BTreeMap::new();
            for field in m.fields {
                insert(&mut members, &key_segments(&field.key), field);
            }
            if let Some(map) = m.subtypes {
                let (key, values) = map
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| panic!("schema {name}: {model}'s subtypes are empty"));
                subtypes.insert(model.clone(), (key, values));
            }
            models.insert(model, members);
        }
        Schema {
            name,
            models,
            subtypes,
            enums: file.enums,
        }
    }

    /// Checks `body` against `model`; the first mismatch found is the answer.
    pub fn check(&self, model: &str, body: &Value) -> Result<(), Mismatch> {
        self.check_model(model, body, "")
    }

    /// A polymorphic model's body is checked as the model its discriminator names
    /// (`"type": "DockerBuildRequest"`), as AutoRest's deserializer does.
    fn check_model(&self, model: &str, value: &Value, path: &str) -> Result<(), Mismatch> {
        if let Some((key, values)) = self.subtypes.get(model) {
            let named = value.get(key).and_then(Value::as_str);
            match named.and_then(|v| values.get(v)) {
                Some(sub) if sub != model => return self.check_model(sub, value, path),
                Some(_) => {}
                None => {
                    let mut known: Vec<&str> = values.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    return Err(mismatch(
                        &join(path, key),
                        format!(
                            "Could not create an instance of type '{model}': '{key}' must be one of {}.",
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        self.check_object(model, self.model(model), value, path)
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
        if let Some(constant) = &field.constant {
            if value != constant {
                return Err(mismatch(
                    path,
                    format!("The value {value} is not valid: it must be {constant}."),
                ));
            }
        }
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
            model => return self.check_model(model, value, path),
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
        if let Some(p) = c.pattern.as_ref().filter(|p| !p.matches(s)) {
            return fail(format!(
                "The value does not match the pattern '{}'.",
                p.source
            ));
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

/// The request bodies checked: the operation (a resource type, or a resource type and
/// its action), its api-version, the vendored file and the body's model. Each api-version is
/// the one `serverless_core::arm::api` sends; a request at another accepted api-version is
/// not checked.
const VENDORED: &[(&str, &str, &str, &str)] = &[
    // ResourceGroups_CreateOrUpdate.
    (
        "Microsoft.Resources/resourceGroups",
        "2021-04-01",
        "resources-2021-04-01",
        "ResourceGroup",
    ),
    // ContainerGroups_CreateOrUpdate.
    (
        "Microsoft.ContainerInstance/containerGroups",
        "2023-05-01",
        "containerinstance-2023-05-01",
        "ContainerGroup",
    ),
    // Registries_Create. (Registries_CheckNameAvailability's RegistryNameCheckRequest is
    // vendored but not applied: the operation exists to answer an invalid name with
    // `nameAvailable: false, reason: Invalid`, not with a 400 for the swagger's pattern.)
    (
        "Microsoft.ContainerRegistry/registries",
        "2025-04-01",
        "containerregistry-2025-04-01",
        "Registry",
    ),
    // Registries_ScheduleRun (a RunRequest: DockerBuildRequest and its siblings).
    (
        "Microsoft.ContainerRegistry/registries/scheduleRun",
        "2019-04-01",
        "containerregistry-2019-04-01",
        "RunRequest",
    ),
    // Workflows_CreateOrUpdate.
    (
        "Microsoft.Logic/workflows",
        "2019-05-01",
        "logic-2019-05-01",
        "Workflow",
    ),
    // UserAssignedIdentities_CreateOrUpdate.
    (
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        "2023-01-31",
        "msi-2023-01-31",
        "Identity",
    ),
    // RoleAssignments_Create.
    (
        "Microsoft.Authorization/roleAssignments",
        "2022-04-01",
        "authorization-2022-04-01",
        "RoleAssignmentCreateParameters",
    ),
];

/// The vendored files, parsed once.
fn schemas() -> &'static HashMap<&'static str, Schema> {
    static SCHEMAS: OnceLock<HashMap<&'static str, Schema>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let files: [(&'static str, &str); 7] = [
            (
                "resources-2021-04-01",
                include_str!("../schemas/resources-2021-04-01.json"),
            ),
            (
                "containerinstance-2023-05-01",
                include_str!("../schemas/containerinstance-2023-05-01.json"),
            ),
            (
                "containerregistry-2025-04-01",
                include_str!("../schemas/containerregistry-2025-04-01.json"),
            ),
            (
                "containerregistry-2019-04-01",
                include_str!("../schemas/containerregistry-2019-04-01.json"),
            ),
            (
                "logic-2019-05-01",
                include_str!("../schemas/logic-2019-05-01.json"),
            ),
            (
                "msi-2023-01-31",
                include_str!("../schemas/msi-2023-01-31.json"),
            ),
            (
                "authorization-2022-04-01",
                include_str!("../schemas/authorization-2022-04-01.json"),
            ),
        ];
        files
            .into_iter()
            .map(|(name, json)| (name, Schema::parse(name, json)))
            .collect()
    })
}

/// Checks the body of `operation` at `api_version` against its vendored model, when the
/// pair is vendored.
pub fn check_request(operation: &str, api_version: &str, body: &Value) -> Result<(), Mismatch> {
    let found = VENDORED
        .iter()
        .find(|(op, api, _, _)| op.eq_ignore_ascii_case(operation) && *api == api_version);
    match found {
        Some((_, _, file, model)) => schemas()[file].check(model, body),
        None => Ok(()),
    }
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

    const ACI: (&str, &str) = ("Microsoft.ContainerInstance/containerGroups", "2023-05-01");

    fn refused(body: &Value) -> Mismatch {
        check_request(ACI.0, ACI.1, body).expect_err("the body should be refused")
    }

    #[test]
    fn a_minimal_group_conforms() {
        check_request(ACI.0, ACI.1, &group()).unwrap();
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
    fn every_vendored_request_names_a_model_of_its_file() {
        for (op, api, file, model) in VENDORED {
            let schema = &schemas()[file];
            assert!(
                schema.models.contains_key(*model),
                "{op} {api}: no {model} in {file}"
            );
            assert!(
                file.ends_with(api),
                "{op}: {file} is not of api-version {api}"
            );
        }
        // Not vendored: not checked.
        check_request(
            "Microsoft.Web/connections",
            "2018-07-01-preview",
            &json!({"x": 1}),
        )
        .unwrap();
        check_request(ACI.0, "2022-09-01", &json!({"x": 1})).unwrap();
    }

    #[test]
    fn a_run_request_is_checked_as_the_model_its_type_names() {
        const RUN: (&str, &str) = (
            "Microsoft.ContainerRegistry/registries/scheduleRun",
            "2019-04-01",
        );
        let run = json!({
            "type": "DockerBuildRequest",
            "sourceLocation": "source/x.tar.gz",
            "dockerFilePath": "Dockerfile",
            "imageNames": ["r:1"],
            "isPushEnabled": true,
            "platform": {"os": "Linux", "architecture": "amd64"}
        });
        check_request(RUN.0, RUN.1, &run).unwrap();
        let mut b = run.clone();
        b.as_object_mut().unwrap().remove("dockerFilePath");
        let m = check_request(RUN.0, RUN.1, &b).unwrap_err();
        assert!(
            m.message.contains("Required property 'dockerFilePath'"),
            "{m}"
        );
        let mut b = run.clone();
        b["platform"]["architecture"] = json!("arm64"); // not in 2019-04-01's Architecture
        assert_eq!(
            check_request(RUN.0, RUN.1, &b).unwrap_err().path,
            "platform.architecture"
        );
        let mut b = run.clone();
        b["type"] = json!("QuickBuild");
        let m = check_request(RUN.0, RUN.1, &b).unwrap_err();
        assert_eq!(m.path, "type");
        assert!(
            m.message
                .contains("DockerBuildRequest, EncodedTaskRunRequest"),
            "{m}"
        );
        let mut b = run;
        b["timeout"] = json!(60); // 300 to 28800
        assert!(check_request(RUN.0, RUN.1, &b)
            .unwrap_err()
            .message
            .contains("outside"));
    }

    #[test]
    fn constants_and_patterns_are_the_specs() {
        // Not applied to requests (see VENDORED), but a vendored model all the same.
        let acr = &schemas()["containerregistry-2025-04-01"];
        let check = |b: &Value| acr.check("RegistryNameCheckRequest", b);
        let ok = json!({"name": "serverless123", "type": "Microsoft.ContainerRegistry/registries"});
        check(&ok).unwrap();
        let mut b = ok.clone();
        b["type"] = json!("Microsoft.ContainerRegistry/registry");
        assert!(check(&b).unwrap_err().message.contains("must be"));
        let mut b = ok;
        b["name"] = json!("server-less");
        let m = check(&b).unwrap_err();
        assert!(m.message.contains("^[a-zA-Z0-9]*$"), "{m}");

        let p = Pattern::parse("^[a-z0-9-]+$").unwrap();
        assert!(p.matches("a-1") && !p.matches("") && !p.matches("A"));
        assert!(Pattern::parse("^[a-z](x)?$").is_none());
    }

    #[test]
    fn flattened_keys_split_on_unescaped_dots() {
        assert_eq!(key_segments("properties.image"), ["properties", "image"]);
        assert_eq!(key_segments(r"a\.b.c"), ["a.b", "c"]);
    }
}
