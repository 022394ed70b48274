//! The simulated provider: no network, plausible OpenAI-format answers.
//!
//! It exists so that `switchyard serve` works with no API key at all and so
//! teams can rehearse routing and fallback. Every answer is labelled: the
//! text starts with "[simulated]", `system_fingerprint` is
//! `switchyard-simulated`, and responses carry the provider name.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use serde_json::{json, Value};

use super::{ChatAnswer, EmbeddingsAnswer, ProviderError, ProviderErrorKind};
use crate::api::chat::{ChatRequest, EmbeddingsRequest};
use crate::api::usage::Usage;
use crate::config::SimulatedSettings;

const WORDS: &[&str] = &[
    "the",
    "gateway",
    "routes",
    "each",
    "request",
    "to",
    "a",
    "model",
    "that",
    "fits",
    "task",
    "and",
    "budget",
    "this",
    "answer",
    "is",
    "simulated",
    "so",
    "you",
    "can",
    "see",
    "streaming",
    "usage",
    "cost",
    "tracking",
    "work",
    "without",
    "an",
    "API",
    "key",
    "set",
    "OPENAI_API_KEY",
    "or",
    "point",
    "config",
    "at",
    "real",
    "provider",
    "when",
    "ready",
    "tokens",
    "are",
    "counted",
    "like",
    "would",
    "be",
    "by",
    "upstream",
    "with",
    "latency",
    "in",
    "for",
];

pub struct Simulated {
    settings: SimulatedSettings,
}

/// Rough token estimate: about four characters per token, at least one.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

fn hash(s: &str) -> u64 {
    // FNV-1a: deterministic answers for the same prompt.
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

impl Simulated {
    pub fn new(settings: SimulatedSettings) -> Self {
        Simulated { settings }
    }

    /// Health probe: fails as often as requests do.
    pub fn probe(&self) -> Result<(), ProviderError> {
        self.maybe_fail()
    }

    fn maybe_fail(&self) -> Result<(), ProviderError> {
        if self.settings.failure_rate > 0.0 && fastrand::f64() < self.settings.failure_rate {
            let mut e = ProviderError::from_status(
                503,
                None,
                &Bytes::from_static(
                    br#"{"error":{"message":"simulated failure (failure_rate)","type":"server_error"}}"#,
                ),
            );
            e.kind = ProviderErrorKind::Status;
            return Err(e);
        }
        Ok(())
    }

    /// The answer text and usage. `response_format` json_object gives a JSON
    /// object, json_schema a value matching the schema; `max_tokens` /
    /// `max_completion_tokens` cap the output (the text is cut, `truncated`).
    fn answer(&self, req: &ChatRequest) -> Answer {
        let prompt_text: String = req
            .messages
            .iter()
            .map(|m| m.text())
            .collect::<Vec<_>>()
            .join("\n");
        let prompt_tokens = estimate_tokens(&prompt_text) + 4 * req.messages.len() as u64;
        let last = last_user_text(req);
        let seed = hash(&last);
        let n_words = (12 + seed % 48) as usize;
        let mut text = String::from("[simulated]");
        let mut x = seed;
        for _ in 0..n_words {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push(' ');
            text.push_str(WORDS[(x >> 33) as usize % WORDS.len()]);
        }
        text.push('.');
        let format = req.extra.get("response_format");
        match format.and_then(|f| f.get("type")).and_then(Value::as_str) {
            Some("json_schema") => {
                let schema = format
                    .and_then(|f| f.pointer("/json_schema/schema"))
                    .unwrap_or(&Value::Null);
                text = example_for_schema(schema, schema, &text, 0).to_string();
            }
            Some("json_object") => text = json!({ "answer": text }).to_string(),
            _ => {}
        }
        let (text, truncated) = cap_text(text, max_output_tokens(req));
        let completion_tokens = if text.is_empty() {
            0
        } else {
            estimate_tokens(&text)
        };
        Answer {
            text,
            truncated,
            usage: Usage {
                prompt_tokens,
                completion_tokens,
                ..Default::default()
            },
        }
    }

    /// A tool call when the request offers tools and does not end in a tool
    /// result: the named tool of an object `tool_choice`, else the tool whose
    /// name or description best matches the last user message (the first on
    /// a tie), with arguments matching its parameter schema.
    fn tool_call(req: &ChatRequest) -> Option<(String, String)> {
        let tools = req.extra.get("tools")?.as_array()?;
        let choice = req.extra.get("tool_choice");
        if choice.and_then(Value::as_str) == Some("none") {
            return None;
        }
        if req.messages.last().is_some_and(|m| m.role == "tool") {
            return None;
        }
        let fns: Vec<&Value> = tools.iter().filter_map(|t| t.get("function")).collect();
        let named = choice
            .and_then(|c| c.pointer("/function/name"))
            .and_then(Value::as_str);
        let f = match named {
            Some(n) => fns
                .iter()
                .find(|f| f.get("name").and_then(Value::as_str) == Some(n))
                .copied()?,
            None => {
                let last = last_user_text(req).to_lowercase();
                let mut best: Option<(usize, &Value)> = None;
                for f in &fns {
                    let score = tool_score(f, &last);
                    if best.is_none_or(|(b, _)| score > b) {
                        best = Some((score, f));
                    }
                }
                best?.1
            }
        };
        let name = f.get("name")?.as_str()?.to_string();
        let schema = f.get("parameters").cloned().unwrap_or(json!({"type": "object"}));
        let mut args = example_for_schema(&schema, &schema, "example", 0);
        if !args.is_object() {
            args = json!({});
        }
        Some((name, args.to_string()))
    }

    pub async fn chat(&self, req: &ChatRequest) -> Result<ChatAnswer, ProviderError> {
        tokio::time::sleep(self.settings.latency).await;
        self.maybe_fail()?;
        let Answer {
            text,
            truncated,
            mut usage,
        } = self.answer(req);
        let cap = max_output_tokens(req);
        let tool = Self::tool_call(req).map(|(name, args)| {
            let (args, cut) = cap_text(args, cap.saturating_sub(8));
            (name, args, cut)
        });
        let text_finish = if truncated { "length" } else { "stop" };
        let id = format!("chatcmpl-sim{:016x}", fastrand::u64(..));
        let created = now_secs();
        let model = req.model.clone();
        if !req.is_stream() {
            let (message, finish) = match &tool {
                Some((name, args, cut)) => {
                    usage.completion_tokens = tool_tokens(args, cap);
                    (
                        json!({"role":"assistant","content":null,"tool_calls":[{"id":format!("call_sim{:08x}", fastrand::u32(..)),"type":"function","function":{"name":name,"arguments":args}}]}),
                        if *cut { "length" } else { "tool_calls" },
                    )
                }
                None => (json!({"role":"assistant","content":text}), text_finish),
            };
            // Non-streaming answers arrive after the whole generation time.
            tokio::time::sleep(self.generation_time(usage.completion_tokens)).await;
            let body = json!({
                "id": id, "object": "chat.completion", "created": created, "model": model,
                "system_fingerprint": "switchyard-simulated",
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
                "usage": usage.to_openai_json(),
            });
            return Ok(ChatAnswer::Complete {
                body: Bytes::from(body.to_string()),
                usage: Some(usage),
            });
        }

        let chunk = |delta: Value, finish: Option<&str>| -> Bytes {
            let c = json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "switchyard-simulated",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
            });
            Bytes::from(format!("data: {c}\n\n"))
        };
        let mut events: Vec<Bytes> = Vec::new();
        let finish = match &tool {
            Some((name, args, cut)) => {
                usage.completion_tokens = tool_tokens(args, cap);
                events.push(chunk(
                    json!({"role":"assistant","content":null,"tool_calls":[{"index":0,"id":format!("call_sim{:08x}", fastrand::u32(..)),"type":"function","function":{"name":name,"arguments":""}}]}),
                    None,
                ));
                let mid = args.len() / 2;
                let split = (0..=mid).rev().find(|i| args.is_char_boundary(*i)).unwrap_or(0);
                for part in [&args[..split], &args[split..]] {
                    events.push(chunk(
                        json!({"tool_calls":[{"index":0,"function":{"arguments":part}}]}),
                        None,
                    ));
                }
                if *cut {
                    "length"
                } else {
                    "tool_calls"
                }
            }
            None => {
                events.push(chunk(json!({"role":"assistant","content":""}), None));
                let words: Vec<&str> = text.split_inclusive(' ').collect();
                for piece in words.chunks(3) {
                    events.push(chunk(json!({"content": piece.concat()}), None));
                }
                text_finish
            }
        };
        events.push(chunk(json!({}), Some(finish)));
        let usage_chunk = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "switchyard-simulated", "choices": [], "usage": usage.to_openai_json(),
        });
        events.push(Bytes::from(format!("data: {usage_chunk}\n\n")));
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        let pieces = events.len().max(1) as u32;
        let gap = self.generation_time(usage.completion_tokens) / pieces;
        let s = stream::unfold((events.into_iter(), true), move |(mut it, first)| async move {
            let next = it.next()?;
            if !first && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            Some((Ok(next), (it, false)))
        });
        Ok(ChatAnswer::Stream(Box::pin(s)))
    }

    fn generation_time(&self, tokens: u64) -> Duration {
        Duration::from_secs_f64(tokens as f64 / self.settings.tokens_per_second)
    }

    pub async fn embeddings(&self, req: &EmbeddingsRequest) -> Result<EmbeddingsAnswer, ProviderError> {
        tokio::time::sleep(self.settings.latency / 4).await;
        self.maybe_fail()?;
        let dims = req
            .extra
            .get("dimensions")
            .and_then(Value::as_u64)
            .unwrap_or(256)
            .clamp(1, 4096) as usize;
        let base64 = req.extra.get("encoding_format").and_then(Value::as_str) == Some("base64");
        let texts = req.texts();
        let count = req.input_count();
        let mut prompt_tokens = 0;
        let mut data = Vec::with_capacity(count);
        for i in 0..count {
            let text = texts.get(i).copied().unwrap_or("");
            prompt_tokens += estimate_tokens(text);
            let v = pseudo_embedding(text, dims);
            let embedding = if base64 {
                let mut raw = Vec::with_capacity(dims * 4);
                for x in &v {
                    raw.extend_from_slice(&x.to_le_bytes());
                }
                Value::String(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    &raw,
                ))
            } else {
                json!(v)
            };
            data.push(json!({"object": "embedding", "index": i, "embedding": embedding}));
        }
        let usage = Usage {
            prompt_tokens,
            ..Default::default()
        };
        let body = json!({
            "object": "list", "data": data, "model": req.model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        });
        Ok(EmbeddingsAnswer {
            body: Bytes::from(body.to_string()),
            usage: Some(usage),
        })
    }
}

struct Answer {
    text: String,
    truncated: bool,
    usage: Usage,
}

fn last_user_text(req: &ChatRequest) -> String {
    req.messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.text())
        .unwrap_or_default()
}

/// The request's output cap (`max_completion_tokens`, else `max_tokens`).
fn max_output_tokens(req: &ChatRequest) -> u64 {
    req.extra
        .get("max_completion_tokens")
        .or_else(|| req.extra.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX)
}

/// Cuts `text` so that `estimate_tokens` of it is at most `cap` (empty for
/// 0); true when it was cut.
fn cap_text(mut text: String, cap: u64) -> (String, bool) {
    if text.is_empty() || estimate_tokens(&text) <= cap {
        return (text, false);
    }
    let keep = usize::try_from(cap.saturating_mul(4)).unwrap_or(usize::MAX);
    let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
    text.truncate(end);
    (text, true)
}

/// Output tokens of a tool call: its arguments plus a small overhead, never past the cap.
fn tool_tokens(args: &str, cap: u64) -> u64 {
    (estimate_tokens(args) + 8).min(cap)
}

/// How well a tool fits the message: its name's words (split on `_`, `-`,
/// `.` and case changes) found in the text count 3 each, description words
/// of 4+ letters 1 each.
fn tool_score(f: &Value, text: &str) -> usize {
    let name = f.get("name").and_then(Value::as_str).unwrap_or("");
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    for c in name.chars() {
        let boundary = c == '_' || c == '-' || c == '.' || c.is_uppercase();
        if boundary && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        if c.is_alphanumeric() {
            cur.push(c.to_ascii_lowercase());
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut score = words
        .iter()
        .filter(|w| w.len() >= 3 && text.contains(w.as_str()))
        .count()
        * 3;
    if let Some(d) = f.get("description").and_then(Value::as_str) {
        score += d
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() >= 4)
            .filter(|w| text.contains(&w.to_lowercase()))
            .count();
    }
    score
}

/// A value valid against a JSON schema (the subset structured outputs use:
/// type / type arrays, properties, items, enum, const, anyOf / oneOf /
/// allOf, `$ref` into `$defs` / `definitions`, minItems, minimum / maximum,
/// minLength / maxLength). Every listed property is filled in.
pub fn example_for_schema(schema: &Value, root: &Value, text: &str, depth: usize) -> Value {
    if depth > 24 {
        return Value::Null;
    }
    let Some(o) = schema.as_object() else {
        return json!(text);
    };
    if let Some(r) = o.get("$ref").and_then(Value::as_str) {
        let target = r
            .strip_prefix('#')
            .and_then(|p| if p.is_empty() { Some(root) } else { root.pointer(p) });
        return match target {
            Some(t) => example_for_schema(t, root, text, depth + 1),
            None => Value::Null,
        };
    }
    if let Some(c) = o.get("const") {
        return c.clone();
    }
    if let Some(first) = o.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    for k in ["anyOf", "oneOf"] {
        if let Some(alts) = o.get(k).and_then(Value::as_array) {
            // Prefer a non-null alternative.
            let pick = alts
                .iter()
                .find(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .or(alts.first());
            if let Some(a) = pick {
                return example_for_schema(a, root, text, depth + 1);
            }
        }
    }
    if let Some(all) = o.get("allOf").and_then(Value::as_array) {
        let mut merged = serde_json::Map::new();
        for a in all {
            if let Value::Object(m) = example_for_schema(a, root, text, depth + 1) {
                merged.extend(m);
            }
        }
        return Value::Object(merged);
    }
    let ty = match o.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if o.contains_key("properties") => "object",
        _ if o.contains_key("items") => "array",
        _ => "string",
    };
    match ty {
        "object" => {
            let mut out = serde_json::Map::new();
            if let Some(props) = o.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    out.insert(k.clone(), example_for_schema(s, root, text, depth + 1));
                }
            }
            Value::Object(out)
        }
        "array" => {
            let n = o
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(0, 16);
            let n = o.get("maxItems").and_then(Value::as_u64).map_or(n, |m| n.min(m));
            let item = o.get("items").unwrap_or(&Value::Null);
            Value::Array(
                (0..n)
                    .map(|_| example_for_schema(item, root, text, depth + 1))
                    .collect(),
            )
        }
        "integer" => {
            let lo = o.get("minimum").and_then(Value::as_i64).unwrap_or(1);
            let hi = o.get("maximum").and_then(Value::as_i64).unwrap_or(i64::MAX);
            json!(lo.min(hi))
        }
        "number" => {
            let lo = o.get("minimum").and_then(Value::as_f64).unwrap_or(1.0);
            let hi = o.get("maximum").and_then(Value::as_f64).unwrap_or(f64::MAX);
            json!(lo.min(hi))
        }
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => {
            let min = o.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
            let max = o
                .get("maxLength")
                .and_then(Value::as_u64)
                .map_or(usize::MAX, |m| m as usize);
            let mut s: String = text.chars().take(max).collect();
            while s.chars().count() < min {
                s.push('x');
            }
            json!(s)
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A deterministic unit vector derived from the text.
fn pseudo_embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut x = hash(text) | 1;
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|a| *a /= norm);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).expect("request")
    }

    fn sim() -> Simulated {
        Simulated::new(SimulatedSettings {
            latency: Duration::ZERO,
            tokens_per_second: 1e9,
            failure_rate: 0.0,
        })
    }

    #[test]
    fn schema_examples_validate() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 2, "maxLength": 5},
                "age": {"type": "integer", "minimum": 18},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                "kind": {"enum": ["a", "b"]},
                "nick": {"type": ["string", "null"]},
                "owner": {"$ref": "#/$defs/Person"},
                "score": {"anyOf": [{"type": "null"}, {"type": "number", "minimum": 0.5}]},
            },
            "required": ["name", "age", "tags", "kind", "nick", "owner", "score"],
            "additionalProperties": false,
            "$defs": {"Person": {"type": "object", "properties": {"id": {"type": "integer"}}}},
        });
        let v = example_for_schema(&schema, &schema, "hello world", 0);
        assert_eq!(v["name"], "hello");
        assert_eq!(v["age"], 18);
        assert_eq!(v["tags"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["kind"], "a");
        assert!(v["nick"].is_string());
        assert_eq!(v["owner"]["id"], 1);
        assert_eq!(v["score"], 0.5);
    }

    #[test]
    fn max_tokens_caps_output_and_says_length() {
        let s = sim();
        for cap in [0u64, 1, 3, 7, 20] {
            let a = s.answer(&req(json!({"model": "m", "max_tokens": cap,
                "messages": [{"role": "user", "content": "write a long essay"}]})));
            assert!(
                a.usage.completion_tokens <= cap,
                "cap {cap}: {}",
                a.usage.completion_tokens
            );
            assert!(a.truncated, "cap {cap}");
        }
        let a = s.answer(&req(json!({"model": "m", "max_tokens": 4096,
            "messages": [{"role": "user", "content": "hi"}]})));
        assert!(!a.truncated);
    }

    #[test]
    fn json_modes() {
        let s = sim();
        let a = s.answer(&req(
            json!({"model": "m", "response_format": {"type": "json_object"},
            "messages": [{"role": "user", "content": "hi"}]}),
        ));
        let v: Value = serde_json::from_str(&a.text).expect("json");
        assert!(v.is_object());
        let a = s.answer(&req(
            json!({"model": "m", "response_format": {"type": "json_schema",
            "json_schema": {"name": "x", "strict": true, "schema": {"type": "object",
                "properties": {"city": {"type": "string"}, "n": {"type": "integer"}},
                "required": ["city", "n"], "additionalProperties": false}}},
            "messages": [{"role": "user", "content": "hi"}]}),
        ));
        let v: Value = serde_json::from_str(&a.text).expect("json");
        assert!(v["city"].is_string() && v["n"].is_i64(), "{v}");
    }

    #[test]
    fn picks_the_tool_that_fits() {
        let tools = json!([
            {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "send_email", "description": "Send an email",
                "parameters": {"type": "object", "properties": {"to": {"type": "string"}, "urgent": {"type": "boolean"}}}}},
        ]);
        let pick = |text: &str, choice: Value| {
            let mut r =
                json!({"model": "m", "tools": tools, "messages": [{"role": "user", "content": text}]});
            if !choice.is_null() {
                r["tool_choice"] = choice;
            }
            Simulated::tool_call(&req(r)).map(|(n, a)| (n, serde_json::from_str::<Value>(&a).expect("args")))
        };
        assert_eq!(
            pick("Please send an email to Bob", Value::Null)
                .map(|p| p.0)
                .as_deref(),
            Some("send_email")
        );
        assert_eq!(
            pick("What's the weather in Paris?", Value::Null)
                .map(|p| p.0)
                .as_deref(),
            Some("get_weather")
        );
        assert_eq!(
            pick("hello", Value::Null).map(|p| p.0).as_deref(),
            Some("get_weather"),
            "first on a tie"
        );
        let (n, args) = pick(
            "weather",
            json!({"type": "function", "function": {"name": "send_email"}}),
        )
        .expect("named");
        assert_eq!(n, "send_email");
        assert_eq!(args["urgent"], true);
        assert!(pick("weather", json!("none")).is_none());
    }

    #[test]
    fn embedding_is_unit_and_deterministic() {
        let a = pseudo_embedding("hello", 64);
        assert_eq!(a, pseudo_embedding("hello", 64));
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4);
    }
}
