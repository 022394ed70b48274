//! `switchyard audit`: the cost audit a team runs before adopting the gateway.
//!
//! Input: the team's request log, one JSON object per line: an OpenAI chat
//! request body plus the `model` used and the `usage` it got back (or the
//! wrapped shape `{"request": {...}, "response": {"model", "usage"}}`), with
//! an optional timestamp and an optional `task` label.
//!
//! Output: where the money goes by task type (classified by the routing
//! classifier, or the line's label), and what the same token counts would
//! cost as logged, all on one frontier model, all on its cheaper sibling, and
//! under a routing policy; per task and per 30-day month.
//!
//! The functions here are pure (parse a line, tally lines, summarise,
//! render); [`Auditor::run`] parses and classifies chunks of the log on all
//! cores. See `docs/audit.md`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::accounting::pricing::{default_price, Price};
use crate::api::usage::Usage;
use crate::config::{self, Config, ConfigSource};
use crate::routing::classifier::ClassifyInput;
use crate::routing::policy::Route;

/// The shipped example config: the routes, models and tiers used when no
/// `--config` is given, so the audit works out of the box.
pub const EXAMPLE_CONFIG: &str = include_str!("../../config/switchyard.example.toml");
/// Where [`EXAMPLE_CONFIG`] lives in the repository (for messages).
pub const EXAMPLE_CONFIG_PATH: &str = "config/switchyard.example.toml";
/// Default "all on one frontier model" strategy.
pub const DEFAULT_FRONTIER: &str = "gpt-5.5";
/// Default "all on its cheaper sibling" strategy.
pub const DEFAULT_SIBLING: &str = "gpt-5.4";
/// Days in the month the figures are scaled to.
pub const MONTH_DAYS: f64 = 30.0;
/// Bad lines whose number and error are reported.
pub const BAD_LINE_SAMPLES: usize = 10;
/// Bytes handed to a worker at a time.
const CHUNK_BYTES: usize = 4 << 20;
/// Value of every `${VAR}` in an audited config: the audit never calls a
/// provider, so keys and URLs only need to be well-formed.
const PLACEHOLDER_ENV: &str = "http://audit.placeholder.invalid";

/// The cost strategies, in output order.
const STRATEGIES: [&str; 4] = ["actual", "frontier", "sibling", "routing"];
const ACTUAL: usize = 0;
const FRONTIER: usize = 1;
const SIBLING: usize = 2;
const ROUTING: usize = 3;
const N_STRATEGIES: usize = STRATEGIES.len();

// ---------------------------------------------------------------------------
// Config and prices
// ---------------------------------------------------------------------------

/// Loads the config whose routes, models, tiers and prices the audit uses:
/// `path`, or the built-in example config. `${VAR}` references resolve to a
/// placeholder (the audit sends nothing anywhere). Returns the config and a
/// label for the output.
pub fn load_config(path: Option<&Path>) -> Result<(Config, String), String> {
    let placeholder = |_: &str| Some(PLACEHOLDER_ENV.to_string());
    match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| format!("cannot read config {}: {e}", p.display()))?;
            let raw =
                config::parse_toml(&text).map_err(|e| format!("invalid config {}:\n{e}", p.display()))?;
            let cfg = config::validate(raw, ConfigSource::File(p.to_path_buf()), &placeholder)
                .map_err(|e| format!("invalid config {}:\n{e}", p.display()))?;
            Ok((cfg, p.display().to_string()))
        }
        None => {
            let raw = config::parse_toml(EXAMPLE_CONFIG)
                .map_err(|e| format!("built-in example config does not parse:\n{e}"))?;
            let cfg = config::validate(
                raw,
                ConfigSource::File(PathBuf::from(EXAMPLE_CONFIG_PATH)),
                &placeholder,
            )
            .map_err(|e| format!("built-in example config is invalid:\n{e}"))?;
            Ok((cfg, format!("{EXAMPLE_CONFIG_PATH} (built in)")))
        }
    }
}

/// A `--prices` file: per-model prices that override every other price.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceOverrides {
    /// Where the prices came from (for the output).
    pub source: String,
    pub as_of: Option<String>,
    /// Model name (public name or upstream id) -> price.
    pub prices: HashMap<String, Price>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFileIn {
    as_of: Option<String>,
    #[serde(default)]
    prices: HashMap<String, Price>,
}

/// Parses a prices file in the format of `assets/prices.toml`
/// (`as_of = "..."` and `[prices."MODEL"]` tables).
pub fn parse_price_file(text: &str, source: &str) -> Result<PriceOverrides, String> {
    let f: PriceFileIn = toml::from_str(text).map_err(|e| format!("invalid prices file {source}: {e}"))?;
    if f.prices.is_empty() {
        return Err(format!("prices file {source} has no [prices.\"MODEL\"] tables"));
    }
    let mut names: Vec<&String> = f.prices.keys().collect();
    names.sort();
    for name in names {
        for (k, v) in f.prices[name].fields() {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(format!(
                    "prices file {source}: prices.\"{name}\".{k} must be a non-negative number"
                ));
            }
        }
    }
    Ok(PriceOverrides {
        source: source.to_string(),
        as_of: f.as_of,
        prices: f.prices,
    })
}

/// Reads and parses a `--prices` file.
pub fn load_price_file(path: &Path) -> Result<PriceOverrides, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read prices file {}: {e}", path.display()))?;
    parse_price_file(&text, &path.display().to_string())
}

/// `as_of` of the shipped price table.
pub fn shipped_prices_as_of() -> String {
    #[derive(Deserialize)]
    struct AsOf {
        as_of: String,
    }
    toml::from_str::<AsOf>(include_str!("../../assets/prices.toml"))
        .map(|a| a.as_of)
        .unwrap_or_else(|_| "unknown".into())
}

/// What the audit knows about one model name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelInfo {
    /// `None`: no price anywhere; the request is counted as unpriced.
    pub price: Option<Price>,
    /// The model's configured tier is the top tier.
    pub frontier: bool,
    /// The name (or its undated / unprefixed form) is a model or alias of the config.
    pub in_config: bool,
}

/// Resolves a model name to its price and tier.
///
/// The name is tried as given, without a date suffix (`gpt-5.4-2026-03-05`)
/// and without a `provider/` prefix. A `--prices` entry (by the name or the
/// config model's upstream id) wins; then the config model's price (which is
/// the shipped default for its upstream id when the config sets none); then
/// the shipped default for the name itself.
pub struct Pricer<'c> {
    cfg: &'c Config,
    overrides: Option<&'c PriceOverrides>,
    top_tier: Option<&'c str>,
}

impl<'c> Pricer<'c> {
    pub fn new(cfg: &'c Config, overrides: Option<&'c PriceOverrides>) -> Self {
        Pricer {
            cfg,
            overrides,
            top_tier: cfg.routing.tiers.last().map(String::as_str),
        }
    }

    pub fn resolve(&self, model: &str) -> ModelInfo {
        let mut candidates: Vec<&str> = vec![model];
        let tail = model.rsplit_once('/').map(|(_, t)| t);
        for c in [strip_date_suffix(model), tail, tail.and_then(strip_date_suffix)]
            .into_iter()
            .flatten()
        {
            if !c.is_empty() && !candidates.contains(&c) {
                candidates.push(c);
            }
        }
        let over = |name: &str| self.overrides.and_then(|o| o.prices.get(name).copied());
        // A config model by name, alias or upstream id.
        for c in &candidates {
            let settings = self
                .cfg
                .models
                .get(*c)
                .or_else(|| self.cfg.aliases.get(*c).and_then(|t| self.cfg.models.get(t)))
                .or_else(|| self.cfg.models.values().find(|m| m.upstream == *c));
            if let Some(ms) = settings {
                let price = over(c).or_else(|| over(&ms.upstream)).or(ms.price);
                return ModelInfo {
                    price,
                    frontier: ms.tier.as_deref().is_some_and(|t| Some(t) == self.top_tier),
                    in_config: true,
                };
            }
        }
        let price = candidates
            .iter()
            .find_map(|c| over(c).or_else(|| default_price(c)));
        ModelInfo {
            price,
            frontier: false,
            in_config: false,
        }
    }
}

/// `name-2026-03-05` or `name-20260305` -> `name`.
fn strip_date_suffix(model: &str) -> Option<&str> {
    let b = model.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if b.len() > 11 && b[b.len() - 11] == b'-' {
        let d = &b[b.len() - 10..];
        if digits(&d[..4]) && d[4] == b'-' && digits(&d[5..7]) && d[7] == b'-' && digits(&d[8..]) {
            return Some(&model[..model.len() - 11]);
        }
    }
    if b.len() > 9 && b[b.len() - 9] == b'-' && digits(&b[b.len() - 8..]) {
        return Some(&model[..model.len() - 9]);
    }
    None
}

// ---------------------------------------------------------------------------
// Parsing one line
// ---------------------------------------------------------------------------

/// One parsed log line: what the audit needs, borrowed from the line where
/// it can be.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditLine<'a> {
    /// The model that served the request.
    pub model: Cow<'a, str>,
    pub usage: Usage,
    /// The line's `task` label, if any.
    pub task: Option<Cow<'a, str>>,
    /// Unix seconds.
    pub timestamp: Option<f64>,
    /// Whether the line carries a `messages` array.
    pub has_messages: bool,
    /// The classifier's view of the request (mirrors `routing::input_from_chat`).
    pub system: Cow<'a, str>,
    pub last_user: Cow<'a, str>,
    pub has_tools: bool,
    pub json_schema: bool,
    pub turns: usize,
    pub context: Cow<'a, str>,
}

impl AuditLine<'_> {
    pub fn classify_input(&self) -> ClassifyInput<'_> {
        ClassifyInput {
            system: &self.system,
            last_user: &self.last_user,
            has_tools: self.has_tools,
            json_schema: self.json_schema,
            turns: self.turns,
            context: &self.context,
        }
    }
}

/// Parses one log line. Accepts the flat shape (request body with `model`
/// and `usage`) and the wrapped shape (`request` / `response`), OpenAI and
/// Anthropic usage fields, `created` / `timestamp` and `task`.
pub fn parse_line(line: &[u8]) -> Result<AuditLine<'_>, String> {
    if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("not a JSON object".into());
    }
    let top: RawLine<'_> = serde_json::from_slice(line).map_err(|e| {
        if e.is_data() {
            e.to_string()
        } else {
            format!("invalid JSON: {e}")
        }
    })?;
    let RawLine {
        model: top_model,
        messages: top_messages,
        tools: top_tools,
        functions: top_functions,
        response_format: top_format,
        usage: top_usage,
        task: top_task,
        created: top_created,
        timestamp: top_timestamp,
        request,
        response,
    } = top;
    let request = request.map(|b| *b);
    let response = response.unwrap_or_default();
    let (req_model, messages, tools, format, req_usage, req_task, req_ts) = match request {
        Some(r) => (
            r.model,
            r.messages.or(top_messages),
            r.tools.0 || r.functions.0 || top_tools.0 || top_functions.0,
            r.response_format.0 || top_format.0,
            r.usage,
            r.task,
            r.timestamp.or(r.created),
        ),
        None => (
            None,
            top_messages,
            top_tools.0 || top_functions.0,
            top_format.0,
            None,
            None,
            None,
        ),
    };
    let model = response
        .model
        .or(top_model)
        .or(req_model)
        .map(|s| s.0)
        .filter(|m| !m.is_empty())
        .ok_or("no model: expected a top-level \"model\" or response.model")?;
    let usage = top_usage
        .or(response.usage)
        .or(req_usage)
        .ok_or("no usage: expected a top-level \"usage\" or response.usage")?
        .normalise()?;
    let timestamp = top_timestamp
        .or(top_created)
        .or(req_ts)
        .or(response.created)
        .map(|t| t.0);
    let mut out = AuditLine {
        model,
        usage,
        task: top_task.or(req_task).map(|t| t.0).filter(|t| !t.is_empty()),
        timestamp,
        has_messages: messages.is_some(),
        system: Cow::Borrowed(""),
        last_user: Cow::Borrowed(""),
        has_tools: tools,
        json_schema: format,
        turns: 0,
        context: Cow::Borrowed(""),
    };
    if let Some(list) = messages {
        out.turns = list.len();
        let mut last_user = None;
        let mut previous = None;
        for m in list {
            let role = m.role.as_ref().map_or("", |r| r.0.as_ref());
            if m.tool_calls.is_some() {
                out.has_tools = true;
            }
            match role {
                "system" | "developer" => {
                    let text = match m.content {
                        Content::Absent => continue,
                        Content::Null => Cow::Borrowed(""),
                        Content::Text(t) => t,
                    };
                    if out.system.is_empty() {
                        out.system = text;
                    } else {
                        let s = out.system.to_mut();
                        s.push('\n');
                        s.push_str(&text);
                    }
                }
                "user" => previous = last_user.replace(m.content),
                "tool" | "function" => out.has_tools = true,
                _ => {}
            }
        }
        if let Some(Content::Text(t)) = last_user {
            out.last_user = t;
        }
        if let Some(Content::Text(t)) = previous {
            if out.last_user.len() < crate::routing::classifier::CONTEXT_IF_SHORTER {
                out.context = t;
            }
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct RawLine<'a> {
    #[serde(borrow, default)]
    model: Option<BStr<'a>>,
    #[serde(borrow, default)]
    messages: Option<Vec<RawMessage<'a>>>,
    #[serde(default)]
    tools: NonEmptyArray,
    #[serde(default)]
    functions: NonEmptyArray,
    #[serde(default)]
    response_format: JsonFormat,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(borrow, default)]
    task: Option<BStr<'a>>,
    #[serde(default)]
    created: Option<Timestamp>,
    #[serde(default)]
    timestamp: Option<Timestamp>,
    #[serde(borrow, default)]
    request: Option<Box<RawLine<'a>>>,
    #[serde(borrow, default)]
    response: Option<RawResponse<'a>>,
}

#[derive(Deserialize, Default)]
struct RawResponse<'a> {
    #[serde(borrow, default)]
    model: Option<BStr<'a>>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    created: Option<Timestamp>,
}

#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow, default)]
    role: Option<BStr<'a>>,
    #[serde(borrow, default)]
    content: Content<'a>,
    #[serde(default)]
    tool_calls: Option<IgnoredAny>,
}

/// The `visit_bool`, `visit_i64`, `visit_u64` and `visit_f64` methods of a
/// visitor that answers `$v` to every one of them.
macro_rules! numbers_give {
    ($v:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($v)
        }
    };
}

/// A string borrowed from the line when it has no escapes.
#[derive(Debug)]
struct BStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for BStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(V).map(BStr)
    }
}

/// Any JSON value; `Some` only for a string.
struct AnyStr<'a>(Option<Cow<'a, str>>);

/// Visitor that accepts any value, keeps strings and skips the rest.
struct AnyStrVisitor;

impl<'de> Visitor<'de> for AnyStrVisitor {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }
    numbers_give!(None);
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for AnyStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyStrVisitor).map(AnyStr)
    }
}

/// A message `content`: absent, null, or its text (a string, or the text
/// parts of an array joined by "\n", as `routing::input_from_chat` reads it).
/// Other shapes are read as empty text.
#[derive(Debug, Default)]
enum Content<'a> {
    #[default]
    Absent,
    Null,
    Text(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, an array of content parts or null")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Content::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Content::Null)
            }
            numbers_give!(Content::Text(Cow::Borrowed("")));
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Content::Text(Cow::Borrowed("")))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut text: Option<Cow<'de, str>> = None;
                while let Some(part) = seq.next_element::<Part<'de>>()? {
                    if let Some(t) = part.0 {
                        match &mut text {
                            None => text = Some(t),
                            Some(acc) => {
                                let s = acc.to_mut();
                                s.push('\n');
                                s.push_str(&t);
                            }
                        }
                    }
                }
                Ok(Content::Text(text.unwrap_or(Cow::Borrowed(""))))
            }
        }
        d.deserialize_any(V)
    }
}

/// One content part: a string, or an object whose `text` is a string.
struct Part<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Part<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Cow<'de, str>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a content part")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut text = None;
                while let Some(k) = map.next_key::<BStr<'de>>()? {
                    if k.0 == "text" {
                        text = map.next_value::<AnyStr<'de>>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(text)
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                AnyStrVisitor.visit_borrowed_str(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                AnyStrVisitor.visit_str(v)
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                AnyStrVisitor.visit_string(v)
            }
            numbers_give!(None);
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                AnyStrVisitor.visit_seq(seq)
            }
        }
        d.deserialize_any(V).map(Part)
    }
}

/// Any value; true for an array with at least one element (`tools`, `functions`).
#[derive(Default)]
struct NonEmptyArray(bool);

impl<'de> Deserialize<'de> for NonEmptyArray {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
                let mut n = 0usize;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(n > 0)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
                AnyStrVisitor.visit_map(map).map(|_| false)
            }
            fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
                Ok(false)
            }
            numbers_give!(false);
            fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
                Ok(false)
            }
        }
        d.deserialize_any(V).map(NonEmptyArray)
    }
}

/// Any value; true for `{"type": "json_schema" | "json_object", ...}` (`response_format`).
#[derive(Default)]
struct JsonFormat(bool);

impl<'de> Deserialize<'de> for JsonFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
                let mut json = false;
                while let Some(k) = map.next_key::<BStr<'de>>()? {
                    if k.0 == "type" {
                        let t = map.next_value::<AnyStr<'de>>()?.0;
                        json = matches!(t.as_deref(), Some("json_schema" | "json_object"));
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(json)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
                AnyStrVisitor.visit_seq(seq).map(|_| false)
            }
            fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
                Ok(false)
            }
            numbers_give!(false);
            fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
                Ok(false)
            }
        }
        d.deserialize_any(V).map(JsonFormat)
    }
}

/// A timestamp: Unix seconds (or milliseconds, when above 1e11) as a number
/// or numeric string, or an RFC 3339 date-time. Held as Unix seconds.
#[derive(Debug, Clone, Copy)]
struct Timestamp(f64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = f64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Unix seconds or an RFC 3339 date-time")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                unix_number(v).ok_or_else(|| E::custom(format!("timestamp {v} is not a Unix time")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
                parse_timestamp(v).ok_or_else(|| {
                    E::custom(format!(
                        "timestamp {v:?} is not RFC 3339 (2026-11-01T12:00:00Z) or Unix time"
                    ))
                })
            }
        }
        d.deserialize_any(V).map(Timestamp)
    }
}

fn unix_number(v: f64) -> Option<f64> {
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    Some(if v > 1e11 { v / 1000.0 } else { v })
}

/// Parses Unix seconds / milliseconds, or an RFC 3339 date-time (`T` or a
/// space between date and time; no offset means UTC; a date alone is
/// midnight UTC). Returns Unix seconds.
pub fn parse_timestamp(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return unix_number(v);
    }
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = crate::accounting::report::days_from_civil(y, mo, d)? as f64 * 86_400.0;
    let mut i = 10;
    if i == b.len() {
        return Some(secs);
    }
    if !matches!(b[i], b'T' | b't' | b' ') {
        return None;
    }
    i += 1;
    let (h, mi) = (num(i..i + 2)?, num(i + 3..i + 5)?);
    if b.get(i + 2) != Some(&b':') || h > 23 || mi > 59 {
        return None;
    }
    i += 5;
    let mut sec = 0.0;
    if b.get(i) == Some(&b':') {
        sec = num(i + 1..i + 3)? as f64;
        if sec > 60.0 {
            return None;
        }
        i += 3;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            if end == start {
                return None;
            }
            sec += s.get(i..end)?.parse::<f64>().ok()?;
            i = end;
        }
    }
    secs += (h * 3600 + mi * 60) as f64 + sec;
    match b.get(i) {
        None => Some(secs),
        Some(b'Z' | b'z') if i + 1 == b.len() => Some(secs),
        Some(&sign @ (b'+' | b'-')) => {
            let oh = num(i + 1..i + 3)?;
            let om = match (b.get(i + 3), b.len() - i) {
                (Some(b':'), 6) => num(i + 4..i + 6)?,
                (_, 5) => num(i + 3..i + 5)?,
                (_, 3) => 0,
                _ => return None,
            };
            let off = (oh * 3600 + om * 60) as f64;
            Some(if sign == b'+' { secs - off } else { secs + off })
        }
        _ => None,
    }
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (the epoch for an instant chrono cannot hold).
pub fn format_timestamp(secs: f64) -> String {
    let t = chrono::DateTime::from_timestamp(secs.floor() as i64, 0).unwrap_or_default();
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A token count: a non-negative integer (an integral float is accepted).
#[derive(Debug, Clone, Copy, Default)]
struct Count(u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative token count")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
                u64::try_from(v).map_err(|_| E::custom(format!("token count {v} is negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
                if v >= 0.0 && v.fract() == 0.0 && v < 1e15 {
                    Ok(v as u64)
                } else {
                    Err(E::custom(format!(
                        "token count {v} is not a non-negative integer"
                    )))
                }
            }
        }
        d.deserialize_any(V).map(Count)
    }
}

#[derive(Deserialize, Default)]
struct RawUsage {
    // OpenAI chat completions (and DeepSeek).
    prompt_tokens: Option<Count>,
    completion_tokens: Option<Count>,
    prompt_tokens_details: Option<RawDetails>,
    completion_tokens_details: Option<RawDetails>,
    prompt_cache_hit_tokens: Option<Count>,
    // Anthropic, and OpenAI's Responses API.
    input_tokens: Option<Count>,
    output_tokens: Option<Count>,
    cache_read_input_tokens: Option<Count>,
    cache_creation_input_tokens: Option<Count>,
    input_tokens_details: Option<RawDetails>,
    output_tokens_details: Option<RawDetails>,
}

#[derive(Deserialize, Default)]
struct RawDetails {
    cached_tokens: Option<Count>,
    reasoning_tokens: Option<Count>,
}

impl RawUsage {
    /// The gateway's normalised usage: `prompt_tokens` counts all input
    /// (cached and cache-write included).
    fn normalise(self) -> Result<Usage, String> {
        let n = |c: Option<Count>| c.map_or(0, |c| c.0);
        let detail = |d: &Option<RawDetails>, f: fn(&RawDetails) -> Option<Count>| d.as_ref().and_then(f);
        if self.prompt_tokens.is_some() || self.completion_tokens.is_some() {
            return Ok(Usage {
                prompt_tokens: n(self.prompt_tokens),
                completion_tokens: n(self.completion_tokens),
                cached_tokens: n(
                    detail(&self.prompt_tokens_details, |d| d.cached_tokens).or(self.prompt_cache_hit_tokens)
                ),
                cache_write_tokens: 0,
                reasoning_tokens: n(detail(&self.completion_tokens_details, |d| d.reasoning_tokens)),
            });
        }
        if self.input_tokens.is_some() || self.output_tokens.is_some() {
            let input = n(self.input_tokens);
            let reasoning = n(detail(&self.output_tokens_details, |d| d.reasoning_tokens));
            if self.cache_read_input_tokens.is_some() || self.cache_creation_input_tokens.is_some() {
                // Anthropic: input_tokens excludes cache reads and writes.
                let read = n(self.cache_read_input_tokens);
                let write = n(self.cache_creation_input_tokens);
                return Ok(Usage {
                    prompt_tokens: input.saturating_add(read).saturating_add(write),
                    completion_tokens: n(self.output_tokens),
                    cached_tokens: read,
                    cache_write_tokens: write,
                    reasoning_tokens: reasoning,
                });
            }
            // OpenAI Responses API: input_tokens includes cached tokens.
            return Ok(Usage {
                prompt_tokens: input,
                completion_tokens: n(self.output_tokens),
                cached_tokens: n(detail(&self.input_tokens_details, |d| d.cached_tokens)),
                cache_write_tokens: 0,
                reasoning_tokens: reasoning,
            });
        }
        Err(
            "usage has no token counts (prompt_tokens / completion_tokens or input_tokens / output_tokens)"
                .into(),
        )
    }
}

// ---------------------------------------------------------------------------
// Tallying
// ---------------------------------------------------------------------------

/// Cost figures of one strategy over a set of requests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Figures {
    /// USD over the requests with a price.
    cost: f64,
    unpriced: u64,
    /// Requests served by a top-tier model.
    frontier: u64,
    /// Over requests priced both as logged and under this strategy:
    /// the as-logged cost and this strategy's cost (for savings).
    both_actual: f64,
    both_cost: f64,
}

impl Figures {
    fn add(&mut self, cost: Option<f64>, frontier: bool, actual: Option<f64>) {
        match cost {
            Some(c) => self.cost += c,
            None => self.unpriced += 1,
        }
        if frontier {
            self.frontier += 1;
        }
        if let (Some(a), Some(c)) = (actual, cost) {
            self.both_actual += a;
            self.both_cost += c;
        }
    }

    fn merge(&mut self, o: &Figures) {
        self.cost += o.cost;
        self.unpriced += o.unpriced;
        self.frontier += o.frontier;
        self.both_actual += o.both_actual;
        self.both_cost += o.both_cost;
    }
}

#[derive(Debug, Clone, Default)]
struct TaskTally {
    requests: u64,
    labelled: u64,
    prompt: u64,
    cached: u64,
    cache_write: u64,
    completion: u64,
    reasoning: u64,
    figures: [Figures; N_STRATEGIES],
    /// Requests per routed model (index into `Config::models`).
    routed: Vec<u64>,
}

#[derive(Debug, Clone)]
struct ModelTally {
    info: ModelInfo,
    /// Price without `--prices`.
    base_price: Option<Price>,
    requests: u64,
    cost: f64,
    base_cost: f64,
    base_unpriced: u64,
}

/// Running totals over part of a log; tallies of different parts merge.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Lines read (blank lines included, for line numbers).
    lines: u64,
    requests: u64,
    bad: u64,
    /// (chunk, line within chunk, error), the first few.
    bad_samples: Vec<(u64, u64, String)>,
    tasks: Vec<TaskTally>,
    models: HashMap<String, ModelTally>,
    unknown_labels: HashMap<String, u64>,
    timestamped: u64,
    ts_min: f64,
    ts_max: f64,
    /// (chunk index, lines in it).
    chunk_lines: Vec<(u64, u64)>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.lines += o.lines;
        self.requests += o.requests;
        self.bad += o.bad;
        self.bad_samples.extend(o.bad_samples);
        self.bad_samples.sort_by_key(|s| (s.0, s.1));
        self.bad_samples.truncate(BAD_LINE_SAMPLES);
        if self.tasks.len() < o.tasks.len() {
            self.tasks.resize(o.tasks.len(), TaskTally::default());
        }
        for (t, ot) in self.tasks.iter_mut().zip(&o.tasks) {
            t.requests += ot.requests;
            t.labelled += ot.labelled;
            t.prompt += ot.prompt;
            t.cached += ot.cached;
            t.cache_write += ot.cache_write;
            t.completion += ot.completion;
            t.reasoning += ot.reasoning;
            for (f, of) in t.figures.iter_mut().zip(&ot.figures) {
                f.merge(of);
            }
            if t.routed.len() < ot.routed.len() {
                t.routed.resize(ot.routed.len(), 0);
            }
            for (r, or) in t.routed.iter_mut().zip(&ot.routed) {
                *r += or;
            }
        }
        for (name, om) in o.models {
            match self.models.get_mut(&name) {
                Some(m) => {
                    m.requests += om.requests;
                    m.cost += om.cost;
                    m.base_cost += om.base_cost;
                    m.base_unpriced += om.base_unpriced;
                }
                None => {
                    self.models.insert(name, om);
                }
            }
        }
        for (k, v) in o.unknown_labels {
            *self.unknown_labels.entry(k).or_default() += v;
        }
        if o.timestamped > 0 {
            if self.timestamped == 0 {
                self.ts_min = o.ts_min;
                self.ts_max = o.ts_max;
            } else {
                self.ts_min = self.ts_min.min(o.ts_min);
                self.ts_max = self.ts_max.max(o.ts_max);
            }
            self.timestamped += o.timestamped;
        }
        self.chunk_lines.extend(o.chunk_lines);
    }
}

/// What to audit the log against.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub route: String,
    pub frontier: String,
    pub sibling: String,
    /// `--days`: how many days the log covers (overrides the timestamp span).
    pub days: Option<f64>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            route: "auto".into(),
            frontier: DEFAULT_FRONTIER.into(),
            sibling: DEFAULT_SIBLING.into(),
            days: None,
        }
    }
}

/// Classifies and prices log lines against one config.
pub struct Auditor<'c> {
    cfg: &'c Config,
    route: &'c Route,
    opts: AuditOptions,
    pricer: Pricer<'c>,
    base: Pricer<'c>,
    overrides: Option<&'c PriceOverrides>,
    frontier: ModelInfo,
    sibling: ModelInfo,
    /// Per config model (same index as `Config::models`).
    config_models: Vec<ModelInfo>,
}

impl<'c> Auditor<'c> {
    pub fn new(
        cfg: &'c Config,
        overrides: Option<&'c PriceOverrides>,
        opts: AuditOptions,
    ) -> Result<Auditor<'c>, String> {
        let route = cfg.routing.routes.get(&opts.route).ok_or_else(|| {
            let names: Vec<&str> = cfg.routing.routes.keys().map(String::as_str).collect();
            format!(
                "route {:?} does not exist in this config; its routes are [{}]",
                opts.route,
                names.join(", ")
            )
        })?;
        if let Some(d) = opts.days {
            if !(d > 0.0 && d.is_finite()) {
                return Err(format!("--days {d}: must be a positive number of days"));
            }
        }
        let pricer = Pricer::new(cfg, overrides);
        let base = Pricer::new(cfg, None);
        let config_models = cfg.models.keys().map(|m| pricer.resolve(m)).collect();
        Ok(Auditor {
            cfg,
            route,
            frontier: pricer.resolve(&opts.frontier),
            sibling: pricer.resolve(&opts.sibling),
            opts,
            pricer,
            base,
            overrides,
            config_models,
        })
    }

    fn tasks(&self) -> &[String] {
        self.cfg.routing.classifier.tasks()
    }

    fn new_tally(&self) -> Tally {
        Tally {
            tasks: vec![
                TaskTally {
                    routed: vec![0; self.cfg.models.len()],
                    ..Default::default()
                };
                self.tasks().len()
            ],
            ..Default::default()
        }
    }

    /// Tallies one line (already known not to be blank).
    fn tally_line(&self, line: &[u8], t: &mut Tally) -> Result<(), String> {
        let l = parse_line(line)?;
        let forced = match &l.task {
            Some(label) => {
                let i = self.tasks().iter().position(|t| t == label);
                if i.is_none() {
                    match t.unknown_labels.get_mut(label.as_ref()) {
                        Some(n) => *n += 1,
                        None => {
                            t.unknown_labels.insert(label.to_string(), 1);
                        }
                    }
                }
                i
            }
            None => None,
        };
        if !l.has_messages && forced.is_none() {
            return Err("no messages to classify (and no known task label)".into());
        }
        let d = self.cfg.routing.decide(self.route, &l.classify_input(), forced);
        let routed = d.chain.first().and_then(|m| self.cfg.models.get_index_of(m));
        let Some(tt) = t.tasks.get_mut(d.task) else {
            return Err(format!("task index {} out of range", d.task));
        };
        if !t.models.contains_key(l.model.as_ref()) {
            let info = self.pricer.resolve(&l.model);
            let base_price = match self.overrides {
                Some(_) => self.base.resolve(&l.model).price,
                None => info.price,
            };
            t.models.insert(
                l.model.to_string(),
                ModelTally {
                    info,
                    base_price,
                    requests: 0,
                    cost: 0.0,
                    base_cost: 0.0,
                    base_unpriced: 0,
                },
            );
        }
        let Some(model) = t.models.get_mut(l.model.as_ref()) else {
            return Err("internal: model tally missing".into());
        };
        let u = &l.usage;
        let actual = model.info.price.map(|p| p.cost(u));
        model.requests += 1;
        model.cost += actual.unwrap_or(0.0);
        match model.base_price {
            Some(p) => model.base_cost += p.cost(u),
            None => model.base_unpriced += 1,
        }
        let routed_info = routed.and_then(|i| self.config_models.get(i));
        let plan: [(Option<f64>, bool); N_STRATEGIES] = [
            (actual, model.info.frontier),
            (self.frontier.price.map(|p| p.cost(u)), self.frontier.frontier),
            (self.sibling.price.map(|p| p.cost(u)), self.sibling.frontier),
            (
                routed_info.and_then(|m| m.price).map(|p| p.cost(u)),
                routed_info.is_some_and(|m| m.frontier),
            ),
        ];
        for (f, (cost, frontier)) in tt.figures.iter_mut().zip(plan) {
            f.add(cost, frontier, actual);
        }
        if let Some(slot) = routed.and_then(|i| tt.routed.get_mut(i)) {
            *slot += 1;
        }
        tt.requests += 1;
        tt.labelled += u64::from(forced.is_some());
        tt.prompt += u.prompt_tokens;
        tt.cached += u.cached_tokens;
        tt.cache_write += u.cache_write_tokens;
        tt.completion += u.completion_tokens;
        tt.reasoning += u.reasoning_tokens;
        t.requests += 1;
        if let Some(ts) = l.timestamp {
            if t.timestamped == 0 {
                t.ts_min = ts;
                t.ts_max = ts;
            } else {
                t.ts_min = t.ts_min.min(ts);
                t.ts_max = t.ts_max.max(ts);
            }
            t.timestamped += 1;
        }
        Ok(())
    }

    /// Tallies a chunk of whole lines; `chunk` numbers it for line numbers.
    fn tally_chunk(&self, chunk: u64, data: &[u8], t: &mut Tally) {
        let mut local = 0u64;
        let mut samples = 0usize;
        let mut rest = data;
        while !rest.is_empty() {
            let (line, next) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            rest = next;
            local += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Err(e) = self.tally_line(line, t) {
                t.bad += 1;
                if samples < BAD_LINE_SAMPLES {
                    samples += 1;
                    t.bad_samples.push((chunk, local, e));
                }
            }
        }
        t.lines += local;
        t.chunk_lines.push((chunk, local));
        if t.bad_samples.len() > BAD_LINE_SAMPLES {
            t.bad_samples.sort_by_key(|s| (s.0, s.1));
            t.bad_samples.truncate(BAD_LINE_SAMPLES);
        }
    }

    /// Tallies a whole log in memory on the calling thread (tests, small inputs).
    pub fn tally_bytes(&self, data: &[u8]) -> Tally {
        let mut t = self.new_tally();
        self.tally_chunk(0, data, &mut t);
        t
    }

    /// Reads the log and tallies it on `workers` threads (0: one per core).
    /// `progress` is called with the bytes read so far.
    pub fn run(
        &self,
        input: &mut dyn Read,
        workers: usize,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Tally, String> {
        self.run_chunked(input, workers, CHUNK_BYTES, progress)
    }

    /// [`Auditor::run`] with a given chunk size (at least one byte).
    pub fn run_chunked(
        &self,
        input: &mut dyn Read,
        workers: usize,
        chunk_bytes: usize,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Tally, String> {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            workers
        };
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(workers * 2);
            let rx = Arc::new(Mutex::new(rx));
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let rx = Arc::clone(&rx);
                    s.spawn(move || {
                        let mut t = self.new_tally();
                        loop {
                            let next = match rx.lock() {
                                Ok(guard) => guard.recv(),
                                Err(_) => break,
                            };
                            match next {
                                Ok((i, buf)) => self.tally_chunk(i, &buf, &mut t),
                                Err(_) => break,
                            }
                        }
                        t
                    })
                })
                .collect();
            let read = read_chunks(input, chunk_bytes.max(1), &tx, progress);
            drop(tx);
            let mut total = self.new_tally();
            for h in handles {
                match h.join() {
                    Ok(t) => total.merge(t),
                    Err(_) => return Err("an audit worker thread failed".to_string()),
                }
            }
            read?;
            Ok(total)
        })
    }

    /// Turns a tally into the report.
    pub fn summarize(&self, tally: Tally, meta: ReportMeta) -> AuditReport {
        summarize(self, tally, meta)
    }
}

/// Reads `input` in chunks of whole lines and sends them, numbered.
fn read_chunks(
    input: &mut dyn Read,
    chunk_bytes: usize,
    tx: &mpsc::SyncSender<(u64, Vec<u8>)>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), String> {
    let mut carry: Vec<u8> = Vec::new();
    let mut index = 0u64;
    let mut total = 0u64;
    let mut eof = false;
    while !eof {
        let mut buf = Vec::with_capacity(carry.len() + chunk_bytes);
        buf.append(&mut carry);
        let start = buf.len();
        buf.resize(start + chunk_bytes, 0);
        let mut filled = start;
        while filled < buf.len() {
            match input.read(&mut buf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot read the log: {e}")),
            }
        }
        total += (filled - start) as u64;
        buf.truncate(filled);
        if !eof {
            // Keep the partial last line for the next chunk.
            match memchr::memrchr(b'\n', &buf) {
                Some(i) => carry = buf.split_off(i + 1),
                None => {
                    carry = buf;
                    continue;
                }
            }
        }
        if buf.is_empty() {
            continue;
        }
        if tx.send((index, buf)).is_err() {
            return Err("the audit workers stopped early".into());
        }
        index += 1;
        progress(total);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

/// Labels of the inputs, for the report.
#[derive(Debug, Clone, Default)]
pub struct ReportMeta {
    pub file: String,
    pub config: String,
}

/// The audit's figures; `--json` prints this.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub file: String,
    pub config: String,
    pub route: String,
    pub prices: PricesInfo,
    /// Lines read, blank lines included.
    pub lines: u64,
    /// Lines audited.
    pub requests: u64,
    pub bad_lines: u64,
    /// The first few bad lines.
    pub bad_line_samples: Vec<BadLine>,
    /// Requests whose `task` label was used instead of the classifier.
    pub labelled_requests: u64,
    /// Labels that are not a task of the classifier (those requests were classified).
    pub unknown_task_labels: BTreeMap<String, u64>,
    pub period: PeriodInfo,
    /// The top tier: requests on its models count as "on frontier models".
    pub frontier_tier: Option<String>,
    /// Totals per strategy: `actual`, `frontier`, `sibling`, `routing`.
    pub strategies: IndexMap<String, StrategyTotals>,
    /// Per task, most expensive (as logged) first.
    pub tasks: Vec<TaskRow>,
    /// The logged models, most expensive first.
    pub models: Vec<ModelRow>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PricesInfo {
    /// `as_of` of the shipped price table.
    pub shipped_as_of: String,
    /// The `--prices` file, if any.
    pub overrides: Option<String>,
    pub overrides_as_of: Option<String>,
    /// With `--prices`: the as-logged cost at the prices without the file.
    pub actual_cost_without_overrides_usd: Option<f64>,
    pub actual_monthly_cost_without_overrides_usd: Option<f64>,
    /// Requests without a price when the file is not applied.
    pub actual_unpriced_without_overrides: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BadLine {
    pub line: u64,
    pub error: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeriodInfo {
    /// `timestamps`, `days` (from `--days`) or `log` (figures are for the log as given).
    pub basis: String,
    /// Days the log covers, when known.
    pub days: Option<f64>,
    /// Monthly = log figure x this (30 / days); null when the period is unknown.
    pub month_factor: Option<f64>,
    pub timestamped_requests: u64,
    pub first: Option<String>,
    pub last: Option<String>,
}

/// One strategy's figures over the whole log.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyTotals {
    pub label: String,
    /// The one model of `frontier` / `sibling`; the route of `routing`.
    pub model: Option<String>,
    pub route: Option<String>,
    pub cost_usd: f64,
    pub monthly_cost_usd: Option<f64>,
    /// Requests without a price under this strategy: not in `cost_usd`.
    pub unpriced_requests: u64,
    pub frontier_requests: u64,
    /// Share of requests served by top-tier models (0-1).
    pub frontier_share: f64,
    /// As-logged cost minus this strategy's cost, over requests priced under both (positive: saves).
    pub savings_usd: f64,
    pub monthly_savings_usd: Option<f64>,
    /// `savings_usd` as a share of the as-logged cost of those requests (0-1).
    pub savings_share: Option<f64>,
}

/// One strategy's figures over one task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskFigures {
    pub cost_usd: f64,
    pub monthly_cost_usd: Option<f64>,
    pub unpriced_requests: u64,
    pub frontier_requests: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    pub task: String,
    pub requests: u64,
    pub labelled_requests: u64,
    /// All input tokens (cached and cache-write included).
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    /// All output tokens (reasoning included).
    pub completion_tokens: u64,
    pub reasoning_tokens: u64,
    /// Share of the as-logged cost (0-1).
    pub share_of_actual_cost: f64,
    /// Per strategy, keyed like `AuditReport::strategies`.
    pub costs: IndexMap<String, TaskFigures>,
    /// Models the route picks for this task, most requests first.
    pub routed_to: Vec<ModelCount>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelCount {
    pub model: String,
    pub requests: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    pub model: String,
    pub requests: u64,
    /// Null: the model has no price.
    pub cost_usd: Option<f64>,
    pub monthly_cost_usd: Option<f64>,
    pub frontier: bool,
    pub in_config: bool,
}

fn summarize(a: &Auditor<'_>, mut t: Tally, meta: ReportMeta) -> AuditReport {
    // Line numbers: chunk offsets from the line counts of earlier chunks.
    t.chunk_lines.sort_unstable();
    let mut offsets = HashMap::with_capacity(t.chunk_lines.len());
    let mut acc = 0u64;
    for (i, n) in &t.chunk_lines {
        offsets.insert(*i, acc);
        acc += n;
    }
    t.bad_samples.sort_by_key(|s| (s.0, s.1));
    let bad_line_samples = t
        .bad_samples
        .iter()
        .take(BAD_LINE_SAMPLES)
        .map(|(c, l, e)| BadLine {
            line: offsets.get(c).copied().unwrap_or(0) + l,
            error: e.clone(),
        })
        .collect();

    let mut notes = Vec::new();
    let period = if let Some(days) = a.opts.days {
        PeriodInfo {
            basis: "days".into(),
            days: Some(days),
            month_factor: Some(MONTH_DAYS / days),
            timestamped_requests: t.timestamped,
            first: (t.timestamped > 0).then(|| format_timestamp(t.ts_min)),
            last: (t.timestamped > 0).then(|| format_timestamp(t.ts_max)),
        }
    } else if t.timestamped > 0 && t.ts_max > t.ts_min {
        let days = (t.ts_max - t.ts_min) / 86_400.0;
        if t.timestamped < t.requests {
            notes.push(format!(
                "{} of {} requests carry a timestamp; the period is their span",
                t.timestamped, t.requests
            ));
        }
        if days < 1.0 {
            notes.push(format!(
                "the timestamps span only {:.1} hours: the monthly figures extrapolate a short sample",
                days * 24.0
            ));
        }
        PeriodInfo {
            basis: "timestamps".into(),
            days: Some(days),
            month_factor: Some(MONTH_DAYS / days),
            timestamped_requests: t.timestamped,
            first: Some(format_timestamp(t.ts_min)),
            last: Some(format_timestamp(t.ts_max)),
        }
    } else {
        if t.timestamped > 0 {
            notes.push("every timestamp is the same instant: the log's period is unknown".into());
        }
        PeriodInfo {
            basis: "log".into(),
            days: None,
            month_factor: None,
            timestamped_requests: t.timestamped,
            first: (t.timestamped > 0).then(|| format_timestamp(t.ts_min)),
            last: (t.timestamped > 0).then(|| format_timestamp(t.ts_max)),
        }
    };
    let monthly = |x: f64| period.month_factor.map(|f| x * f);

    let labels = [
        "as logged".to_string(),
        format!("all {}", a.opts.frontier),
        format!("all {}", a.opts.sibling),
        "Switchyard routing".to_string(),
    ];
    let mut totals = [Figures::default(); N_STRATEGIES];
    let mut actual_total = 0.0;
    for tt in &t.tasks {
        for (f, of) in totals.iter_mut().zip(&tt.figures) {
            f.merge(of);
        }
        actual_total += tt.figures[ACTUAL].cost;
    }
    let mut strategies = IndexMap::new();
    for (i, key) in STRATEGIES.iter().enumerate() {
        let f = &totals[i];
        let savings = f.both_actual - f.both_cost;
        strategies.insert(
            key.to_string(),
            StrategyTotals {
                label: labels[i].clone(),
                model: match i {
                    FRONTIER => Some(a.opts.frontier.clone()),
                    SIBLING => Some(a.opts.sibling.clone()),
                    _ => None,
                },
                route: (i == ROUTING).then(|| a.opts.route.clone()),
                cost_usd: f.cost,
                monthly_cost_usd: monthly(f.cost),
                unpriced_requests: f.unpriced,
                frontier_requests: f.frontier,
                frontier_share: ratio(f.frontier, t.requests),
                savings_usd: savings,
                monthly_savings_usd: monthly(savings),
                savings_share: (f.both_actual > 0.0).then(|| savings / f.both_actual),
            },
        );
    }

    let model_names: Vec<&String> = a.cfg.models.keys().collect();
    let mut tasks: Vec<TaskRow> = t
        .tasks
        .iter()
        .enumerate()
        .filter(|(_, tt)| tt.requests > 0)
        .map(|(i, tt)| {
            let mut routed: Vec<ModelCount> = tt
                .routed
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(mi, n)| ModelCount {
                    model: model_names.get(mi).map_or_else(|| "?".into(), |m| m.to_string()),
                    requests: *n,
                })
                .collect();
            routed.sort_by(|x, y| y.requests.cmp(&x.requests).then_with(|| x.model.cmp(&y.model)));
            TaskRow {
                task: a.tasks().get(i).cloned().unwrap_or_else(|| format!("task {i}")),
                requests: tt.requests,
                labelled_requests: tt.labelled,
                prompt_tokens: tt.prompt,
                cached_tokens: tt.cached,
                cache_write_tokens: tt.cache_write,
                completion_tokens: tt.completion,
                reasoning_tokens: tt.reasoning,
                share_of_actual_cost: if actual_total > 0.0 {
                    tt.figures[ACTUAL].cost / actual_total
                } else {
                    0.0
                },
                costs: STRATEGIES
                    .iter()
                    .zip(&tt.figures)
                    .map(|(k, f)| {
                        (
                            k.to_string(),
                            TaskFigures {
                                cost_usd: f.cost,
                                monthly_cost_usd: monthly(f.cost),
                                unpriced_requests: f.unpriced,
                                frontier_requests: f.frontier,
                            },
                        )
                    })
                    .collect(),
                routed_to: routed,
            }
        })
        .collect();
    tasks.sort_by(|x, y| {
        let cx = x.costs.get("actual").map_or(0.0, |f| f.cost_usd);
        let cy = y.costs.get("actual").map_or(0.0, |f| f.cost_usd);
        cy.total_cmp(&cx)
            .then_with(|| y.requests.cmp(&x.requests))
            .then_with(|| x.task.cmp(&y.task))
    });

    let mut models: Vec<ModelRow> = t
        .models
        .iter()
        .map(|(name, m)| ModelRow {
            model: name.clone(),
            requests: m.requests,
            cost_usd: m.info.price.map(|_| m.cost),
            monthly_cost_usd: m.info.price.and_then(|_| monthly(m.cost)),
            frontier: m.info.frontier,
            in_config: m.info.in_config,
        })
        .collect();
    models.sort_by(|x, y| {
        y.cost_usd
            .unwrap_or(-1.0)
            .total_cmp(&x.cost_usd.unwrap_or(-1.0))
            .then_with(|| y.requests.cmp(&x.requests))
            .then_with(|| x.model.cmp(&y.model))
    });

    let unpriced: Vec<String> = models
        .iter()
        .filter(|m| m.cost_usd.is_none())
        .map(|m| format!("{} ({})", m.model, plural(m.requests, "request", "requests")))
        .collect();
    if !unpriced.is_empty() {
        notes.push(format!(
            "no price for the logged model(s) {}: those requests are counted as unpriced, not as $0, \
             and left out of every cost and saving; give them a price with --prices or [models.NAME.price]",
            unpriced.join(", ")
        ));
    }
    for (i, name) in [(FRONTIER, &a.opts.frontier), (SIBLING, &a.opts.sibling)] {
        let info = if i == FRONTIER { a.frontier } else { a.sibling };
        if info.price.is_none() {
            notes.push(format!(
                "{name} has no price: the \"{}\" strategy cannot be costed",
                labels[i]
            ));
        }
        if !info.in_config {
            notes.push(format!(
                "{name} is not a model of the config: its tier is unknown, so it does not count as a frontier model"
            ));
        }
    }
    if totals[ROUTING].unpriced > 0 {
        notes.push(format!(
            "{} requests are routed to models without a price: left out of the routing cost",
            totals[ROUTING].unpriced
        ));
    }
    let outside: Vec<&str> = models
        .iter()
        .filter(|m| !m.in_config)
        .map(|m| m.model.as_str())
        .collect();
    if !outside.is_empty() {
        notes.push(format!(
            "logged model(s) not in the config, so of unknown tier (not counted as frontier): {}",
            outside.join(", ")
        ));
    }
    if !t.unknown_labels.is_empty() {
        let mut l: Vec<String> = t
            .unknown_labels
            .iter()
            .map(|(k, v)| format!("{k:?} ({v})"))
            .collect();
        l.sort();
        notes.push(format!(
            "task label(s) that are not classifier tasks, classified instead: {}; the tasks are [{}]",
            l.join(", "),
            a.tasks().join(", ")
        ));
    }

    let (base_cost, base_unpriced) = t
        .models
        .values()
        .fold((0.0, 0u64), |(c, u), m| (c + m.base_cost, u + m.base_unpriced));
    let labelled_requests = t.tasks.iter().map(|tt| tt.labelled).sum();
    AuditReport {
        file: meta.file,
        config: meta.config,
        route: a.opts.route.clone(),
        prices: PricesInfo {
            shipped_as_of: shipped_prices_as_of(),
            overrides: a.overrides.map(|o| o.source.clone()),
            overrides_as_of: a.overrides.and_then(|o| o.as_of.clone()),
            actual_cost_without_overrides_usd: a.overrides.map(|_| base_cost),
            actual_monthly_cost_without_overrides_usd: a.overrides.and_then(|_| monthly(base_cost)),
            actual_unpriced_without_overrides: a.overrides.map(|_| base_unpriced),
        },
        lines: t.lines,
        requests: t.requests,
        bad_lines: t.bad,
        bad_line_samples,
        labelled_requests,
        unknown_task_labels: t.unknown_labels.into_iter().collect(),
        period,
        frontier_tier: a.cfg.routing.tiers.last().cloned(),
        strategies,
        tasks,
        models,
        notes,
    }
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

/// `$1,234.56`; amounts under ten cents keep four decimals, under a tenth
/// of a cent six (small logs).
pub fn money(x: f64) -> String {
    let sign = if x < 0.0 { "-" } else { "" };
    let a = x.abs();
    if a == 0.0 {
        return "$0.00".into();
    }
    if a < 0.001 {
        return format!("{sign}${a:.6}");
    }
    if a < 0.1 {
        return format!("{sign}${a:.4}");
    }
    let cents = (a * 100.0).round() as u128;
    format!("{sign}${}.{:02}", thousands(cents / 100), cents % 100)
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

/// `1234567` -> `1,234,567`.
pub fn thousands(n: impl Into<u128>) -> String {
    let s = n.into().to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// A cost cell: the amount, plus the unpriced requests it leaves out.
fn cost_cell(cost: f64, unpriced: u64, requests: u64) -> String {
    if requests > 0 && unpriced == requests {
        "n/a (unpriced)".into()
    } else if unpriced > 0 {
        format!("{} + {} unpriced", money(cost), thousands(unpriced))
    } else {
        money(cost)
    }
}

/// The human-readable report: header, strategy table, per-task table, notes.
pub fn render_table(r: &AuditReport) -> String {
    let mut o = String::new();
    let scaled = r.period.month_factor.is_some();
    let pick = |log: f64, month: Option<f64>| month.unwrap_or(log);
    let _ = writeln!(o, "Switchyard cost audit of {}", r.file);
    let _ = write!(o, "Requests: {}", thousands(r.requests));
    if r.labelled_requests > 0 {
        let _ = write!(o, " ({} with a task label)", thousands(r.labelled_requests));
    }
    if r.bad_lines > 0 {
        let nums: Vec<String> = r.bad_line_samples.iter().map(|b| b.line.to_string()).collect();
        let more = if r.bad_lines as usize > nums.len() {
            ", ..."
        } else {
            ""
        };
        let _ = write!(
            o,
            "; {} skipped ({} {}{more})",
            plural(r.bad_lines, "bad line", "bad lines"),
            if nums.len() == 1 { "line" } else { "lines" },
            nums.join(", ")
        );
    }
    o.push('\n');
    let _ = writeln!(
        o,
        "Config: {}, route {:?}; frontier models are those of tier {:?}",
        r.config,
        r.route,
        r.frontier_tier.as_deref().unwrap_or("-")
    );
    let _ = write!(
        o,
        "Prices: config, else the shipped table (as of {})",
        r.prices.shipped_as_of
    );
    if let Some(f) = &r.prices.overrides {
        let _ = write!(o, "; overridden by {f}");
        if let Some(d) = &r.prices.overrides_as_of {
            let _ = write!(o, " (as of {d})");
        }
    }
    o.push('\n');
    let p = &r.period;
    let span = match (&p.first, &p.last) {
        (Some(a), Some(b)) => format!("{a} .. {b}"),
        _ => String::new(),
    };
    let _ = match (p.basis.as_str(), p.days, p.month_factor) {
        ("timestamps", Some(d), Some(f)) => writeln!(
            o,
            "Period: {span} ({d:.2} days, from the timestamps); monthly = 30 days = log x {f:.3}"
        ),
        ("days", Some(d), Some(f)) => {
            writeln!(o, "Period: {d} days (--days); monthly = 30 days = log x {f:.3}")
        }
        _ => writeln!(
            o,
            "Period: unknown (no timestamps, no --days): figures are for the log as given, not per month"
        ),
    };
    let cost_head = if scaled {
        "monthly cost"
    } else {
        "cost (whole log)"
    };
    let save_head = if scaled {
        "monthly savings vs as logged"
    } else {
        "savings vs as logged"
    };

    let _ = writeln!(o, "\nWhat the same traffic would cost:\n");
    let _ = writeln!(
        o,
        "| strategy | {cost_head} | share of requests on frontier models | {save_head} |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|");
    for (key, s) in &r.strategies {
        let label = match key.as_str() {
            "routing" => format!("{} (route {})", s.label, r.route),
            _ => s.label.clone(),
        };
        let saved = pick(s.savings_usd, s.monthly_savings_usd);
        let savings = match (key.as_str(), s.savings_share) {
            ("actual", _) => "-".to_string(),
            (_, None) => "n/a".to_string(),
            (_, Some(share)) if saved >= 0.0 => format!("saves {} ({})", money(saved), pct(share)),
            (_, Some(share)) => format!("costs {} more (+{})", money(-saved), pct(-share)),
        };
        let _ = writeln!(
            o,
            "| {label} | {} | {} | {savings} |",
            cost_cell(
                pick(s.cost_usd, s.monthly_cost_usd),
                s.unpriced_requests,
                r.requests
            ),
            pct(s.frontier_share),
        );
    }
    if let (Some(base), Some(actual)) = (
        r.prices.actual_cost_without_overrides_usd,
        r.strategies.get("actual"),
    ) {
        let before = pick(base, r.prices.actual_monthly_cost_without_overrides_usd);
        let after = pick(actual.cost_usd, actual.monthly_cost_usd);
        let change = if before > 0.0 {
            format!(" ({:+.1}%)", (after - before) / before * 100.0)
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "\nWith the --prices file, the traffic as logged costs {} instead of {}{change}.",
            money(after),
            money(before)
        );
    }

    let head = |k: &str| {
        r.strategies
            .get(k)
            .map_or_else(|| k.to_string(), |s| s.label.clone())
    };
    let _ = writeln!(
        o,
        "\nWhere the money goes, by task ({}):\n",
        if scaled { "per month" } else { "whole log" }
    );
    let _ = writeln!(
        o,
        "| task | requests | share of spend | input tokens | cached | output tokens | {} | {} | {} | {} | routed to |",
        head("actual"),
        head("frontier"),
        head("sibling"),
        head("routing")
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let cell = |f: Option<&TaskFigures>, n: u64| {
        f.map_or_else(
            || "-".to_string(),
            |f| cost_cell(pick(f.cost_usd, f.monthly_cost_usd), f.unpriced_requests, n),
        )
    };
    for tr in &r.tasks {
        let routed: Vec<String> = tr
            .routed_to
            .iter()
            .map(|m| {
                if tr.routed_to.len() == 1 {
                    m.model.clone()
                } else {
                    format!("{} {}", m.model, pct(ratio(m.requests, tr.requests)))
                }
            })
            .collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            tr.task,
            thousands(tr.requests),
            pct(tr.share_of_actual_cost),
            thousands(tr.prompt_tokens),
            thousands(tr.cached_tokens),
            thousands(tr.completion_tokens),
            cell(tr.costs.get("actual"), tr.requests),
            cell(tr.costs.get("frontier"), tr.requests),
            cell(tr.costs.get("sibling"), tr.requests),
            cell(tr.costs.get("routing"), tr.requests),
            routed.join(", ")
        );
    }
    let total = |k: &str| {
        r.strategies.get(k).map_or_else(
            || "-".to_string(),
            |s| {
                cost_cell(
                    pick(s.cost_usd, s.monthly_cost_usd),
                    s.unpriced_requests,
                    r.requests,
                )
            },
        )
    };
    let (tp, tc, to) = r.tasks.iter().fold((0u64, 0u64, 0u64), |(p, c, o), t| {
        (p + t.prompt_tokens, c + t.cached_tokens, o + t.completion_tokens)
    });
    let _ = writeln!(
        o,
        "| **total** | {} | 100.0% | {} | {} | {} | {} | {} | {} | {} | |",
        thousands(r.requests),
        thousands(tp),
        thousands(tc),
        thousands(to),
        total("actual"),
        total("frontier"),
        total("sibling"),
        total("routing")
    );

    if !r.bad_line_samples.is_empty() {
        let _ = writeln!(o, "\nBad lines (first {}):", r.bad_line_samples.len());
        for b in &r.bad_line_samples {
            let _ = writeln!(o, "  line {}: {}", b.line, b.error);
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(o, "\nNotes:");
        for n in &r.notes {
            let _ = writeln!(o, "- {n}");
        }
    }
    o
}

/// Pretty JSON of the report.
pub fn render_json(r: &AuditReport) -> Result<String, String> {
    serde_json::to_string_pretty(r)
        .map(|s| s + "\n")
        .map_err(|e| format!("cannot encode the report: {e}"))
}

// ---------------------------------------------------------------------------
// Progress on stderr
// ---------------------------------------------------------------------------

/// A one-line progress display on stderr, redrawn at most every 100 ms;
/// silent when stderr is not a terminal or when disabled.
pub struct Progress {
    enabled: bool,
    total: Option<u64>,
    started: Instant,
    last: Option<Instant>,
}

impl Progress {
    /// `total`: input size in bytes, when known.
    pub fn new(total: Option<u64>, enabled: bool) -> Progress {
        Progress {
            enabled: enabled && std::io::stderr().is_terminal(),
            total,
            started: Instant::now(),
            last: None,
        }
    }

    pub fn update(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self.last.is_some_and(|l| now - l < Duration::from_millis(100)) {
            return;
        }
        self.last = Some(now);
        let secs = (now - self.started).as_secs_f64();
        let mb = |b: u64| b as f64 / 1_048_576.0;
        let line = match self.total.filter(|t| *t > 0) {
            Some(t) => {
                let frac = (done as f64 / t as f64).min(1.0);
                let width = 30;
                let fill = (frac * width as f64) as usize;
                format!(
                    "audit [{}{}] {:5.1}%  {:.0}/{:.0} MiB  {secs:.1}s",
                    "#".repeat(fill),
                    "-".repeat(width - fill),
                    frac * 100.0,
                    mb(done),
                    mb(t)
                )
            }
            None => format!("audit: {:.0} MiB read  {secs:.1}s", mb(done)),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.enabled && self.last.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> AuditLine<'_> {
        parse_line(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn flat_openai_line() {
        let l = parse(
            r#"{"model":"gpt-5.4","messages":[{"role":"system","content":"Be terse."},
            {"role":"user","content":"hi"}],"usage":{"prompt_tokens":100,"completion_tokens":20,
            "total_tokens":120,"prompt_tokens_details":{"cached_tokens":64},
            "completion_tokens_details":{"reasoning_tokens":5}},"created":1790000000}"#,
        );
        assert_eq!(l.model, "gpt-5.4");
        assert_eq!(
            l.usage,
            Usage {
                prompt_tokens: 100,
                completion_tokens: 20,
                cached_tokens: 64,
                cache_write_tokens: 0,
                reasoning_tokens: 5
            }
        );
        assert_eq!(l.timestamp, Some(1_790_000_000.0));
        assert_eq!(
            (l.system.as_ref(), l.last_user.as_ref(), l.turns),
            ("Be terse.", "hi", 2)
        );
        assert!(matches!(l.model, Cow::Borrowed(_)), "no escapes: borrowed");
        assert!(l.task.is_none() && l.has_messages && !l.has_tools && !l.json_schema);
    }

    #[test]
    fn wrapped_line_prefers_response_model() {
        let l = parse(
            r#"{"request":{"model":"auto","messages":[{"role":"user","content":"x"}],
            "tools":[{"type":"function"}],"response_format":{"type":"json_object"}},
            "response":{"id":"r","model":"gpt-5.4-2026-03-05","created":1790000100,
            "usage":{"prompt_tokens":7,"completion_tokens":3}},"task":"extraction"}"#,
        );
        assert_eq!(l.model, "gpt-5.4-2026-03-05");
        assert_eq!((l.usage.prompt_tokens, l.usage.completion_tokens), (7, 3));
        assert_eq!(l.timestamp, Some(1_790_000_100.0));
        assert_eq!(l.task.as_deref(), Some("extraction"));
        assert!(l.has_tools && l.json_schema);
        assert_eq!(l.last_user, "x");
    }

    #[test]
    fn anthropic_usage_counts_cache_in_input() {
        let l = parse(
            r#"{"model":"claude-sonnet-4.6","messages":[{"role":"user","content":"x"}],
            "usage":{"input_tokens":100,"output_tokens":50,"cache_read_input_tokens":400,
            "cache_creation_input_tokens":200}}"#,
        );
        assert_eq!(
            l.usage,
            Usage {
                prompt_tokens: 700,
                completion_tokens: 50,
                cached_tokens: 400,
                cache_write_tokens: 200,
                reasoning_tokens: 0
            }
        );
        // The Responses API shape: input_tokens already includes cached tokens.
        let r = parse(
            r#"{"model":"m","messages":[],"usage":{"input_tokens":100,"output_tokens":9,
            "input_tokens_details":{"cached_tokens":40},"output_tokens_details":{"reasoning_tokens":4}}}"#,
        );
        assert_eq!((r.usage.prompt_tokens, r.usage.cached_tokens), (100, 40));
        assert_eq!(r.usage.reasoning_tokens, 4);
        // DeepSeek's cache-hit field.
        let d = parse(
            r#"{"model":"deepseek-chat","messages":[],"usage":{"prompt_tokens":50,"completion_tokens":7,
            "prompt_cache_hit_tokens":32}}"#,
        );
        assert_eq!(d.usage.cached_tokens, 32);
    }

    #[test]
    fn content_parts_and_system_concatenation_match_the_gateway() {
        use crate::api::chat::ChatRequest;
        use crate::routing::input_from_chat;
        let bodies = [
            r#"{"model":"m","messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"hi"}],"usage":{"prompt_tokens":1}}"#,
            r#"{"model":"m","messages":[{"role":"developer","content":[{"type":"text","text":"a"},{"type":"text","text":"b\n\"q\""}]},
                {"role":"system","content":null},{"role":"system","content":"c"},
                {"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"x"}}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"1"}]},{"role":"tool","content":"42"},
                {"role":"user","content":"and now?"}],"tools":[{"type":"function"}],
                "response_format":{"type":"json_schema"},"usage":{"prompt_tokens":1}}"#,
            r#"{"model":"m","messages":[{"role":"assistant","content":"only"}],"tools":[],"usage":{"prompt_tokens":1}}"#,
            r#"{"model":"m","messages":[{"role":"system"},{"role":"user","content":"\u00e9t\u00e9"}],"functions":[{}],"usage":{"prompt_tokens":1}}"#,
        ];
        for b in bodies {
            let l = parse(b);
            let req = ChatRequest::parse(b.as_bytes()).expect("chat request");
            let want = input_from_chat(&req);
            let got = l.classify_input();
            assert_eq!(
                (
                    got.system,
                    got.last_user,
                    got.has_tools,
                    got.json_schema,
                    got.turns,
                    got.context
                ),
                (
                    want.system.as_str(),
                    want.last_user.as_str(),
                    want.has_tools,
                    want.json_schema,
                    want.turns,
                    want.context.as_str()
                ),
                "{b}"
            );
        }
    }

    #[test]
    fn bad_lines_say_why() {
        for (line, want) in [
            ("not json", "not a JSON object"),
            ("[1,2]", "not a JSON object"),
            ("{\"model\":", "invalid JSON"),
            (r#"{"model":5,"usage":{"prompt_tokens":1}}"#, "invalid type"),
            (r#"{"messages":[],"usage":{"prompt_tokens":1}}"#, "no model"),
            (r#"{"model":"m","messages":[]}"#, "no usage"),
            (r#"{"model":"m","usage":{"total_tokens":3}}"#, "no token counts"),
            (r#"{"model":"m","usage":{"prompt_tokens":-3}}"#, "negative"),
            (
                r#"{"model":"m","usage":{"prompt_tokens":1},"timestamp":"yesterday"}"#,
                "RFC 3339",
            ),
        ] {
            let e = parse_line(line.as_bytes()).map(|_| ()).expect_err(line);
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("2026-11-01T00:00:00Z"), Some(1_793_491_200.0));
        assert_eq!(parse_timestamp("2026-11-01"), Some(1_793_491_200.0));
        assert_eq!(
            parse_timestamp("2026-11-01 02:00:00+02:00"),
            Some(1_793_491_200.0)
        );
        assert_eq!(parse_timestamp("2026-11-01T00:00:01.5Z"), Some(1_793_491_201.5));
        assert_eq!(parse_timestamp("2026-10-31T19:00:00-0500"), Some(1_793_491_200.0));
        assert_eq!(parse_timestamp("1793491200"), Some(1_793_491_200.0));
        assert_eq!(parse_timestamp("1793491200000"), Some(1_793_491_200.0));
        assert_eq!(parse_timestamp("2026-11-01T25:00:00Z"), None);
        assert_eq!(parse_timestamp("2026-11-01Tnoon"), None);
        assert_eq!(parse_timestamp("-5"), None);
        assert_eq!(format_timestamp(1_793_491_200.0), "2026-11-01T00:00:00Z");
        assert_eq!(format_timestamp(951_782_400.0 + 3_723.0), "2000-02-29T01:02:03Z");
        let l = parse(
            r#"{"model":"m","usage":{"prompt_tokens":1},"timestamp":"2026-11-01T00:00:00Z","created":5}"#,
        );
        assert_eq!(l.timestamp, Some(1_793_491_200.0), "timestamp wins over created");
    }

    #[test]
    fn date_suffix_and_prefix_resolve_prices() {
        assert_eq!(strip_date_suffix("gpt-5.4-2026-03-05"), Some("gpt-5.4"));
        assert_eq!(
            strip_date_suffix("claude-opus-4.7-20260101"),
            Some("claude-opus-4.7")
        );
        assert_eq!(strip_date_suffix("gpt-5.4"), None);
        let (cfg, _) = load_config(None).expect("example config");
        let p = Pricer::new(&cfg, None);
        let dated = p.resolve("gpt-5.4-2026-03-05");
        assert_eq!(dated.price, default_price("gpt-5.4"));
        assert!(dated.in_config && !dated.frontier);
        assert!(p.resolve("openai/gpt-5.5").frontier);
        let unknown = p.resolve("my-finetune");
        assert_eq!((unknown.price, unknown.in_config), (None, false));
        // Shipped price, but not a config model.
        assert_eq!(p.resolve("gemini-3-flash").price, default_price("gemini-3-flash"));
    }

    #[test]
    fn overrides_win_and_are_validated() {
        let o = parse_price_file(
            "as_of = \"2027-01-01\"\n[prices.\"gpt-5.4\"]\ninput = 5.0\noutput = 30.0\n",
            "test",
        )
        .expect("prices");
        let (cfg, _) = load_config(None).expect("example config");
        let p = Pricer::new(&cfg, Some(&o));
        assert_eq!(p.resolve("gpt-5.4").price.map(|p| p.input), Some(5.0));
        assert_eq!(p.resolve("gpt-5.5").price, default_price("gpt-5.5"));
        assert!(parse_price_file("[prices.x]\ninput = -1.0\noutput = 1.0\n", "t")
            .expect_err("negative")
            .contains("prices.\"x\".input"));
        assert!(parse_price_file("[prices.x]\ninput = 1.0\n", "t").is_err());
        assert!(parse_price_file("as_of = \"x\"\n", "t").is_err());
    }

    #[test]
    fn tally_counts_bad_lines_with_numbers() {
        let (cfg, _) = load_config(None).expect("example config");
        let a = Auditor::new(&cfg, None, AuditOptions::default()).expect("auditor");
        let log = "{\"model\":\"gpt-5.4\",\"task\":\"translation\",\"usage\":{\"prompt_tokens\":1000000}}\n\
                   \n\
                   oops\n\
                   {\"model\":\"gpt-5.4\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"usage\":{\"completion_tokens\":1000000}}\n\
                   {\"model\":\"gpt-5.4\",\"usage\":{\"prompt_tokens\":1}}";
        let t = a.tally_bytes(log.as_bytes());
        let r = a.summarize(t, ReportMeta::default());
        assert_eq!((r.lines, r.requests, r.bad_lines), (5, 2, 2));
        let lines: Vec<u64> = r.bad_line_samples.iter().map(|b| b.line).collect();
        assert_eq!(lines, [3, 5]);
        let actual = &r.strategies["actual"];
        assert!(
            (actual.cost_usd - (2.5 + 15.0)).abs() < 1e-9,
            "{}",
            actual.cost_usd
        );
        assert_eq!(r.period.basis, "log");
        assert!(actual.monthly_cost_usd.is_none());
        assert_eq!(r.labelled_requests, 1);
    }

    #[test]
    fn parallel_run_equals_single_thread() {
        let (cfg, _) = load_config(None).expect("example config");
        let a = Auditor::new(&cfg, None, AuditOptions::default()).expect("auditor");
        let mut log = String::new();
        for i in 0..3000 {
            if i % 97 == 0 {
                log.push_str("{broken\n");
                continue;
            }
            log.push_str(&format!(
                "{{\"model\":\"gpt-5.5\",\"created\":{},\"messages\":[{{\"role\":\"user\",\"content\":\"Translate to French: item {i}\"}}],\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":7}}}}\n",
                1_790_000_000 + i,
                100 + i
            ));
        }
        let single = a.summarize(a.tally_bytes(log.as_bytes()), ReportMeta::default());
        let mut reader = log.as_bytes();
        let mut seen = 0;
        let multi = a
            .run_chunked(&mut reader, 3, 1000, &mut |b| seen = b)
            .map(|t| a.summarize(t, ReportMeta::default()))
            .expect("run");
        assert_eq!(seen, log.len() as u64);
        assert_eq!(
            (multi.requests, multi.bad_lines),
            (single.requests, single.bad_lines)
        );
        let nums = |r: &AuditReport| r.bad_line_samples.iter().map(|b| b.line).collect::<Vec<_>>();
        assert_eq!(nums(&multi), nums(&single));
        assert_eq!(nums(&single)[..3], [1, 98, 195]);
        assert_eq!(multi.period.days, single.period.days);
        let c = |r: &AuditReport| r.strategies["routing"].cost_usd;
        assert!((c(&multi) - c(&single)).abs() < 1e-9);
    }

    #[test]
    fn money_format() {
        assert_eq!(money(1234.567), "$1,234.57");
        assert_eq!(money(0.01234), "$0.0123");
        assert_eq!(money(0.66), "$0.66");
        assert_eq!(money(0.0000123), "$0.000012");
        assert_eq!(money(0.0), "$0.00");
        assert_eq!(money(-12.0), "-$12.00");
        assert_eq!(thousands(1_000_000u64), "1,000,000");
        assert_eq!(thousands(999u64), "999");
    }
}
