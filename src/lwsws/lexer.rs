//! The lwsws JSON dialect: JSON plus `#` line comments outside strings.
//!
//! serde_json cannot tell us where a value came from, and every config message must name
//! `file:line:col`, so this is a small recursive-descent parser that keeps the position of
//! every key and value. Objects keep duplicate keys in file order because lwsws accumulates
//! some of them (`ssl-option-set`, `plugin-dir`). Like lejp, trailing commas are errors.

use std::fmt;

/// 1-based line and column (in characters) of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    /// The number's source text: lwsws reads every scalar as text and converts it later.
    Num(String),
    Str(String),
    Arr(Vec<Node>),
    Obj(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LexError {
    pub pos: Pos,
    pub msg: String,
}

impl fmt::Display for LexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.pos.line, self.pos.col, self.msg)
    }
}

/// Deep nesting is never a real config; the limit keeps a hostile file from exhausting the stack.
const MAX_DEPTH: usize = 64;

pub fn parse(text: &str) -> Result<Node, LexError> {
    let mut p = Parser { chars: text.chars().collect(), i: 0, line: 1, col: 1 };
    let node = p.value(0)?;
    p.skip_ws();
    if p.peek().is_some() {
        return Err(p.err("unexpected text after the top-level value"));
    }
    Ok(node)
}

struct Parser {
    chars: Vec<char>,
    i: usize,
    line: u32,
    col: u32,
}

impl Parser {
    fn pos(&self) -> Pos {
        Pos { line: self.line, col: self.col }
    }

    fn err(&self, msg: impl Into<String>) -> LexError {
        LexError { pos: self.pos(), msg: msg.into() }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\r' | '\n' | '\u{feff}' => {
                    self.bump();
                }
                '#' => {
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                _ => break,
            }
        }
    }

    fn expect(&mut self, want: char) -> Result<(), LexError> {
        self.skip_ws();
        match self.peek() {
            Some(c) if c == want => {
                self.bump();
                Ok(())
            }
            Some(c) => Err(self.err(format!("expected '{want}' but found '{c}'"))),
            None => Err(self.err(format!("expected '{want}' but the file ended"))),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, LexError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting is too deep"));
        }
        self.skip_ws();
        let pos = self.pos();
        let kind = match self.peek() {
            None => return Err(self.err("expected a value but the file ended")),
            Some('{') => self.object(depth)?,
            Some('[') => self.array(depth)?,
            Some('"') => Kind::Str(self.string()?),
            Some(c) if c == '-' || c.is_ascii_digit() => Kind::Num(self.number()?),
            Some(c) if c.is_ascii_alphabetic() => self.word()?,
            Some(c) => return Err(self.err(format!("unexpected character '{c}'"))),
        };
        Ok(Node { pos, kind })
    }

    fn object(&mut self, depth: usize) -> Result<Kind, LexError> {
        self.bump();
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some('}') {
            self.bump();
            return Ok(Kind::Obj(members));
        }
        loop {
            self.skip_ws();
            let pos = self.pos();
            if self.peek() != Some('"') {
                let what = if self.peek() == Some('}') {
                    "a trailing comma is not allowed".to_string()
                } else {
                    "expected a quoted key".to_string()
                };
                return Err(self.err(what));
            }
            let name = self.string()?;
            self.expect(':')?;
            let value = self.value(depth + 1)?;
            members.push((Key { name, pos }, value));
            self.skip_ws();
            match self.bump() {
                Some(',') => continue,
                Some('}') => return Ok(Kind::Obj(members)),
                Some(c) => return Err(self.err(format!("expected ',' or '}}' but found '{c}'"))),
                None => return Err(self.err("an object is not closed")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Kind, LexError> {
        self.bump();
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(']') {
            self.bump();
            return Ok(Kind::Arr(items));
        }
        loop {
            self.skip_ws();
            if self.peek() == Some(']') {
                return Err(self.err("a trailing comma is not allowed"));
            }
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.bump() {
                Some(',') => continue,
                Some(']') => return Ok(Kind::Arr(items)),
                Some(c) => return Err(self.err(format!("expected ',' or ']' but found '{c}'"))),
                None => return Err(self.err("an array is not closed")),
            }
        }
    }

    fn string(&mut self) -> Result<String, LexError> {
        self.bump();
        let mut out = String::new();
        loop {
            let pos = self.pos();
            match self.bump() {
                None => return Err(self.err("a string is not closed")),
                Some('"') => return Ok(out),
                Some('\\') => out.push(self.escape(pos)?),
                Some('\n') => {
                    return Err(LexError { pos, msg: "a string is not closed before the end of the line".into() });
                }
                Some(c) if (c as u32) < 0x20 => {
                    return Err(LexError { pos, msg: "a control character inside a string".into() });
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn escape(&mut self, pos: Pos) -> Result<char, LexError> {
        let bad = |msg: &str| LexError { pos, msg: msg.to_string() };
        Ok(match self.bump() {
            Some('"') => '"',
            Some('\\') => '\\',
            Some('/') => '/',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => {
                let hi = self.hex4().ok_or_else(|| bad("a \\u escape needs four hex digits"))?;
                if (0xD800..0xDC00).contains(&hi) {
                    if self.bump() != Some('\\') || self.bump() != Some('u') {
                        return Err(bad("a lone surrogate in a \\u escape"));
                    }
                    let lo = self.hex4().ok_or_else(|| bad("a \\u escape needs four hex digits"))?;
                    let c = 0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3ff);
                    char::from_u32(c).ok_or_else(|| bad("an invalid surrogate pair"))?
                } else {
                    char::from_u32(hi).ok_or_else(|| bad("an invalid \\u escape"))?
                }
            }
            _ => return Err(bad("an unknown escape in a string")),
        })
    }

    fn hex4(&mut self) -> Option<u32> {
        let mut v = 0;
        for _ in 0..4 {
            v = v * 16 + self.bump()?.to_digit(16)?;
        }
        Some(v)
    }

    fn number(&mut self) -> Result<String, LexError> {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E') {
                s.push(c);
                self.bump();
            } else {
                break;
            }
        }
        if s.parse::<f64>().is_err() {
            return Err(self.err(format!("'{s}' is not a number")));
        }
        Ok(s)
    }

    fn word(&mut self) -> Result<Kind, LexError> {
        let pos = self.pos();
        let mut w = String::new();
        while let Some(c) = self.peek().filter(|c| c.is_ascii_alphanumeric() || *c == '_') {
            w.push(c);
            self.bump();
        }
        match w.as_str() {
            "true" => Ok(Kind::Bool(true)),
            "false" => Ok(Kind::Bool(false)),
            "null" => Ok(Kind::Null),
            _ => Err(LexError { pos, msg: format!("unexpected word '{w}' (strings need quotes)") }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_outside_strings_only() {
        let n = parse("{ # c\n \"a\": \"x#y\" # tail\n}").unwrap();
        let Kind::Obj(m) = n.kind else { panic!() };
        assert_eq!(m[0].0.name, "a");
        assert_eq!(m[0].0.pos, Pos { line: 2, col: 2 });
        assert_eq!(m[0].1.kind, Kind::Str("x#y".into()));
    }

    #[test]
    fn positions_of_errors() {
        let e = parse("{\n \"a\": 1,\n}").unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, col: 1 });
        assert!(e.msg.contains("trailing comma"), "{e}");
        let e = parse("[1,]").unwrap_err();
        assert!(e.msg.contains("trailing comma"));
        let e = parse("{\"a\" 1}").unwrap_err();
        assert_eq!(e.pos, Pos { line: 1, col: 6 });
        assert!(parse("{\"a\": \"open").is_err());
        assert!(parse("{} x").is_err());
        assert!(parse("{\"a\": yes}").unwrap_err().msg.contains("quotes"));
    }

    #[test]
    fn scalars_and_escapes() {
        let n = parse(r#"[true, false, null, -1.5e3, "\u00e9\n\ud83d\ude00"]"#).unwrap();
        let Kind::Arr(v) = n.kind else { panic!() };
        assert_eq!(v[0].kind, Kind::Bool(true));
        assert_eq!(v[2].kind, Kind::Null);
        assert_eq!(v[3].kind, Kind::Num("-1.5e3".into()));
        assert_eq!(v[4].kind, Kind::Str("é\n😀".into()));
    }

    #[test]
    fn duplicate_keys_are_kept_in_order() {
        let n = parse(r#"{"k": "1", "k": "2"}"#).unwrap();
        let Kind::Obj(m) = n.kind else { panic!() };
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(100) + &"]".repeat(100);
        assert!(parse(&text).unwrap_err().msg.contains("deep"));
    }
}
