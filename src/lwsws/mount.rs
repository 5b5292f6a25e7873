//! One `mounts[]` object → `model::Mount` (spec 1.3), with the origin parsed (spec 2.1).

use std::path::PathBuf;

use super::lexer::{Key, Kind, Node};
use super::value::Ctx;
use crate::model::{ConfigError, Loc, Mount, Origin, Upstream};

pub fn adapt(ctx: &mut Ctx, node: &Node) -> Result<Mount, ConfigError> {
    let Kind::Obj(members) = &node.kind else {
        return Err(ConfigError::new(ctx.loc(node.pos), Some("mounts"), "each mount must be an object"));
    };
    let mut m = empty(ctx.loc(node.pos));
    let mut mountpoint = None;
    let mut origin = None;
    for (k, v) in members {
        match k.name.as_str() {
            "mountpoint" => mountpoint = Some(mountpoint_of(ctx, k, v)?),
            // lwsws: the first origin wins.
            "origin" if origin.is_none() => origin = Some((parse_origin(ctx, k, v)?, ctx.loc(v.pos))),
            "origin" => ctx.warn(k.pos, "a second \"origin\" is ignored; the first one wins"),
            _ => apply_key(ctx, &mut m, k, v)?,
        }
    }
    m.mountpoint =
        mountpoint.ok_or_else(|| ConfigError::new(m.loc.clone(), Some("mountpoint"), "mount has no mountpoint"))?;
    (m.origin, m.origin_loc) = origin.ok_or_else(|| {
        ConfigError::new(m.loc.clone(), Some("origin"), format!("mount \"{}\" has no origin", m.mountpoint))
    })?;
    Ok(m)
}

fn mountpoint_of(ctx: &Ctx, k: &Key, v: &Node) -> Result<String, ConfigError> {
    let mp = ctx.text_ddir(k, v)?;
    if !mp.starts_with('/') {
        return Err(ctx.err(v.pos, &k.name, format!("\"{mp}\" must start with '/'")));
    }
    if mp.len() >= 256 {
        return Err(ctx.err(v.pos, &k.name, "must be shorter than 256 bytes"));
    }
    Ok(mp)
}

fn apply_key(ctx: &mut Ctx, m: &mut Mount, k: &Key, v: &Node) -> Result<(), ConfigError> {
    match k.name.as_str() {
        "protocol" => ctx.warn(k.pos, "\"protocol\" on a mount is ignored by lwsws; use a callback:// origin"),
        "default" => m.default = Some(ctx.text_ddir(k, v)?),
        "cache-max-age" => m.cache.max_age = ctx.uint(k, v)?,
        "cache-reuse" => m.cache.reuse = ctx.flag(k, v)?,
        "cache-revalidate" => m.cache.revalidate = ctx.flag(k, v)?,
        "cache-intermediaries" => m.cache.intermediaries = ctx.flag(k, v)?,
        "cache-no" => m.cache.no_cache = ctx.flag(k, v)?,
        "extra-mimetypes" => {
            for (ext, ty) in ctx.pairs(k, v)? {
                m.extra_mimetypes.push((ext.to_ascii_lowercase(), ty));
            }
        }
        "interpret" => m.interpret = ctx.pairs(k, v)?,
        "basic-auth" => m.basic_auth = Some(PathBuf::from(ctx.text_ddir(k, v)?)),
        "auth-mask" => m.auth_mask = ctx.uint(k, v)?,
        "cgi-env" | "pmo" => m.cgi_env.extend(ctx.pairs(k, v)?),
        "cgi-timeout" => m.cgi_timeout = ctx.uint(k, v)?,
        "cgi-chroot" => m.cgi_chroot = Some(PathBuf::from(ctx.text_ddir(k, v)?)),
        "cgi-chdir" => m.cgi_chdir = Some(PathBuf::from(ctx.text_ddir(k, v)?)),
        "headers" => m.headers = ctx.pairs(k, v)?,
        "keepalive-timeout" | "keepalive_timeout" => m.keepalive_timeout = Some(ctx.uint(k, v)?),
        "exact-match" => m.exact_match = ctx.flag(k, v)?,
        "append-path" => m.append_path = ctx.flag(k, v)?,
        "no-ws-upgrades" => m.no_ws_upgrades = ctx.flag(k, v)?,
        "interceptor-path" => m.interceptor_path = Some(ctx.text_ddir(k, v)?),
        "rewrite-links" => m.rewrite_links = ctx.flag(k, v)?,
        "follow-symlinks-outside" => m.follow_symlinks_outside = ctx.flag(k, v)?,
        "serve-dotfiles" => m.serve_dotfiles = ctx.flag(k, v)?,
        _ => ctx.unknown_key(k, "a mount"),
    }
    Ok(())
}

fn parse_origin(ctx: &Ctx, k: &Key, v: &Node) -> Result<Origin, ConfigError> {
    let text = ctx.text_ddir(k, v)?;
    origin_from_str(&text).map_err(|msg| ctx.err(v.pos, &k.name, msg))
}

/// Parses an origin string; the error names what is wrong with it.
pub fn origin_from_str(text: &str) -> Result<Origin, String> {
    if let Some(rest) = text.strip_prefix("file://") {
        if rest.is_empty() {
            return Err("file:// needs a directory".into());
        }
        return Ok(Origin::File(PathBuf::from(rest)));
    }
    for (prefix, tls) in [("http://", false), ("https://", true)] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return proxy_origin(rest, tls).map_err(|e| format!("\"{text}\": {e}"));
        }
    }
    if let Some(rest) = text.strip_prefix("cgi://") {
        if rest.is_empty() {
            return Err("cgi:// needs a script path".into());
        }
        return Ok(Origin::Cgi(PathBuf::from(rest)));
    }
    // D7: `^` is the README's spelling of lwsws's `>` redirect.
    if let Some(rest) = text.strip_prefix('>').or_else(|| text.strip_prefix('^')) {
        if !(rest.starts_with("http://") || rest.starts_with("https://")) {
            return Err(format!("redirect origin \"{text}\" must be >http://… or >https://…"));
        }
        return Ok(Origin::Redirect(collapse_after_scheme(rest)));
    }
    if let Some(rest) = text.strip_prefix("callback://") {
        if rest.is_empty() {
            return Err("callback:// needs a protocol name".into());
        }
        return Ok(Origin::Callback(rest.to_string()));
    }
    if text.starts_with("gzip://") {
        return Ok(Origin::Gzip);
    }
    Err(format!(
        "unknown origin scheme in \"{text}\" (expected file://, http://, https://, cgi://, >http(s)://, callback:// or gzip://)"
    ))
}

/// lwsws collapses `//` in a redirect target after the scheme.
fn collapse_after_scheme(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let mut out = String::with_capacity(url.len());
    let mut prev_slash = false;
    for c in rest.chars() {
        if c == '/' && prev_slash {
            continue;
        }
        prev_slash = c == '/';
        out.push(c);
    }
    format!("{scheme}://{out}")
}

fn proxy_origin(rest: &str, tls: bool) -> Result<Origin, String> {
    // Unix socket upstream: `+/run/x.sock:/uri`.
    if let Some(sock) = rest.strip_prefix('+') {
        let (p, uri) = sock.split_once(':').ok_or("a unix-socket upstream is +/path.sock:/uri")?;
        let path = if uri.starts_with('/') { uri.to_string() } else { format!("/{uri}") };
        return Ok(Origin::Proxy { tls, upstream: Upstream::Unix(PathBuf::from(p)), path });
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = split_host_port(authority, default_port)?;
    if host.is_empty() {
        return Err("the upstream has no host".into());
    }
    Ok(Origin::Proxy { tls, upstream: Upstream::Tcp { host, port }, path })
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), String> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, tail) = v6.split_once(']').ok_or("an IPv6 upstream needs a closing ']'")?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("bad port \"{p}\""))?,
            None => default_port,
        };
        return Ok((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), p.parse().map_err(|_| format!("bad port \"{p}\""))?)),
        None => Ok((authority.to_string(), default_port)),
    }
}

fn empty(loc: Loc) -> Mount {
    Mount::with_defaults(loc, "", Origin::Gzip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(origin_from_str("file:///var/www").unwrap(), Origin::File("/var/www".into()));
        assert_eq!(
            origin_from_str("http://127.0.0.1:8080/app").unwrap(),
            Origin::Proxy {
                tls: false,
                upstream: Upstream::Tcp { host: "127.0.0.1".into(), port: 8080 },
                path: "/app".into()
            }
        );
        assert_eq!(
            origin_from_str("https://example.com").unwrap(),
            Origin::Proxy {
                tls: true,
                upstream: Upstream::Tcp { host: "example.com".into(), port: 443 },
                path: "/".into()
            }
        );
        assert_eq!(
            origin_from_str("http://+/run/x.sock:/uri").unwrap(),
            Origin::Proxy { tls: false, upstream: Upstream::Unix("/run/x.sock".into()), path: "/uri".into() }
        );
        assert_eq!(origin_from_str(">https://a//b").unwrap(), Origin::Redirect("https://a/b".into()));
        assert_eq!(origin_from_str("^http://x/").unwrap(), Origin::Redirect("http://x/".into()));
        assert_eq!(origin_from_str("callback://p").unwrap(), Origin::Callback("p".into()));
        assert!(origin_from_str("ftp://x").unwrap_err().contains("unknown origin scheme"));
        assert!(origin_from_str(">ftp://x").is_err());
        assert!(origin_from_str("http://h:99999/").is_err());
    }
}
