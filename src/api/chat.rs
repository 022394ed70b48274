//! OpenAI chat-completions and embeddings request types.
//!
//! Lenient by design: the gateway types only the fields it acts on and keeps
//! every other field in `extra`, so tools, response_format, logprobs, seed,
//! reasoning_effort and whatever OpenAI adds next pass through untouched.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::ApiError;

/// A chat-completions request.
///
/// Deserialised by hand (see [`object_visitor!`]) rather than with
/// `#[serde(flatten)]`: flatten buffers every value of the body into serde's
/// private `Content` tree before building the `Value`s, which doubled the
/// memory a large body costs.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One chat message. Roles are an open set (`system`, `developer`, `user`,
/// `assistant`, `tool`, `function`, and future ones).
#[derive(Debug, Clone, Serialize)]
pub struct ChatMessage {
    pub role: String,
    /// A string, an array of content parts, or null. `None` means absent;
    /// an explicit null is kept as `Some(Value::Null)` so it passes through.
    #[serde(skip_serializing_if = "Option::is_none")]
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
#[derive(Debug, Clone, Serialize)]
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

/// A `Deserialize` impl for a struct with typed fields and an `extra` map
/// of everything else, reading the JSON object in one pass (no `flatten`
/// buffering). `req` fields must be present; `opt` fields are `Option`s
/// (null = absent); `present` fields keep an explicit null as `Some(Null)`.
macro_rules! object_visitor {
    ($ty:ident, $what:literal, req { $($r:ident),* }, opt { $($o:ident),* }, present { $($p:ident),* }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<$ty, A::Error> {
                        $(let mut $r = None;)*
                        $(let mut $o = None;)*
                        $(let mut $p: Option<Value> = None;)*
                        let mut extra = Map::new();
                        while let Some(key) = map.next_key::<String>()? {
                            match key.as_str() {
                                $(stringify!($r) => {
                                    if $r.is_some() {
                                        return Err(serde::de::Error::duplicate_field(stringify!($r)));
                                    }
                                    $r = Some(map.next_value()?);
                                })*
                                $(stringify!($o) => {
                                    if $o.is_some() {
                                        return Err(serde::de::Error::duplicate_field(stringify!($o)));
                                    }
                                    $o = Some(map.next_value()?);
                                })*
                                $(stringify!($p) => {
                                    if $p.is_some() {
                                        return Err(serde::de::Error::duplicate_field(stringify!($p)));
                                    }
                                    $p = Some(map.next_value()?);
                                })*
                                _ => {
                                    let v: Value = map.next_value()?;
                                    extra.insert(key, v);
                                }
                            }
                        }
                        Ok($ty {
                            $($r: $r.ok_or_else(|| serde::de::Error::missing_field(stringify!($r)))?,)*
                            $($o: $o.flatten(),)*
                            $($p,)*
                            extra,
                        })
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

object_visitor!(
    ChatRequest,
    "a chat completions request object",
    req { model, messages },
    opt {
        stream,
        stream_options
    },
    present {}
);
object_visitor!(
    StreamOptions,
    "a stream_options object",
    req {},
    opt { include_usage },
    present {}
);
object_visitor!(
    ChatMessage,
    "a message object",
    req { role },
    opt {},
    present { content }
);
object_visitor!(
    EmbeddingsRequest,
    "an embeddings request object",
    req { model, input },
    opt {},
    present {}
);

/// Most JSON values (array elements, object members) one request body may
/// hold. Parsed, each costs ~100 bytes however small its text (`1,` is two
/// bytes): this bounds what a body can cost in memory to roughly its size
/// plus 25 MB, where a 4 MB array of small numbers used to cost 200 MB.
pub const MAX_JSON_VALUES: usize = 250_000;

/// Counts the JSON values in `body` from its structure, in one pass without
/// allocation: the top-level value, each object member's value (`:`), each
/// array element (the first, and one per `,` inside an array). Exact for
/// valid JSON but for empty arrays (one too many each); strings are skipped.
pub fn json_value_count(body: &[u8]) -> usize {
    let mut n = 1usize;
    // Whether each open container (up to 128 deep, serde_json's own limit) is an array.
    let mut arrays: u128 = 0;
    let mut depth = 0u32;
    let mut i = 0usize;
    while i < body.len() {
        match body[i] {
            b'"' => {
                // Skip the string: to the next unescaped quote.
                i += 1;
                loop {
                    match body.get(i..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) {
                        Some(off) if body[i + off] == b'\\' => i += off + 2,
                        Some(off) => {
                            i += off;
                            break;
                        }
                        // Unterminated: nothing after it is structure.
                        None => return n,
                    }
                }
            }
            b'[' => {
                // Its first element.
                n += 1;
                if depth < 128 {
                    arrays |= 1 << depth;
                }
                depth += 1;
            }
            b'{' => {
                if depth < 128 {
                    arrays &= !(1 << depth);
                }
                depth += 1;
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b':' => n += 1,
            b',' if depth > 0 && (depth > 128 || arrays & (1 << (depth - 1)) != 0) => n += 1,
            _ => {}
        }
        i += 1;
    }
    n
}

/// Deserialises JSON, turning serde's error into an OpenAI 400 naming `param`.
/// Bodies with more than [`MAX_JSON_VALUES`] values are refused with a 413.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_request(
            "The request body is empty; expected a JSON object.",
            None,
        ));
    }
    if json_value_count(body) > MAX_JSON_VALUES {
        return Err(ApiError::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("The request body holds more than {MAX_JSON_VALUES} JSON values."),
        )
        .with_code("too_many_json_values"));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    // Plain first: tracking the path costs on every value, and is only
    // needed to name the offending field of a body that fails (parsed again).
    let result: Result<T, _> = match T::deserialize(&mut de) {
        Ok(v) => Ok(v),
        Err(_) => {
            de = serde_json::Deserializer::from_slice(body);
            serde_path_to_error::deserialize(&mut de)
        }
    };
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
    fn value_count_is_an_upper_bound_that_skips_strings() {
        assert_eq!(json_value_count(br#"{"a":[1,2,3]}"#), 5);
        assert_eq!(
            json_value_count(br#"[{"type":"text","text":"w"},{"type":"text","text":"w"}]"#),
            7
        );
        assert_eq!(json_value_count(br#"{"a":"x,y:[{\"z,"}"#), 2);
        assert_eq!(json_value_count(br#""unterminated, [ {"#), 1);
        let big = format!("[{}1]", "1,".repeat(MAX_JSON_VALUES));
        assert_eq!(json_value_count(big.as_bytes()), MAX_JSON_VALUES + 2);
        let e = ChatRequest::parse(big.as_bytes()).expect_err("refused");
        assert_eq!(e.status, http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn duplicate_and_null_fields() {
        let e = ChatRequest::parse(br#"{"model":"a","model":"b","messages":[{"role":"user"}]}"#)
            .expect_err("duplicate");
        assert_eq!(e.param.as_deref(), None, "{e}");
        let r =
            ChatRequest::parse(br#"{"model":"a","stream":null,"messages":[{"role":"user","content":null}]}"#)
                .expect("parse");
        assert_eq!(
            (r.stream, r.messages[0].content.clone()),
            (None, Some(Value::Null))
        );
        assert!(
            ChatRequest::parse(br#"{"model":"a","messages":[{"role":"user"}],"stream_options":null}"#)
                .expect("parse")
                .stream_options
                .is_none()
        );
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
