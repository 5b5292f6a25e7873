//! The `global` section. Scalars: the last file wins; `plugin-dir` and
//! `reject-service-keywords` accumulate (spec 1.1). `_lws_ddir_` is not substituted here.

use super::lexer::{Key, Node};
use super::value::Ctx;
use crate::model::{ConfigError, Global, RejectRule};

pub fn apply(ctx: &mut Ctx, g: &mut Global, key: &Key, node: &Node) -> Result<(), ConfigError> {
    let members = ctx.object(key, node)?;
    for (k, v) in members {
        apply_key(ctx, g, k, v)?;
    }
    Ok(())
}

fn apply_key(ctx: &mut Ctx, g: &mut Global, k: &Key, v: &Node) -> Result<(), ConfigError> {
    match k.name.as_str() {
        "uid" => g.uid = Some(ctx.uint(k, v)?),
        "gid" => g.gid = Some(ctx.uint(k, v)?),
        "username" => g.username = Some(ctx.text(k, v)?),
        "groupname" => g.groupname = Some(ctx.text(k, v)?),
        "count-threads" => {
            let n: u32 = ctx.uint(k, v)?;
            g.count_threads = Some(n.clamp(1, 256));
        }
        "count-async-threads" => g.count_async_threads = ctx.uint(k, v)?,
        // set-only in lwsws: a later "0" does not clear it.
        "init-ssl" => g.init_ssl |= ctx.flag(k, v)?,
        "server-string" => {
            let s = ctx.text(k, v)?;
            if http::HeaderValue::from_str(&s).is_err() {
                return Err(ctx.err(v.pos, &k.name, "must be printable text (it becomes the server: header)"));
            }
            g.server_string = Some(s);
        }
        "plugin-dir" => {
            g.plugin_dirs.push(ctx.text(k, v)?);
            ctx.warn(k.pos, "\"plugin-dir\" is ignored: protocols are built in (D18)");
        }
        "ws-pingpong-secs" => g.ws_pingpong_secs = Some(ctx.uint(k, v)?),
        "timeout-secs" => {
            let n: u32 = ctx.uint(k, v)?;
            if n == 0 {
                return Err(ctx.err(v.pos, &k.name, "must be at least 1 second"));
            }
            g.timeout_secs = n;
        }
        "reject-service-keywords" => {
            for (keyword, value) in ctx.pairs(k, v)? {
                g.reject_service_keywords.push(reject_rule(ctx, k, v, keyword, &value)?);
            }
        }
        "default-alpn" => g.default_alpn = Some(ctx.text(k, v)?),
        "ip-limit-ah" | "ip-limit-wsi" => {
            let n: u32 = ctx.uint(k, v)?;
            if k.name == "ip-limit-ah" {
                g.ip_limit_ah = n
            } else {
                g.ip_limit_wsi = n
            }
            if n > 0 {
                ctx.warn(k.pos, format!("\"{}\" is parsed but per-IP limits are not enforced yet", k.name));
            }
        }
        // This project's own key: where /metrics, /healthz and /readyz are served.
        "admin-addr" => {
            let text = ctx.text(k, v)?;
            let addr = text
                .parse()
                .map_err(|_| ctx.err(v.pos, &k.name, format!("{text:?} is not an address such as 127.0.0.1:9090")))?;
            g.admin_addr = Some(addr);
        }
        // This project's own key: the HTTP/1 passthrough of proxy mounts, on unless "0".
        "proxy-passthrough" => g.proxy_passthrough = ctx.flag(k, v)?,
        // This project's own keys: a proxied request's body is read (up to this many bytes)
        // before it takes an upstream connection; requests in flight per upstream endpoint.
        "proxy-body-buffer" => g.proxy_body_buffer = ctx.uint(k, v)?,
        "proxy-max-conns" => g.proxy_max_conns = ctx.uint(k, v)?,
        // This project's own key: the largest HTTP/1 request head; hyper reads no less than
        // 8 KiB at a time, so smaller values cannot be honoured.
        "max-request-head" => {
            let n: u32 = ctx.uint(k, v)?;
            if n < 8192 {
                return Err(ctx.err(
                    v.pos,
                    &k.name,
                    format!("{n} is below the smallest head this server reads (8192)"),
                ));
            }
            g.max_request_head = n;
        }
        "rlimit-nofile" => g.rlimit_nofile = Some(ctx.uint(k, v)?),
        "cpd-bypass" => g.cpd_bypass |= ctx.flag(k, v)?,
        "allow-early-data" => g.allow_early_data |= ctx.flag(k, v)?,
        "quic-enable" | "quic-bind-addr" | "quic-port" => {
            ctx.warn(k.pos, format!("\"{}\" is accepted but QUIC is not served", k.name));
        }
        _ => ctx.unknown_key(k, "global"),
    }
    Ok(())
}

/// `"scumbot": "404 Not Found"`: a status code, then the text after the first space.
fn reject_rule(ctx: &Ctx, k: &Key, v: &Node, keyword: String, value: &str) -> Result<RejectRule, ConfigError> {
    let (code, text) = value.split_once(' ').unwrap_or((value, ""));
    let status: u16 = code
        .trim()
        .parse()
        .ok()
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| ctx.err(v.pos, &k.name, format!("\"{value}\" must start with an HTTP status code")))?;
    if keyword.is_empty() {
        return Err(ctx.err(v.pos, &k.name, "an empty keyword would match every request"));
    }
    Ok(RejectRule { keyword, status, text: text.to_string() })
}
