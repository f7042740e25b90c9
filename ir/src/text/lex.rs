//! The tokenizer of the text form.

use crate::IrError;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Ident(String),
    Value(u32),
    Str(String),
    /// A number as written (parsed later as int or float depending on context).
    Num(String),
    Punct(&'static str),
}

pub struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
    line_start: usize,
}

const PUNCTS: [&str; 12] = ["<=", "->", ":", "=", ",", "(", ")", "[", "]", "{", "}", "<"];

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str, line: usize) -> Lexer<'a> {
        Lexer { src: src.as_bytes(), pos: 0, line, line_start: 0 }
    }

    pub fn err(&self, msg: impl Into<String>) -> IrError {
        IrError::Parse { line: self.line, col: self.pos - self.line_start + 1, msg: msg.into() }
    }

    fn skip_ws(&mut self) {
        while self.pos < self.src.len() && (self.src[self.pos] as char).is_whitespace() {
            self.pos += 1;
        }
    }

    pub fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.src.len()
    }

    pub fn peek(&mut self) -> Result<Option<Tok>, IrError> {
        let save = self.pos;
        let t = self.next();
        self.pos = save;
        t
    }

    pub fn next(&mut self) -> Result<Option<Tok>, IrError> {
        self.skip_ws();
        let Some(&c) = self.src.get(self.pos) else { return Ok(None) };
        let c = c as char;
        if c == '%' {
            self.pos += 1;
            let start = self.pos;
            while self.pos < self.src.len() && self.src[self.pos].is_ascii_digit() {
                self.pos += 1;
            }
            let s = std::str::from_utf8(&self.src[start..self.pos]).unwrap_or("");
            return s.parse().map(|v| Some(Tok::Value(v))).map_err(|_| self.err("expected a value number after `%`"));
        }
        if c == '"' {
            return self.string().map(|s| Some(Tok::Str(s)));
        }
        if c.is_ascii_digit()
            || ((c == '-' || c == '+')
                && self.src.get(self.pos + 1).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'.'))
        {
            let start = self.pos;
            self.pos += 1;
            while let Some(&b) = self.src.get(self.pos) {
                let b = b as char;
                let exp_sign = (b == '-' || b == '+') && matches!(self.src[self.pos - 1], b'e' | b'E');
                if b.is_ascii_alphanumeric() || b == '.' || exp_sign {
                    self.pos += 1;
                } else {
                    break;
                }
            }
            return Ok(Some(Tok::Num(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())));
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = self.pos;
            while let Some(&b) = self.src.get(self.pos) {
                if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' {
                    self.pos += 1;
                } else {
                    break;
                }
            }
            return Ok(Some(Tok::Ident(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())));
        }
        for p in PUNCTS {
            if self.src[self.pos..].starts_with(p.as_bytes()) {
                self.pos += p.len();
                return Ok(Some(Tok::Punct(p)));
            }
        }
        Err(self.err(format!("unexpected character `{c}`")))
    }

    /// A string literal with Rust's escapes (`\"`, `\\`, `\n`, `\t`, `\r`, `\0`, `\'`, `\u{..}`).
    fn string(&mut self) -> Result<String, IrError> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.src.get(self.pos) else { return Err(self.err("unterminated string")) };
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.src.get(self.pos) else { return Err(self.err("unterminated escape")) };
                    self.pos += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'\'' => out.push(b'\''),
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'0' => out.push(0),
                        b'u' => {
                            let rest = &self.src[self.pos..];
                            let close =
                                rest.iter().position(|&c| c == b'}').ok_or_else(|| self.err("bad \\u escape"))?;
                            let hex = std::str::from_utf8(&rest[1..close]).map_err(|_| self.err("bad \\u escape"))?;
                            let ch = u32::from_str_radix(hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| self.err("bad \\u escape"))?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                            self.pos += close + 1;
                        }
                        _ => return Err(self.err(format!("unknown escape `\\{}`", e as char))),
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("string is not UTF-8"))
    }
}
