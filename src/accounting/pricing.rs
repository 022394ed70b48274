//! Prices and cost arithmetic.
//!
//! Prices are USD per 1M tokens. The shipped defaults live in
//! `assets/prices.toml` (dated) and apply to a model without a configured price.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::api::usage::Usage;

/// Price of one model, USD per 1M tokens (plus an optional per-request fee).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Cache-read input tokens; defaults to `input` when absent.
    pub cached_input: Option<f64>,
    /// Cache-write input tokens; defaults to `input` when absent.
    pub cache_write: Option<f64>,
    /// USD added to every request.
    #[serde(default)]
    pub per_request: f64,
}

impl Price {
    /// The named numeric fields, for validation.
    pub fn fields(&self) -> [(&'static str, f64); 5] {
        [
            ("input", self.input),
            ("output", self.output),
            ("cached_input", self.cached_input.unwrap_or(0.0)),
            ("cache_write", self.cache_write.unwrap_or(0.0)),
            ("per_request", self.per_request),
        ]
    }

    /// Cost in USD of one request with the given normalised usage.
    ///
    /// `usage.prompt_tokens` counts all input (cached and cache-write included);
    /// `completion_tokens` counts all output (reasoning included).
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = usage.cached_tokens.min(usage.prompt_tokens);
        let cache_write = usage.cache_write_tokens.min(usage.prompt_tokens - cached);
        let fresh = usage.prompt_tokens - cached - cache_write;
        let micro = fresh as f64 * self.input
            + cached as f64 * self.cached_input.unwrap_or(self.input)
            + cache_write as f64 * self.cache_write.unwrap_or(self.input)
            + usage.completion_tokens as f64 * self.output;
        micro / 1_000_000.0 + self.per_request
    }
}

#[derive(Deserialize)]
struct PriceFile {
    #[allow(dead_code)]
    as_of: String,
    prices: HashMap<String, Price>,
}

/// The shipped table: by exact id, and by [`canonical_model_id`].
struct Table {
    exact: HashMap<String, Price>,
    canonical: HashMap<String, Price>,
}

fn defaults() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        // The file is part of the binary and covered by a test, so a parse
        // failure is a build defect; fall back to an empty table regardless.
        let exact = toml::from_str::<PriceFile>(include_str!("../../assets/prices.toml"))
            .map(|f| f.prices)
            .unwrap_or_default();
        let canonical = exact.iter().map(|(k, p)| (canonical_model_id(k), *p)).collect();
        Table { exact, canonical }
    })
}

/// The shipped default price for an upstream model id, if there is one:
/// the exact id, else the id's canonical form (see [`canonical_model_id`]),
/// so `claude-opus-4-8`, `claude-opus-4.8-20260528`,
/// `anthropic/claude-opus-4-8@20260528` and `gpt-5.4-mini-2026-03-05` find
/// `claude-opus-4.8` and `gpt-5.4-mini`.
pub fn default_price(model: &str) -> Option<Price> {
    let t = defaults();
    if let Some(p) = t.exact.get(model) {
        return Some(*p);
    }
    t.canonical.get(&canonical_model_id(model)).copied()
}

/// The form model ids are compared in for prices:
/// 1. lower case; a leading `provider/` path (`anthropic/`, `openai/`, ...) dropped;
/// 2. one version suffix dropped: `-YYYY-MM-DD`, `-YYYYMMDD`, `@YYYYMMDD`
///    (Vertex AI), `@latest` or `-latest`;
/// 3. a dash between two short numbers is a dot (`claude-opus-4-8` ->
///    `claude-opus-4.8`, `claude-3-5-haiku` -> `claude-3.5-haiku`).
///
/// So the dashed and dotted Claude forms and dated snapshots are one id.
pub fn canonical_model_id(model: &str) -> String {
    let lower = model.trim().to_ascii_lowercase();
    let mut m = lower.rsplit('/').next().unwrap_or(&lower);
    let is_digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((head, tail)) = m.rsplit_once('@') {
        if is_digits(tail, 8) || tail == "latest" || tail.is_empty() {
            m = head;
        }
    } else if let Some(head) = m.strip_suffix("-latest") {
        m = head;
    } else if m.len() > 11 && m.as_bytes()[m.len() - 11] == b'-' {
        let d = &m[m.len() - 10..];
        let dated = is_digits(&d[..4], 4)
            && &d[4..5] == "-"
            && is_digits(&d[5..7], 2)
            && &d[7..8] == "-"
            && is_digits(&d[8..], 2);
        if dated {
            m = &m[..m.len() - 11];
        }
    }
    if m.len() > 9 && is_digits(&m[m.len() - 8..], 8) && m.as_bytes()[m.len() - 9] == b'-' {
        m = &m[..m.len() - 9];
    }
    let parts: Vec<&str> = m.split('-').collect();
    let short_num = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    let mut out = String::with_capacity(m.len());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            let join_dot = short_num(parts[i - 1]) && short_num(p);
            out.push(if join_dot { '.' } else { '-' });
        }
        out.push_str(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_table_parses_and_has_required_models() {
        let t: PriceFile = toml::from_str(include_str!("../../assets/prices.toml")).expect("prices.toml");
        for (m, i, o) in [
            ("gpt-5.5", 5.0, 30.0),
            ("gpt-5.4", 2.5, 15.0),
            ("gpt-5.4-mini", 0.4, 1.6),
            ("claude-opus-4.7", 15.0, 75.0),
            ("deepseek-v4-pro", 0.14, 0.28),
        ] {
            let p = t.prices[m];
            assert_eq!((p.input, p.output), (i, o), "{m}");
        }
    }

    #[test]
    fn canonical_ids() {
        for (id, want) in [
            ("claude-opus-4-8", "claude-opus-4.8"),
            ("claude-opus-4.8", "claude-opus-4.8"),
            ("claude-opus-4-8-20260528", "claude-opus-4.8"),
            ("claude-opus-4-8@20260528", "claude-opus-4.8"),
            ("anthropic/claude-opus-4-8", "claude-opus-4.8"),
            ("Claude-Sonnet-4-6-latest", "claude-sonnet-4.6"),
            ("claude-3-5-haiku-20241022", "claude-3.5-haiku"),
            ("gpt-5.4-mini-2026-03-05", "gpt-5.4-mini"),
            ("gpt-4o-2024-08-06", "gpt-4o"),
            ("gpt-5.4", "gpt-5.4"),
            ("o4-mini", "o4-mini"),
            ("deepseek-v4-pro", "deepseek-v4-pro"),
            ("gemini-2.5-flash", "gemini-2.5-flash"),
            ("text-embedding-3-small", "text-embedding-3-small"),
            ("my-model-12-345", "my-model-12-345"),
        ] {
            assert_eq!(canonical_model_id(id), want, "{id}");
        }
    }

    #[test]
    fn lookup_tolerates_dashes_dots_and_dates() {
        let opus = default_price("claude-opus-4.8").expect("claude-opus-4.8 is shipped");
        for id in [
            "claude-opus-4-8",
            "claude-opus-4-8-20260528",
            "claude-opus-4-8@20260528",
            "claude-opus-4-8-latest",
            "anthropic/claude-opus-4.8",
        ] {
            assert_eq!(default_price(id), Some(opus), "{id}");
        }
        assert_eq!(
            default_price("gpt-5.4-mini-2026-03-05"),
            default_price("gpt-5.4-mini")
        );
        // Claude Code 2.1's default model, in its dashed form.
        assert_eq!(
            default_price("claude-opus-5-5").map(|p| (p.input, p.output)),
            Some((4.0, 20.0))
        );
        assert_eq!(
            default_price("claude-haiku-4-5-20251001"),
            default_price("claude-haiku-4.5")
        );
        assert!(default_price("gpt-5.4-mini").is_some());
        assert_eq!(default_price("no-such-model-2026-03-05"), None);
    }

    #[test]
    fn cost_uses_cached_rate() {
        let p = Price {
            input: 2.0,
            output: 10.0,
            cached_input: Some(0.5),
            cache_write: None,
            per_request: 0.0,
        };
        let u = Usage {
            prompt_tokens: 1_000_000,
            cached_tokens: 400_000,
            completion_tokens: 100_000,
            ..Default::default()
        };
        // 600k fresh * 2 + 400k cached * 0.5 + 100k * 10 = 1.2 + 0.2 + 1.0
        assert!((p.cost(&u) - 2.4).abs() < 1e-9);
    }

    #[test]
    fn cost_cache_write_and_fee() {
        let p = Price {
            input: 3.0,
            output: 15.0,
            cached_input: Some(0.3),
            cache_write: Some(3.75),
            per_request: 0.001,
        };
        let u = Usage {
            prompt_tokens: 10_000,
            cached_tokens: 2_000,
            cache_write_tokens: 3_000,
            completion_tokens: 1_000,
            ..Default::default()
        };
        let want = (5_000.0 * 3.0 + 2_000.0 * 0.3 + 3_000.0 * 3.75 + 1_000.0 * 15.0) / 1e6 + 0.001;
        assert!((p.cost(&u) - want).abs() < 1e-12);
    }
}
