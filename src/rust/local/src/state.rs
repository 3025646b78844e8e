//! The emulator's shared state: the resource store and everything the handlers share.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

use crate::faults::FaultState;
use crate::journal::JournalEntry;
use crate::token::{Principal, TokenSigner};
use crate::Config;

pub struct Inner {
    pub config: Config,
    /// `https://127.0.0.1:PORT`: ARM base URL and authority host.
    pub https_base: String,
    /// `http://127.0.0.1:PORT2/imds`.
    pub identity_endpoint: String,
    pub signer: TokenSigner,
    /// The listeners' TLS (one throw-away certificate for every listener).
    pub tls: tokio_rustls::TlsAcceptor,
    /// Object id of the service principal behind `config.client_id`.
    pub service_principal_id: String,
    /// Object id of the user who "signs in" through the device-code flow.
    pub device_user_id: String,
    pub world: Mutex<World>,
    pub journal: Mutex<Vec<JournalEntry>>,
    pub faults: Mutex<FaultState>,
    pub secret_expired: AtomicBool,
    /// HTTP client of workflow actions (trusts the emulator's CA).
    pub http: reqwest::Client,
    /// Flips to true when the emulator shuts down (workflow timers and runs stop).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Kills container processes if the process hosting the emulator dies.
    pub reaper: crate::reaper::Reaper,
}

/// Everything mutable that handlers read and write together. Never held across an await.
#[derive(Default)]
pub struct World {
    /// Resources keyed by lowercased id, stored as Azure returns them (no secrets).
    pub resources: BTreeMap<String, Value>,
    /// Namespaces (lowercase) that still answer `MissingSubscriptionRegistration`.
    pub unregistered: HashSet<String>,
    pub operations: HashMap<String, Operation>,
    pub device_codes: HashMap<String, DeviceCode>,
    pub refresh_tokens: HashMap<String, RefreshGrant>,
    /// `X-IDENTITY-HEADER` secret -> the identities a container group may use.
    pub msi_secrets: HashMap<String, Vec<MsiIdentity>>,
    /// Container group runtimes keyed by lowercased group id.
    pub groups: HashMap<String, crate::aci::GroupRuntime>,
    /// Workflow runs keyed by lowercased workflow id, oldest first.
    pub workflow_runs: HashMap<String, Vec<crate::workflow::engine::RunRecord>>,
    /// Trigger timer generation per lowercased workflow id: timers of an older
    /// generation stop (the workflow was changed, disabled or deleted).
    pub workflow_timers: HashMap<String, u64>,
    /// Trigger histories keyed by lowercased `{workflow id}/triggers/{trigger}`,
    /// oldest first (the API lists them newest first).
    pub trigger_histories: HashMap<String, Vec<Value>>,
    /// Request-trigger callback keys: workflow access id (lowercase) -> (lowercased
    /// workflow id, signing key).
    pub workflow_access: HashMap<String, (String, String)>,
    /// Shared keys of seeded storage accounts (lowercased name -> base64 key), for
    /// the azureblob polling trigger; without one it uses the connection's identity.
    pub storage_keys: HashMap<String, String>,
    /// Admin passwords of registries keyed by lowercased registry id.
    pub registry_passwords: HashMap<String, [String; 2]>,
    /// Object ids that role assignments may name.
    pub principals: HashSet<String>,
    /// Live side of registries (data-plane listener, uploads, runs, images) keyed by
    /// lowercased registry id.
    pub registries: HashMap<String, crate::acr::RegistryRuntime>,
    /// Container Instances quota of every region; `None` is ACI's default.
    pub aci_quota: Option<AciQuota>,
}

/// A region's Container Instances quota (per subscription and region).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AciQuota {
    pub container_groups: u64,
    pub standard_cores: f64,
}

impl Default for AciQuota {
    /// ACI's defaults for a pay-as-you-go subscription ("Resource availability and
    /// quota limits for ACI": 100 standard container groups and 100 standard cores
    /// per region; cited from memory, not verified).
    fn default() -> Self {
        AciQuota {
            container_groups: 100,
            standard_cores: 100.0,
        }
    }
}

/// Who a refresh token signs in again, with the extra claims of their tokens.
pub type RefreshGrant = (Principal, Vec<(&'static str, Value)>);

pub struct DeviceCode {
    pub client_id: String,
    pub scope: String,
    pub pending_polls: u32,
    pub expires_at: i64,
}

/// One identity a container may get tokens for through the managed-identity endpoint.
#[derive(Clone, Debug)]
pub struct MsiIdentity {
    pub principal: Principal,
    /// `None` for the system-assigned identity.
    pub resource_id: Option<String>,
}

/// A long-running operation that clients poll.
pub struct Operation {
    pub kind: OperationKind,
    pub polls: u32,
    pub start_time: String,
}

pub enum OperationKind {
    /// A container group being provisioned; its status follows the group's
    /// provisioning state (after at least one `InProgress`).
    AciProvision { group_id: String, generation: u64 },
    /// Done after `remaining` more polls answering 202.
    Countdown { remaining: u32, final_status: u16 },
}

impl World {
    /// A storage account of the emulated subscription, by name.
    pub fn storage_account(&self, name: &str) -> Option<&Value> {
        self.resources.values().find(|v| {
            v["type"] == "Microsoft.Storage/storageAccounts"
                && v["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }

    /// The role definition GUIDs (lowercase) of `principal`'s role assignments at
    /// `scope` (a lowercase resource id) or above it: what Azure's RBAC consults.
    pub fn roles_at(&self, principal: &str, scope: &str) -> Vec<String> {
        self.resources
            .values()
            .filter(|v| v["type"] == "Microsoft.Authorization/roleAssignments")
            .map(|v| &v["properties"])
            .filter(|p| {
                p["principalId"]
                    .as_str()
                    .is_some_and(|x| x.eq_ignore_ascii_case(principal))
            })
            .filter(|p| {
                p["scope"].as_str().is_some_and(|s| {
                    let s = s.to_ascii_lowercase();
                    let s = s.trim_end_matches('/');
                    scope == s || scope.starts_with(&format!("{s}/"))
                })
            })
            .filter_map(|p| p["roleDefinitionId"].as_str())
            .filter_map(|r| r.rsplit('/').next())
            .map(str::to_ascii_lowercase)
            .collect()
    }
}

impl Inner {
    pub fn world(&self) -> MutexGuard<'_, World> {
        // A poisoned lock only means some handler panicked mid-update; the data is
        // still the best we have, so keep serving.
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}
