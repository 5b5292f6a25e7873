//! lws-acme-client's pvos, the lwsws way of asking for an ACME certificate, read into the
//! model's `Acme` (the short `"acme"` object is read in `vhost.rs`).

use std::path::PathBuf;

use crate::model::Protocol;
use crate::model::acme::{Acme, Challenge, split_names};

/// The lws-acme-client pvos as an `Acme`; `None` while any required pvo is missing (the
/// protocol check reports which).
pub fn from_pvos(p: &Protocol) -> Option<Acme> {
    let mut domains = vec![p.pvo("common-name")?.trim().to_string()];
    for n in split_names(p.pvo("subject-alt-name").unwrap_or("")) {
        if !domains.contains(&n) {
            domains.push(n);
        }
    }
    Some(Acme {
        domains,
        email: p.pvo("email")?.to_string(),
        directory: p.pvo("directory-url")?.to_string(),
        challenge: p.pvo("challenge-type").and_then(Challenge::parse).unwrap_or(Challenge::Http01),
        cert_path: p.pvo("cert-path")?.into(),
        key_path: p.pvo("key-path")?.into(),
        account_path: p.pvo("auth-path")?.into(),
        ca_file: p.pvo("ca-file").map(PathBuf::from),
    })
}
