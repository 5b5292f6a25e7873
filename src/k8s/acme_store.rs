//! ACME state in Secrets of the server's namespace, for Kubernetes mode: a pod's file system
//! goes away with the pod, a Secret does not, so a restarted pod serves the certificate it had
//! and asks the CA nothing. The certificate is a `kubernetes.io/tls` Secret
//! (`lwsws-acme-<vhost>`, usable by other workloads too); the account is an Opaque Secret
//! (`lwsws-acme-account-<vhost>`). Both are written with server-side apply.

use std::collections::BTreeMap;
use std::io;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams};

use crate::acme::{CertStore, StoreFactory, StoreFuture};

const MANAGER: &str = "lwsws";

pub struct SecretStore {
    api: Api<Secret>,
    cert: String,
    account: String,
}

impl SecretStore {
    pub fn new(client: kube::Client, namespace: &str, vhost: &str) -> SecretStore {
        let id = secret_suffix(vhost);
        SecretStore {
            api: Api::namespaced(client, namespace),
            cert: format!("lwsws-acme-{id}"),
            account: format!("lwsws-acme-account-{id}"),
        }
    }

    /// The Secret's data; `Ok(None)` only when it does not exist (any other error is not
    /// taken as "absent", or a passing API error would make the server order a certificate).
    async fn read(&self, name: &str) -> io::Result<Option<BTreeMap<String, ByteString>>> {
        match self.api.get_opt(name).await {
            Ok(s) => Ok(s.and_then(|s| s.data)),
            Err(e) => Err(io::Error::other(format!("reading Secret {name}: {e}"))),
        }
    }

    async fn write(&self, name: &str, type_: &str, data: BTreeMap<String, ByteString>) -> io::Result<()> {
        let mut labels = BTreeMap::new();
        labels.insert("app.kubernetes.io/managed-by".to_string(), MANAGER.to_string());
        let secret = Secret {
            metadata: ObjectMeta { name: Some(name.to_string()), labels: Some(labels), ..Default::default() },
            type_: Some(type_.to_string()),
            data: Some(data),
            ..Default::default()
        };
        let params = PatchParams::apply(MANAGER).force();
        self.api.patch(name, &params, &Patch::Apply(&secret)).await.map(|_| ()).map_err(io::Error::other)
    }
}

/// A Secret name part from a vhost name: the name in lower case with anything else than letters,
/// digits and `-` made `-`, then a short hash of the exact name, so that `*.example.com` and
/// `example.com` (or `a_b` and `a-b`) never share a Secret and the result is a valid DNS label
/// sequence.
fn secret_suffix(vhost: &str) -> String {
    let readable: String =
        vhost.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let readable: String = readable.trim_matches('-').chars().take(180).collect();
    let hash = super::stable_hash(&[vhost.as_bytes()]);
    let short = format!("{:08x}", hash as u32);
    if readable.is_empty() { short } else { format!("{readable}-{short}") }
}

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    String::from_utf8(data.get(key)?.0.clone()).ok()
}

impl CertStore for SecretStore {
    fn load_cert(&self) -> StoreFuture<'_, io::Result<Option<(String, String)>>> {
        Box::pin(async move {
            let Some(data) = self.read(&self.cert).await? else { return Ok(None) };
            Ok(text(&data, "tls.crt").zip(text(&data, "tls.key")))
        })
    }

    fn save_cert<'a>(&'a self, chain_pem: &'a str, key_pem: &'a str) -> StoreFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let mut data = BTreeMap::new();
            data.insert("tls.crt".to_string(), ByteString(chain_pem.as_bytes().to_vec()));
            data.insert("tls.key".to_string(), ByteString(key_pem.as_bytes().to_vec()));
            self.write(&self.cert, "kubernetes.io/tls", data).await
        })
    }

    fn load_account(&self) -> StoreFuture<'_, io::Result<Option<String>>> {
        Box::pin(async move { Ok(self.read(&self.account).await?.and_then(|d| text(&d, "account.json"))) })
    }

    fn save_account<'a>(&'a self, json: &'a str) -> StoreFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let mut data = BTreeMap::new();
            data.insert("account.json".to_string(), ByteString(json.as_bytes().to_vec()));
            self.write(&self.account, "Opaque", data).await
        })
    }

    fn forget_account(&self) -> StoreFuture<'_, io::Result<()>> {
        Box::pin(async move {
            match self.api.delete(&self.account, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(io::Error::other(e)),
            }
        })
    }
}

/// Stores that keep each ACME vhost's state in Secrets of `namespace`, for the server to use.
pub fn secret_stores(client: kube::Client, namespace: &str) -> std::sync::Arc<StoreFactory> {
    let namespace = namespace.to_string();
    std::sync::Arc::new(move |vhost: &str, _: &crate::model::acme::Acme| {
        Box::new(SecretStore::new(client.clone(), &namespace, vhost)) as Box<dyn CertStore>
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_names_are_valid() {
        let s = super::secret_suffix;
        assert!(s("Example.COM").starts_with("example-com-"));
        assert_ne!(s("*.example.com"), s("example.com"));
        assert_ne!(s("a_b"), s("a-b"));
        assert_eq!(s("example.com"), s("example.com"), "stable");
        for name in ["*", "_", "a..b", "x".repeat(300).as_str()] {
            let n = format!("lwsws-acme-account-{}", s(name));
            assert!(n.len() <= 253 && !n.ends_with('-'), "{n}");
            assert!(n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{n}");
        }
    }
}
