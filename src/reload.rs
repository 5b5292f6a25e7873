//! What sets off a reload besides SIGHUP: a change under the config directory. The directory
//! itself is watched (not the files), so kubelet's atomic `..data` swap of a mounted ConfigMap,
//! editors that write a temp file and rename it, and files added or removed are all seen.
//! Where inotify is not available, the directory is polled.

use std::path::Path;
use std::time::Duration;

use notify::{PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Bursts of events (one save is several) within this window make one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
const POLL_EVERY: Duration = Duration::from_secs(2);

/// Keeps the watcher alive; dropping it stops watching.
pub enum ConfigWatcher {
    Native(RecommendedWatcher),
    Polling(PollWatcher),
}

/// Watches `dir` and `dir/conf.d`; every change sends `()` on the returned channel.
pub fn watch(dir: &Path) -> notify::Result<(ConfigWatcher, mpsc::UnboundedReceiver<()>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, notify::EventKind::Access(_))
        {
            let _ = tx.send(());
        }
    };
    let mut watcher = match RecommendedWatcher::new(handler.clone(), notify::Config::default()) {
        Ok(w) => ConfigWatcher::Native(w),
        Err(e) => {
            tracing::warn!(error = %e, "inotify unavailable; polling the config directory every 2 s");
            ConfigWatcher::Polling(PollWatcher::new(handler, notify::Config::default().with_poll_interval(POLL_EVERY))?)
        }
    };
    let confd = dir.join("conf.d");
    match &mut watcher {
        ConfigWatcher::Native(w) => {
            w.watch(dir, RecursiveMode::NonRecursive)?;
            if confd.is_dir() {
                w.watch(&confd, RecursiveMode::NonRecursive)?;
            }
        }
        ConfigWatcher::Polling(w) => {
            w.watch(dir, RecursiveMode::Recursive)?;
        }
    }
    Ok((watcher, rx))
}

/// A steady stream of events does not hold a reload back longer than this.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(2);

/// Waits out a burst: returns once no event has come for `DEBOUNCE`, or after `SETTLE_LIMIT`.
pub async fn settle(rx: &mut mpsc::UnboundedReceiver<()>) {
    let quiet = async { while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {} };
    let _ = tokio::time::timeout(SETTLE_LIMIT, quiet).await;
}
