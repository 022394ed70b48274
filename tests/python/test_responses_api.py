"""The Responses API (`client.responses.*`), the legacy completions API and
the OpenAI Agents SDK, through the gateway.

The gateway translates /v1/responses into chat completions for the fake
upstream (fake_openai.py speaks chat only), so these tests check both what
the client gets and what reached the upstream. Gateway-only: the fake does
not serve /v1/responses itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import openai
import pytest

from conftest import make_client
from fake_openai import DEFAULT_REPLY, tool_arguments

pytestmark = pytest.mark.gateway_only

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"],
    },
}
# The same tool as the fake sees it (chat format).
WEATHER_CHAT = {
    "type": "function",
    "function": {k: WEATHER[k] for k in ("name", "description", "parameters")},
}


def rows_for(gateway: Any, request_id: str, deadline_s: float = 30.0) -> list[dict[str, Any]]:
    """The ledger rows of one request (waits for the batched writer)."""
    end = time.monotonic() + deadline_s
    while True:
        rows = [r for r in gateway.ledger_rows() if r["request_id"] == request_id]
        if rows or time.monotonic() > end:
            return rows
        time.sleep(0.05)


def test_create_non_streaming(client, fake, gateway):
    raw = client.responses.with_raw_response.create(
        model="fast",
        instructions="Be terse.",
        input=[
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": [{"type": "input_text", "text": "Say hello."}]},
        ],
        max_output_tokens=64,
        reasoning={"effort": "low"},
        prompt_cache_key="conv-1",
    )
    r = raw.parse()
    assert r.object == "response"
    assert r.status == "completed"
    assert r.output_text == DEFAULT_REPLY
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.usage is not None and r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.instructions == "Be terse."
    up = fake.last()["body"]
    assert [m["role"] for m in up["messages"]] == ["system", "developer", "user"]
    assert up["messages"][0]["content"] == "Be terse."
    assert up["max_completion_tokens"] == 64
    assert up["reasoning_effort"] == "low"
    assert up["prompt_cache_key"] == "conv-1"
    rid = raw.headers["x-request-id"]
    rows = rows_for(gateway, rid)
    assert [(x["endpoint"], x["status"]) for x in rows] == [("responses", 200)]
    assert rows[0]["prompt_tokens"] == r.usage.input_tokens
    assert rows[0]["cost_usd"] is not None and rows[0]["cost_usd"] > 0
    assert float(raw.headers["x-switchyard-cost-usd"]) == pytest.approx(rows[0]["cost_usd"])


def test_create_streaming_event_sequence(client, fake):
    events = list(client.responses.create(model="fast", input="Stream a hello.", stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[1] == "response.in_progress"
    assert types[-1] == "response.completed"
    assert "response.output_text.delta" in types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == DEFAULT_REPLY
    done = events[-1].response
    assert done.output_text == DEFAULT_REPLY
    assert done.usage is not None and done.usage.output_tokens > 0
    up = fake.last()["body"]
    assert up["stream"] is True and up["stream_options"] == {"include_usage": True}


def test_stream_helper_final_response(client):
    with client.responses.stream(model="fast", input="Hello via the helper.") as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == final.output_text == DEFAULT_REPLY


def test_function_tool_round_trip(client, fake):
    first = client.responses.create(model="fast", input="Weather in Paris?", tools=[WEATHER])
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == tool_arguments(WEATHER_CHAT)
    assert fake.last()["body"]["tools"] == [WEATHER_CHAT]

    second = client.responses.create(
        model="fast",
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"},
        ],
    )
    assert second.output_text == "The tool said: sunny, 21C"
    up = fake.last()["body"]["messages"]
    assert [m["role"] for m in up] == ["user", "assistant", "tool"]
    assert up[1]["tool_calls"][0]["id"] == call.call_id
    assert up[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": call.arguments}
    assert up[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 21C"}


def test_function_tool_streamed(client):
    events = list(client.responses.create(model="fast", input="Weather in Oslo?", tools=[WEATHER], stream=True))
    types = [e.type for e in events]
    assert "response.function_call_arguments.delta" in types
    assert "response.function_call_arguments.done" in types
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(args) == json.loads(done.arguments) == tool_arguments(WEATHER_CHAT)
    final = events[-1].response
    assert final.output[-1].type == "function_call" and final.output[-1].arguments == args


def test_previous_response_id_continues_the_conversation(client, fake):
    first = client.responses.create(model="fast", input="My name is Ada.")
    second = client.responses.create(model="fast", input="What is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    up = fake.last()["body"]["messages"]
    assert [(m["role"], m["content"] if isinstance(m["content"], str) else None) for m in up] == [
        ("user", "My name is Ada."),
        ("assistant", DEFAULT_REPLY),
        ("user", "What is my name?"),
    ]
    got = client.responses.retrieve(first.id)
    assert got.id == first.id and got.output_text == first.output_text


def test_store_false_is_not_kept(client):
    r = client.responses.create(model="fast", input="forget me", store=False)
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="fast", input="again", previous_response_id=r.id)
    assert e.value.status_code == 400
    assert e.value.body["code"] == "previous_response_not_found"
    assert e.value.body["param"] == "previous_response_id"


def test_hosted_tool_is_a_clear_400(client, fake):
    n = len(fake.requests)
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="fast", input="search the web", tools=[{"type": "web_search"}])
    assert e.value.body["code"] == "hosted_tool_unsupported"
    assert "web_search" in e.value.body["message"]
    assert len(fake.requests) == n, "nothing may reach the upstream"


def test_alias_resolves_and_headers_name_the_served_model(gateway, fake):
    c = make_client(gateway.base_url)
    raw = c.responses.with_raw_response.create(model="default", input="hi")
    assert raw.headers["x-switchyard-model"] == "fast"
    assert raw.parse().model == "fast"
    assert fake.last()["body"]["model"] == "gpt-5.4-mini"
    c.close()


def test_legacy_completions(client, fake):
    r = client.completions.create(model="fast", prompt="Once upon a time", max_tokens=20)
    assert r.object == "text_completion"
    assert r.choices[0].text == DEFAULT_REPLY
    assert r.usage is not None and r.usage.total_tokens > 0
    up = fake.last()["body"]
    assert up["messages"] == [{"role": "user", "content": "Once upon a time"}]
    # gpt-5.4-mini is an OpenAI reasoning model: the cap goes out as max_completion_tokens.
    assert up["max_completion_tokens"] == 20 and "max_tokens" not in up
    chunks = list(client.completions.create(model="fast", prompt="Stream it", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == DEFAULT_REPLY
    assert fake.last()["body"]["max_completion_tokens"] == 16  # the legacy default


def test_agents_sdk_tool_round_trip(gateway):
    """The OpenAI Agents SDK with its default model class (the Responses API)."""
    agents = pytest.importorskip("agents")
    from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled

    set_tracing_disabled(True)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        calls.append(city)
        return f"sunny in {city}"

    async def run() -> Any:
        client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key="sk-client-anything", max_retries=0)
        set_default_openai_client(client, use_for_tracing=False)
        agent = Agent(name="weather", instructions="Use the tool.", tools=[get_weather], model="fast")
        assert agent.model == "fast"
        result = await Runner.run(agent, "What's the weather in Paris?")
        await client.close()
        return result

    result = asyncio.run(run())
    assert calls == ["fake-city"], "the tool ran once with the model's arguments"
    assert result.final_output == "The tool said: sunny in fake-city"
    assert agents.__name__ == "agents"


def test_model_auto_routes_responses(fake, start_gateway):
    from test_auto_routing import CASES, ROUTED_CONFIG

    gw = start_gateway(ROUTED_CONFIG.format(base_url=fake.base_url))
    c = make_client(gw.base_url)
    for prompt, task, model, upstream in CASES:
        raw = c.responses.with_raw_response.create(model="auto", input=prompt)
        assert raw.headers["x-switchyard-route"] == "auto"
        assert raw.headers["x-switchyard-task"] == task, prompt
        assert raw.headers["x-switchyard-model"] == model
        assert fake.last()["body"]["model"] == upstream
        assert raw.parse().output_text == DEFAULT_REPLY
    c.close()
