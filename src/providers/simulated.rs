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

    fn answer(&self, req: &ChatRequest) -> (String, Usage) {
        let prompt_text: String = req
            .messages
            .iter()
            .map(|m| m.text())
            .collect::<Vec<_>>()
            .join("\n");
        let prompt_tokens = estimate_tokens(&prompt_text) + 4 * req.messages.len() as u64;
        let last = req
            .messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.text())
            .unwrap_or_default();
        let seed = hash(&last);
        let cap = req
            .extra
            .get("max_completion_tokens")
            .or_else(|| req.extra.get("max_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        let n_words = (12 + seed % 48).min(cap.saturating_sub(2).max(1)) as usize;
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
        let completion_tokens = estimate_tokens(&text);
        (
            text,
            Usage {
                prompt_tokens,
                completion_tokens,
                ..Default::default()
            },
        )
    }

    /// A tool call when the request offers tools and does not end in a tool result.
    fn tool_call(req: &ChatRequest) -> Option<(String, String)> {
        let tools = req.extra.get("tools")?.as_array()?;
        if req.extra.get("tool_choice").and_then(Value::as_str) == Some("none") {
            return None;
        }
        if req.messages.last().is_some_and(|m| m.role == "tool") {
            return None;
        }
        let f = tools.first()?.get("function")?;
        let name = f.get("name")?.as_str()?.to_string();
        let mut args = serde_json::Map::new();
        if let Some(props) = f.pointer("/parameters/properties").and_then(Value::as_object) {
            for (k, schema) in props {
                let v = match schema.get("type").and_then(Value::as_str) {
                    Some("integer") | Some("number") => json!(1),
                    Some("boolean") => json!(true),
                    _ => json!("example"),
                };
                args.insert(k.clone(), v);
            }
        }
        Some((name, Value::Object(args).to_string()))
    }

    pub async fn chat(&self, req: &ChatRequest) -> Result<ChatAnswer, ProviderError> {
        tokio::time::sleep(self.settings.latency).await;
        self.maybe_fail()?;
        let (text, mut usage) = self.answer(req);
        let tool = Self::tool_call(req);
        let id = format!("chatcmpl-sim{:016x}", fastrand::u64(..));
        let created = now_secs();
        let model = req.model.clone();
        if !req.is_stream() {
            let (message, finish) = match &tool {
                Some((name, args)) => {
                    usage.completion_tokens = estimate_tokens(args) + 8;
                    (
                        json!({"role":"assistant","content":null,"tool_calls":[{"id":format!("call_sim{:08x}", fastrand::u32(..)),"type":"function","function":{"name":name,"arguments":args}}]}),
                        "tool_calls",
                    )
                }
                None => (json!({"role":"assistant","content":text}), "stop"),
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
            Some((name, args)) => {
                usage.completion_tokens = estimate_tokens(args) + 8;
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
                "tool_calls"
            }
            None => {
                events.push(chunk(json!({"role":"assistant","content":""}), None));
                let words: Vec<&str> = text.split_inclusive(' ').collect();
                for piece in words.chunks(3) {
                    events.push(chunk(json!({"content": piece.concat()}), None));
                }
                "stop"
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
                Value::String(crate::api::base64::encode(&raw))
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

    #[test]
    fn embedding_is_unit_and_deterministic() {
        let a = pseudo_embedding("hello", 64);
        assert_eq!(a, pseudo_embedding("hello", 64));
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4);
    }
}
