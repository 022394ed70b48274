"""Switchyard's inbound Anthropic-compatible endpoint (/v1/messages), with the official `anthropic` client.

client (anthropic SDK, base_url = gateway root) -> switchyard POST /v1/messages -> the Anthropic,
Gemini or OpenAI fake, chosen by the `model` name like chat. Answers must be Anthropic messages
(or the Anthropic SSE event sequence), whatever served them.

Every test is skipped when the gateway answers /v1/messages with 404 unknown_url (endpoint not
built into this binary yet).

Run: cd /work/main && .venv/bin/pytest tests/python/test_anthropic_endpoint.py -q
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any, Iterator

import anthropic
import pytest

from conftest import DIRECT, SWITCHYARD_BIN, UPSTREAM_KEY, Gateway, tee_http_client
from fake_anthropic import ANTHROPIC_REPLY, TOOL_PREAMBLE, FakeAnthropic
from fake_gemini import GEMINI_REPLY, FakeGemini
from fake_openai import DEFAULT_REPLY, FakeOpenAI

pytestmark = pytest.mark.skipif(DIRECT, reason="needs the gateway (SWITCHYARD_TEST_TARGET=fake)")

CONFIG = """\
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

[models.gpt-test]
provider = "openai_fake"
model = "gpt-5.4-mini"

[resilience]
backoff_base_ms = 1
backoff_max_ms = 5
breaker_consecutive_failures = 1000
breaker_min_calls = 1000
"""

CLIENT_KEY = "sk-client"
SYSTEM = "You are a terse assistant who answers in one line."
USER = "Say hello to the gateway tests please."
TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "input_schema": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city", "unit"],
        },
    },
    {
        "name": "get_time",
        "description": "Current time in a zone.",
        "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
]
EXPECTED_INPUT = {"city": "fake-city", "unit": "celsius", "days": 42}
TOOL_RESULT = '{"temperature": 18, "sky": "sunny"}'

BACKENDS = ["claude-test", "gemini-test", "gpt-test"]
REPLY = {"claude-test": ANTHROPIC_REPLY, "gemini-test": GEMINI_REPLY, "gpt-test": DEFAULT_REPLY}


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


def _post(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", "x-api-key": CLIENT_KEY,
                                          "anthropic-version": "2023-06-01"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def gw(fake: FakeOpenAI, fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    if not os.path.exists(SWITCHYARD_BIN):
        pytest.fail(f"switchyard binary not found at {SWITCHYARD_BIN}")
    cfg = CONFIG.format(anthropic=fake_anthropic.base_url, gemini=fake_gemini.base_url, openai=fake.base_url)
    g = Gateway(tmp_path_factory.mktemp("anthropic-endpoint-gw"), cfg)
    status, body = _post(g.url + "/v1/messages",
                         {"model": "claude-test", "max_tokens": 5, "messages": [{"role": "user", "content": "ping"}]})
    if status == 404 and b"unknown_url" in body:
        g.stop()
        pytest.skip("the gateway's inbound Anthropic endpoint POST /v1/messages is not built into this binary yet "
                    "(404 unknown_url)")
    yield g
    rc = g.stop()
    assert rc == 0, f"switchyard exited with {rc} on SIGTERM\n{g.stderr()}"


@pytest.fixture
def ac(gw: Gateway) -> Iterator[anthropic.Anthropic]:
    c = anthropic.Anthropic(
        base_url=gw.url, api_key=CLIENT_KEY, max_retries=0, timeout=30.0, http_client=tee_http_client()
    )
    yield c
    c.close()


def _upstream(model: str, fake: FakeOpenAI, fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini) -> dict[str, Any]:
    if model == "claude-test":
        return fake_anthropic.last()
    if model == "gemini-test":
        return fake_gemini.last()
    return fake.last()


def _expected_usage(model: str, sent: dict[str, Any]) -> tuple[int, int, int]:
    """(total prompt tokens, cached prompt tokens, output tokens) the upstream reported."""
    if model == "claude-test":
        return (sent["input_tokens"] + sent["cache_read_input_tokens"] + sent["cache_creation_input_tokens"],
                sent["cache_read_input_tokens"], sent["output_tokens"])
    if model == "gemini-test":
        return (sent["promptTokenCount"], sent["cachedContentTokenCount"],
                sent["candidatesTokenCount"] + sent["thoughtsTokenCount"])
    cached = (sent.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return sent["prompt_tokens"], cached, sent["completion_tokens"]


def _check_usage(model: str, usage: Any, sent: dict[str, Any]) -> None:
    prompt, cached, out = _expected_usage(model, sent)
    got_prompt = usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
    assert got_prompt == prompt, f"usage {usage} does not add up to the upstream's prompt tokens {prompt} ({sent})"
    assert (usage.cache_read_input_tokens or 0) == cached, f"cache_read_input_tokens: {usage}, upstream sent {sent}"
    assert usage.output_tokens == out, f"output_tokens: {usage}, upstream sent {sent}"


def _text(msg: Any) -> str:
    return "".join(b.text for b in msg.content if b.type == "text")


# ---------------------------------------------------------------------------
# messages.create
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", BACKENDS)
def test_create_non_streaming(ac, model, fake, fake_anthropic, fake_gemini):
    raw = ac.messages.with_raw_response.create(model=model, max_tokens=200, system=SYSTEM,
                                               messages=[{"role": "user", "content": USER}])
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.id
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == REPLY[model]
    assert msg.stop_reason == "end_turn"
    assert msg.model
    up = _upstream(model, fake, fake_anthropic, fake_gemini)
    _check_usage(model, msg.usage, up["usage"])
    body = up["body"]
    if model == "claude-test":
        assert up["headers"].get("x-api-key") == UPSTREAM_KEY
        assert CLIENT_KEY not in json.dumps(up["headers"]), "the client's key was forwarded upstream"
        assert body["model"] == "claude-opus-4.7"
        assert body["max_tokens"] == 200
        assert body.get("system") in (SYSTEM, [{"type": "text", "text": SYSTEM}])
        assert [m["role"] for m in body["messages"]] == ["user"]
    elif model == "gemini-test":
        assert up["headers"].get("x-goog-api-key") == UPSTREAM_KEY
        assert "".join(p["text"] for p in body["systemInstruction"]["parts"]) == SYSTEM
        assert (body.get("generationConfig") or {}).get("maxOutputTokens") == 200
    else:
        assert up["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert body["model"] == "gpt-5.4-mini"
        assert body["messages"][0] == {"role": "system", "content": SYSTEM} or (
            body["messages"][0]["role"] in ("system", "developer") and SYSTEM in json.dumps(body["messages"][0]))
        assert body["messages"][-1]["role"] == "user" and USER in json.dumps(body["messages"][-1])
        assert (body.get("max_tokens") or body.get("max_completion_tokens")) == 200


@pytest.mark.parametrize("model", ["claude-test", "gpt-test"])
def test_create_max_tokens_stop_reason(ac, model):
    msg = ac.messages.create(model=model, max_tokens=3, messages=[{"role": "user", "content": USER}])
    if model == "gpt-test":
        # The OpenAI fake ignores max_tokens; the translation of "stop" must still be end_turn.
        assert msg.stop_reason == "end_turn"
    else:
        assert msg.stop_reason == "max_tokens"
        assert _text(msg) == " ".join(ANTHROPIC_REPLY.split()[:3])


def test_create_stop_sequence(ac, fake_anthropic):
    msg = ac.messages.create(model="claude-test", max_tokens=100, stop_sequences=["upstream"],
                             messages=[{"role": "user", "content": USER}])
    assert msg.stop_reason == "stop_sequence"
    assert msg.stop_sequence == "upstream"
    assert _text(msg) == ANTHROPIC_REPLY[: ANTHROPIC_REPLY.index("upstream")]
    assert fake_anthropic.last()["body"]["stop_sequences"] == ["upstream"]


def test_multi_turn_with_content_blocks(ac, fake_anthropic):
    msgs = [
        {"role": "user", "content": [{"type": "text", "text": "First question."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "First answer."}]},
        {"role": "user", "content": "Second question."},
    ]
    msg = ac.messages.create(model="claude-test", max_tokens=50, system=[{"type": "text", "text": SYSTEM}],
                             messages=msgs)
    assert _text(msg) == ANTHROPIC_REPLY
    body = fake_anthropic.last()["body"]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert "First answer." in json.dumps(body["messages"][1])
    assert SYSTEM in json.dumps(body.get("system"))


# ---------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", BACKENDS)
def test_stream_helper(ac, model, fake, fake_anthropic, fake_gemini):
    pieces: list[str] = []
    with ac.messages.stream(model=model, max_tokens=200, system=SYSTEM,
                            messages=[{"role": "user", "content": USER}]) as stream:
        for t in stream.text_stream:
            pieces.append(t)
        final = stream.get_final_message()
    assert "".join(pieces) == REPLY[model]
    assert len(pieces) >= 2, "the answer was not streamed incrementally"
    assert _text(final) == REPLY[model]
    assert final.stop_reason == "end_turn"
    assert final.usage is not None
    up = _upstream(model, fake, fake_anthropic, fake_gemini)
    _check_usage(model, final.usage, up["usage"])


@pytest.mark.parametrize("model", BACKENDS)
def test_raw_event_sequence(ac, model):
    events = list(ac.messages.create(model=model, max_tokens=200, stream=True,
                                     messages=[{"role": "user", "content": USER}]))
    types = [e.type for e in events if e.type != "ping"]
    assert types[0] == "message_start" and types[-1] == "message_stop", types
    assert types[-2] == "message_delta", types
    start = events[0].message
    assert start.role == "assistant" and start.content == [] and start.stop_reason is None
    # Content blocks are well nested: start, deltas, stop, with consistent indexes.
    open_idx: int | None = None
    seen: list[int] = []
    for e in events:
        if e.type == "content_block_start":
            assert open_idx is None, "a block started before the previous one stopped"
            open_idx = e.index
            seen.append(e.index)
        elif e.type == "content_block_delta":
            assert e.index == open_idx
        elif e.type == "content_block_stop":
            assert e.index == open_idx
            open_idx = None
    assert open_idx is None and seen == list(range(len(seen))) and seen
    delta = [e for e in events if e.type == "message_delta"][-1]
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens > 0


def test_stream_upstream_error_event(ac, fake_anthropic):
    fake_anthropic.stream_error_after = 4
    with pytest.raises(anthropic.APIError):
        with ac.messages.stream(model="claude-test", max_tokens=100,
                                messages=[{"role": "user", "content": USER}]) as stream:
            for _ in stream.text_stream:
                pass
            stream.get_final_message()


# ---------------------------------------------------------------------------
# Tool use
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", BACKENDS)
def test_tool_use_round_trip(ac, model, stream, fake, fake_anthropic, fake_gemini):
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris?"}]
    if stream:
        with ac.messages.stream(model=model, max_tokens=300, tools=TOOLS, messages=msgs) as s:
            first = s.get_final_message()
    else:
        first = ac.messages.create(model=model, max_tokens=300, tools=TOOLS, messages=msgs)
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert len(uses) == 1
    use = uses[0]
    assert use.name == "get_weather"
    assert use.input == EXPECTED_INPUT
    assert use.id
    if model == "claude-test":
        assert _text(first) == TOOL_PREAMBLE
        up_tools = fake_anthropic.last()["body"]["tools"]
        assert [t["name"] for t in up_tools] == ["get_weather", "get_time"]
        assert up_tools[0]["input_schema"]["properties"] == TOOLS[0]["input_schema"]["properties"]

    msgs2 = msgs + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": TOOL_RESULT}]},
    ]
    if stream:
        with ac.messages.stream(model=model, max_tokens=300, tools=TOOLS, messages=msgs2) as s:
            text = "".join(s.text_stream)
            second = s.get_final_message()
        assert text == _text(second)
    else:
        second = ac.messages.create(model=model, max_tokens=300, tools=TOOLS, messages=msgs2)
    assert second.stop_reason == "end_turn"
    assert not [b for b in second.content if b.type == "tool_use"]
    final = _text(second)
    if model == "claude-test":
        assert final == "The tool said: " + TOOL_RESULT
        body = fake_anthropic.last()["body"]
        res = [b for b in body["messages"][-1]["content"] if b["type"] == "tool_result"]
        assert res and res[0]["tool_use_id"] == use.id
    elif model == "gpt-test":
        assert final == "The tool said: " + TOOL_RESULT
        body = fake.last()["body"]
        tool_msgs = [m for m in body["messages"] if m["role"] == "tool"]
        assert len(tool_msgs) == 1 and tool_msgs[0]["tool_call_id"] == use.id
        calls = [m for m in body["messages"] if m.get("tool_calls")]
        assert calls and calls[-1]["tool_calls"][0]["id"] == use.id
        assert json.loads(calls[-1]["tool_calls"][0]["function"]["arguments"]) == EXPECTED_INPUT
    else:
        assert final.startswith("The function returned: ") and "sunny" in final, final


# ---------------------------------------------------------------------------
# count_tokens, errors, headers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["claude-test", "gpt-test"])
def test_count_tokens(ac, model):
    short = ac.messages.count_tokens(model=model, messages=[{"role": "user", "content": "Hi."}])
    long_text = " ".join(["The quick brown fox jumps over the lazy dog."] * 40)
    long = ac.messages.count_tokens(model=model, system=SYSTEM, messages=[{"role": "user", "content": long_text}],
                                    tools=TOOLS)
    assert isinstance(short.input_tokens, int) and short.input_tokens > 0
    assert long.input_tokens > short.input_tokens + 100, (short.input_tokens, long.input_tokens)
    # An estimate, but in the right range: ~360 words of English is a few hundred tokens.
    assert 200 <= long.input_tokens <= 2000, long.input_tokens


def test_unknown_model_is_not_found(ac, fake_anthropic, fake):
    with pytest.raises(anthropic.NotFoundError) as ei:
        ac.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    body = ei.value.body
    assert isinstance(body, dict) and body.get("type") == "error", f"not an Anthropic error body: {body!r}"
    assert body["error"]["type"] == "not_found_error"
    assert "no-such-model" in body["error"]["message"]
    assert fake_anthropic.received() == [] and fake.received("/v1/chat/completions") == []


def test_upstream_400_is_bad_request(ac, fake_anthropic):
    fake_anthropic.fail_next(400)
    with pytest.raises(anthropic.BadRequestError) as ei:
        ac.messages.create(model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert ei.value.body["error"]["type"] == "invalid_request_error"
    assert "fake-400-marker" in ei.value.body["error"]["message"]


def test_overloaded_falls_back_to_openai(ac, fake_anthropic, fake):
    fake_anthropic.fail_next(529, count=10)
    raw = ac.messages.with_raw_response.create(model="claude-fb", max_tokens=50,
                                               messages=[{"role": "user", "content": USER}])
    msg = raw.parse()
    assert _text(msg) == DEFAULT_REPLY
    assert raw.headers.get("x-switchyard-provider") == "openai_fake"
    assert int(raw.headers.get("x-switchyard-attempts", "0")) > 1
    assert fake.last()["body"]["model"] == "gpt-5.4-mini"


def test_anthropic_beta_and_version_forwarded(ac, fake_anthropic):
    beta = "prompt-caching-2024-07-31,token-efficient-tools-2025-02-19"
    ac.messages.create(model="claude-test", max_tokens=20, messages=[{"role": "user", "content": "hi"}],
                       extra_headers={"anthropic-beta": beta, "anthropic-version": "2023-06-01"})
    h = fake_anthropic.last()["headers"]
    assert h.get("anthropic-beta") == beta
    assert h.get("anthropic-version") == "2023-06-01"
    # Streaming too, and via the SDK's own `betas` parameter.
    with ac.beta.messages.stream(model="claude-test", max_tokens=20, betas=["interleaved-thinking-2025-05-14"],
                                 messages=[{"role": "user", "content": "hi"}]) as s:
        s.get_final_message()
    h = fake_anthropic.last()["headers"]
    assert h.get("anthropic-beta") == "interleaved-thinking-2025-05-14"


def test_no_beta_header_when_client_sends_none(ac, fake_anthropic):
    ac.messages.create(model="claude-test", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    h = fake_anthropic.last()["headers"]
    assert "anthropic-beta" not in h
    assert h.get("anthropic-version")
