//! The route front ends (Gateway API, Ingress) as the controller runs them: what they watch,
//! how their output joins the config built from the files and `LwswsConfig`s, and the status
//! they write back. Services' endpoints are watched beside them (`endpoints`) and reach the
//! request path without a reload.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use tokio::sync::mpsc;

use super::endpoints::{self, EndpointsWatch};
use super::gateway::types::{Gateway, GatewayClass, HTTPRoute, NamespaceLabels, ReferenceGrant};
use super::gateway::{self, GatewayInput, SecretLookup, StatusUpdate};
use super::routes::{self, HostRoutes, PortMap};
use super::secrets::TlsPair;
use super::watched::Watched;
use crate::lwsws::Loaded;
use crate::model::{ConfigError, Loc, Vhost};
use crate::upstream::Services;

/// What the route front ends are asked to do (the command line's flags).
#[derive(Debug, Clone, Default)]
pub struct RouteOptions {
    /// `--gateway-api` with `--gateway-controller-name`.
    pub gateway_controller: Option<String>,
    /// `--ingress` with `--ingress-class` and `--ingress-controller-name`.
    pub ingress: Option<IngressOptions>,
    /// `--watch-namespaces`: `None` watches every namespace.
    pub namespaces: Option<Vec<String>>,
    pub ports: PortMap,
    /// `--publish-address`.
    pub addresses: Vec<String>,
    /// `--publish-service` as (namespace, name).
    pub publish_service: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct IngressOptions {
    pub class_name: String,
    pub controller_name: String,
}

impl RouteOptions {
    pub fn any(&self) -> bool {
        self.gateway_controller.is_some() || self.ingress.is_some()
    }
}

/// The watches of the route front ends.
pub struct Frontends {
    options: RouteOptions,
    classes: Option<Watched<GatewayClass>>,
    gateways: Option<Watched<Gateway>>,
    routes: Option<Watched<HTTPRoute>>,
    grants: Option<Watched<ReferenceGrant>>,
    namespaces: Option<Watched<Namespace>>,
    ingresses: Option<Watched<k8s_openapi::api::networking::v1::Ingress>>,
    ingress_classes: Option<Watched<k8s_openapi::api::networking::v1::IngressClass>>,
    secrets: Watched<Secret>,
    endpoints: EndpointsWatch,
    services: Arc<Services>,
    secret_dir: PathBuf,
}

/// What the front ends made of the objects seen now.
#[derive(Default)]
pub struct RoutesBuilt {
    pub vhosts: Vec<Vhost>,
    pub statuses: Vec<StatusUpdate>,
    pub ingress: Vec<super::ingress::IngressVerdict>,
    /// Why the routes could not join the config (they are not served).
    pub refused: Option<String>,
}

impl Frontends {
    pub fn start(
        client: &kube::Client,
        options: RouteOptions,
        services: Arc<Services>,
        secret_dir: PathBuf,
        tx: &mpsc::UnboundedSender<()>,
    ) -> Frontends {
        let ns = options.namespaces.as_deref();
        let all = watcher::Config::default;
        let gateway = options.gateway_controller.is_some();
        let ingress = options.ingress.is_some();
        Frontends {
            classes: gateway.then(|| Watched::start("gatewayclasses", client, all(), tx)),
            gateways: gateway.then(|| Watched::start_in("gateways", client, ns, all(), tx)),
            routes: gateway.then(|| Watched::start_in("httproutes", client, ns, all(), tx)),
            grants: gateway.then(|| Watched::start_in("referencegrants", client, ns, all(), tx)),
            namespaces: gateway.then(|| Watched::start("namespaces", client, all(), tx)),
            ingresses: ingress.then(|| Watched::start_in("ingresses", client, ns, all(), tx)),
            ingress_classes: ingress.then(|| Watched::start("ingressclasses", client, all(), tx)),
            // Only TLS Secrets matter (not Helm's release records or tokens).
            secrets: Watched::start_in("secrets", client, ns, all().fields("type=kubernetes.io/tls"), tx),
            endpoints: endpoints::spawn(client.clone(), options.namespaces.clone(), services.clone(), Some(tx.clone())),
            services,
            secret_dir,
            options,
        }
    }

    /// Waits for the first list of everything watched (or gives up after `limit`).
    pub async fn synced(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        let mut ok = self.secrets.synced(left()).await;
        macro_rules! wait {
            ($($w:expr),*) => {$(
                if let Some(w) = &$w {
                    ok &= w.synced(left()).await;
                }
            )*};
        }
        wait!(
            self.classes,
            self.gateways,
            self.routes,
            self.grants,
            self.namespaces,
            self.ingresses,
            self.ingress_classes
        );
        ok & self.endpoints.synced(left()).await
    }

    /// The front ends' vhosts and statuses for the objects seen now, beside a config whose
    /// vhosts already serve `ports_in_use`.
    pub fn build(&self, bound_in_use: &BTreeSet<u16>) -> RoutesBuilt {
        let mut built = RoutesBuilt::default();
        // In the ports Gateways and Ingresses name: those bound (after the port map) on a port
        // the files already serve.
        let ports_in_use = &self.options.ports.named_for(bound_in_use);
        let mut host_routes: Vec<HostRoutes> = Vec::new();
        let mut used = BTreeSet::new();
        let addresses = self.addresses();
        if let Some(controller) = &self.options.gateway_controller {
            let (classes, gateways, routes, grants) =
                (state(&self.classes), state(&self.gateways), state(&self.routes), state(&self.grants));
            let namespaces: NamespaceLabels = self
                .namespaces
                .as_ref()
                .map(Watched::state)
                .unwrap_or_default()
                .iter()
                .map(|n| (n.metadata.name.clone().unwrap_or_default(), n.metadata.labels.clone().unwrap_or_default()))
                .collect();
            let secret = |ns: &str, name: &str| self.secret(ns, name);
            let service_exists = |ns: &str, name: &str| self.endpoints.has_service(ns, name);
            let input = GatewayInput {
                classes: &classes,
                gateways: &gateways,
                routes: &routes,
                grants: &grants,
                namespaces: &namespaces,
                controller_name: controller,
                secret: &secret,
                service_exists: &service_exists,
                secret_dir: &self.secret_dir,
                ports_in_use,
                addresses: &addresses,
            };
            let out = gateway::translate(&input);
            host_routes.extend(out.routes);
            built.statuses = out.statuses;
            used.extend(out.services);
        }
        if let Some(opts) = &self.options.ingress {
            let ingresses = self.ingresses.as_ref().map(Watched::state).unwrap_or_default();
            let classes = self.ingress_classes.as_ref().map(Watched::state).unwrap_or_default();
            let service = |ns: &str, name: &str| self.endpoints.service(ns, name);
            let secret = |ns: &str, name: &str| match self.secret(ns, name) {
                SecretLookup::Pair(p) => Some(p),
                _ => None,
            };
            let input = super::ingress::IngressInput {
                ingresses: &ingresses,
                classes: &classes,
                class_name: &opts.class_name,
                controller_name: &opts.controller_name,
                service: &service,
                secret: &secret,
                secret_dir: &self.secret_dir,
            };
            let out = super::ingress::translate(&input);
            // Ingress ports that the files serve are left to the files.
            host_routes.extend(out.routes.into_iter().filter(|r| !ports_in_use.contains(&r.port)));
            built.ingress = out.verdicts;
            used.extend(out.services);
        }
        built.vhosts = routes::assemble(host_routes, &self.options.ports, "kubernetes routes");
        // The endpoints of Services the new config names are resolved before it is applied;
        // Services no route names any more are no longer resolved (a table still holding one
        // keeps the endpoints it last had until it is replaced).
        for key in &used {
            self.services.entry(key);
        }
        self.services.retain(|k| used.contains(k));
        self.endpoints.refresh_now();
        for v in &built.ingress {
            for p in &v.problems {
                tracing::warn!(ingress = %format!("{}/{}", v.namespace, v.name), problem = %p, "Ingress not served as written");
            }
        }
        built
    }

    /// The addresses to publish: `--publish-address`, else the published Service's load
    /// balancer addresses (or its cluster IP).
    pub fn addresses(&self) -> Vec<String> {
        if !self.options.addresses.is_empty() {
            return self.options.addresses.clone();
        }
        let Some((ns, name)) = &self.options.publish_service else { return Vec::new() };
        let Some(svc) = self.endpoints.service(ns, name) else { return Vec::new() };
        let lb: Vec<String> = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|list| list.iter().filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone())).collect())
            .unwrap_or_default();
        if !lb.is_empty() {
            return lb;
        }
        svc.spec.as_ref().and_then(|s| s.cluster_ip.clone()).filter(|ip| ip != "None").into_iter().collect()
    }

    fn secret(&self, namespace: &str, name: &str) -> SecretLookup {
        let Some(s) = self.secrets.get(namespace, name) else { return SecretLookup::Missing };
        let data = s.data.as_ref();
        match (data.and_then(|d| d.get("tls.crt")), data.and_then(|d| d.get("tls.key"))) {
            (Some(c), Some(k)) => SecretLookup::Pair(TlsPair { cert: c.0.clone(), key: k.0.clone() }),
            _ => SecretLookup::Malformed,
        }
    }

    /// Writes the statuses that changed (this controller's part of each). `applied`: whether the
    /// server took the config (`Err`: why not); a Gateway whose routes are not served says so.
    pub async fn report(&self, client: &kube::Client, built: &RoutesBuilt, applied: Result<(), &str>) {
        let not_served = built.refused.as_deref().or(applied.err());
        for s in &built.statuses {
            let mut s = s.clone();
            if let (Some(why), StatusUpdate::Gateway { status, .. }) = (not_served, &mut s) {
                not_programmed(status, why);
            }
            if let Err(e) = self.write_status(client, &s).await {
                tracing::warn!(error = %e, "cannot write a Gateway API object's status");
            }
        }
        if self.options.ingress.is_some() {
            let addresses = self.addresses();
            for v in built.ingress.iter().filter(|v| v.served && not_served.is_none()) {
                self.write_ingress_status(client, v, &addresses).await;
            }
        }
    }

    async fn write_status(&self, client: &kube::Client, update: &StatusUpdate) -> Result<(), kube::Error> {
        let params = PatchParams::default();
        match update {
            StatusUpdate::Class { name, status } => {
                let old = self.classes.as_ref().and_then(|w| w.get("", name)).and_then(|c| c.status.clone());
                let mut status = status.clone();
                if let Some(old) = &old {
                    keep_times(&mut status.conditions, &old.conditions);
                }
                if old.as_ref() == Some(&status) {
                    return Ok(());
                }
                let api: Api<GatewayClass> = Api::all(client.clone());
                api.patch_status(name, &params, &Patch::Merge(serde_json::json!({ "status": status }))).await?;
            }
            StatusUpdate::Gateway { namespace, name, status } => {
                let old = self.gateways.as_ref().and_then(|w| w.get(namespace, name)).and_then(|g| g.status.clone());
                let mut status = status.clone();
                if let Some(old) = &old {
                    keep_times(&mut status.conditions, &old.conditions);
                    for l in &mut status.listeners {
                        if let Some(o) = old.listeners.iter().find(|o| o.name == l.name) {
                            keep_times(&mut l.conditions, &o.conditions);
                        }
                    }
                }
                if old.as_ref() == Some(&status) {
                    return Ok(());
                }
                let api: Api<Gateway> = Api::namespaced(client.clone(), namespace);
                api.patch_status(name, &params, &Patch::Merge(serde_json::json!({ "status": status }))).await?;
            }
            StatusUpdate::Route { namespace, name, parents } => {
                let controller = self.options.gateway_controller.as_deref().unwrap_or_default();
                let old = self.routes.as_ref().and_then(|w| w.get(namespace, name)).and_then(|r| r.status.clone());
                let old_parents = old.map(|s| s.parents).unwrap_or_default();
                // Other controllers' entries stay as they are; ours are replaced.
                let mut merged: Vec<_> =
                    old_parents.iter().filter(|p| p.controller_name != controller).cloned().collect();
                for p in parents {
                    let mut p = p.clone();
                    if let Some(o) =
                        old_parents.iter().find(|o| o.controller_name == controller && o.parent_ref == p.parent_ref)
                    {
                        keep_times(&mut p.conditions, &o.conditions);
                    }
                    merged.push(p);
                }
                if merged == old_parents {
                    return Ok(());
                }
                let api: Api<HTTPRoute> = Api::namespaced(client.clone(), namespace);
                let patch = serde_json::json!({ "status": { "parents": merged } });
                api.patch_status(name, &params, &Patch::Merge(patch)).await?;
            }
        }
        Ok(())
    }

    async fn write_ingress_status(
        &self,
        client: &kube::Client,
        v: &super::ingress::IngressVerdict,
        addresses: &[String],
    ) {
        let Some(current) = self.ingresses.as_ref().and_then(|w| w.get(&v.namespace, &v.name)) else { return };
        let wanted: Vec<serde_json::Value> = addresses
            .iter()
            .map(|a| match a.parse::<std::net::IpAddr>() {
                Ok(_) => serde_json::json!({ "ip": a }),
                Err(_) => serde_json::json!({ "hostname": a }),
            })
            .collect();
        let now = current
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .map(|lb| serde_json::to_value(lb.ingress.clone().unwrap_or_default()).unwrap_or_default())
            .unwrap_or(serde_json::Value::Array(Vec::new()));
        if now == serde_json::Value::Array(wanted.clone()) {
            return;
        }
        let api: Api<k8s_openapi::api::networking::v1::Ingress> = Api::namespaced(client.clone(), &v.namespace);
        let patch = serde_json::json!({ "status": { "loadBalancer": { "ingress": wanted } } });
        if let Err(e) = api.patch_status(&v.name, &PatchParams::default(), &Patch::Merge(patch)).await {
            tracing::warn!(ingress = %format!("{}/{}", v.namespace, v.name), error = %e, "cannot write the Ingress status");
        }
    }
}

/// A Gateway whose routes the server did not take: Programmed is false on it and on every
/// listener that would have been.
fn not_programmed(status: &mut super::gateway::types::GatewayStatus, why: &str) {
    let message = format!("not applied: {why}");
    let lists = std::iter::once(&mut status.conditions).chain(status.listeners.iter_mut().map(|l| &mut l.conditions));
    for conditions in lists {
        for c in conditions.iter_mut().filter(|c| c.type_ == "Programmed" && c.status == "True") {
            c.status = "False".into();
            c.reason = "Invalid".into();
            c.message = message.clone();
        }
    }
}

/// Every object a watch that may be off holds.
fn state<K>(w: &Option<Watched<K>>) -> Vec<Arc<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    w.as_ref().map(Watched::state).unwrap_or_default()
}

/// A condition whose status, reason, message and generation did not change keeps the time it
/// last changed.
fn keep_times(new: &mut [Condition], old: &[Condition]) {
    for c in new {
        if let Some(o) = old.iter().find(|o| {
            o.type_ == c.type_
                && o.status == c.status
                && o.reason == c.reason
                && o.message == c.message
                && o.observed_generation == c.observed_generation
        }) {
            c.last_transition_time = o.last_transition_time.clone();
        }
    }
}

/// Adds the front ends' vhosts to a config built from the files and `LwswsConfig`s, checking
/// that the whole still validates and compiles. When it does not, the routes are left out
/// and the error is returned for the statuses (the files and resources keep serving).
pub fn join(loaded: &mut Loaded, vhosts: Vec<Vhost>) -> Result<(), ConfigError> {
    if vhosts.is_empty() {
        return Ok(());
    }
    let mut trial = loaded.config.clone();
    trial.vhosts.extend(vhosts);
    let mut warnings = Vec::new();
    crate::model::validate(&trial, &mut warnings)?;
    let (slots, services) = (crate::tls::CertSlots::default(), Services::default());
    crate::table::compile(&trial, crate::table::CompileMode::Check, &slots, &services, &mut warnings)?;
    loaded.config = trial;
    loaded.warnings.extend(warnings);
    Ok(())
}

/// The ports the config's vhosts serve.
pub fn ports_of(loaded: &Loaded) -> BTreeSet<u16> {
    loaded.config.vhosts.iter().filter(|v| !v.unix_socket).map(|v| v.port).collect()
}

/// An error to show where the route front ends' output could not join.
pub fn join_error(e: &ConfigError) -> ConfigError {
    ConfigError::new(Loc { file: "kubernetes routes".into(), line: 0, col: 0 }, e.key.as_deref(), e.msg.clone())
}
