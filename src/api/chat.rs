//! OpenAI chat-completions and embeddings request types.
//!
//! Lenient by design: the gateway types only the fields it acts on and keeps
//! every other field in `extra`, so tools, response_format, logprobs, seed,
//! reasoning_effort and whatever OpenAI adds next pass through untouched.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::ApiError;

/// A chat-completions request.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Every field the gateway does not act on, passed through as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One chat message. Roles are an open set (`system`, `developer`, `user`,
/// `assistant`, `tool`, `function`, and future ones).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChatMessage {
    pub role: String,
    /// A string, an array of content parts, or null. `None` means absent;
    /// an explicit null is kept as `Some(Value::Null)` so it passes through.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub content: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatMessage {
    /// The message's text: the string content, or its text parts joined by "\n".
    pub fn text(&self) -> String {
        match &self.content {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                let mut out = String::new();
                for p in parts {
                    if let Some(t) = p.get("text").and_then(Value::as_str) {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(t);
                    }
                }
                out
            }
            _ => String::new(),
        }
    }
}

impl ChatRequest {
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the client asked for the usage chunk on a stream.
    pub fn client_wants_stream_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// Parses and validates a request body. Errors name the offending `param`.
    pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
        let req: ChatRequest = parse_json(body)?;
        req.validate()?;
        Ok(req)
    }

    fn validate(&self) -> Result<(), ApiError> {
        if self.model.is_empty() {
            return Err(ApiError::invalid_request(
                "`model` must not be empty.",
                Some("model".into()),
            ));
        }
        if self.messages.is_empty() {
            return Err(ApiError::invalid_request(
                "`messages` must contain at least one message.",
                Some("messages".into()),
            ));
        }
        for (i, m) in self.messages.iter().enumerate() {
            if m.role.is_empty() {
                return Err(ApiError::invalid_request(
                    "Message role must not be empty.",
                    Some(format!("messages[{i}].role")),
                ));
            }
            match &m.content {
                None | Some(Value::String(_)) | Some(Value::Null) => {}
                Some(Value::Array(parts)) => {
                    for (j, p) in parts.iter().enumerate() {
                        if !p.is_object() || p.get("type").and_then(Value::as_str).is_none() {
                            return Err(ApiError::invalid_request(
                                "Each content part must be an object with a string `type`.",
                                Some(format!("messages[{i}].content[{j}]")),
                            ));
                        }
                    }
                }
                Some(_) => {
                    return Err(ApiError::invalid_request(
                        "Message content must be a string, an array of content parts, or null.",
                        Some(format!("messages[{i}].content")),
                    ))
                }
            }
        }
        for key in ["max_tokens", "max_completion_tokens", "n"] {
            if let Some(v) = self.extra.get(key) {
                if !v.is_null() && v.as_u64().is_none() {
                    return Err(ApiError::invalid_request(
                        format!("`{key}` must be a non-negative integer."),
                        Some(key.into()),
                    ));
                }
            }
        }
        for key in ["temperature", "top_p", "presence_penalty", "frequency_penalty"] {
            if let Some(v) = self.extra.get(key) {
                if !v.is_null() && !v.is_number() {
                    return Err(ApiError::invalid_request(
                        format!("`{key}` must be a number."),
                        Some(key.into()),
                    ));
                }
            }
        }
        if let Some(t) = self.extra.get("tools") {
            if !t.is_null() && !t.is_array() {
                return Err(ApiError::invalid_request(
                    "`tools` must be an array.",
                    Some("tools".into()),
                ));
            }
        }
        Ok(())
    }
}

/// An embeddings request.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl EmbeddingsRequest {
    pub fn parse(body: &[u8]) -> Result<EmbeddingsRequest, ApiError> {
        let req: EmbeddingsRequest = parse_json(body)?;
        if req.model.is_empty() {
            return Err(ApiError::invalid_request(
                "`model` must not be empty.",
                Some("model".into()),
            ));
        }
        let ok = match &req.input {
            Value::String(_) => true,
            Value::Array(items) if !items.is_empty() => {
                items.iter().all(Value::is_string)
                    || items.iter().all(Value::is_u64)
                    || items.iter().all(|i| {
                        i.as_array()
                            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_u64))
                    })
            }
            _ => false,
        };
        if !ok {
            return Err(ApiError::invalid_request(
                "`input` must be a string, a non-empty array of strings, or token arrays.",
                Some("input".into()),
            ));
        }
        Ok(req)
    }

    /// The input texts (token-array inputs yield none).
    pub fn texts(&self) -> Vec<&str> {
        match &self.input {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// Number of embedding vectors the request asks for.
    pub fn input_count(&self) -> usize {
        match &self.input {
            Value::Array(items) if items.iter().all(Value::is_u64) => 1,
            Value::Array(items) => items.len(),
            _ => 1,
        }
    }
}

/// Maps a present field (null included) to `Some`; absence stays `None` via `default`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Deserialises JSON, turning serde's error into an OpenAI 400 naming `param`.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_request(
            "The request body is empty; expected a JSON object.",
            None,
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match result {
        Ok(v) => v,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::invalid_request(
                    format!("The request body is not valid JSON: {inner}."),
                    None,
                ));
            }
            let msg = strip_position(&inner.to_string());
            // "missing field `x`" is reported at the parent; name the field itself.
            let param = match msg
                .strip_prefix("missing field `")
                .and_then(|m| m.strip_suffix('`'))
            {
                Some(field) if path == "." => field.to_string(),
                Some(field) => format!("{path}.{field}"),
                None if path == "." => String::new(),
                None => path,
            };
            let param = (!param.is_empty()).then_some(param);
            let message = match &param {
                Some(p) => format!("Invalid value for '{p}': {msg}."),
                None => format!("Invalid request body: {msg}."),
            };
            return Err(ApiError::invalid_request(message, param));
        }
    };
    de.end()
        .map_err(|e| ApiError::invalid_request(format!("The request body is not valid JSON: {e}."), None))?;
    Ok(value)
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_of(body: &str) -> Option<String> {
        ChatRequest::parse(body.as_bytes())
            .expect_err("should fail")
            .param
    }

    #[test]
    fn unknown_fields_round_trip() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi","name":"bob"},
            {"role":"assistant","content":null,"tool_calls":[]},{"role":"user"}],
            "seed":7,"tools":[{"type":"function","function":{"name":"f"}}],"reasoning_effort":"low",
            "stream_options":{"include_usage":true,"future":1}}"#;
        let req = ChatRequest::parse(body.as_bytes()).expect("parse");
        let out: Value = serde_json::to_value(&req).expect("ser");
        let inp: Value = serde_json::from_str(body).expect("json");
        assert_eq!(out, inp);
    }

    #[test]
    fn params_named() {
        assert_eq!(
            param_of(r#"{"messages":[{"role":"user","content":"x"}]}"#).as_deref(),
            Some("model")
        );
        assert_eq!(param_of(r#"{"model":"m"}"#).as_deref(), Some("messages"));
        assert_eq!(
            param_of(r#"{"model":"m","messages":[]}"#).as_deref(),
            Some("messages")
        );
        assert_eq!(param_of(r#"{"model":5,"messages":[]}"#).as_deref(), Some("model"));
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":1}]}"#).as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"content":"x"}]}"#).as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":"user","content":5}]}"#).as_deref(),
            Some("messages[0].content")
        );
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#).as_deref(),
            Some("stream")
        );
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-1}"#)
                .as_deref(),
            Some("max_tokens")
        );
        assert_eq!(param_of(r#"{"model":"m","messages":"#), None);
        assert_eq!(param_of("[1,2]"), None);
    }

    #[test]
    fn embeddings_input_validation() {
        assert!(EmbeddingsRequest::parse(br#"{"model":"e","input":"hello"}"#).is_ok());
        assert!(EmbeddingsRequest::parse(br#"{"model":"e","input":["a","b"]}"#).is_ok());
        assert!(EmbeddingsRequest::parse(br#"{"model":"e","input":[[1,2],[3]]}"#).is_ok());
        for bad in [
            r#"{"model":"e","input":[]}"#,
            r#"{"model":"e","input":5}"#,
            r#"{"model":"e"}"#,
        ] {
            let e = EmbeddingsRequest::parse(bad.as_bytes()).expect_err(bad);
            assert_eq!(e.param.as_deref(), Some("input"), "{bad}");
        }
    }
}
