//! `${VAR}` expansion for config values.
//!
//! Supported forms: `${VAR}` (error when unset), `${VAR:-default}` (default when
//! unset or empty) and `$$` for a literal `$`. Expansion happens once, when the
//! config is loaded; the expanded values of secrets are never printed.

use std::fmt;

/// Why a value could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    /// `${VAR}` referenced a variable that is not set.
    Unset(String),
    /// The reference is not closed or its name is not a valid variable name.
    Malformed(String),
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::Unset(v) => write!(f, "environment variable {v} is not set"),
            EnvError::Malformed(why) => write!(f, "malformed ${{...}} reference: {why}"),
        }
    }
}

/// Expands references in `input` using `lookup` to read variables.
pub fn expand_with(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, EnvError> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| EnvError::Malformed("missing closing '}'".into()))?;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(EnvError::Malformed(format!("invalid variable name {name:?}")));
            }
            match (lookup(name), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(EnvError::Unset(name.to_string())),
            }
            rest = &body[end + 1..];
        } else {
            // A lone `$` not followed by `{` or `$` is kept literally.
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands references against the process environment.
pub fn expand(input: &str) -> Result<String, EnvError> {
    expand_with(input, |k| std::env::var(k).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let env = |k: &str| match k {
            "A" => Some("alpha".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let cases: &[(&str, Result<&str, EnvError>)] = &[
            ("plain", Ok("plain")),
            ("${A}", Ok("alpha")),
            ("x-${A}-y", Ok("x-alpha-y")),
            ("${B:-dflt}", Ok("dflt")),
            ("${EMPTY:-dflt}", Ok("dflt")),
            ("${EMPTY}", Ok("")),
            ("$$A", Ok("$A")),
            ("cost $5", Ok("cost $5")),
            ("${B}", Err(EnvError::Unset("B".into()))),
            ("${A", Err(EnvError::Malformed("missing closing '}'".into()))),
            (
                "${A-B}",
                Err(EnvError::Malformed("invalid variable name \"A-B\"".into())),
            ),
        ];
        for (input, want) in cases {
            let got = expand_with(input, env);
            assert_eq!(
                got.as_deref().map_err(Clone::clone),
                want.clone(),
                "input {input}"
            );
        }
    }
}
