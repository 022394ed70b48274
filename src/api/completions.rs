//! The legacy completions API (`POST /v1/completions`) on top of chat.
//!
//! The prompt becomes one user message; the chat answer goes back as a
//! `text_completion` (streamed: `text_completion` chunks, then `[DONE]`).
//! OpenAI's legacy default of 16 output tokens applies when `max_tokens` is
//! absent. What has no chat equivalent (`suffix`, `best_of` above 1,
//! `logprobs`, several prompts, token-id prompts) is refused with a 400.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::chat::{parse_json, ChatMessage, ChatRequest, StreamOptions};
use super::error::ApiError;

/// OpenAI's default `max_tokens` for the legacy endpoint.
pub const DEFAULT_MAX_TOKENS: u64 = 16;

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::invalid_request(message, Some(param.to_string()))
}

/// A parsed completions request, as chat.
pub struct CompletionRequest {
    pub chat: ChatRequest,
    /// `echo`: the prompt, to put in front of the answer.
    pub echo: Option<String>,
}

impl CompletionRequest {
    pub fn parse(bytes: &[u8]) -> Result<CompletionRequest, ApiError> {
        let v: Value = parse_json(bytes)?;
        let Value::Object(mut body) = v else {
            return Err(ApiError::invalid_request(
                "The request body must be a JSON object.",
                None,
            ));
        };
        let model = match body.remove("model") {
            Some(Value::String(m)) if !m.is_empty() => m,
            Some(Value::String(_)) => return Err(bad("`model` must not be empty.", "model")),
            None => return Err(bad("Missing required parameter: 'model'.", "model")),
            Some(_) => return Err(bad("`model` must be a string.", "model")),
        };
        let prompt = match body.remove("prompt") {
            Some(Value::String(s)) => s,
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                a[0].as_str().unwrap_or_default().to_string()
            }
            Some(Value::Array(a)) if a.iter().all(Value::is_string) && !a.is_empty() => {
                return Err(bad(
                    "Only one prompt per request is supported; send one request per prompt.",
                    "prompt",
                ))
            }
            None => return Err(bad("Missing required parameter: 'prompt'.", "prompt")),
            Some(_) => {
                return Err(bad(
                    "`prompt` must be a string (token-id prompts are not supported).",
                    "prompt",
                ))
            }
        };
        for key in ["suffix", "logprobs"] {
            if body.get(key).is_some_and(|v| !v.is_null()) {
                return Err(bad(format!("`{key}` is not supported by this gateway."), key)
                    .with_code("unsupported_parameter"));
            }
        }
        if body.get("best_of").and_then(Value::as_u64).is_some_and(|n| n > 1) {
            return Err(
                bad("`best_of` above 1 is not supported by this gateway.", "best_of")
                    .with_code("unsupported_parameter"),
            );
        }
        let echo = match body.remove("echo") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(prompt.clone()),
            Some(_) => return Err(bad("`echo` must be a boolean.", "echo")),
        };
        let stream = match body.remove("stream") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(b),
            Some(_) => return Err(bad("`stream` must be a boolean.", "stream")),
        };
        let stream_options = match body.remove("stream_options") {
            Some(v @ Value::Object(_)) => serde_json::from_value::<StreamOptions>(v).ok(),
            _ => None,
        };
        let mut extra = Map::new();
        for key in [
            "max_tokens",
            "temperature",
            "top_p",
            "n",
            "stop",
            "presence_penalty",
            "frequency_penalty",
            "logit_bias",
            "user",
            "seed",
            "service_tier",
        ] {
            if let Some(v) = body.remove(key).filter(|v| !v.is_null()) {
                extra.insert(key.into(), v);
            }
        }
        extra
            .entry("max_tokens")
            .or_insert_with(|| DEFAULT_MAX_TOKENS.into());
        let chat = ChatRequest {
            model,
            messages: vec![ChatMessage {
                role: "user".into(),
                content: Some(Value::String(prompt)),
                extra: Map::new(),
            }],
            stream,
            stream_options,
            extra,
        };
        // The chat request's own checks (types of max_tokens, n, temperature...).
        let bytes = serde_json::to_vec(&chat).map_err(|e| ApiError::internal(e.to_string()))?;
        let chat = ChatRequest::parse(&bytes)?;
        Ok(CompletionRequest { chat, echo })
    }
}

fn cmpl_id(chat_id: Option<&str>) -> String {
    match chat_id.and_then(|i| i.strip_prefix("chatcmpl-")).or(chat_id) {
        Some(rest) if !rest.is_empty() => format!("cmpl-{rest}"),
        _ => format!("cmpl-{:016x}", fastrand::u64(..)),
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

/// A complete chat body as a `text_completion`.
pub fn chat_body_to_completion(body: &[u8], model: &str, echo: Option<&str>) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| upstream_bad())?;
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .ok_or_else(upstream_bad)?;
    let out: Vec<Value> = choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut text = echo.unwrap_or_default().to_string();
            text.push_str(
                c.pointer("/message/content")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            );
            json!({
                "text": text,
                "index": c.get("index").and_then(Value::as_u64).unwrap_or(i as u64),
                "logprobs": null,
                "finish_reason": c.get("finish_reason").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    let mut r = json!({
        "id": cmpl_id(v.get("id").and_then(Value::as_str)),
        "object": "text_completion",
        "created": v.get("created").cloned().unwrap_or(json!(0)),
        "model": model,
        "choices": out,
    });
    if let Some(u) = v.get("usage") {
        r["usage"] = u.clone();
    }
    if let Some(f) = v.get("system_fingerprint") {
        r["system_fingerprint"] = f.clone();
    }
    Ok(r)
}

/// One chat chunk (an SSE `data` payload) as a `text_completion` chunk
/// frame; `None` for chunks with nothing to say (a role-only delta).
/// `[DONE]` and error events pass as they are.
pub fn chunk_to_completion(data: &[u8], model: &str, echo: &mut Option<String>) -> Option<Bytes> {
    if data.trim_ascii() == b"[DONE]" {
        return Some(Bytes::from_static(b"data: [DONE]\n\n"));
    }
    let v: Value = serde_json::from_slice(data).ok()?;
    if v.get("error").is_some() {
        let mut out = b"data: ".to_vec();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\n\n");
        return Some(Bytes::from(out));
    }
    let choices = v.get("choices").and_then(Value::as_array);
    let mut out_choices = Vec::new();
    for c in choices.into_iter().flatten() {
        let delta = c
            .pointer("/delta/content")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let finish = c.get("finish_reason").cloned().unwrap_or(Value::Null);
        if delta.is_empty() && finish.is_null() && echo.is_none() {
            continue;
        }
        let mut text = echo.take().unwrap_or_default();
        text.push_str(delta);
        out_choices.push(json!({
            "text": text,
            "index": c.get("index").and_then(Value::as_u64).unwrap_or(0),
            "logprobs": null,
            "finish_reason": finish,
        }));
    }
    let usage = v.get("usage").filter(|u| u.is_object());
    if out_choices.is_empty() && usage.is_none() {
        return None;
    }
    let mut chunk = json!({
        "id": cmpl_id(v.get("id").and_then(Value::as_str)),
        "object": "text_completion",
        "created": v.get("created").cloned().unwrap_or(json!(0)),
        "model": model,
        "choices": out_choices,
    });
    if let Some(u) = usage {
        chunk["usage"] = u.clone();
    }
    let mut out = b"data: ".to_vec();
    // Serialising a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &chunk);
    out.extend_from_slice(b"\n\n");
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_becomes_a_user_message_with_the_legacy_default_max_tokens() {
        let r =
            CompletionRequest::parse(br#"{"model":"m","prompt":"Say hi","temperature":0}"#).expect("parse");
        assert_eq!(r.chat.messages[0].role, "user");
        assert_eq!(r.chat.messages[0].text(), "Say hi");
        assert_eq!(r.chat.extra["max_tokens"], 16);
        assert_eq!(r.chat.extra["temperature"], 0);
    }

    #[test]
    fn unsupported_shapes_are_400_naming_the_param() {
        for (body, param) in [
            (r#"{"prompt":"x"}"#, "model"),
            (r#"{"model":"m"}"#, "prompt"),
            (r#"{"model":"m","prompt":[1,2,3]}"#, "prompt"),
            (r#"{"model":"m","prompt":["a","b"]}"#, "prompt"),
            (r#"{"model":"m","prompt":"x","suffix":"y"}"#, "suffix"),
            (r#"{"model":"m","prompt":"x","best_of":3}"#, "best_of"),
            (r#"{"model":"m","prompt":"x","max_tokens":"many"}"#, "max_tokens"),
        ] {
            let e = CompletionRequest::parse(body.as_bytes()).err().expect(body);
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn chat_answer_becomes_text_completion() {
        let body = br#"{"id":"chatcmpl-abc","created":5,"choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
        let v = chat_body_to_completion(body, "m", Some("Say: ")).expect("ok");
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["id"], "cmpl-abc");
        assert_eq!(v["choices"][0]["text"], "Say: hello");
        assert_eq!(v["usage"]["total_tokens"], 4);
    }

    #[test]
    fn chunks_translate() {
        let mut echo = None;
        assert!(chunk_to_completion(
            br#"{"id":"x","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            "m",
            &mut echo
        )
        .is_none());
        let b = chunk_to_completion(
            br#"{"id":"x","choices":[{"index":0,"delta":{"content":"hi"}}]}"#,
            "m",
            &mut echo,
        )
        .expect("chunk");
        let s = std::str::from_utf8(&b).expect("utf8");
        assert!(
            s.starts_with("data: {") && s.contains(r#""text":"hi""#) && s.contains("text_completion"),
            "{s}"
        );
        assert_eq!(
            chunk_to_completion(b"[DONE]", "m", &mut echo).as_deref(),
            Some(&b"data: [DONE]\n\n"[..])
        );
    }
}
