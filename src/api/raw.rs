//! The client's chat request body, forwarded as sent.
//!
//! Re-serialising a parsed request re-escapes every string of the body; an
//! OpenAI-compatible upstream needs only two changes: the model id (each
//! target's own) and, on streams, `stream_options.include_usage: true` (so
//! the call can be accounted for). [`RawChat`] finds where those go once,
//! with a scan of the top-level object (nested values are skipped, not
//! parsed), and [`RawChat::patched`] copies the body with them patched in.
//!
//! Only bodies that already parsed as a [`ChatRequest`](super::chat::ChatRequest)
//! are scanned; anything the scan does not expect gives `None`, and the caller
//! serialises the parsed request as before.

use std::ops::Range;

use bytes::Bytes;

/// Bodies up to this size are kept for forwarding; bigger ones are dropped
/// right after parsing (their memory matters more than the re-encoding).
pub const RAW_MAX_BYTES: usize = 256 * 1024;

/// A chat request body and where the gateway's changes go.
#[derive(Debug, Clone)]
pub struct RawChat {
    bytes: Bytes,
    /// The top-level `model` value (a JSON string, quotes included).
    model: Range<usize>,
    /// The other changes, the same for every target: a range of the body
    /// replaced by a text (an empty range is an insertion), in body order.
    /// `include_usage` forced on for streams; the output cap a strict budget set.
    fixed: Vec<(Range<usize>, String)>,
}

/// The output-token cap a strict budget put on a request: each of `read`
/// present with a non-null value is set to `n`; if none is, `write` is
/// (as `OutputField::set` does to the parsed request).
#[derive(Debug, Clone, Copy)]
pub struct Cap<'a> {
    pub read: &'a [&'a str],
    pub write: &'a str,
    pub n: u64,
}

impl RawChat {
    /// Scans `bytes`, a body that parsed as a chat request. `stream`: whether
    /// it streams (`include_usage` is then forced on); `cap`: the output cap
    /// admission set, if it set one.
    pub fn scan(bytes: Bytes, stream: bool, cap: Option<Cap<'_>>) -> Option<RawChat> {
        let b = &bytes[..];
        let top = members(b, skip_ws(b, 0))?;
        let mut model = None;
        let mut options = None;
        for m in &top.members {
            if key_is(b, &m.key, "model") {
                if model.is_some() || b.get(m.value.start) != Some(&b'"') {
                    return None;
                }
                model = Some(m.value.clone());
            } else if key_is(b, &m.key, "stream_options") {
                if options.is_some() {
                    return None;
                }
                options = Some(m.value.clone());
            }
        }
        let model = model?;
        let mut fixed = Vec::new();
        if stream {
            let usage = match options {
                // No stream_options: add one before the closing brace (`model` precedes it).
                None => Some((
                    top.close..top.close,
                    r#","stream_options":{"include_usage":true}"#,
                )),
                Some(v) if &b[v.clone()] == b"null" => Some((v, r#"{"include_usage":true}"#)),
                Some(v) => {
                    let inner = members(b, v.start)?;
                    let mut found = None;
                    for m in &inner.members {
                        if key_is(b, &m.key, "include_usage") {
                            if found.is_some() {
                                return None;
                            }
                            found = Some(m.value.clone());
                        }
                    }
                    match found {
                        Some(v) if &b[v.clone()] == b"true" => None,
                        Some(v) => Some((v, "true")),
                        None if inner.members.is_empty() => {
                            Some((v.start + 1..v.start + 1, r#""include_usage":true"#))
                        }
                        None => Some((v.start + 1..v.start + 1, r#""include_usage":true,"#)),
                    }
                }
            };
            fixed.extend(usage.map(|(r, t)| (r, t.to_string())));
        }
        if let Some(cap) = cap {
            let n = cap.n.to_string();
            let mut set = 0;
            let mut write_key = None;
            for name in cap.read.iter().chain(std::iter::once(&cap.write)) {
                let mut seen = None;
                for m in top.members.iter().filter(|m| key_is(b, &m.key, name)) {
                    if seen.is_some() {
                        // A repeated key: the parsed request kept the last; leave it to the encoder.
                        return None;
                    }
                    seen = Some(m.value.clone());
                }
                let Some(v) = seen else { continue };
                if name == &cap.write {
                    write_key = Some(v.clone());
                }
                if cap.read.contains(name) && &b[v.clone()] != b"null" {
                    if !fixed.iter().any(|(r, _)| *r == v) {
                        fixed.push((v, n.clone()));
                    }
                    set += 1;
                }
            }
            if set == 0 {
                match write_key {
                    // `"max_tokens": null` takes the cap in its place.
                    Some(v) => fixed.push((v, n)),
                    None => {
                        let mut text = String::with_capacity(cap.write.len() + n.len() + 4);
                        text.push(',');
                        write_json_string_into(&mut text, cap.write);
                        text.push(':');
                        text.push_str(&n);
                        fixed.push((top.close..top.close, text));
                    }
                }
            }
        }
        fixed.sort_by_key(|(r, _)| r.start);
        Some(RawChat { bytes, model, fixed })
    }

    /// The body with `model` as the model id (and the fixed changes). Everything
    /// else is the client's bytes.
    pub fn patched(&self, model: &str) -> Vec<u8> {
        let b = &self.bytes[..];
        let extra: usize = self.fixed.iter().map(|(_, t)| t.len()).sum();
        let mut out = Vec::with_capacity(b.len() + model.len() + extra + 2);
        let mut at = 0;
        let mut model_done = false;
        for (range, text) in &self.fixed {
            if !model_done && self.model.start < range.start {
                out.extend_from_slice(&b[at..self.model.start]);
                write_json_string(&mut out, model);
                at = self.model.end;
                model_done = true;
            }
            out.extend_from_slice(&b[at..range.start]);
            out.extend_from_slice(text.as_bytes());
            at = range.end;
        }
        if !model_done {
            out.extend_from_slice(&b[at..self.model.start]);
            write_json_string(&mut out, model);
            at = self.model.end;
        }
        out.extend_from_slice(&b[at..]);
        out
    }
}

/// One `"key": value` of an object: the key with its quotes, the value.
struct Member {
    key: Range<usize>,
    value: Range<usize>,
}

struct Object {
    members: Vec<Member>,
    /// Index of the closing `}`.
    close: usize,
}

/// The members of the object starting at `at` (a `{`).
fn members(b: &[u8], at: usize) -> Option<Object> {
    if b.get(at) != Some(&b'{') {
        return None;
    }
    let mut i = skip_ws(b, at + 1);
    let mut out = Vec::new();
    if b.get(i) == Some(&b'}') {
        return Some(Object {
            members: out,
            close: i,
        });
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(b, i)?;
        let key = i..key_end;
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(b, i + 1);
        let end = skip_value(b, start)?;
        out.push(Member {
            key,
            value: start..end,
        });
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => {
                return Some(Object {
                    members: out,
                    close: i,
                })
            }
            _ => return None,
        }
    }
}

/// Whether the JSON string at `key` (quotes included) is `name`.
fn key_is(b: &[u8], key: &Range<usize>, name: &str) -> bool {
    let Some(raw) = b.get(key.start + 1..key.end.saturating_sub(1)) else {
        return false;
    };
    if !raw.contains(&b'\\') {
        return raw == name.as_bytes();
    }
    // An escaped key (`"mod\u0065l"`) is rare: decode it.
    b.get(key.clone())
        .and_then(|k| serde_json::from_slice::<String>(k).ok())
        .is_some_and(|k| k == name)
}

/// The index of the first non-blank byte at or after `i` (JSON whitespace).
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index after the string starting at `at` (a `"`); None if unterminated.
pub(crate) fn skip_string(b: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        let rest = b.get(i..)?;
        let off = memchr::memchr2(b'"', b'\\', rest)?;
        i += off;
        if b[i] == b'"' {
            return Some(i + 1);
        }
        i += 2;
    }
}

/// The index after the value starting at `at`.
fn skip_value(b: &[u8], at: usize) -> Option<usize> {
    match b.get(at)? {
        b'"' => skip_string(b, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            while let Some(&c) = b.get(i) {
                match c {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let mut i = at;
            while let Some(&c) = b.get(i) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                i += 1;
            }
            (i > at).then_some(i)
        }
    }
}

/// `s` as a JSON string, into a `String`.
fn write_json_string_into(out: &mut String, s: &str) {
    let mut v = Vec::new();
    write_json_string(&mut v, s);
    out.push_str(&String::from_utf8_lossy(&v));
}

/// `s` as a JSON string.
fn write_json_string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|c| c >= 0x20 && c != b'"' && c != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // serde_json cannot fail writing a str into a Vec.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn patch(body: &str, stream: bool, model: &str) -> Value {
        let raw = RawChat::scan(Bytes::copy_from_slice(body.as_bytes()), stream, None).expect("scans");
        let out = raw.patched(model);
        serde_json::from_slice(&out).expect("patched body is JSON")
    }

    #[test]
    fn patches_model_and_keeps_the_rest_byte_for_byte() {
        let body = r#"{ "model" : "gpt" , "messages":[{"role":"user","content":"caf\u00e9 1e2"}], "temperature": 1.0e0 }"#;
        let raw = RawChat::scan(Bytes::from_static(body.as_bytes()), false, None).expect("scans");
        let out = String::from_utf8(raw.patched("up/\"x\"")).expect("utf8");
        assert_eq!(
            out,
            r#"{ "model" : "up/\"x\"" , "messages":[{"role":"user","content":"caf\u00e9 1e2"}], "temperature": 1.0e0 }"#
        );
    }

    #[test]
    fn streams_get_include_usage_wherever_it_is_missing() {
        let m = r#""messages":[{"role":"user","content":"}{\"]"}]"#;
        for (body, want) in [
            (
                format!(r#"{{"model":"a",{m},"stream":true}}"#),
                json!({"include_usage": true}),
            ),
            (
                format!(r#"{{"model":"a",{m},"stream":true,"stream_options":null}}"#),
                json!({"include_usage": true}),
            ),
            (
                format!(r#"{{"stream_options":{{ }},"model":"a",{m},"stream":true}}"#),
                json!({"include_usage": true}),
            ),
            (
                format!(r#"{{"model":"a","stream_options":{{"x":[1,{{}}]}},{m},"stream":true}}"#),
                json!({"include_usage": true, "x": [1, {}]}),
            ),
            (
                format!(r#"{{"model":"a","stream_options":{{"include_usage":false}},{m},"stream":true}}"#),
                json!({"include_usage": true}),
            ),
            (
                format!(r#"{{"model":"a","stream_options":{{"include_usage":true}},{m},"stream":true}}"#),
                json!({"include_usage": true}),
            ),
        ] {
            let v = patch(&body, true, "b");
            assert_eq!(v["model"], "b", "{body}");
            assert_eq!(v["stream_options"], want, "{body}");
            assert_eq!(v["messages"][0]["content"], "}{\"]", "{body}");
        }
        let v = patch(r#"{"model":"a","messages":[]}"#, false, "b");
        assert_eq!(v, json!({"model": "b", "messages": []}));
    }

    #[test]
    fn a_cap_is_patched_in_as_output_field_set_writes_it() {
        use crate::accounting::estimate::OutputField;
        let f = OutputField::CHAT;
        for body in [
            r#"{"model":"a","messages":[]}"#,
            r#"{"model":"a","messages":[],"max_tokens":null}"#,
            r#"{"model":"a","max_tokens":900,"messages":[]}"#,
            r#"{"max_completion_tokens":900,"model":"a","messages":[],"max_tokens":null}"#,
            r#"{"max_completion_tokens":900,"model":"a","messages":[],"max_tokens":500}"#,
            r#"{"model":"a","messages":[],"max_completion_tokens":null,"stream":true}"#,
        ] {
            let cap = Cap {
                read: f.read,
                write: f.write,
                n: 40,
            };
            let stream = body.contains("stream");
            let raw =
                RawChat::scan(Bytes::copy_from_slice(body.as_bytes()), stream, Some(cap)).expect("scans");
            let got: Value = serde_json::from_slice(&raw.patched("b")).expect("JSON");
            let mut want: Value = serde_json::from_str(body).expect("JSON");
            let obj = want.as_object_mut().expect("object");
            f.set(obj, 40);
            obj.insert("model".into(), json!("b"));
            if stream {
                obj.insert("stream_options".into(), json!({"include_usage": true}));
            }
            assert_eq!(got, want, "{body}");
        }
        let cap = Cap {
            read: f.read,
            write: f.write,
            n: 1,
        };
        let dup = Bytes::from_static(br#"{"model":"a","max_tokens":1,"max_tokens":2}"#);
        assert!(RawChat::scan(dup, false, Some(cap)).is_none());
    }

    #[test]
    fn escaped_keys_are_recognised_and_odd_bodies_refused() {
        let v = patch(r#"{"mod\u0065l":"a","messages":[]}"#, false, "b");
        assert_eq!(v["model"], "b");
        for bad in [
            r#"{"messages":[]}"#,
            r#"{"model":"a","model":"b"}"#,
            r#"{"model":1}"#,
            r#"{"model":"a""#,
            r#"["model"]"#,
            r#"{"model":"a","stream_options":{"include_usage":true,"include_usage":false}}"#,
            "",
        ] {
            assert!(
                RawChat::scan(Bytes::from_static(bad.as_bytes()), true, None).is_none(),
                "{bad}"
            );
        }
    }
}
