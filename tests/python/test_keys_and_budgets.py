"""Virtual keys, rate limits and budgets through the official `openai` and
`anthropic` clients: what a client sees is what OpenAI would send."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import anthropic
import openai
import pytest

from conftest import ADMIN_KEY, LOG_SECRETS, gateway_config, make_client, tee_http_client

pytestmark = pytest.mark.gateway_only


def admin(gw: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        gw.url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def with_admin(cfg: str, extra_server: str = "") -> str:
    return f'[server]\nadmin_key = "{ADMIN_KEY}"\n{extra_server}\n' + cfg


@pytest.fixture
def keyed(fake, start_gateway):
    gw = start_gateway(with_admin(gateway_config(fake)))
    status, created = admin(gw, "POST", "/admin/keys", {"name": "py-team", "rpm": 3, "models": ["fast", "default"]})
    assert status == 201, created
    LOG_SECRETS.add(created["key"])
    return gw, created["key"]


def test_openai_client_authenticates_with_a_virtual_key(keyed):
    gw, key = keyed
    with make_client(gw.base_url, api_key=key) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="fast", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.parse().choices[0].message.content
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert raw.headers["x-ratelimit-remaining-requests"] == "2"
    assert gw.stop() == 0
    rows = gw.ledger_rows()
    assert [r["key_name"] for r in rows] == ["py-team"]


def test_openai_client_errors_for_bad_keys_models_and_limits(keyed):
    gw, key = keyed
    with make_client(gw.base_url, api_key="sk-sy-" + "x" * 40) as c:
        with pytest.raises(openai.AuthenticationError) as e:
            c.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
        assert e.value.code == "invalid_api_key"
    with make_client(gw.base_url, api_key=key) as c:
        with pytest.raises(openai.PermissionDeniedError) as e:
            c.chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": "hi"}])
        assert e.value.code == "model_not_allowed"
        # The refused request counted against the 3 requests per minute, as at OpenAI.
        for _ in range(2):
            c.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.RateLimitError) as e:
            c.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
        assert e.value.code == "rate_limit_exceeded"
        assert int(e.value.response.headers["retry-after"]) >= 1
        assert e.value.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_anthropic_client_sends_x_api_key(keyed):
    gw, key = keyed
    c = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=30.0, http_client=tee_http_client())
    msg = c.messages.create(model="fast", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text
    bad = anthropic.Anthropic(
        base_url=gw.url, api_key="sk-sy-nope", max_retries=0, timeout=30.0, http_client=tee_http_client()
    )
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="fast", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    c.close()
    bad.close()


def test_admin_api_lists_and_revokes_without_showing_secrets(keyed):
    gw, key = keyed
    status, listed = admin(gw, "GET", "/admin/keys")
    assert status == 200 and [k["name"] for k in listed["data"]] == ["py-team"]
    assert key not in json.dumps(listed)
    status, _ = admin(gw, "DELETE", "/admin/keys/py-team")
    assert status == 200
    with make_client(gw.base_url, api_key=key) as c:
        with pytest.raises(openai.AuthenticationError):
            c.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])


def test_budget_exceeded_is_a_rate_limit_error_with_a_clear_code(fake, start_gateway):
    cfg = with_admin(gateway_config(fake)) + "\n[budgets]\ndaily = 0.000001\n"
    gw = start_gateway(cfg)
    with make_client(gw.base_url) as c:
        with pytest.raises(openai.RateLimitError) as e:
            c.chat.completions.create(model="fast", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
        assert e.value.code == "budget_exceeded"
        assert "daily" in str(e.value)
    status, spend = admin(gw, "GET", "/admin/spend?by=model")
    assert status == 200 and spend["budgets"][0]["scope"] == "global"
    assert fake.requests == [], "nothing reached the provider"


def test_metrics_endpoint_counts_client_traffic(keyed):
    gw, key = keyed
    with make_client(gw.base_url, api_key=key) as c:
        c.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
        stream = c.chat.completions.create(
            model="fast", stream=True, messages=[{"role": "user", "content": "hi"}]
        )
        assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    with urllib.request.urlopen(gw.url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    line = 'switchyard_requests_total{route="",task="",model="fast",provider="fake",status="200"} 2'
    assert line in text, text
    assert "gen_ai_server_time_to_first_token_seconds_count" in text
