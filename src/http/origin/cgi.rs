//! `cgi://` mounts (spec 2.7, RFC 3875): the script runs in its own process group with the CGI
//! environment; the request body streams to its stdin, its stdout headers become the response
//! head and the rest streams to the client; stderr goes to the log; `cgi-timeout` kills the
//! whole group. Every child is waited for, so none is left a zombie.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdout, Command};
use tokio::sync::watch;
use tokio_util::io::ReaderStream;

use crate::model::Mount;
use crate::wire::body::{Body, BoxError};
use crate::wire::error::HttpError;

/// A head larger than this from a script is an error, not a head.
const MAX_HEAD: usize = 64 * 1024;

/// What the CGI environment needs from the connection and the vhost.
pub struct CgiRequest<'a> {
    pub parts: &'a Parts,
    pub remainder: &'a str,
    pub peer: Option<SocketAddr>,
    pub tls: bool,
    pub server_name: &'a str,
    pub server_port: u16,
}

pub async fn run(
    script: &Path,
    mount: &Mount,
    req: CgiRequest<'_>,
    body: Incoming,
) -> Result<Response<Body>, HttpError> {
    let mut cmd = Command::new(script);
    cmd.env_clear()
        .envs(environment(script, mount, &req))
        .current_dir(mount.cgi_chdir.as_deref().unwrap_or(Path::new("/tmp")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so the timeout can kill whatever the script started too.
        .process_group(0)
        .kill_on_drop(false);
    let mut child = cmd.spawn().map_err(|e| {
        tracing::warn!(script = %script.display(), error = %e, "cannot start CGI");
        HttpError::Internal(format!("cannot start {}: {e}", script.display()))
    })?;
    let pid = child.id();
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let timeout = Duration::from_secs(mount.cgi_timeout.max(1).into());
    let name = script.display().to_string();

    tokio::spawn(feed_stdin(stdin, body));
    tokio::spawn(log_stderr(stderr, name.clone()));
    // Reaps the child. The deadline holds until the script has exited *and* its output has
    // ended (a background child may keep stdout open); then the whole group is killed, and
    // the response is cut with an error rather than ended as if complete.
    let killed = Arc::new(AtomicBool::new(false));
    let (eof_tx, mut eof_rx) = watch::channel(false);
    let killed_flag = killed.clone();
    tokio::spawn(async move {
        let finished = async {
            let _ = child.wait().await;
            let _ = eof_rx.wait_for(|ended| *ended).await;
        };
        if tokio::time::timeout(timeout, finished).await.is_err() {
            tracing::warn!(script = %name, "cgi-timeout reached; killing the process group");
            killed_flag.store(true, Ordering::SeqCst);
            if let Some(pid) = pid {
                let _ =
                    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            }
            let _ = child.wait().await;
        }
    });

    let mut out = BufReader::new(stdout);
    let head = tokio::time::timeout(timeout, read_head(&mut out))
        .await
        .map_err(|_| HttpError::GatewayTimeout)?
        .map_err(|e| HttpError::Internal(format!("CGI output: {e}")))?;
    let mut builder = Response::builder().status(head.status);
    for (n, v) in head.headers {
        builder = builder.header(n, v);
    }
    let leftover = Bytes::from(out.buffer().to_vec());
    let rest = ReaderStream::new(out.into_inner());
    let end = futures::stream::once(async move {
        eof_tx.send_replace(true);
        if killed.load(Ordering::SeqCst) {
            Err(io::Error::new(io::ErrorKind::TimedOut, "the script was killed at cgi-timeout"))
        } else {
            Ok(Bytes::new())
        }
    });
    let stream = futures::stream::once(async move { Ok::<_, io::Error>(leftover) })
        .chain(rest)
        .chain(end)
        .try_filter(|b| futures::future::ready(!b.is_empty()))
        .map_ok(Frame::data)
        .map_err(|e| Box::new(e) as BoxError);
    let body = BodyExt::boxed_unsync(StreamBody::new(stream));
    builder.body(Body::stream(body)).map_err(|e| HttpError::Internal(e.to_string()))
}

async fn feed_stdin(stdin: Option<tokio::process::ChildStdin>, mut body: Incoming) {
    let Some(mut stdin) = stdin else { return };
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return };
        if let Ok(data) = frame.into_data()
            && stdin.write_all(&data).await.is_err()
        {
            // The script stopped reading; the rest of the body is not its business.
            return;
        }
    }
}

async fn log_stderr(stderr: tokio::process::ChildStderr, script: String) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::warn!(script = %script, "cgi stderr: {line}");
    }
}

struct Head {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// The script's header lines up to the blank line: `Status:` sets the status, `Location:`
/// without one means 302, everything else is passed on.
async fn read_head(out: &mut BufReader<ChildStdout>) -> io::Result<Head> {
    let mut status = None;
    let mut headers = Vec::new();
    let mut total = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = out.read_until(b'\n', &mut line).await?;
        total += n;
        if n == 0 || total > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "no complete header block"));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            break;
        }
        let Some((name, value)) = text.split_once(':') else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("not a header line: {text:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse::<u16>().ok());
            status = Some(
                code.and_then(|c| StatusCode::from_u16(c).ok())
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad Status: {value}")))?,
            );
            continue;
        }
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad value for {name}")))?;
        headers.push((name, value));
    }
    let has_location = headers.iter().any(|(n, _)| n == header::LOCATION);
    let status = status.unwrap_or(if has_location { StatusCode::FOUND } else { StatusCode::OK });
    Ok(Head { status, headers })
}

/// RFC 3875's variables, lws's extra ones, every request header as `HTTP_*` (except the
/// credentials and `Proxy`, which would become the script's `HTTP_PROXY`), then `cgi-env`.
fn environment(script: &Path, mount: &Mount, r: &CgiRequest) -> Vec<(String, String)> {
    let p = r.parts;
    let header = |h: header::HeaderName| p.headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut env: Vec<(String, String)> = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        ("SERVER_SOFTWARE".into(), "lws".into()),
        ("SERVER_PROTOCOL".into(), format!("{:?}", p.version)),
        ("SERVER_NAME".into(), r.server_name.to_string()),
        ("SERVER_PORT".into(), r.server_port.to_string()),
        ("REQUEST_METHOD".into(), p.method.to_string()),
        // As lws sets it: the decoded, normalised path, without the query (QUERY_STRING has it),
        // so that PATH_INFO is its tail.
        ("REQUEST_URI".into(), crate::http::path::normalize(p.uri.path()).unwrap_or_default()),
        ("QUERY_STRING".into(), p.uri.query().unwrap_or("").to_string()),
        ("PATH_INFO".into(), r.remainder.to_string()),
        ("SCRIPT_NAME".into(), mount.mountpoint.clone()),
        ("SCRIPT_PATH".into(), script.display().to_string()),
        ("SCRIPT_FILENAME".into(), script.display().to_string()),
        ("PATH".into(), "/bin:/usr/bin:/usr/local/bin:/var/www/cgi-bin".into()),
    ];
    if let Some(peer) = r.peer {
        env.push(("REMOTE_ADDR".into(), peer.ip().to_canonical().to_string()));
        env.push(("REMOTE_PORT".into(), peer.port().to_string()));
    }
    if r.tls {
        env.push(("HTTPS".into(), "ON".into()));
    }
    if let Some(v) = header(header::CONTENT_LENGTH) {
        env.push(("CONTENT_LENGTH".into(), v));
    }
    if let Some(v) = header(header::CONTENT_TYPE) {
        env.push(("CONTENT_TYPE".into(), v));
    }
    for (n, v) in &p.headers {
        let skip = [header::AUTHORIZATION, header::PROXY_AUTHORIZATION, header::CONTENT_LENGTH, header::CONTENT_TYPE];
        if skip.contains(n) || n.as_str() == "proxy" {
            continue;
        }
        let key = format!("HTTP_{}", n.as_str().to_ascii_uppercase().replace('-', "_"));
        if let Ok(v) = v.to_str()
            && !env.iter().any(|(k, _)| *k == key)
        {
            env.push((key, v.to_string()));
        }
    }
    env.extend(mount.cgi_env.iter().cloned());
    env
}
