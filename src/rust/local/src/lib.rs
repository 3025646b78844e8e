//! `serverless-local`: an in-process emulator of the Azure control plane for serveRless.
//!
//! It serves, on 127.0.0.1 only:
//! - over HTTPS (a throw-away CA, see [`LocalAzure::ca_pem`]): Entra ID token endpoints
//!   (client credentials, device code, refresh token) and ARM (resource groups,
//!   container groups that really run as local processes, user-assigned identities,
//!   role assignments, registries with ACR Tasks quick builds, Logic Apps workflows
//!   that really run (see [`workflow`]), API connections, seeded storage accounts),
//!   the blob-style SAS URLs of build source uploads and run logs (`/_acr/...`), and
//!   the callback URLs of workflows' Request triggers (`/workflows/...`), and the
//!   public Retail Prices API (`/api/retail/prices`);
//! - over HTTPS, one listener per registry (its `loginServer`, `127.0.0.1:PORT`): the
//!   registry data plane (ACR token exchange, manifests and tags of built images);
//! - over plain HTTP: the App Service style managed-identity endpoint that the
//!   emulated containers use (the instance metadata service's token endpoint, as
//!   ACI serves it, at `SERVERLESS_IMDS_ENDPOINT`).
//!
//! Built images hold no files: a container group running one runs the image's
//! ENTRYPOINT/CMD as a host process (the host's R and library), which is why builds
//! check R package pins against [`Config::r_library_paths`].
//!
//! It is strict where Azure is strict (api-version, bearer tokens, names, required
//! properties, error shapes), so a client that works here works against Azure.
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! let azure = serverless_local::LocalAzure::start(serverless_local::Config::new("/tmp/la")).await?;
//! println!("ARM and authority host: {}", azure.https_endpoint());
//! azure.shutdown().await;
//! # Ok(()) }
//! ```

mod aci;
mod acr;
mod arm;
mod dockerfile;
mod faults;
mod identity;
mod journal;
mod logic;
mod prices;
pub mod proxy;
pub mod reaper;
mod registry;
mod resources;
mod schema;
mod server;
mod state;
mod storage_gate;
mod tls;
mod token;
mod util;
pub mod workflow;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::routing::{any, get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A boxed future: what the R bindings await from this crate. Boxed here, the state
/// machine (and everything it spawns) is compiled once, in this crate, instead of
/// again in the bindings crate at the end of a clean build (bench/RESULTS.md).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

pub use faults::Faults;
pub use journal::JournalEntry;
pub use state::AciQuota;

use state::{Inner, World};

/// What the emulated tenant and subscription look like.
#[derive(Debug, Clone)]
pub struct Config {
    pub tenant_id: String,
    pub subscription_id: String,
    /// The service principal accepted by the client-credentials flow.
    pub client_id: String,
    pub client_secret: String,
    /// Where container processes get their working directories and log files.
    pub work_dir: PathBuf,
    /// How many device-code polls answer `authorization_pending` before a token.
    pub device_code_pending_polls: u32,
    /// Provider namespaces that answer 409 `MissingSubscriptionRegistration` until
    /// registered (`POST /subscriptions/{s}/providers/{ns}/register`).
    pub unregistered_providers: Vec<String>,
    /// Storage accounts that exist from the start (the emulator does not create
    /// storage accounts; blob data lives elsewhere, e.g. Azurite). Role assignments
    /// at their scope need them.
    pub storage_accounts: Vec<SeededStorageAccount>,
    /// Registry names "taken by another tenant": `checkNameAvailability` reports them
    /// as `AlreadyExists` and a registry PUT of one fails.
    pub taken_registry_names: Vec<String>,
    /// The host's R library paths. Images built by ACR Tasks run the host's R with
    /// these libraries, so a build that pins a package missing here fails; a
    /// container of an image sees only the packages its build installed.
    pub r_library_paths: Vec<PathBuf>,
    /// The `bin` directory of the R that images run, so containers start `R` and
    /// `Rscript` by absolute path (under `R CMD check --as-cran` the ones on PATH are
    /// stubs that fail). `None`: whatever PATH finds.
    pub r_bin_dir: Option<PathBuf>,
}

/// A storage account seeded at start (`Microsoft.Storage/storageAccounts/{name}`).
#[derive(Debug, Clone)]
pub struct SeededStorageAccount {
    /// Created (with `location`) when missing.
    pub resource_group: String,
    pub name: String,
    /// `properties.primaryEndpoints.blob`, e.g. Azurite's
    /// `http://127.0.0.1:10000/devstoreaccount1/`.
    pub blob_endpoint: String,
    pub location: String,
}

impl Config {
    /// Fresh random tenant, subscription and service principal; two pending device-code
    /// polls; every provider registered; no storage accounts, taken registry names or
    /// host R library.
    pub fn new(work_dir: impl Into<PathBuf>) -> Config {
        Config {
            tenant_id: util::new_uuid(),
            subscription_id: util::new_uuid(),
            client_id: util::new_uuid(),
            client_secret: util::new_secret(),
            work_dir: work_dir.into(),
            device_code_pending_polls: 2,
            unregistered_providers: Vec::new(),
            storage_accounts: Vec::new(),
            taken_registry_names: Vec::new(),
            r_library_paths: Vec::new(),
            r_bin_dir: None,
        }
    }
}

/// A running emulator. Dropping it kills the container processes; [`LocalAzure::shutdown`]
/// also stops the listeners and waits for the processes to end.
pub struct LocalAzure {
    inner: Arc<Inner>,
    ca_pem: String,
    /// The HTTPS leaf certificate chain and key (PEM), for Azurite.
    tls_cert_pem: String,
    tls_key_pem: String,
    /// TLS to Azurite, trusting only the emulator's CA (the storage gate's upstream).
    azurite_tls: tokio_rustls::TlsConnector,
    shutdown_tx: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
}

impl LocalAzure {
    /// Binds both listeners on free ports of 127.0.0.1 and starts serving on the
    /// caller's tokio runtime.
    pub fn start(config: Config) -> BoxFuture<'static, Result<LocalAzure, String>> {
        Box::pin(async move {
            std::fs::create_dir_all(&config.work_dir).map_err(|e| {
                format!(
                    "cannot create work dir {}: {e}",
                    config.work_dir.to_string_lossy()
                )
            })?;
            let tls = tls::generate()?;
            let https_listener = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("cannot bind the HTTPS listener: {e}"))?;
            let http_listener = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("cannot bind the identity listener: {e}"))?;
            let https_port = https_listener
                .local_addr()
                .map_err(|e| e.to_string())?
                .port();
            let http_port = http_listener
                .local_addr()
                .map_err(|e| e.to_string())?
                .port();

            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config);
            let service_principal_id = util::new_uuid();
            let device_user_id = util::new_uuid();
            let world = World {
                unregistered: config
                    .unregistered_providers
                    .iter()
                    .map(|p| p.to_ascii_lowercase())
                    .collect(),
                principals: [service_principal_id.clone(), device_user_id.clone()]
                    .into_iter()
                    .collect(),
                ..World::default()
            };
            let http = workflow::http::client(tls.ca_der.clone())?;
            let azurite_tls = {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(tls.ca_der.clone())
                    .map_err(|e| format!("cannot trust the local CA: {e}"))?;
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS setup failed: {e}"))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                tokio_rustls::TlsConnector::from(Arc::new(config))
            };
            let reaper = reaper::Reaper::start()
                .map_err(|e| format!("cannot start the process watchdog: {e}"))?;
            let (shutdown_tx, shutdown_rx) = watch::channel(false);
            let inner = Arc::new(Inner {
                config,
                https_base: format!("https://127.0.0.1:{https_port}"),
                identity_endpoint: format!("http://127.0.0.1:{http_port}/imds"),
                signer: token::TokenSigner::new(),
                tls: acceptor.clone(),
                service_principal_id,
                device_user_id,
                world: Mutex::new(world),
                journal: Mutex::new(Vec::new()),
                faults: Mutex::new(faults::FaultState::new(Faults::default())),
                secret_expired: AtomicBool::new(false),
                http,
                shutdown: shutdown_rx.clone(),
                reaper,
            });
            resources::seed_storage_accounts(&inner)?;

            let https_app = Router::new()
                .route("/{tenant}/oauth2/v2.0/token", post(identity::token))
                .route(
                    "/{tenant}/oauth2/v2.0/devicecode",
                    post(identity::device_code),
                )
                .route("/_acr/{*rest}", any(acr::blob))
                .route("/api/retail/prices", get(prices::retail_prices))
                .route(
                    "/workflows/{access_id}/triggers/{trigger}/paths/invoke",
                    any(logic::invoke),
                )
                .fallback(arm::handle)
                .with_state(inner.clone());
            let http_app = Router::new()
                .route(
                    "/imds/{secret}/metadata/identity/oauth2/token",
                    get(identity::instance_metadata_token),
                )
                .with_state(inner.clone());

            let listeners = vec![
                tokio::spawn(server::accept_loop(
                    https_listener,
                    Some(acceptor),
                    https_app,
                    inner.clone(),
                    shutdown_rx.clone(),
                    true,
                )),
                tokio::spawn(server::accept_loop(
                    http_listener,
                    None,
                    http_app,
                    inner.clone(),
                    shutdown_rx,
                    false,
                )),
            ];
            Ok(LocalAzure {
                inner,
                ca_pem: tls.ca_pem,
                tls_cert_pem: tls.cert_pem,
                tls_key_pem: tls.key_pem,
                azurite_tls,
                shutdown_tx,
                listeners,
            })
        })
    }

    /// `https://127.0.0.1:PORT`: the ARM base URL and the authority host.
    pub fn https_endpoint(&self) -> String {
        self.inner.https_base.clone()
    }

    /// `http://127.0.0.1:PORT2/imds`: where containers' instance metadata services
    /// live; a container with an identity gets `SERVERLESS_IMDS_ENDPOINT` below it.
    pub fn identity_endpoint(&self) -> String {
        self.inner.identity_endpoint.clone()
    }

    /// The CA certificate (PEM) that clients must trust to reach [`Self::https_endpoint`].
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// The certificate chain and private key (PEM) the HTTPS listener serves, signed by
    /// [`Self::ca_pem`]: another local server (Azurite) can serve HTTPS with them so
    /// clients trust both through one CA.
    pub fn tls_cert_and_key(&self) -> (String, String) {
        (self.tls_cert_pem.clone(), self.tls_key_pem.clone())
    }

    /// Starts the storage gate in front of Azurite (HTTPS on `azurite_port` of
    /// 127.0.0.1, serving [`Self::tls_cert_and_key`]): it refuses the bearer tokens
    /// Azure Storage would refuse (a bad signature, another tenant or audience, a
    /// principal without a Blob data role) and forwards every other request to
    /// Azurite. Returns its port; it stops with the emulator.
    pub fn start_storage_gate<'a>(
        &'a self,
        azurite_port: u16,
    ) -> BoxFuture<'a, Result<u16, String>> {
        Box::pin(async move {
            let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], azurite_port));
            storage_gate::start(self.inner.clone(), self.azurite_tls.clone(), upstream)
                .await
                .map_err(|e| format!("the storage gate did not start: {e}"))
        })
    }

    /// Adds a storage account (and its resource group when missing) after start, e.g.
    /// once Azurite is listening and its endpoint is known.
    pub fn add_storage_account(&self, account: SeededStorageAccount) -> Result<(), String> {
        resources::seed_storage_account(&self.inner, &account)
    }

    /// Gives the shared key (base64) of a seeded storage account: the azureblob
    /// polling trigger then lists blobs with Shared Key (e.g. Azurite's well-known
    /// development key) rather than a bearer token of the connection's identity.
    pub fn set_storage_account_key(&self, account: &str, key: &str) -> Result<(), String> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|e| format!("the key of storage account {account} is not base64: {e}"))?;
        self.inner
            .world()
            .storage_keys
            .insert(account.to_ascii_lowercase(), key.to_string());
        Ok(())
    }

    /// The configuration the emulator runs with (tenant, subscription, credentials).
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Every ARM and identity call so far, oldest first, secrets redacted.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.inner
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the fault settings and reseeds their generator.
    pub fn set_faults(&self, faults: Faults) {
        *self.inner.faults.lock().unwrap_or_else(|e| e.into_inner()) =
            faults::FaultState::new(faults);
    }

    /// Sets the Container Instances quota of every region (usages and creates follow it).
    pub fn set_aci_quota(&self, quota: state::AciQuota) {
        self.inner.world().aci_quota = Some(quota);
    }

    /// When true, the client secret is refused as expired (AADSTS7000222).
    pub fn set_secret_expired(&self, expired: bool) {
        self.inner.secret_expired.store(expired, Ordering::SeqCst);
    }

    /// Appends a finished run record to a workflow's run history (`GET .../runs`),
    /// e.g. a run made elsewhere; the emulator executes workflows itself. Fills `id`,
    /// `name` and `type` when absent.
    pub fn add_workflow_run(
        &self,
        workflow_id: &str,
        run: serde_json::Value,
    ) -> Result<(), String> {
        logic::add_run(&self.inner, workflow_id, run)
    }

    /// Stops every listener (registries' too) and kills every container process,
    /// waiting for them to end.
    pub fn shutdown(mut self) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.shutdown_tx.send_replace(true);
            for handle in self.listeners.drain(..) {
                let _ = handle.await;
            }
            acr::stop_all(&self.inner).await;
            aci::kill_all(&self.inner).await;
            self.inner.reaper.stop();
        })
    }
}

impl Drop for LocalAzure {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send_replace(true);
        acr::stop_all_now(&self.inner);
        aci::kill_all_now(&self.inner);
        self.inner.reaper.stop();
    }
}
