//! Task routing: the offline task classifier, the tier predictor, the
//! routing policy, and the routing benchmark (`eval-routing`).

pub mod calibrate;
pub mod classifier;
pub mod policy;
pub mod predictor;
pub mod replay;
pub mod routedata;
pub mod sessions;
pub mod train_router;

use classifier::OwnedInput;
use serde_json::Value;

use crate::api::chat::ChatRequest;

/// The classifier's view of a typed chat request. Mirrors
/// `classifier::input_from_request` (used in training), so features hash
/// identically in training and serving; a test pins the equivalence.
pub fn input_from_chat(req: &ChatRequest) -> OwnedInput {
    let mut out = OwnedInput {
        turns: req.messages.len(),
        ..Default::default()
    };
    let mut last_user = None;
    let mut previous = None;
    for m in &req.messages {
        match m.role.as_str() {
            "system" | "developer" if m.content.is_some() => {
                if !out.system.is_empty() {
                    out.system.push('\n');
                }
                out.system.push_str(&content_text(m.content.as_ref()));
            }
            "user" => previous = last_user.replace(m),
            "tool" | "function" => out.has_tools = true,
            _ => {}
        }
        if m.extra.get("tool_calls").is_some_and(|t| !t.is_null()) {
            out.has_tools = true;
        }
    }
    if let Some(m) = last_user {
        out.last_user = content_text(m.content.as_ref());
    }
    if let Some(m) = previous.filter(|_| out.last_user.len() < classifier::CONTEXT_IF_SHORTER) {
        out.context = content_text(m.content.as_ref());
    }
    let non_empty = |k: &str| {
        req.extra
            .get(k)
            .is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    };
    if non_empty("tools") || non_empty("functions") {
        out.has_tools = true;
    }
    let rf = req
        .extra
        .get("response_format")
        .and_then(|r| r.get("type"))
        .and_then(Value::as_str);
    if matches!(rf, Some("json_schema") | Some("json_object")) {
        out.json_schema = true;
    }
    out
}

fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            let mut first = true;
            for p in parts {
                let text = match p {
                    Value::String(s) => Some(s.as_str()),
                    Value::Object(o) => o.get("text").and_then(Value::as_str),
                    _ => None,
                };
                if let Some(t) = text {
                    if !first {
                        out.push('\n');
                    }
                    out.push_str(t);
                    first = false;
                }
            }
            out
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_input_matches_training_input() {
        let bodies = [
            r#"{"model":"auto","messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"hi"}]}"#,
            r#"{"model":"auto","messages":[{"role":"developer","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
                {"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"x"}}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"1"}]},{"role":"tool","content":"42"},
                {"role":"user","content":"and now?"}],"tools":[{"type":"function"}],
                "response_format":{"type":"json_schema"}}"#,
            r#"{"model":"auto","messages":[{"role":"assistant","content":"only"}],"tools":[]}"#,
        ];
        for b in bodies {
            let req = ChatRequest::parse(b.as_bytes()).expect("parse");
            let v: Value = serde_json::from_str(b).expect("json");
            assert_eq!(input_from_chat(&req), classifier::input_from_request(&v), "{b}");
        }
    }
}
