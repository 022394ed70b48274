//! Reasoning controls across wire formats (pure, no I/O).
//!
//! A request can ask for reasoning in OpenAI's form (`reasoning_effort`) or
//! Anthropic's (`thinking: {"type": "enabled", "budget_tokens": N}` or
//! `{"type": "adaptive"}`, and `output_config: {"effort": ...}`; the
//! `/v1/messages` endpoint keeps these as sent in `ChatRequest::extra`).
//! Anthropic upstreams get Anthropic's fields untouched (`anthropic.rs`);
//! this module maps them for the others:
//!
//! (Azure OpenAI is treated as OpenAI; its deployment name is the model id
//! checked below.)
//!
//! | asked | OpenAI reasoning models (`o1`, `o3`, `o4*`, `gpt-5*` but not `*chat*`) | Gemini 2.5 | Gemini 3 |
//! |---|---|---|---|
//! | `reasoning_effort` | as sent | `thinkingBudget` 1024 / 8192 / 24576 | `thinkingLevel` low / high |
//! | `output_config.effort` low, medium, high (max -> high) | `reasoning_effort` | same | same |
//! | `thinking.budget_tokens` N | `reasoning_effort` low (< 4096), medium (< 16384), high | `thinkingBudget` N | `thinkingLevel` low (< 4096) / high |
//! | `thinking` adaptive (no effort) | model default | model default | model default |
//!
//! Other OpenAI-compatible upstreams (DeepSeek, vLLM, Ollama, non-reasoning
//! OpenAI models) get no reasoning field they might reject. Anthropic-only
//! fields (`thinking`, `output_config`, `context_management`, `top_k` for
//! OpenAI's and DeepSeek's own APIs, the
//! assistant messages' signed `thinking_blocks`, `cache_control` on tools)
//! never reach an OpenAI-type upstream.

use serde_json::{Map, Value};

use super::anthropic::{PASSTHROUGH_FIELDS, THINKING_BLOCKS};
use crate::api::chat::ChatRequest;

/// A reasoning effort, OpenAI's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effort {
    Minimal,
    Low,
    Medium,
    High,
}

impl Effort {
    pub fn as_str(self) -> &'static str {
        match self {
            Effort::Minimal => "minimal",
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
        }
    }

    fn parse(s: &str) -> Option<Effort> {
        Some(match s {
            "none" | "minimal" => Effort::Minimal,
            "low" => Effort::Low,
            "medium" => Effort::Medium,
            "high" | "xhigh" | "max" => Effort::High,
            _ => return None,
        })
    }

    fn from_budget(tokens: u64) -> Effort {
        match tokens {
            0..4096 => Effort::Low,
            4096..16384 => Effort::Medium,
            _ => Effort::High,
        }
    }
}

/// `thinking.budget_tokens` when thinking is `enabled`.
pub fn thinking_budget(extra: &Map<String, Value>) -> Option<u64> {
    let t = extra.get("thinking")?;
    (t.get("type").and_then(Value::as_str) == Some("enabled"))
        .then(|| t.get("budget_tokens").and_then(Value::as_u64))
        .flatten()
}

/// The effort the request asks for, in any of the forms above
/// (`reasoning_effort` first, then `output_config.effort`, then the budget).
/// `thinking: {"type": "disabled"}` asks for none.
pub fn effort(extra: &Map<String, Value>) -> Option<Effort> {
    if let Some(e) = extra.get("reasoning_effort").and_then(Value::as_str) {
        return Effort::parse(e);
    }
    if extra
        .get("thinking")
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        == Some("disabled")
    {
        return None;
    }
    if let Some(e) = extra
        .get("output_config")
        .and_then(|o| o.get("effort"))
        .and_then(Value::as_str)
    {
        return Effort::parse(e);
    }
    thinking_budget(extra).map(Effort::from_budget)
}

/// Whether an OpenAI model id takes `reasoning_effort`.
pub fn openai_takes_effort(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model);
    let family = m.starts_with("o1") || m.starts_with("o3") || m.starts_with("o4") || m.starts_with("gpt-5");
    family && !m.contains("chat")
}

/// The request as an OpenAI-type upstream should get it, or `None` when it
/// is fine as it is (the common case: nothing is copied). Removes the
/// Anthropic-only fields (`top_k` only with `strip_top_k`: OpenAI's and
/// DeepSeek's APIs reject it, vLLM and Ollama take it) and, for OpenAI reasoning models, sets
/// `reasoning_effort` from Anthropic's controls when the client gave none.
/// `req.model` must be the upstream model id.
pub fn for_openai(req: &ChatRequest, strip_top_k: bool) -> Option<ChatRequest> {
    let top_k = strip_top_k && req.extra.contains_key("top_k");
    let anthropic_top = PASSTHROUGH_FIELDS.iter().any(|k| req.extra.contains_key(*k)) || top_k;
    let in_messages = req.messages.iter().any(|m| m.extra.contains_key(THINKING_BLOCKS));
    let tool_cc = matches!(req.extra.get("tools"), Some(Value::Array(t)) if t.iter().any(|t| t.get("cache_control").is_some()));
    // OpenAI's reasoning models refuse `max_tokens` and want `max_completion_tokens`
    // (a strict budget cap, or a client written for older models, sets `max_tokens`).
    let rename_max = !req.extra.contains_key("max_completion_tokens")
        && req.extra.get("max_tokens").is_some_and(|v| !v.is_null())
        && openai_takes_effort(&req.model);
    if !anthropic_top && !in_messages && !tool_cc && !rename_max {
        return None;
    }
    let mut out = req.clone();
    if rename_max {
        if let Some(v) = out.extra.remove("max_tokens") {
            out.extra.insert("max_completion_tokens".into(), v);
        }
    }
    if anthropic_top && !out.extra.contains_key("reasoning_effort") && openai_takes_effort(&out.model) {
        if let Some(e) = effort(&out.extra) {
            out.extra
                .insert("reasoning_effort".into(), Value::from(e.as_str()));
        }
    }
    for k in PASSTHROUGH_FIELDS {
        out.extra.remove(*k);
    }
    if strip_top_k {
        out.extra.remove("top_k");
    }
    for m in &mut out.messages {
        m.extra.remove(THINKING_BLOCKS);
    }
    if let Some(Value::Array(tools)) = out.extra.get_mut("tools") {
        for t in tools {
            if let Some(o) = t.as_object_mut() {
                o.remove("cache_control");
            }
        }
    }
    Some(out)
}

/// Gemini's `generationConfig.thinkingConfig` entries for the request's
/// reasoning controls (none when it asks for none or the model has no
/// thinking controls we know).
pub fn gemini_thinking(model: &str, extra: &Map<String, Value>) -> Option<(&'static str, Value)> {
    let m = model.rsplit('/').next().unwrap_or(model);
    let effort = effort(extra)?;
    if m.starts_with("gemini-3") {
        let level = match effort {
            Effort::Minimal | Effort::Low => "low",
            Effort::Medium | Effort::High => "high",
        };
        return Some(("thinkingLevel", Value::from(level)));
    }
    if m.starts_with("gemini-2.5") {
        let budget = thinking_budget(extra).unwrap_or(match effort {
            Effort::Minimal => 512,
            Effort::Low => 1024,
            Effort::Medium => 8192,
            Effort::High => 24576,
        });
        return Some(("thinkingBudget", Value::from(budget)));
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn reasoning_models_get_max_completion_tokens() {
        let mut r: ChatRequest = serde_json::from_value(serde_json::json!({
            "model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 77
        }))
        .expect("parses");
        let out = for_openai(&r, true).expect("renamed");
        assert_eq!(out.extra.get("max_completion_tokens"), Some(&Value::from(77)));
        assert!(!out.extra.contains_key("max_tokens"));
        // Other models keep `max_tokens`, with nothing copied.
        r.model = "gpt-4.1".into();
        assert!(for_openai(&r, true).is_none());
        // A client's own max_completion_tokens wins and nothing is renamed.
        r.model = "o3".into();
        r.extra.insert("max_completion_tokens".into(), Value::from(5));
        assert!(for_openai(&r, true).is_none());
    }

    use super::*;
    use serde_json::json;

    fn extra(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn effort_from_every_form() {
        assert_eq!(
            effort(&extra(json!({"reasoning_effort": "low"}))),
            Some(Effort::Low)
        );
        assert_eq!(
            effort(&extra(json!({"output_config": {"effort": "max"}}))),
            Some(Effort::High)
        );
        assert_eq!(
            effort(&extra(
                json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": "medium"}})
            )),
            Some(Effort::Medium)
        );
        assert_eq!(effort(&extra(json!({"thinking": {"type": "adaptive"}}))), None);
        assert_eq!(
            effort(&extra(
                json!({"thinking": {"type": "enabled", "budget_tokens": 1024}})
            )),
            Some(Effort::Low)
        );
        assert_eq!(
            effort(&extra(
                json!({"thinking": {"type": "enabled", "budget_tokens": 8000}})
            )),
            Some(Effort::Medium)
        );
        assert_eq!(
            effort(&extra(
                json!({"thinking": {"type": "enabled", "budget_tokens": 32000}})
            )),
            Some(Effort::High)
        );
        assert_eq!(
            effort(&extra(
                json!({"thinking": {"type": "disabled"}, "output_config": {"effort": "high"}})
            )),
            None
        );
    }

    #[test]
    fn openai_reasoning_models() {
        for m in [
            "o3",
            "o4-mini",
            "gpt-5.4",
            "gpt-5-mini-2025-08-07",
            "openai/gpt-5",
        ] {
            assert!(openai_takes_effort(m), "{m}");
        }
        for m in [
            "gpt-4o-mini",
            "gpt-5-chat-latest",
            "gpt-4.1",
            "deepseek-chat",
            "llama3",
        ] {
            assert!(!openai_takes_effort(m), "{m}");
        }
    }

    #[test]
    fn openai_upstreams_get_effort_and_no_anthropic_fields() {
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "gpt-5.4",
            "messages": [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": "x", "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}]}],
            "thinking": {"type": "enabled", "budget_tokens": 20000},
            "context_management": {"edits": []},
            "top_k": 5,
            "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": {"type": "ephemeral"}}],
        }))
        .unwrap();
        let out = for_openai(&req, true).unwrap();
        let v = serde_json::to_value(&out).unwrap();
        assert_eq!(v["reasoning_effort"], "high");
        for k in ["thinking", "context_management", "top_k"] {
            assert!(v.get(k).is_none(), "{k}");
        }
        assert!(v["messages"][1].get("thinking_blocks").is_none());
        assert!(v["tools"][0].get("cache_control").is_none());

        let mut older = req.clone();
        older.model = "gpt-4o-mini".into();
        let v = serde_json::to_value(for_openai(&older, true).unwrap()).unwrap();
        assert!(v.get("reasoning_effort").is_none());

        let plain: ChatRequest = serde_json::from_value(
            json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .unwrap();
        assert!(
            for_openai(&plain, true).is_none(),
            "nothing to change means no copy"
        );
        let mut local = plain.clone();
        local.extra.insert("top_k".into(), json!(20));
        assert!(for_openai(&local, false).is_none(), "vLLM keeps top_k");
    }

    #[test]
    fn gemini_thinking_config() {
        let x = extra(json!({"thinking": {"type": "enabled", "budget_tokens": 3000}}));
        assert_eq!(
            gemini_thinking("gemini-2.5-flash", &x),
            Some(("thinkingBudget", json!(3000)))
        );
        assert_eq!(
            gemini_thinking("gemini-3-pro-preview", &x),
            Some(("thinkingLevel", json!("low")))
        );
        let x = extra(json!({"reasoning_effort": "medium"}));
        assert_eq!(
            gemini_thinking("gemini-2.5-pro", &x),
            Some(("thinkingBudget", json!(8192)))
        );
        assert_eq!(
            gemini_thinking("gemini-3-flash", &x),
            Some(("thinkingLevel", json!("high")))
        );
        assert_eq!(gemini_thinking("gemini-2.0-flash", &x), None);
        assert_eq!(gemini_thinking("gemini-2.5-pro", &extra(json!({}))), None);
    }
}
