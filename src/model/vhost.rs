//! One `vhosts[]` entry.

use std::path::PathBuf;

use serde::Serialize;

use super::{Loc, Mount};

/// A protocol enabled in `ws-protocols`, with its per-vhost options (pvos) in file order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Protocol {
    pub loc: Loc,
    pub name: String,
    pub pvos: Vec<(String, String)>,
}

impl Protocol {
    pub fn pvo(&self, key: &str) -> Option<&str> {
        self.pvos.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The socket a vhost listens on. Vhosts with equal keys share it; as in lwsws, the socket's
/// options (`ipv6only`, `noipv6`, unix permissions) are those of the first vhost on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ListenKey {
    Tcp { port: u16, interface: Option<String> },
    Unix { path: PathBuf },
}

/// `proxy-protocol` (this project's own key): the header a load balancer in front sends before
/// each connection's first byte to say who the client is (haproxy's PROXY protocol). A
/// property of the socket, like nginx's `listen ... proxy_protocol` and haproxy's
/// `accept-proxy`: every vhost on one port must say the same.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum ProxyProtocol {
    /// No header is expected (the default).
    #[default]
    Off,
    /// The text header only (`PROXY TCP4 ...\r\n`).
    V1,
    /// The binary header only.
    V2,
    /// Either: what a listener behind load balancers of both kinds accepts.
    Any,
}

impl ProxyProtocol {
    /// The value as written in the config; `None` for a word it does not know.
    pub fn parse(text: &str) -> Option<ProxyProtocol> {
        match text.to_ascii_lowercase().as_str() {
            "off" => Some(ProxyProtocol::Off),
            "v1" => Some(ProxyProtocol::V1),
            "v2" => Some(ProxyProtocol::V2),
            "any" => Some(ProxyProtocol::Any),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProxyProtocol::Off => "off",
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
            ProxyProtocol::Any => "any",
        }
    }

    pub fn accepts_v1(self) -> bool {
        matches!(self, ProxyProtocol::V1 | ProxyProtocol::Any)
    }

    pub fn accepts_v2(self) -> bool {
        matches!(self, ProxyProtocol::V2 | ProxyProtocol::Any)
    }
}

/// How the first vhost on a socket wants it bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketOptions {
    pub ipv6only: Option<bool>,
    pub noipv6: bool,
    pub unix_perms: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vhost {
    pub loc: Loc,
    pub name: String,
    /// How `name` is compared with Host and SNI (lwsws's D3 rule for the files).
    pub host_match: super::HostMatch,
    pub port: u16,
    pub interface: Option<String>,
    pub unix_socket: bool,
    pub unix_socket_perms: Option<String>,
    pub sts: bool,
    pub host_ssl_cert: Option<PathBuf>,
    pub host_ssl_key: Option<PathBuf>,
    pub host_ssl_ca: Option<PathBuf>,
    pub access_log: Option<PathBuf>,
    pub keepalive_timeout: u32,
    pub enable_client_ssl: bool,
    pub client_ssl_key: Option<PathBuf>,
    pub client_ssl_cert: Option<PathBuf>,
    pub client_ssl_ca: Option<PathBuf>,
    pub client_ssl_ciphers: Option<String>,
    pub client_tls13_ciphers: Option<String>,
    pub client_ecdh_curve: Option<String>,
    pub ciphers: Option<String>,
    pub tls13_ciphers: Option<String>,
    pub ecdh_curve: Option<String>,
    pub ssl_option_set: u64,
    pub ssl_option_clear: u64,
    pub ssl_client_option_set: u64,
    pub ssl_client_option_clear: u64,
    pub noipv6: bool,
    pub ipv6only: Option<bool>,
    pub headers: Vec<(String, String)>,
    pub error_document_404: Option<String>,
    pub client_cert_required: bool,
    pub ignore_missing_cert: bool,
    /// The certificate is obtained over ACME (the `acme` object or lws-acme-client pvos).
    pub acme: Option<super::acme::Acme>,
    pub strict_host_check: bool,
    /// The project's own `ws-max-message-size`: the largest websocket message this vhost's
    /// built-in protocols take (a protocol's `max-message-size` pvo wins; unset, each protocol's
    /// own default).
    pub ws_max_message_size: Option<usize>,
    pub alpn: Option<String>,
    pub fo_listen_queue: u32,
    pub h2_half_closed_long_poll: bool,
    pub listen_accept_role: Option<String>,
    pub listen_accept_protocol: Option<String>,
    pub apply_listen_accept: bool,
    pub fallback_listen_accept: bool,
    pub allow_non_tls: bool,
    pub redirect_http: bool,
    pub allow_http_on_https: bool,
    pub disable_no_protocol_ws_upgrades: bool,
    /// The project's own `proxy-protocol`: a header before each connection says who the client is.
    pub proxy_protocol: ProxyProtocol,
    pub mounts: Vec<Mount>,
    pub ws_protocols: Vec<Protocol>,
}

impl Vhost {
    /// A vhost with lwsws's defaults for every key, as a front end starts from.
    pub fn with_defaults(loc: Loc, name: &str) -> Vhost {
        Vhost {
            loc,
            name: name.to_string(),
            host_match: super::HostMatch::Lwsws,
            port: 0,
            interface: None,
            unix_socket: false,
            unix_socket_perms: None,
            sts: false,
            host_ssl_cert: None,
            host_ssl_key: None,
            host_ssl_ca: None,
            access_log: None,
            keepalive_timeout: 5,
            enable_client_ssl: false,
            client_ssl_key: None,
            client_ssl_cert: None,
            client_ssl_ca: None,
            client_ssl_ciphers: None,
            client_tls13_ciphers: None,
            client_ecdh_curve: None,
            ciphers: None,
            tls13_ciphers: None,
            ecdh_curve: None,
            ssl_option_set: 0,
            ssl_option_clear: 0,
            ssl_client_option_set: 0,
            ssl_client_option_clear: 0,
            noipv6: false,
            ipv6only: None,
            headers: Vec::new(),
            error_document_404: None,
            client_cert_required: false,
            ignore_missing_cert: false,
            acme: None,
            strict_host_check: false,
            ws_max_message_size: None,
            alpn: None,
            fo_listen_queue: 0,
            h2_half_closed_long_poll: false,
            listen_accept_role: None,
            listen_accept_protocol: None,
            apply_listen_accept: false,
            fallback_listen_accept: false,
            allow_non_tls: false,
            redirect_http: false,
            allow_http_on_https: false,
            disable_no_protocol_ws_upgrades: false,
            proxy_protocol: ProxyProtocol::Off,
            mounts: Vec::new(),
            ws_protocols: Vec::new(),
        }
    }

    /// A vhost serves TLS when it names a certificate and key (D8), or expects one from ACME.
    pub fn is_tls(&self) -> bool {
        self.host_ssl_cert.is_some() && self.host_ssl_key.is_some()
    }

    pub fn listen_key(&self) -> ListenKey {
        if self.unix_socket {
            ListenKey::Unix { path: PathBuf::from(self.interface.clone().unwrap_or_default()) }
        } else {
            ListenKey::Tcp { port: self.port, interface: self.interface.clone() }
        }
    }

    pub fn socket_options(&self) -> SocketOptions {
        SocketOptions { ipv6only: self.ipv6only, noipv6: self.noipv6, unix_perms: self.unix_socket_perms.clone() }
    }

    pub fn protocol(&self, name: &str) -> Option<&Protocol> {
        self.ws_protocols.iter().find(|p| p.name == name)
    }
}
