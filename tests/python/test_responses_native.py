"""`client.responses.*` served by the native Anthropic and Gemini adapters: the
gateway translates the Responses request to chat, the adapters to each
provider's wire format (fake_anthropic.py / fake_gemini.py), and back.
A function-tool round trip, plain and streamed, with Gemini's thought
signature carried through the Responses call id."""

from __future__ import annotations

import json
from typing import Any

import pytest

from test_native_providers import (  # noqa: F401 - fixtures used by name
    EXPECTED_ARGS,
    MODEL,
    REPLY,
    TOOL_RESULT,
    _reset_native,
    fake_anthropic,
    fake_gemini,
    native_gateway,
    oc,
    prov,
)
from conftest import DIRECT

pytestmark = pytest.mark.skipif(DIRECT, reason="needs the gateway")

WEATHER = {
    "type": "function",
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
}


def test_text(oc: Any, prov: dict[str, Any]) -> None:
    r = oc.responses.create(model=prov["model"], instructions="Be terse.", input="Say hello.")
    assert r.status == "completed"
    assert r.output_text == prov["reply"]
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    body = prov["fake"].last()["body"]
    if prov["name"] == "claude":
        assert "Be terse." in json.dumps(body["system"])
    else:
        assert "Be terse." in json.dumps(body["systemInstruction"])


@pytest.mark.parametrize("stream", [False, True])
def test_function_tool_round_trip(oc: Any, prov: dict[str, Any], stream: bool) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    if stream:
        events = list(oc.responses.create(model=prov["model"], input=ask, tools=[WEATHER], stream=True))
        assert events[-1].type == "response.completed"
        first = events[-1].response
    else:
        first = oc.responses.create(model=prov["model"], input=ask, tools=[WEATHER])
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1, first.output
    call = calls[0]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == EXPECTED_ARGS
    issued = prov["fake"].last()
    second = oc.responses.create(
        model=prov["model"],
        tools=[WEATHER],
        input=ask
        + [o.model_dump(exclude_none=True) for o in first.output]
        + [{"type": "function_call_output", "call_id": call.call_id, "output": TOOL_RESULT}],
    )
    assert second.status == "completed"
    assert not [o for o in second.output if o.type == "function_call"]
    body = prov["fake"].last()["body"]
    if prov["name"] == "claude":
        assert second.output_text == "The tool said: " + TOOL_RESULT
        uses = [b for b in body["messages"][1]["content"] if b["type"] == "tool_use"]
        assert uses[0]["id"] == call.call_id and uses[0]["input"] == EXPECTED_ARGS
        results = [b for b in body["messages"][2]["content"] if b["type"] == "tool_result"]
        assert results[0]["tool_use_id"] == call.call_id
    else:
        assert second.output_text.startswith("The function returned: ")
        fc = [p for p in body["contents"][1]["parts"] if "functionCall" in p]
        assert fc[0]["functionCall"]["args"] == EXPECTED_ARGS
        sent = (issued.get("response") or issued["chunks"][0])["candidates"][0]["content"]["parts"][0]
        assert fc[0].get("thoughtSignature") == sent["thoughtSignature"], "the thought signature must come back"
