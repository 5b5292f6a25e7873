//! Placeholder until the Ingress front end lands.
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use super::routes::HostRoutes;
use super::source::TlsPair;
use crate::model::ServiceRef;

pub struct IngressInput<'a> {
    pub ingresses: &'a [Arc<Ingress>],
    pub classes: &'a [Arc<IngressClass>],
    pub class_name: &'a str,
    pub controller_name: &'a str,
    pub service: &'a dyn Fn(&str, &str) -> Option<Arc<Service>>,
    pub secret: &'a dyn Fn(&str, &str) -> Option<TlsPair>,
    pub secret_dir: &'a Path,
}
pub struct IngressVerdict {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub problems: Vec<String>,
    pub served: bool,
}
pub struct IngressBuild {
    pub routes: Vec<HostRoutes>,
    pub verdicts: Vec<IngressVerdict>,
    pub services: Vec<ServiceRef>,
}
pub fn translate(_input: &IngressInput) -> IngressBuild {
    IngressBuild { routes: Vec::new(), verdicts: Vec::new(), services: Vec::new() }
}
