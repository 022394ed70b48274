"""Drop-in compatibility of Switchyard with the official `openai` Python client.

The client talks to the gateway; the gateway talks to the in-process fake
upstream (fake_openai.py), which records what reached it. With
SWITCHYARD_TEST_TARGET=fake the client talks to the fake directly (gateway-only
tests are skipped), which validates the fake and the tests themselves.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import signal
import struct
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from conftest import CLIENT_KEY, DIRECT, UPSTREAM_KEY, http_get, make_client, upstream_model
from fake_openai import (
    DEFAULT_REPLY,
    REASONING_TOKENS,
    RETRY_AFTER_SECONDS,
    SYSTEM_FINGERPRINT,
    chat_usage,
    count_prompt_tokens,
    count_text_tokens,
    fake_embedding,
    tool_arguments,
)

gateway_only = pytest.mark.gateway_only

USER_MSGS = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Say hello to the gateway tests please."},
]

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
TOOL_RESULT = '{"temperature": 18, "sky": "sunny"}'


def fast_cost(prompt: int, completion: int, cached: int) -> float:
    """USD for model "fast": input 0.4, cached input 0.04, output 1.6 per 1M tokens."""
    return ((prompt - cached) * 0.4 + cached * 0.04 + completion * 1.6) / 1e6


def post_json(url: str, body: Any, headers: dict[str, str] | None = None, timeout: float = 30.0):
    """Raw POST (bypassing the client); returns (status, headers, body bytes)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}"}
    h.update(headers or {})
    req = urllib.request.Request(url, data=data, headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers.items()), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read()


def sse_events(raw: bytes) -> list[str]:
    """The `data:` payloads of an SSE body, in order (comments ignored)."""
    out = []
    for block in re.split(r"\r?\n\r?\n", raw.decode()):
        if not block.strip():
            continue
        data_lines = []
        for line in re.split(r"\r?\n", block):
            if line.startswith(":") or not line:
                continue
            field, _, value = line.partition(":")
            assert field in ("data", "event", "id", "retry"), f"bad SSE line {line!r}"
            if field == "data":
                data_lines.append(value[1:] if value.startswith(" ") else value)
        if data_lines:
            out.append("\n".join(data_lines))
    return out


def collect_stream(stream) -> dict[str, Any]:
    """Drains a client stream: text, usage chunks, tool calls, finish reason."""
    chunks = list(stream)
    text = ""
    finish = None
    calls: dict[int, dict[str, Any]] = {}
    fragments = 0
    for ch in chunks:
        assert ch.object == "chat.completion.chunk"
        for choice in ch.choices:
            d = choice.delta
            if d.content:
                text += d.content
            for tc in d.tool_calls or []:
                c = calls.setdefault(tc.index, {"id": None, "type": None, "name": "", "arguments": ""})
                if tc.id:
                    c["id"] = tc.id
                if tc.type:
                    c["type"] = tc.type
                if tc.function and tc.function.name:
                    c["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    c["arguments"] += tc.function.arguments
                    fragments += 1
            if choice.finish_reason:
                finish = choice.finish_reason
    return {"chunks": chunks, "text": text, "finish": finish, "calls": calls, "fragments": fragments}


# ---------------------------------------------------------------------------
# Chat: non-streaming
# ---------------------------------------------------------------------------


def test_chat_non_streaming(client, fake):
    comp = client.chat.completions.create(model="fast", messages=USER_MSGS)
    assert comp.object == "chat.completion"
    assert comp.id.startswith("chatcmpl-")
    assert len(comp.choices) == 1
    ch = comp.choices[0]
    assert ch.message.role == "assistant"
    assert ch.message.content == DEFAULT_REPLY
    assert ch.finish_reason == "stop"
    assert comp.system_fingerprint == SYSTEM_FINGERPRINT
    prompt = count_prompt_tokens(USER_MSGS)
    completion = count_text_tokens(DEFAULT_REPLY)
    assert comp.usage.prompt_tokens == prompt
    assert comp.usage.completion_tokens == completion
    assert comp.usage.total_tokens == prompt + completion
    assert comp.usage.prompt_tokens_details.cached_tokens == 0

    up = fake.received("/v1/chat/completions")
    assert len(up) == 1, f"upstream got {len(up)} chat requests for one client request"
    assert up[0]["body"]["model"] == upstream_model("fast")
    assert up[0]["body"]["messages"] == USER_MSGS
    assert "stream" not in up[0]["body"] or up[0]["body"]["stream"] is False


@gateway_only
def test_chat_response_headers(client, fake):
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=USER_MSGS)
    comp = raw.parse()
    assert comp.choices[0].message.content == DEFAULT_REPLY
    h = raw.headers
    assert h.get("x-request-id"), "x-request-id missing"
    assert h.get("x-switchyard-model") == "fast", f"x-switchyard-model={h.get('x-switchyard-model')!r}"
    assert h.get("x-switchyard-provider") == "fake", f"x-switchyard-provider={h.get('x-switchyard-provider')!r}"
    overhead = h.get("x-switchyard-overhead-ms")
    assert overhead is not None and float(overhead) >= 0, f"x-switchyard-overhead-ms={overhead!r}"
    cost = h.get("x-switchyard-cost-usd")
    assert cost is not None, "x-switchyard-cost-usd missing on a non-streaming response"
    want = fast_cost(comp.usage.prompt_tokens, comp.usage.completion_tokens, 0)
    # The header may be rounded to 8 decimals (1e-8 USD).
    assert math.isclose(float(cost), want, rel_tol=1e-6, abs_tol=1e-8), f"x-switchyard-cost-usd={cost}, want {want}"
    assert h.get("content-type", "").startswith("application/json")


@gateway_only
def test_request_id_is_echoed(client):
    rid = "e2e-" + uuid.uuid4().hex
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=USER_MSGS, extra_headers={"x-request-id": rid}
    )
    assert raw.headers.get("x-request-id") == rid
    other = client.chat.completions.with_raw_response.create(model="fast", messages=USER_MSGS)
    assert other.headers.get("x-request-id") not in (None, "", rid)


@gateway_only
def test_alias_and_passthrough_model_names(client, fake):
    comp = client.chat.completions.create(model="default", messages=USER_MSGS)
    assert comp.choices[0].message.content == DEFAULT_REPLY
    assert fake.last()["body"]["model"] == "gpt-5.4-mini"

    raw = client.chat.completions.with_raw_response.create(model="gpt-5.4", messages=USER_MSGS)
    assert raw.parse().choices[0].message.content == DEFAULT_REPLY
    assert fake.last()["body"]["model"] == "gpt-5.4", "pass-through name must be forwarded as given"
    assert raw.headers.get("x-switchyard-provider") == "fake"


@gateway_only
def test_upstream_gets_upstream_key_not_client_key(client, fake):
    client.chat.completions.create(model="fast", messages=USER_MSGS)
    client.embeddings.create(model="embed", input="key check")
    for rec in fake.received():
        assert rec["headers"].get("authorization") == f"Bearer {UPSTREAM_KEY}", rec["path"]
        for k, v in rec["headers"].items():
            assert CLIENT_KEY not in v, f"client key forwarded upstream in header {k}"


def test_unknown_fields_pass_through(client, fake):
    params: dict[str, Any] = {
        "messages": [
            {"role": "developer", "content": "Answer in JSON."},
            {"role": "user", "content": [{"type": "text", "text": "Describe the weather"}], "name": "alice"},
        ],
        "seed": 1234,
        "logprobs": True,
        "top_logprobs": 2,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "answer",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {"a": {"type": "string"}},
                    "required": ["a"],
                    "additionalProperties": False,
                },
            },
        },
        "reasoning_effort": "low",
        "temperature": 0.25,
        "top_p": 0.5,
        "max_completion_tokens": 64,
        "stop": ["END"],
        "presence_penalty": 0.1,
        "frequency_penalty": -0.2,
        "logit_bias": {"50256": -100},
        "user": "user-42",
        "metadata": {"trace": "abc"},
        "store": False,
        "service_tier": "auto",
        "n": 1,
    }
    extra = {"x_vendor_extension": {"nested": [1, 2.5, None, True], "s": "ü ☃"}, "top_k": 3}
    comp = client.chat.completions.create(model="fast", **params, extra_body=extra)
    assert comp.choices[0].message.content == DEFAULT_REPLY
    assert comp.usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS
    body = fake.last()["body"]
    want = {**params, **extra, "model": upstream_model("fast")}
    missing = {k for k in want if k not in body}
    assert not missing, f"fields dropped on the way upstream: {sorted(missing)}"
    changed = {k: (want[k], body[k]) for k in want if body[k] != want[k]}
    assert not changed, f"fields changed on the way upstream (sent, received): {changed}"
    added = {k: body[k] for k in body if k not in want}
    assert not added, f"fields added on the way upstream to a non-streaming request: {added}"


def test_cached_tokens_reported(client, fake):
    comp = client.chat.completions.create(model="fast", messages=USER_MSGS, prompt_cache_key="e2e-cache")
    prompt = count_prompt_tokens(USER_MSGS)
    assert comp.usage.prompt_tokens == prompt
    assert comp.usage.prompt_tokens_details.cached_tokens == prompt // 2 > 0
    assert fake.last()["body"]["prompt_cache_key"] == "e2e-cache"


# ---------------------------------------------------------------------------
# Chat: streaming
# ---------------------------------------------------------------------------


def test_stream_with_usage(client, fake):
    stream = client.chat.completions.create(
        model="fast", messages=USER_MSGS, stream=True, stream_options={"include_usage": True}
    )
    got = collect_stream(stream)
    chunks = got["chunks"]
    assert got["text"] == DEFAULT_REPLY
    assert got["finish"] == "stop"
    assert len(chunks) >= 3, "expected several chunks (role, content pieces, finish, usage)"
    usage_chunks = [i for i, c in enumerate(chunks) if c.usage is not None]
    assert usage_chunks == [len(chunks) - 1], f"usage chunks at {usage_chunks} of {len(chunks)}; want exactly the last"
    last = chunks[-1]
    assert last.choices == []
    assert all(c.choices for c in chunks[:-1]), "only the usage chunk may have empty choices"
    assert last.usage.prompt_tokens == count_prompt_tokens(USER_MSGS)
    assert last.usage.completion_tokens == count_text_tokens(DEFAULT_REPLY)
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1, "all chunks of one stream share an id"

    body = fake.last()["body"]
    assert body["model"] == upstream_model("fast")
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream_options", [None, {"include_usage": False}], ids=["absent", "false"])
def test_stream_without_usage(client, fake, stream_options):
    kwargs: dict[str, Any] = {}
    if stream_options is not None:
        kwargs["stream_options"] = stream_options
    stream = client.chat.completions.create(model="fast", messages=USER_MSGS, stream=True, **kwargs)
    got = collect_stream(stream)
    assert got["text"] == DEFAULT_REPLY
    assert got["finish"] == "stop"
    for i, c in enumerate(got["chunks"]):
        assert c.usage is None, f"chunk {i} carries usage though the client did not ask for it: {c.usage}"
        assert c.choices, f"chunk {i} has empty choices (a usage-only chunk leaked through)"
    body = fake.last()["body"]
    assert body["stream"] is True
    if not DIRECT:
        assert (body.get("stream_options") or {}).get("include_usage") is True, (
            f"gateway must ask upstream for usage on streams; sent stream_options={body.get('stream_options')!r}"
        )


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_wire_format(gateway, fake, include_usage):
    body: dict[str, Any] = {"model": "fast", "messages": USER_MSGS, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    status, headers, raw = post_json(gateway.base_url + "/chat/completions", body)
    assert status == 200, raw[:500]
    ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    assert ctype.startswith("text/event-stream"), ctype
    events = sse_events(raw)
    assert events and events[-1] == "[DONE]", f"stream must end with data: [DONE]; last events {events[-2:]}"
    assert events.count("[DONE]") == 1
    objs = [json.loads(e) for e in events[:-1]]
    assert all(o["object"] == "chat.completion.chunk" for o in objs)
    text = "".join((ch["delta"].get("content") or "") for o in objs for ch in o["choices"])
    assert text == DEFAULT_REPLY
    with_usage = [o for o in objs if o.get("usage")]
    if include_usage:
        assert len(with_usage) == 1 and with_usage[0] is objs[-1] and objs[-1]["choices"] == []
    else:
        assert with_usage == [] and all(o["choices"] for o in objs)


def test_async_client_stream(gateway):
    async def run() -> tuple[str, Any]:
        ac = openai.AsyncOpenAI(base_url=gateway.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=30.0)
        try:
            stream = await ac.chat.completions.create(
                model="fast", messages=USER_MSGS, stream=True, stream_options={"include_usage": True}
            )
            text, usage = "", None
            async for c in stream:
                for ch in c.choices:
                    text += ch.delta.content or ""
                if c.usage:
                    usage = c.usage
            return text, usage
        finally:
            await ac.close()

    text, usage = asyncio.run(run())
    assert text == DEFAULT_REPLY
    assert usage is not None and usage.completion_tokens == count_text_tokens(DEFAULT_REPLY)


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_fragmented_upstream_events(client, fake, include_usage):
    """Upstream SSE events split across TCP writes must be reassembled, usage rules intact."""
    fake.fragment_events = True
    kwargs: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    got = collect_stream(client.chat.completions.create(model="fast", messages=USER_MSGS, stream=True, **kwargs))
    assert got["text"] == DEFAULT_REPLY
    usage_idx = [i for i, c in enumerate(got["chunks"]) if c.usage is not None]
    if include_usage:
        assert usage_idx == [len(got["chunks"]) - 1] and got["chunks"][-1].choices == []
        assert got["chunks"][-1].usage.completion_tokens == count_text_tokens(DEFAULT_REPLY)
    else:
        assert usage_idx == [] and all(c.choices for c in got["chunks"])


def test_upstream_dies_mid_stream(client, fake, gateway):
    """A stream cut by the upstream must not look like a complete answer to the client."""
    fake.truncate_stream_after = 4
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="fast", messages=USER_MSGS, stream=True))
    if not DIRECT:
        status, _, raw = post_json(gateway.base_url + "/chat/completions",
                                   {"model": "fast", "messages": USER_MSGS, "stream": True})
        events = sse_events(raw)
        assert "[DONE]" not in events, "a truncated upstream stream was closed with [DONE] as if complete"


def test_stream_is_incremental(client, fake):
    """Chunks must be relayed as they arrive, not buffered until the upstream finishes."""
    fake.chunk_delay = 0.1
    t0 = time.monotonic()
    stream = client.chat.completions.create(model="fast", messages=USER_MSGS, stream=True)
    arrivals = []
    text = ""
    for c in stream:
        for ch in c.choices:
            if ch.delta.content:
                text += ch.delta.content
                arrivals.append(time.monotonic() - t0)
    total = time.monotonic() - t0
    assert text == DEFAULT_REPLY
    assert total >= 0.9, f"stream took {total:.2f}s; the fake's delays should make it >= 0.9s"
    assert arrivals[0] < total - 0.6, (
        f"first content after {arrivals[0]:.2f}s of a {total:.2f}s stream: the stream is buffered"
    )
    assert arrivals[-1] - arrivals[0] >= 0.5, f"content chunks arrived together: {arrivals}"


def test_client_disconnect_mid_stream(client, fake, gateway):
    fake.chunk_delay = 0.1
    stream = client.chat.completions.create(model="fast", messages=USER_MSGS, stream=True)
    it = iter(stream)
    first = next(it)
    assert first.object == "chat.completion.chunk"
    stream.close()
    fake.chunk_delay = 0.0
    comp = client.chat.completions.create(model="fast", messages=USER_MSGS)
    assert comp.choices[0].message.content == DEFAULT_REPLY
    if not DIRECT:
        assert http_get(gateway.url + "/health")[0] == 200


# ---------------------------------------------------------------------------
# Tool calls
# ---------------------------------------------------------------------------


def _norm_msg(m: dict[str, Any]) -> dict[str, Any]:
    """A message with `content: null` treated like an absent content."""
    return {k: v for k, v in m.items() if not (k == "content" and v is None)}


def test_tool_call_round_trip(client, fake):
    msgs: list[Any] = [{"role": "user", "content": "What's the weather in Paris?"}]
    first = client.chat.completions.create(model="fast", messages=msgs, tools=TOOLS, tool_choice="auto")
    ch = first.choices[0]
    assert ch.finish_reason == "tool_calls"
    assert ch.message.content is None
    assert len(ch.message.tool_calls) == 1
    tc = ch.message.tool_calls[0]
    assert tc.type == "function"
    assert tc.id.startswith("call_")
    assert tc.function.name == "get_weather"
    assert json.loads(tc.function.arguments) == tool_arguments(TOOLS[0])
    up1 = fake.last()["body"]
    assert up1["tools"] == TOOLS and up1["tool_choice"] == "auto"

    # The usual client idiom: append the returned message object itself.
    msgs.append(ch.message)
    msgs.append({"role": "tool", "tool_call_id": tc.id, "content": TOOL_RESULT})
    second = client.chat.completions.create(model="fast", messages=msgs, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == f"The tool said: {TOOL_RESULT}"
    assert second.choices[0].message.tool_calls is None

    up2 = fake.last()["body"]["messages"]
    assert [m["role"] for m in up2] == ["user", "assistant", "tool"]
    assistant = up2[1]
    assert assistant["tool_calls"][0]["id"] == tc.id
    assert assistant["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": tc.function.arguments}
    assert up2[2] == {"role": "tool", "tool_call_id": tc.id, "content": TOOL_RESULT}


def test_tool_call_round_trip_streaming(client, fake):
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Oslo, streamed?"}]
    got = collect_stream(client.chat.completions.create(model="fast", messages=msgs, tools=TOOLS, stream=True))
    assert got["finish"] == "tool_calls"
    assert got["text"] == ""
    assert list(got["calls"]) == [0]
    call = got["calls"][0]
    assert call["id"] and call["id"].startswith("call_")
    assert call["type"] == "function"
    assert call["name"] == "get_weather"
    assert got["fragments"] >= 2, "arguments should arrive as several fragments"
    assert json.loads(call["arguments"]) == tool_arguments(TOOLS[0])

    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}
        ],
    }
    tool_msg = {"role": "tool", "tool_call_id": call["id"], "content": TOOL_RESULT}
    msgs2 = msgs + [assistant, tool_msg]
    got2 = collect_stream(
        client.chat.completions.create(
            model="fast", messages=msgs2, tools=TOOLS, stream=True, stream_options={"include_usage": True}
        )
    )
    assert got2["finish"] == "stop"
    assert got2["text"] == f"The tool said: {TOOL_RESULT}"
    assert got2["calls"] == {}
    assert got2["chunks"][-1].usage is not None
    up = fake.last()["body"]["messages"]
    assert [_norm_msg(m) for m in up] == [_norm_msg(m) for m in msgs2]


def test_stream_helper_final_completion(client):
    with client.chat.completions.stream(
        model="fast", messages=[{"role": "user", "content": "weather via helper"}], tools=TOOLS
    ) as s:
        final = s.get_final_completion()
    tc = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls"
    assert tc.function.name == "get_weather"
    assert json.loads(tc.function.arguments) == tool_arguments(TOOLS[0])


# ---------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------


def test_embeddings_float(client, fake):
    texts = ["alpha beta", "gamma"]
    res = client.embeddings.create(model="embed", input=texts, encoding_format="float")
    assert res.object == "list"
    assert [d.index for d in res.data] == [0, 1]
    for d, t in zip(res.data, texts):
        assert d.object == "embedding"
        assert d.embedding == fake_embedding(t)
    assert res.usage.prompt_tokens == 3 and res.usage.total_tokens == 3
    body = fake.last("/v1/embeddings")["body"]
    assert body == {"model": upstream_model("embed"), "input": texts, "encoding_format": "float"}


def test_embeddings_default_base64(client, fake):
    raw = client.embeddings.with_raw_response.create(model="embed", input="hello embeddings", dimensions=12)
    wire = raw.http_response.json()
    b64 = wire["data"][0]["embedding"]
    assert isinstance(b64, str), "with the client's default the wire format is base64"
    want = fake_embedding("hello embeddings", 12)
    assert list(struct.unpack("<12f", base64.b64decode(b64))) == want
    res = raw.parse()
    assert res.data[0].embedding == want, "client-decoded vector differs from the upstream's"
    body = fake.last("/v1/embeddings")["body"]
    assert body["encoding_format"] == "base64"
    assert body["dimensions"] == 12
    assert body["model"] == upstream_model("embed")


def test_embeddings_plain_call(client):
    res = client.embeddings.create(model="embed", input=["one", "two words", "three little words"])
    assert [d.embedding for d in res.data] == [fake_embedding(t) for t in ["one", "two words", "three little words"]]


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


@gateway_only
def test_models_list_and_retrieve(client):
    page = client.models.list()
    models = list(page)
    ids = [m.id for m in models]
    # The configured models, the alias, and the default `auto` route built from them.
    assert sorted(ids) == ["auto", "default", "embed", "fast"], ids
    for m in models:
        assert m.object == "model"
        assert isinstance(m.created, int)
        assert isinstance(m.owned_by, str) and m.owned_by
    for mid in ("fast", "embed", "default"):
        got = client.models.retrieve(mid)
        assert got.id == mid and got.object == "model"


def test_models_retrieve_unknown(client):
    with pytest.raises(openai.NotFoundError) as ei:
        client.models.retrieve("no-such-model-xyz")
    assert ei.value.status_code == 404


@gateway_only
def test_health_and_ready(gateway):
    assert http_get(gateway.url + "/health")[0] == 200
    assert http_get(gateway.url + "/ready")[0] == 200


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def _error_json(e: openai.APIStatusError) -> dict[str, Any]:
    body = e.response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    for k in ("message", "type", "param", "code"):
        assert k in err, f"error object lacks {k!r}: {err}"
    assert isinstance(err["message"], str) and err["message"]
    return err


@gateway_only
@pytest.mark.parametrize("stream", [False, True])
def test_unknown_model_not_found(client, fake, stream):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(model="no-such-model", messages=USER_MSGS, stream=stream)
    e = ei.value
    assert e.status_code == 404
    assert e.code == "model_not_found"
    err = _error_json(e)
    assert err["code"] == "model_not_found"
    assert fake.received() == [], "an unknown model must not reach the upstream"


@gateway_only
def test_unknown_embedding_model_not_found(client, fake):
    with pytest.raises(openai.NotFoundError) as ei:
        client.embeddings.create(model="no-such-embedder", input="x")
    assert ei.value.code == "model_not_found"
    assert fake.received() == []


def test_empty_messages_bad_request(client):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="fast", messages=[])
    assert ei.value.status_code == 400
    _error_json(ei.value)


def test_missing_messages_bad_request(gateway, fake):
    status, _, raw = post_json(gateway.base_url + "/chat/completions", {"model": "fast"})
    assert status == 400, raw[:300]
    err = json.loads(raw)["error"]
    assert err["param"] == "messages", err
    assert err["type"] == "invalid_request_error", err
    if not DIRECT:
        assert fake.received() == [], "an invalid request must not reach the upstream"


def test_malformed_json_bad_request(gateway):
    status, _, raw = post_json(gateway.base_url + "/chat/completions", b'{"model": "fast", "messages": [')
    assert status == 400, raw[:300]
    err = json.loads(raw)["error"]
    assert err["type"] == "invalid_request_error" and err["message"], err


def test_upstream_400_passed_through(client, fake):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="gpt-fail-400", messages=USER_MSGS)
    e = ei.value
    assert e.status_code == 400
    assert "fake-400-marker" in e.message, e.message
    err = _error_json(e)
    assert err["param"] == "temperature" and err["code"] == "invalid_value", err
    assert len(fake.received("/v1/chat/completions")) == 1, "a 400 must not be retried"


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_500_is_server_error(client, fake, stream):
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(model="gpt-fail-500", messages=USER_MSGS, stream=stream)
    assert ei.value.status_code == (500 if DIRECT else 502)
    _error_json(ei.value)
    assert fake.received("/v1/chat/completions"), "the request should have reached the upstream"


def test_upstream_500_on_configured_model(client, fake):
    fake.fail_next(500, count=20)
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(model="fast", messages=USER_MSGS)
    assert ei.value.status_code == (500 if DIRECT else 502)
    fake.reset()
    comp = client.chat.completions.create(model="fast", messages=USER_MSGS)
    assert comp.choices[0].message.content == DEFAULT_REPLY


def test_upstream_429_rate_limit(client, fake):
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model="gpt-fail-429", messages=USER_MSGS)
    e = ei.value
    assert e.status_code == 429
    assert e.response.headers.get("retry-after") == str(RETRY_AFTER_SECONDS)
    assert "fake-429-marker" in e.message


@gateway_only
def test_upstream_401_is_not_the_clients_fault(client, fake):
    """The upstream refusing the gateway's key must not look like a bad client key (401)."""
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(model="gpt-fail-401", messages=USER_MSGS)
    assert not isinstance(ei.value, openai.AuthenticationError), "upstream 401 surfaced as the client's 401"
    assert ei.value.status_code == 502
    _error_json(ei.value)


def test_upstream_transient_500_then_success(client, fake):
    """One upstream 500: the client sees either a 5xx or (if the gateway retries) the answer."""
    fake.fail_next(500, count=1)
    try:
        comp = client.chat.completions.create(model="fast", messages=USER_MSGS)
    except openai.InternalServerError as e:
        assert e.status_code == (500 if DIRECT else 502)
    else:
        assert comp.choices[0].message.content == DEFAULT_REPLY
        assert len(fake.received("/v1/chat/completions")) == 2


# ---------------------------------------------------------------------------
# Concurrency
# ---------------------------------------------------------------------------


def test_concurrent_requests(client, fake):
    def one(i: int) -> str:
        msgs = [{"role": "user", "content": f"request number {i}"}]
        if i % 2:
            return collect_stream(client.chat.completions.create(model="fast", messages=msgs, stream=True))["text"]
        return client.chat.completions.create(model="fast", messages=msgs).choices[0].message.content

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, range(12)))
    assert results == [DEFAULT_REPLY] * 12
    got = sorted(r["body"]["messages"][0]["content"] for r in fake.received("/v1/chat/completions"))
    assert got == sorted(f"request number {i}" for i in range(12))


# ---------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------


@gateway_only
def test_upstream_key_never_leaks(start_gateway, fake):
    gw = start_gateway(env={"RUST_LOG": "info,switchyard=debug"})
    c = make_client(gw.base_url)
    seen: list[tuple[str, str]] = []  # (what, text)

    def keep(what: str, resp) -> None:
        seen.append((what + " body", resp.text))
        seen.append((what + " headers", json.dumps(dict(resp.headers.items()))))

    r = c.chat.completions.with_raw_response.create(model="fast", messages=USER_MSGS)
    keep("chat", r.http_response)
    r = c.embeddings.with_raw_response.create(model="embed", input="leak check")
    keep("embeddings", r.http_response)
    r = c.models.with_raw_response.list()
    keep("models", r.http_response)
    status, headers, raw = post_json(gw.base_url + "/chat/completions", {"model": "fast", "messages": USER_MSGS,
                                                                        "stream": True})
    seen.append(("stream", raw.decode() + json.dumps(headers)))

    # Upstream errors whose text contains the key must be scrubbed.
    for status_code, exc in ((400, openai.BadRequestError), (500, openai.InternalServerError),
                             (429, openai.RateLimitError)):
        fake.fail_next(status_code, count=10, message=f"Incorrect API key provided: {UPSTREAM_KEY} (upstream echo)")
        with pytest.raises(exc) as ei:
            c.chat.completions.create(model="fast", messages=USER_MSGS)
        keep(f"upstream {status_code}", ei.value.response)
        fake.reset()
    # Unknown model, bad request.
    with pytest.raises(openai.NotFoundError) as ei:
        c.chat.completions.create(model="nope", messages=USER_MSGS)
    keep("404", ei.value.response)
    for path in ("/health", "/ready"):
        seen.append((path, http_get(gw.url + path)[1].decode(errors="replace")))
    c.close()

    rc = gw.stop()
    assert rc == 0
    seen.append(("gateway stderr", gw.stderr()))
    seen.append(("gateway stdout", gw.stdout()))
    leaks = [what for what, text in seen if UPSTREAM_KEY in text]
    assert not leaks, f"upstream key found in: {leaks}"
    # The secret part alone must not appear either (e.g. a partially masked key).
    secret_tail = UPSTREAM_KEY[-16:]
    leaks = [what for what, text in seen if secret_tail in text]
    assert not leaks, f"upstream key suffix found in: {leaks}"


# ---------------------------------------------------------------------------
# Ledger
# ---------------------------------------------------------------------------


@gateway_only
def test_ledger_flushes_while_running(client, gateway):
    rid = "e2e-flush-" + uuid.uuid4().hex
    client.chat.completions.create(model="fast", messages=USER_MSGS, extra_headers={"x-request-id": rid})
    deadline = time.monotonic() + 3.0
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if gateway.ledger_path.exists():
            try:
                rows = [r for r in gateway.ledger_rows() if r["request_id"] == rid]
            except Exception:  # noqa: BLE001 - table may not exist yet
                rows = []
            if rows:
                break
        time.sleep(0.05)
    assert len(rows) == 1, "ledger row not written within 3 s of the response while the gateway runs"


@gateway_only
def test_ledger_rows_tokens_and_cost(start_gateway, fake):
    gw = start_gateway()
    c = make_client(gw.base_url)
    t0 = int(time.time() * 1000)
    expect: dict[str, dict[str, Any]] = {}

    def rid(name: str) -> str:
        return f"e2e-{name}-{uuid.uuid4().hex[:12]}"

    def hdr(r: str) -> dict[str, str]:
        return {"x-request-id": r}

    def chat_expect(r: str, usage: dict[str, Any], stream: bool, requested: str = "fast") -> None:
        expect[r] = {
            "endpoint": "chat",
            "stream": stream,
            "requested_model": requested,
            "served_model": "fast",
            "upstream_model": "gpt-5.4-mini",
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            "cached_tokens": usage["prompt_tokens_details"]["cached_tokens"],
            "reasoning_tokens": usage["completion_tokens_details"]["reasoning_tokens"],
            "cost": fast_cost(usage["prompt_tokens"], usage["completion_tokens"],
                              usage["prompt_tokens_details"]["cached_tokens"]),
        }

    # 1. non-streaming, with prompt-cache hits
    r = rid("chat")
    raw = c.chat.completions.with_raw_response.create(model="fast", messages=USER_MSGS,
                                                      prompt_cache_key="ledger", extra_headers=hdr(r))
    assert raw.headers.get("x-request-id") == r
    assert raw.parse().usage.prompt_tokens_details.cached_tokens > 0
    chat_expect(r, fake.last()["usage"], stream=False)

    # 2. streaming, client asked for usage
    r = rid("stream-usage")
    got = collect_stream(c.chat.completions.create(model="fast", messages=USER_MSGS, stream=True,
                                                   stream_options={"include_usage": True}, extra_headers=hdr(r)))
    assert got["chunks"][-1].usage.prompt_tokens == fake.last()["usage"]["prompt_tokens"]
    chat_expect(r, fake.last()["usage"], stream=True)

    # 3. streaming, client did not ask for usage: the gateway must still account it
    r = rid("stream-nousage")
    msgs3 = USER_MSGS + [{"role": "user", "content": "and a few more words here to change the count"}]
    collect_stream(c.chat.completions.create(model="fast", messages=msgs3, stream=True, extra_headers=hdr(r)))
    assert fake.last()["body"].get("stream_options", {}).get("include_usage") is True
    chat_expect(r, chat_usage(fake.last()["body"], count_text_tokens(DEFAULT_REPLY)), stream=True)

    # 4. reasoning tokens, through the alias
    r = rid("reasoning")
    c.chat.completions.create(model="default", messages=USER_MSGS, reasoning_effort="high", extra_headers=hdr(r))
    chat_expect(r, fake.last()["usage"], stream=False, requested="default")
    assert expect[r]["reasoning_tokens"] == REASONING_TOKENS

    # 5. tool call, streamed
    r = rid("tools")
    collect_stream(c.chat.completions.create(model="fast", messages=USER_MSGS, tools=TOOLS, stream=True,
                                             extra_headers=hdr(r)))
    chat_expect(r, fake.last()["usage"], stream=True)

    # 6. embeddings (default base64)
    r = rid("embed")
    c.embeddings.create(model="embed", input=["ledger one", "ledger two"], extra_headers=hdr(r))
    eu = fake.last("/v1/embeddings")["usage"]
    expect[r] = {"endpoint": "embeddings", "stream": False, "requested_model": "embed", "served_model": "embed",
                 "upstream_model": "text-embedding-3-small", "prompt_tokens": eu["prompt_tokens"],
                 "completion_tokens": 0, "cached_tokens": 0, "reasoning_tokens": 0, "cost": None}

    # 7. upstream failure: reached upstream, so it is recorded, as an error
    r_fail = rid("upstream-500")
    fake.fail_next(500, count=20)
    with pytest.raises(openai.InternalServerError):
        c.chat.completions.create(model="fast", messages=USER_MSGS, extra_headers=hdr(r_fail))
    fake.reset()

    # 8. upstream dies mid-stream: recorded once, as an error
    r_trunc = rid("truncated")
    fake.truncate_stream_after = 3
    with pytest.raises(openai.APIError):
        collect_stream(c.chat.completions.create(model="fast", messages=USER_MSGS, stream=True,
                                                 extra_headers=hdr(r_trunc)))
    fake.reset()

    # 9. never reached upstream: may or may not be recorded, but at most once and not as a success
    r_404 = rid("unknown-model")
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="no-such-model", messages=USER_MSGS, extra_headers=hdr(r_404))
    c.close()

    rc = gw.stop()
    t1 = int(time.time() * 1000)
    assert rc == 0, f"gateway exit code {rc} on SIGTERM\n{gw.stderr()}"
    rows = gw.ledger_rows()
    counts = Counter(row["request_id"] for row in rows)
    dup = {k: n for k, n in counts.items() if n > 1}
    assert not dup, f"duplicate ledger rows: {dup}"
    unexpected = set(counts) - set(expect) - {r_fail, r_trunc, r_404}
    assert not unexpected, f"ledger rows for unknown request ids: {unexpected}"
    missing = set(expect) - set(counts)
    assert not missing, f"no ledger row for: {sorted(missing)}"
    assert r_fail in counts, "a request that failed upstream must still get its ledger row"
    assert r_trunc in counts, "a stream the upstream cut must still get its ledger row"
    by_id = {row["request_id"]: row for row in rows}

    problems: list[str] = []
    for r, want in expect.items():
        row = by_id[r]

        def check(col: str, ok: bool, want_v: Any) -> None:
            if not ok:
                problems.append(f"{r}: {col}={row.get(col)!r}, want {want_v!r}")

        check("status", row["status"] == 200, 200)
        check("stream", bool(row["stream"]) == want["stream"], want["stream"])
        check("endpoint", want["endpoint"] in str(row["endpoint"]), f"*{want['endpoint']}*")
        for col in ("requested_model", "served_model", "upstream_model"):
            check(col, row[col] == want[col], want[col])
        check("provider", row["provider"] == "fake", "fake")
        for col in ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens"):
            check(col, row[col] == want[col], want[col])
        check("usage_estimated", not row["usage_estimated"], 0)
        check("error", row["error"] in (None, ""), None)
        check("ts_ms", row["ts_ms"] is not None and t0 - 1000 <= row["ts_ms"] <= t1 + 1000, f"in [{t0}, {t1}]")
        check("latency_ms", row["latency_ms"] is not None and row["latency_ms"] >= 0, ">= 0")
        if want["stream"]:
            check("ttft_ms", row["ttft_ms"] is not None and 0 <= row["ttft_ms"] <= row["latency_ms"],
                  "0 <= ttft <= latency")
        if want["cost"] is not None:
            check("cost_usd", row["cost_usd"] is not None and math.isclose(row["cost_usd"], want["cost"],
                                                                         rel_tol=1e-9), want["cost"])
    for r in (r_fail, r_trunc):
        fail_row = by_id[r]
        if fail_row["status"] == 200 or not fail_row["error"]:
            problems.append(f"{r}: upstream failure recorded as status={fail_row['status']!r} "
                            f"error={fail_row['error']!r}")
    if r_404 in by_id and by_id[r_404]["status"] == 200:
        problems.append(f"{r_404}: unknown-model request recorded with status 200")
    assert not problems, "ledger mismatches:\n" + "\n".join(problems)


@gateway_only
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_ledger_flushed_on_shutdown(start_gateway, fake, sig):
    """Rows must be written at graceful shutdown: the signal goes out right after the last
    response, before the ~100 ms background flush would have run."""
    gw = start_gateway()
    c = make_client(gw.base_url)
    ids = [f"e2e-shutdown-{i}-{uuid.uuid4().hex[:8]}" for i in range(3)]
    c.chat.completions.create(model="fast", messages=USER_MSGS, extra_headers={"x-request-id": ids[0]})
    collect_stream(c.chat.completions.create(model="fast", messages=USER_MSGS, stream=True,
                                             extra_headers={"x-request-id": ids[1]}))
    c.embeddings.create(model="embed", input="bye", extra_headers={"x-request-id": ids[2]})
    c.close()
    rc = gw.stop(sig)
    assert rc == 0, f"exit code {rc} on {sig!r}\n{gw.stderr()}"
    got = Counter(r["request_id"] for r in gw.ledger_rows())
    assert {i: got.get(i, 0) for i in ids} == {i: 1 for i in ids}


@gateway_only
def test_sigterm_drains_in_flight_stream(start_gateway, fake):
    gw = start_gateway()
    c = make_client(gw.base_url)
    fake.chunk_delay = 0.1
    rid = "e2e-drain-" + uuid.uuid4().hex[:8]
    stream = c.chat.completions.create(model="fast", messages=USER_MSGS, stream=True,
                                       stream_options={"include_usage": True}, extra_headers={"x-request-id": rid})
    it = iter(stream)
    chunks = [next(it)]
    gw.proc.send_signal(signal.SIGTERM)
    chunks.extend(it)
    text = "".join(ch.delta.content or "" for c_ in chunks for ch in c_.choices)
    assert text == DEFAULT_REPLY, "in-flight stream cut short by SIGTERM"
    assert chunks[-1].usage is not None
    c.close()
    try:
        gw.proc.wait(timeout=15)
    except Exception:  # noqa: BLE001
        pass
    rc = gw.stop()
    assert rc == 0, f"exit code {rc}\n{gw.stderr()}"
    rows = [r for r in gw.ledger_rows() if r["request_id"] == rid]
    assert len(rows) == 1 and rows[0]["status"] == 200, rows
    assert rows[0]["completion_tokens"] == chunks[-1].usage.completion_tokens
