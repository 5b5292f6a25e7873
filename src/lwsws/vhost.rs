//! One `vhosts[]` object → `model::Vhost` (spec 1.2). Every vhost starts from defaults, so no
//! setting leaks into the next one (D4). Several spellings of keep-alive are accepted (D6).

use std::path::PathBuf;

use super::lexer::{Key, Kind, Node};
use super::mount;
use super::value::Ctx;
use crate::model::{ConfigError, Protocol, ProxyProtocol, Vhost};

pub fn adapt(ctx: &mut Ctx, node: &Node) -> Result<Vhost, ConfigError> {
    let Kind::Obj(members) = &node.kind else {
        return Err(ConfigError::new(ctx.loc(node.pos), Some("vhosts"), "each vhost must be an object"));
    };
    let mut v = empty(ctx, node);
    let mut port_seen = false;
    for (k, val) in members {
        if k.name == "port" {
            port_seen = true;
        }
        apply_key(ctx, &mut v, k, val)?;
    }
    if !port_seen && !v.unix_socket {
        return Err(ConfigError::new(v.loc.clone(), Some("port"), format!("vhost \"{}\": port required", v.name)));
    }
    if v.unix_socket && v.interface.as_deref().unwrap_or("").is_empty() {
        return Err(ConfigError::new(
            v.loc.clone(),
            Some("interface"),
            format!("vhost \"{}\": unix-socket needs the socket path in \"interface\"", v.name),
        ));
    }
    let from_object = v.acme.is_some();
    if v.acme.is_none()
        && let Some(p) = v.ws_protocols.iter().find(|p| p.name == "lws-acme-client")
    {
        v.acme = super::acme::from_pvos(p);
    }
    if let Some(a) = &mut v.acme {
        let dir = crate::model::acme::default_dir(&v.name);
        for (path, file) in
            [(&mut a.cert_path, "cert.pem"), (&mut a.key_path, "key.pem"), (&mut a.account_path, "account.json")]
        {
            if path.as_os_str().is_empty() {
                *path = dir.join(file);
            }
        }
        // The short form's domain is the vhost's name (first, the common name); `domains` adds
        // names to it.
        if from_object {
            a.domains.retain(|d| *d != v.name);
            a.domains.insert(0, v.name.clone());
        }
        // The managed certificate is the vhost's: TLS is on, and serving starts before it exists.
        v.host_ssl_cert.get_or_insert_with(|| a.cert_path.clone());
        v.host_ssl_key.get_or_insert_with(|| a.key_path.clone());
        v.ignore_missing_cert = true;
    }
    if v.host_ssl_cert.is_some() != v.host_ssl_key.is_some() {
        return Err(ConfigError::new(
            v.loc.clone(),
            Some(if v.host_ssl_cert.is_some() { "host-ssl-key" } else { "host-ssl-cert" }),
            format!("vhost \"{}\": host-ssl-cert and host-ssl-key go together", v.name),
        ));
    }
    if v.client_cert_required && v.host_ssl_ca.is_none() {
        return Err(ConfigError::new(
            v.loc.clone(),
            Some("client-cert-required"),
            format!("vhost \"{}\": client-cert-required needs host-ssl-ca to verify against", v.name),
        ));
    }
    Ok(v)
}

fn path(ctx: &Ctx, k: &Key, val: &Node) -> Result<Option<PathBuf>, ConfigError> {
    let s = ctx.text_ddir(k, val)?;
    Ok((!s.is_empty()).then(|| PathBuf::from(s)))
}

/// The short form: `"acme": { "email": ..., "directory-url": ... }`; the vhost's name is the
/// domain unless `domains` (or `subject-alt-name`) says more. Paths left empty here get their
/// defaults once the vhost's name is known.
fn acme(ctx: &mut Ctx, v: &Vhost, k: &Key, val: &Node) -> Result<crate::model::acme::Acme, ConfigError> {
    use crate::model::acme::{Acme, Challenge, split_names};
    let mut a = Acme {
        domains: Vec::new(),
        email: String::new(),
        directory: String::new(),
        challenge: Challenge::Http01,
        cert_path: PathBuf::new(),
        key_path: PathBuf::new(),
        account_path: PathBuf::new(),
        ca_file: v.acme.as_ref().and_then(|a| a.ca_file.clone()),
    };
    for (ak, av) in ctx.object(k, val)? {
        match ak.name.as_str() {
            "email" => a.email = ctx.text(ak, av)?,
            "directory-url" | "directory" => a.directory = ctx.text(ak, av)?,
            "challenge" | "challenge-type" => {
                let text = ctx.text(ak, av)?;
                a.challenge = Challenge::parse(&text)
                    .ok_or_else(|| ctx.err(av.pos, &ak.name, format!("{text:?} is not http-01 or tls-alpn-01")))?;
            }
            "domains" | "subject-alt-name" => {
                for n in split_names(&ctx.text(ak, av)?) {
                    if !a.domains.contains(&n) {
                        a.domains.push(n);
                    }
                }
            }
            "cert-path" => a.cert_path = path(ctx, ak, av)?.unwrap_or_default(),
            "key-path" => a.key_path = path(ctx, ak, av)?.unwrap_or_default(),
            "auth-path" | "account-path" => a.account_path = path(ctx, ak, av)?.unwrap_or_default(),
            "ca-file" => a.ca_file = path(ctx, ak, av)?,
            other => ctx.warn(ak.pos, format!("unknown key \"{other}\" in \"acme\"")),
        }
    }
    for (field, value) in [("email", &a.email), ("directory-url", &a.directory)] {
        if value.trim().is_empty() {
            return Err(ctx.err(val.pos, "acme", format!("vhost \"{}\": \"acme\" needs \"{field}\"", v.name)));
        }
    }
    if !a.directory.starts_with("https://") {
        return Err(ctx.err(val.pos, "acme", format!("the directory-url {:?} must be https://", a.directory)));
    }
    Ok(a)
}

/// A websocket message limit in bytes: a whole number, at least 1.
fn message_size(ctx: &Ctx, k: &Key, val: &Node) -> Result<usize, ConfigError> {
    match ctx.strict_uint::<usize>(k, val)? {
        0 => Err(ctx.err(val.pos, &k.name, "a websocket message limit must be at least 1 byte")),
        n => Ok(n),
    }
}

fn opt(ctx: &Ctx, k: &Key, val: &Node) -> Result<Option<String>, ConfigError> {
    Ok(Some(ctx.text_ddir(k, val)?))
}

fn apply_key(ctx: &mut Ctx, v: &mut Vhost, k: &Key, val: &Node) -> Result<(), ConfigError> {
    match k.name.as_str() {
        "name" => v.name = ctx.text_ddir(k, val)?,
        // Strict, unlike other numbers: a port that is not a number is never what was meant.
        "port" => v.port = ctx.strict_uint(k, val)?,
        "interface" => v.interface = Some(ctx.text_ddir(k, val)?).filter(|s| !s.is_empty()),
        "unix-socket" => v.unix_socket = ctx.flag(k, val)?,
        "unix-socket-perms" => v.unix_socket_perms = opt(ctx, k, val)?,
        "sts" => v.sts = ctx.flag(k, val)?,
        "host-ssl-cert" => v.host_ssl_cert = path(ctx, k, val)?,
        "host-ssl-key" => v.host_ssl_key = path(ctx, k, val)?,
        "host-ssl-ca" => v.host_ssl_ca = path(ctx, k, val)?,
        "access-log" => v.access_log = path(ctx, k, val)?,
        "keepalive_timeout" => v.keepalive_timeout = ctx.uint(k, val)?,
        "keepalive-timeout" | "keeplive-timeout" => {
            v.keepalive_timeout = ctx.uint(k, val)?;
            ctx.warn(k.pos, format!("\"{}\" read as \"keepalive_timeout\", the key lwsws parses", k.name));
        }
        "enable-client-ssl" => v.enable_client_ssl = ctx.flag(k, val)?,
        "client-ssl-key" => v.client_ssl_key = path(ctx, k, val)?,
        "client-ssl-cert" => v.client_ssl_cert = path(ctx, k, val)?,
        "client-ssl-ca" => v.client_ssl_ca = path(ctx, k, val)?,
        "client-ssl-ciphers" => v.client_ssl_ciphers = opt(ctx, k, val)?,
        "client-tls13-ciphers" => v.client_tls13_ciphers = opt(ctx, k, val)?,
        "client-ecdh-curve" => v.client_ecdh_curve = opt(ctx, k, val)?,
        "ciphers" => v.ciphers = opt(ctx, k, val)?,
        "tls13-ciphers" => v.tls13_ciphers = opt(ctx, k, val)?,
        "ecdh-curve" => v.ecdh_curve = opt(ctx, k, val)?,
        "ssl-option-set" => v.ssl_option_set |= ctx.uint::<u64>(k, val)?,
        "ssl-option-clear" => v.ssl_option_clear |= ctx.uint::<u64>(k, val)?,
        "ssl-client-option-set" => v.ssl_client_option_set |= ctx.uint::<u64>(k, val)?,
        "ssl-client-option-clear" => v.ssl_client_option_clear |= ctx.uint::<u64>(k, val)?,
        "noipv6" => v.noipv6 = ctx.flag(k, val)?,
        "ipv6only" => v.ipv6only = Some(ctx.flag(k, val)?),
        "headers" => v.headers = ctx.pairs(k, val)?,
        "error-document-404" => v.error_document_404 = opt(ctx, k, val)?,
        // set-only in lwsws
        "client-cert-required" => v.client_cert_required |= ctx.flag(k, val)?,
        "ignore-missing-cert" => v.ignore_missing_cert = ctx.flag(k, val)?,
        "acme" => v.acme = Some(acme(ctx, v, k, val)?),
        "strict-host-check" => v.strict_host_check = ctx.flag(k, val)?,
        "ws-max-message-size" => v.ws_max_message_size = Some(message_size(ctx, k, val)?),
        "alpn" => v.alpn = opt(ctx, k, val)?,
        "fo-listen-queue" => v.fo_listen_queue = ctx.uint(k, val)?,
        "h2-half-closed-long-poll" => v.h2_half_closed_long_poll = ctx.flag(k, val)?,
        "listen-accept-role" => v.listen_accept_role = opt(ctx, k, val)?,
        "listen-accept-protocol" => v.listen_accept_protocol = opt(ctx, k, val)?,
        "apply-listen-accept" | "onlyraw" => v.apply_listen_accept = ctx.flag(k, val)?,
        "fallback-listen-accept" => v.fallback_listen_accept = ctx.flag(k, val)?,
        "allow-non-tls" => v.allow_non_tls = ctx.flag(k, val)?,
        "redirect-http" => v.redirect_http = ctx.flag(k, val)?,
        "allow-http-on-https" => v.allow_http_on_https = ctx.flag(k, val)?,
        // D5: the same boolean coercion as every other flag.
        "disable-no-protocol-ws-upgrades" => v.disable_no_protocol_ws_upgrades = ctx.flag(k, val)?,
        "proxy-protocol" => {
            let text = ctx.text(k, val)?;
            v.proxy_protocol = ProxyProtocol::parse(&text).ok_or_else(|| {
                ctx.err(val.pos, &k.name, format!("{text:?} is not \"v1\", \"v2\", \"any\" or \"off\""))
            })?;
        }
        "mounts" => {
            for m in ctx.array(k, val)? {
                v.mounts.push(mount::adapt(ctx, m)?);
            }
        }
        "ws-protocols" => protocols(ctx, v, k, val)?,
        "init-ssl" => {
            ctx.warn(k.pos, "\"init-ssl\" belongs in \"global\" and has no effect here (D8)");
        }
        _ => ctx.unknown_key(k, "a vhost"),
    }
    Ok(())
}

/// `[{"proto": {pvos…}, …}, …]`: a protocol is enabled when its object opens; a string value
/// does not enable it (spec 1.4). Kept in file order.
fn protocols(ctx: &mut Ctx, v: &mut Vhost, k: &Key, val: &Node) -> Result<(), ConfigError> {
    let objects: Vec<&Node> = match &val.kind {
        Kind::Arr(items) => items.iter().collect(),
        Kind::Obj(_) => vec![val],
        _ => {
            return Err(ctx.err(val.pos, &k.name, "expected [{\"protocol-name\": {options}}]"));
        }
    };
    for obj in objects {
        for (name, body) in ctx.object(k, obj)? {
            let Kind::Obj(opts) = &body.kind else {
                ctx.warn(name.pos, format!("protocol \"{}\" is not enabled: its value must be an object", name.name));
                continue;
            };
            let mut pvos = Vec::new();
            for (pk, pv) in opts {
                match &pv.kind {
                    Kind::Obj(_) | Kind::Arr(_) => {
                        ctx.warn(pk.pos, format!("nested option \"{}\" of \"{}\" is ignored", pk.name, name.name))
                    }
                    // D6: the README's "filespath" is lws-server-status's "filepath".
                    _ if name.name == "lws-server-status" && pk.name == "filespath" => {
                        ctx.warn(pk.pos, "\"filespath\" read as \"filepath\", the option lws-server-status reads");
                        pvos.push(("filepath".to_string(), ctx.text_ddir(pk, pv)?));
                    }
                    _ => pvos.push((pk.name.clone(), ctx.text_ddir(pk, pv)?)),
                }
            }
            v.ws_protocols.push(Protocol { loc: ctx.loc(name.pos), name: name.name.clone(), pvos });
        }
    }
    Ok(())
}

fn empty(ctx: &Ctx, node: &Node) -> Vhost {
    Vhost::with_defaults(ctx.loc(node.pos), "default")
}
