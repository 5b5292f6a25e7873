//! The built-in protocols by name (D18).

use std::sync::Arc;

use super::protocol::{Protocol, VhostSummary};
use super::{dumb_increment, echo, mirror, post_demo, server_status, status};
use crate::model;

/// The built-in protocol named in a vhost's `ws-protocols`, set up with its pvos; `None` for a
/// name that is not built in (warned about when the config was read).
pub fn instantiate(p: &model::Protocol, summary: &VhostSummary) -> Option<Arc<dyn Protocol>> {
    Some(match p.name.as_str() {
        "dumb-increment-protocol" => Arc::new(dumb_increment::DumbIncrement::new(p)),
        "lws-mirror-protocol" => Arc::new(mirror::Mirror::default()),
        "lws-status" => Arc::new(status::Status::new(&summary.name)),
        "protocol-post-demo" => Arc::new(post_demo::PostDemo::default()),
        "lws-server-status" => Arc::new(server_status::ServerStatus::new(p, summary.clone())),
        "lws-echo" => Arc::new(echo::Echo),
        _ => return None,
    })
}
