//! `model::Config` → `RouteTable`: everything the request path needs, parsed once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::access_log::AccessLog;
use super::credentials::Credentials;
use super::mime::MimeRules;
use super::route::{GlobalRt, ListenerMode, ListenerRoutes, MountRt, RouteTable, VhostProtocols, VhostRt};
use crate::model::protocols::{message_size, parse_onward};
use crate::model::{Config, ConfigError, Loc, Mount, Origin, Vhost, Warning};
use crate::protocols::{self, IdlePolicy, VhostSummary};
use crate::tls::CertSlots;
use crate::upstream::{ProxyRt, Services, SetupError};

/// `Check` builds everything but opens no file for writing (`lwsws --check` must not create
/// access logs); `Serve` opens them. Either way, compiling touches nothing but what it returns
/// and the certificate slots it is handed (a check hands it slots of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileMode {
    Check,
    Serve,
}

const STS_VALUE: &str = "max-age=15768000 ; includeSubDomains";

/// `slots`: where ACME vhosts' certificates are served from (the server's own, so that a reload
/// keeps what the managers obtained); `services`: where Services' endpoints are kept (likewise
/// the server's own, so that endpoints and their pools outlive a reload).
pub fn compile(
    cfg: &Config,
    mode: CompileMode,
    slots: &CertSlots,
    services: &Services,
    warnings: &mut Vec<Warning>,
) -> Result<RouteTable, ConfigError> {
    let g = &cfg.global;
    services.configure(Duration::from_secs(g.timeout_secs.into()), g.proxy_max_conns as usize);
    let server = match &g.server_string {
        Some(s) => Some(
            HeaderValue::from_str(s)
                .map_err(|_| ConfigError::new(Loc::default(), Some("server-string"), "not a valid header value"))?,
        ),
        None => None,
    };
    let mut listeners: Vec<ListenerRoutes> = Vec::new();
    for v in &cfg.vhosts {
        let rt = Arc::new(compile_vhost(cfg, v, server.as_ref(), mode, slots, services, warnings)?);
        let key = v.listen_key();
        match listeners.iter_mut().find(|l| l.key == key) {
            Some(l) => l.vhosts.push(rt),
            None => listeners.push(ListenerRoutes {
                key,
                tls: v.is_tls(),
                vhosts: vec![rt],
                mode: listener_mode(v, warnings),
                proxy_protocol: v.proxy_protocol,
            }),
        }
    }
    Ok(RouteTable {
        global: GlobalRt {
            server,
            reject: g.reject_service_keywords.clone(),
            timeout: Duration::from_secs(g.timeout_secs.into()),
            threads: crate::process::worker_threads(g),
            passthrough: g.proxy_passthrough,
            body_buffer: g.proxy_body_buffer as usize,
            max_head: g.max_request_head as usize,
        },
        listeners,
    })
}

fn compile_vhost(
    cfg: &Config,
    v: &Vhost,
    server: Option<&HeaderValue>,
    mode: CompileMode,
    slots: &CertSlots,
    services: &Services,
    warnings: &mut Vec<Warning>,
) -> Result<VhostRt, ConfigError> {
    let mut headers = header_list(&v.headers, &v.loc, "headers")?;
    let vhost_header_count = headers.len();
    if let Some(s) = server {
        headers.push((http::header::SERVER, s.clone()));
    }
    if v.sts {
        headers.push((http::header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(STS_VALUE)));
    }
    let mut mounts = Vec::with_capacity(v.mounts.len());
    let timeout = Duration::from_secs(cfg.global.timeout_secs.into());
    for m in &v.mounts {
        let mut rt = compile_mount(m, &headers, vhost_header_count, warnings)?;
        if let Origin::Proxy { tls, upstream, path } = &m.origin {
            if *tls && !v.enable_client_ssl {
                warnings.push(Warning {
                    loc: m.loc.clone(),
                    msg: "an https:// origin without \"enable-client-ssl\" (lwsws requires it; served anyway)".into(),
                });
            }
            let max_in_flight = cfg.global.proxy_max_conns as usize;
            let proxy = ProxyRt::new(*tls, upstream, path, m, v, timeout, max_in_flight).map_err(|e| match e {
                // A vhost's client-ssl-* file: name that key, where the vhost stands.
                SetupError::File { key, reason, .. } => {
                    ConfigError::new(v.loc.clone(), Some(key), format!("vhost \"{}\": {reason}", v.name))
                }
                e => ConfigError::new(m.loc.clone(), Some("origin"), e.to_string()),
            })?;
            rt.proxy = Some(Arc::new(proxy));
        }
        if let Origin::Service(route) = &m.origin {
            let proxy = ProxyRt::to_services(route, m, services, timeout)
                .map_err(|e| ConfigError::new(m.loc.clone(), Some("hostname"), e.to_string()))?;
            rt.proxy = Some(Arc::new(proxy));
        }
        mounts.push(rt);
    }
    let tls = if v.is_tls() { Some(crate::tls::server_config(v, &cfg.global, slots, warnings)?) } else { None };
    let access_log = match (&v.access_log, mode) {
        (Some(path), CompileMode::Serve) => Some(Arc::new(AccessLog::open(path).map_err(|e| {
            ConfigError::new(v.loc.clone(), Some("access-log"), format!("cannot open {}: {e}", path.display()))
        })?)),
        _ => None,
    };
    let ws = vhost_protocols(cfg, v, &mounts)?;
    Ok(VhostRt {
        ws,
        name: v.name.clone(),
        host_match: v.host_match,
        port: v.port,
        tls,
        client_cert_required: v.client_cert_required,
        headers,
        mounts,
        access_log,
        keepalive: Duration::from_secs(v.keepalive_timeout.into()),
        error_404: v.error_document_404.clone(),
        strict_host_check: v.strict_host_check,
    })
}

/// The raw roles the first vhost on a socket gives it. The raw protocol is `listen-accept-protocol`
/// or the protocol with the `raw` pvo; `raw-proxy` is the one built-in raw protocol.
fn listener_mode(v: &Vhost, warnings: &mut Vec<Warning>) -> ListenerMode {
    let name = v
        .listen_accept_protocol
        .clone()
        .or_else(|| v.ws_protocols.iter().find(|p| p.pvo("raw").is_some()).map(|p| p.name.clone()));
    let onward = match name.as_deref().and_then(|n| v.protocol(n)) {
        Some(p) if p.name == "raw-proxy" => p.pvo("onward").and_then(|o| parse_onward(o).ok()),
        Some(p) if v.apply_listen_accept || v.fallback_listen_accept => {
            warnings.push(Warning {
                loc: p.loc.clone(),
                msg: format!("\"{}\" is not a raw protocol; only raw-proxy is built in", p.name),
            });
            None
        }
        _ => None,
    };
    ListenerMode {
        raw: onward.clone().filter(|_| v.apply_listen_accept),
        fallback: onward.filter(|_| v.fallback_listen_accept),
        allow_non_tls: v.allow_non_tls && v.is_tls(),
        redirect_http: v.redirect_http,
        allow_http_on_https: v.allow_http_on_https,
    }
}

fn vhost_protocols(cfg: &Config, v: &Vhost, mounts: &[MountRt]) -> Result<VhostProtocols, ConfigError> {
    let summary = VhostSummary {
        name: v.name.clone(),
        port: v.port,
        tls: v.is_tls(),
        sts: v.sts,
        mounts: mounts.iter().map(|m| (m.model.mountpoint.clone(), m.model.origin.describe())).collect(),
        protocols: v.ws_protocols.iter().map(|p| p.name.clone()).collect(),
    };
    let mut ws = VhostProtocols {
        disable_no_protocol: v.disable_no_protocol_ws_upgrades,
        idle: IdlePolicy::from_pingpong_secs(cfg.global.ws_pingpong_secs),
        ..Default::default()
    };
    for p in &v.ws_protocols {
        let Some(instance) = protocols::instantiate(p, &summary) else { continue };
        if p.pvo("default").is_some() && ws.default.is_none() {
            ws.default = Some(ws.protocols.len());
        }
        let auth = match p.pvo("basic-auth") {
            Some(file) => Some(credentials(Path::new(file), &p.loc, &format!("protocol \"{}\"", p.name))?),
            None => None,
        };
        ws.auth.push(auth);
        let own = p.pvo("max-message-size").and_then(|s| message_size(s).ok());
        ws.max_message.push(own.or(v.ws_max_message_size).unwrap_or_else(|| instance.max_message_size()));
        ws.protocols.push(instance);
    }
    Ok(ws)
}

/// A `basic-auth` file, read now: one that cannot be read fails the config (D2) rather than
/// answering 401 to everyone.
fn credentials(file: &Path, loc: &Loc, whose: &str) -> Result<Arc<Credentials>, ConfigError> {
    Credentials::load(file)
        .map(Arc::new)
        .map_err(|e| ConfigError::new(loc.clone(), Some("basic-auth"), format!("{whose}: {e}")))
}

/// A `file://` mount whose directory is not there serves nothing but 404: say so, at `--check`,
/// at start and at every reload. Its canonical form, when it is there, is what the files it
/// serves must stay inside (`http::origin::file`).
fn file_dir(m: &Mount, dir: &Path, warnings: &mut Vec<Warning>) -> Option<PathBuf> {
    let problem = match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return std::fs::canonicalize(dir).ok(),
        Ok(_) => "is not a directory".to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
        Err(e) => format!("cannot be read ({e})"),
    };
    warnings.push(Warning {
        loc: m.origin_loc.clone(),
        msg: format!(
            "{MISSING_DIR} {} {problem}: mount \"{}\" answers 404 until it is there",
            dir.display(),
            m.mountpoint
        ),
    });
    None
}

/// How the warning of `file_dir` starts (the golden tests leave these out: they depend on the
/// machine the check runs on).
const MISSING_DIR: &str = "the file:// directory";

/// Mount `headers` override the vhost's headers of the same name where they stand (before
/// `server:` and STS), and the rest follow them (spec 2.4's header order).
fn compile_mount(
    m: &Mount,
    vhost_headers: &[(HeaderName, HeaderValue)],
    vhost_count: usize,
    warnings: &mut Vec<Warning>,
) -> Result<MountRt, ConfigError> {
    let own = header_list(&m.headers, &m.loc, "headers")?;
    let mut merged: Vec<(HeaderName, HeaderValue)> = vhost_headers[..vhost_count].to_vec();
    let mut extras = Vec::new();
    for (name, value) in own {
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => extras.push((name, value)),
        }
    }
    merged.extend(extras);
    merged.extend_from_slice(&vhost_headers[vhost_count..]);
    let cache_control = HeaderValue::from_str(&m.cache.header_value()).expect("cache-control is ASCII");
    let credentials = match &m.basic_auth {
        Some(file) => Some(credentials(file, &m.loc, &format!("mount \"{}\"", m.mountpoint))?),
        None => None,
    };
    let canonical_dir = match &m.origin {
        Origin::File(dir) => file_dir(m, dir, warnings),
        _ => None,
    };
    Ok(MountRt {
        model: m.clone(),
        cache_control,
        mime: MimeRules::new(&m.extra_mimetypes),
        headers: merged,
        proxy: None,
        credentials,
        canonical_dir,
        series: Default::default(),
        route: m.route.as_ref().map(|r| super::conditions::RouteRt::compile(r, &m.loc).map(Box::new)).transpose()?,
    })
}

fn header_list(
    pairs: &[(String, String)],
    loc: &Loc,
    key: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    pairs
        .iter()
        .map(|(n, v)| {
            let name = HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| ConfigError::new(loc.clone(), Some(key), format!("\"{n}\" is not a valid header name")))?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                ConfigError::new(loc.clone(), Some(key), format!("the value of \"{n}\" is not a valid header value"))
            })?;
            Ok((name, value))
        })
        .collect()
}
