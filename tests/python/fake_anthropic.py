"""A fake Anthropic Messages API upstream, stdlib only.

Speaks the real wire format (https://docs.anthropic.com/en/api/messages and
.../messages-streaming):

* ``POST /v1/messages``: non-streaming ``message`` objects, and with
  ``"stream": true`` the SSE sequence ``message_start``, ``ping``, per content
  block ``content_block_start`` / ``content_block_delta`` (``text_delta`` or
  ``input_json_delta``) / ``content_block_stop``, then ``message_delta``
  (``stop_reason``, ``usage.output_tokens``) and ``message_stop``. Every event
  is ``event: <type>\\ndata: <json>\\n\\n``, sent with chunked encoding.
* ``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``.

Tool use: when the request has ``tools`` (and ``tool_choice`` is not
``none``) and the last user message has no ``tool_result`` block, the answer is
a short text block followed by a ``tool_use`` block calling the first tool
(or the one ``tool_choice`` names), ``stop_reason: "tool_use"``. Otherwise the
answer is text; when the last user message carries ``tool_result`` blocks the
text quotes them (``The tool said: ...``).

Stop reasons: ``end_turn``; ``max_tokens`` when ``max_tokens`` is smaller than
the reply (the text is cut to ``max_tokens`` words); ``stop_sequence`` when one
of ``stop_sequences`` occurs in the reply (cut before it).

Usage always reports ``cache_read_input_tokens`` = CACHE_READ_TOKENS and
``cache_creation_input_tokens`` = CACHE_CREATION_TOKENS besides
``input_tokens``, as a prompt-cached request does. The usage sent is recorded
in the request record (``rec["usage"]``).

Validation like the real API (400 ``invalid_request_error``): the key, as
``x-api-key`` or ``Authorization: Bearer`` (401 ``authentication_error``), ``anthropic-version`` header, ``model``,
``max_tokens``, non-empty ``messages`` with roles ``user``/``assistant`` only
(a ``system`` role in messages is rejected: system goes top-level), unknown
top-level fields, ``tool_result`` blocks that answer no ``tool_use`` of the
previous assistant message, ``tool_use`` blocks left unanswered, tools
without ``input_schema``.

Failure injection:

* ``FakeAnthropic.fail_next(status, count=1, message=None)``: 529
  ``overloaded_error``, 429 ``rate_limit_error`` (with ``retry-after``), 400
  ``invalid_request_error``, 500 ``api_error``, ...;
* magic upstream model names ``...fail-<status>`` (e.g. ``claude-fail-529``);
* ``FakeAnthropic.stream_error_after = N``: a streamed answer sends N events,
  then ``event: error`` (``overloaded_error``) and ends.

Run standalone: ``python fake_anthropic.py [port]``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import time
import uuid
from typing import Any

from fake_openai import _example_value, _Handler as _OpenAIHandler, _Server

ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_REPLY = "Hello from the fake Anthropic upstream, translated faithfully by Switchyard."
TOOL_PREAMBLE = "Let me check that for you."
CACHE_READ_TOKENS = 11
CACHE_CREATION_TOKENS = 5
RETRY_AFTER_SECONDS = 1
OVERLOADED_MESSAGE = "Overloaded (fake-529-marker)"

_FAIL_MODEL = re.compile(r"fail-(\d{3})\b")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")

ALLOWED_FIELDS = {
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
    "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier",
    "container", "mcp_servers", "context_management", "output_format", "output_config",
}

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {
    400: "messages: fake upstream rejects this request (fake-400-marker)",
    401: "invalid x-api-key",
    429: "Number of request tokens has exceeded your per-minute rate limit (fake-429-marker)",
    500: "Internal server error (fake-500-marker)",
    529: OVERLOADED_MESSAGE,
}


# ---------------------------------------------------------------------------
# Deterministic content
# ---------------------------------------------------------------------------


def words(text: str) -> int:
    return len(text.split())


def block_text(content: Any) -> str:
    """All text in a ``content`` (string or list of blocks), tool results included."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    out = []
    for b in content if isinstance(content, list) else []:
        if not isinstance(b, dict):
            continue
        t = b.get("type")
        if t == "text":
            out.append(str(b.get("text", "")))
        elif t == "tool_result":
            out.append(block_text(b.get("content")))
        elif t == "tool_use":
            out.append(json.dumps(b.get("input")))
    return " ".join(x for x in out if x)


def system_text(system: Any) -> str:
    return block_text(system)


def count_input_tokens(body: dict[str, Any]) -> int:
    """Stand-in tokenizer: 3 + words of system, messages and tool definitions."""
    n = 3 + words(system_text(body.get("system")))
    for m in body.get("messages") or []:
        n += 2 + words(block_text(m.get("content")))
    for t in body.get("tools") or []:
        n += 4 + words(str(t.get("description", "")))
    return n


def last_user_tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    msgs = body.get("messages") or []
    if not msgs or msgs[-1].get("role") != "user":
        return []
    c = msgs[-1].get("content")
    if not isinstance(c, list):
        return []
    return [b for b in c if isinstance(b, dict) and b.get("type") == "tool_result"]


def wants_tool_use(body: dict[str, Any]) -> bool:
    tools = body.get("tools") or []
    tc = body.get("tool_choice") or {}
    if not tools or tc.get("type") == "none":
        return False
    return not last_user_tool_results(body)


def chosen_tool(body: dict[str, Any]) -> dict[str, Any]:
    tc = body.get("tool_choice") or {}
    if tc.get("type") == "tool":
        for t in body["tools"]:
            if t.get("name") == tc.get("name"):
                return t
    return body["tools"][0]


def tool_input(tool: dict[str, Any]) -> dict[str, Any]:
    """The input the fake calls an Anthropic ``tool`` with: an example value per property."""
    schema = tool.get("input_schema") or {}
    return {k: _example_value(k, v) for k, v in (schema.get("properties") or {}).items()}


def tool_use_id(body: dict[str, Any]) -> str:
    h = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode()).hexdigest()
    return "toolu_01" + h[:22]


def reply_text(body: dict[str, Any]) -> str:
    results = last_user_tool_results(body)
    if results:
        return "The tool said: " + " | ".join(block_text(r.get("content")) for r in results)
    return ANTHROPIC_REPLY


def apply_limits(body: dict[str, Any], text: str) -> tuple[str, str, str | None]:
    """(text, stop_reason, stop_sequence) after stop_sequences and max_tokens."""
    for s in body.get("stop_sequences") or []:
        if s and s in text:
            return text[: text.index(s)], "stop_sequence", s
    mt = body.get("max_tokens")
    if isinstance(mt, int) and mt < words(text):
        return " ".join(text.split()[:mt]), "max_tokens", None
    return text, "end_turn", None


def build_content(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str | None]:
    if wants_tool_use(body):
        tool = chosen_tool(body)
        return (
            [
                {"type": "text", "text": TOOL_PREAMBLE},
                {"type": "tool_use", "id": tool_use_id(body), "name": tool["name"], "input": tool_input(tool)},
            ],
            "tool_use",
            None,
        )
    text, stop, seq = apply_limits(body, reply_text(body))
    return [{"type": "text", "text": text}], stop, seq


def output_tokens(content: list[dict[str, Any]]) -> int:
    n = 1
    for b in content:
        n += words(b["text"]) if b["type"] == "text" else 3 + words(json.dumps(b["input"]))
    return n


def usage_for(body: dict[str, Any], out_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": count_input_tokens(body),
        "cache_creation_input_tokens": CACHE_CREATION_TOKENS,
        "cache_read_input_tokens": CACHE_READ_TOKENS,
        "cache_creation": {"ephemeral_5m_input_tokens": CACHE_CREATION_TOKENS, "ephemeral_1h_input_tokens": 0},
        "output_tokens": out_tokens,
        "service_tier": "standard",
    }


def message_id() -> str:
    return "msg_01" + uuid.uuid4().hex[:22]


def build_message(body: dict[str, Any]) -> dict[str, Any]:
    content, stop, seq = build_content(body)
    return {
        "id": message_id(),
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": seq,
        "usage": usage_for(body, output_tokens(content)),
    }


def split_text(text: str, pieces: int = 3) -> list[str]:
    if not text:
        return [""]
    step = max(1, len(text) // pieces)
    return [text[i : i + step] for i in range(0, len(text), step)]


def build_events(body: dict[str, Any]) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """The SSE events (name, data) of a streamed answer, and the final usage."""
    msg = build_message(body)
    usage = msg["usage"]
    start_usage = dict(usage, output_tokens=1)
    ev: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": dict(msg, content=[], stop_reason=None, stop_sequence=None, usage=start_usage),
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    for i, b in enumerate(msg["content"]):
        if b["type"] == "text":
            ev.append(("content_block_start", {"type": "content_block_start", "index": i,
                                               "content_block": {"type": "text", "text": ""}}))
            for piece in split_text(b["text"]):
                ev.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                   "delta": {"type": "text_delta", "text": piece}}))
        else:
            ev.append(("content_block_start", {"type": "content_block_start", "index": i,
                                               "content_block": {"type": "tool_use", "id": b["id"],
                                                                 "name": b["name"], "input": {}}}))
            # The real API's first input_json_delta is often empty.
            for piece in [""] + split_text(json.dumps(b["input"]), 4):
                ev.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                   "delta": {"type": "input_json_delta", "partial_json": piece}}))
        ev.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    ev.append(("message_delta", {"type": "message_delta",
                                 "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": msg["stop_sequence"]},
                                 "usage": {"output_tokens": usage["output_tokens"]}}))
    ev.append(("message_stop", {"type": "message_stop"}))
    return ev, usage


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    etype = ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    return {
        "type": "error",
        "error": {"type": etype, "message": message or ERROR_MESSAGES.get(status, f"fake upstream error {status}")},
        "request_id": "req_011" + uuid.uuid4().hex[:21],
    }


def validate(body: Any, version: str | None) -> str | None:
    """The 400 message the real API would give, or None."""
    if not version:
        return "anthropic-version: header is required"
    if not isinstance(body, dict):
        return "There was an error parsing the body of your request"
    for k in body:
        if k not in ALLOWED_FIELDS:
            return f"{k}: Extra inputs are not permitted"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int) or isinstance(body.get("max_tokens"), bool):
        return "max_tokens: Field required"
    if body["max_tokens"] < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        return "system: Input should be a valid string or list"
    if isinstance(system, list):
        for j, b in enumerate(system):
            if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
                return f"system.{j}: Input should be a text block"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "messages: at least one message is required"
    for i, t in enumerate(body.get("tools") or []):
        if not isinstance(t, dict):
            return f"tools.{i}: Input should be an object"
        if t.get("type") not in (None, "custom"):
            continue  # server tools
        if not _TOOL_NAME.match(str(t.get("name", ""))):
            return f"tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
        schema = t.get("input_schema")
        if not isinstance(schema, dict):
            return f"tools.{i}.input_schema: Field required"
        if schema.get("type") != "object":
            return f"tools.{i}.input_schema.type: Input should be 'object'"
    tc = body.get("tool_choice")
    if tc is not None and (not isinstance(tc, dict) or tc.get("type") not in ("auto", "any", "tool", "none")):
        return "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
    pending: list[str] = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            return f"messages.{i}: Input should be a valid dictionary"
        role = m.get("role")
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        for k in m:
            if k not in ("role", "content"):
                return f"messages.{i}.{k}: Extra inputs are not permitted"
        content = m.get("content")
        if isinstance(content, str):
            blocks: list[Any] = [{"type": "text", "text": content}]
        elif isinstance(content, list):
            blocks = content
        else:
            return f"messages.{i}.content: Field required"
        if not blocks and not (i == len(msgs) - 1 and role == "assistant"):
            return f"messages.{i}: all messages must have non-empty content except for the optional final assistant message"
        answered: list[str] = []
        for j, b in enumerate(blocks):
            if not isinstance(b, dict) or "type" not in b:
                return f"messages.{i}.content.{j}: Input should be a valid content block"
            bt = b["type"]
            if bt == "text" and not isinstance(b.get("text"), str):
                return f"messages.{i}.content.{j}.text: Field required"
            if bt == "text" and not b["text"] and role == "user":
                return f"messages.{i}.content.{j}.text: text content blocks must be non-empty"
            if bt == "tool_use":
                if role != "assistant":
                    return f"messages.{i}.content.{j}: tool_use blocks are only allowed in assistant messages"
                if not isinstance(b.get("input"), dict):
                    return f"messages.{i}.content.{j}.tool_use.input: Input should be a valid dictionary"
                if not b.get("id") or not b.get("name"):
                    return f"messages.{i}.content.{j}.tool_use: id and name are required"
            if bt == "tool_result":
                if role != "user":
                    return f"messages.{i}.content.{j}: tool_result blocks are only allowed in user messages"
                tid = b.get("tool_use_id")
                if tid not in pending:
                    return (f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                            f"{tid}. Each `tool_result` block must have a corresponding `tool_use` block in the "
                            "previous message.")
                answered.append(tid)
        if pending:
            missing = [p for p in pending if p not in answered]
            if missing:
                return (f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately "
                        f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                        "`tool_result` block in the next message.")
        pending = [b["id"] for b in blocks if b.get("type") == "tool_use"] if role == "assistant" else []
    return None


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


class _AnthropicHandler(_OpenAIHandler):
    server_version = "FakeAnthropic/1.0"
    fake: "FakeAnthropic"  # type: ignore[assignment]

    def _send_json(self, status: int, obj: Any, extra_headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_011" + uuid.uuid4().hex[:21])
        self.send_header("anthropic-organization-id", "00000000-fake-0000-0000-000000000000")
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, status: int, message: str | None = None) -> None:
        headers = {}
        if status == 429:
            headers["retry-after"] = str(RETRY_AFTER_SECONDS)
        if status in (429, 500, 529):
            headers["x-should-retry"] = "true"
        self._rec["error_status"] = status
        self._send_json(status, error_body(status, message), headers)

    def _send_events(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", "req_011" + uuid.uuid4().hex[:21])
        self.end_headers()
        cut = self.fake.stream_error_after
        try:
            for n, (name, data) in enumerate(events):
                if cut is not None and n >= cut:
                    err = {"type": "error", "error": {"type": "overloaded_error", "message": OVERLOADED_MESSAGE}}
                    self._write_chunk(b"event: error\ndata: " + json.dumps(err).encode() + b"\n\n")
                    self._rec["stream_error"] = True
                    break
                self._write_chunk(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
                if self.fake.chunk_delay:
                    time.sleep(self.fake.chunk_delay)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802
        self._record(b"")
        if self.path.split("?")[0].rstrip("/") in ("/health", "/_control/health"):
            self._send_json(200, {"status": "ok"})
            return
        self._send_json(404, error_body(404, f"Not found: {self.path}"))

    def do_POST(self) -> None:  # noqa: N802
        raw = self._read_body()
        body = self._record(raw)
        path = self.path.split("?")[0].rstrip("/")
        if path not in ("/v1/messages", "/v1/messages/count_tokens"):
            self._send_json(404, error_body(404, f"Not found: {path}"))
            return
        # The real API takes the key as x-api-key or (newer SDKs) Authorization: Bearer.
        key = self.headers.get("x-api-key")
        if key is None and (self.headers.get("Authorization") or "").startswith("Bearer "):
            key = self.headers["Authorization"][len("Bearer "):]
        if key != self.fake.expected_key:
            self._send_error(401)
            return
        problem = validate(body, self.headers.get("anthropic-version"))
        if path == "/v1/messages/count_tokens" and problem and "max_tokens" in problem:
            problem = None  # count_tokens takes no max_tokens
        if problem:
            self._send_error(400, problem)
            return
        assert isinstance(body, dict)
        if path == "/v1/messages/count_tokens":
            self._send_json(200, {"input_tokens": count_input_tokens(body)})
            return
        forced = self.fake.take_failure()
        if forced is not None:
            self._send_error(*forced)
            return
        m = _FAIL_MODEL.search(body["model"])
        if m:
            self._send_error(int(m.group(1)))
            return
        if body.get("stream"):
            events, usage = build_events(body)
            self._rec["usage"] = usage
            self._rec["events"] = events
            self._send_events(events)
        else:
            msg = build_message(body)
            self._rec["usage"] = msg["usage"]
            self._rec["response"] = msg
            self._send_json(200, msg)


class FakeAnthropic:
    """In-process fake Anthropic API; ``base_url`` has no ``/v1`` (clients append ``/v1/messages``)."""

    def __init__(self, expected_key: str, host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> None:
        self.expected_key = expected_key
        self.verbose = verbose
        self.chunk_delay = 0.0
        self.stream_error_after: int | None = None
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self._failures: list[tuple[int, str | None]] = []
        handler = type("FakeAnthropicHandler", (_AnthropicHandler,), {"fake": self})
        self.httpd = _Server((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fake-anthropic", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self._failures.clear()
        self.chunk_delay = 0.0
        self.stream_error_after = None

    def fail_next(self, status: int, count: int = 1, message: str | None = None) -> None:
        with self.lock:
            self._failures.extend([(status, message)] * count)

    def take_failure(self) -> tuple[int, str | None] | None:
        with self.lock:
            return self._failures.pop(0) if self._failures else None

    def received(self, path: str | None = "/v1/messages") -> list[dict[str, Any]]:
        with self.lock:
            reqs = list(self.requests)
        if path is not None:
            reqs = [r for r in reqs if r["path"].split("?")[0] == path]
        return reqs

    def last(self, path: str = "/v1/messages") -> dict[str, Any]:
        reqs = self.received(path)
        assert reqs, f"the fake Anthropic upstream received no request on {path}"
        return reqs[-1]


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    fake = FakeAnthropic(expected_key=sys.argv[2] if len(sys.argv) > 2 else "sk-ant-fake", port=port, verbose=True)
    print(f"fake Anthropic upstream on {fake.base_url}", flush=True)
    try:
        fake.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
