//! The settings file as shell scripts read it: `KEY=VALUE` pairs, quoted or
//! not, each line's problem placed; nothing is expanded or run.

use super::*;

/// A problem on one line of the settings file. The line is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The `KEY=VALUE` pairs of a shell-style file. The last assignment wins, as
/// in a shell.
#[derive(Debug, Default, Clone)]
pub struct RawConfig {
    pub values: HashMap<String, String>,
    pub errors: Vec<LineError>,
}

impl RawConfig {
    /// Parses the text of a settings file. Never fails: a malformed line is
    /// recorded in `errors` and skipped.
    pub fn parse(text: &str) -> RawConfig {
        let mut raw = RawConfig::default();
        for (idx, line) in text.lines().enumerate() {
            match parse_line(line) {
                Ok(None) => {}
                Ok(Some((key, value))) => {
                    raw.values.insert(key, value);
                }
                Err(message) => raw.errors.push(LineError {
                    line: idx + 1,
                    message,
                }),
            }
        }
        raw
    }

    /// The value of `key`, `None` when missing or empty (empty means default).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Parses one line: `None` for blank lines and comments.
pub(super) fn parse_line(line: &str) -> Result<Option<(String, String)>, String> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let rest = trimmed
        .strip_prefix("export")
        .filter(|r| r.starts_with([' ', '\t']))
        .map(str::trim_start)
        .unwrap_or(trimmed);
    let Some(eq) = rest.find('=') else {
        return Err(format!("expected KEY=VALUE, found {:?}", clip(trimmed)));
    };
    let key = &rest[..eq];
    if !is_name(key) {
        return Err(format!("{:?} is not a valid variable name", clip(key)));
    }
    let value = parse_value(&rest[eq + 1..])?;
    Ok(Some((key.to_string(), value)))
}

pub(super) fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

pub(super) fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Parses a shell word: unquoted parts, `'single'` and `"double"` quotes
/// (with `\"`, `\\`, `\$` and `` \` `` escapes), concatenated; then only
/// blanks and an optional `# comment` may follow. `$` expansion is not
/// performed: a `$` is kept as it is.
pub(super) fn parse_value(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' => break,
            '\'' => {
                chars.next();
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => out.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => out.push(e),
                            Some(e) => {
                                out.push('\\');
                                out.push(e);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => out.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                chars.next();
                match chars.next() {
                    Some(e) => out.push(e),
                    None => return Err("trailing backslash".into()),
                }
            }
            ';' | '|' | '&' | '<' | '>' | '(' | ')' | '`' => {
                return Err(format!("unexpected {c:?}: only KEY=VALUE is allowed"));
            }
            _ => {
                out.push(c);
                chars.next();
            }
        }
    }
    let tail: String = chars.collect();
    let tail = tail.trim_start();
    if !tail.is_empty() && !tail.starts_with('#') {
        return Err(format!(
            "unexpected text after the value: {:?} (quote values that hold blanks)",
            clip(tail)
        ));
    }
    Ok(out)
}

/// A problem with one setting's value; the default is used instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}
