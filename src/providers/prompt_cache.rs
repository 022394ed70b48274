//! Anthropic prompt caching done for the client: `cache_control` breakpoints
//! added to a request body bound for an Anthropic upstream that has none of its
//! own, where they pay.
//!
//! Anthropic caches the prefix of a request (tools, then system, then messages)
//! up to a block marked `cache_control: {"type": "ephemeral"}`; a later request
//! with the same prefix reads it at 10% of the input price (writing it costs
//! 125%). At most 4 breakpoints per request, and a prefix shorter than the
//! model's minimum (1,024 tokens for most models; 2,048 for Sonnet 4.6 and the
//! Haiku 3 family; 4,096 for Opus 4.5 / 4.6 and Haiku 4.5) is not cached at all
//! (<https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching>).
//!
//! The rules (a request that carries any `cache_control` is left untouched):
//! 1. the end of the tool definitions, when they alone reach the minimum and a
//!    system prompt follows (so a changed system prompt keeps the tools cached);
//! 2. the end of the stable prefix (the last system block, or the last tool
//!    without a system prompt), when tools + system reach the minimum;
//! 3. the last block of the conversation (this turn writes its prefix), and the
//!    last block of the previous user turn (what the previous request wrote, so
//!    this one reads it even when many blocks were added since), each when the
//!    prefix up to it reaches the minimum;
//!    never more than 4 in all, earlier positions first dropped.
//!
//! Tokens are estimated as bytes / 4 of the blocks' JSON: an over-estimate
//! costs at most a breakpoint Anthropic ignores, an under-estimate a missed
//! write. `thinking` blocks cannot carry `cache_control`; the last other block
//! of a message is marked instead.

use serde_json::{json, Value};

/// Anthropic's limit on breakpoints per request.
pub const MAX_BREAKPOINTS: usize = 4;

/// The smallest prefix (in tokens) the model caches.
pub fn min_tokens_for(model: &str) -> u64 {
    let m = model.to_ascii_lowercase().replace('.', "-");
    if ["opus-4-5", "opus-4-6", "haiku-4-5"]
        .iter()
        .any(|s| m.contains(s))
    {
        4096
    } else if m.contains("sonnet-4-6")
        || m.contains("3-haiku")
        || m.contains("3-5-haiku")
        || m.contains("haiku-3")
    {
        2048
    } else {
        1024
    }
}

/// Whether any tool, system block or message block has a `cache_control`.
pub fn has_cache_control(body: &Value) -> bool {
    let marked = |blocks: Option<&Value>| {
        blocks
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|b| b.get("cache_control").is_some()))
    };
    marked(body.get("tools"))
        || marked(body.get("system"))
        || body
            .get("messages")
            .and_then(Value::as_array)
            .is_some_and(|ms| ms.iter().any(|m| marked(m.get("content"))))
}

fn est(v: &Value) -> u64 {
    // The JSON length of a block: a cheap stand-in for its tokens (4 bytes each).
    serde_json::to_vec(v).map_or(0, |b| b.len() as u64) / 4
}

fn markable(b: &Value) -> bool {
    !matches!(
        b.get("type").and_then(Value::as_str),
        Some("thinking" | "redacted_thinking")
    )
}

/// Where a breakpoint goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spot {
    Tool(usize),
    System(usize),
    Message(usize, usize),
}

/// Adds breakpoints by the rules above; returns how many were added.
pub fn add_breakpoints(body: &mut Value, min_tokens: u64) -> usize {
    if has_cache_control(body) {
        return 0;
    }
    let mut spots: Vec<Spot> = Vec::new();
    let tools = body.get("tools").and_then(Value::as_array);
    let tools_tokens: u64 = tools.map_or(0, |t| t.iter().map(est).sum());
    let system = body.get("system").and_then(Value::as_array);
    let system_tokens: u64 = system.map_or(0, |s| s.iter().map(est).sum());
    let n_tools = tools.map_or(0, Vec::len);
    let n_system = system.map_or(0, Vec::len);
    if n_tools > 0 && n_system > 0 && tools_tokens >= min_tokens {
        spots.push(Spot::Tool(n_tools - 1));
    }
    let stable = tools_tokens + system_tokens;
    if stable >= min_tokens {
        if n_system > 0 {
            spots.push(Spot::System(n_system - 1));
        } else if n_tools > 0 {
            spots.push(Spot::Tool(n_tools - 1));
        }
    }
    // The conversation: cumulative prefix at the end of each message.
    let mut conv: Vec<Spot> = Vec::new();
    if let Some(msgs) = body.get("messages").and_then(Value::as_array) {
        let mut prefix = stable;
        let mut ends: Vec<(usize, usize, u64, bool)> = Vec::new(); // (msg, block, prefix, is_user)
        for (i, m) in msgs.iter().enumerate() {
            let Some(blocks) = m.get("content").and_then(Value::as_array) else {
                continue;
            };
            prefix += blocks.iter().map(est).sum::<u64>();
            if let Some(j) = blocks.iter().rposition(markable) {
                ends.push((
                    i,
                    j,
                    prefix,
                    m.get("role").and_then(Value::as_str) == Some("user"),
                ));
            }
        }
        if let Some(&(i, j, p, _)) = ends.last() {
            // The previous user turn: the last user message before the final one.
            if let Some(&(pi, pj, pp, _)) = ends[..ends.len() - 1].iter().rev().find(|e| e.3) {
                if pp >= min_tokens {
                    conv.push(Spot::Message(pi, pj));
                }
            }
            if p >= min_tokens {
                conv.push(Spot::Message(i, j));
            }
        }
    }
    spots.extend(conv);
    // Over the limit: keep the latest positions (they cover the earlier prefixes).
    if spots.len() > MAX_BREAKPOINTS {
        spots.drain(..spots.len() - MAX_BREAKPOINTS);
    }
    let mark = json!({"type": "ephemeral"});
    let mut added = 0;
    for s in &spots {
        let block = match *s {
            Spot::Tool(i) => body.get_mut("tools").and_then(|t| t.get_mut(i)),
            Spot::System(i) => body.get_mut("system").and_then(|t| t.get_mut(i)),
            Spot::Message(i, j) => body
                .get_mut("messages")
                .and_then(|m| m.get_mut(i))
                .and_then(|m| m.get_mut("content"))
                .and_then(|c| c.get_mut(j)),
        };
        if let Some(Value::Object(o)) = block {
            o.insert("cache_control".into(), mark.clone());
            added += 1;
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> String {
        "lorem ipsum ".repeat(n / 12 + 1)
    }

    fn count(body: &Value) -> usize {
        serde_json::to_string(body)
            .unwrap_or_default()
            .matches("cache_control")
            .count()
    }

    #[test]
    fn minimums_follow_the_model() {
        assert_eq!(min_tokens_for("claude-sonnet-4-5-20250929"), 1024);
        assert_eq!(min_tokens_for("claude-opus-4.6"), 4096);
        assert_eq!(min_tokens_for("claude-haiku-4-5"), 4096);
        assert_eq!(min_tokens_for("claude-3-5-haiku-latest"), 2048);
        assert_eq!(min_tokens_for("claude-sonnet-4-6"), 2048);
    }

    #[test]
    fn short_prompts_get_nothing() {
        let mut b = json!({"system": [{"type": "text", "text": "Be brief."}],
                           "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]});
        let before = b.clone();
        assert_eq!(add_breakpoints(&mut b, 1024), 0);
        assert_eq!(b, before);
    }

    #[test]
    fn a_clients_own_breakpoint_is_left_alone() {
        let mut b = json!({"system": [{"type": "text", "text": text(20_000)}],
                           "messages": [{"role": "user", "content": [
                               {"type": "text", "text": text(20_000), "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]});
        let before = b.clone();
        assert_eq!(add_breakpoints(&mut b, 1024), 0);
        assert_eq!(b, before);
    }

    #[test]
    fn never_more_than_four_and_thinking_is_skipped() {
        let tools: Vec<Value> = (0..3)
            .map(|i| json!({"name": format!("t{i}"), "description": text(6_000), "input_schema": {"type": "object"}}))
            .collect();
        let mut b = json!({
        "tools": tools,
        "system": [{"type": "text", "text": text(8_000)}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": text(8_000)}]},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"},
                                              {"type": "thinking", "thinking": "..."}]},
            {"role": "user", "content": [{"type": "text", "text": "next"}]}
        ]});
        assert_eq!(add_breakpoints(&mut b, 1024), 4);
        assert_eq!(count(&b), 4);
        assert!(b["tools"][2]["cache_control"].is_object(), "tools end");
        assert!(b["system"][0]["cache_control"].is_object(), "system end");
        assert!(
            b["messages"][0]["content"][0]["cache_control"].is_object(),
            "previous user turn"
        );
        assert!(
            b["messages"][2]["content"][0]["cache_control"].is_object(),
            "conversation end"
        );
        assert!(b["messages"][1]["content"][1].get("cache_control").is_none());
    }
}
