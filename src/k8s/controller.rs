//! Watches `LwswsConfig` resources and Secrets in one namespace (kube-runtime reflectors). After
//! each burst of changes the server asks it for the config it now describes (`build`), applies
//! that exactly as a file reload (zero drop), and hands back the outcome, which this writes as
//! each resource's `Accepted` and `Programmed` conditions (`report`). It never applies anything
//! itself. A status is written only
//! when it changes, so the watch events that status writes cause settle at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use tokio::sync::mpsc;

use super::crd::{Condition, LwswsConfig, LwswsConfigStatus};
use super::frontends::{self, Frontends, RouteOptions, RoutesBuilt};
use super::lease::{Leadership, LeaseClaim};
use super::source::{self, Build, TlsPair, Verdict};
use super::watched::Watched;
use crate::lwsws::Source;

/// How long the status Lease lasts unrenewed (renewed every third of it), as Kubernetes' own
/// controllers' leader Leases.
const STATUS_LEASE: Duration = Duration::from_secs(15);

pub struct Controller {
    client: kube::Client,
    namespace: String,
    configs: Watched<LwswsConfig>,
    secrets: Watched<Secret>,
    secret_dir: PathBuf,
    last_good: parking_lot::Mutex<source::LastGood>,
    /// Services' endpoints, kept current from EndpointSlices; shared with the server.
    services: std::sync::Arc<crate::upstream::Services>,
    /// The Gateway API and Ingress front ends, when asked for.
    frontends: Option<Frontends>,
    /// Whether this replica writes statuses (the others compute the same and keep quiet).
    leadership: Leadership,
    changes: mpsc::UnboundedSender<()>,
}

impl Controller {
    /// Starts watching `namespace`; every change sends `()` on the returned channel.
    pub fn start(
        client: kube::Client,
        namespace: &str,
        secret_dir: PathBuf,
        routes: RouteOptions,
    ) -> (Controller, mpsc::UnboundedReceiver<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let ns = [namespace.to_string()];
        let configs = Watched::start_in("lwswsconfigs", &client, Some(&ns), Default::default(), &tx);
        // Only TLS Secrets matter here (not Helm's release records or tokens).
        let tls_only = watcher::Config::default().fields("type=kubernetes.io/tls");
        let secrets = Watched::start_in("secrets", &client, Some(&ns), tls_only, &tx);
        let services: std::sync::Arc<crate::upstream::Services> = Default::default();
        let frontends =
            routes.any().then(|| Frontends::start(&client, routes, services.clone(), secret_dir.join("routes"), &tx));
        let ctl = Controller {
            client,
            namespace: namespace.to_string(),
            configs,
            secrets,
            secret_dir,
            last_good: Default::default(),
            services,
            frontends,
            leadership: Leadership::always(),
            changes: tx,
        };
        (ctl, rx)
    }

    /// Writes statuses only while holding the Lease `lease` of this namespace: one replica of
    /// many writes, and another takes over when it goes (its first rebuild writes them all).
    pub fn elect(&mut self, lease: &str) {
        self.elect_with(lease, crate::acme::replica_id(), STATUS_LEASE);
    }

    /// `elect`, naming this replica `holder` and with a Lease that lasts `ttl` unrenewed.
    pub fn elect_with(&mut self, lease: &str, holder: &str, ttl: Duration) {
        let claim = LeaseClaim::new(self.client.clone(), &self.namespace, lease, holder, ttl);
        self.leadership = Leadership::start(claim, self.changes.clone());
    }

    /// Whether this replica writes statuses now.
    pub fn writes_status(&self) -> bool {
        self.leadership.is_leader()
    }

    /// Connects with the in-cluster service account (or the kubeconfig outside a cluster).
    /// With `status_lease`, statuses are written by the replica that holds that Lease.
    pub async fn connect(
        namespace: &str,
        routes: RouteOptions,
        status_lease: Option<&str>,
    ) -> Result<(Controller, mpsc::UnboundedReceiver<()>), kube::Error> {
        let client = kube::Client::try_default().await?;
        let secret_dir = crate::model::acme::state_dir().join("secrets");
        let (mut ctl, rx) = Controller::start(client, namespace, secret_dir, routes);
        if let Some(lease) = status_lease {
            ctl.elect(lease);
        }
        Ok((ctl, rx))
    }

    /// Services' endpoints, for the server's tables.
    pub fn services(&self) -> std::sync::Arc<crate::upstream::Services> {
        self.services.clone()
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Waits for the first full list of both kinds (or gives up after `limit`).
    pub async fn synced(&self, limit: Duration) -> bool {
        let both = async {
            let _ = self.configs.synced(limit).await;
            let _ = self.secrets.synced(limit).await;
            if let Some(f) = &self.frontends {
                let _ = f.synced(limit).await;
            }
        };
        tokio::time::timeout(limit, both).await.is_ok()
    }

    /// The config from the files in `dir` (when it has a `conf`) and the resources seen now.
    pub fn build(&self, dir: &Path, ddir: &str) -> Build {
        let files = match file_sources(dir) {
            Ok(f) => f,
            Err(e) => return Build { loaded: Err(e), verdicts: Vec::new(), routes: Default::default() },
        };
        let lookup = |ns: &str, name: &str| self.tls_pair(ns, name);
        let mut build = {
            let mut last_good = self.last_good.lock();
            source::build(&files, &self.configs.state(), &lookup, &self.secret_dir, ddir, &mut last_good)
        };
        if let (Some(f), Ok(loaded)) = (&self.frontends, &mut build.loaded) {
            let mut routes = f.build(&frontends::ports_of(loaded));
            if let Err(e) = frontends::join(loaded, std::mem::take(&mut routes.vhosts)) {
                // The files and resources keep serving without the routes.
                let e = frontends::join_error(&e);
                tracing::warn!(error = %e, "the Gateway API and Ingress routes cannot be served");
                routes.refused = Some(e.to_string());
            }
            build.routes = routes;
        }
        build
    }

    /// Writes the route front ends' statuses that changed; `applied`: whether the server took
    /// the config they joined (`Err`: why not).
    pub async fn report_routes(&self, routes: &RoutesBuilt, applied: Result<(), &str>) {
        if !self.writes_status() {
            return;
        }
        if let Some(f) = &self.frontends {
            f.report(&self.client, routes, applied).await;
        }
    }

    fn tls_pair(&self, namespace: &str, name: &str) -> Option<TlsPair> {
        let s = self.secrets.get(namespace, name)?;
        if s.type_.as_deref() != Some("kubernetes.io/tls") {
            return None;
        }
        let data = s.data.as_ref()?;
        Some(TlsPair { cert: data.get("tls.crt")?.0.clone(), key: data.get("tls.key")?.0.clone() })
    }

    /// Writes the conditions that changed: `Accepted` from the verdict, `Programmed` from
    /// whether the merged config is now serving (`Err`: why the server refused it).
    pub async fn report(&self, verdicts: &[Verdict], programmed: Result<(), &str>) {
        if !self.writes_status() {
            return;
        }
        let api: Api<LwswsConfig> = Api::namespaced(self.client.clone(), &self.namespace);
        for v in verdicts {
            let current = self.configs.get(&v.namespace, &v.name);
            let old = current.as_ref().and_then(|r| r.status.clone()).unwrap_or_default();
            let accepted = match &v.problem {
                None => ("True", "Accepted", "the resource is valid".to_string()),
                Some(p) => ("False", "Invalid", p.clone()),
            };
            let programmed = match (&v.problem, programmed) {
                (Some(_), _) if v.previous_serves => (
                    "False",
                    "PreviousVersionServes",
                    "this version was refused; the last accepted version keeps serving".to_string(),
                ),
                (Some(_), _) => ("False", "Invalid", "not applied: the resource was refused".to_string()),
                (None, Ok(())) => ("True", "Programmed", "serving".to_string()),
                (None, Err(e)) => ("False", "NotApplied", format!("the merged config was refused: {e}")),
            };
            let conditions = vec![
                condition(&old, "Accepted", accepted, v.generation),
                condition(&old, "Programmed", programmed, v.generation),
            ];
            if conditions == old.conditions {
                continue;
            }
            let patch = serde_json::json!({ "status": LwswsConfigStatus { conditions } });
            if let Err(e) = api.patch_status(&v.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                tracing::warn!(resource = %v.name, error = %e, "cannot write the resource's status");
            }
        }
    }
}

/// A condition, keeping its transition time when its status did not change.
fn condition(
    old: &LwswsConfigStatus,
    type_: &str,
    (status, reason, message): (&str, &str, String),
    generation: Option<i64>,
) -> Condition {
    let same = old.conditions.iter().find(|c| c.type_ == type_ && c.status == status);
    let last_transition_time = match same {
        Some(c) => c.last_transition_time.clone(),
        None => chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    };
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// `conf` and `conf.d/*` when `dir` has a `conf`; otherwise an empty global section, since in
/// Kubernetes mode the resources may hold the whole config.
pub fn file_sources(dir: &Path) -> Result<Vec<Source>, crate::model::ConfigError> {
    if !dir.join("conf").is_file() {
        return Ok(vec![Source { name: "(no conf file)".into(), text: "{}".into() }]);
    }
    Ok(crate::lwsws::load::file_sources(dir)?.1)
}
