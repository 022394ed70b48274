"""model="auto" through the official openai client: the gateway classifies each
request and routes it per task; the decision is visible in the response headers,
the upstream request and the ledger."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import make_client

pytestmark = pytest.mark.gateway_only

ROUTED_CONFIG = """\
[providers.fake]
type = "openai"
base_url = "{base_url}"
api_key = "${{FAKE_UPSTREAM_KEY}}"

[models.economy]
provider = "fake"
model = "gpt-5.4-mini"
tier = "economy"

[models.frontier]
provider = "fake"
model = "gpt-5.5"
tier = "frontier"

[models.middle]
provider = "fake"
model = "gpt-5.4"
tier = "quality"

[routes.auto]
default_task = "simple_chat"
[routes.auto.tasks.simple_chat]
models = ["economy", "middle"]
[routes.auto.tasks.code_generation]
models = ["frontier", "middle"]
[routes.auto.tasks.translation]
models = ["middle"]
"""

CASES = [
    ("What's a good name for a golden retriever puppy?", "simple_chat", "economy", "gpt-5.4-mini"),
    ("Write a Python function that returns the n-th Fibonacci number iteratively.", "code_generation", "frontier", "gpt-5.5"),
    ("Translate into German: The meeting has been moved to Thursday afternoon.", "translation", "middle", "gpt-5.4"),
]


@pytest.fixture
def routed(fake: Any, start_gateway: Any) -> Any:
    return start_gateway(ROUTED_CONFIG.format(base_url=fake.base_url))


@pytest.mark.parametrize("prompt,task,model,upstream", CASES)
def test_auto_routes_each_task(routed: Any, fake: Any, prompt: str, task: str, model: str, upstream: str) -> None:
    client = make_client(routed.base_url)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": prompt}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert raw.headers["x-switchyard-task"] == task
    assert raw.headers["x-switchyard-model"] == model
    assert raw.headers["x-switchyard-route"] == "auto"
    assert raw.headers["x-switchyard-tier"]
    assert raw.headers["x-switchyard-route-reason"]
    assert fake.requests[-1]["body"]["model"] == upstream


def test_auto_streaming_and_listing(routed: Any, fake: Any) -> None:
    client = make_client(routed.base_url)
    ids = [m.id for m in client.models.list()]
    assert "auto" in ids
    text = ""
    with client.chat.completions.with_streaming_response.create(
        model="auto",
        stream=True,
        messages=[{"role": "user", "content": "Write a bash one-liner that counts lines in all .rs files"}],
    ) as resp:
        assert resp.headers["x-switchyard-task"] == "code_generation"
        for chunk in resp.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
    assert text
    assert fake.requests[-1]["body"]["model"] == "gpt-5.5"


def test_auto_task_override_and_ledger(routed: Any) -> None:
    client = make_client(routed.base_url)
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={"x-switchyard-task": "translation"},
    )
    assert raw.headers["x-switchyard-task"] == "translation"
    assert raw.headers["x-switchyard-route-reason"] == "override:task_header"
    assert routed.stop() == 0
    rows = routed.ledger_rows()
    assert len(rows) == 1
    row = rows[0]
    assert (row["route"], row["task"], row["served_model"], row["requested_model"]) == ("auto", "translation", "middle", "auto")
