"""Switchyard's native Anthropic and Gemini adapters, end to end with the official `openai` client.

client (openai SDK) -> switchyard (type = "anthropic" / "gemini" providers) -> fake_anthropic.py /
fake_gemini.py, which speak the real wire formats and record what reached them. The tests check the
translation both ways: what the fake received (system placement, tools, tool results, limits) and what
the client got back (text, tool calls, finish reasons, usage), plus error mapping, retries and
cross-provider fallback to the OpenAI fake.

Run: cd /work/main && .venv/bin/pytest tests/python/test_native_providers.py -q
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

import openai
import pytest

from conftest import DIRECT, SWITCHYARD_BIN, UPSTREAM_KEY, Gateway, http_get, make_client
from fake_anthropic import (
    ANTHROPIC_REPLY,
    CACHE_CREATION_TOKENS,
    CACHE_READ_TOKENS,
    TOOL_PREAMBLE,
    FakeAnthropic,
    tool_input,
)
from fake_gemini import CACHED_TOKENS, GEMINI_REPLY, SAFETY_PARTIAL, THOUGHTS_TOKENS, FakeGemini, function_args
from fake_openai import DEFAULT_REPLY, FakeOpenAI

pytestmark = pytest.mark.skipif(DIRECT, reason="native-provider tests need the gateway (SWITCHYARD_TEST_TARGET=fake)")

NATIVE_CONFIG = """\
[providers.claude]
type = "anthropic"
base_url = "{anthropic}"
api_key = "${{FAKE_UPSTREAM_KEY}}"
default_max_tokens = 1024

[providers.gem]
type = "gemini"
base_url = "{gemini}"
api_key = "${{FAKE_UPSTREAM_KEY}}"

[providers.openai_fake]
type = "openai"
base_url = "{openai}"
api_key = "${{FAKE_UPSTREAM_KEY}}"

[models.claude-test]
provider = "claude"
model = "claude-opus-4.7"

[models.claude-fb]
provider = "claude"
model = "claude-opus-4.7"
fallbacks = ["gpt-test"]

[models.gemini-test]
provider = "gem"
model = "gemini-3-pro"

[models.gemini-fb]
provider = "gem"
model = "gemini-3-pro"
fallbacks = ["gpt-test"]

[models.gpt-test]
provider = "openai_fake"
model = "gpt-5.4-mini"

[resilience]
backoff_base_ms = 1
backoff_max_ms = 5
breaker_consecutive_failures = 1000
breaker_min_calls = 1000

[ledger]
flush_interval_ms = 20
"""

SYSTEM = "You are a terse assistant who answers in one line."
USER = "Say hello to the gateway tests please."
MSGS = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer"},
                },
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time in a zone.",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
        },
    },
]
EXPECTED_ARGS = {"city": "fake-city", "unit": "celsius", "days": 42}
TOOL_RESULT = '{"temperature": 18, "sky": "sunny"}'
TOOL_MSGS = [{"role": "user", "content": "What is the weather in Paris?"}]

MODEL = {"claude": "claude-test", "gemini": "gemini-test"}
REPLY = {"claude": ANTHROPIC_REPLY, "gemini": GEMINI_REPLY}
PROVIDER = {"claude": "claude", "gemini": "gem"}


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    f = FakeAnthropic(expected_key=UPSTREAM_KEY)
    f.start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def fake_gemini() -> Iterator[FakeGemini]:
    f = FakeGemini(expected_key=UPSTREAM_KEY)
    f.start()
    yield f
    f.stop()


@pytest.fixture(autouse=True)
def _reset_native(fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini) -> Iterator[None]:
    fake_anthropic.reset()
    fake_gemini.reset()
    yield
    fake_anthropic.reset()
    fake_gemini.reset()


@pytest.fixture(scope="module")
def native_gateway(fake: FakeOpenAI, fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    if not os.path.exists(SWITCHYARD_BIN):
        pytest.fail(f"switchyard binary not found at {SWITCHYARD_BIN}")
    cfg = NATIVE_CONFIG.format(anthropic=fake_anthropic.base_url, gemini=fake_gemini.base_url, openai=fake.base_url)
    gw = Gateway(tmp_path_factory.mktemp("native-gw"), cfg)
    yield gw
    rc = gw.stop()
    assert rc == 0, f"switchyard exited with {rc} on SIGTERM\n{gw.stderr()}"


@pytest.fixture
def oc(native_gateway: Gateway) -> Iterator[openai.OpenAI]:
    c = make_client(native_gateway.base_url)
    yield c
    c.close()


@pytest.fixture(params=["claude", "gemini"])
def prov(request: pytest.FixtureRequest, fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini) -> dict[str, Any]:
    name = request.param
    return {"name": name, "model": MODEL[name], "reply": REPLY[name],
            "fake": fake_anthropic if name == "claude" else fake_gemini}


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def collect(stream: Any) -> dict[str, Any]:
    """Reassemble a chat stream the way a client does (tool calls by index)."""
    out: dict[str, Any] = {"chunks": [], "text": "", "roles": [], "finish": [], "usage": None, "calls": {}}
    for c in stream:
        out["chunks"].append(c)
        assert c.object == "chat.completion.chunk"
        if c.usage is not None:
            out["usage"] = c.usage
        for ch in c.choices:
            d = ch.delta
            if d.role:
                out["roles"].append(d.role)
            if d.content:
                out["text"] += d.content
            for tc in d.tool_calls or []:
                slot = out["calls"].setdefault(tc.index, {"id": None, "name": "", "arguments": "", "extra": None,
                                                          "deltas": 0})
                slot["deltas"] += 1
                if tc.id:
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    slot["arguments"] += tc.function.arguments
                extra = (tc.model_extra or {}).get("extra_content")
                if extra:
                    slot["extra"] = extra
            if ch.finish_reason:
                out["finish"].append(ch.finish_reason)
    return out


def anthropic_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content or [] if b.get("type") == "text")


def gemini_text(content: dict[str, Any]) -> str:
    return "".join(p.get("text", "") for p in content.get("parts") or [])


def expected_usage(name: str, sent: dict[str, Any]) -> dict[str, int]:
    if name == "claude":
        prompt = sent["input_tokens"] + sent["cache_read_input_tokens"] + sent["cache_creation_input_tokens"]
        return {"prompt": prompt, "completion": sent["output_tokens"], "cached": sent["cache_read_input_tokens"]}
    return {"prompt": sent["promptTokenCount"],
            "completion": sent["candidatesTokenCount"] + sent["thoughtsTokenCount"],
            "cached": sent["cachedContentTokenCount"]}


def assert_usage(name: str, usage: Any, sent: dict[str, Any]) -> None:
    want = expected_usage(name, sent)
    assert usage is not None, "no usage in the response"
    assert usage.prompt_tokens == want["prompt"], f"prompt_tokens {usage.prompt_tokens}, upstream sent {sent}"
    assert usage.completion_tokens == want["completion"], f"completion_tokens {usage.completion_tokens}, upstream sent {sent}"
    assert usage.total_tokens == want["prompt"] + want["completion"]
    details = usage.prompt_tokens_details
    assert details is not None and details.cached_tokens == want["cached"], f"cached_tokens: {details}, upstream sent {sent}"


def raw_post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer sk-client"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def wait_ledger(gw: Gateway, pred: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            rows = [r for r in gw.ledger_rows() if pred(r)]
        except Exception:  # noqa: BLE001 - the ledger may not exist yet
            rows = []
        if rows:
            return rows
        time.sleep(0.05)
    return rows


# ---------------------------------------------------------------------------
# Plain text
# ---------------------------------------------------------------------------


def test_text_non_streaming(oc, prov):
    raw = oc.chat.completions.with_raw_response.create(model=prov["model"], messages=MSGS)
    r = raw.parse()
    assert r.object == "chat.completion"
    assert len(r.choices) == 1
    msg = r.choices[0].message
    assert msg.role == "assistant"
    assert msg.content == prov["reply"]
    assert not msg.tool_calls
    assert r.choices[0].finish_reason == "stop"
    assert raw.headers.get("x-switchyard-provider") == PROVIDER[prov["name"]]

    rec = prov["fake"].last()
    if prov["name"] == "claude":
        assert rec["path"] == "/v1/messages"
        assert rec["headers"].get("x-api-key") == UPSTREAM_KEY
        assert rec["headers"].get("anthropic-version"), "no anthropic-version header sent upstream"
        assert "authorization" not in rec["headers"], "Anthropic takes x-api-key; an OpenAI-style header leaked"
        body = rec["body"]
        assert body["model"] == "claude-opus-4.7"
        assert body["max_tokens"] == 1024, "default_max_tokens not applied"
        assert not body.get("stream")
        assert [m["role"] for m in body["messages"]] == ["user"]
        assert anthropic_text(body["messages"][0]["content"]) == USER
    else:
        assert rec["path"].split("?")[0] == "/v1beta/models/gemini-3-pro:generateContent"
        assert rec["headers"].get("x-goog-api-key") == UPSTREAM_KEY
        assert "key=" not in rec["path"], "the API key must go in the header, not the URL"
        body = rec["body"]
        assert [c.get("role", "user") for c in body["contents"]] == ["user"]
        assert gemini_text(body["contents"][0]) == USER


def test_text_streaming(oc, prov):
    got = collect(oc.chat.completions.create(model=prov["model"], messages=MSGS, stream=True,
                                             stream_options={"include_usage": True}))
    assert got["text"] == prov["reply"]
    assert got["roles"][:1] == ["assistant"], "the first delta must carry role=assistant"
    assert got["finish"] == ["stop"]
    assert not got["calls"]
    assert len(got["chunks"]) >= 3, "the stream was not relayed incrementally"
    ids = {c.id for c in got["chunks"]}
    assert len(ids) == 1, f"one completion must keep one id, got {ids}"
    # The usage chunk is last and has no choices.
    assert got["chunks"][-1].usage is not None and got["chunks"][-1].choices == []
    rec = prov["fake"].last()
    assert_usage(prov["name"], got["usage"], rec["usage"])
    if prov["name"] == "claude":
        assert rec["body"].get("stream") is True
    else:
        assert rec["path"] == "/v1beta/models/gemini-3-pro:streamGenerateContent?alt=sse"


def test_streaming_without_include_usage_has_no_usage_chunk(oc, prov):
    got = collect(oc.chat.completions.create(model=prov["model"], messages=MSGS, stream=True))
    assert got["text"] == prov["reply"]
    assert got["usage"] is None
    assert all(c.choices for c in got["chunks"]), "a choice-less chunk was sent without include_usage"


# ---------------------------------------------------------------------------
# System prompt and multi-turn placement
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sys_role", ["system", "developer"])
def test_system_prompt_and_turns_placement(oc, prov, sys_role):
    msgs = [
        {"role": sys_role, "content": SYSTEM},
        {"role": "user", "content": "First question."},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": [{"type": "text", "text": "Second"}, {"type": "text", "text": "question."}]},
    ]
    r = oc.chat.completions.create(model=prov["model"], messages=msgs)
    assert r.choices[0].message.content == prov["reply"]
    body = prov["fake"].last()["body"]
    if prov["name"] == "claude":
        assert anthropic_text(body.get("system")) == SYSTEM, f"system not top-level: {body.get('system')!r}"
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
        texts = [anthropic_text(m["content"]) for m in body["messages"]]
        assert texts[0] == "First question." and texts[1] == "First answer."
        assert "Second" in texts[2] and "question." in texts[2]
        assert SYSTEM not in json.dumps(body["messages"]), "the system prompt leaked into messages"
    else:
        si = body.get("systemInstruction") or body.get("system_instruction")
        assert si and gemini_text(si) == SYSTEM, f"systemInstruction: {si!r}"
        assert [c.get("role", "user") for c in body["contents"]] == ["user", "model", "user"]
        texts = [gemini_text(c) for c in body["contents"]]
        assert texts[0] == "First question." and texts[1] == "First answer."
        assert "Second" in texts[2] and "question." in texts[2]
        assert SYSTEM not in json.dumps(body["contents"])


# ---------------------------------------------------------------------------
# Usage normalisation
# ---------------------------------------------------------------------------


def test_usage_normalised_non_streaming(oc, prov):
    r = oc.chat.completions.create(model=prov["model"], messages=MSGS)
    sent = prov["fake"].last()["usage"]
    if prov["name"] == "claude":
        assert sent["cache_read_input_tokens"] == CACHE_READ_TOKENS
        assert sent["cache_creation_input_tokens"] == CACHE_CREATION_TOKENS
    else:
        assert sent["thoughtsTokenCount"] == THOUGHTS_TOKENS and sent["cachedContentTokenCount"] == CACHED_TOKENS
    assert_usage(prov["name"], r.usage, sent)


def test_usage_recorded_in_ledger(oc, prov, native_gateway):
    r = oc.chat.completions.create(model=prov["model"], messages=MSGS, stream=True,
                                   stream_options={"include_usage": True})
    got = collect(r)
    sent = prov["fake"].last()["usage"]
    want = expected_usage(prov["name"], sent)
    rid = got["chunks"][0].id
    rows = wait_ledger(native_gateway, lambda row: row["requested_model"] == prov["model"]
                       and row["prompt_tokens"] == want["prompt"] and row["stream"] == 1)
    assert rows, f"no ledger row for {prov['model']} with prompt_tokens={want['prompt']} (chunk id {rid})"
    row = rows[-1]
    assert row["provider"] == PROVIDER[prov["name"]]
    assert row["upstream_model"] == ("claude-opus-4.7" if prov["name"] == "claude" else "gemini-3-pro")
    assert row["completion_tokens"] == want["completion"]
    assert row["cached_tokens"] == want["cached"]
    assert row["status"] == 200


# ---------------------------------------------------------------------------
# Limits and finish reasons
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_max_tokens_maps_to_length(oc, prov, stream):
    kwargs = {"model": prov["model"], "messages": MSGS, "max_tokens": 4}
    if stream:
        got = collect(oc.chat.completions.create(stream=True, **kwargs))
        text, finish = got["text"], got["finish"]
    else:
        r = oc.chat.completions.create(**kwargs)
        text, finish = r.choices[0].message.content, [r.choices[0].finish_reason]
    assert finish == ["length"]
    assert text == " ".join(prov["reply"].split()[:4])
    body = prov["fake"].last()["body"]
    if prov["name"] == "claude":
        assert body["max_tokens"] == 4
    else:
        assert (body.get("generationConfig") or body.get("generation_config"))["maxOutputTokens"] == 4


def test_max_completion_tokens_is_honoured(oc, prov):
    r = oc.chat.completions.create(model=prov["model"], messages=MSGS, max_completion_tokens=5)
    assert r.choices[0].finish_reason == "length"
    body = prov["fake"].last()["body"]
    if prov["name"] == "claude":
        assert body["max_tokens"] == 5
    else:
        assert (body.get("generationConfig") or {}).get("maxOutputTokens") == 5


def test_stop_sequences_translated(oc, prov):
    stop = "upstream"
    r = oc.chat.completions.create(model=prov["model"], messages=MSGS, stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    reply = prov["reply"]
    assert r.choices[0].message.content == reply[: reply.index(stop)]
    body = prov["fake"].last()["body"]
    if prov["name"] == "claude":
        assert body.get("stop_sequences") == [stop]
    else:
        assert (body.get("generationConfig") or {}).get("stopSequences") == [stop]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_gemini_safety_block_is_content_filter(oc, fake_gemini, stream):
    fake_gemini.safety_block_next()
    if stream:
        got = collect(oc.chat.completions.create(model="gemini-test", messages=MSGS, stream=True))
        assert got["finish"] == ["content_filter"]
        assert got["text"] == SAFETY_PARTIAL
    else:
        r = oc.chat.completions.create(model="gemini-test", messages=MSGS)
        assert r.choices[0].finish_reason == "content_filter"
        assert not r.choices[0].message.content
    assert fake_gemini.last()["usage"] is not None


# ---------------------------------------------------------------------------
# Tool calls: a full two-turn round trip
# ---------------------------------------------------------------------------


def _check_tools_translated(name: str, body: dict[str, Any]) -> None:
    if name == "claude":
        tools = body["tools"]
        assert [t["name"] for t in tools] == ["get_weather", "get_time"]
        assert tools[0]["description"] == "Current weather for a city."
        assert tools[0]["input_schema"]["properties"] == TOOLS[0]["function"]["parameters"]["properties"]
        assert tool_input(tools[0]) == EXPECTED_ARGS
    else:
        decls = [d for t in body["tools"] for d in (t.get("functionDeclarations") or t.get("function_declarations") or [])]
        assert [d["name"] for d in decls] == ["get_weather", "get_time"]
        assert decls[0]["description"] == "Current weather for a city."
        assert function_args(decls[0]) == EXPECTED_ARGS


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_tool_call_round_trip(oc, prov, stream):
    name = prov["name"]
    fake = prov["fake"]
    # Turn 1: the model calls a tool.
    if stream:
        got = collect(oc.chat.completions.create(model=prov["model"], messages=TOOL_MSGS, tools=TOOLS, stream=True,
                                                 stream_options={"include_usage": True}))
        assert got["finish"] == ["tool_calls"]
        assert sorted(got["calls"]) == [0], f"tool-call indexes: {sorted(got['calls'])}"
        call = got["calls"][0]
        assert call["id"], "streamed tool call has no id"
        content = got["text"] or None
        extra = call["extra"]
        assistant: dict[str, Any] = {
            "role": "assistant",
            "content": content,
            "tool_calls": [{"id": call["id"], "type": "function",
                            "function": {"name": call["name"], "arguments": call["arguments"]}}],
        }
        if extra:
            assistant["tool_calls"][0]["extra_content"] = extra
        call_name, call_args, call_id = call["name"], call["arguments"], call["id"]
        assert got["usage"] is not None
    else:
        r = oc.chat.completions.create(model=prov["model"], messages=TOOL_MSGS, tools=TOOLS)
        ch = r.choices[0]
        assert ch.finish_reason == "tool_calls"
        assert ch.message.tool_calls and len(ch.message.tool_calls) == 1
        tc = ch.message.tool_calls[0]
        assert tc.type == "function"
        content = ch.message.content
        assistant = ch.message.model_dump(exclude_none=True)
        call_name, call_args, call_id = tc.function.name, tc.function.arguments, tc.id
    assert call_name == "get_weather"
    assert json.loads(call_args) == EXPECTED_ARGS
    first = fake.last()
    _check_tools_translated(name, first["body"])
    if name == "claude":
        assert content == TOOL_PREAMBLE, "the text block before tool_use was lost"
        if stream:
            upstream_id = next(d["content_block"]["id"] for n, d in first["events"]
                               if n == "content_block_start" and d["content_block"]["type"] == "tool_use")
        else:
            upstream_id = first["response"]["content"][1]["id"]
        assert call_id == upstream_id, "the tool call id must be Anthropic's tool_use id"
    else:
        assert not content

    # Turn 2: the client sends the tool result and gets the final answer.
    msgs2 = TOOL_MSGS + [assistant, {"role": "tool", "tool_call_id": call_id, "content": TOOL_RESULT}]
    if stream:
        got2 = collect(oc.chat.completions.create(model=prov["model"], messages=msgs2, tools=TOOLS, stream=True))
        final, finish = got2["text"], got2["finish"]
        assert not got2["calls"]
    else:
        r2 = oc.chat.completions.create(model=prov["model"], messages=msgs2, tools=TOOLS)
        final, finish = r2.choices[0].message.content, [r2.choices[0].finish_reason]
        assert not r2.choices[0].message.tool_calls
    assert finish == ["stop"]
    second = fake.last()
    assert second is not first
    body = second["body"]
    if name == "claude":
        assert final == "The tool said: " + TOOL_RESULT
        msgs = body["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
        blocks = msgs[1]["content"]
        assert isinstance(blocks, list)
        uses = [b for b in blocks if b["type"] == "tool_use"]
        assert len(uses) == 1 and uses[0]["id"] == call_id and uses[0]["name"] == "get_weather"
        assert uses[0]["input"] == EXPECTED_ARGS
        assert anthropic_text(blocks) == TOOL_PREAMBLE
        results = [b for b in msgs[2]["content"] if b["type"] == "tool_result"]
        assert len(results) == 1 and results[0]["tool_use_id"] == call_id
        assert anthropic_text(results[0].get("content")) == TOOL_RESULT
    else:
        assert final.startswith("The function returned: ")
        assert "18" in final and "sunny" in final, final
        contents = body["contents"]
        assert [c.get("role", "user") for c in contents] == ["user", "model", "user"]
        fc_parts = [p for p in contents[1]["parts"] if "functionCall" in p]
        assert len(fc_parts) == 1
        assert fc_parts[0]["functionCall"]["name"] == "get_weather"
        assert fc_parts[0]["functionCall"]["args"] == EXPECTED_ARGS
        issued = (first.get("response") or first["chunks"][0])["candidates"][0]["content"]["parts"][0]
        assert fc_parts[0].get("thoughtSignature") == issued["thoughtSignature"], \
            "Gemini 3 needs the function call's thoughtSignature sent back"
        frs = [p["functionResponse"] for p in contents[2]["parts"] if "functionResponse" in p]
        assert len(frs) == 1 and frs[0]["name"] == "get_weather"
        assert "sunny" in json.dumps(frs[0]["response"])


def test_tool_choice_forced_function(oc, prov):
    r = oc.chat.completions.create(model=prov["model"], messages=TOOL_MSGS, tools=TOOLS,
                                   tool_choice={"type": "function", "function": {"name": "get_time"}})
    tc = r.choices[0].message.tool_calls
    assert tc and tc[0].function.name == "get_time"
    assert json.loads(tc[0].function.arguments) == {"zone": "fake-zone"}
    body = prov["fake"].last()["body"]
    if prov["name"] == "claude":
        assert body["tool_choice"]["type"] == "tool" and body["tool_choice"]["name"] == "get_time"
    else:
        cfg = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        assert cfg.get("mode") == "ANY" and cfg.get("allowedFunctionNames") == ["get_time"]


# ---------------------------------------------------------------------------
# Errors, retries, fallback
# ---------------------------------------------------------------------------


def test_anthropic_400_is_bad_request(oc, fake_anthropic, fake):
    fake_anthropic.fail_next(400)
    with pytest.raises(openai.BadRequestError) as ei:
        oc.chat.completions.create(model="claude-fb", messages=MSGS)
    e = ei.value
    assert e.status_code == 400
    assert "fake-400-marker" in str(e.message), f"upstream message lost: {e.message!r}"
    assert isinstance(e.body, dict) and "message" in e.body, f"not an OpenAI error body: {e.body!r}"
    assert len(fake_anthropic.received()) == 1, "a 400 must not be retried"
    assert fake.received("/v1/chat/completions") == [], "a 400 must not fall back to another provider"


def test_anthropic_client_tool_call_ids_pass_through(oc, fake_anthropic):
    """Tool-call ids the client made up are sent as tool_use / tool_result ids unchanged."""
    msgs = [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "toolu_01abc", "type": "function",
                             "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "toolu_01abc", "content": "ok"}]
    r = oc.chat.completions.create(model="claude-test", messages=msgs, tools=TOOLS)
    assert r.choices[0].message.content == "The tool said: ok"
    body = fake_anthropic.last()["body"]
    use = [b for b in body["messages"][1]["content"] if b["type"] == "tool_use"]
    res = [b for b in body["messages"][2]["content"] if b["type"] == "tool_result"]
    assert use[0]["id"] == "toolu_01abc" and use[0]["input"] == {}
    assert res[0]["tool_use_id"] == "toolu_01abc"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_anthropic_529_falls_back_to_openai(oc, native_gateway, fake_anthropic, fake, stream):
    fake_anthropic.fail_next(529, count=10)
    kwargs: dict[str, Any] = {"model": "claude-fb", "messages": MSGS}
    if stream:
        raw = oc.chat.completions.with_raw_response.create(stream=True, **kwargs)
        got = collect(raw.parse())
        text, finish = got["text"], got["finish"]
    else:
        raw = oc.chat.completions.with_raw_response.create(**kwargs)
        r = raw.parse()
        text, finish = r.choices[0].message.content, [r.choices[0].finish_reason]
    assert text == DEFAULT_REPLY
    assert finish == ["stop"]
    assert raw.headers.get("x-switchyard-provider") == "openai_fake"
    assert int(raw.headers.get("x-switchyard-attempts", "0")) > 1
    tried = fake_anthropic.received()
    assert tried and all(t.get("error_status") == 529 for t in tried)
    up = fake.last()
    assert up["body"]["model"] == "gpt-5.4-mini"
    assert up["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert [m["role"] for m in up["body"]["messages"]] == ["system", "user"]


def test_anthropic_429_retried_after_retry_after(oc, fake_anthropic):
    fake_anthropic.fail_next(429)
    t0 = time.monotonic()
    raw = oc.chat.completions.with_raw_response.create(model="claude-test", messages=MSGS)
    elapsed = time.monotonic() - t0
    assert raw.parse().choices[0].message.content == ANTHROPIC_REPLY
    assert raw.headers.get("x-switchyard-provider") == "claude"
    assert raw.headers.get("x-switchyard-attempts") == "2"
    assert len(fake_anthropic.received()) == 2
    assert elapsed >= 0.8, f"retry-after: 1 was not honoured (retried after {elapsed:.3f}s)"


def test_anthropic_429_without_fallback_is_rate_limit_error(oc, fake_anthropic):
    fake_anthropic.fail_next(429, count=10)
    with pytest.raises(openai.RateLimitError) as ei:
        oc.chat.completions.create(model="claude-test", messages=MSGS)
    assert ei.value.status_code == 429


def test_anthropic_529_without_fallback_is_5xx(oc, fake_anthropic):
    fake_anthropic.fail_next(529, count=10)
    with pytest.raises(openai.APIStatusError) as ei:
        oc.chat.completions.create(model="claude-test", messages=MSGS)
    assert ei.value.status_code in (502, 503, 529), ei.value.status_code
    assert len(fake_anthropic.received()) >= 2, "an overloaded_error is retryable"


def test_anthropic_error_mid_stream(oc, fake_anthropic):
    """event: error after the stream started: the client must see an error, not a complete answer."""
    fake_anthropic.stream_error_after = 4  # message_start, ping, content_block_start, one delta
    chunks: list[Any] = []
    with pytest.raises(openai.APIError):
        for c in oc.chat.completions.create(model="claude-test", messages=MSGS, stream=True):
            chunks.append(c)
    assert not any(ch.finish_reason == "stop" for c in chunks for ch in c.choices)


def test_gemini_503_retried(oc, fake_gemini):
    fake_gemini.fail_next(503)
    raw = oc.chat.completions.with_raw_response.create(model="gemini-test", messages=MSGS)
    assert raw.parse().choices[0].message.content == GEMINI_REPLY
    assert raw.headers.get("x-switchyard-provider") == "gem"
    assert raw.headers.get("x-switchyard-attempts") == "2"
    assert [r.get("error_status") for r in fake_gemini.received()] == [503, None]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_gemini_429_falls_back_to_openai(oc, fake_gemini, fake, stream):
    fake_gemini.fail_next(429, count=10)
    kwargs: dict[str, Any] = {"model": "gemini-fb", "messages": MSGS}
    if stream:
        raw = oc.chat.completions.with_raw_response.create(stream=True, **kwargs)
        text = collect(raw.parse())["text"]
    else:
        raw = oc.chat.completions.with_raw_response.create(**kwargs)
        text = raw.parse().choices[0].message.content
    assert text == DEFAULT_REPLY
    assert raw.headers.get("x-switchyard-provider") == "openai_fake"
    assert int(raw.headers.get("x-switchyard-attempts", "0")) > 1
    assert fake_gemini.received() and all(r.get("error_status") == 429 for r in fake_gemini.received())


def test_gemini_429_without_fallback_is_rate_limit_error(oc, fake_gemini):
    fake_gemini.fail_next(429, count=10)
    with pytest.raises(openai.RateLimitError) as ei:
        oc.chat.completions.create(model="gemini-test", messages=MSGS)
    assert "fake-429-marker" in str(ei.value.message)


# ---------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------


def test_upstream_key_never_reaches_the_client(native_gateway, fake_anthropic, fake_gemini):
    base = native_gateway.base_url
    seen: list[bytes] = []

    def record(status_headers_body: tuple[int, dict[str, str], bytes]) -> int:
        status, headers, body = status_headers_body
        seen.append(json.dumps(headers).encode() + body)
        return status

    for model in ("claude-test", "gemini-test"):
        assert record(raw_post(base + "/chat/completions", {"model": model, "messages": MSGS})) == 200
        assert record(raw_post(base + "/chat/completions",
                               {"model": model, "messages": MSGS, "stream": True,
                                "stream_options": {"include_usage": True}})) == 200
    fake_anthropic.fail_next(400)
    assert record(raw_post(base + "/chat/completions", {"model": "claude-test", "messages": MSGS})) == 400
    fake_anthropic.fail_next(401)
    assert record(raw_post(base + "/chat/completions", {"model": "claude-test", "messages": MSGS})) >= 400
    fake_gemini.fail_next(429, count=10)
    assert record(raw_post(base + "/chat/completions", {"model": "gemini-test", "messages": MSGS})) == 429
    fake_anthropic.fail_next(529, count=10)
    assert record(raw_post(base + "/chat/completions", {"model": "claude-fb", "messages": MSGS})) == 200
    status, body = http_get(native_gateway.url + "/v1/models")
    assert status == 200
    seen.append(body)
    for blob in seen:
        assert UPSTREAM_KEY.encode() not in blob, "the upstream API key leaked to the client"
        assert UPSTREAM_KEY[-16:].encode() not in blob, "part of the upstream API key leaked to the client"
