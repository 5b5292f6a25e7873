//! lwsws's OpenSSL-style TLS knobs mapped onto rustls where a mapping exists. Anything rustls
//! never offers (RC4, DHE, CBC, …) is excluded anyway: asking to exclude it is silent, asking to
//! include it is a warning.

use rustls::SupportedCipherSuite;
use rustls::crypto::SupportedKxGroup;
use rustls::crypto::aws_lc_rs::{ALL_CIPHER_SUITES, kx_group};

/// OpenSSL name → the rustls suite's name (its `Debug` form).
const TLS12_NAMES: &[(&str, &str)] = &[
    ("ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    ("ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    ("ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    ("ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    ("ECDHE-RSA-AES256-GCM-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    ("ECDHE-RSA-CHACHA20-POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
];

const TLS13_NAMES: &[(&str, &str)] = &[
    ("TLS_AES_128_GCM_SHA256", "TLS13_AES_128_GCM_SHA256"),
    ("TLS_AES_256_GCM_SHA384", "TLS13_AES_256_GCM_SHA384"),
    ("TLS_CHACHA20_POLY1305_SHA256", "TLS13_CHACHA20_POLY1305_SHA256"),
];

/// OpenSSL options with a rustls meaning.
pub const SSL_OP_NO_TLSV1_2: u64 = 0x0800_0000;
pub const SSL_OP_NO_TLSV1_3: u64 = 0x2000_0000;
/// Options that forbid protocols rustls never speaks anyway (SSLv2/3, TLS 1.0/1.1), and
/// cipher-preference flags that rustls already follows.
const SSL_OP_HARMLESS: u64 = 0x0100_0000 | 0x0200_0000 | 0x0400_0000 | 0x1000_0000 | 0x0040_0000;

fn suite_name(s: &SupportedCipherSuite) -> String {
    format!("{:?}", s.suite())
}

fn by_rustls_name(name: &str) -> Option<SupportedCipherSuite> {
    ALL_CIPHER_SUITES.iter().copied().find(|s| suite_name(s) == name)
}

/// Which TLS 1.2 OpenSSL names a keyword (HIGH, AESGCM, ECDSA, …) stands for.
fn keyword_members(word: &str) -> Option<Vec<&'static str>> {
    let all = TLS12_NAMES.iter().map(|(o, _)| *o);
    let pick = |f: &dyn Fn(&str) -> bool| Some(all.clone().filter(|n| f(n)).collect());
    match word {
        "ALL" | "DEFAULT" | "HIGH" | "ECDHE" | "EECDH" | "kECDHE" | "kEECDH" | "AEAD" | "TLSv1.2" => pick(&|_| true),
        "AESGCM" => pick(&|n| n.contains("GCM")),
        "AES" => pick(&|n| n.contains("AES")),
        "AES128" => pick(&|n| n.contains("AES128")),
        "AES256" => pick(&|n| n.contains("AES256")),
        "CHACHA20" => pick(&|n| n.contains("CHACHA20")),
        "ECDSA" | "aECDSA" => pick(&|n| n.contains("ECDSA")),
        "aRSA" | "RSA" => pick(&|n| n.contains("-RSA-")),
        "SHA256" => pick(&|n| n.ends_with("SHA256")),
        "SHA384" => pick(&|n| n.ends_with("SHA384")),
        _ => None,
    }
}

/// The TLS 1.2 suites an OpenSSL `ciphers` string allows, plus a warning per token that asks
/// for something rustls cannot offer.
pub fn tls12_suites(list: &str, warnings: &mut Vec<String>) -> Vec<SupportedCipherSuite> {
    let mut chosen: Vec<&str> = Vec::new();
    // OpenSSL's `!X` bans X for good: a later keyword cannot bring it back.
    let mut banned: Vec<&str> = Vec::new();
    for raw in list.split([':', ',', ' ']).filter(|t| !t.is_empty()) {
        let (remove, ban, tok) = match raw.as_bytes()[0] {
            b'!' => (true, true, &raw[1..]),
            b'-' => (true, false, &raw[1..]),
            b'+' => (false, false, &raw[1..]),
            _ => (false, false, raw),
        };
        if tok.starts_with('@') {
            continue;
        }
        let members = match TLS12_NAMES.iter().find(|(o, _)| *o == tok) {
            Some((o, _)) => vec![*o],
            None => match keyword_members(tok) {
                Some(m) => m,
                None => {
                    if !remove {
                        warnings.push(format!("cipher \"{tok}\" has no rustls equivalent and is not offered"));
                    }
                    continue;
                }
            },
        };
        if remove {
            chosen.retain(|c| !members.contains(c));
            if ban {
                banned.extend(members);
            }
        } else {
            for m in members {
                if !chosen.contains(&m) && !banned.contains(&m) {
                    chosen.push(m);
                }
            }
        }
    }
    chosen
        .iter()
        .filter_map(|o| TLS12_NAMES.iter().find(|(n, _)| n == o))
        .filter_map(|(_, r)| by_rustls_name(r))
        .collect()
}

pub fn tls13_suites(list: &str, warnings: &mut Vec<String>) -> Vec<SupportedCipherSuite> {
    let mut out = Vec::new();
    for tok in list.split([':', ',', ' ']).filter(|t| !t.is_empty()) {
        match TLS13_NAMES.iter().find(|(o, _)| *o == tok).and_then(|(_, r)| by_rustls_name(r)) {
            Some(s) => out.push(s),
            None => warnings.push(format!("TLS 1.3 cipher \"{tok}\" has no rustls equivalent")),
        }
    }
    out
}

/// `ecdh-curve`: one or more curve names → key-exchange groups, in the order given.
pub fn kx_groups(list: &str, warnings: &mut Vec<String>) -> Vec<&'static dyn SupportedKxGroup> {
    let mut out: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    for tok in list.split([':', ',', ' ']).filter(|t| !t.is_empty()) {
        let g: Option<&'static dyn SupportedKxGroup> = match tok.to_ascii_lowercase().as_str() {
            "prime256v1" | "secp256r1" | "p-256" => Some(kx_group::SECP256R1),
            "secp384r1" | "p-384" => Some(kx_group::SECP384R1),
            "x25519" => Some(kx_group::X25519),
            "x25519mlkem768" => Some(kx_group::X25519MLKEM768),
            _ => None,
        };
        match g {
            Some(g) => out.push(g),
            None => warnings.push(format!("curve \"{tok}\" has no rustls equivalent")),
        }
    }
    out
}

/// Warnings for `ssl-option-set` bits that mean nothing to rustls.
pub fn unsupported_options(mask: u64) -> u64 {
    mask & !(SSL_OP_NO_TLSV1_2 | SSL_OP_NO_TLSV1_3 | SSL_OP_HARMLESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lws_default_list_maps_to_the_strong_suites() {
        let lws_default = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES256-GCM-SHA384:\
            ECDHE-RSA-AES256-SHA384:HIGH:!aNULL:!eNULL:!EXPORT:!DES:!MD5:!PSK:!RC4:!HMAC_SHA1:!SHA1:\
            !DHE-RSA-AES128-GCM-SHA256:!DHE-RSA-AES128-SHA256:!ECDHE-RSA-AES128-GCM-SHA256:!AES128-GCM-SHA256:\
            !AES128-SHA256:!DHE-RSA-AES256-SHA256:!AES256-GCM-SHA384:!AES256-SHA256:!CAMELLIA128:!CAMELLIA256";
        let mut w = Vec::new();
        let s = tls12_suites(lws_default, &mut w);
        let names: Vec<String> = s.iter().map(suite_name).collect();
        assert_eq!(names[0], "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");
        assert!(!names.contains(&"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_string()));
        assert_eq!(names.len(), 5);
        assert_eq!(w.len(), 2, "{w:?}"); // DHE-RSA-AES256-GCM-SHA384 and ECDHE-RSA-AES256-SHA384
    }

    #[test]
    fn a_ban_outlives_later_keywords() {
        let mut w = Vec::new();
        let names: Vec<String> = tls12_suites("!AES128:HIGH", &mut w).iter().map(suite_name).collect();
        assert!(!names.iter().any(|n| n.contains("AES_128")), "{names:?}");
        assert_eq!(names.len(), 4);
        let names: Vec<String> = tls12_suites("-AES128:HIGH", &mut w).iter().map(suite_name).collect();
        assert_eq!(names.len(), 6, "a plain removal can be re-added");
    }

    #[test]
    fn tls13_and_curves() {
        let mut w = Vec::new();
        assert_eq!(tls13_suites("TLS_AES_256_GCM_SHA384:TLS_BOGUS", &mut w).len(), 1);
        assert_eq!(w.len(), 1);
        assert_eq!(kx_groups("prime256v1:secp384r1", &mut w).len(), 2);
        assert_eq!(kx_groups("brainpool", &mut w).len(), 0);
    }

    #[test]
    fn option_bits() {
        assert_eq!(unsupported_options(SSL_OP_NO_TLSV1_2 | 0x1000_0000), 0);
        assert_eq!(unsupported_options(0x4), 0x4);
    }
}
