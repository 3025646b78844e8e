//! Azure Container Instances: container groups that start, run to completion and stop.

use crate::arm::{api, ArmClient};
use crate::error::{Error, ErrorKind, Result};
use crate::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Deserialize)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// Empty: the image's own command (its CMD).
    #[serde(default)]
    pub command: Vec<String>,
    pub cpu: f64,
    pub memory_gb: f64,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Values ACI never echoes back (`secureValue`).
    #[serde(default)]
    pub secure_env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GroupSpec {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub containers: Vec<ContainerSpec>,
    /// Resource id of a user-assigned managed identity for the group.
    #[serde(default)]
    pub identity: Option<String>,
    /// Private registries to pull from, each with the identity (resource id) to use:
    /// `(login server, identity)`. No password is ever used.
    #[serde(default)]
    pub registry_identities: Vec<(String, String)>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Run as a Spot container group: cheaper, and Azure may evict it when it needs
    /// the capacity back.
    #[serde(default)]
    pub spot: bool,
}

/// A container's end state.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerResult {
    pub name: String,
    pub state: String,
    pub exit_code: Option<i64>,
    pub logs: String,
}

/// ACI's rule for container group names (Azure's naming rules for
/// `Microsoft.ContainerInstance/containerGroups`): 1 to 63 lowercase letters, digits
/// and hyphens, not starting or ending with a hyphen, no two hyphens in a row. Used
/// for the containers in a group too (the stricter of the two rules).
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(Error::input(format!(
            "{what} name `{name}` is invalid: use 1 to 63 lowercase letters, digits and single dashes, not starting or ending with a dash"
        )))
    }
}

impl GroupSpec {
    pub fn validate(&self) -> Result<()> {
        check_name("container group", &self.name)?;
        if self.containers.is_empty() {
            return Err(Error::input(
                "a container group needs at least one container",
            ));
        }
        for c in &self.containers {
            check_name("container", &c.name)?;
            if !(c.cpu > 0.0 && c.cpu <= 4.0) {
                return Err(Error::input(format!(
                    "container `{}` asks for {} CPUs: ACI allows more than 0 and at most 4",
                    c.name, c.cpu
                )));
            }
            if !(c.memory_gb > 0.0 && c.memory_gb <= 16.0) {
                return Err(Error::input(format!(
                    "container `{}` asks for {} GB of memory: ACI allows more than 0 and at most 16",
                    c.name, c.memory_gb
                )));
            }
        }
        Ok(())
    }

    pub fn path(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerInstance/containerGroups/{}",
            self.subscription, self.resource_group, self.name
        )
    }

    /// The ARM request body (azure-rest.md §3).
    pub fn body(&self) -> Value {
        let containers: Vec<Value> = self
            .containers
            .iter()
            .map(|c| {
                let mut env: Vec<Value> = c
                    .env
                    .iter()
                    .map(|(k, v)| json!({"name": k, "value": v}))
                    .collect();
                env.extend(
                    c.secure_env
                        .iter()
                        .map(|(k, v)| json!({"name": k, "secureValue": v})),
                );
                let mut container = json!({
                    "name": c.name,
                    "properties": {
                        "image": c.image,
                        "resources": {"requests": {"cpu": c.cpu, "memoryInGB": c.memory_gb}},
                        "environmentVariables": env,
                    }
                });
                if !c.command.is_empty() {
                    container["properties"]["command"] = json!(c.command);
                }
                container
            })
            .collect();
        let mut body = json!({
            "location": self.location,
            "tags": self.tags,
            "properties": {
                "osType": "Linux",
                "restartPolicy": "Never",
                "sku": "Standard",
                "containers": containers,
            }
        });
        // ContainerGroupProperties.priority, "Regular" (the default) or "Spot"
        // (ContainerGroupPriority, Microsoft.ContainerInstance 2023-05-01,
        // containerInstance.json of azure-rest-api-specs).
        if self.spot {
            body["properties"]["priority"] = json!("Spot");
        }
        if let Some(id) = &self.identity {
            body["identity"] =
                json!({"type": "UserAssigned", "userAssignedIdentities": {id.clone(): {}}});
        }
        if !self.registry_identities.is_empty() {
            body["properties"]["imageRegistryCredentials"] = self
                .registry_identities
                .iter()
                .map(|(server, identity)| json!({"server": server, "identity": identity}))
                .collect();
        }
        body
    }
}

/// The resource group, created (in `location`, with `tags`) only if it does not
/// exist: a PUT on an existing group replaces its tags, and a group the user made is
/// theirs (Resource Groups Get and Create Or Update, Microsoft.Resources 2021-04-01,
/// `resources.json` of azure-rest-api-specs).
pub fn ensure_resource_group<'a>(
    arm: &'a ArmClient,
    subscription: &'a str,
    resource_group: &'a str,
    location: &'a str,
    tags: &'a BTreeMap<String, String>,
) -> BoxFuture<'a, Result<Value>> {
    Box::pin(async move {
        let path = format!("/subscriptions/{subscription}/resourcegroups/{resource_group}");
        if let Some(group) = arm.get_opt(&path, api::RESOURCES).await? {
            return Ok(group);
        }
        arm.put(
            &path,
            api::RESOURCES,
            &json!({"location": location, "tags": tags}),
        )
        .await
    })
}

/// Room left in a region's Container Instances quota.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaRoom {
    /// Container groups that may still be created.
    pub groups: Option<f64>,
    /// Standard (regular priority) vCPUs not in use.
    pub cores: Option<f64>,
}

impl QuotaRoom {
    /// How many groups of `cpu` vCPUs fit; `spot` groups count only against the
    /// group quota (their cores have a quota of their own, not read here).
    pub fn groups_of(&self, cpu: f64, spot: bool) -> Option<u32> {
        let by_cores = if spot {
            None
        } else {
            self.cores.map(|c| (c / cpu.max(0.01)).floor())
        };
        let room = match (self.groups, by_cores) {
            (Some(g), Some(c)) => g.min(c),
            (g, c) => g.or(c)?,
        };
        Some(room.clamp(0.0, f64::from(u32::MAX)) as u32)
    }
}

/// The region's Container Instances usage against its quota: `limit - currentValue`
/// of `ContainerGroups` and `StandardCores` (Location_ListUsage,
/// `GET /subscriptions/{s}/providers/Microsoft.ContainerInstance/locations/{l}/usages`,
/// Microsoft.ContainerInstance 2023-05-01; the usage names from ACI's "quotas and
/// limits" page, cited from memory). `None` when it cannot be read (no permission,
/// an older API): the caller keeps its documented default.
pub async fn quota_room(arm: &ArmClient, subscription: &str, location: &str) -> Option<QuotaRoom> {
    let path = format!(
        "/subscriptions/{subscription}/providers/Microsoft.ContainerInstance/locations/{location}/usages"
    );
    let usages = arm.get(&path, api::CONTAINER_INSTANCE).await.ok()?;
    let room = |name: &str| {
        usages["value"].as_array()?.iter().find_map(|u| {
            let named = u["name"]["value"].as_str()?.eq_ignore_ascii_case(name);
            let left = u["limit"].as_f64()? - u["currentValue"].as_f64()?;
            named.then_some(left.max(0.0))
        })
    };
    Some(QuotaRoom {
        groups: room("ContainerGroups"),
        cores: room("StandardCores"),
    })
}

pub async fn create_group(arm: &ArmClient, spec: &GroupSpec) -> Result<Value> {
    spec.validate()?;
    arm.put(&spec.path(), api::CONTAINER_INSTANCE, &spec.body())
        .await
}

/// Wait until every container has terminated; returns (name, state, exit code).
pub async fn wait_terminated(
    arm: &ArmClient,
    path: &str,
    poll: Duration,
    timeout: Duration,
) -> Result<Vec<(String, String, Option<i64>)>> {
    let deadline = Instant::now() + timeout;
    loop {
        let group = arm.get(path, api::CONTAINER_INSTANCE).await?;
        let states: Vec<(String, String, Option<i64>)> = group
            .pointer("/properties/containers")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        let name = c["name"].as_str().unwrap_or("").to_string();
                        let cur = c.pointer("/properties/instanceView/currentState");
                        let state = cur
                            .and_then(|s| s["state"].as_str())
                            .unwrap_or("Waiting")
                            .to_string();
                        let code = cur.and_then(|s| s["exitCode"].as_i64());
                        (name, state, code)
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !states.is_empty() && states.iter().all(|(_, s, _)| s == "Terminated") {
            return Ok(states);
        }
        if Instant::now() > deadline {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "container group {path} did not finish in {} s",
                    timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(poll).await;
    }
}

pub async fn logs(arm: &ArmClient, path: &str, container: &str) -> Result<String> {
    let body = arm
        .get(
            &format!("{path}/containers/{container}/logs"),
            api::CONTAINER_INSTANCE,
        )
        .await?;
    Ok(body["content"].as_str().unwrap_or("").to_string())
}

pub async fn delete_group(arm: &ArmClient, path: &str) -> Result<()> {
    arm.delete(path, api::CONTAINER_INSTANCE).await
}

/// Create a group, wait for it, collect logs and exit codes, and delete it (also when
/// waiting fails: no group is left behind to be billed).
pub fn run_group<'a>(
    arm: &'a ArmClient,
    spec: &'a GroupSpec,
    timeout: Duration,
) -> BoxFuture<'a, Result<Vec<ContainerResult>>> {
    Box::pin(async move {
        create_group(arm, spec).await?;
        let path = spec.path();
        let outcome = async {
            let states = wait_terminated(arm, &path, Duration::from_secs(1), timeout).await?;
            let mut out = Vec::new();
            for (name, state, exit_code) in states {
                let logs = logs(arm, &path, &name).await?;
                out.push(ContainerResult {
                    name,
                    state,
                    exit_code,
                    logs,
                });
            }
            Ok::<_, Error>(out)
        }
        .await;
        let deleted = delete_group(arm, &path).await;
        let out = outcome?;
        deleted?;
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> GroupSpec {
        GroupSpec {
            subscription: "sub".into(),
            resource_group: "rg".into(),
            name: "job-1".into(),
            location: "westeurope".into(),
            containers: vec![ContainerSpec {
                name: "job".into(),
                image: "img".into(),
                command: vec!["Rscript".into(), "-e".into(), "1".into()],
                cpu: 1.0,
                memory_gb: 1.5,
                env: BTreeMap::from([("A".into(), "1".into())]),
                secure_env: BTreeMap::from([("S".into(), "secret".into())]),
            }],
            identity: None,
            registry_identities: vec![],
            tags: BTreeMap::new(),
            spot: false,
        }
    }

    #[test]
    fn body_has_the_fields_aci_requires() {
        let b = spec().body();
        assert_eq!(b["properties"]["osType"], "Linux");
        assert_eq!(b["properties"]["restartPolicy"], "Never");
        let c = &b["properties"]["containers"][0]["properties"];
        assert_eq!(c["resources"]["requests"]["memoryInGB"], 1.5);
        assert_eq!(c["environmentVariables"][1]["secureValue"], "secret");
    }

    #[test]
    fn names_and_sizes_are_checked() {
        let mut s = spec();
        s.name = "Job_1".into();
        assert_eq!(s.validate().unwrap_err().kind, ErrorKind::Input);
        let mut s = spec();
        s.containers[0].cpu = 8.0;
        assert!(s.validate().unwrap_err().message.contains("8 CPUs"));
    }
}
