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

fn defaults() -> &'static HashMap<String, Price> {
    static TABLE: OnceLock<HashMap<String, Price>> = OnceLock::new();
    TABLE.get_or_init(|| {
        // The file is part of the binary and covered by a test, so a parse
        // failure is a build defect; fall back to an empty table regardless.
        toml::from_str::<PriceFile>(include_str!("../../assets/prices.toml"))
            .map(|f| f.prices)
            .unwrap_or_default()
    })
}

/// The shipped default price for an upstream model id, if there is one.
pub fn default_price(model: &str) -> Option<Price> {
    defaults().get(model).copied()
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
