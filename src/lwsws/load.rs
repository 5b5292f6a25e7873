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

/// Loads and validates `dir`. `ddir` replaces `_lws_ddir_` in vhost values.
pub fn load(dir: &Path, ddir: &str) -> Result<Loaded, ConfigError> {
    let files = config_files(dir)?;
    let mut parsed = Vec::with_capacity(files.len());
    for path in &files {
        parsed.push(parse_file(path)?);
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
    let conf_loc = Loc { file: parsed[0].name.clone(), line: 1, col: 1 };
    model::validate(&config, &conf_loc, &mut warnings)?;
    Ok(Loaded { config, warnings, files })
}

fn top_level<'p>(ctx: &Ctx, p: &'p Parsed) -> Result<&'p [(lexer::Key, Node)], ConfigError> {
    match &p.root.kind {
        Kind::Obj(m) => Ok(m),
        _ => Err(ConfigError::new(ctx.loc(p.root.pos), None, "the file must hold one JSON object")),
    }
}

fn parse_file(path: &Path) -> Result<Parsed, ConfigError> {
    let name: Arc<str> = path.display().to_string().into();
    let whole_file = |msg: String| ConfigError::new(Loc { file: name.clone(), line: 0, col: 0 }, None, msg);
    let bytes = std::fs::read(path).map_err(|e| whole_file(format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| whole_file(format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to())))?;
    let root = lexer::parse(&text)
        .map_err(|e| ConfigError::new(Loc { file: name.clone(), line: e.pos.line, col: e.pos.col }, None, e.msg))?;
    Ok(Parsed { name, root })
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
