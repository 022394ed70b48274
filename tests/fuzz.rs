//! Property tests over generated hostile input (seeded, so a failure
//! reproduces; set `SWITCHYARD_FUZZ_SEED` and `SWITCHYARD_FUZZ_CASES` to
//! explore further): the SSE splitter, the stream translators and the
//! request/response translators never panic, and the splitter yields the same
//! events however its input is cut (docs/reliability.md, "Errors").

use bytes::Bytes;
use serde_json::{json, Map, Value};
use switchyard::api::chat::ChatRequest;
use switchyard::gateway::sse::{SseEvent, SseSplitter};
use switchyard::providers::{anthropic, gemini};

fn seed() -> u64 {
    std::env::var("SWITCHYARD_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5157_1c4e_d6e5)
}

fn cases(default: usize) -> usize {
    std::env::var("SWITCHYARD_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Pieces SSE streams are made of, including the awkward ones.
const SSE_PIECES: &[&[u8]] = &[
    b"data: ",
    b"data:",
    b"event: ",
    b"id: 7",
    b"retry: 10",
    b": keep-alive",
    b":",
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    b"\r\n\r\n",
    b"{\"a\":1}",
    b"[DONE]",
    b"message_start",
    b"x",
    b" ",
    b"\xff\xfe",
    b"\"",
    b"\\",
];

fn random_sse(rng: &mut fastrand::Rng) -> Vec<u8> {
    let n = rng.usize(0..60);
    let mut out = Vec::new();
    for _ in 0..n {
        if rng.u8(..) < 20 {
            out.push(rng.u8(..));
        } else {
            out.extend_from_slice(SSE_PIECES[rng.usize(..SSE_PIECES.len())]);
        }
    }
    out
}

fn drain(s: &mut SseSplitter) -> Vec<SseEvent> {
    std::iter::from_fn(|| s.next_event()).collect()
}

#[test]
fn sse_splitter_gives_the_same_events_however_the_input_is_cut() {
    let mut rng = fastrand::Rng::with_seed(seed());
    for case in 0..cases(4000) {
        let input = random_sse(&mut rng);
        let mut whole = SseSplitter::new();
        whole.push(&input);
        let expected = drain(&mut whole);
        let consumed: usize = expected.iter().map(|e| e.raw.len()).sum();
        assert_eq!(consumed + whole.pending(), input.len(), "case {case}");
        let raw: Vec<u8> = expected.iter().flat_map(|e| e.raw.to_vec()).collect();
        assert_eq!(raw, input[..consumed], "case {case}: raw slices are the input");

        let mut cut = SseSplitter::new();
        let mut got = Vec::new();
        let mut i = 0;
        while i < input.len() {
            let n = rng.usize(1..=8.min(input.len() - i));
            cut.push(&input[i..i + n]);
            got.extend(drain(&mut cut));
            i += n;
        }
        assert_eq!(
            got,
            expected,
            "case {case}: input {:?}",
            String::from_utf8_lossy(&input)
        );
        for e in &got {
            if let Some(d) = &e.data {
                assert!(e.raw.len() >= d.len(), "case {case}");
            }
        }
    }
}

const KEYS: &[&str] = &[
    "type",
    "text",
    "content",
    "role",
    "delta",
    "index",
    "choices",
    "candidates",
    "parts",
    "usage",
    "message",
    "tool_calls",
    "function",
    "arguments",
    "name",
    "id",
    "stop_reason",
    "finish_reason",
    "finishReason",
    "usageMetadata",
    "input_tokens",
    "output_tokens",
    "prompt_tokens",
    "completion_tokens",
    "content_block",
    "partial_json",
    "thinking",
    "signature",
    "error",
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "input_schema",
    "input",
    "source",
    "data",
    "media_type",
    "image_url",
    "url",
    "max_tokens",
    "stream",
    "stop_sequences",
    "functionCall",
    "args",
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
];

const STRINGS: &[&str] = &[
    "",
    "user",
    "assistant",
    "system",
    "tool",
    "text",
    "image",
    "image_url",
    "tool_use",
    "tool_result",
    "thinking",
    "text_delta",
    "input_json_delta",
    "thinking_delta",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "end_turn",
    "max_tokens",
    "tool_use",
    "STOP",
    "MAX_TOKENS",
    "SAFETY",
    "function",
    "{\"a\":",
    "data:image/png;base64,AAAA",
    "\u{0}",
    "é漢字🙂",
    "[DONE]",
    "auto",
    "any",
    "none",
    "base64",
    "url",
];

fn random_value(rng: &mut fastrand::Rng, depth: u32) -> Value {
    let leaf = depth >= 5 || rng.u8(..) < 90;
    if leaf {
        return match rng.u8(..6) {
            0 => Value::Null,
            1 => Value::Bool(rng.bool()),
            2 => json!(rng.i64(-3..100_000)),
            3 => json!(f64::from(rng.u32(..)) / 7.0),
            4 => json!(u64::MAX - rng.u64(..3)),
            _ => Value::String(STRINGS[rng.usize(..STRINGS.len())].to_string()),
        };
    }
    if rng.bool() {
        let n = rng.usize(0..4);
        Value::Array((0..n).map(|_| random_value(rng, depth + 1)).collect())
    } else {
        let n = rng.usize(0..6);
        let mut m = Map::new();
        for _ in 0..n {
            m.insert(
                KEYS[rng.usize(..KEYS.len())].to_string(),
                random_value(rng, depth + 1),
            );
        }
        Value::Object(m)
    }
}

/// A realistic value with random parts replaced, removed or retyped.
fn mutate(rng: &mut fastrand::Rng, v: &Value, depth: u32) -> Value {
    if rng.u8(..) < 25 {
        return random_value(rng, depth);
    }
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                if rng.u8(..) < 20 {
                    continue;
                }
                out.insert(k.clone(), mutate(rng, x, depth + 1));
            }
            if rng.u8(..) < 30 {
                out.insert(
                    KEYS[rng.usize(..KEYS.len())].to_string(),
                    random_value(rng, depth + 1),
                );
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| mutate(rng, x, depth + 1)).collect()),
        other => other.clone(),
    }
}

fn event(kind: Option<&str>, data: &[u8]) -> SseEvent {
    let mut raw = Vec::new();
    if let Some(k) = kind {
        raw.extend_from_slice(format!("event: {k}\n").as_bytes());
    }
    raw.extend_from_slice(b"data: ");
    raw.extend_from_slice(data);
    raw.extend_from_slice(b"\n\n");
    SseEvent {
        raw: Bytes::from(raw),
        data: Some(Bytes::copy_from_slice(data)),
        event: kind.map(|k| Bytes::copy_from_slice(k.as_bytes())),
    }
}

/// Every frame a translator emits is a complete SSE event whose data is JSON (or [DONE]).
fn assert_frames(out: &[Bytes], what: &str) {
    for f in out {
        let mut s = SseSplitter::new();
        s.push(f);
        let evs = drain(&mut s);
        assert!(!evs.is_empty() && s.pending() == 0, "{what}: frame {f:?}");
        for e in evs {
            if let Some(d) = e.data {
                assert!(
                    &d[..] == b"[DONE]" || serde_json::from_slice::<Value>(&d).is_ok(),
                    "{what}: data {d:?}"
                );
            }
        }
    }
}

fn anthropic_stream_templates() -> Vec<(&'static str, Value)> {
    vec![
        (
            "message_start",
            json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[],"usage":{"input_tokens":10,"output_tokens":1,"cache_read_input_tokens":2}}}),
        ),
        (
            "content_block_start",
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ),
        (
            "content_block_start",
            json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}),
        ),
        (
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}),
        ),
        (
            "content_block_delta",
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}),
        ),
        (
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}),
        ),
        (
            "content_block_stop",
            json!({"type":"content_block_stop","index":0}),
        ),
        (
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}),
        ),
        ("message_stop", json!({"type":"message_stop"})),
        ("ping", json!({"type":"ping"})),
        (
            "error",
            json!({"type":"error","error":{"type":"overloaded_error","message":"busy"}}),
        ),
    ]
}

fn gemini_template() -> Value {
    json!({"candidates":[{"content":{"role":"model","parts":[{"text":"Hi"},{"functionCall":{"name":"f","args":{"a":1}}},{"text":"t","thought":true}]},"finishReason":"STOP","index":0}],
           "usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":4,"thoughtsTokenCount":1,"cachedContentTokenCount":1},"modelVersion":"gemini"})
}

fn openai_chunk_templates() -> Vec<Value> {
    vec![
        json!({"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}),
        json!({"id":"c1","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}),
        json!({"id":"c1","choices":[{"index":0,"delta":{"reasoning_content":"think"}}]}),
        json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\""}}]}}]}),
        json!({"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
        json!({"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"prompt_tokens_details":{"cached_tokens":1}}}),
    ]
}

/// A random data payload: a mutated template, a random value, or garbage bytes.
fn payload(rng: &mut fastrand::Rng, template: &Value) -> Vec<u8> {
    match rng.u8(..10) {
        0 => random_sse(rng),
        1 => serde_json::to_vec(&random_value(rng, 0)).unwrap_or_default(),
        2 => {
            let mut b = serde_json::to_vec(template).unwrap_or_default();
            let cut = rng.usize(0..=b.len());
            b.truncate(cut);
            b
        }
        _ => serde_json::to_vec(&mutate(rng, template, 0)).unwrap_or_default(),
    }
}

#[test]
fn stream_translators_survive_hostile_upstream_events() {
    let mut rng = fastrand::Rng::with_seed(seed() ^ 1);
    let anth = anthropic_stream_templates();
    let gem = gemini_template();
    let oai = openai_chunk_templates();
    for case in 0..cases(1500) {
        // Anthropic upstream -> OpenAI chunks.
        let mut t = anthropic::StreamTranslator::new("m", rng.bool());
        let mut out = Vec::new();
        for _ in 0..rng.usize(1..12) {
            let (kind, tpl) = &anth[rng.usize(..anth.len())];
            let kind = if rng.u8(..) < 20 { "unknown_event" } else { kind };
            let ev = event(Some(kind), &payload(&mut rng, tpl));
            match t.on_event(&ev, &mut out) {
                Ok(true) | Err(_) => break,
                Ok(false) => {}
            }
        }
        assert_frames(&out, &format!("anthropic case {case}"));

        // Gemini upstream -> OpenAI chunks.
        let mut t = gemini::StreamTranslator::new("m", rng.bool());
        let mut out = Vec::new();
        for _ in 0..rng.usize(1..6) {
            let ev = event(None, &payload(&mut rng, &gem));
            match t.on_event(&ev, &mut out) {
                Ok(true) | Err(_) => break,
                Ok(false) => {}
            }
        }
        let _ = t.finish(&mut out);
        assert_frames(&out, &format!("gemini case {case}"));

        // OpenAI chunks (from any upstream) -> Anthropic events for /v1/messages.
        let mut t = anthropic::ChunkToMessagesStream::new("m");
        let mut out = Vec::new();
        for _ in 0..rng.usize(1..10) {
            let data = if rng.u8(..) < 15 {
                b"[DONE]".to_vec()
            } else {
                let tpl = &oai[rng.usize(..oai.len())];
                payload(&mut rng, tpl)
            };
            match t.on_event(&event(None, &data), &mut out) {
                Ok(true) | Err(_) => break,
                Ok(false) => {}
            }
        }
        t.finish(&mut out);
        assert_frames(&out, &format!("messages case {case}"));
    }
}

fn chat_template() -> Value {
    json!({"model":"m","stream":false,"max_tokens":100,"temperature":0.5,
           "messages":[{"role":"system","content":"be brief"},
                       {"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
                       {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
                       {"role":"tool","tool_call_id":"call_1","content":"42"}],
           "tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object","properties":{"a":{"type":"integer"}}}}}],
           "tool_choice":"auto","stop":["\n\n"],"response_format":{"type":"json_object"}})
}

fn messages_template() -> Value {
    json!({"model":"claude","max_tokens":100,"system":[{"type":"text","text":"be brief"}],
           "messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]},
                       {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"f","input":{"a":1}}]},
                       {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"42"}]}],
           "tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"auto"},"stream":true,
           "thinking":{"type":"enabled","budget_tokens":1024}})
}

#[test]
fn request_and_response_translators_survive_hostile_bodies() {
    let mut rng = fastrand::Rng::with_seed(seed() ^ 2);
    let chat = chat_template();
    let msgs = messages_template();
    // Breakpoints on: the fuzzer also walks the prompt-cache pass.
    let anth_opts = anthropic::AnthropicOptions {
        default_max_tokens: 1024,
        version: "2023-06-01".into(),
        prompt_cache: true,
        prompt_cache_min_tokens: Some(1),
    };
    let gem_opts = gemini::GeminiOptions::default();
    let chat_response = json!({"id":"c","object":"chat.completion","model":"m",
        "choices":[{"index":0,"message":{"role":"assistant","content":"hi","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"stop"}],
        "usage":{"prompt_tokens":1,"completion_tokens":2}});
    let anth_response = json!({"id":"msg","type":"message","role":"assistant","model":"claude",
        "content":[{"type":"text","text":"hi"},{"type":"tool_use","id":"toolu_1","name":"f","input":{}},{"type":"thinking","thinking":"t"}],
        "stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":4}});
    for case in 0..cases(2000) {
        // Client chat bodies: parse (or a clear 400), then every upstream translation.
        let body = payload(&mut rng, &chat);
        match ChatRequest::parse(&body) {
            Ok(req) => {
                let _ = anthropic::build_request(&req, "claude", &anth_opts);
                let _ = gemini::build_request(&req, &gem_opts);
                let again = serde_json::to_vec(&req).expect("a parsed request serialises");
                let back = ChatRequest::parse(&again).expect("and parses again");
                assert_eq!(back.messages.len(), req.messages.len(), "case {case}");
            }
            Err(e) => assert_eq!(e.status.as_u16(), 400, "case {case}: {e}"),
        }
        // Anthropic client bodies -> chat.
        let v = mutate(&mut rng, &msgs, 0);
        if let Ok(req) = anthropic::messages_to_chat(&v) {
            let _ = anthropic::build_request(&req, "claude", &anth_opts);
        }
        // Upstream answers -> OpenAI, and OpenAI answers -> Anthropic.
        let _ = anthropic::parse_response(&payload(&mut rng, &anth_response), "m");
        let _ = gemini::parse_response(&payload(&mut rng, &gemini_template()), "m");
        let _ = anthropic::chat_response_to_messages(&payload(&mut rng, &chat_response), "m");
        let _ = anthropic::count_tokens_estimate(&mutate(&mut rng, &msgs, 0));
    }
}
