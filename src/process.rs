//! Process-wide settings from `global`: the open-file limit (`rlimit-nofile`), and D16: one
//! process that, when started as root, drops to the configured user and group after every socket
//! is bound and every certificate and log is open. Not root: nothing to drop.

use nix::unistd::{Gid, Group, Uid, User, getuid, setgid, setgroups, setuid};

use crate::model::Global;

/// Why a process-wide setting could not be applied; the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{call}: {source}")]
    Limit { call: &'static str, source: nix::Error },
    #[error("cannot drop privileges: {call}: {source}")]
    Drop { call: String, source: nix::Error },
    #[error("{0}")]
    Lookup(String),
}

/// How many threads serve: `count-threads` when the config sets it (the user's choice, kept as
/// given), else as many as the CPUs this process may use. lwsws defaults to one; an ingress in a
/// pod is expected to use what the pod is given, as nginx's `worker_processes auto` and haproxy's
/// `nbthread` do. The standard library's count honours the CPU affinity mask (`taskset`,
/// cpusets) and the cgroup's CPU quota (`cpu.max`, a pod's CPU limit, rounded up).
pub fn worker_threads(g: &Global) -> usize {
    match g.count_threads {
        Some(n) => n as usize,
        None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    }
}

/// `rlimit-nofile`: raise (or lower) the soft limit, and the hard one too when allowed.
pub fn set_nofile(g: &Global) -> Result<(), ProcessError> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Some(want) = g.rlimit_nofile else { return Ok(()) };
    let (_, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|source| ProcessError::Limit { call: "getrlimit", source })?;
    if setrlimit(Resource::RLIMIT_NOFILE, want, want.max(hard)).is_err() {
        // Not privileged to raise the hard limit: go as far as it allows.
        setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard)
            .map_err(|source| ProcessError::Limit { call: "setrlimit", source })?;
        if want > hard {
            tracing::warn!(want, hard, "rlimit-nofile is above the hard limit; using the hard limit");
        }
    }
    Ok(())
}

pub fn drop_after_bind(g: &Global) -> Result<(), ProcessError> {
    let wants = g.uid.is_some() || g.gid.is_some() || g.username.is_some() || g.groupname.is_some();
    if !wants {
        return Ok(());
    }
    if !getuid().is_root() {
        tracing::warn!("not running as root: username/groupname/uid/gid are ignored (D16)");
        return Ok(());
    }
    let mut uid = g.uid.map(Uid::from_raw);
    let mut gid = g.gid.map(Gid::from_raw);
    if let Some(name) = &g.username {
        let user = lookup_user(name)?;
        uid = Some(user.uid);
        gid = gid.or(Some(user.gid));
    }
    if gid.is_none()
        && let Some(u) = uid
    {
        // Dropping the user but not the group would keep gid 0 and root's groups.
        gid = Some(User::from_uid(u).ok().flatten().map(|p| p.gid).unwrap_or(Gid::from_raw(u.as_raw())));
    }
    if let Some(name) = &g.groupname {
        gid = Some(lookup_group(name)?);
    }
    if let Some(gid) = gid {
        setgroups(&[gid]).map_err(|source| ProcessError::Drop { call: "setgroups".into(), source })?;
        setgid(gid).map_err(|source| ProcessError::Drop { call: format!("setgid({gid})"), source })?;
    }
    if let Some(uid) = uid {
        setuid(uid).map_err(|source| ProcessError::Drop { call: format!("setuid({uid})"), source })?;
    }
    tracing::info!(?uid, ?gid, "dropped privileges");
    Ok(())
}

fn lookup_user(name: &str) -> Result<User, ProcessError> {
    let missing = |what: String| ProcessError::Lookup(what);
    if let Ok(n) = name.parse::<u32>() {
        return User::from_uid(Uid::from_raw(n)).ok().flatten().ok_or_else(|| missing(format!("no user with uid {n}")));
    }
    User::from_name(name)
        .map_err(|e| missing(format!("user \"{name}\": {e}")))?
        .ok_or_else(|| missing(format!("no such user \"{name}\"")))
}

fn lookup_group(name: &str) -> Result<Gid, ProcessError> {
    let missing = |what: String| ProcessError::Lookup(what);
    if let Ok(n) = name.parse::<u32>() {
        return Ok(Gid::from_raw(n));
    }
    Group::from_name(name)
        .map_err(|e| missing(format!("group \"{name}\": {e}")))?
        .map(|g| g.gid)
        .ok_or_else(|| missing(format!("no such group \"{name}\"")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_threads_is_kept_and_its_absence_means_the_cpus_available() {
        let mut g = Global::default();
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        assert_eq!(worker_threads(&g), cpus);
        g.count_threads = Some(3);
        assert_eq!(worker_threads(&g), 3, "the user's choice, whatever the machine has");
    }
}
