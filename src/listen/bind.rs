//! Binding one `ListenKey`: TCP on all interfaces (dual-stack unless `noipv6`/`ipv6only`), an IP
//! literal, or every address of a named interface; or a unix socket (`@name` is abstract).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use socket2::{Domain, Protocol, Socket as RawSocket, Type};

use crate::model::{ListenKey, SocketOptions};

const BACKLOG: i32 = 1024;

pub enum Socket {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// The sockets of one listener and the addresses they ended up on (port 0 picks one).
pub struct Bound {
    pub key: ListenKey,
    pub sockets: Vec<Socket>,
    pub addrs: Vec<String>,
}

impl Bound {
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| match s {
                Socket::Tcp(l) => l.local_addr().ok(),
                Socket::Unix(_) => None,
            })
            .collect()
    }
}

pub fn bind(key: &ListenKey, opts: &SocketOptions) -> io::Result<Bound> {
    match key {
        ListenKey::Unix { path } => {
            let l = bind_unix(path, opts.unix_perms.as_deref())?;
            Ok(Bound {
                key: key.clone(),
                sockets: vec![Socket::Unix(l)],
                addrs: vec![format!("unix:{}", path.display())],
            })
        }
        ListenKey::Tcp { port, interface } => {
            let (ipv6only, noipv6) = (opts.ipv6only, opts.noipv6);
            let targets = tcp_targets(*port, interface.as_deref(), ipv6only, noipv6)?;
            let mut sockets = Vec::new();
            let mut addrs = Vec::new();
            for (addr, v6only) in targets {
                let l = bind_tcp(addr, v6only).or_else(|e| match (interface, addr) {
                    // No IPv6 on this host: fall back to IPv4 for the all-interfaces case.
                    (None, SocketAddr::V6(_)) if ipv6_missing(&e) && ipv6only != Some(true) => {
                        bind_tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), *port), false)
                    }
                    _ => Err(e),
                })?;
                addrs.push(l.local_addr()?.to_string());
                sockets.push(Socket::Tcp(l));
            }
            Ok(Bound { key: key.clone(), sockets, addrs })
        }
    }
}

fn ipv6_missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL))
}

/// Which addresses to bind, and whether each IPv6 socket is v6-only.
fn tcp_targets(
    port: u16,
    interface: Option<&str>,
    ipv6only: Option<bool>,
    noipv6: bool,
) -> io::Result<Vec<(SocketAddr, bool)>> {
    let Some(iface) = interface else {
        if noipv6 {
            return Ok(vec![(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port), false)]);
        }
        return Ok(vec![(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port), ipv6only == Some(true))]);
    };
    if let Ok(ip) = iface.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok(vec![(SocketAddr::new(ip, port), true)]);
    }
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(io::Error::from)? {
        if ifa.interface_name != iface {
            continue;
        }
        let Some(addr) = ifa.address else { continue };
        if let Some(v4) = addr.as_sockaddr_in() {
            if ipv6only != Some(true) {
                out.push((SocketAddr::new(IpAddr::V4(v4.ip()), port), false));
            }
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            let ip = v6.ip();
            // Link-local addresses need a scope and are never what an ingress serves on.
            if !noipv6 && (ip.segments()[0] & 0xffc0) != 0xfe80 {
                out.push((SocketAddr::new(IpAddr::V6(ip), port), true));
            }
        }
    }
    if out.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("interface \"{iface}\" has no usable address"),
        ));
    }
    Ok(out)
}

fn bind_tcp(addr: SocketAddr, v6only: bool) -> io::Result<std::net::TcpListener> {
    let s = RawSocket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(v6only)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

fn bind_unix(path: &Path, perms: Option<&str>) -> io::Result<std::os::unix::net::UnixListener> {
    let text = path.to_string_lossy();
    if let Some(name) = text.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        let l = std::os::unix::net::UnixListener::bind_addr(&addr)?;
        l.set_nonblocking(true)?;
        return Ok(l);
    }
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
        // A stale socket from an earlier run.
        std::fs::remove_file(path)?;
    }
    let l = std::os::unix::net::UnixListener::bind(path)?;
    l.set_nonblocking(true)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(spec) = perms {
        chown_socket(path, spec)?;
    }
    Ok(l)
}

/// `unix-socket-perms: "user:group"`.
fn chown_socket(path: &Path, spec: &str) -> io::Result<()> {
    let (user, group) = spec.split_once(':').unwrap_or((spec, ""));
    let not_found = |what: &str| io::Error::new(io::ErrorKind::NotFound, format!("unix-socket-perms: no such {what}"));
    let uid = match user {
        "" => None,
        u => Some(nix::unistd::User::from_name(u).map_err(io::Error::from)?.ok_or_else(|| not_found("user"))?.uid),
    };
    let gid = match group {
        "" => None,
        g => Some(nix::unistd::Group::from_name(g).map_err(io::Error::from)?.ok_or_else(|| not_found("group"))?.gid),
    };
    nix::unistd::chown(path, uid, gid).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_by_name_and_literal() {
        let v4 = SocketOptions { noipv6: true, ..Default::default() };
        let b = bind(&ListenKey::Tcp { port: 0, interface: Some("lo".into()) }, &v4).unwrap();
        assert!(b.tcp_addrs().iter().all(|a| a.ip().is_loopback()));
        let b =
            bind(&ListenKey::Tcp { port: 0, interface: Some("127.0.0.1".into()) }, &SocketOptions::default()).unwrap();
        assert_eq!(b.tcp_addrs()[0].ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        let e = bind(&ListenKey::Tcp { port: 0, interface: Some("nosuchif0".into()) }, &SocketOptions::default());
        assert!(e.is_err());
    }

    #[test]
    fn unix_socket_mode_and_stale_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.sock");
        let key = ListenKey::Unix { path: p.clone() };
        drop(bind(&key, &SocketOptions::default()).unwrap());
        let _again = bind(&key, &SocketOptions::default()).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let perms = SocketOptions { unix_perms: Some("nosuchuser:nosuchgroup".into()), ..Default::default() };
        assert!(bind(&ListenKey::Unix { path: p }, &perms).is_err());
    }
}
