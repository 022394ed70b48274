//! Anthropic Messages API <-> OpenAI chat completions (pure translation, no I/O).
//!
//! Outbound (gateway -> Anthropic): [`build_request`] turns an OpenAI
//! [`ChatRequest`] into a `POST /v1/messages` body; [`parse_response`],
//! [`StreamTranslator`] and [`map_error`] turn Anthropic's answers back into
//! OpenAI JSON / OpenAI SSE / [`ProviderError`].
//!
//! Inbound (Anthropic-compatible endpoint `POST /v1/messages` on the gateway):
//! [`messages_to_chat`], [`chat_response_to_messages`],
//! [`ChunkToMessagesStream`] and [`count_tokens_estimate`] go the other way.
//!
//! The caller sends the headers: `x-api-key: <key>`,
//! `anthropic-version: <AnthropicOptions::version>` and
//! `content-type: application/json`
//! (<https://docs.anthropic.com/en/api/versioning>).
//!
//! The OpenAI chunk/usage writers at the end of this file (`ChunkWriter`,
//! `openai_usage_json`, ...) are shared with `gemini.rs`.
//!
//! Mapping tables: `docs/providers.md`.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::{ProviderError, ProviderErrorKind, UpstreamErrorBody};
use crate::api::chat::{ChatMessage, ChatRequest, StreamOptions};
use crate::api::error::ApiError;
use crate::api::usage::{OpenAiUsage, Usage};
use crate::gateway::sse::SseEvent;

/// The `anthropic-version` header value this adapter is written against.
pub const API_VERSION: &str = "2023-06-01";

/// Per-provider settings the translation needs.
#[derive(Debug, Clone)]
pub struct AnthropicOptions {
    /// `max_tokens` to send when the client gave none (Anthropic requires it).
    pub default_max_tokens: u32,
    /// The `anthropic-version` header value (the caller sets the header).
    pub version: String,
    /// Add prompt-cache breakpoints to requests without any (`providers.X.prompt_cache`).
    pub prompt_cache: bool,
    /// The smallest prefix given a breakpoint (None: the model's minimum).
    pub prompt_cache_min_tokens: Option<u64>,
}

impl Default for AnthropicOptions {
    fn default() -> Self {
        AnthropicOptions {
            default_max_tokens: 4096,
            version: API_VERSION.to_string(),
            prompt_cache: false,
            prompt_cache_min_tokens: None,
        }
    }
}

/// An upstream request body plus what could not be expressed in it.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltRequest {
    /// The JSON body to POST upstream.
    pub body: Value,
    /// OpenAI request fields (or field adjustments) that were dropped or
    /// changed, e.g. `"seed"`, `"messages[].content[].input_audio"`,
    /// `"temperature (clamped to 1)"`. Deduplicated, in first-seen order; the
    /// caller logs them as a warning. Empty when the translation was exact.
    pub dropped: Vec<String>,
}

pub(crate) fn note(dropped: &mut Vec<String>, what: impl Into<String>) {
    let what = what.into();
    if !dropped.contains(&what) {
        dropped.push(what);
    }
}

pub(crate) fn bad(message: impl Into<String>, param: impl Into<String>) -> ApiError {
    ApiError::invalid_request(message, Some(param.into()))
}

/// Reports every `extra` field not in `mapped` that asks for something.
pub(crate) fn note_unmapped(extra: &Map<String, Value>, mapped: &[&str], dropped: &mut Vec<String>) {
    for (k, v) in extra {
        if !mapped.contains(&k.as_str()) && !is_default_value(k, v) {
            note(dropped, k.as_str());
        }
    }
}

/// The `function` object of an OpenAI tool or tool call, and its `name`.
pub(crate) fn function_and_name<'a>(
    item: &'a Value,
    what: &str,
    param: String,
) -> Result<(&'a Value, &'a str), ApiError> {
    let f = item.get("function").unwrap_or(&Value::Null);
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("Each {what} needs a function `name`."), param))?;
    Ok((f, name))
}

/// The function name of an object `tool_choice` (`{"type":"function","function":{"name"}}`).
pub(crate) fn tool_choice_name(choice: &Map<String, Value>) -> Result<&str, ApiError> {
    choice
        .get("function")
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`tool_choice.function.name` is required.", "tool_choice"))
}

/// A tool call's `arguments` string as the JSON object both Anthropic
/// (`tool_use.input`) and Gemini (`functionCall.args`) require. Models
/// occasionally emit broken JSON that clients echo back, so this degrades
/// to `{}` (and reports it) instead of failing the request.
pub(crate) fn arguments_object(function: &Value, dropped: &mut Vec<String>) -> Value {
    let raw = function.get("arguments").and_then(Value::as_str).unwrap_or("");
    match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Object(_)) => v,
        _ if raw.trim().is_empty() => json!({}),
        _ => {
            note(
                dropped,
                "messages[].tool_calls[].function.arguments (not a JSON object)",
            );
            json!({})
        }
    }
}

/// The URL of an OpenAI `image_url` part (object or bare-string form).
pub(crate) fn image_url_of(part: &Value) -> &str {
    part.get("image_url")
        .and_then(|u| u.get("url").or(Some(u)))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// OpenAI `message.content`: `null` when there are only tool calls, else the text.
pub(crate) fn content_or_null(text: String, has_tool_calls: bool) -> Value {
    if text.is_empty() && has_tool_calls {
        Value::Null
    } else {
        Value::from(text)
    }
}

/// A `Status` error carrying the provider's error type in `upstream.kind`.
pub(crate) fn status_error(
    status: u16,
    retry_after: Option<Duration>,
    message: String,
    kind: Option<String>,
) -> ProviderError {
    ProviderError {
        kind: ProviderErrorKind::Status,
        status: Some(status),
        message: message.clone(),
        retry_after,
        upstream: Some(Box::new(UpstreamErrorBody {
            message: Some(message),
            kind,
            param: None,
            code: None,
        })),
    }
}

/// A `Malformed` error (2xx body we could not understand).
pub(crate) fn malformed(message: String) -> ProviderError {
    ProviderError::new(ProviderErrorKind::Malformed, message)
}

// ---------------------------------------------------------------------------
// Outbound: OpenAI request -> Anthropic request
// ---------------------------------------------------------------------------

/// OpenAI request fields this adapter maps (everything else in `extra` is dropped).
const MAPPED_FIELDS: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "top_k",
    "thinking",
    "output_config",
    "context_management",
];

/// Builds the body of `POST /v1/messages` from an OpenAI chat request.
///
/// * `system`/`developer` messages (wherever they appear) become the top-level
///   `system` blocks, in order.
/// * Consecutive messages of the same Anthropic role are merged, and
///   consecutive `tool` messages become one `user` message of `tool_result`
///   blocks, because Anthropic requires user/assistant alternation
///   (<https://docs.anthropic.com/en/api/messages>).
/// * `max_completion_tokens` wins over `max_tokens`; without either
///   `opts.default_max_tokens` is sent (the field is required upstream).
///
/// Errors are client mistakes (unsupported role, tool message without
/// `tool_call_id`, unsupported image URL scheme, nothing but system messages).
pub fn build_request(
    req: &ChatRequest,
    upstream_model: &str,
    opts: &AnthropicOptions,
) -> Result<BuiltRequest, ApiError> {
    let mut dropped = Vec::new();
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();

    for (i, m) in req.messages.iter().enumerate() {
        if m.extra.contains_key("name") {
            note(&mut dropped, "messages[].name");
        }
        let (role, blocks) = match m.role.as_str() {
            "system" | "developer" => {
                system.extend(content_blocks(m.content.as_ref(), i, &mut dropped, true)?);
                continue;
            }
            "user" => (
                "user",
                content_blocks(m.content.as_ref(), i, &mut dropped, false)?,
            ),
            "assistant" => ("assistant", assistant_blocks(m, i, &mut dropped)?),
            "tool" => ("user", vec![tool_result_block(m, i, &mut dropped)?]),
            other => {
                return Err(bad(
                    format!("Message role `{other}` is not supported by Anthropic models."),
                    format!("messages[{i}].role"),
                ))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((r, prev)) if *r == role => prev.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }

    // tool_result blocks must come first in a user turn
    // (https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use).
    for (role, blocks) in &mut turns {
        if *role == "user" {
            let (mut results, rest): (Vec<Value>, Vec<Value>) = blocks
                .drain(..)
                .partition(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"));
            results.extend(rest);
            *blocks = results;
        }
    }
    // A final assistant turn is a prefill, and Anthropic rejects prefills that
    // end in whitespace ("final assistant content cannot end with trailing
    // whitespace", https://docs.anthropic.com/en/api/messages).
    if let Some((role, blocks)) = turns.last_mut() {
        if *role == "assistant" {
            if let Some(Value::Object(last)) = blocks.last_mut() {
                if let Some(Value::String(t)) = last.get_mut("text") {
                    let trimmed = t.trim_end().len();
                    t.truncate(trimmed);
                    if t.is_empty() {
                        blocks.pop();
                    }
                }
            }
            if blocks.is_empty() {
                turns.pop();
            }
        }
    }
    if turns.is_empty() {
        return Err(bad(
            "Anthropic models need at least one user or assistant message besides system messages.",
            "messages",
        ));
    }

    let x = &req.extra;
    let max_tokens = x
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| x.get("max_tokens").and_then(Value::as_u64))
        .unwrap_or(u64::from(opts.default_max_tokens));

    let mut body = Map::new();
    body.insert("model".into(), Value::from(upstream_model));
    body.insert("max_tokens".into(), Value::from(max_tokens));
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    let messages = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    body.insert("messages".into(), Value::Array(messages));

    if let Some(t) = x.get("temperature").and_then(Value::as_f64) {
        // Anthropic's range is 0..=1 where OpenAI's is 0..=2
        // (https://docs.anthropic.com/en/api/messages#body-temperature).
        let t = if t > 1.0 {
            note(&mut dropped, "temperature (clamped to 1)");
            1.0
        } else {
            t
        };
        body.insert("temperature".into(), Value::from(t));
    }
    for key in ["top_p", "top_k"] {
        if let Some(p) = x.get(key).filter(|v| v.is_number()) {
            body.insert(key.into(), p.clone());
        }
    }
    // Anthropic's own controls (from `/v1/messages` clients), untouched.
    for key in PASSTHROUGH_FIELDS {
        if let Some(v) = x.get(*key).filter(|v| !v.is_null()) {
            body.insert((*key).into(), v.clone());
        }
    }
    let stops: Vec<Value> = match x.get("stop") {
        Some(Value::String(s)) => vec![Value::from(s.as_str())],
        Some(Value::Array(a)) => a.iter().filter(|s| s.is_string()).cloned().collect(),
        _ => Vec::new(),
    };
    let stops: Vec<Value> = stops
        .into_iter()
        .filter(|s| s.as_str().is_some_and(|s| !s.is_empty()))
        .collect();
    if !stops.is_empty() {
        body.insert("stop_sequences".into(), Value::Array(stops));
    }

    let tools = build_tools(x.get("tools"), &mut dropped)?;
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
        let mut choice = match x.get("tool_choice") {
            Some(Value::String(s)) => match s.as_str() {
                "none" => Some(json!({"type": "none"})),
                "required" => Some(json!({"type": "any"})),
                _ => Some(json!({"type": "auto"})),
            },
            Some(Value::Object(o)) => Some(json!({"type": "tool", "name": tool_choice_name(o)?})),
            _ => None,
        };
        // parallel_tool_calls=false is expressed on tool_choice
        // (https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use#parallel-tool-use).
        if x.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
            let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
            if c["type"] != "none" {
                c["disable_parallel_tool_use"] = Value::Bool(true);
            }
        }
        if let Some(c) = choice {
            body.insert("tool_choice".into(), c);
        }
    }

    if let Some(u) = x.get("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({ "user_id": u }));
    }
    if req.is_stream() {
        body.insert("stream".into(), Value::Bool(true));
    }

    note_unmapped(x, MAPPED_FIELDS, &mut dropped);
    let mut body = Value::Object(body);
    if opts.prompt_cache {
        let min = opts
            .prompt_cache_min_tokens
            .unwrap_or_else(|| super::prompt_cache::min_tokens_for(upstream_model));
        super::prompt_cache::add_breakpoints(&mut body, min);
    }
    Ok(BuiltRequest { body, dropped })
}

/// Values that ask for nothing beyond the default, so dropping them loses nothing.
pub(crate) fn is_default_value(key: &str, v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Number(n) => key == "n" && n.as_u64() == Some(1),
        _ => false,
    }
}

fn build_tools(tools: Option<&Value>, dropped: &mut Vec<String>) -> Result<Vec<Value>, ApiError> {
    let Some(Value::Array(tools)) = tools else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(tools.len());
    for (j, t) in tools.iter().enumerate() {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            note(dropped, "tools[] (non-function tool)");
            continue;
        }
        let (f, name) = function_and_name(t, "function tool", format!("tools[{j}].function.name"))?;
        let mut o = Map::new();
        o.insert("name".into(), Value::from(name));
        if let Some(d) = f.get("description").and_then(Value::as_str) {
            o.insert("description".into(), Value::from(d));
        }
        let schema = match f.get("parameters") {
            Some(p @ Value::Object(_)) => p.clone(),
            _ => json!({"type": "object", "properties": {}}),
        };
        o.insert("input_schema".into(), schema);
        if let Some(cc) = t.get("cache_control").or_else(|| f.get("cache_control")) {
            o.insert("cache_control".into(), cc.clone());
        }
        if f.get("strict") == Some(&Value::Bool(true)) {
            note(dropped, "tools[].function.strict");
        }
        out.push(Value::Object(o));
    }
    Ok(out)
}

/// Content blocks for a user/system message (string or OpenAI content parts).
fn content_blocks(
    content: Option<&Value>,
    i: usize,
    dropped: &mut Vec<String>,
    text_only: bool,
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    match content {
        // Anthropic rejects empty text blocks.
        Some(Value::String(s)) if !s.is_empty() => out.push(json!({"type": "text", "text": s})),
        Some(Value::Array(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
                match kind {
                    "text" => {
                        let t = p.get("text").and_then(Value::as_str).unwrap_or("");
                        if t.is_empty() {
                            continue;
                        }
                        let mut b = json!({"type": "text", "text": t});
                        // Clients that know Anthropic send cache_control on
                        // OpenAI parts; keep it so prompt caching still works
                        // (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching).
                        if let Some(cc) = p.get("cache_control") {
                            b["cache_control"] = cc.clone();
                        }
                        out.push(b);
                    }
                    "image_url" if !text_only => {
                        out.push(image_block(
                            image_url_of(p),
                            &format!("messages[{i}].content[{j}].image_url.url"),
                        )?);
                        if p.get("image_url").and_then(|u| u.get("detail")).is_some() {
                            note(dropped, "messages[].content[].image_url.detail");
                        }
                    }
                    "file" if !text_only => match file_block(p) {
                        Some(b) => out.push(b),
                        None => note(dropped, "messages[].content[].file (only base64 PDFs are sent)"),
                    },
                    other => note(dropped, format!("messages[].content[].{other}")),
                }
            }
        }
        _ => {}
    }
    Ok(out)
}

/// Splits a `data:` URL into (media type, base64 payload).
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((
        if media.is_empty() {
            "application/octet-stream"
        } else {
            media
        },
        data,
    ))
}

fn image_block(url: &str, param: &str) -> Result<Value, ApiError> {
    if let Some((media, data)) = parse_data_url(url) {
        return Ok(json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        // URL image sources: https://docs.anthropic.com/en/docs/build-with-claude/vision
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(bad(
        "Image URLs must be base64 `data:` URLs or http(s) URLs.",
        param,
    ))
}

fn file_block(part: &Value) -> Option<Value> {
    let data = part.get("file")?.get("file_data")?.as_str()?;
    let (media, b64) = parse_data_url(data)?;
    (media == "application/pdf")
        .then(|| json!({"type": "document", "source": {"type": "base64", "media_type": media, "data": b64}}))
}

fn assistant_blocks(m: &ChatMessage, i: usize, dropped: &mut Vec<String>) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    // Thinking blocks (with their signatures) come first, as Anthropic sent them.
    if let Some(Value::Array(blocks)) = m.extra.get(THINKING_BLOCKS) {
        out.extend(
            blocks
                .iter()
                .filter(|b| {
                    matches!(
                        b.get("type").and_then(Value::as_str),
                        Some("thinking" | "redacted_thinking")
                    )
                })
                .cloned(),
        );
    }
    match &m.content {
        Some(Value::String(s)) if !s.is_empty() => out.push(json!({"type": "text", "text": s})),
        Some(Value::Array(parts)) => {
            for p in parts {
                let t = p
                    .get("text")
                    .or_else(|| p.get("refusal"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !t.is_empty() {
                    out.push(json!({"type": "text", "text": t}));
                }
            }
        }
        _ => {}
    }
    if m.extra.contains_key("reasoning_content") && !m.extra.contains_key(THINKING_BLOCKS) {
        // Thinking blocks need Anthropic's signature to be sent back; an
        // OpenAI reasoning_content string has none.
        note(dropped, "messages[].reasoning_content");
    }
    if let Some(Value::Array(calls)) = m.extra.get("tool_calls") {
        for (j, c) in calls.iter().enumerate() {
            let id = c.get("id").and_then(Value::as_str).ok_or_else(|| {
                bad(
                    "Each tool call needs an `id`.",
                    format!("messages[{i}].tool_calls[{j}].id"),
                )
            })?;
            let (f, name) = function_and_name(
                c,
                "tool call",
                format!("messages[{i}].tool_calls[{j}].function.name"),
            )?;
            let input = arguments_object(f, dropped);
            out.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        }
    }
    Ok(out)
}

fn tool_result_block(m: &ChatMessage, i: usize, dropped: &mut Vec<String>) -> Result<Value, ApiError> {
    let id = m
        .extra
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad(
                "Tool messages need a `tool_call_id`.",
                format!("messages[{i}].tool_call_id"),
            )
        })?;
    let content = match &m.content {
        Some(Value::String(s)) => Value::from(s.as_str()),
        Some(v @ Value::Array(_)) => Value::Array(content_blocks(Some(v), i, dropped, false)?),
        _ => Value::from(""),
    };
    Ok(json!({"type": "tool_result", "tool_use_id": id, "content": content}))
}

// ---------------------------------------------------------------------------
// Outbound: Anthropic response -> OpenAI response
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct AUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct AErrorBody {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AMessage {
    #[serde(default)]
    id: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<String>,
    /// Which stop sequence matched, when `stop_reason` is `stop_sequence`.
    #[serde(default)]
    stop_sequence: Option<String>,
    #[serde(default)]
    usage: AUsage,
    #[serde(default)]
    error: Option<AErrorBody>,
}

/// Anthropic usage -> normalised usage. Anthropic's `input_tokens` excludes
/// cache reads and writes (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching#tracking-cache-performance).
fn normalise_usage(u: &AUsage) -> Usage {
    let cached = u.cache_read_input_tokens.unwrap_or(0);
    let written = u.cache_creation_input_tokens.unwrap_or(0);
    Usage {
        prompt_tokens: u
            .input_tokens
            .unwrap_or(0)
            .saturating_add(cached)
            .saturating_add(written),
        completion_tokens: u.output_tokens.unwrap_or(0),
        cached_tokens: cached,
        cache_write_tokens: written,
        reasoning_tokens: 0,
    }
}

/// Anthropic `stop_reason` -> OpenAI `finish_reason`
/// (https://docs.anthropic.com/en/api/handling-stop-reasons).
fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and future reasons.
        _ => "stop",
    }
}

/// Translates a complete Anthropic message into an OpenAI `chat.completion`
/// body (with `usage.prompt_tokens_details.cached_tokens`) and its usage.
///
/// `thinking` blocks become `message.reasoning_content`; `redacted_thinking`
/// and server-tool blocks are left out.
pub fn parse_response(body: &[u8], public_model: &str) -> Result<(Bytes, Usage), ProviderError> {
    let msg: AMessage =
        serde_json::from_slice(body).map_err(|e| malformed(format!("Anthropic response: {e}")))?;
    if msg.kind == "error" {
        return Err(error_from_body(None, None, msg.error.unwrap_or_default()));
    }
    if msg.kind != "message" && msg.id.is_empty() {
        return Err(malformed("Anthropic response is not a message".into()));
    }
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    let mut thinking_blocks = Vec::new();
    for b in &msg.content {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => {
                reasoning.push_str(b.get("thinking").and_then(Value::as_str).unwrap_or(""));
                thinking_blocks.push(b.clone());
            }
            Some("redacted_thinking") => thinking_blocks.push(b.clone()),
            Some("tool_use") => {
                let args = b.get("input").map_or_else(|| "{}".to_string(), Value::to_string);
                tool_calls.push(json!({
                    "id": b.get("id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {"name": b.get("name").cloned().unwrap_or(Value::Null), "arguments": args},
                }));
            }
            _ => {}
        }
    }
    let usage = normalise_usage(&msg.usage);
    let mut message = Map::new();
    message.insert("role".into(), Value::from("assistant"));
    message.insert("content".into(), content_or_null(text, !tool_calls.is_empty()));
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), Value::from(reasoning));
    }
    if !thinking_blocks.is_empty() {
        // OpenAI clients ignore it; `/v1/messages` gives the signed blocks back.
        message.insert(THINKING_BLOCKS.into(), Value::Array(thinking_blocks));
    }
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    let mut choice = json!({
        "index": 0,
        "message": message,
        "logprobs": null,
        "finish_reason": finish_reason(msg.stop_reason.as_deref().unwrap_or("end_turn")),
    });
    // OpenAI cannot say which stop sequence matched; keep Anthropic's answer in
    // an extra field (clients ignore it) so /v1/messages can give it back.
    if let (Some("stop_sequence"), Some(seq), Some(obj)) = (
        msg.stop_reason.as_deref(),
        &msg.stop_sequence,
        choice.as_object_mut(),
    ) {
        obj.insert("stop_sequence".into(), Value::from(seq.as_str()));
    }
    let out = json!({
        "id": openai_id(&msg.id),
        "object": "chat.completion",
        "created": now_secs(),
        "model": public_model,
        "choices": [choice],
        "usage": openai_usage_json(&usage),
    });
    Ok((Bytes::from(out.to_string()), usage))
}

/// Separates a tool-call id from a Gemini thought signature carried inside it.
const SIG_MARK: &str = "~gsig~";

/// Anthropic's `tool_use` block has no place for Gemini 3's thought signature,
/// which must be sent back with the function call on the next turn
/// (<https://ai.google.dev/gemini-api/docs/thought-signatures>). On the
/// Anthropic-compatible endpoint it rides inside the tool-use id, which
/// clients echo back verbatim; `decode_tool_id` restores both parts, so
/// upstreams only ever see the original id.
pub fn encode_tool_id(id: &str, extra_content: Option<&Value>) -> String {
    match extra_content
        .and_then(|e| e.pointer("/google/thought_signature"))
        .and_then(Value::as_str)
    {
        Some(sig) if !sig.is_empty() => format!("{id}{SIG_MARK}{sig}"),
        _ => id.to_string(),
    }
}

/// Inverse of [`encode_tool_id`]: (original id, signature).
pub fn decode_tool_id(id: &str) -> (String, Option<String>) {
    match id.split_once(SIG_MARK) {
        Some((id, sig)) => (id.to_string(), Some(sig.to_string())),
        None => (id.to_string(), None),
    }
}

fn openai_id(upstream: &str) -> String {
    if upstream.is_empty() {
        format!("chatcmpl-{:016x}", fastrand::u64(..))
    } else {
        format!("chatcmpl-{upstream}")
    }
}

/// HTTP status Anthropic uses for each error `type`
/// (https://docs.anthropic.com/en/api/errors).
fn status_for_error_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

fn error_from_body(status: Option<u16>, retry_after: Option<Duration>, e: AErrorBody) -> ProviderError {
    let kind = e.kind.unwrap_or_else(|| "api_error".into());
    let status = status.unwrap_or_else(|| status_for_error_type(&kind));
    let message = e
        .message
        .unwrap_or_else(|| format!("Anthropic {kind} (HTTP {status})"));
    status_error(status, retry_after, message, Some(kind))
}

/// Classifies an Anthropic error response
/// (`{"type":"error","error":{"type","message"}}`, <https://docs.anthropic.com/en/api/errors>).
/// 529 `overloaded_error` stays 529 and is retryable; a body that is not
/// Anthropic's shape falls back to [`ProviderError::from_status`].
pub fn map_error(status: u16, retry_after: Option<Duration>, body: &[u8]) -> ProviderError {
    #[derive(Deserialize)]
    struct Envelope {
        error: AErrorBody,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(env) if env.error.kind.is_some() || env.error.message.is_some() => {
            error_from_body(Some(status), retry_after, env.error)
        }
        _ => ProviderError::from_status(status, retry_after, &Bytes::copy_from_slice(body)),
    }
}

// ---------------------------------------------------------------------------
// Outbound streaming: Anthropic SSE -> OpenAI SSE
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct StreamEv<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    delta: Option<EvDelta<'a>>,
    #[serde(default)]
    content_block: Option<Value>,
    #[serde(default)]
    message: Option<StartMessage>,
    #[serde(default)]
    usage: Option<AUsage>,
    #[serde(default)]
    error: Option<AErrorBody>,
}

#[derive(Deserialize)]
struct EvDelta<'a> {
    #[serde(default, rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    signature: Option<Cow<'a, str>>,
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    usage: AUsage,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BlockKind {
    Text,
    Thinking,
    /// A tool_use block and its OpenAI `tool_calls[].index`.
    Tool(u32),
    Other,
}

/// Translates an Anthropic event stream into OpenAI `chat.completion.chunk`
/// SSE frames, one event at a time (feed it [`SseEvent`]s from an
/// `SseSplitter`). Output frames are complete `data: ...\n\n` byte strings.
pub struct StreamTranslator {
    writer: ChunkWriter,
    include_usage_chunk: bool,
    /// Anthropic content-block index -> kind, in index order.
    blocks: Vec<(u64, BlockKind)>,
    next_tool: u32,
    usage: Option<AUsage>,
    finish: Option<&'static str>,
    finished: bool,
}

impl StreamTranslator {
    /// `include_usage_chunk`: emit the OpenAI usage chunk (`"choices":[]`)
    /// before `[DONE]`.
    pub fn new(public_model: &str, include_usage_chunk: bool) -> Self {
        StreamTranslator {
            writer: ChunkWriter::new(&openai_id(""), now_secs(), public_model),
            include_usage_chunk,
            blocks: Vec::new(),
            next_tool: 0,
            usage: None,
            finish: None,
            finished: false,
        }
    }

    /// Fixes the `created` timestamp of every chunk (for reproducible output).
    pub fn with_created(mut self, created: u64) -> Self {
        self.writer.set_created(created);
        self
    }

    /// Usage so far: input from `message_start`, output from the latest
    /// `message_delta`. None before `message_start`.
    pub fn usage(&self) -> Option<Usage> {
        self.usage.as_ref().map(normalise_usage)
    }

    /// Whether `message_stop` has been seen (and `[DONE]` emitted).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn block(&self, index: Option<u64>) -> BlockKind {
        let Some(index) = index else {
            return BlockKind::Other;
        };
        self.blocks
            .iter()
            .rev()
            .find(|(i, _)| *i == index)
            .map_or(BlockKind::Other, |(_, k)| *k)
    }

    /// Handles one upstream event, appending zero or more OpenAI SSE frames to
    /// `out`. Returns `Ok(true)` once the stream is complete (`message_stop`).
    /// An `error` event becomes a `ProviderError` (`overloaded_error` -> 529).
    pub fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<Bytes>) -> Result<bool, ProviderError> {
        if self.finished {
            return Ok(true);
        }
        let Some(data) = ev.data.as_deref() else {
            return Ok(false);
        };
        let e: StreamEv = serde_json::from_slice(data)
            .map_err(|err| malformed(format!("Anthropic stream event: {err}")))?;
        match e.kind.as_ref() {
            "message_start" => {
                if let Some(m) = e.message {
                    if !m.id.is_empty() {
                        self.writer.set_id(&openai_id(&m.id));
                    }
                    self.usage = Some(m.usage);
                }
                out.push(
                    self.writer
                        .chunk(0, br#"{"role":"assistant","content":""}"#, None),
                );
            }
            "content_block_start" => {
                let block = e.content_block.unwrap_or(Value::Null);
                let index = e.index.unwrap_or(self.blocks.len() as u64);
                let kind = match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = block
                            .get("text")
                            .and_then(Value::as_str)
                            .filter(|t| !t.is_empty())
                        {
                            out.push(self.writer.chunk(0, &delta_str("content", t), None));
                        }
                        BlockKind::Text
                    }
                    Some("thinking") => {
                        if let Some(t) = block
                            .get("thinking")
                            .and_then(Value::as_str)
                            .filter(|t| !t.is_empty())
                        {
                            out.push(self.writer.chunk(0, &delta_str("reasoning_content", t), None));
                        }
                        BlockKind::Thinking
                    }
                    Some("redacted_thinking") => {
                        // Not OpenAI's; `/v1/messages` turns it back into the block.
                        let d =
                            json!({"redacted_thinking": block.get("data").cloned().unwrap_or(Value::Null)});
                        out.push(self.writer.chunk(0, d.to_string().as_bytes(), None));
                        BlockKind::Other
                    }
                    Some("tool_use") => {
                        let n = self.next_tool;
                        self.next_tool += 1;
                        let d = json!({"tool_calls": [{
                            "index": n,
                            "id": block.get("id").cloned().unwrap_or(Value::Null),
                            "type": "function",
                            "function": {"name": block.get("name").cloned().unwrap_or(Value::Null), "arguments": ""},
                        }]});
                        out.push(self.writer.chunk(0, d.to_string().as_bytes(), None));
                        BlockKind::Tool(n)
                    }
                    _ => BlockKind::Other,
                };
                self.blocks.push((index, kind));
            }
            "content_block_delta" => {
                let kind = self.block(e.index);
                let Some(d) = e.delta else {
                    return Ok(false);
                };
                match (d.kind.as_deref(), kind) {
                    (Some("text_delta"), _) => {
                        if let Some(t) = d.text.as_deref().filter(|t| !t.is_empty()) {
                            out.push(self.writer.chunk(0, &delta_str("content", t), None));
                        }
                    }
                    (Some("thinking_delta"), _) => {
                        if let Some(t) = d.thinking.as_deref().filter(|t| !t.is_empty()) {
                            out.push(self.writer.chunk(0, &delta_str("reasoning_content", t), None));
                        }
                    }
                    (Some("signature_delta"), BlockKind::Thinking) => {
                        // Not OpenAI's; `/v1/messages` needs it to give the
                        // signed block back (clients send it on the next turn).
                        if let Some(sig) = d.signature.as_deref().filter(|s| !s.is_empty()) {
                            out.push(self.writer.chunk(0, &delta_str(SIGNATURE_DELTA, sig), None));
                        }
                    }
                    (Some("input_json_delta"), BlockKind::Tool(n)) => {
                        if let Some(p) = d.partial_json.as_deref().filter(|p| !p.is_empty()) {
                            out.push(self.writer.chunk(0, &delta_tool_args(n, p), None));
                        }
                    }
                    // citations_delta, deltas of unknown blocks.
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(r) = e.delta.and_then(|d| d.stop_reason) {
                    self.finish = Some(finish_reason(&r));
                }
                if let Some(u) = e.usage {
                    // output_tokens here is cumulative; input counts, when
                    // present, are final values too.
                    let cur = self.usage.get_or_insert_with(AUsage::default);
                    cur.output_tokens = u.output_tokens.or(cur.output_tokens);
                    cur.input_tokens = u.input_tokens.or(cur.input_tokens);
                    cur.cache_read_input_tokens = u.cache_read_input_tokens.or(cur.cache_read_input_tokens);
                    cur.cache_creation_input_tokens =
                        u.cache_creation_input_tokens.or(cur.cache_creation_input_tokens);
                }
            }
            "message_stop" => {
                out.push(self.writer.chunk(0, b"{}", Some(self.finish.unwrap_or("stop"))));
                if self.include_usage_chunk {
                    out.push(self.writer.usage_chunk(&self.usage().unwrap_or_default()));
                }
                out.push(Bytes::from_static(DONE_FRAME));
                self.finished = true;
                return Ok(true);
            }
            "error" => return Err(error_from_body(None, None, e.error.unwrap_or_default())),
            // ping, content_block_stop and future event types.
            _ => {}
        }
        Ok(false)
    }
}

// ---------------------------------------------------------------------------
// Inbound: Anthropic request -> OpenAI request (the gateway's /v1/messages)
// ---------------------------------------------------------------------------

/// Translates an Anthropic Messages request (as sent to the gateway's
/// `POST /v1/messages`) into an OpenAI [`ChatRequest`].
///
/// `system` becomes a leading system message (text blocks keep their
/// `cache_control`, so an Anthropic upstream still caches); `tool_result`
/// blocks become `tool` messages placed before the rest of their user turn
/// (an `is_error` result is prefixed with `"Error: "`); `tool_use` blocks
/// become `tool_calls`; `stop_sequences` -> `stop`; `metadata.user_id` ->
/// `user`; `disable_parallel_tool_use` -> `parallel_tool_calls: false`.
/// Streams ask for the usage chunk. Dropped: `top_k`, `thinking`, thinking
/// blocks, server tools, images inside tool results.
pub fn messages_to_chat(body: &Value) -> Result<ChatRequest, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::invalid_request("The request body must be a JSON object.", None))?;
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad("`model` is required.", "model"))?;
    let max_tokens = obj.get("max_tokens").and_then(Value::as_u64).ok_or_else(|| {
        bad(
            "`max_tokens` is required and must be a non-negative integer.",
            "max_tokens",
        )
    })?;
    let in_msgs = obj
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad("`messages` must be a non-empty array.", "messages"))?;

    // The system prompt: the top-level `system`, then every `role: "system"`
    // entry of `messages` (Claude Code sends some), in order. One leading
    // system message, so the classifier and every upstream read it as system.
    let mut system: Vec<Value> = Vec::new();
    system_parts(obj.get("system"), &mut system);
    let mut messages = Vec::with_capacity(in_msgs.len() + 1);
    for (i, m) in in_msgs.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content");
        match role {
            "user" => user_to_chat(content, i, &mut messages)?,
            "assistant" => messages.push(assistant_to_chat(content)),
            "system" => system_parts(content, &mut system),
            _ => {
                return Err(bad(
                    "Message role must be `user`, `assistant` or `system`.",
                    format!("messages[{i}].role"),
                ))
            }
        }
    }
    if messages.is_empty() {
        return Err(bad(
            "`messages` needs at least one `user` or `assistant` message.",
            "messages",
        ));
    }
    if !system.is_empty() {
        let content = match system.as_slice() {
            // A single plain block stays a plain string (the common case).
            [only] if only.get("cache_control").is_none() => only.get("text").cloned(),
            _ => Some(Value::Array(system)),
        };
        messages.insert(0, msg("system", content));
    }

    let mut extra = Map::new();
    extra.insert("max_tokens".into(), Value::from(max_tokens));
    for key in ["temperature", "top_p", "top_k"] {
        if let Some(v) = obj.get(key).filter(|v| v.is_number()) {
            extra.insert(key.into(), v.clone());
        }
    }
    // Anthropic's reasoning and context controls travel as sent: an Anthropic
    // upstream gets them untouched, the others map them (see
    // `reasoning_effort` and `strip_anthropic_only`).
    for key in PASSTHROUGH_FIELDS {
        if let Some(v) = obj.get(*key).filter(|v| !v.is_null()) {
            extra.insert((*key).into(), v.clone());
        }
    }
    if let Some(Value::Array(stops)) = obj.get("stop_sequences") {
        if !stops.is_empty() {
            extra.insert("stop".into(), Value::Array(stops.clone()));
        }
    }
    if let Some(Value::Array(tools)) = obj.get("tools") {
        let fns: Vec<Value> = tools
            .iter()
            // Server tools (web_search_*, bash_*, ...) have a versioned `type`
            // and no input_schema; they cannot run on another provider.
            .filter(|t| t.get("input_schema").is_some())
            .map(|t| {
                let mut f = Map::new();
                f.insert("name".into(), t.get("name").cloned().unwrap_or(Value::Null));
                if let Some(d) = t.get("description") {
                    f.insert("description".into(), d.clone());
                }
                f.insert(
                    "parameters".into(),
                    t.get("input_schema").cloned().unwrap_or(Value::Null),
                );
                let mut tool = json!({"type": "function", "function": f});
                if let Some(cc) = t.get("cache_control") {
                    tool["cache_control"] = cc.clone();
                }
                tool
            })
            .collect();
        if !fns.is_empty() {
            extra.insert("tools".into(), Value::Array(fns));
        }
    }
    if let Some(tc) = obj.get("tool_choice") {
        let choice = match tc.get("type").and_then(Value::as_str) {
            Some("any") => Some(Value::from("required")),
            Some("none") => Some(Value::from("none")),
            Some("tool") => Some(
                json!({"type": "function", "function": {"name": tc.get("name").cloned().unwrap_or(Value::Null)}}),
            ),
            Some("auto") => Some(Value::from("auto")),
            _ => None,
        };
        if let Some(c) = choice {
            extra.insert("tool_choice".into(), c);
        }
        if tc.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
            extra.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    if let Some(u) = obj
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        extra.insert("user".into(), Value::from(u));
    }
    let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    Ok(ChatRequest {
        model: model.to_string(),
        messages,
        stream: stream.then_some(true),
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            extra: Map::new(),
        }),
        extra,
    })
}

/// Anthropic request fields kept as sent in `ChatRequest::extra`: forwarded
/// untouched to Anthropic upstreams, mapped or removed for the others.
pub const PASSTHROUGH_FIELDS: &[&str] = &["thinking", "output_config", "context_management"];

/// Appends the text blocks of a `system` value (string or blocks) to `out`.
fn system_parts(v: Option<&Value>, out: &mut Vec<Value>) {
    match v {
        Some(Value::String(s)) if !s.is_empty() => out.push(json!({"type": "text", "text": s})),
        Some(Value::Array(blocks)) => out.extend(blocks.iter().filter_map(text_part).filter(|p| {
            p.get("text")
                .and_then(Value::as_str)
                .is_some_and(|t| !t.is_empty())
        })),
        _ => {}
    }
}

fn msg(role: &str, content: Option<Value>) -> ChatMessage {
    ChatMessage {
        role: role.to_string(),
        content,
        extra: Map::new(),
    }
}

fn text_part(block: &Value) -> Option<Value> {
    let t = block.get("text").and_then(Value::as_str)?;
    let mut p = json!({"type": "text", "text": t});
    if let Some(cc) = block.get("cache_control") {
        p["cache_control"] = cc.clone();
    }
    Some(p)
}

fn block_to_part(b: &Value) -> Option<Value> {
    match b.get("type").and_then(Value::as_str)? {
        "text" => text_part(b),
        "image" => {
            let src = b.get("source")?;
            let url = match src.get("type").and_then(Value::as_str)? {
                "base64" => format!(
                    "data:{};base64,{}",
                    src.get("media_type")
                        .and_then(Value::as_str)
                        .unwrap_or("image/png"),
                    src.get("data").and_then(Value::as_str).unwrap_or("")
                ),
                "url" => src.get("url").and_then(Value::as_str)?.to_string(),
                _ => return None,
            };
            Some(json!({"type": "image_url", "image_url": {"url": url}}))
        }
        "document" => {
            let src = b.get("source")?;
            (src.get("type").and_then(Value::as_str)? == "base64").then(|| {
                json!({"type": "file", "file": {"file_data": format!(
                    "data:{};base64,{}",
                    src.get("media_type").and_then(Value::as_str).unwrap_or("application/pdf"),
                    src.get("data").and_then(Value::as_str).unwrap_or("")
                )}})
            })
        }
        _ => None,
    }
}

fn user_to_chat(content: Option<&Value>, i: usize, out: &mut Vec<ChatMessage>) -> Result<(), ApiError> {
    match content {
        Some(Value::String(s)) => out.push(msg("user", Some(Value::from(s.as_str())))),
        Some(Value::Array(blocks)) => {
            let mut parts = Vec::new();
            for b in blocks {
                if b.get("type").and_then(Value::as_str) == Some("tool_result") {
                    let id = b.get("tool_use_id").and_then(Value::as_str).ok_or_else(|| {
                        bad(
                            "tool_result blocks need a `tool_use_id`.",
                            format!("messages[{i}].content"),
                        )
                    })?;
                    let mut text = match b.get("content") {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Array(inner)) => inner
                            .iter()
                            .filter_map(|x| x.get("text").and_then(Value::as_str))
                            .collect::<Vec<_>>()
                            .join("\n"),
                        _ => String::new(),
                    };
                    if b.get("is_error") == Some(&Value::Bool(true)) {
                        text.insert_str(0, "Error: ");
                    }
                    // A cache breakpoint on the result stays on its text.
                    let content = match b.get("cache_control") {
                        Some(cc) => json!([{"type": "text", "text": text, "cache_control": cc}]),
                        None => Value::from(text),
                    };
                    let mut m = msg("tool", Some(content));
                    m.extra
                        .insert("tool_call_id".into(), Value::from(decode_tool_id(id).0));
                    out.push(m);
                } else if let Some(p) = block_to_part(b) {
                    parts.push(p);
                }
            }
            if !parts.is_empty() {
                out.push(msg("user", Some(Value::Array(parts))));
            }
        }
        _ => {
            return Err(bad(
                "Message content must be a string or an array of blocks.",
                format!("messages[{i}].content"),
            ))
        }
    }
    Ok(())
}

fn assistant_to_chat(content: Option<&Value>) -> ChatMessage {
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut thinking = Vec::new();
    match content {
        Some(Value::String(s)) => text.push_str(s),
        Some(Value::Array(blocks)) => {
            for b in blocks {
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
                    // Signed thinking must go back to Anthropic as it came
                    // (tool use with thinking requires it); other upstreams
                    // never see it (`strip_anthropic_only`).
                    Some("thinking" | "redacted_thinking") => thinking.push(b.clone()),
                    Some("tool_use") => {
                        let (id, sig) = decode_tool_id(b.get("id").and_then(Value::as_str).unwrap_or(""));
                        let mut call = json!({
                            "id": id,
                            "type": "function",
                            "function": {
                                "name": b.get("name").cloned().unwrap_or(Value::Null),
                                "arguments": b.get("input").map_or_else(|| "{}".to_string(), Value::to_string),
                            },
                        });
                        if let (Some(sig), Some(obj)) = (sig, call.as_object_mut()) {
                            obj.insert(
                                "extra_content".into(),
                                json!({"google": {"thought_signature": sig}}),
                            );
                        }
                        calls.push(call);
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    let mut m = msg("assistant", Some(content_or_null(text, !calls.is_empty())));
    if !calls.is_empty() {
        m.extra.insert("tool_calls".into(), Value::Array(calls));
    }
    if !thinking.is_empty() {
        m.extra.insert(THINKING_BLOCKS.into(), Value::Array(thinking));
    }
    m
}

/// The assistant-message field (ours, not OpenAI's) carrying Anthropic
/// `thinking` / `redacted_thinking` blocks with their signatures, in
/// requests from `/v1/messages` and in translated Anthropic responses.
pub const THINKING_BLOCKS: &str = "thinking_blocks";

/// OpenAI `finish_reason` -> Anthropic `stop_reason`.
fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

fn anthropic_usage_json(u: &Usage) -> Value {
    // Anthropic's input_tokens excludes cache reads and writes.
    json!({
        "input_tokens": u.prompt_tokens.saturating_sub(u.cached_tokens.saturating_add(u.cache_write_tokens)),
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "output_tokens": u.completion_tokens,
    })
}

fn upstream_bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message).with_code("upstream_bad_response")
}

/// Translates an OpenAI `chat.completion` body into an Anthropic `message`
/// (usage `input_tokens` excludes cached tokens, which are reported as
/// `cache_read_input_tokens`). `reasoning_content` becomes a `thinking` block
/// with an empty signature.
pub fn chat_response_to_messages(openai_body: &[u8], model: &str) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(openai_body)
        .map_err(|e| upstream_bad(format!("Upstream response is not JSON: {e}.")))?;
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| upstream_bad("Upstream response has no choices.".into()))?;
    let m = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    if let Some(Value::Array(blocks)) = m.get(THINKING_BLOCKS) {
        content.extend(blocks.iter().cloned());
    } else if let Some(r) = m
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    if let Some(t) = m.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": t}));
    }
    if let Some(Value::Array(calls)) = m.get("tool_calls") {
        for c in calls {
            let f = c.get("function").unwrap_or(&Value::Null);
            let args = f.get("arguments").and_then(Value::as_str).unwrap_or("");
            let input = match serde_json::from_str::<Value>(args) {
                Ok(o @ Value::Object(_)) => o,
                _ => json!({}),
            };
            content.push(json!({
                "type": "tool_use",
                "id": encode_tool_id(c.get("id").and_then(Value::as_str).unwrap_or(""), c.get("extra_content")),
                "name": f.get("name").cloned().unwrap_or(Value::Null),
                "input": input,
            }));
        }
    }
    let usage = crate::api::usage::usage_from_openai_json(openai_body).unwrap_or_default();
    let id = v.get("id").and_then(Value::as_str).unwrap_or("");
    let stop_sequence = choice.get("stop_sequence").and_then(Value::as_str);
    Ok(json!({
        "id": messages_id(id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": match stop_sequence {
            Some(_) => "stop_sequence",
            None => stop_reason(choice.get("finish_reason").and_then(Value::as_str).unwrap_or("stop")),
        },
        "stop_sequence": stop_sequence,
        "usage": anthropic_usage_json(&usage),
    }))
}

fn messages_id(upstream: &str) -> String {
    if upstream.starts_with("msg_") {
        upstream.to_string()
    } else if upstream.is_empty() {
        format!("msg_{:016x}", fastrand::u64(..))
    } else {
        format!("msg_{upstream}")
    }
}

/// Renders an [`ApiError`] as Anthropic's error JSON
/// (`{"type":"error","error":{"type","message"}}`) for the `/v1/messages` endpoint.
pub fn api_error_to_messages(e: &ApiError) -> Value {
    let kind = match e.status.as_u16() {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": e.message}})
}

#[derive(Deserialize)]
struct OChunk {
    #[serde(default)]
    id: Option<String>,
    /// Option: some OpenAI-compatible servers send `"choices": null` in the usage chunk.
    #[serde(default)]
    choices: Option<Vec<OChoice>>,
    #[serde(default)]
    usage: Option<OpenAiUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct OChoice {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    delta: Option<ODelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

/// The chunk-delta field (ours) carrying an Anthropic thinking signature.
const SIGNATURE_DELTA: &str = "reasoning_signature";

#[derive(Deserialize, Default)]
struct ODelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning_signature: Option<String>,
    #[serde(default)]
    redacted_thinking: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Vec<OToolDelta>>,
}

#[derive(Deserialize)]
struct OToolDelta {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    id: Option<String>,
    /// Gemini's thought signature travels here (see `encode_tool_id`).
    #[serde(default)]
    extra_content: Option<Value>,
    #[serde(default)]
    function: Option<OFunction>,
}

#[derive(Deserialize)]
struct OFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum OpenBlock {
    Text,
    Thinking,
    Redacted,
    /// OpenAI tool-call index.
    Tool(u64),
}

/// Turns an OpenAI chunk stream (as [`SseEvent`]s) into Anthropic stream
/// events (`event: message_start` ... `event: message_stop`) for the
/// gateway's `/v1/messages` endpoint.
///
/// Text, reasoning (`thinking` blocks) and tool calls (`tool_use` blocks fed
/// by `input_json_delta`) each open a content block; a change of kind closes
/// the open one. Argument deltas for a tool call whose block was already
/// closed (interleaved parallel calls, rare) are still sent with that
/// block's index. Usage (from the final OpenAI usage chunk) is reported in
/// `message_delta`, input excluding cached tokens.
pub struct ChunkToMessagesStream {
    model: String,
    id: String,
    started: bool,
    finished: bool,
    open: Option<(OpenBlock, u64)>,
    next_block: u64,
    /// OpenAI tool-call index -> Anthropic block index.
    tool_blocks: Vec<(u64, u64)>,
    stop: Option<&'static str>,
    usage: Option<Usage>,
}

/// One Anthropic SSE frame: `event: <type>\ndata: <json>\n\n`.
fn anthropic_event(kind: &str, data: &Value) -> Bytes {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Serialising a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

impl ChunkToMessagesStream {
    /// `model` is the model name reported to the client.
    pub fn new(model: &str) -> Self {
        ChunkToMessagesStream {
            model: model.to_string(),
            id: String::new(),
            started: false,
            finished: false,
            open: None,
            next_block: 0,
            tool_blocks: Vec::new(),
            stop: None,
            usage: None,
        }
    }

    /// Usage from the upstream's usage chunk, once seen.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whether `message_stop` has been emitted.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn start(&mut self, id: Option<&str>, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = messages_id(id.unwrap_or(""));
        out.push(anthropic_event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        ));
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if let Some((_, idx)) = self.open.take() {
            out.push(anthropic_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": idx}),
            ));
        }
    }

    /// Makes `kind` the open block (opening it with `start` if needed) and
    /// returns its Anthropic index.
    fn ensure(&mut self, kind: OpenBlock, start: Value, out: &mut Vec<Bytes>) -> u64 {
        if let Some((k, idx)) = self.open {
            if k == kind {
                return idx;
            }
        }
        self.close(out);
        let idx = self.next_block;
        self.next_block += 1;
        out.push(anthropic_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": idx, "content_block": start}),
        ));
        self.open = Some((kind, idx));
        idx
    }

    fn delta(idx: u64, delta: Value) -> Bytes {
        anthropic_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": idx, "delta": delta}),
        )
    }

    /// Handles one OpenAI SSE event. Returns `Ok(true)` once `message_stop`
    /// has been emitted (on `[DONE]`, or after an upstream error object,
    /// which is sent on as an Anthropic `error` event).
    pub fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<Bytes>) -> Result<bool, ProviderError> {
        if self.finished {
            return Ok(true);
        }
        let Some(data) = ev.data.as_deref() else {
            return Ok(false);
        };
        if data.trim_ascii() == b"[DONE]" {
            self.finish(out);
            return Ok(true);
        }
        let c: OChunk =
            serde_json::from_slice(data).map_err(|e| malformed(format!("OpenAI stream chunk: {e}")))?;
        if let Some(err) = c.error {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("upstream error");
            out.push(anthropic_event(
                "error",
                &json!({"type": "error", "error": {"type": "api_error", "message": message}}),
            ));
            self.finished = true;
            return Ok(true);
        }
        self.start(c.id.as_deref(), out);
        if let Some(u) = c.usage {
            self.usage = Some(Usage::from(u));
        }
        for ch in c
            .choices
            .unwrap_or_default()
            .into_iter()
            .filter(|ch| ch.index == 0)
        {
            let d = ch.delta.unwrap_or_default();
            if let Some(r) = d.reasoning_content.filter(|r| !r.is_empty()) {
                let idx = self.ensure(
                    OpenBlock::Thinking,
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                    out,
                );
                out.push(Self::delta(idx, json!({"type": "thinking_delta", "thinking": r})));
            }
            if let Some(sig) = d.reasoning_signature.filter(|s| !s.is_empty()) {
                let idx = self.ensure(
                    OpenBlock::Thinking,
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                    out,
                );
                out.push(Self::delta(
                    idx,
                    json!({"type": "signature_delta", "signature": sig}),
                ));
                // The signature ends its block: a next thinking block is a new one.
                self.close(out);
            }
            if let Some(data) = d.redacted_thinking.filter(|v| !v.is_null()) {
                self.ensure(
                    OpenBlock::Redacted,
                    json!({"type": "redacted_thinking", "data": data}),
                    out,
                );
                self.close(out);
            }
            if let Some(t) = d.content.filter(|t| !t.is_empty()) {
                let idx = self.ensure(OpenBlock::Text, json!({"type": "text", "text": ""}), out);
                out.push(Self::delta(idx, json!({"type": "text_delta", "text": t})));
            }
            for tc in d.tool_calls.unwrap_or_default() {
                let known = self
                    .tool_blocks
                    .iter()
                    .find(|(o, _)| *o == tc.index)
                    .map(|(_, b)| *b);
                let (name, args) = match tc.function {
                    Some(f) => (f.name, f.arguments),
                    None => (None, None),
                };
                let idx = match known {
                    Some(b) => b,
                    None => {
                        let start = json!({
                            "type": "tool_use",
                            "id": encode_tool_id(
                                &tc.id.unwrap_or_else(|| format!("toolu_{:016x}", fastrand::u64(..))),
                                tc.extra_content.as_ref(),
                            ),
                            "name": name.unwrap_or_default(),
                            "input": {},
                        });
                        let b = self.ensure(OpenBlock::Tool(tc.index), start, out);
                        self.tool_blocks.push((tc.index, b));
                        b
                    }
                };
                if let Some(a) = args.filter(|a| !a.is_empty()) {
                    out.push(Self::delta(
                        idx,
                        json!({"type": "input_json_delta", "partial_json": a}),
                    ));
                }
            }
            if let Some(f) = ch.finish_reason {
                self.stop = Some(stop_reason(&f));
            }
        }
        Ok(false)
    }

    /// Closes the message (open block, `message_delta` with stop reason and
    /// usage, `message_stop`). Called on `[DONE]`; call it yourself if the
    /// upstream stream ends without one. Idempotent.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        self.start(None, out);
        self.close(out);
        let u = self.usage.unwrap_or_default();
        let mut usage = anthropic_usage_json(&u);
        if let Some(o) = usage.as_object_mut() {
            o.remove("cache_creation_input_tokens");
        }
        out.push(anthropic_event(
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": self.stop.unwrap_or("end_turn"), "stop_sequence": null},
                "usage": usage}),
        ));
        out.push(anthropic_event("message_stop", &json!({"type": "message_stop"})));
        self.finished = true;
    }
}

/// Estimated input tokens of an Anthropic Messages request, for
/// `POST /v1/messages/count_tokens`: the characters of the system prompt,
/// message text, tool inputs/results and tool definitions divided by 4
/// (rounded up), plus 1,600 per image or document block (Anthropic's
/// estimate for a ~1.15 megapixel image). A heuristic, not Anthropic's
/// tokenizer: expect +-20% on English prose, more on code or CJK text.
pub fn count_tokens_estimate(body: &Value) -> u64 {
    fn walk(v: &Value, chars: &mut u64, media: &mut u64) {
        match v {
            Value::String(s) => *chars += s.chars().count() as u64,
            Value::Array(a) => a.iter().for_each(|x| walk(x, chars, media)),
            Value::Object(o) => match o.get("type").and_then(Value::as_str) {
                Some("image" | "document") => *media += 1,
                Some("tool_use") => {
                    *chars += o.get("name").map_or(0, |n| n.to_string().len() as u64);
                    *chars += o.get("input").map_or(0, |i| i.to_string().len() as u64);
                }
                _ => {
                    for (k, x) in o {
                        if matches!(k.as_str(), "text" | "content" | "thinking") || !x.is_string() {
                            walk(x, chars, media);
                        }
                    }
                }
            },
            _ => {}
        }
    }
    let mut chars = 0u64;
    let mut media = 0u64;
    if let Some(s) = body.get("system") {
        walk(s, &mut chars, &mut media);
    }
    if let Some(m) = body.get("messages") {
        walk(m, &mut chars, &mut media);
    }
    if let Some(t) = body.get("tools") {
        chars += t.to_string().len() as u64;
    }
    chars.div_ceil(4) + media * 1600
}

// ---------------------------------------------------------------------------
// OpenAI output helpers (shared with gemini.rs)
// ---------------------------------------------------------------------------

/// The OpenAI stream terminator frame.
pub(crate) const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The OpenAI `usage` object (see [`Usage::to_openai_json`]).
pub(crate) fn openai_usage_json(u: &Usage) -> Value {
    u.to_openai_json()
}

/// `{"<field>":"<escaped s>"}`.
pub(crate) fn delta_str(field: &str, s: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(s.len() + field.len() + 8);
    b.extend_from_slice(b"{\"");
    b.extend_from_slice(field.as_bytes());
    b.extend_from_slice(b"\":");
    // Serialising a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut b, s);
    b.push(b'}');
    b
}

/// `{"tool_calls":[{"index":n,"function":{"arguments":"<escaped args>"}}]}`.
pub(crate) fn delta_tool_args(n: u32, args: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(args.len() + 64);
    b.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
    b.extend_from_slice(n.to_string().as_bytes());
    b.extend_from_slice(b",\"function\":{\"arguments\":");
    let _ = serde_json::to_writer(&mut b, args);
    b.extend_from_slice(b"}}]}");
    b
}

/// Writes OpenAI `chat.completion.chunk` SSE frames with a fixed id, created
/// and model. The JSON prefix is built once, so a chunk costs one allocation.
pub(crate) struct ChunkWriter {
    id: String,
    created: u64,
    model: String,
    /// `data: {"id":..,"object":"chat.completion.chunk","created":..,"model":..,"choices":[`
    prefix: Vec<u8>,
}

impl ChunkWriter {
    pub(crate) fn new(id: &str, created: u64, model: &str) -> Self {
        let mut w = ChunkWriter {
            id: id.to_string(),
            created,
            model: model.to_string(),
            prefix: Vec::new(),
        };
        w.rebuild();
        w
    }

    fn rebuild(&mut self) {
        let mut p = Vec::with_capacity(128);
        p.extend_from_slice(b"data: {\"id\":");
        let _ = serde_json::to_writer(&mut p, &self.id);
        p.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        p.extend_from_slice(self.created.to_string().as_bytes());
        p.extend_from_slice(b",\"model\":");
        let _ = serde_json::to_writer(&mut p, &self.model);
        p.extend_from_slice(b",\"choices\":[");
        self.prefix = p;
    }

    pub(crate) fn set_id(&mut self, id: &str) {
        self.id = id.to_string();
        self.rebuild();
    }

    pub(crate) fn set_created(&mut self, created: u64) {
        self.created = created;
        self.rebuild();
    }

    /// A chunk with one choice: `delta` is the delta object's JSON.
    pub(crate) fn chunk(&self, index: u32, delta: &[u8], finish: Option<&str>) -> Bytes {
        let mut b = Vec::with_capacity(self.prefix.len() + delta.len() + 64);
        b.extend_from_slice(&self.prefix);
        b.extend_from_slice(b"{\"index\":");
        b.extend_from_slice(index.to_string().as_bytes());
        b.extend_from_slice(b",\"delta\":");
        b.extend_from_slice(delta);
        b.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(f) => {
                b.push(b'"');
                b.extend_from_slice(f.as_bytes());
                b.push(b'"');
            }
            None => b.extend_from_slice(b"null"),
        }
        b.extend_from_slice(b"}]}\n\n");
        Bytes::from(b)
    }

    /// The usage chunk: `"choices":[]` plus `usage`.
    pub(crate) fn usage_chunk(&self, u: &Usage) -> Bytes {
        let mut b = Vec::with_capacity(self.prefix.len() + 200);
        b.extend_from_slice(&self.prefix);
        b.extend_from_slice(b"],\"usage\":");
        let _ = serde_json::to_writer(&mut b, &openai_usage_json(u));
        b.extend_from_slice(b"}\n\n");
        Bytes::from(b)
    }
}

/// Test helpers shared with `gemini.rs`: golden files, SSE feeding, a
/// deterministic splitter.
#[cfg(test)]
pub(crate) mod test_support {
    use bytes::Bytes;

    use crate::gateway::sse::{SseEvent, SseSplitter};

    /// Compares `actual` with the golden file `tests/fixtures/<rel>` whose
    /// content (via `include_str!`) is `expected`. With `SWITCHYARD_BLESS=1`
    /// the file is rewritten instead (review the diff before committing).
    pub(crate) fn golden(rel: &str, expected: &str, actual: &str) {
        if std::env::var_os("SWITCHYARD_BLESS").is_some() {
            let path = format!("{}/tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"));
            std::fs::write(&path, actual).expect("write golden");
            return;
        }
        assert_eq!(
            actual, expected,
            "golden mismatch for {rel} (SWITCHYARD_BLESS=1 rewrites it)"
        );
    }

    /// `golden` for JSON values, pretty-printed.
    pub(crate) fn golden_json(rel: &str, expected: &str, actual: &serde_json::Value) {
        let mut s = serde_json::to_string_pretty(actual).expect("json");
        s.push('\n');
        golden(rel, expected, &s);
    }

    /// All events of a byte stream fed in one piece.
    pub(crate) fn events(raw: &[u8]) -> Vec<SseEvent> {
        let mut s = SseSplitter::new();
        s.push(raw);
        std::iter::from_fn(|| s.next_event()).collect()
    }

    /// xorshift64*: deterministic pseudo-random numbers for split tests.
    pub(crate) struct XorShift(pub u64);

    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    /// Feeds `raw` through an `SseSplitter` in pieces cut at pseudo-random
    /// byte offsets (1 to 64 bytes, sometimes single bytes) and hands each
    /// event to `on_event`, collecting its output frames.
    pub(crate) fn feed_split(
        raw: &[u8],
        rng: &mut XorShift,
        mut on_event: impl FnMut(&SseEvent, &mut Vec<Bytes>),
    ) -> Vec<Bytes> {
        let mut s = SseSplitter::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let tiny = rng.next() % 4 == 0;
        while pos < raw.len() {
            let step = if tiny {
                1 + (rng.next() % 3) as usize
            } else {
                1 + (rng.next() % 64) as usize
            };
            let end = (pos + step).min(raw.len());
            s.push(&raw[pos..end]);
            pos = end;
            while let Some(ev) = s.next_event() {
                on_event(&ev, &mut out);
            }
        }
        out
    }

    /// Concatenated frames as text.
    pub(crate) fn text(frames: &[Bytes]) -> String {
        frames
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{events, feed_split, golden, golden_json, text, XorShift};
    use super::*;

    const CHAT_REQUEST: &str = include_str!("../../tests/fixtures/anthropic/chat_request.json");
    const CHAT_REQUEST_EXPECTED: &str =
        include_str!("../../tests/fixtures/anthropic/chat_request.expected.json");
    const RESPONSE: &str = include_str!("../../tests/fixtures/anthropic/response.json");
    const RESPONSE_EXPECTED: &str = include_str!("../../tests/fixtures/anthropic/response.expected.json");
    const STREAM: &str = include_str!("../../tests/fixtures/anthropic/stream.sse");
    const STREAM_EXPECTED: &str = include_str!("../../tests/fixtures/anthropic/stream.expected.sse");
    const STREAM_OVERLOADED: &str = include_str!("../../tests/fixtures/anthropic/stream_overloaded.sse");
    const ERROR_OVERLOADED: &str = include_str!("../../tests/fixtures/anthropic/error_overloaded.json");
    const ERROR_INVALID: &str = include_str!("../../tests/fixtures/anthropic/error_invalid_request.json");
    const MESSAGES_REQUEST: &str = include_str!("../../tests/fixtures/anthropic/messages_request.json");
    const MESSAGES_REQUEST_EXPECTED: &str =
        include_str!("../../tests/fixtures/anthropic/messages_request.expected.json");
    const CHAT_RESPONSE_IN: &str =
        include_str!("../../tests/fixtures/anthropic/chat_response_for_messages.json");
    const MESSAGES_RESPONSE_EXPECTED: &str =
        include_str!("../../tests/fixtures/anthropic/messages_response.expected.json");
    const CHAT_STREAM_IN: &str = include_str!("../../tests/fixtures/anthropic/chat_stream_for_messages.sse");
    const MESSAGES_STREAM_EXPECTED: &str =
        include_str!("../../tests/fixtures/anthropic/messages_stream.expected.sse");

    const CREATED: u64 = 1_700_000_000;

    fn opts() -> AnthropicOptions {
        AnthropicOptions::default()
    }

    fn chat(body: Value) -> ChatRequest {
        ChatRequest::parse(body.to_string().as_bytes()).expect("valid request")
    }

    fn build(body: Value) -> Result<BuiltRequest, ApiError> {
        build_request(&chat(body), "claude-up", &opts())
    }

    fn translate(raw: &str) -> (Vec<Bytes>, Result<bool, ProviderError>, StreamTranslator) {
        let mut t = StreamTranslator::new("claude-public", true).with_created(CREATED);
        let mut out = Vec::new();
        let mut last = Ok(false);
        for ev in events(raw.as_bytes()) {
            last = t.on_event(&ev, &mut out);
            if !matches!(last, Ok(false)) {
                break;
            }
        }
        (out, last, t)
    }

    #[test]
    fn golden_build_request() {
        let req = ChatRequest::parse(CHAT_REQUEST.as_bytes()).expect("fixture parses");
        let built = build_request(&req, "claude-sonnet-4-5-20250929", &opts()).expect("builds");
        golden_json(
            "anthropic/chat_request.expected.json",
            CHAT_REQUEST_EXPECTED,
            &json!({"body": built.body, "dropped": built.dropped}),
        );
    }

    #[test]
    fn golden_parse_response() {
        let (body, usage) = parse_response(RESPONSE.as_bytes(), "claude-public").expect("parses");
        let mut v: Value = serde_json::from_slice(&body).expect("json");
        assert!(v["created"].as_u64().is_some_and(|c| c > CREATED));
        v["created"] = Value::from(0);
        golden_json("anthropic/response.expected.json", RESPONSE_EXPECTED, &v);
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 1250,
                completion_tokens: 80,
                cached_tokens: 1000,
                cache_write_tokens: 200,
                reasoning_tokens: 0
            }
        );
        assert_eq!(
            crate::api::usage::usage_from_openai_json(&body).map(|u| u.cached_tokens),
            Some(1000)
        );
    }

    #[test]
    fn golden_stream() {
        let (out, last, t) = translate(STREAM);
        assert!(matches!(last, Ok(true)));
        assert!(t.is_finished());
        for frame in &out {
            assert!(
                frame.starts_with(b"data: ") && frame.ends_with(b"\n\n"),
                "one frame per Bytes"
            );
        }
        golden("anthropic/stream.expected.sse", STREAM_EXPECTED, &text(&out));
        assert_eq!(
            t.usage(),
            Some(Usage {
                prompt_tokens: 2520,
                completion_tokens: 89,
                cached_tokens: 2048,
                cache_write_tokens: 0,
                reasoning_tokens: 0
            })
        );
    }

    #[test]
    fn stream_without_usage_chunk() {
        let mut t = StreamTranslator::new("m", false).with_created(CREATED);
        let mut out = Vec::new();
        for ev in events(STREAM.as_bytes()) {
            t.on_event(&ev, &mut out).expect("ok");
        }
        let s = text(&out);
        assert!(!s.contains("\"usage\""));
        assert!(s.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn stream_error_event_is_overloaded_529() {
        let (out, last, _) = translate(STREAM_OVERLOADED);
        assert_eq!(out.len(), 1, "role chunk only");
        let e = last.expect_err("error event");
        assert_eq!((e.kind, e.status), (ProviderErrorKind::Status, Some(529)));
        assert!(e.is_retryable());
        assert_eq!(e.message, "Overloaded");
        let mut t = StreamTranslator::new("m", true);
        let bad = events(b"event: content_block_delta\ndata: {not json\n\n");
        let e = t.on_event(&bad[0], &mut Vec::new()).expect_err("malformed");
        assert_eq!(e.kind, ProviderErrorKind::Malformed);
    }

    #[test]
    fn map_error_fixtures() {
        let e = map_error(529, None, ERROR_OVERLOADED.as_bytes());
        assert_eq!((e.status, e.is_retryable()), (Some(529), true));
        assert_eq!(
            e.upstream.as_ref().and_then(|u| u.kind.as_deref()),
            Some("overloaded_error")
        );
        let e = map_error(400, None, ERROR_INVALID.as_bytes());
        assert_eq!((e.status, e.is_retryable()), (Some(400), false));
        assert!(e.message.contains("tool_use_id not found"));
        let api = e.to_api_error("anthropic", None);
        assert_eq!(api.status, StatusCode::BAD_REQUEST);
        assert!(api.message.contains("tool_use_id"));
        let e = map_error(
            429,
            Some(Duration::from_secs(20)),
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
        );
        assert_eq!(
            (e.status, e.retry_after, e.is_retryable()),
            (Some(429), Some(Duration::from_secs(20)), true)
        );
        let e = map_error(502, None, b"<html>bad gateway</html>");
        assert_eq!((e.status, e.is_retryable()), (Some(502), true));
        assert!(e.message.contains("bad gateway"));
    }

    #[test]
    fn error_body_in_2xx_response() {
        let e = parse_response(ERROR_OVERLOADED.as_bytes(), "m").expect_err("error body");
        assert_eq!(e.status, Some(529));
        let e = parse_response(b"[]", "m").expect_err("not a message");
        assert_eq!(e.kind, ProviderErrorKind::Malformed);
    }

    #[test]
    fn tool_choice_variants() {
        let base = |choice: Value| {
            build(
                json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": choice}),
            )
            .expect("builds")
            .body
        };
        assert_eq!(base(json!("none"))["tool_choice"], json!({"type": "none"}));
        assert_eq!(base(json!("auto"))["tool_choice"], json!({"type": "auto"}));
        assert_eq!(base(json!("required"))["tool_choice"], json!({"type": "any"}));
        assert_eq!(
            base(json!({"type": "function", "function": {"name": "f"}}))["tool_choice"],
            json!({"type": "tool", "name": "f"})
        );
        assert_eq!(base(Value::Null).get("tool_choice"), None);
        assert_eq!(
            base(Value::Null)["tools"][0]["input_schema"],
            json!({"type": "object", "properties": {}})
        );
        // tool_choice without tools is not sent.
        let b = build(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}),
        )
        .expect("builds");
        assert_eq!(b.body.get("tool_choice"), None);
    }

    #[test]
    fn small_mappings() {
        let b = build(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": "END",
            "max_tokens": 33, "temperature": 0.5}),
        )
        .expect("builds");
        assert_eq!(b.body["stop_sequences"], json!(["END"]));
        assert_eq!(b.body["max_tokens"], 33);
        assert_eq!(b.body["temperature"], 0.5);
        assert_eq!(b.body.get("stream"), None);
        assert!(b.dropped.is_empty(), "{:?}", b.dropped);
        let b = build(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})).expect("builds");
        assert_eq!(b.body["max_tokens"], 4096);
        // Broken tool-call arguments degrade to {} and are reported.
        let b = build(json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]},
            {"role": "tool", "tool_call_id": "t", "content": "r"}]}))
        .expect("builds");
        assert_eq!(b.body["messages"][1]["content"][0]["input"], json!({}));
        assert_eq!(
            b.dropped,
            vec!["messages[].tool_calls[].function.arguments (not a JSON object)"]
        );
    }

    #[test]
    fn request_errors_name_the_param() {
        let param = |body: Value| build(body).expect_err("fails").param;
        assert_eq!(
            param(json!({"model": "m", "messages": [{"role": "function", "content": "x"}]})).as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            param(json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]})).as_deref(),
            Some("messages[0].tool_call_id")
        );
        assert_eq!(
            param(json!({"model": "m", "messages": [{"role": "system", "content": "x"}]})).as_deref(),
            Some("messages")
        );
        assert_eq!(
            param(json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}))
            .as_deref(),
            Some("messages[0].content[0].image_url.url")
        );
    }

    #[test]
    fn golden_messages_to_chat() {
        let body: Value = serde_json::from_str(MESSAGES_REQUEST).expect("json");
        let req = messages_to_chat(&body).expect("translates");
        golden_json(
            "anthropic/messages_request.expected.json",
            MESSAGES_REQUEST_EXPECTED,
            &serde_json::to_value(&req).expect("ser"),
        );
        // Round trip back to Anthropic keeps the cache breakpoint and the turn structure.
        let back = build_request(&req, "claude-up", &opts()).expect("builds");
        assert_eq!(
            back.body["system"][1]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert_eq!(back.body["messages"].as_array().map(Vec::len), Some(3));
        assert_eq!(back.body["messages"][2]["content"][0]["type"], "tool_result");
        assert_eq!(back.body["messages"][2]["content"][1]["type"], "tool_result");
        assert_eq!(back.body["messages"][2]["content"][3]["type"], "image");
        assert_eq!(
            back.body["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        assert_eq!(back.body["metadata"], json!({"user_id": "u-42"}));
    }

    #[test]
    fn messages_to_chat_errors() {
        let param = |v: Value| messages_to_chat(&v).expect_err("fails").param;
        assert_eq!(
            param(json!({"max_tokens": 1, "messages": []})).as_deref(),
            Some("model")
        );
        assert_eq!(
            param(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})).as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            param(json!({"model": "m", "max_tokens": 5, "messages": []})).as_deref(),
            Some("messages")
        );
        assert_eq!(
            param(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}))
                .as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            param(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}))
                .as_deref(),
            Some("messages"),
            "system entries alone are no conversation"
        );
    }

    /// Claude Code 2.x: `role: "system"` entries inside `messages`, system
    /// blocks with cache_control, thinking, output_config, context_management.
    fn claude_code_body() -> Value {
        json!({
            "model": "claude-opus-4-8",
            "max_tokens": 32000,
            "stream": true,
            "system": [
                {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Be brief."}
            ],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "What does main.rs do?"}]},
                {"role": "system", "content": "Reminder: the repo is a Rust gateway."},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Look at the file.", "signature": "sig-1"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "main.rs"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "fn main() {}",
                     "cache_control": {"type": "ephemeral"}}
                ]},
                {"role": "system", "content": [{"type": "text", "text": "Answer in one line."}]}
            ],
            "tools": [{"name": "Read", "description": "Read a file",
                       "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
                       "cache_control": {"type": "ephemeral"}}],
            "thinking": {"type": "adaptive"},
            "output_config": {"effort": "high"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
            "metadata": {"user_id": "u1"}
        })
    }

    #[test]
    fn system_entries_in_messages_fold_into_the_system_prompt() {
        let req = messages_to_chat(&claude_code_body()).expect("translates");
        let roles: Vec<&str> = req.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool"]);
        let system = req.messages[0].text();
        assert_eq!(
            system,
            "You are Claude Code.\nBe brief.\nReminder: the repo is a Rust gateway.\nAnswer in one line."
        );
        assert_eq!(
            req.messages[0].content.as_ref().unwrap()[0]["cache_control"]["type"],
            "ephemeral"
        );
        // The classifier reads the system prompt as system and the user's question as the last turn.
        let input = crate::routing::input_from_chat(&req);
        assert_eq!(input.last_user, "What does main.rs do?");
        assert!(input.system.ends_with("Answer in one line."), "{}", input.system);
    }

    #[test]
    fn anthropic_upstream_gets_claude_code_fields_untouched() {
        let chat = messages_to_chat(&claude_code_body()).expect("translates");
        let built = build_request(&chat, "claude-opus-4-8", &opts()).expect("builds");
        let b = &built.body;
        let src = claude_code_body();
        for k in ["thinking", "output_config", "context_management"] {
            assert_eq!(b[k], src[k], "{k}");
        }
        assert_eq!(b["system"][0]["cache_control"]["type"], "ephemeral");
        assert_eq!(b["system"].as_array().map(Vec::len), Some(4));
        assert_eq!(b["tools"][0]["cache_control"]["type"], "ephemeral");
        // Signed thinking goes back first in its assistant turn, as Anthropic requires.
        let assistant = &b["messages"][1]["content"];
        assert_eq!(
            assistant[0],
            json!({"type": "thinking", "thinking": "Look at the file.", "signature": "sig-1"})
        );
        assert_eq!(
            assistant[1],
            json!({"type": "redacted_thinking", "data": "opaque"})
        );
        assert_eq!(assistant[2]["type"], "tool_use");
        let result = &b["messages"][2]["content"][0];
        assert_eq!(result["type"], "tool_result");
        assert_eq!(result["content"][0]["cache_control"]["type"], "ephemeral");
        assert!(
            !built
                .dropped
                .iter()
                .any(|d| d.contains("thinking") || d.contains("output_config")),
            "{:?}",
            built.dropped
        );
    }

    #[test]
    fn signed_thinking_round_trips_through_the_openai_form() {
        // Non-streaming: Anthropic message -> OpenAI body -> /v1/messages answer.
        let upstream = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig-9"},
                        {"type": "redacted_thinking", "data": "zzz"},
                        {"type": "text", "text": "Hi"}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 2}});
        let (openai, _) = parse_response(upstream.to_string().as_bytes(), "m").expect("parses");
        let back = chat_response_to_messages(&openai, "m").expect("back");
        assert_eq!(
            back["content"][0],
            json!({"type": "thinking", "thinking": "hmm", "signature": "sig-9"})
        );
        assert_eq!(
            back["content"][1],
            json!({"type": "redacted_thinking", "data": "zzz"})
        );
        assert_eq!(back["content"][2]["text"], "Hi");

        // Streaming: Anthropic SSE -> OpenAI chunks -> Anthropic SSE.
        let raw = [
            r#"{"type":"message_start","message":{"id":"msg_2","usage":{"input_tokens":3}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig-9"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"zzz"}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"text_delta","text":"Hi"}}"#,
            r#"{"type":"content_block_stop","index":2}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}"#,
            r#"{"type":"message_stop"}"#,
        ];
        let sse: String = raw.iter().map(|d| format!("data: {d}\n\n")).collect();
        let mut t = StreamTranslator::new("m", true);
        let mut chunks = Vec::new();
        for ev in events(sse.as_bytes()) {
            t.on_event(&ev, &mut chunks).expect("event");
        }
        let mut back = ChunkToMessagesStream::new("m");
        let mut out = Vec::new();
        let joined: Vec<u8> = chunks.concat();
        for ev in events(&joined) {
            back.on_event(&ev, &mut out).expect("chunk");
        }
        let text: String = out
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert!(
            text.contains(r#""delta":{"signature":"sig-9","type":"signature_delta"}"#)
                || text.contains(r#""delta":{"type":"signature_delta","signature":"sig-9"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#""content_block":{"data":"zzz","type":"redacted_thinking"}"#)
                || text.contains(r#""content_block":{"type":"redacted_thinking","data":"zzz"}"#),
            "{text}"
        );
        // The thinking block (index 0) closes before the redacted one (1) and the text (2).
        let starts = text.matches("event: content_block_start").count();
        assert_eq!(starts, 3, "{text}");
    }

    #[test]
    fn golden_chat_response_to_messages() {
        let v =
            chat_response_to_messages(CHAT_RESPONSE_IN.as_bytes(), "claude-sonnet-4-5").expect("translates");
        golden_json(
            "anthropic/messages_response.expected.json",
            MESSAGES_RESPONSE_EXPECTED,
            &v,
        );
        assert_eq!(v["usage"]["input_tokens"], 176);
        assert!(chat_response_to_messages(b"{}", "m").is_err());
    }

    #[test]
    fn golden_chunk_to_messages() {
        let mut s = ChunkToMessagesStream::new("claude-sonnet-4-5");
        let mut out = Vec::new();
        let mut done = false;
        for ev in events(CHAT_STREAM_IN.as_bytes()) {
            done = s.on_event(&ev, &mut out).expect("ok");
        }
        assert!(done && s.is_finished());
        golden(
            "anthropic/messages_stream.expected.sse",
            MESSAGES_STREAM_EXPECTED,
            &text(&out),
        );
        assert_eq!(
            s.usage().map(|u| (u.prompt_tokens, u.cached_tokens)),
            Some((900, 512))
        );
        // An upstream that stops without [DONE] is closed by finish().
        let mut s = ChunkToMessagesStream::new("m");
        let mut out = Vec::new();
        s.finish(&mut out);
        s.finish(&mut out);
        let t = text(&out);
        assert!(
            t.starts_with("event: message_start\n")
                && t.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
        );
        assert_eq!(t.matches("message_stop").count(), 2, "{t}");
    }

    #[test]
    fn chunk_error_becomes_anthropic_error_event() {
        let mut s = ChunkToMessagesStream::new("m");
        let mut out = Vec::new();
        let evs = events(b"data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n");
        assert!(s.on_event(&evs[0], &mut out).expect("ok"));
        assert_eq!(
            text(&out),
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"boom\"}}\n\n"
        );
    }

    #[test]
    fn lenient_chunk_shapes() {
        let mut s = ChunkToMessagesStream::new("m");
        let mut out = Vec::new();
        let raw = b"data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":null}]}\n\n\
            data: {\"id\":\"x\",\"choices\":null,\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\n";
        for ev in events(raw) {
            assert!(!s.on_event(&ev, &mut out).expect("ok"));
        }
        assert_eq!(
            s.usage().map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((7, 2))
        );
    }

    #[test]
    fn api_errors_render_in_anthropic_shape() {
        let v = api_error_to_messages(&ApiError::invalid_request("bad", None));
        assert_eq!(
            v,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}})
        );
        let v = api_error_to_messages(&ApiError::model_not_found("x"));
        assert_eq!(v["error"]["type"], "not_found_error");
    }

    #[test]
    fn token_estimate() {
        let body = json!({"system": "abcd", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "12345678"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
            {"role": "assistant", "content": "xyz"}]});
        // 4 + 8 + 3 = 15 chars -> 4 tokens, plus one image.
        assert_eq!(count_tokens_estimate(&body), 4 + 1600);
        let body: Value = serde_json::from_str(MESSAGES_REQUEST).expect("json");
        let n = count_tokens_estimate(&body);
        assert!((100..2000).contains(&n), "{n}");
    }

    #[test]
    fn split_invariance() {
        let whole_openai = text(&translate(STREAM).0);
        let whole_messages = {
            let mut s = ChunkToMessagesStream::new("claude-sonnet-4-5");
            let mut out = Vec::new();
            for ev in events(CHAT_STREAM_IN.as_bytes()) {
                let _ = s.on_event(&ev, &mut out);
            }
            text(&out)
        };
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for case in 0..500 {
            let mut t = StreamTranslator::new("claude-public", true).with_created(CREATED);
            let out = feed_split(STREAM.as_bytes(), &mut rng, |ev, out| {
                let _ = t.on_event(ev, out);
            });
            assert_eq!(text(&out), whole_openai, "anthropic->openai case {case}");
            let mut s = ChunkToMessagesStream::new("claude-sonnet-4-5");
            let out = feed_split(CHAT_STREAM_IN.as_bytes(), &mut rng, |ev, out| {
                let _ = s.on_event(ev, out);
            });
            assert_eq!(text(&out), whole_messages, "openai->anthropic case {case}");
        }
    }

    /// `cargo test --release --lib -- --ignored bench_stream_translation --nocapture`
    #[test]
    #[ignore]
    fn bench_stream_translation() {
        let mut raw = String::new();
        raw.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n");
        raw.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
        for i in 0..1000 {
            raw.push_str(&format!(
                "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"token {i} and some \\\"quoted\\\" words \"}}}}\n\n"
            ));
        }
        let evs = events(raw.as_bytes());
        let rounds = 200;
        let start = std::time::Instant::now();
        let mut frames = 0usize;
        for _ in 0..rounds {
            let mut t = StreamTranslator::new("claude-public", true);
            let mut out = Vec::with_capacity(evs.len());
            for ev in &evs {
                let _ = t.on_event(ev, &mut out);
            }
            frames += out.len();
        }
        let per = start.elapsed().as_nanos() / (rounds * evs.len()) as u128;
        println!("anthropic->openai: {per} ns/chunk ({frames} frames)");
        let mut s = ChunkToMessagesStream::new("m");
        let chunk = events(b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"token and some words \"},\"finish_reason\":null}]}\n\n");
        let n = 200_000u32;
        let start = std::time::Instant::now();
        let mut out = Vec::with_capacity(n as usize + 4);
        for _ in 0..n {
            let _ = s.on_event(&chunk[0], &mut out);
        }
        println!(
            "openai->anthropic: {} ns/chunk",
            start.elapsed().as_nanos() / u128::from(n)
        );
    }
}

#[cfg(test)]
mod tool_id_tests {
    use super::*;

    #[test]
    fn thought_signature_round_trips_through_the_tool_use_id() {
        let extra = json!({"google": {"thought_signature": "c2lnbmF0dXJl+/="}});
        let id = encode_tool_id("call_1", Some(&extra));
        assert_eq!(
            decode_tool_id(&id),
            ("call_1".to_string(), Some("c2lnbmF0dXJl+/=".to_string()))
        );
        assert_eq!(encode_tool_id("toolu_x", None), "toolu_x");
        assert_eq!(decode_tool_id("toolu_x"), ("toolu_x".to_string(), None));
    }
}
