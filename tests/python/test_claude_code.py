"""Claude Code and the anthropic SDK's model list against the gateway.

- `claude -p ... --output-format json` (the `@anthropic-ai/claude-code` package pinned in
  tests/claude/package.json; `scripts/test` installs it with `npm ci`) runs non-interactively
  with ANTHROPIC_BASE_URL at a gateway on 127.0.0.1 serving simulated models, telemetry,
  updates and other non-essential traffic off, in a scratch HOME, and must finish its turn.
- `anthropic.Anthropic().models.list()` must get Anthropic's list shape and page through it.

Run: SWITCHYARD_BIN=target/debug/switchyard .venv/bin/pytest tests/python/test_claude_code.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import anthropic
import pytest

from conftest import DIRECT, REPO, UPSTREAM_KEY, Gateway, tee_http_client
from fake_anthropic import FakeAnthropic

pytestmark = pytest.mark.skipif(DIRECT, reason="needs the gateway (SWITCHYARD_TEST_TARGET=fake)")

CLAUDE = REPO / "tests" / "claude" / "node_modules" / ".bin" / "claude"
CLAUDE_VERSION = json.loads((REPO / "tests" / "claude" / "package.json").read_text())["dependencies"][
    "@anthropic-ai/claude-code"
]

CONFIG = """\
[providers.sim]
type = "simulated"
latency_ms = 5
tokens_per_second = 5000
models = ["*"]

[models."claude-opus-4.8"]
provider = "sim"
tier = "frontier"

[models."claude-sonnet-4.6"]
provider = "sim"
tier = "quality"

[models."claude-haiku-4.5"]
provider = "sim"
tier = "economy"

[models."gpt-5.4-mini"]
provider = "sim"
tier = "economy"
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = Gateway(tmp_path_factory.mktemp("claude-code-gw"), CONFIG)
    yield g
    rc = g.stop()
    assert rc == 0, f"switchyard exited with {rc} on SIGTERM\n{g.stderr()}"


def _rows(g: Gateway) -> list[dict]:
    # The ledger writer batches: wait until what was served is there.
    deadline = time.monotonic() + 30
    while True:
        rows = g.ledger_rows() if g.ledger_path.exists() else []
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_anthropic_sdk_models_list_pages_in_anthropic_shape(gw: Gateway) -> None:
    c = anthropic.Anthropic(base_url=gw.url, api_key="anything", max_retries=0, timeout=30.0,
                            http_client=tee_http_client())
    page = c.models.list(limit=2)
    assert len(page.data) == 2
    assert all(m.type == "model" and m.created_at is not None for m in page.data)
    assert page.has_more
    ids = [m.id for m in c.models.list(limit=2)]  # iterating follows after_id to the end
    for want in ["claude-opus-4.8", "claude-sonnet-4.6", "claude-haiku-4.5", "gpt-5.4-mini", "auto"]:
        assert want in ids, ids
    assert len(ids) == len(set(ids))
    one = c.models.retrieve("claude-opus-4.8")
    assert one.id == "claude-opus-4.8" and one.type == "model"
    c.close()


def _run_claude(gw: Gateway, tmp_path: Path, prompt: str) -> dict:
    """`claude -p PROMPT --output-format json` against the gateway; its result object."""
    assert CLAUDE.exists(), (
        f"Claude Code is not installed at {CLAUDE}: run `npm ci --prefix tests/claude` "
        "(scripts/test does it)"
    )
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "project"
    work.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "ANTHROPIC_BASE_URL": gw.url,
        "ANTHROPIC_API_KEY": "sk-ant-test-anything",
        "ANTHROPIC_MODEL": "claude-sonnet-4-6",
        "ANTHROPIC_SMALL_FAST_MODEL": "claude-haiku-4-5",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_BUG_COMMAND": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    proc = subprocess.run(
        [str(CLAUDE), "-p", prompt, "--output-format", "json", "--max-turns", "4"],
        cwd=work, env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, (
        f"claude {CLAUDE_VERSION} exited with {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n"
        f"--- stderr ---\n{proc.stderr[-4000:]}\n--- gateway ---\n{gw.stderr()[-4000:]}"
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out.get("type") == "result", out
    assert out.get("is_error") is False, out
    assert out.get("subtype") == "success", out
    return out


def _check_ledger(gw: Gateway) -> None:
    rows = _rows(gw)
    messages = [r for r in rows if r["endpoint"] == "messages"]
    assert messages, f"no /v1/messages rows in the ledger: {rows}"
    assert all(r["status"] == 200 for r in messages), messages
    # Claude Code's dashed model ids (claude-opus-5-5, claude-haiku-4-5-...) are priced.
    assert all(r["cost_usd"] is not None for r in messages), messages
    # Nothing Claude Code sent was refused.
    refused = [line for line in gw.stderr().splitlines() if "request refused" in line]
    assert not refused, "\n".join(refused)


def test_claude_code_completes_a_turn(gw: Gateway, tmp_path: Path) -> None:
    out = _run_claude(gw, tmp_path, "Reply with the word pong.")
    assert "[simulated]" in (out.get("result") or ""), out
    _check_ledger(gw)


ANTHROPIC_CONFIG = """\
[providers.anthropic]
type = "anthropic"
base_url = "{url}"
api_key = "${{FAKE_UPSTREAM_KEY}}"
models = ["claude-*"]
"""


def test_claude_code_through_an_anthropic_upstream(tmp_path: Path) -> None:
    """Claude Code -> gateway -> the fake Anthropic API, which validates like the real one
    (no `system` role in messages, no unknown fields, tool results must answer tool uses).
    Claude Code's own controls must arrive untouched, and the turn includes a tool round trip
    (the fake calls the first tool offered)."""
    fake = FakeAnthropic(expected_key=UPSTREAM_KEY)
    fake.start()
    g = Gateway(tmp_path / "gw", ANTHROPIC_CONFIG.format(url=fake.base_url))
    try:
        out = _run_claude(g, tmp_path, "Reply with the word pong.")
        assert out.get("num_turns", 0) >= 2, out
        sent = [r["body"] for r in fake.received()]
        assert len(sent) >= 2, sent
        for b in sent:
            assert all(m["role"] in ("user", "assistant") for m in b["messages"]), b["messages"]
            # Claude Code 2.1 sends these; they must pass through as sent.
            assert b.get("thinking", {}).get("type") == "adaptive", b.get("thinking")
            assert "effort" in (b.get("output_config") or {}), b.get("output_config")
            assert isinstance(b.get("context_management"), dict), b.get("context_management")
            assert any("cache_control" in blk for blk in b["system"]), b["system"]
        last = sent[-1]["messages"][-1]["content"]
        assert any(blk.get("type") == "tool_result" for blk in last), last
        _check_ledger(g)
    finally:
        g.stop()
        fake.stop()
