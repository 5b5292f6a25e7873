//! Reading a config directory: `DIR/conf`, then `DIR/conf.d/*` in byte order, in two passes
//! (globals from every file, then vhosts from every file), as lwsws does (spec 1).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::lexer::{self, Kind, Node};
use super::value::Ctx;
use super::{global, vhost};
use crate::model::{self, Config, ConfigError, Loc, Warning};

/// A config read from disk, with what it warned about and the files it came from.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Warning>,
    pub files: Vec<PathBuf>,
}

struct Parsed {
    name: Arc<str>,
    root: Node,
}

/// One config text and the name errors give for it (a file path, or a custom resource).
#[derive(Debug, Clone)]
pub struct Source {
    pub name: Arc<str>,
    pub text: String,
}

/// Loads and validates `dir`. `ddir` replaces `_lws_ddir_` in vhost values.
pub fn load(dir: &Path, ddir: &str) -> Result<Loaded, ConfigError> {
    let (files, sources) = file_sources(dir)?;
    let mut loaded = load_sources(&sources, ddir)?;
    // Files must define a site; in Kubernetes mode the resources may bring every vhost later.
    if loaded.config.vhosts.is_empty() {
        let loc = Loc { file: sources[0].name.clone(), line: 1, col: 1 };
        return Err(ConfigError::new(loc, Some("vhosts"), "no vhosts are defined"));
    }
    loaded.files = files;
    Ok(loaded)
}

/// The config files of `dir` (`config_files`) and their texts.
pub fn file_sources(dir: &Path) -> Result<(Vec<PathBuf>, Vec<Source>), ConfigError> {
    let files = config_files(dir)?;
    let sources = files.iter().map(|p| read_source(p)).collect::<Result<Vec<_>, _>>()?;
    Ok((files, sources))
}

/// Reads one file as a `Source`.
pub fn read_source(path: &Path) -> Result<Source, ConfigError> {
    let name: Arc<str> = path.display().to_string().into();
    let whole_file = |msg: String| ConfigError::new(Loc { file: name.clone(), line: 0, col: 0 }, None, msg);
    // A config file too must be a regular file of a sane size: a FIFO or a device in `conf.d/`
    // would hang the load, and with it `--check` or a reload.
    let bytes = crate::files::read_config_file(path, crate::files::MAX_CONFIG_TEXT).map_err(|e| match e {
        crate::files::ReadError::Io { source, .. } => whole_file(format!("cannot read: {source}")),
        other => whole_file(other.to_string()),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        // Where the first bad byte is, as every other config error says it: line and column
        // (counted in characters, the valid text before it being UTF-8).
        let at = e.utf8_error().valid_up_to();
        let before = std::str::from_utf8(&e.as_bytes()[..at]).unwrap_or("");
        let line = before.matches('\n').count() as u32 + 1;
        let col = before.rsplit('\n').next().unwrap_or("").chars().count() as u32 + 1;
        ConfigError::new(Loc { file: name.clone(), line, col }, None, "not UTF-8")
    })?;
    Ok(Source { name, text })
}

/// Loads and validates config texts in order, as if they were `conf` then `conf.d/*`: the
/// one adapter behind both the files and the Kubernetes resources.
pub fn load_sources(sources: &[Source], ddir: &str) -> Result<Loaded, ConfigError> {
    let mut parsed = Vec::with_capacity(sources.len());
    for s in sources {
        parsed.push(parse_source(s)?);
    }
    if parsed.is_empty() {
        return Err(ConfigError::new(Loc { file: "".into(), line: 0, col: 0 }, None, "no config given"));
    }
    let mut warnings = Vec::new();
    let mut config = Config::default();
    for p in &parsed {
        let mut ctx = Ctx { file: p.name.clone(), ddir, warnings: &mut warnings };
        for (k, v) in top_level(&ctx, p)? {
            match k.name.as_str() {
                "global" => global::apply(&mut ctx, &mut config.global, k, v)?,
                "vhosts" => {}
                _ => ctx.unknown_key(k, "the top level"),
            }
        }
    }
    for p in &parsed {
        let mut ctx = Ctx { file: p.name.clone(), ddir, warnings: &mut warnings };
        for (k, v) in top_level(&ctx, p)? {
            if k.name == "vhosts" {
                for item in ctx.array(k, v)? {
                    config.vhosts.push(vhost::adapt(&mut ctx, item)?);
                }
            }
        }
    }
    model::validate(&config, &mut warnings)?;
    Ok(Loaded { config, warnings, files: Vec::new() })
}

fn top_level<'p>(ctx: &Ctx, p: &'p Parsed) -> Result<&'p [(lexer::Key, Node)], ConfigError> {
    match &p.root.kind {
        Kind::Obj(m) => Ok(m),
        _ => Err(ConfigError::new(ctx.loc(p.root.pos), None, "the file must hold one JSON object")),
    }
}

fn parse_source(s: &Source) -> Result<Parsed, ConfigError> {
    let name = s.name.clone();
    let root = lexer::parse(&s.text)
        .map_err(|e| ConfigError::new(Loc { file: name.clone(), line: e.pos.line, col: e.pos.col }, None, e.msg))?;
    Ok(Parsed { name, root })
}

/// The JSON path (`vhosts[0].mounts[1].origin`) of the key or value at `line:col` of `text`:
/// how an error in a custom resource names its field.
pub fn path_at(text: &str, line: u32, col: u32) -> Option<String> {
    fn walk(node: &Node, at: lexer::Pos, path: &mut String) -> bool {
        if node.pos == at {
            return true;
        }
        match &node.kind {
            Kind::Obj(members) => {
                for (k, v) in members {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&k.name);
                    if k.pos == at || walk(v, at, path) {
                        return true;
                    }
                    path.truncate(len);
                }
                false
            }
            Kind::Arr(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    if walk(item, at, path) {
                        return true;
                    }
                    path.truncate(len);
                }
                false
            }
            _ => false,
        }
    }
    let root = lexer::parse(text).ok()?;
    let mut path = String::new();
    walk(&root, lexer::Pos { line, col }, &mut path).then_some(path)
}

/// `DIR/conf` (required) and the `conf.d` entries lwsws would read, in byte order. D1: symlinks
/// are followed (a ConfigMap mount is all symlinks); names starting with `.` (kubelet's `..data`,
/// editor swap files) and names containing `~` are skipped; only regular files are read.
pub fn config_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let conf = dir.join("conf");
    if !conf.is_file() {
        let file: Arc<str> = conf.display().to_string().into();
        return Err(ConfigError::new(Loc { file, line: 0, col: 0 }, None, "cannot open the global config file"));
    }
    let mut files = vec![conf];
    let confd = dir.join("conf.d");
    let entries = match std::fs::read_dir(&confd) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => {
            let file: Arc<str> = confd.display().to_string().into();
            return Err(ConfigError::new(Loc { file, line: 0, col: 0 }, None, format!("cannot list: {e}")));
        }
    };
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| {
            let b = n.as_encoded_bytes();
            !b.starts_with(b".") && !b.contains(&b'~')
        })
        .collect();
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    files.extend(names.into_iter().map(|n| confd.join(n)).filter(|p| p.is_file()));
    Ok(files)
}
