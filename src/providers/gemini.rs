//! Google Gemini API (`generateContent`, `streamGenerateContent?alt=sse`,
//! `embedContent` / `batchEmbedContents`) <-> OpenAI (pure translation, no I/O).
//!
//! URLs are relative to `https://generativelanguage.googleapis.com/v1beta/`
//! ([`chat_path`], [`build_embed_request`]); the caller authenticates with
//! the `x-goog-api-key: <key>` header
//! (<https://ai.google.dev/api#authentication>), never a `?key=` query
//! parameter, so the key cannot leak into logged URLs.
//!
//! Gemini 3 models require the `thoughtSignature` of each `functionCall` part
//! to be sent back with the conversation
//! (<https://ai.google.dev/gemini-api/docs/thought-signatures>). OpenAI tool
//! calls have no such field, so, as Google's own OpenAI-compatible endpoint
//! does (<https://ai.google.dev/gemini-api/docs/openai#thinking>), the
//! signature travels in `tool_calls[].extra_content.google.thought_signature`
//! and is restored on the way back.
//!
//! Mapping tables: `docs/providers.md`.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The request type is shared with the Anthropic adapter.
pub use super::anthropic::BuiltRequest;
use super::anthropic::{
    arguments_object, bad, content_or_null, delta_str, function_and_name, image_url_of, malformed, note,
    note_unmapped, now_secs, openai_usage_json, parse_data_url, status_error, tool_choice_name, ChunkWriter,
    DONE_FRAME,
};
use super::error::ProviderError;
use crate::api::chat::{ChatRequest, EmbeddingsRequest};
use crate::api::error::ApiError;
use crate::api::usage::Usage;
use crate::gateway::sse::SseEvent;

/// Per-provider settings the translation needs.
#[derive(Debug, Clone, Default)]
pub struct GeminiOptions {
    /// Ask thinking models for thought summaries
    /// (`generationConfig.thinkingConfig.includeThoughts`), which come back as
    /// `reasoning_content`. Leave off for models without thinking: they
    /// reject `thinkingConfig`.
    pub include_thoughts: bool,
    /// Sent as `safetySettings` when set (an array of
    /// `{"category","threshold"}` objects).
    pub safety_settings: Option<Value>,
}

/// OpenAI request fields this adapter maps (everything else in `extra` is dropped).
const MAPPED_FIELDS: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "n",
    "tools",
    "tool_choice",
    "response_format",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "top_k",
    "reasoning_effort",
    "thinking",
    "output_config",
];

/// Gemini accepts at most 5 stop sequences
/// (<https://ai.google.dev/api/generate-content#generationconfig>).
const MAX_STOP_SEQUENCES: usize = 5;

/// `models/<model>` without a duplicated prefix.
fn model_name(upstream_model: &str) -> &str {
    upstream_model.strip_prefix("models/").unwrap_or(upstream_model)
}

/// The request path (relative to `.../v1beta/`) for a chat call:
/// `models/<m>:generateContent`, or `models/<m>:streamGenerateContent?alt=sse`
/// (without `alt=sse` Gemini streams one JSON array instead of SSE).
pub fn chat_path(upstream_model: &str, stream: bool) -> String {
    let m = model_name(upstream_model);
    if stream {
        format!("models/{m}:streamGenerateContent?alt=sse")
    } else {
        format!("models/{m}:generateContent")
    }
}

// ---------------------------------------------------------------------------
// OpenAI request -> Gemini request
// ---------------------------------------------------------------------------

/// Builds a `GenerateContentRequest` body from an OpenAI chat request (the
/// model goes in the URL, see [`chat_path`]).
///
/// Roles: `user`/`tool` -> `user`, `assistant` -> `model`,
/// `system`/`developer` -> `systemInstruction`; consecutive turns of one
/// role are merged (parallel function responses must share one turn).
/// A tool result's `functionResponse.name` is taken from the assistant tool
/// call with the same id; string results that are not JSON objects are
/// wrapped as `{"result": "..."}` because `response` must be an object.
pub fn build_request(req: &ChatRequest, opts: &GeminiOptions) -> Result<BuiltRequest, ApiError> {
    let mut dropped = Vec::new();
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut call_names: Vec<(String, String)> = Vec::new();

    for (i, m) in req.messages.iter().enumerate() {
        if m.extra.contains_key("name") && m.role != "tool" {
            note(&mut dropped, "messages[].name");
        }
        if m.extra.contains_key("reasoning_content") {
            note(&mut dropped, "messages[].reasoning_content");
        }
        let (role, parts) = match m.role.as_str() {
            "system" | "developer" => {
                system.extend(text_parts(m.content.as_ref()));
                continue;
            }
            "user" => ("user", user_parts(m.content.as_ref(), i, &mut dropped)?),
            "assistant" => {
                let mut parts = text_parts(m.content.as_ref());
                if let Some(Value::Array(calls)) = m.extra.get("tool_calls") {
                    for (j, c) in calls.iter().enumerate() {
                        let (f, name) = function_and_name(
                            c,
                            "tool call",
                            format!("messages[{i}].tool_calls[{j}].function.name"),
                        )?;
                        if let Some(id) = c.get("id").and_then(Value::as_str) {
                            call_names.push((id.to_string(), name.to_string()));
                        }
                        let args = arguments_object(f, &mut dropped);
                        let mut part = json!({"functionCall": {"name": name, "args": args}});
                        if let Some(sig) = c
                            .pointer("/extra_content/google/thought_signature")
                            .and_then(Value::as_str)
                        {
                            part["thoughtSignature"] = Value::from(sig);
                        }
                        parts.push(part);
                    }
                }
                ("model", parts)
            }
            "tool" => {
                let id = m.extra.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                let name = call_names
                    .iter()
                    .rev()
                    .find(|(cid, _)| cid == id)
                    .map(|(_, n)| n.as_str())
                    .or_else(|| m.extra.get("name").and_then(Value::as_str))
                    .ok_or_else(|| {
                        bad(
                            "Tool message `tool_call_id` matches no earlier assistant tool call.",
                            format!("messages[{i}].tool_call_id"),
                        )
                    })?;
                let text = match &m.content {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(_)) => text_parts(m.content.as_ref())
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    _ => String::new(),
                };
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({ "result": text }),
                };
                (
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                )
            }
            other => {
                return Err(bad(
                    format!("Message role `{other}` is not supported by Gemini models."),
                    format!("messages[{i}].role"),
                ))
            }
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((r, prev)) if *r == role => prev.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    if turns.is_empty() {
        return Err(bad(
            "Gemini models need at least one user or assistant message besides system messages.",
            "messages",
        ));
    }

    let x = &req.extra;
    let mut body = Map::new();
    let contents = turns
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect();
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({ "parts": system }));
    }

    if let Some(Value::Array(tools)) = x.get("tools") {
        let mut decls = Vec::new();
        for (j, t) in tools.iter().enumerate() {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                note(&mut dropped, "tools[] (non-function tool)");
                continue;
            }
            let (f, name) = function_and_name(t, "function tool", format!("tools[{j}].function.name"))?;
            let mut d = Map::new();
            d.insert("name".into(), Value::from(name));
            if let Some(desc) = f.get("description").and_then(Value::as_str) {
                d.insert("description".into(), Value::from(desc));
            }
            // parametersJsonSchema takes plain JSON Schema; `parameters` only
            // takes Google's OpenAPI subset and rejects e.g.
            // additionalProperties (https://ai.google.dev/api/caching#FunctionDeclaration).
            if let Some(p @ Value::Object(_)) = f.get("parameters") {
                d.insert("parametersJsonSchema".into(), p.clone());
            }
            decls.push(Value::Object(d));
        }
        if !decls.is_empty() {
            body.insert("tools".into(), json!([{ "functionDeclarations": decls }]));
            let config = match x.get("tool_choice") {
                Some(Value::String(s)) => match s.as_str() {
                    "none" => Some(json!({"mode": "NONE"})),
                    "required" => Some(json!({"mode": "ANY"})),
                    "auto" => Some(json!({"mode": "AUTO"})),
                    _ => None,
                },
                Some(Value::Object(o)) => {
                    Some(json!({"mode": "ANY", "allowedFunctionNames": [tool_choice_name(o)?]}))
                }
                _ => None,
            };
            if let Some(c) = config {
                body.insert("toolConfig".into(), json!({ "functionCallingConfig": c }));
            }
        }
    }

    let mut gen = Map::new();
    if let Some(t) = x.get("temperature").filter(|v| v.is_number()) {
        gen.insert("temperature".into(), t.clone());
    }
    if let Some(p) = x.get("top_p").filter(|v| v.is_number()) {
        gen.insert("topP".into(), p.clone());
    }
    if let Some(m) = x
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| x.get("max_tokens").and_then(Value::as_u64))
    {
        gen.insert("maxOutputTokens".into(), Value::from(m));
    }
    let mut stops: Vec<Value> = match x.get("stop") {
        Some(Value::String(s)) if !s.is_empty() => vec![Value::from(s.as_str())],
        Some(Value::Array(a)) => a
            .iter()
            .filter(|s| s.as_str().is_some_and(|s| !s.is_empty()))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    if stops.len() > MAX_STOP_SEQUENCES {
        stops.truncate(MAX_STOP_SEQUENCES);
        note(&mut dropped, "stop (only the first 5 are sent)");
    }
    if !stops.is_empty() {
        gen.insert("stopSequences".into(), Value::Array(stops));
    }
    if let Some(n) = x.get("n").and_then(Value::as_u64).filter(|n| *n > 1) {
        gen.insert("candidateCount".into(), Value::from(n));
    }
    for (from, to) in [
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("seed", "seed"),
    ] {
        if let Some(v) = x.get(from).filter(|v| v.is_number()) {
            gen.insert(to.into(), v.clone());
        }
    }
    match x
        .get("response_format")
        .and_then(|r| r.get("type"))
        .and_then(Value::as_str)
    {
        Some("json_object") => {
            gen.insert("responseMimeType".into(), Value::from("application/json"));
        }
        Some("json_schema") => {
            gen.insert("responseMimeType".into(), Value::from("application/json"));
            // responseJsonSchema takes plain JSON Schema (responseSchema only the OpenAPI subset).
            if let Some(s) = x
                .get("response_format")
                .and_then(|r| r.pointer("/json_schema/schema"))
            {
                gen.insert("responseJsonSchema".into(), s.clone());
            }
        }
        _ => {}
    }
    if let Some(k) = x.get("top_k").filter(|v| v.is_number()) {
        gen.insert("topK".into(), k.clone());
    }
    // reasoning_effort / Anthropic thinking -> thinkingConfig (see reasoning.rs).
    let mut thinking = Map::new();
    if opts.include_thoughts {
        thinking.insert("includeThoughts".into(), Value::Bool(true));
    }
    if let Some((k, v)) = super::reasoning::gemini_thinking(&req.model, x) {
        thinking.insert(k.into(), v);
    }
    if !thinking.is_empty() {
        gen.insert("thinkingConfig".into(), Value::Object(thinking));
    }
    if !gen.is_empty() {
        body.insert("generationConfig".into(), Value::Object(gen));
    }
    if let Some(s) = &opts.safety_settings {
        body.insert("safetySettings".into(), s.clone());
    }

    note_unmapped(x, MAPPED_FIELDS, &mut dropped);
    Ok(BuiltRequest {
        body: Value::Object(body),
        dropped,
    })
}

fn text_parts(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(s)) if !s.is_empty() => vec![json!({ "text": s })],
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").or_else(|| p.get("refusal")).and_then(Value::as_str))
            .filter(|t| !t.is_empty())
            .map(|t| json!({ "text": t }))
            .collect(),
        _ => Vec::new(),
    }
}

/// MIME type guessed from a URL's file extension, for `fileData`.
fn mime_from_url(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url).to_ascii_lowercase();
    let ext = path.rsplit_once('.').map(|(_, e)| e)?;
    Some(match ext {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "pdf" => "application/pdf",
        _ => return None,
    })
}

fn user_parts(content: Option<&Value>, i: usize, dropped: &mut Vec<String>) -> Result<Vec<Value>, ApiError> {
    let Some(Value::Array(parts)) = content else {
        return Ok(text_parts(content));
    };
    let mut out = Vec::new();
    for (j, p) in parts.iter().enumerate() {
        match p.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => {
                if let Some(t) = p.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                    out.push(json!({ "text": t }));
                }
            }
            "image_url" => {
                let url = image_url_of(p);
                if let Some((mime, data)) = parse_data_url(url) {
                    out.push(json!({"inlineData": {"mimeType": mime, "data": data}}));
                } else if url.starts_with("https://")
                    || url.starts_with("http://")
                    || url.starts_with("gs://")
                {
                    // fileData needs a mimeType; without a recognisable
                    // extension the part cannot be described, so it is dropped.
                    match mime_from_url(url) {
                        Some(mime) => out.push(json!({"fileData": {"mimeType": mime, "fileUri": url}})),
                        None => note(
                            dropped,
                            "messages[].content[].image_url (URL without a known image extension)",
                        ),
                    }
                } else {
                    return Err(bad(
                        "Image URLs must be base64 `data:` URLs or http(s) URLs.",
                        format!("messages[{i}].content[{j}].image_url.url"),
                    ));
                }
            }
            "file" => match p
                .pointer("/file/file_data")
                .and_then(Value::as_str)
                .and_then(parse_data_url)
            {
                Some((mime, data)) => out.push(json!({"inlineData": {"mimeType": mime, "data": data}})),
                None => note(
                    dropped,
                    "messages[].content[].file (only base64 file_data is sent)",
                ),
            },
            "input_audio" => {
                let a = p.get("input_audio").unwrap_or(&Value::Null);
                let format = a.get("format").and_then(Value::as_str).unwrap_or("wav");
                let data = a.get("data").and_then(Value::as_str).unwrap_or("");
                out.push(json!({"inlineData": {"mimeType": format!("audio/{format}"), "data": data}}));
            }
            other => note(dropped, format!("messages[].content[].{other}")),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Gemini response -> OpenAI response
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GResponse {
    #[serde(default)]
    candidates: Vec<GCandidate>,
    #[serde(default)]
    prompt_feedback: Option<GPromptFeedback>,
    #[serde(default)]
    usage_metadata: Option<GUsage>,
    #[serde(default)]
    response_id: Option<String>,
    #[serde(default)]
    error: Option<GError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GCandidate {
    #[serde(default)]
    content: Option<GContent>,
    #[serde(default)]
    finish_reason: Option<String>,
    /// Omitted for candidate 0 (proto3 default).
    #[serde(default)]
    index: u32,
}

#[derive(Debug, Deserialize)]
struct GContent {
    #[serde(default)]
    parts: Vec<GPart>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GPart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: bool,
    #[serde(default)]
    function_call: Option<GFunctionCall>,
    #[serde(default)]
    thought_signature: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GFunctionCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    args: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GPromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
}

#[derive(Debug, Default, Deserialize)]
struct GError {
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Vec<Value>,
}

/// Gemini usage -> normalised usage. `promptTokenCount` already includes
/// `cachedContentTokenCount`; `candidatesTokenCount` excludes
/// `thoughtsTokenCount` (<https://ai.google.dev/api/generate-content#UsageMetadata>).
fn normalise_usage(u: &GUsage) -> Usage {
    Usage {
        prompt_tokens: u.prompt_token_count.saturating_add(u.tool_use_prompt_token_count),
        completion_tokens: u.candidates_token_count.saturating_add(u.thoughts_token_count),
        cached_tokens: u.cached_content_token_count,
        cache_write_tokens: 0,
        reasoning_tokens: u.thoughts_token_count,
    }
}

/// Gemini `finishReason` -> OpenAI `finish_reason`
/// (<https://ai.google.dev/api/generate-content#FinishReason>). Gemini says
/// `STOP` after function calls; OpenAI clients expect `tool_calls`.
fn finish_reason(reason: &str, has_tool_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT" => "content_filter",
        _ if has_tool_calls => "tool_calls",
        _ => "stop",
    }
}

fn tool_call_json(fc: GFunctionCall, signature: Option<String>, id: String, index: Option<u32>) -> Value {
    let args = fc.args.map_or_else(|| "{}".to_string(), |a| a.to_string());
    let mut call = Map::new();
    if let Some(i) = index {
        call.insert("index".into(), Value::from(i));
    }
    call.insert("id".into(), Value::from(fc.id.unwrap_or(id)));
    call.insert("type".into(), Value::from("function"));
    call.insert("function".into(), json!({"name": fc.name, "arguments": args}));
    if let Some(sig) = signature {
        call.insert(
            "extra_content".into(),
            json!({"google": {"thought_signature": sig}}),
        );
    }
    Value::Object(call)
}

/// A tool-call id prefix: from the response id when Gemini sends one, so the
/// output is reproducible; random otherwise.
fn call_id_prefix(response_id: Option<&str>) -> String {
    match response_id {
        Some(r) if !r.is_empty() => format!("call_{r}"),
        _ => format!("call_{:016x}", fastrand::u64(..)),
    }
}

fn chat_id(response_id: Option<&str>) -> String {
    match response_id {
        Some(r) if !r.is_empty() => format!("chatcmpl-{r}"),
        _ => format!("chatcmpl-{:016x}", fastrand::u64(..)),
    }
}

/// Translates a `GenerateContentResponse` into an OpenAI `chat.completion`
/// body and its usage. Every candidate becomes a choice (`n` > 1); a prompt
/// blocked by `promptFeedback.blockReason` becomes one empty choice with
/// `finish_reason: "content_filter"`. Function calls get ids
/// `call_<responseId>_<n>` unless Gemini sent its own.
pub fn parse_response(body: &[u8], public_model: &str) -> Result<(Bytes, Usage), ProviderError> {
    let r: GResponse =
        serde_json::from_slice(body).map_err(|e| malformed(format!("Gemini response: {e}")))?;
    if let Some(e) = r.error {
        return Err(error_from(None, None, e));
    }
    let prefix = call_id_prefix(r.response_id.as_deref());
    let mut n_calls = 0usize;
    let mut choices = Vec::new();
    for c in r.candidates {
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut calls = Vec::new();
        for p in c.content.map(|c| c.parts).unwrap_or_default() {
            if let Some(fc) = p.function_call {
                calls.push(tool_call_json(
                    fc,
                    p.thought_signature,
                    format!("{prefix}_{n_calls}"),
                    None,
                ));
                n_calls += 1;
            } else if let Some(t) = p.text {
                if p.thought {
                    reasoning.push_str(&t);
                } else {
                    text.push_str(&t);
                }
            }
        }
        let mut message = Map::new();
        message.insert("role".into(), Value::from("assistant"));
        message.insert("content".into(), content_or_null(text, !calls.is_empty()));
        if !reasoning.is_empty() {
            message.insert("reasoning_content".into(), Value::from(reasoning));
        }
        let finish = finish_reason(c.finish_reason.as_deref().unwrap_or("STOP"), !calls.is_empty());
        if !calls.is_empty() {
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        choices
            .push(json!({"index": c.index, "message": message, "logprobs": null, "finish_reason": finish}));
    }
    if choices.is_empty() {
        // No candidates: the prompt itself was blocked
        // (https://ai.google.dev/api/generate-content#PromptFeedback).
        let blocked = r
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.as_ref())
            .is_some();
        if !blocked {
            return Err(malformed("Gemini response has no candidates".into()));
        }
        choices.push(
            json!({"index": 0, "message": {"role": "assistant", "content": ""},
            "logprobs": null, "finish_reason": "content_filter"}),
        );
    }
    let usage = r.usage_metadata.as_ref().map(normalise_usage).unwrap_or_default();
    let out = json!({
        "id": chat_id(r.response_id.as_deref()),
        "object": "chat.completion",
        "created": now_secs(),
        "model": public_model,
        "choices": choices,
        "usage": openai_usage_json(&usage),
    });
    Ok((Bytes::from(out.to_string()), usage))
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// HTTP status for a `google.rpc.Code` name
/// (<https://cloud.google.com/apis/design/errors#handling_errors>).
fn status_for_rpc(status: &str) -> u16 {
    match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ALREADY_EXISTS" | "ABORTED" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 499,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

/// `google.rpc.RetryInfo.retryDelay` ("37s", "1.5s") from an error's details.
fn retry_delay(details: &[Value]) -> Option<Duration> {
    details
        .iter()
        .filter(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })
        .find_map(|d| {
            d.get("retryDelay")?
                .as_str()?
                .strip_suffix('s')?
                .parse::<f64>()
                .ok()
        })
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

fn error_from(http_status: Option<u16>, retry_after: Option<Duration>, e: GError) -> ProviderError {
    let rpc = e.status.clone();
    let status = http_status
        .filter(|s| *s >= 400)
        .or(e.code.filter(|c| *c >= 400))
        .or_else(|| rpc.as_deref().map(status_for_rpc))
        .unwrap_or(500);
    let message = e
        .message
        .unwrap_or_else(|| format!("Gemini {} (HTTP {status})", rpc.as_deref().unwrap_or("error")));
    // Gemini puts the wait in RetryInfo rather than a Retry-After header
    // (https://ai.google.dev/gemini-api/docs/rate-limits).
    let retry_after = retry_after.or_else(|| retry_delay(&e.details));
    status_error(status, retry_after, message, rpc)
}

/// Classifies a Gemini error response: `{"error":{"code","message","status",
/// "details"}}` (also accepted wrapped in a one-element array, as the
/// non-SSE stream endpoint sends it). `RESOURCE_EXHAUSTED` is 429 and
/// `UNAVAILABLE` 503 (both retryable); `RetryInfo.retryDelay` fills
/// `retry_after` when no header gave one. Other bodies fall back to
/// [`ProviderError::from_status`].
pub fn map_error(status: u16, retry_after: Option<Duration>, body: &[u8]) -> ProviderError {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Envelope {
        One { error: GError },
        Many(Vec<Envelope>),
    }
    let parsed = match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope::One { error }) => Some(error),
        Ok(Envelope::Many(v)) => v.into_iter().find_map(|e| match e {
            Envelope::One { error } => Some(error),
            Envelope::Many(_) => None,
        }),
        Err(_) => None,
    };
    match parsed {
        Some(e) => error_from(Some(status), retry_after, e),
        None => ProviderError::from_status(status, retry_after, &Bytes::copy_from_slice(body)),
    }
}

// ---------------------------------------------------------------------------
// Streaming: Gemini SSE -> OpenAI SSE
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct CandidateState {
    index: u32,
    next_tool: u32,
    saw_tool: bool,
    finished: bool,
}

/// Translates `streamGenerateContent?alt=sse` events (each `data:` is a
/// whole `GenerateContentResponse` carrying the next piece of text) into
/// OpenAI `chat.completion.chunk` frames.
///
/// Function calls arrive whole and are emitted as one tool-call delta each.
/// Gemini has no end-of-stream marker: the stream is complete when every
/// candidate has a `finishReason` (usage rides on that last event), at which
/// point the finish chunk(s), the usage chunk and `[DONE]` are emitted.
pub struct StreamTranslator {
    writer: ChunkWriter,
    include_usage_chunk: bool,
    id_set: bool,
    call_prefix: String,
    candidates: Vec<CandidateState>,
    usage: Option<GUsage>,
    finished: bool,
}

impl StreamTranslator {
    /// `include_usage_chunk`: emit the OpenAI usage chunk (`"choices":[]`)
    /// before `[DONE]`.
    pub fn new(public_model: &str, include_usage_chunk: bool) -> Self {
        StreamTranslator {
            writer: ChunkWriter::new(&chat_id(None), now_secs(), public_model),
            include_usage_chunk,
            id_set: false,
            call_prefix: String::new(),
            candidates: Vec::new(),
            usage: None,
            finished: false,
        }
    }

    /// Fixes the `created` timestamp of every chunk (for reproducible output).
    pub fn with_created(mut self, created: u64) -> Self {
        self.writer.set_created(created);
        self
    }

    /// The latest `usageMetadata`, normalised. None until Gemini sends one.
    pub fn usage(&self) -> Option<Usage> {
        self.usage.as_ref().map(normalise_usage)
    }

    /// Whether the stream has completed (and `[DONE]` been emitted).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn candidate(&mut self, index: u32, out: &mut Vec<Bytes>) -> usize {
        if let Some(pos) = self.candidates.iter().position(|c| c.index == index) {
            return pos;
        }
        self.candidates.push(CandidateState {
            index,
            next_tool: 0,
            saw_tool: false,
            finished: false,
        });
        out.push(
            self.writer
                .chunk(index, br#"{"role":"assistant","content":""}"#, None),
        );
        self.candidates.len() - 1
    }

    /// Handles one upstream event, appending OpenAI SSE frames to `out`.
    /// Returns `Ok(true)` once the stream is complete. An in-stream `error`
    /// object becomes a `ProviderError`.
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
        let r: GResponse =
            serde_json::from_slice(data).map_err(|e| malformed(format!("Gemini stream event: {e}")))?;
        if let Some(e) = r.error {
            return Err(error_from(None, None, e));
        }
        if !self.id_set {
            self.id_set = true;
            self.writer.set_id(&chat_id(r.response_id.as_deref()));
            self.call_prefix = call_id_prefix(r.response_id.as_deref());
        }
        if let Some(u) = r.usage_metadata {
            self.usage = Some(u);
        }
        if r.candidates.is_empty()
            && r.prompt_feedback
                .as_ref()
                .and_then(|f| f.block_reason.as_ref())
                .is_some()
        {
            let pos = self.candidate(0, out);
            self.candidates[pos].finished = true;
            out.push(self.writer.chunk(0, b"{}", Some("content_filter")));
        }
        for c in r.candidates {
            let pos = self.candidate(c.index, out);
            for p in c.content.map(|c| c.parts).unwrap_or_default() {
                if let Some(fc) = p.function_call {
                    let st = &mut self.candidates[pos];
                    let n = st.next_tool;
                    st.next_tool += 1;
                    st.saw_tool = true;
                    let id = format!("{}_{}_{n}", self.call_prefix, c.index);
                    let d = json!({ "tool_calls": [tool_call_json(fc, p.thought_signature, id, Some(n))] });
                    out.push(self.writer.chunk(c.index, d.to_string().as_bytes(), None));
                } else if let Some(t) = p.text.filter(|t| !t.is_empty()) {
                    let field = if p.thought { "reasoning_content" } else { "content" };
                    out.push(self.writer.chunk(c.index, &delta_str(field, &t), None));
                }
            }
            if let Some(fr) = c.finish_reason {
                let st = &mut self.candidates[pos];
                if !st.finished {
                    st.finished = true;
                    let f = finish_reason(&fr, st.saw_tool);
                    out.push(self.writer.chunk(c.index, b"{}", Some(f)));
                }
            }
        }
        if !self.candidates.is_empty() && self.candidates.iter().all(|c| c.finished) {
            self.end(out);
            return Ok(true);
        }
        Ok(false)
    }

    fn end(&mut self, out: &mut Vec<Bytes>) {
        if self.include_usage_chunk {
            out.push(self.writer.usage_chunk(&self.usage().unwrap_or_default()));
        }
        out.push(Bytes::from_static(DONE_FRAME));
        self.finished = true;
    }

    /// Call when the upstream body ends. Returns true if the stream had
    /// already completed; otherwise it was cut short: unfinished choices get
    /// `finish_reason: "stop"`, then the usage chunk and `[DONE]` are emitted,
    /// and the caller decides whether to report the truncation.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) -> bool {
        if self.finished {
            return true;
        }
        if self.candidates.is_empty() {
            self.candidate(0, out);
        }
        for i in 0..self.candidates.len() {
            let c = self.candidates[i];
            if !c.finished {
                self.candidates[i].finished = true;
                out.push(
                    self.writer
                        .chunk(c.index, b"{}", Some(finish_reason("STOP", c.saw_tool))),
                );
            }
        }
        self.end(out);
        false
    }
}

// ---------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------

/// Builds a Gemini embeddings call: `(path, body)` where `path` is relative
/// to `.../v1beta/`. A single string input uses `models/<m>:embedContent`;
/// an array uses `models/<m>:batchEmbedContents` (one request per input).
/// `dimensions` -> `outputDimensionality`. Token-array inputs are rejected
/// (Gemini embeds text only).
pub fn build_embed_request(
    req: &EmbeddingsRequest,
    upstream_model: &str,
) -> Result<(String, Value), ApiError> {
    let m = model_name(upstream_model);
    let full = format!("models/{m}");
    let dims = req.extra.get("dimensions").and_then(Value::as_u64);
    let one = |text: &str| {
        let mut r = Map::new();
        r.insert("model".into(), Value::from(full.as_str()));
        r.insert("content".into(), json!({"parts": [{"text": text}]}));
        if let Some(d) = dims {
            r.insert("outputDimensionality".into(), Value::from(d));
        }
        Value::Object(r)
    };
    match &req.input {
        Value::String(s) => Ok((format!("{full}:embedContent"), one(s))),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            let requests: Vec<Value> = items.iter().filter_map(Value::as_str).map(one).collect();
            Ok((
                format!("{full}:batchEmbedContents"),
                json!({ "requests": requests }),
            ))
        }
        _ => Err(bad(
            "Gemini embedding models take text input: a string or an array of strings.",
            "input",
        )),
    }
}

/// Translates an `embedContent` (`{"embedding":{"values"}}`) or
/// `batchEmbedContents` (`{"embeddings":[{"values"}]}`) response into an
/// OpenAI embeddings list. With `base64`, each vector is little-endian f32
/// bytes in base64, as OpenAI's `encoding_format: "base64"`.
///
/// Gemini reports no token counts for embeddings: the returned usage is
/// zero unless the body carries `usageMetadata`; use
/// [`embed_usage_estimate`] for accounting.
pub fn parse_embed_response(
    body: &[u8],
    public_model: &str,
    base64: bool,
) -> Result<(Bytes, Usage), ProviderError> {
    #[derive(Deserialize)]
    struct Embedding {
        #[serde(default)]
        values: Vec<f64>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Resp {
        #[serde(default)]
        embedding: Option<Embedding>,
        #[serde(default)]
        embeddings: Option<Vec<Embedding>>,
        #[serde(default)]
        usage_metadata: Option<GUsage>,
    }
    let r: Resp = serde_json::from_slice(body).map_err(|e| malformed(format!("Gemini embeddings: {e}")))?;
    let list = match (r.embedding, r.embeddings) {
        (Some(e), _) => vec![e],
        (None, Some(v)) => v,
        (None, None) => return Err(malformed("Gemini embeddings response has no embedding".into())),
    };
    let data: Vec<Value> = list
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = e.values.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect();
                Value::from(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    &bytes,
                ))
            } else {
                Value::from(e.values)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let prompt = r.usage_metadata.map_or(0, |u| u.prompt_token_count);
    let usage = Usage {
        prompt_tokens: prompt,
        ..Usage::default()
    };
    let out = json!({
        "object": "list",
        "data": data,
        "model": public_model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    });
    Ok((Bytes::from(out.to_string()), usage))
}

/// Estimated embeddings usage (characters / 4, rounded up, per input) for
/// accounting, since Gemini does not report it.
pub fn embed_usage_estimate(req: &EmbeddingsRequest) -> Usage {
    let tokens = req
        .texts()
        .iter()
        .map(|t| (t.chars().count() as u64).div_ceil(4))
        .sum();
    Usage {
        prompt_tokens: tokens,
        ..Usage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::anthropic::test_support::{events, feed_split, golden, golden_json, text, XorShift};
    use super::super::error::ProviderErrorKind;
    use super::*;

    const CHAT_REQUEST: &str = include_str!("../../tests/fixtures/gemini/chat_request.json");
    const CHAT_REQUEST_EXPECTED: &str =
        include_str!("../../tests/fixtures/gemini/chat_request.expected.json");
    const RESPONSE: &str = include_str!("../../tests/fixtures/gemini/response.json");
    const RESPONSE_EXPECTED: &str = include_str!("../../tests/fixtures/gemini/response.expected.json");
    const RESPONSE_BLOCKED: &str = include_str!("../../tests/fixtures/gemini/response_blocked.json");
    const STREAM: &str = include_str!("../../tests/fixtures/gemini/stream.sse");
    const STREAM_EXPECTED: &str = include_str!("../../tests/fixtures/gemini/stream.expected.sse");
    const ERROR_RATE_LIMITED: &str = include_str!("../../tests/fixtures/gemini/error_rate_limited.json");
    const ERROR_UNAVAILABLE: &str = include_str!("../../tests/fixtures/gemini/error_unavailable.json");
    const EMBED_BATCH: &str = include_str!("../../tests/fixtures/gemini/embed_batch_response.json");
    const EMBED_BATCH_EXPECTED: &str = include_str!("../../tests/fixtures/gemini/embed_batch.expected.json");
    const EMBED_SINGLE: &str = include_str!("../../tests/fixtures/gemini/embed_single_response.json");

    const CREATED: u64 = 1_700_000_000;

    fn chat(body: Value) -> ChatRequest {
        ChatRequest::parse(body.to_string().as_bytes()).expect("valid request")
    }

    fn translate(raw: &str) -> (Vec<Bytes>, bool, StreamTranslator) {
        let mut t = StreamTranslator::new("gemini-public", true).with_created(CREATED);
        let mut out = Vec::new();
        let mut done = false;
        for ev in events(raw.as_bytes()) {
            done = t.on_event(&ev, &mut out).expect("ok");
        }
        (out, done, t)
    }

    #[test]
    fn paths() {
        assert_eq!(
            chat_path("gemini-2.5-flash", false),
            "models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            chat_path("models/gemini-2.5-flash", true),
            "models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
    }

    #[test]
    fn golden_build_request() {
        let req = ChatRequest::parse(CHAT_REQUEST.as_bytes()).expect("fixture parses");
        let opts = GeminiOptions {
            include_thoughts: true,
            safety_settings: None,
        };
        let built = build_request(&req, &opts).expect("builds");
        golden_json(
            "gemini/chat_request.expected.json",
            CHAT_REQUEST_EXPECTED,
            &json!({"body": built.body, "dropped": built.dropped}),
        );
    }

    #[test]
    fn tool_choice_and_format_variants() {
        let base = |extra: Value| {
            let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "f"}}]});
            if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
                b.extend(e.clone());
            }
            build_request(&chat(body), &GeminiOptions::default()).expect("builds")
        };
        let mode = |choice: &str| {
            base(json!({"tool_choice": choice})).body["toolConfig"]["functionCallingConfig"]["mode"].clone()
        };
        assert_eq!(mode("none"), "NONE");
        assert_eq!(mode("auto"), "AUTO");
        assert_eq!(mode("required"), "ANY");
        let b = base(json!({"response_format": {"type": "json_object"}, "stop": ["a","b","c","d","e","f"]}));
        assert_eq!(b.body["generationConfig"]["responseMimeType"], "application/json");
        assert_eq!(
            b.body["generationConfig"]["stopSequences"]
                .as_array()
                .map(Vec::len),
            Some(5)
        );
        assert_eq!(b.dropped, vec!["stop (only the first 5 are sent)"]);
        assert_eq!(
            b.body["tools"][0]["functionDeclarations"][0],
            json!({"name": "f"})
        );
        let b = base(json!({}));
        assert_eq!(b.body.get("generationConfig"), None);
        assert_eq!(b.body.get("toolConfig"), None);
        let safety = json!([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]);
        let opts = GeminiOptions {
            include_thoughts: false,
            safety_settings: Some(safety.clone()),
        };
        let b = build_request(
            &chat(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})),
            &opts,
        )
        .expect("builds");
        assert_eq!(b.body["safetySettings"], safety);
    }

    #[test]
    fn request_errors() {
        let param = |body: Value| {
            build_request(&chat(body), &GeminiOptions::default())
                .expect_err("fails")
                .param
        };
        assert_eq!(
            param(
                json!({"model": "m", "messages": [{"role": "user", "content": "x"},
                {"role": "tool", "tool_call_id": "nope", "content": "r"}]})
            )
            .as_deref(),
            Some("messages[1].tool_call_id")
        );
        assert_eq!(
            param(json!({"model": "m", "messages": [{"role": "system", "content": "x"}]})).as_deref(),
            Some("messages")
        );
        assert_eq!(
            param(json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]}))
            .as_deref(),
            Some("messages[0].content[0].image_url.url")
        );
        // A legacy `name` on the tool message is enough without a matching call.
        let ok = build_request(
            &chat(
                json!({"model": "m", "messages": [{"role": "user", "content": "x"},
                {"role": "tool", "tool_call_id": "nope", "name": "f", "content": "[1,2]"}]}),
            ),
            &GeminiOptions::default(),
        )
        .expect("builds");
        assert_eq!(
            ok.body["contents"][0]["parts"][1],
            json!({"functionResponse": {"name": "f", "response": {"result": "[1,2]"}}})
        );
    }

    #[test]
    fn golden_parse_response() {
        let (body, usage) = parse_response(RESPONSE.as_bytes(), "gemini-public").expect("parses");
        let mut v: Value = serde_json::from_slice(&body).expect("json");
        v["created"] = Value::from(0);
        golden_json("gemini/response.expected.json", RESPONSE_EXPECTED, &v);
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 1200,
                completion_tokens: 130,
                cached_tokens: 1024,
                cache_write_tokens: 0,
                reasoning_tokens: 100
            }
        );
        // The signature survives a round trip through an OpenAI client.
        let call = v["choices"][0]["message"]["tool_calls"][0].clone();
        let next = chat(json!({"model": "m", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_gJ8naKOLBuy8nvgPj5X8mQQ_0", "content": "4 C"}]}));
        let b = build_request(&next, &GeminiOptions::default()).expect("builds");
        assert_eq!(
            b.body["contents"][1]["parts"][0]["thoughtSignature"],
            "CiQBjz1rX1sig=="
        );
        assert_eq!(
            b.body["contents"][2]["parts"][0]["functionResponse"]["name"],
            "get_weather"
        );
    }

    #[test]
    fn blocked_prompt_and_finish_reasons() {
        let (body, usage) = parse_response(RESPONSE_BLOCKED.as_bytes(), "g").expect("parses");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(v["choices"][0]["message"]["content"], "");
        assert_eq!(usage.prompt_tokens, 12);
        for (reason, want) in [
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("BLOCKLIST", "content_filter"),
            ("PROHIBITED_CONTENT", "content_filter"),
            ("STOP", "stop"),
            ("OTHER", "stop"),
        ] {
            let body =
                json!({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]});
            let (b, _) = parse_response(body.to_string().as_bytes(), "g").expect("parses");
            let v: Value = serde_json::from_slice(&b).expect("json");
            assert_eq!(v["choices"][0]["finish_reason"], want, "{reason}");
        }
        // n=2: both candidates become choices.
        let body = json!({"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"},
            {"content": {"parts": [{"text": "b"}]}, "finishReason": "STOP", "index": 1}]});
        let (b, _) = parse_response(body.to_string().as_bytes(), "g").expect("parses");
        let v: Value = serde_json::from_slice(&b).expect("json");
        assert_eq!(
            (
                v["choices"][1]["index"].clone(),
                v["choices"][1]["message"]["content"].clone()
            ),
            (json!(1), json!("b"))
        );
        assert_eq!(
            parse_response(b"{}", "g").expect_err("empty").kind,
            ProviderErrorKind::Malformed
        );
    }

    #[test]
    fn golden_stream() {
        let (out, done, t) = translate(STREAM);
        assert!(done && t.is_finished());
        golden("gemini/stream.expected.sse", STREAM_EXPECTED, &text(&out));
        assert_eq!(
            t.usage(),
            Some(Usage {
                prompt_tokens: 95,
                completion_tokens: 65,
                cached_tokens: 64,
                cache_write_tokens: 0,
                reasoning_tokens: 41
            })
        );
    }

    #[test]
    fn truncated_stream_and_in_stream_error() {
        let first = STREAM.split("\n\n").next().unwrap_or("").to_string() + "\n\n";
        let (mut out, done, mut t) = translate(&first);
        assert!(!done);
        assert!(!t.finish(&mut out), "cut short");
        let s = text(&out);
        assert!(s.contains("\"finish_reason\":\"stop\"") && s.ends_with("data: [DONE]\n\n"));
        assert!(t.finish(&mut out));
        let mut t = StreamTranslator::new("g", true);
        let ev = events(
            b"data: {\"error\":{\"code\":503,\"message\":\"overloaded\",\"status\":\"UNAVAILABLE\"}}\n\n",
        );
        let e = t.on_event(&ev[0], &mut Vec::new()).expect_err("error");
        assert_eq!((e.status, e.is_retryable()), (Some(503), true));
    }

    #[test]
    fn map_error_fixtures() {
        let e = map_error(429, None, ERROR_RATE_LIMITED.as_bytes());
        assert_eq!((e.status, e.is_retryable()), (Some(429), true));
        assert_eq!(e.retry_after, Some(Duration::from_secs(37)));
        assert_eq!(
            e.upstream.as_ref().and_then(|u| u.kind.as_deref()),
            Some("RESOURCE_EXHAUSTED")
        );
        let e = map_error(429, Some(Duration::from_secs(2)), ERROR_RATE_LIMITED.as_bytes());
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)), "header wins");
        let e = map_error(503, None, ERROR_UNAVAILABLE.as_bytes());
        assert_eq!((e.status, e.is_retryable()), (Some(503), true));
        assert!(e.message.contains("overloaded"));
        let e = map_error(
            400,
            None,
            br#"{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT"}}"#,
        );
        assert_eq!((e.status, e.is_retryable()), (Some(400), false));
        let e = map_error(500, None, b"oops");
        assert_eq!((e.status, e.message.as_str()), (Some(500), "oops"));
    }

    #[test]
    fn embed_requests() {
        let req =
            EmbeddingsRequest::parse(br#"{"model":"e","input":"hello","dimensions":256}"#).expect("parse");
        let (path, body) = build_embed_request(&req, "gemini-embedding-001").expect("builds");
        assert_eq!(path, "models/gemini-embedding-001:embedContent");
        assert_eq!(
            body,
            json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 256})
        );
        let req = EmbeddingsRequest::parse(br#"{"model":"e","input":["a","b"]}"#).expect("parse");
        let (path, body) = build_embed_request(&req, "models/text-embedding-004").expect("builds");
        assert_eq!(path, "models/text-embedding-004:batchEmbedContents");
        assert_eq!(
            body["requests"][1],
            json!({"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}})
        );
        let req = EmbeddingsRequest::parse(br#"{"model":"e","input":[1,2,3]}"#).expect("parse");
        assert_eq!(
            build_embed_request(&req, "x")
                .expect_err("tokens")
                .param
                .as_deref(),
            Some("input")
        );
        assert_eq!(
            embed_usage_estimate(
                &EmbeddingsRequest::parse(br#"{"model":"e","input":["abcde","x"]}"#).expect("p")
            )
            .prompt_tokens,
            3
        );
    }

    #[test]
    fn embed_responses() {
        let (body, usage) =
            parse_embed_response(EMBED_BATCH.as_bytes(), "emb-public", false).expect("parses");
        let v: Value = serde_json::from_slice(&body).expect("json");
        golden_json("gemini/embed_batch.expected.json", EMBED_BATCH_EXPECTED, &v);
        assert_eq!(usage, Usage::default());
        let (body, _) = parse_embed_response(EMBED_SINGLE.as_bytes(), "emb-public", true).expect("parses");
        let v: Value = serde_json::from_slice(&body).expect("json");
        // [0.25, -0.5, 1.0] as little-endian f32.
        assert_eq!(v["data"][0]["embedding"], "AACAPgAAAL8AAIA/");
        assert_eq!(v["data"].as_array().map(Vec::len), Some(1));
        assert!(parse_embed_response(b"{}", "e", false).is_err());
    }

    #[test]
    fn split_invariance() {
        let whole = text(&translate(STREAM).0);
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        for case in 0..500 {
            let mut t = StreamTranslator::new("gemini-public", true).with_created(CREATED);
            let out = feed_split(STREAM.as_bytes(), &mut rng, |ev, out| {
                let _ = t.on_event(ev, out);
            });
            assert_eq!(text(&out), whole, "case {case}");
        }
    }

    /// `cargo test --release --lib -- --ignored bench_gemini_stream_translation --nocapture`
    #[test]
    #[ignore]
    fn bench_gemini_stream_translation() {
        let mut raw = String::new();
        for i in 0..1000 {
            raw.push_str(&format!(
                "data: {{\"candidates\": [{{\"content\": {{\"parts\": [{{\"text\": \"token {i} and some \\\"quoted\\\" words \"}}],\"role\": \"model\"}},\"index\": 0}}],\"usageMetadata\": {{\"promptTokenCount\": 95,\"candidatesTokenCount\": {i},\"totalTokenCount\": 140}},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"x1ZnaN3xAa\"}}\n\n"
            ));
        }
        let evs = events(raw.as_bytes());
        let rounds = 200;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            let mut t = StreamTranslator::new("gemini-public", true);
            let mut out = Vec::with_capacity(evs.len() + 1);
            for ev in &evs {
                let _ = t.on_event(ev, &mut out);
            }
        }
        let per = start.elapsed().as_nanos() / (rounds * evs.len()) as u128;
        println!("gemini->openai: {per} ns/chunk");
    }
}
