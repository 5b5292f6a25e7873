//! Reading lwsws scalars the way lwsws does: every value is text first, then coerced.
//!
//! `"443"` and `443` are the same port; `1/on/yes/true` (any case) are true; JSON `true` and
//! `false` arrive as `1` and `0`. Numbers are read like C `atoi` (leading digits; `""` is 0), as
//! lwsws does, but anything that is not plainly a number is warned about with its location; a
//! port must be a number.

use std::sync::Arc;

use super::lexer::{Key, Kind, Node, Pos};
use crate::model::{ConfigError, Loc, Warning};

/// Per-file reading context: the file name for locations, the data dir, and the warnings sink.
pub struct Ctx<'a> {
    pub file: Arc<str>,
    pub ddir: &'a str,
    pub warnings: &'a mut Vec<Warning>,
}

impl Ctx<'_> {
    pub fn loc(&self, pos: Pos) -> Loc {
        Loc { file: self.file.clone(), line: pos.line, col: pos.col }
    }

    pub fn err(&self, pos: Pos, key: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError::new(self.loc(pos), Some(key), msg)
    }

    pub fn warn(&mut self, pos: Pos, msg: impl Into<String>) {
        let loc = self.loc(pos);
        self.warnings.push(Warning { loc, msg: msg.into() });
    }

    pub fn unknown_key(&mut self, key: &Key, section: &str) {
        self.warn(key.pos, format!("unknown key \"{}\" in {section} is ignored", key.name));
    }

    /// A scalar as lwsws sees it: text. Arrays, objects and null are errors.
    pub fn text(&self, key: &Key, node: &Node) -> Result<String, ConfigError> {
        match &node.kind {
            Kind::Str(s) => Ok(s.clone()),
            Kind::Num(n) => Ok(n.clone()),
            Kind::Bool(b) => Ok(if *b { "1" } else { "0" }.to_string()),
            _ => Err(self.err(node.pos, &key.name, "expected a string or number")),
        }
    }

    /// Text with lwsws's `_lws_ddir_` substitution (first occurrence only, vhost values only).
    pub fn text_ddir(&self, key: &Key, node: &Node) -> Result<String, ConfigError> {
        Ok(self.text(key, node)?.replacen("_lws_ddir_", self.ddir, 1))
    }

    /// lwsws's `atoi`: the leading digits, with a warning when there is anything else.
    pub fn uint<T: TryFrom<u64>>(&mut self, key: &Key, node: &Node) -> Result<T, ConfigError> {
        let text = self.text(key, node)?;
        let t = text.trim();
        if t.parse::<u64>().is_ok() {
            return self.strict_uint(key, node);
        }
        if t.starts_with('-') {
            return Err(self.err(node.pos, &key.name, format!("\"{text}\" is negative")));
        }
        let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
        let n: u64 = digits.parse().unwrap_or(0);
        self.warn(node.pos, format!("\"{}\": \"{text}\" is not a number; read as {n}, as lwsws does", key.name));
        T::try_from(n).map_err(|_| self.err(node.pos, &key.name, format!("{n} is out of range")))
    }

    pub fn strict_uint<T: TryFrom<u64>>(&self, key: &Key, node: &Node) -> Result<T, ConfigError> {
        let text = self.text(key, node)?;
        let n: u64 = text
            .trim()
            .parse()
            .map_err(|_| self.err(node.pos, &key.name, format!("\"{text}\" is not a whole number")))?;
        T::try_from(n).map_err(|_| self.err(node.pos, &key.name, format!("{n} is out of range")))
    }

    /// lwsws's boolean: a nonzero number, or on/yes/true. off/no/false/0/"" are false; any
    /// other word is false too (as in lwsws) but warned about.
    pub fn flag(&mut self, key: &Key, node: &Node) -> Result<bool, ConfigError> {
        let text = self.text(key, node)?;
        let t = text.trim().to_ascii_lowercase();
        if let Ok(n) = t.parse::<i64>() {
            return Ok(n != 0);
        }
        match t.as_str() {
            "on" | "yes" | "true" => Ok(true),
            "off" | "no" | "false" | "" => Ok(false),
            _ => {
                self.warn(node.pos, format!("\"{}\": \"{text}\" is not a boolean; read as false", key.name));
                Ok(false)
            }
        }
    }

    /// `[{"Name":"value", …}, …]` (or a bare object) as ordered pairs, ddir-substituted.
    pub fn pairs(&self, key: &Key, node: &Node) -> Result<Vec<(String, String)>, ConfigError> {
        let mut out = Vec::new();
        let objects: Vec<&Node> = match &node.kind {
            Kind::Arr(items) => items.iter().collect(),
            Kind::Obj(_) => vec![node],
            _ => return Err(self.err(node.pos, &key.name, "expected [{\"name\": \"value\"}]")),
        };
        for obj in objects {
            let Kind::Obj(members) = &obj.kind else {
                return Err(self.err(obj.pos, &key.name, "expected an object of \"name\": \"value\" pairs"));
            };
            for (k, v) in members {
                out.push((k.name.clone(), self.text_ddir(k, v)?));
            }
        }
        Ok(out)
    }

    pub fn object<'n>(&self, key: &Key, node: &'n Node) -> Result<&'n [(Key, Node)], ConfigError> {
        match &node.kind {
            Kind::Obj(m) => Ok(m),
            _ => Err(self.err(node.pos, &key.name, "expected an object")),
        }
    }

    pub fn array<'n>(&self, key: &Key, node: &'n Node) -> Result<&'n [Node], ConfigError> {
        match &node.kind {
            Kind::Arr(v) => Ok(v),
            _ => Err(self.err(node.pos, &key.name, "expected an array")),
        }
    }
}
