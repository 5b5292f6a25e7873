//! Custom resources → lwsws config texts → the model, with one verdict per resource. Resources
//! join the config one at a time, in namespace/name order, like `conf.d` files: one that does
//! not fit (on its own, or with the files and the resources before it: a port taken, a
//! certificate that does not load) is refused and told why, naming its field, and the version of
//! it that was accepted last keeps serving in its place.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::crd::LwswsConfig;
pub use super::secrets::{TlsPair, write_pair};
use crate::lwsws::{Loaded, Source, load_sources, path_at};
use crate::model::ConfigError;

/// What became of one resource in a build.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// Why it was refused: the field path and the problem.
    pub problem: Option<String>,
    /// Refused, but an earlier accepted version of it still serves.
    pub previous_serves: bool,
}

/// The last accepted version of each resource (by namespace/name, with its uid), kept across
/// builds so that a bad edit does not take a working site down.
pub type LastGood = HashMap<String, (Option<String>, Source)>;

pub struct Build {
    pub loaded: Result<Loaded, ConfigError>,
    pub verdicts: Vec<Verdict>,
    /// What the Gateway API and Ingress front ends made (their vhosts already in `loaded`).
    pub routes: super::frontends::RoutesBuilt,
}

/// Builds the config from the files' sources and the resources. `secret` finds a TLS Secret by
/// namespace and name; its files are written under `secret_dir`.
pub fn build(
    files: &[Source],
    resources: &[Arc<LwswsConfig>],
    secret: &dyn Fn(&str, &str) -> Option<TlsPair>,
    secret_dir: &Path,
    ddir: &str,
    last_good: &mut LastGood,
) -> Build {
    let mut ordered: Vec<&Arc<LwswsConfig>> = resources.iter().collect();
    ordered.sort_by_key(|r| (r.metadata.namespace.clone().unwrap_or_default(), r.metadata.name.clone()));
    let mut all = files.to_vec();
    let mut verdicts = Vec::new();
    let mut present = Vec::new();
    for r in ordered {
        let namespace = r.metadata.namespace.clone().unwrap_or_default();
        let name = r.metadata.name.clone().unwrap_or_default();
        let key = format!("{namespace}/{name}");
        let uid = r.metadata.uid.clone();
        present.push(key.clone());
        let problem = match render(r, secret, secret_dir) {
            Err(p) => Some(p),
            Ok(source) => match fits(&all, &source, ddir) {
                Ok(()) => {
                    last_good.insert(key.clone(), (uid.clone(), source.clone()));
                    all.push(source);
                    None
                }
                Err(e) => Some(describe(&e, &source)),
            },
        };
        let mut previous_serves = false;
        if problem.is_some()
            && let Some((good_uid, previous)) = last_good.get(&key)
            && *good_uid == uid
            && fits(&all, previous, ddir).is_ok()
        {
            all.push(previous.clone());
            previous_serves = true;
        }
        verdicts.push(Verdict { namespace, name, generation: r.metadata.generation, problem, previous_serves });
    }
    // A deleted resource's last good version goes with it.
    last_good.retain(|k, _| present.contains(k));
    Build { loaded: load_sources(&all, ddir), verdicts, routes: Default::default() }
}

/// Whether `source` can join `before`: it loads, validates and compiles (certificates included)
/// together with them.
fn fits(before: &[Source], source: &Source, ddir: &str) -> Result<(), ConfigError> {
    let mut trial = before.to_vec();
    trial.push(source.clone());
    let loaded = load_sources(&trial, ddir)?;
    let mut warnings = loaded.warnings;
    let slots = crate::tls::CertSlots::default();
    let services = crate::upstream::Services::default();
    crate::table::compile(&loaded.config, crate::table::CompileMode::Check, &slots, &services, &mut warnings)?;
    Ok(())
}

/// The name errors give for a resource's source.
fn source_name(namespace: &str, name: &str) -> String {
    format!("lwswsconfig {namespace}/{name}")
}

/// A resource as lwsws JSON: `tls-secret` becomes `host-ssl-cert`/`host-ssl-key` files.
fn render(
    r: &LwswsConfig,
    secret: &dyn Fn(&str, &str) -> Option<TlsPair>,
    secret_dir: &Path,
) -> Result<Source, String> {
    let namespace = r.metadata.namespace.clone().unwrap_or_default();
    let name = r.metadata.name.clone().unwrap_or_default();
    let mut doc = Map::new();
    if let Some(g) = &r.spec.global {
        doc.insert("global".into(), g.clone());
    }
    let mut vhosts = Vec::new();
    for (i, v) in r.spec.vhosts.iter().enumerate() {
        let mut v = v.clone();
        if let Some(obj) = v.as_object_mut()
            && let Some(s) = obj.remove("tls-secret")
        {
            let field = format!("spec.vhosts[{i}].tls-secret");
            let secret_name = s.as_str().ok_or_else(|| format!("{field}: must be a Secret's name"))?;
            let pair = secret(&namespace, secret_name).ok_or_else(|| {
                format!(
                    "{field}: no Secret {namespace}/{secret_name} of type kubernetes.io/tls with tls.crt and tls.key"
                )
            })?;
            let (cert, key) = write_pair(secret_dir, &namespace, secret_name, &pair)
                .map_err(|e| format!("{field}: cannot write the Secret's files: {e}"))?;
            obj.insert("host-ssl-cert".into(), Value::String(cert.display().to_string()));
            obj.insert("host-ssl-key".into(), Value::String(key.display().to_string()));
        }
        vhosts.push(v);
    }
    doc.insert("vhosts".into(), Value::Array(vhosts));
    let text = serde_json::to_string_pretty(&Value::Object(doc)).expect("JSON values serialise");
    Ok(Source { name: source_name(&namespace, &name).into(), text })
}

/// A config error in a resource, as `spec.<field path>: <problem>`.
fn describe(e: &ConfigError, source: &Source) -> String {
    let what = match &e.key {
        Some(k) => format!("\"{k}\": {}", e.msg),
        None => e.msg.clone(),
    };
    if *e.loc.file != *source.name {
        // The resource clashes with the files (a port already taken, say).
        return format!("{what} (with {})", e.loc);
    }
    match path_at(&source.text, e.loc.line, e.loc.col) {
        Some(p) if !p.is_empty() => format!("spec.{p}: {what}"),
        _ => format!("spec: {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::crd::LwswsConfigSpec;

    fn resource(ns: &str, name: &str, vhosts: Value) -> Arc<LwswsConfig> {
        let mut r =
            LwswsConfig::new(name, LwswsConfigSpec { global: None, vhosts: serde_json::from_value(vhosts).unwrap() });
        r.metadata.namespace = Some(ns.into());
        r.metadata.generation = Some(3);
        Arc::new(r)
    }

    fn files() -> Vec<Source> {
        vec![Source { name: "conf".into(), text: "{}".into() }]
    }

    #[test]
    fn resources_merge_in_namespace_then_name_order() {
        let a = resource("b-ns", "a", serde_json::json!([{ "name": "two", "port": 8081, "mounts": [] }]));
        let b = resource("a-ns", "z", serde_json::json!([{ "name": "one", "port": "8080" }]));
        let dir = tempfile::tempdir().unwrap();
        let out = build(&files(), &[a, b], &|_, _| None, dir.path(), "/usr/share", &mut LastGood::new());
        let names: Vec<String> = out.loaded.unwrap().config.vhosts.iter().map(|v| v.name.clone()).collect();
        assert_eq!(names, vec!["one", "two"]);
        assert!(out.verdicts.iter().all(|v| v.problem.is_none()));
        assert_eq!(out.verdicts[0].name, "z");
    }

    #[test]
    fn a_bad_resource_is_refused_with_its_field_and_the_rest_still_build() {
        let good = resource("ns", "good", serde_json::json!([{ "name": "ok", "port": "8080" }]));
        let bad = resource(
            "ns",
            "bad",
            serde_json::json!([{ "name": "x", "port": "8081", "mounts": [{ "mountpoint": "/", "origin": "nope://" }] }]),
        );
        let dir = tempfile::tempdir().unwrap();
        let out = build(&files(), &[good, bad], &|_, _| None, dir.path(), "/usr/share", &mut LastGood::new());
        assert_eq!(out.loaded.unwrap().config.vhosts.len(), 1);
        let bad = out.verdicts.iter().find(|v| v.name == "bad").unwrap();
        let p = bad.problem.as_deref().unwrap();
        assert!(p.starts_with("spec.vhosts[0].mounts[0].origin: \"origin\": unknown origin scheme"), "{p}");
        assert_eq!(bad.generation, Some(3));
    }

    #[test]
    fn tls_secrets_become_files_and_a_missing_one_is_named() {
        let r = resource("ns", "tls", serde_json::json!([{ "name": "s", "port": "8443", "tls-secret": "site" }]));
        let dir = tempfile::tempdir().unwrap();
        let out =
            build(&files(), std::slice::from_ref(&r), &|_, _| None, dir.path(), "/usr/share", &mut LastGood::new());
        let p = out.verdicts[0].problem.clone().unwrap();
        assert!(p.starts_with("spec.vhosts[0].tls-secret: no Secret ns/site"), "{p}");

        let pki = rcgen::generate_simple_self_signed(vec!["s".to_string()]).unwrap();
        let pair = TlsPair { cert: pki.cert.pem().into_bytes(), key: pki.signing_key.serialize_pem().into_bytes() };
        let lookup = |ns: &str, name: &str| (ns == "ns" && name == "site").then(|| pair.clone());
        let out = build(&files(), &[r], &lookup, dir.path(), "/usr/share", &mut LastGood::new());
        let loaded = out.loaded.unwrap();
        let v = &loaded.config.vhosts[0];
        let cert = v.host_ssl_cert.clone().unwrap();
        assert!(cert.starts_with(dir.path().join("ns/site")) && cert.ends_with("tls.crt"), "{}", cert.display());
        assert_eq!(std::fs::read(cert.with_file_name("tls.key")).unwrap(), pair.key);
    }

    #[test]
    fn a_bad_edit_keeps_the_last_accepted_version_and_conflicts_are_refused_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut last_good = LastGood::new();
        let v1 = resource("ns", "site", serde_json::json!([{ "name": "s", "port": "8080" }]));
        let out = build(&files(), &[v1], &|_, _| None, dir.path(), "/usr/share", &mut last_good);
        assert!(out.loaded.is_ok() && out.verdicts[0].problem.is_none());

        // Edited into a bad state: refused, and version 1 keeps serving.
        let v2 = resource("ns", "site", serde_json::json!([{ "name": "s", "port": "http" }]));
        let out = build(&files(), &[v2], &|_, _| None, dir.path(), "/usr/share", &mut last_good);
        let loaded = out.loaded.unwrap();
        assert_eq!(loaded.config.vhosts.len(), 1);
        assert_eq!(loaded.config.vhosts[0].port, 8080);
        assert!(out.verdicts[0].problem.as_deref().unwrap().starts_with("spec.vhosts[0].port"), "{:?}", out.verdicts);
        assert!(out.verdicts[0].previous_serves);

        // A second resource that clashes with the first (the same port, with TLS) is refused
        // alone; the first is untouched.
        let pki = rcgen::generate_simple_self_signed(vec!["t".to_string()]).unwrap();
        let pair = TlsPair { cert: pki.cert.pem().into_bytes(), key: pki.signing_key.serialize_pem().into_bytes() };
        let lookup = |_: &str, _: &str| Some(pair.clone());
        let a = resource("ns", "a", serde_json::json!([{ "name": "a", "port": "9090" }]));
        let b = resource("ns", "b", serde_json::json!([{ "name": "b", "port": "9090", "tls-secret": "x" }]));
        let out = build(&files(), &[a, b], &lookup, dir.path(), "/usr/share", &mut last_good);
        let names: Vec<String> = out.loaded.unwrap().config.vhosts.iter().map(|v| v.name.clone()).collect();
        assert_eq!(names, vec!["a"]);
        assert!(out.verdicts[0].problem.is_none());
        assert!(out.verdicts[1].problem.is_some() && !out.verdicts[1].previous_serves, "{:?}", out.verdicts);
        assert!(!last_good.contains_key("ns/site"), "a deleted resource is forgotten");

        // A Secret whose PEM does not load is refused at this resource, not at reload.
        let bad_pem = |_: &str, _: &str| Some(TlsPair { cert: b"junk".to_vec(), key: b"junk".to_vec() });
        let c = resource("ns", "c", serde_json::json!([{ "name": "c", "port": "9443", "tls-secret": "y" }]));
        let out = build(&files(), &[c], &bad_pem, dir.path(), "/usr/share", &mut last_good);
        assert!(out.loaded.is_ok());
        let p = out.verdicts[0].problem.as_deref().unwrap();
        assert!(p.contains("certificate") || p.contains("PEM"), "{p}");
    }
}
