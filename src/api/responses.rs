//! The OpenAI Responses API (`POST /v1/responses`) on top of chat completions.
//!
//! Pure translation, no I/O: a Responses request becomes the gateway's one
//! internal request (a [`ChatRequest`]), so routing, budgets, keys,
//! experiments, fallback and the ledger treat it like any chat request and
//! every provider adapter can serve it. The chat answer is translated back:
//! a complete body with [`Translation::chat_body_to_response`], a stream
//! with [`ChunkToResponses`] (the Responses event stream).
//!
//! What maps to what is documented in `docs/providers.md` ("The Responses API").

use std::collections::HashSet;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::chat::{parse_json, ChatMessage, ChatRequest};
use super::error::ApiError;
use super::usage::Usage;
use crate::gateway::sse::SseEvent;
use crate::providers::anthropic::{decode_tool_id, encode_tool_id};

/// Tool types OpenAI runs on its side. They can only be served by an
/// upstream that speaks the Responses API itself.
pub const HOSTED_TOOLS: &[&str] = &[
    "web_search",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "web_search_2025_08_26",
    "file_search",
    "code_interpreter",
    "computer",
    "computer_use_preview",
    "computer_use",
    "image_generation",
    "mcp",
    "local_shell",
    "shell",
    "apply_patch",
];

/// A parsed `POST /v1/responses` body.
#[derive(Debug, Clone)]
pub struct ResponsesRequest {
    /// The body as sent (forwarded as is to upstreams that speak the API).
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// `store` (default true): keep the response for `previous_response_id`.
    pub store: bool,
    pub previous_response_id: Option<String>,
    /// The request's input as a list of items (a string input becomes one user message).
    pub input: Vec<Value>,
    /// Types of hosted tools in `tools` (or `tool_choice`).
    pub hosted: Vec<String>,
}

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::invalid_request(message, Some(param.to_string()))
}

impl ResponsesRequest {
    /// Parses and validates a body. Errors name the offending `param`.
    pub fn parse(bytes: &[u8]) -> Result<ResponsesRequest, ApiError> {
        let v: Value = parse_json(bytes)?;
        let Value::Object(body) = v else {
            return Err(ApiError::invalid_request(
                "The request body must be a JSON object.",
                None,
            ));
        };
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            Some(Value::String(_)) => return Err(bad("`model` must not be empty.", "model")),
            None => return Err(bad("Missing required parameter: 'model'.", "model")),
            Some(_) => return Err(bad("`model` must be a string.", "model")),
        };
        let flag = |key: &str, default: bool| -> Result<bool, ApiError> {
            match body.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(_) => Err(bad(format!("`{key}` must be a boolean."), key)),
            }
        };
        let stream = flag("stream", false)?;
        let store = flag("store", true)?;
        let previous_response_id = match body.get("previous_response_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => {
                return Err(bad(
                    "`previous_response_id` must be a non-empty string.",
                    "previous_response_id",
                ))
            }
        };
        let input = match body.get("input") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![json!({"type": "message", "role": "user", "content": s})],
            Some(Value::Array(items)) => {
                for (i, it) in items.iter().enumerate() {
                    if !it.is_object() {
                        return Err(bad("Each input item must be an object.", &format!("input[{i}]")));
                    }
                }
                items.clone()
            }
            Some(_) => {
                return Err(bad(
                    "`input` must be a string or an array of input items.",
                    "input",
                ))
            }
        };
        if input.is_empty() && previous_response_id.is_none() {
            return Err(bad("Missing required parameter: 'input'.", "input"));
        }
        match body.get("instructions") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => return Err(bad("`instructions` must be a string.", "instructions")),
        }
        if let Some(v) = body.get("max_output_tokens") {
            if !v.is_null() && v.as_u64().is_none() {
                return Err(bad(
                    "`max_output_tokens` must be a non-negative integer.",
                    "max_output_tokens",
                ));
            }
        }
        for key in ["temperature", "top_p"] {
            if let Some(v) = body.get(key) {
                if !v.is_null() && !v.is_number() {
                    return Err(bad(format!("`{key}` must be a number."), key));
                }
            }
        }
        for key in ["background", "conversation", "prompt"] {
            let set = match body.get(key) {
                None | Some(Value::Null) | Some(Value::Bool(false)) => false,
                Some(_) => true,
            };
            if set {
                return Err(bad(format!("`{key}` is not supported by this gateway."), key)
                    .with_code("unsupported_parameter"));
            }
        }
        let mut hosted = Vec::new();
        match body.get("tools") {
            None | Some(Value::Null) => {}
            Some(Value::Array(tools)) => {
                for (i, t) in tools.iter().enumerate() {
                    let Some(kind) = t.get("type").and_then(Value::as_str) else {
                        return Err(bad(
                            "Each tool must have a string `type`.",
                            &format!("tools[{i}].type"),
                        ));
                    };
                    match kind {
                        "function" | "custom" => {
                            if !t.get("name").is_some_and(Value::is_string) {
                                return Err(bad(
                                    "A function tool needs a string `name`.",
                                    &format!("tools[{i}].name"),
                                ));
                            }
                        }
                        // A group of function tools (Codex's sub-agent tools): flattened.
                        "namespace" => {}
                        other => hosted.push(other.to_string()),
                    }
                }
            }
            Some(_) => return Err(bad("`tools` must be an array.", "tools")),
        }
        if let Some(kind) = body
            .get("tool_choice")
            .and_then(|c| c.get("type"))
            .and_then(Value::as_str)
        {
            if !matches!(kind, "function" | "custom" | "allowed_tools") && !hosted.iter().any(|h| h == kind) {
                hosted.push(kind.to_string());
            }
        }
        Ok(ResponsesRequest {
            body,
            model,
            stream,
            store,
            previous_response_id,
            input,
            hosted,
        })
    }

    /// The 400 for hosted tools when no upstream of the request speaks the Responses API.
    pub fn hosted_tool_error(&self) -> Option<ApiError> {
        let kind = self.hosted.first()?;
        Some(
            ApiError::invalid_request(
                format!(
                    "The hosted tool `{kind}` runs only on OpenAI's own Responses API, and no upstream \
                     that can serve this model speaks it (set `responses_api = true` on an OpenAI \
                     provider); use function tools instead."
                ),
                Some("tools".into()),
            )
            .with_code("hosted_tool_unsupported"),
        )
    }

    /// The chat request this Responses request means. `history` is the
    /// conversation before it (from `previous_response_id`): input items,
    /// then the previous response's output items. `lenient`: leave out what
    /// only an upstream speaking the Responses API can take (hosted tools and
    /// their items) instead of refusing it; such a request serves routing and
    /// budgets only and is never sent.
    pub fn to_chat(&self, history: &[Value], lenient: bool) -> Result<(ChatRequest, Translation), ApiError> {
        if !lenient {
            if let Some(e) = self.hosted_tool_error() {
                return Err(e);
            }
        }
        let b = &self.body;
        let mut custom = HashSet::new();
        let mut extra = Map::new();
        if let Some(Value::Array(tools)) = b.get("tools") {
            let mut out = Vec::with_capacity(tools.len());
            for t in tools {
                match t.get("type").and_then(Value::as_str) {
                    Some("function" | "custom") => out.push(tool_to_chat(t, &mut custom)),
                    Some("namespace") => {
                        for inner in t.get("tools").and_then(Value::as_array).into_iter().flatten() {
                            if matches!(
                                inner.get("type").and_then(Value::as_str),
                                Some("function" | "custom")
                            ) && inner.get("name").is_some_and(Value::is_string)
                            {
                                out.push(tool_to_chat(inner, &mut custom));
                            }
                        }
                    }
                    _ => {}
                }
            }
            if !out.is_empty() {
                extra.insert("tools".into(), Value::Array(out));
            }
        }
        if let Some(c) = b.get("tool_choice").filter(|c| !c.is_null()) {
            extra.insert("tool_choice".into(), tool_choice_to_chat(c));
        }
        let mut messages = Vec::new();
        if let Some(Value::String(s)) = b.get("instructions") {
            if !s.is_empty() {
                messages.push(message("system", Some(Value::String(s.clone()))));
            }
        }
        items_to_messages(history, "previous_response_id", lenient, &mut messages)?;
        items_to_messages(&self.input, "input", lenient, &mut messages)?;
        if !messages
            .iter()
            .any(|m| m.role != "system" && m.role != "developer")
        {
            return Err(bad(
                "The input has no user, assistant or tool content to answer.",
                "input",
            ));
        }
        if let Some(n) = b.get("max_output_tokens").and_then(Value::as_u64) {
            extra.insert("max_completion_tokens".into(), n.into());
        }
        for key in [
            "temperature",
            "top_p",
            "parallel_tool_calls",
            "user",
            "safety_identifier",
            "prompt_cache_key",
            "prompt_cache_retention",
            "service_tier",
        ] {
            if let Some(v) = b.get(key).filter(|v| !v.is_null()) {
                extra.insert(key.into(), v.clone());
            }
        }
        if let Some(n) = b.get("top_logprobs").and_then(Value::as_u64) {
            extra.insert("logprobs".into(), true.into());
            extra.insert("top_logprobs".into(), n.into());
        }
        if let Some(e) = b
            .get("reasoning")
            .and_then(|r| r.get("effort"))
            .filter(|e| e.is_string())
        {
            extra.insert("reasoning_effort".into(), e.clone());
        }
        if let Some(text) = b.get("text").and_then(Value::as_object) {
            if let Some(v) = text.get("verbosity").filter(|v| v.is_string()) {
                extra.insert("verbosity".into(), v.clone());
            }
            if let Some(f) = text.get("format").and_then(Value::as_object) {
                match f.get("type").and_then(Value::as_str) {
                    Some("json_object") => {
                        extra.insert("response_format".into(), json!({"type": "json_object"}));
                    }
                    Some("json_schema") => {
                        let mut schema = Map::new();
                        for k in ["name", "schema", "strict", "description"] {
                            if let Some(v) = f.get(k).filter(|v| !v.is_null()) {
                                schema.insert(k.into(), v.clone());
                            }
                        }
                        extra.insert(
                            "response_format".into(),
                            json!({"type": "json_schema", "json_schema": schema}),
                        );
                    }
                    _ => {}
                }
            }
        }
        let req = ChatRequest {
            model: self.model.clone(),
            messages,
            stream: self.stream.then_some(true),
            stream_options: None,
            extra,
        };
        Ok((req, Translation { custom }))
    }

    /// The fields of the request a response object echoes.
    pub fn echo(&self) -> Map<String, Value> {
        let b = &self.body;
        let mut m = Map::new();
        let mut put = |k: &str, default: Value| {
            let v = b.get(k).filter(|v| !v.is_null()).cloned().unwrap_or(default);
            m.insert(k.to_string(), v);
        };
        put("instructions", Value::Null);
        put("max_output_tokens", Value::Null);
        put("parallel_tool_calls", Value::Bool(true));
        put("previous_response_id", Value::Null);
        put("reasoning", json!({"effort": null, "summary": null}));
        put("store", Value::Bool(true));
        put("temperature", json!(1.0));
        put("text", json!({"format": {"type": "text"}}));
        put("tool_choice", json!("auto"));
        put("tools", json!([]));
        put("top_p", json!(1.0));
        put("truncation", json!("disabled"));
        put("user", Value::Null);
        put("metadata", json!({}));
        put("background", Value::Bool(false));
        for k in [
            "prompt_cache_key",
            "safety_identifier",
            "service_tier",
            "top_logprobs",
        ] {
            if let Some(v) = b.get(k).filter(|v| !v.is_null()) {
                m.insert(k.to_string(), v.clone());
            }
        }
        m
    }
}

fn message(role: &str, content: Option<Value>) -> ChatMessage {
    ChatMessage {
        role: role.to_string(),
        content,
        extra: Map::new(),
    }
}

/// A Responses tool as a chat tool. Custom (free-form) tools become a
/// function taking one string, `input`.
fn tool_to_chat(t: &Value, custom: &mut HashSet<String>) -> Value {
    let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
    let mut f = Map::new();
    f.insert("name".into(), name.into());
    if let Some(d) = t.get("description").filter(|d| d.is_string()) {
        f.insert("description".into(), d.clone());
    }
    if t.get("type").and_then(Value::as_str) == Some("custom") {
        custom.insert(name.to_string());
        let mut about = String::from("The tool's whole input, as free text.");
        if let Some(def) = t.pointer("/format/definition").and_then(Value::as_str) {
            about.push_str(" It must match this grammar: ");
            about.push_str(def);
        }
        f.insert(
            "parameters".into(),
            json!({"type": "object", "properties": {"input": {"type": "string", "description": about}},
                   "required": ["input"], "additionalProperties": false}),
        );
    } else {
        let params = t
            .get("parameters")
            .filter(|p| p.is_object())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        f.insert("parameters".into(), params);
        if let Some(s) = t.get("strict").filter(|s| s.is_boolean()) {
            f.insert("strict".into(), s.clone());
        }
    }
    json!({"type": "function", "function": f})
}

fn tool_choice_to_chat(c: &Value) -> Value {
    match c {
        Value::String(_) => c.clone(),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function" | "custom") => {
                json!({"type": "function", "function": {"name": o.get("name").cloned().unwrap_or(Value::Null)}})
            }
            Some("allowed_tools") => o.get("mode").cloned().unwrap_or_else(|| json!("auto")),
            _ => json!("auto"),
        },
        _ => json!("auto"),
    }
}

/// A Responses content part as a chat content part.
fn part_to_chat(p: &Value, param: &str) -> Result<Option<Value>, ApiError> {
    let kind = p.get("type").and_then(Value::as_str).unwrap_or_default();
    Ok(Some(match kind {
        "input_text" | "output_text" | "text" | "summary_text" => {
            json!({"type": "text", "text": p.get("text").and_then(Value::as_str).unwrap_or_default()})
        }
        "refusal" => {
            json!({"type": "text", "text": p.get("refusal").and_then(Value::as_str).unwrap_or_default()})
        }
        "input_image" => {
            let Some(url) = p.get("image_url").and_then(Value::as_str) else {
                return Err(bad(
                    "Only images given by `image_url` (a URL or data URL) can be sent; file ids need \
                     an upstream that speaks the Responses API.",
                    param,
                ));
            };
            let mut img = json!({"url": url});
            if let Some(d) = p.get("detail").filter(|d| d.is_string()) {
                img["detail"] = d.clone();
            }
            json!({"type": "image_url", "image_url": img})
        }
        "input_file" => {
            let mut file = Map::new();
            for k in ["file_data", "file_id", "filename"] {
                if let Some(v) = p.get(k).filter(|v| v.is_string()) {
                    file.insert(k.into(), v.clone());
                }
            }
            if !file.contains_key("file_data") && !file.contains_key("file_id") {
                return Err(bad(
                    "An input file needs `file_data` or `file_id` (`file_url` needs an upstream that \
                     speaks the Responses API).",
                    param,
                ));
            }
            json!({"type": "file", "file": file})
        }
        "input_audio" => {
            json!({"type": "input_audio", "input_audio": p.get("input_audio").cloned().unwrap_or(Value::Null)})
        }
        _ => return Err(bad(format!("Unsupported content part type `{kind}`."), param)),
    }))
}

/// Text of a list of content parts (for assistant and tool-output content).
fn parts_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                let t = p
                    .get("text")
                    .or_else(|| p.get("refusal"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                out.push_str(t);
            }
            out
        }
        _ => String::new(),
    }
}

/// Appends the chat messages for `items` (input items or a previous
/// response's output items) to `out`.
fn items_to_messages(
    items: &[Value],
    param: &str,
    lenient: bool,
    out: &mut Vec<ChatMessage>,
) -> Result<(), ApiError> {
    for (i, it) in items.iter().enumerate() {
        let p = format!("{param}[{i}]");
        let kind = it.get("type").and_then(Value::as_str).unwrap_or("message");
        match kind {
            "message" => {
                let role = it.get("role").and_then(Value::as_str).unwrap_or_default();
                let content = it.get("content").cloned().unwrap_or(Value::Null);
                match role {
                    "user" | "system" | "developer" => {
                        let content = match content {
                            Value::String(s) => Value::String(s),
                            Value::Array(parts) => {
                                let mut cp = Vec::with_capacity(parts.len());
                                for (j, part) in parts.iter().enumerate() {
                                    if let Some(x) = part_to_chat(part, &format!("{p}.content[{j}]"))? {
                                        cp.push(x);
                                    }
                                }
                                Value::Array(cp)
                            }
                            _ => {
                                return Err(bad(
                                    "Message content must be a string or an array of content parts.",
                                    &format!("{p}.content"),
                                ))
                            }
                        };
                        out.push(message(role, Some(content)));
                    }
                    "assistant" => {
                        out.push(message("assistant", Some(Value::String(parts_text(&content)))));
                    }
                    _ => {
                        return Err(bad(
                            "Message role must be one of user, assistant, system, developer.",
                            &format!("{p}.role"),
                        ))
                    }
                }
            }
            "function_call" | "custom_tool_call" => {
                let call_id = it.get("call_id").and_then(Value::as_str).ok_or_else(|| {
                    bad(
                        "A function call item needs a string `call_id`.",
                        &format!("{p}.call_id"),
                    )
                })?;
                let name = it.get("name").and_then(Value::as_str).unwrap_or_default();
                let arguments = if kind == "custom_tool_call" {
                    json!({"input": it.get("input").and_then(Value::as_str).unwrap_or_default()}).to_string()
                } else {
                    match it.get("arguments") {
                        Some(Value::String(s)) => s.clone(),
                        Some(v) if v.is_object() => v.to_string(),
                        _ => "{}".to_string(),
                    }
                };
                // Gemini's thought signature rides in the call id (see `encode_tool_id`).
                let (id, sig) = decode_tool_id(call_id);
                let mut call =
                    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}});
                if let Some(sig) = sig {
                    call["extra_content"] = json!({"google": {"thought_signature": sig}});
                }
                match out.last_mut() {
                    Some(m) if m.role == "assistant" => {
                        let calls = m.extra.entry("tool_calls").or_insert_with(|| json!([]));
                        if let Some(a) = calls.as_array_mut() {
                            a.push(call);
                        }
                        if matches!(&m.content, Some(Value::String(s)) if s.is_empty()) {
                            m.content = Some(Value::Null);
                        }
                    }
                    _ => {
                        let mut m = message("assistant", Some(Value::Null));
                        m.extra.insert("tool_calls".into(), json!([call]));
                        out.push(m);
                    }
                }
            }
            "function_call_output" | "custom_tool_call_output" => {
                let call_id = it.get("call_id").and_then(Value::as_str).ok_or_else(|| {
                    bad(
                        "A function call output needs a string `call_id`.",
                        &format!("{p}.call_id"),
                    )
                })?;
                let output = parts_text(it.get("output").unwrap_or(&Value::Null));
                let mut m = message("tool", Some(Value::String(output)));
                m.extra
                    .insert("tool_call_id".into(), decode_tool_id(call_id).0.into());
                out.push(m);
            }
            // Reasoning is the model's own; a chat upstream cannot take it back.
            "reasoning" => {}
            _ if lenient => {}
            "item_reference" => {
                return Err(bad(
                    "Item references are not supported; send the item itself or use `previous_response_id`.",
                    &p,
                ))
            }
            other => {
                return Err(bad(
                    format!(
                        "Input items of type `{other}` belong to hosted tools, which need an upstream that \
                         speaks the Responses API."
                    ),
                    &format!("{p}.type"),
                )
                .with_code("hosted_tool_unsupported"))
            }
        }
    }
    Ok(())
}

/// What the answer's translation back needs to know of the request.
#[derive(Debug, Clone, Default)]
pub struct Translation {
    /// Names of custom (free-form) tools: their calls go back as `custom_tool_call`.
    pub custom: HashSet<String>,
}

/// The response object's frame: id, time, model and the echoed request fields.
#[derive(Debug, Clone)]
pub struct Shell {
    pub id: String,
    pub created_at: u64,
    pub model: String,
    pub echo: Map<String, Value>,
}

impl Shell {
    pub fn new(model: &str, echo: Map<String, Value>) -> Shell {
        Shell {
            id: new_id("resp"),
            created_at: now_secs(),
            model: model.to_string(),
            echo,
        }
    }

    /// The response object with this status, output and usage.
    pub fn object(
        &self,
        status: &str,
        output: Vec<Value>,
        usage: Option<&Usage>,
        incomplete: Option<&str>,
        error: Option<Value>,
    ) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), self.id.clone().into());
        m.insert("object".into(), "response".into());
        m.insert("created_at".into(), self.created_at.into());
        m.insert("status".into(), status.into());
        m.insert("error".into(), error.unwrap_or(Value::Null));
        m.insert(
            "incomplete_details".into(),
            incomplete.map_or(Value::Null, |r| json!({"reason": r})),
        );
        m.insert("model".into(), self.model.clone().into());
        m.insert("output".into(), Value::Array(output));
        m.insert("usage".into(), usage.map_or(Value::Null, usage_json));
        for (k, v) in &self.echo {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// A new item id such as `msg_5f0c...` (24 hex digits).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The Responses `usage` object.
pub fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

/// Normalised usage from a Responses `usage` object.
pub fn usage_from_json(u: &Value) -> Option<Usage> {
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    u.get("input_tokens")?.as_u64()?;
    Some(Usage {
        prompt_tokens: n("/input_tokens"),
        completion_tokens: n("/output_tokens"),
        cached_tokens: n("/input_tokens_details/cached_tokens"),
        cache_write_tokens: 0,
        reasoning_tokens: n("/output_tokens_details/reasoning_tokens"),
    })
}

/// Status and incomplete reason for a chat `finish_reason`.
fn status_for(finish: Option<&str>) -> (&'static str, Option<&'static str>) {
    match finish {
        Some("length") => ("incomplete", Some("max_output_tokens")),
        Some("content_filter") => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

fn message_item(id: &str, text: &str, refusal: &str, status: &str) -> Value {
    let mut content = Vec::new();
    if !text.is_empty() || refusal.is_empty() {
        content.push(json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []}));
    }
    if !refusal.is_empty() {
        content.push(json!({"type": "refusal", "refusal": refusal}));
    }
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [{"type": "summary_text", "text": text}]})
}

fn call_item(id: &str, call_id: &str, name: &str, args: &str, custom: bool, status: &str) -> Value {
    if custom {
        let input = serde_json::from_str::<Value>(args)
            .ok()
            .and_then(|v| v.get("input").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| args.to_string());
        json!({"type": "custom_tool_call", "id": id, "call_id": call_id, "name": name, "input": input, "status": status})
    } else {
        json!({"type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": args, "status": status})
    }
}

impl Translation {
    /// A complete chat-completions body as a Responses object.
    pub fn chat_body_to_response(
        &self,
        body: &[u8],
        shell: &Shell,
        usage: Option<&Usage>,
    ) -> Result<Value, ApiError> {
        let v: Value = serde_json::from_slice(body).map_err(|_| upstream_bad())?;
        let choice = v.pointer("/choices/0").ok_or_else(upstream_bad)?;
        let msg = choice.get("message").unwrap_or(&Value::Null);
        let mut output = Vec::new();
        if let Some(r) = msg
            .get("reasoning_content")
            .or_else(|| msg.get("reasoning"))
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            output.push(reasoning_item(&new_id("rs"), r));
        }
        let text = match msg.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(c @ Value::Array(_)) => parts_text(c),
            _ => String::new(),
        };
        let refusal = msg.get("refusal").and_then(Value::as_str).unwrap_or_default();
        let calls = msg.get("tool_calls").and_then(Value::as_array);
        if !text.is_empty() || !refusal.is_empty() || calls.is_none_or(|c| c.is_empty()) {
            output.push(message_item(&new_id("msg"), &text, refusal, "completed"));
        }
        for c in calls.into_iter().flatten() {
            let name = c
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let args = c
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}");
            let call_id = c
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| new_id("call"), |id| encode_tool_id(id, c.get("extra_content")));
            output.push(call_item(
                &new_id("fc"),
                &call_id,
                name,
                args,
                self.custom.contains(name),
                "completed",
            ));
        }
        let (status, incomplete) = status_for(choice.get("finish_reason").and_then(Value::as_str));
        Ok(shell.object(status, output, usage, incomplete, None))
    }
}

fn upstream_bad() -> ApiError {
    ApiError::new(
        http::StatusCode::BAD_GATEWAY,
        "upstream_error",
        "The upstream answer could not be read as a chat completion.",
    )
    .with_code("bad_upstream_response")
}

/// One Responses SSE frame: `event: <type>\ndata: <json>\n\n`.
fn frame(kind: &str, data: &Value) -> Bytes {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Serialising a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[derive(Debug)]
enum Kind {
    Message {
        text: String,
    },
    Reasoning {
        text: String,
    },
    Call {
        call_id: String,
        name: String,
        args: String,
        custom: bool,
    },
}

#[derive(Debug)]
struct Item {
    id: String,
    kind: Kind,
    closed: bool,
}

impl Item {
    fn done_json(&self) -> Value {
        match &self.kind {
            Kind::Message { text } => message_item(&self.id, text, "", "completed"),
            Kind::Reasoning { text } => reasoning_item(&self.id, text),
            Kind::Call {
                call_id,
                name,
                args,
                custom,
            } => call_item(&self.id, call_id, name, args, *custom, "completed"),
        }
    }
}

/// Turns an OpenAI chat-chunk stream (as [`SseEvent`]s) into the Responses
/// event stream: `response.created`, `response.in_progress`, per output item
/// `response.output_item.added` ... deltas ... `response.output_item.done`,
/// and `response.completed` (or `response.incomplete`) carrying the whole
/// response with its usage. An upstream error event becomes `error`
/// followed by `response.failed`.
pub struct ChunkToResponses {
    shell: Shell,
    t: Translation,
    seq: u64,
    started: bool,
    finished: bool,
    items: Vec<Item>,
    open: Option<usize>,
    /// Chat tool-call index -> item index.
    tools: Vec<(u64, usize)>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    /// The final response object, once finished.
    last: Option<Value>,
}

impl ChunkToResponses {
    pub fn new(shell: Shell, t: Translation) -> Self {
        ChunkToResponses {
            shell,
            t,
            seq: 0,
            started: false,
            finished: false,
            items: Vec::new(),
            open: None,
            tools: Vec::new(),
            finish_reason: None,
            usage: None,
            last: None,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The final response object (after `response.completed` / `incomplete` / `failed`).
    pub fn final_response(&self) -> Option<&Value> {
        self.last.as_ref()
    }

    fn emit(&mut self, kind: &str, mut data: Value, out: &mut Vec<Bytes>) {
        if let Some(o) = data.as_object_mut() {
            o.insert("type".into(), kind.into());
            o.insert("sequence_number".into(), self.seq.into());
        }
        self.seq += 1;
        out.push(frame(kind, &data));
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let r = self.shell.object("in_progress", Vec::new(), None, None, None);
        self.emit("response.created", json!({"response": r}), out);
        let r = self.shell.object("in_progress", Vec::new(), None, None, None);
        self.emit("response.in_progress", json!({"response": r}), out);
    }

    fn close_open(&mut self, out: &mut Vec<Bytes>) {
        let Some(idx) = self.open.take() else { return };
        self.close(idx, out);
    }

    fn close(&mut self, idx: usize, out: &mut Vec<Bytes>) {
        if self.items[idx].closed {
            return;
        }
        self.items[idx].closed = true;
        let id = self.items[idx].id.clone();
        let done = self.items[idx].done_json();
        match &self.items[idx].kind {
            Kind::Message { text } => {
                let text = text.clone();
                self.emit(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": idx, "content_index": 0, "text": text, "logprobs": []}),
                    out,
                );
                self.emit(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": idx, "content_index": 0,
                           "part": {"type": "output_text", "text": text, "annotations": [], "logprobs": []}}),
                    out,
                );
            }
            Kind::Reasoning { text } => {
                let text = text.clone();
                self.emit(
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id, "output_index": idx, "summary_index": 0, "text": text}),
                    out,
                );
                self.emit(
                    "response.reasoning_summary_part.done",
                    json!({"item_id": id, "output_index": idx, "summary_index": 0,
                           "part": {"type": "summary_text", "text": text}}),
                    out,
                );
            }
            Kind::Call {
                name, args, custom, ..
            } => {
                if *custom {
                    let input = done.get("input").cloned().unwrap_or(Value::Null);
                    self.emit(
                        "response.custom_tool_call_input.delta",
                        json!({"item_id": id, "output_index": idx, "delta": input}),
                        out,
                    );
                    self.emit(
                        "response.custom_tool_call_input.done",
                        json!({"item_id": id, "output_index": idx, "input": input}),
                        out,
                    );
                } else {
                    let (name, args) = (name.clone(), args.clone());
                    self.emit(
                        "response.function_call_arguments.done",
                        json!({"item_id": id, "output_index": idx, "name": name, "arguments": args}),
                        out,
                    );
                }
            }
        }
        self.emit(
            "response.output_item.done",
            json!({"output_index": idx, "item": done}),
            out,
        );
    }

    /// Opens a new item (closing the open one) and returns its index.
    fn open_item(&mut self, kind: Kind, out: &mut Vec<Bytes>) -> usize {
        self.close_open(out);
        let prefix = match &kind {
            Kind::Message { .. } => "msg",
            Kind::Reasoning { .. } => "rs",
            Kind::Call { custom: true, .. } => "ctc",
            Kind::Call { .. } => "fc",
        };
        let id = new_id(prefix);
        let idx = self.items.len();
        let added = match &kind {
            Kind::Message { .. } => {
                json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []})
            }
            Kind::Reasoning { .. } => json!({"type": "reasoning", "id": id, "summary": []}),
            Kind::Call {
                call_id,
                name,
                custom: true,
                ..
            } => {
                json!({"type": "custom_tool_call", "id": id, "call_id": call_id, "name": name, "input": "", "status": "in_progress"})
            }
            Kind::Call { call_id, name, .. } => {
                json!({"type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": "", "status": "in_progress"})
            }
        };
        let follow = match &kind {
            Kind::Message { .. } => Some((
                "response.content_part.added",
                json!({"item_id": id, "output_index": idx, "content_index": 0,
                       "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
            )),
            Kind::Reasoning { .. } => Some((
                "response.reasoning_summary_part.added",
                json!({"item_id": id, "output_index": idx, "summary_index": 0,
                       "part": {"type": "summary_text", "text": ""}}),
            )),
            Kind::Call { .. } => None,
        };
        self.items.push(Item {
            id,
            kind,
            closed: false,
        });
        self.emit(
            "response.output_item.added",
            json!({"output_index": idx, "item": added}),
            out,
        );
        if let Some((k, d)) = follow {
            self.emit(k, d, out);
        }
        self.open = Some(idx);
        idx
    }

    fn open_is(&self, f: impl Fn(&Kind) -> bool) -> Option<usize> {
        self.open.filter(|i| f(&self.items[*i].kind))
    }

    /// Handles one chat SSE event. Returns `Ok(true)` once the final event
    /// has been emitted.
    pub fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<Bytes>) -> Result<bool, ApiError> {
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
        let c: Value = serde_json::from_slice(data).map_err(|_| upstream_bad())?;
        if let Some(err) = c.get("error") {
            self.fail(err, out);
            return Ok(true);
        }
        self.start(out);
        if let Some(u) = c.get("usage").filter(|u| u.is_object()) {
            if let Ok(u) = serde_json::from_value::<super::usage::OpenAiUsage>(u.clone()) {
                self.usage = Some(Usage::from(u));
            }
        }
        let Some(choices) = c.get("choices").and_then(Value::as_array) else {
            return Ok(false);
        };
        for ch in choices
            .iter()
            .filter(|ch| ch.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
        {
            let d = ch.get("delta").unwrap_or(&Value::Null);
            if let Some(r) = d
                .get("reasoning_content")
                .or_else(|| d.get("reasoning"))
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
            {
                let idx = match self.open_is(|k| matches!(k, Kind::Reasoning { .. })) {
                    Some(i) => i,
                    None => self.open_item(Kind::Reasoning { text: String::new() }, out),
                };
                if let Kind::Reasoning { text } = &mut self.items[idx].kind {
                    text.push_str(r);
                }
                let id = self.items[idx].id.clone();
                self.emit(
                    "response.reasoning_summary_text.delta",
                    json!({"item_id": id, "output_index": idx, "summary_index": 0, "delta": r}),
                    out,
                );
            }
            if let Some(t) = d.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                let idx = match self.open_is(|k| matches!(k, Kind::Message { .. })) {
                    Some(i) => i,
                    None => self.open_item(Kind::Message { text: String::new() }, out),
                };
                if let Kind::Message { text } = &mut self.items[idx].kind {
                    text.push_str(t);
                }
                let id = self.items[idx].id.clone();
                self.emit(
                    "response.output_text.delta",
                    json!({"item_id": id, "output_index": idx, "content_index": 0, "delta": t, "logprobs": []}),
                    out,
                );
            }
            for tc in d
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let index = tc.get("index").and_then(Value::as_u64).unwrap_or(0);
                let args = tc
                    .pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let idx = match self.tools.iter().find(|(o, _)| *o == index) {
                    Some((_, i)) => *i,
                    None => {
                        let name = tc
                            .pointer("/function/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string();
                        let call_id = tc.get("id").and_then(Value::as_str).map_or_else(
                            || new_id("call"),
                            |id| encode_tool_id(id, tc.get("extra_content")),
                        );
                        let custom = self.t.custom.contains(&name);
                        let i = self.open_item(
                            Kind::Call {
                                call_id,
                                name,
                                args: String::new(),
                                custom,
                            },
                            out,
                        );
                        self.tools.push((index, i));
                        i
                    }
                };
                if args.is_empty() {
                    continue;
                }
                let mut custom = false;
                if let Kind::Call {
                    args: a, custom: c, ..
                } = &mut self.items[idx].kind
                {
                    a.push_str(args);
                    custom = *c;
                }
                if !custom {
                    let id = self.items[idx].id.clone();
                    self.emit(
                        "response.function_call_arguments.delta",
                        json!({"item_id": id, "output_index": idx, "delta": args}),
                        out,
                    );
                }
            }
            if let Some(f) = ch.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(f.to_string());
            }
        }
        Ok(false)
    }

    /// Closes every item and emits `response.completed` (or
    /// `response.incomplete`). Call it when the upstream ends without
    /// `[DONE]`. Idempotent.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        self.start(out);
        self.close_open(out);
        for i in 0..self.items.len() {
            self.close(i, out);
        }
        let output: Vec<Value> = self.items.iter().map(Item::done_json).collect();
        let (status, incomplete) = status_for(self.finish_reason.as_deref());
        let r = self
            .shell
            .object(status, output, self.usage.as_ref(), incomplete, None);
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(kind, json!({"response": r.clone()}), out);
        self.last = Some(r);
        self.finished = true;
    }

    /// An upstream error mid-stream: `error`, then `response.failed`.
    fn fail(&mut self, err: &Value, out: &mut Vec<Bytes>) {
        self.start(out);
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("upstream error")
            .to_string();
        let code = err
            .get("code")
            .filter(|c| c.is_string())
            .cloned()
            .unwrap_or_else(|| json!("server_error"));
        self.emit(
            "error",
            json!({"code": code, "message": message, "param": err.get("param").cloned().unwrap_or(Value::Null)}),
            out,
        );
        let output: Vec<Value> = self.items.iter().map(Item::done_json).collect();
        let r = self.shell.object(
            "failed",
            output,
            self.usage.as_ref(),
            None,
            Some(json!({"code": code, "message": message})),
        );
        self.emit("response.failed", json!({"response": r.clone()}), out);
        self.last = Some(r);
        self.finished = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::sse::SseSplitter;

    fn parse(v: Value) -> ResponsesRequest {
        ResponsesRequest::parse(v.to_string().as_bytes()).expect("parse")
    }

    #[test]
    fn string_input_and_instructions_become_system_and_user() {
        let r = parse(
            json!({"model": "m", "input": "hi", "instructions": "be brief", "max_output_tokens": 50,
                             "reasoning": {"effort": "low"}, "prompt_cache_key": "k"}),
        );
        let (c, _) = r.to_chat(&[], false).expect("chat");
        assert_eq!(c.messages.len(), 2);
        assert_eq!(c.messages[0].role, "system");
        assert_eq!(c.messages[1].text(), "hi");
        assert_eq!(c.extra["max_completion_tokens"], 50);
        assert_eq!(c.extra["reasoning_effort"], "low");
        assert_eq!(c.extra["prompt_cache_key"], "k");
    }

    #[test]
    fn function_calls_and_outputs_become_tool_messages() {
        let r = parse(
            json!({"model": "m", "tools": [{"type": "function", "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "input": [
                {"role": "developer", "content": "use tools"},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "{\"city\":\"Rome\"}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]}
            ]}),
        );
        let (c, _) = r.to_chat(&[], false).expect("chat");
        let roles: Vec<&str> = c.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["developer", "user", "assistant", "tool", "tool"]);
        assert_eq!(
            c.messages[2].extra["tool_calls"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(c.messages[4].extra["tool_call_id"], "c2");
        assert_eq!(c.messages[4].text(), "rain");
        assert_eq!(c.extra["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(c.extra["tool_choice"]["function"]["name"], "get_weather");
    }

    #[test]
    fn hosted_tools_are_refused_with_a_clear_400() {
        let r = parse(json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}));
        let e = r.to_chat(&[], false).expect_err("hosted");
        assert_eq!(e.status, 400);
        assert_eq!(e.code.as_deref(), Some("hosted_tool_unsupported"));
        assert!(e.message.contains("web_search"));
    }

    #[test]
    fn bad_input_names_the_param() {
        for (body, param) in [
            (json!({"input": "x"}), "model"),
            (json!({"model": "m"}), "input"),
            (json!({"model": "m", "input": 5}), "input"),
            (
                json!({"model": "m", "input": "x", "max_output_tokens": -1}),
                "max_output_tokens",
            ),
            (
                json!({"model": "m", "input": [{"role": "wizard", "content": "x"}]}),
                "input[0].role",
            ),
            (
                json!({"model": "m", "input": "x", "background": true}),
                "background",
            ),
        ] {
            let e = ResponsesRequest::parse(body.to_string().as_bytes())
                .and_then(|r| r.to_chat(&[], false).map(|_| ()))
                .expect_err("bad");
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn chat_body_translates_text_and_calls() {
        let r = parse(json!({"model": "m", "input": "x"}));
        let (_, t) = r.to_chat(&[], false).expect("chat");
        let shell = Shell::new("m", r.echo());
        let body = json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
            "content": "let me check", "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "f", "arguments": "{}"}}]}}]});
        let u = Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            ..Default::default()
        };
        let out = t
            .chat_body_to_response(body.to_string().as_bytes(), &shell, Some(&u))
            .expect("resp");
        assert_eq!(out["status"], "completed");
        assert_eq!(out["output"][0]["content"][0]["text"], "let me check");
        assert_eq!(out["output"][1]["type"], "function_call");
        assert_eq!(out["output"][1]["call_id"], "call_1");
        assert_eq!(out["usage"]["input_tokens"], 10);
        assert_eq!(out["usage"]["total_tokens"], 15);
    }

    fn run_stream(chunks: &[Value], custom: &[&str]) -> (Vec<Value>, Value) {
        let t = Translation {
            custom: custom.iter().map(|s| s.to_string()).collect(),
        };
        let mut s = ChunkToResponses::new(Shell::new("m", Map::new()), t);
        let mut raw = String::new();
        for c in chunks {
            raw.push_str(&format!("data: {c}\n\n"));
        }
        raw.push_str("data: [DONE]\n\n");
        let mut sp = SseSplitter::new();
        sp.push(raw.as_bytes());
        let mut out = Vec::new();
        while let Some(ev) = sp.next_event() {
            s.on_event(&ev, &mut out).expect("event");
        }
        let events: Vec<Value> = out
            .iter()
            .map(|b| {
                let s = std::str::from_utf8(b).expect("utf8");
                let data = s.lines().find_map(|l| l.strip_prefix("data: ")).expect("data");
                serde_json::from_str(data).expect("json")
            })
            .collect();
        (events, s.final_response().cloned().expect("final"))
    }

    #[test]
    fn stream_of_text_and_tool_call() {
        let (events, fin) = run_stream(
            &[
                json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "He"}}]}),
                json!({"choices": [{"index": 0, "delta": {"content": "llo"}}]}),
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_9",
                    "function": {"name": "f", "arguments": "{\"a\""}}]}}]}),
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}}]}),
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
                json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}),
            ],
            &[],
        );
        let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(
            types,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["sequence_number"], i as u64);
        }
        assert_eq!(fin["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(fin["output"][1]["arguments"], "{\"a\":1}");
        assert_eq!(fin["usage"]["output_tokens"], 4);
    }

    #[test]
    fn custom_tool_round_trip() {
        let r = parse(
            json!({"model": "m", "tools": [{"type": "custom", "name": "apply_patch"}], "input": [
            {"role": "user", "content": "patch it"},
            {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "c1", "output": "done"}]}),
        );
        let (c, t) = r.to_chat(&[], false).expect("chat");
        assert_eq!(
            c.messages[1].extra["tool_calls"][0]["function"]["arguments"],
            json!({"input": "*** Begin Patch"}).to_string()
        );
        let (_, fin) = run_stream(
            &[
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c2",
                "function": {"name": "apply_patch", "arguments": "{\"input\":\"x\"}"}}]}, "finish_reason": "tool_calls"}]}),
            ],
            &["apply_patch"],
        );
        assert!(t.custom.contains("apply_patch"));
        assert_eq!(fin["output"][0]["type"], "custom_tool_call");
        assert_eq!(fin["output"][0]["input"], "x");
    }

    #[test]
    fn gemini_thought_signatures_survive_a_round_trip() {
        let r = parse(json!({"model": "m", "input": "x"}));
        let (_, t) = r.to_chat(&[], false).expect("chat");
        let body = json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
            "content": null, "tool_calls": [{"id": "call_g", "type": "function", "extra_content":
            {"google": {"thought_signature": "c2ln"}}, "function": {"name": "f", "arguments": "{}"}}]}}]});
        let out = t
            .chat_body_to_response(body.to_string().as_bytes(), &Shell::new("m", Map::new()), None)
            .expect("resp");
        let call = out["output"][0].clone();
        assert_ne!(call["call_id"], "call_g", "the signature rides in the id");
        let next = parse(json!({"model": "m", "input": [
            {"role": "user", "content": "x"}, call.clone(),
            {"type": "function_call_output", "call_id": call["call_id"], "output": "ok"}]}));
        let (c, _) = next.to_chat(&[], false).expect("chat");
        assert_eq!(c.messages[1].extra["tool_calls"][0]["id"], "call_g");
        assert_eq!(
            c.messages[1].extra["tool_calls"][0]["extra_content"]["google"]["thought_signature"],
            "c2ln"
        );
        assert_eq!(c.messages[2].extra["tool_call_id"], "call_g");
    }

    #[test]
    fn length_finish_is_incomplete() {
        let (events, fin) = run_stream(
            &[json!({"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": "length"}]})],
            &[],
        );
        assert_eq!(
            events.last().map(|e| e["type"].clone()),
            Some(json!("response.incomplete"))
        );
        assert_eq!(fin["incomplete_details"]["reason"], "max_output_tokens");
    }

    #[test]
    fn history_is_prepended() {
        let r = parse(json!({"model": "m", "input": "and now?", "previous_response_id": "resp_1"}));
        let history = vec![
            json!({"type": "message", "role": "user", "content": "first"}),
            json!({"type": "message", "role": "assistant", "id": "msg_1", "content": [{"type": "output_text", "text": "ok"}]}),
        ];
        let (c, _) = r.to_chat(&history, false).expect("chat");
        let texts: Vec<String> = c.messages.iter().map(|m| m.text()).collect();
        assert_eq!(texts, ["first", "ok", "and now?"]);
    }
}
