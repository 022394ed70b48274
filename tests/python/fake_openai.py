"""A fake OpenAI upstream, stdlib only.

Speaks the real wire format of the endpoints Switchyard forwards to:

* ``POST /v1/chat/completions``: non-streaming and SSE streaming
  (``data: {json}\\n\\n`` chunks, ``chat.completion.chunk`` objects, a final
  usage chunk with empty ``choices`` when ``stream_options.include_usage`` is
  true, then ``data: [DONE]\\n\\n``), sent with chunked transfer encoding like
  the real API. Tool calls: when the request has ``tools`` and the last
  message is not a ``tool`` message, the answer is a call of the first tool
  (arguments are a JSON string); when the last message is a tool result, the
  answer is text built from that result.
* ``POST /v1/embeddings``: ``encoding_format`` ``float`` (default) and
  ``base64`` (little-endian float32, what the ``openai`` client asks for by
  default).
* ``GET /v1/models`` and ``GET /v1/models/{id}``.

Every request is recorded (method, path, lower-cased headers, parsed JSON body,
and for answered chat/embeddings requests the ``usage`` the fake computed) so
tests can assert what actually reached the upstream.

Failure injection, two ways:

* magic model names: ``gpt-fail-500``, ``gpt-fail-429``, ``gpt-fail-400``,
  ``gpt-fail-401``, ``gpt-fail-503`` (any ``...fail-<status>`` model);
* ``FakeOpenAI.fail_next(status, count=1)`` or ``POST /_control/fail``
  with ``{"status": 500, "count": 1}``; ``POST /_control/reset`` clears the
  recorded requests and pending failures.

Deterministic content: all values a test may want to compare are computed by
the module-level helpers (``reply_text``, ``tool_arguments``,
``fake_embedding``, ``count_prompt_tokens`` ...), so tests can assert exact
equality without hard-coding strings.

Run standalone: ``python fake_openai.py [port]``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# ---------------------------------------------------------------------------
# Deterministic content
# ---------------------------------------------------------------------------

DEFAULT_REPLY = "Hello from the fake upstream! Switchyard passed this through intact."
DEFAULT_EMBEDDING_DIMS = 8
CREATED = 1_760_000_000
SYSTEM_FINGERPRINT = "fp_fake0001"
REASONING_TOKENS = 7  # reported when the request carries reasoning_effort

UPSTREAM_MODELS = ["gpt-5.4-mini", "gpt-5.4", "text-embedding-3-small"]

_FAIL_MODEL = re.compile(r"fail-(\d{3})\b")

ERROR_BODIES: dict[int, dict[str, Any]] = {
    400: {
        "message": "Invalid value for 'temperature': fake upstream rejects this request (fake-400-marker).",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": "invalid_value",
    },
    401: {
        "message": "Incorrect API key provided.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    },
    429: {
        "message": "Rate limit reached for requests (fake-429-marker).",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    },
    500: {
        "message": "The server had an error while processing your request (fake-500-marker).",
        "type": "server_error",
        "param": None,
        "code": None,
    },
    503: {
        "message": "The engine is currently overloaded (fake-503-marker).",
        "type": "server_error",
        "param": None,
        "code": None,
    },
}
RETRY_AFTER_SECONDS = 2


def _content_text(content: Any) -> str:
    """Text of a message ``content`` (string or list of content parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, dict) and isinstance(p.get("text"), str):
                parts.append(p["text"])
        return " ".join(parts)
    return json.dumps(content)


def count_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Deterministic stand-in for a tokenizer: 3 per message plus words."""
    n = 3
    for m in messages or []:
        n += 3
        n += len(_content_text(m.get("content")).split())
        for tc in m.get("tool_calls") or []:
            fn = tc.get("function") or {}
            n += 1 + len(str(fn.get("arguments", "")).split())
    return n


def count_text_tokens(text: str) -> int:
    """Completion tokens for a text answer: one per word, at least 1."""
    return max(1, len(text.split()))


def cached_tokens_for(body: dict[str, Any], prompt_tokens: int) -> int:
    """Prompt-cache hit tokens: half the prompt when ``prompt_cache_key`` is set."""
    return prompt_tokens // 2 if body.get("prompt_cache_key") else 0


def reply_text(body: dict[str, Any]) -> str:
    """The text answer the fake gives for a chat request."""
    messages = body.get("messages") or []
    if messages and messages[-1].get("role") == "tool":
        return f"The tool said: {_content_text(messages[-1].get('content'))}"
    return DEFAULT_REPLY


def _example_value(name: str, schema: dict[str, Any]) -> Any:
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    if t == "integer":
        return 42
    if t == "number":
        return 21.5
    if t == "boolean":
        return True
    if t == "array":
        return [_example_value(name, schema.get("items") or {"type": "string"})]
    if t == "object":
        return {k: _example_value(k, v) for k, v in (schema.get("properties") or {}).items()}
    return f"fake-{name}"


def tool_arguments(tool: dict[str, Any]) -> dict[str, Any]:
    """The arguments the fake calls ``tool`` with: one example value per property."""
    params = (tool.get("function") or {}).get("parameters") or {}
    return {k: _example_value(k, v) for k, v in (params.get("properties") or {}).items()}


def tool_call_id(body: dict[str, Any]) -> str:
    """Stable call id derived from the request's messages."""
    h = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode()).hexdigest()
    return "call_" + h[:24]


def wants_tool_call(body: dict[str, Any]) -> bool:
    tools = body.get("tools") or []
    messages = body.get("messages") or []
    if not tools or body.get("tool_choice") == "none":
        return False
    return not (messages and messages[-1].get("role") == "tool")


def fake_embedding(text: str, dims: int = DEFAULT_EMBEDDING_DIMS) -> list[float]:
    """Deterministic vector; every value is exactly representable in float32."""
    digest = hashlib.sha256(text.encode()).digest()
    while len(digest) < dims:
        digest += hashlib.sha256(digest).digest()
    return [(b - 128) / 256.0 for b in digest[:dims]]


def chunk_text(text: str) -> list[str]:
    """How the fake splits a text answer into stream deltas (word pieces)."""
    return [piece for piece in re.findall(r"\S+\s*|\s+", text) if piece]


def chunk_arguments(arguments: str) -> list[str]:
    """How the fake splits tool-call arguments into stream fragments."""
    return [arguments[i : i + 7] for i in range(0, len(arguments), 7)] or [""]


def _embedding_input_texts(inp: Any) -> list[str]:
    if isinstance(inp, str):
        return [inp]
    if isinstance(inp, list):
        if inp and all(isinstance(x, int) for x in inp):
            return [" ".join(str(x) for x in inp)]
        return [x if isinstance(x, str) else " ".join(str(t) for t in x) for x in inp]
    return [json.dumps(inp)]


# ---------------------------------------------------------------------------
# Response builders
# ---------------------------------------------------------------------------


def chat_usage(body: dict[str, Any], completion_tokens: int) -> dict[str, Any]:
    prompt = count_prompt_tokens(body.get("messages") or [])
    reasoning = REASONING_TOKENS if body.get("reasoning_effort") else 0
    completion = completion_tokens + reasoning
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached_tokens_for(body, prompt), "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def build_chat_completion(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model")
    if wants_tool_call(body):
        tool = body["tools"][0]
        args = json.dumps(tool_arguments(tool))
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": tool_call_id(body),
                    "type": "function",
                    "function": {"name": tool["function"]["name"], "arguments": args},
                }
            ],
            "refusal": None,
            "annotations": [],
        }
        finish = "tool_calls"
        completion = 5 + len(args.split())
    else:
        text = reply_text(body)
        message = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        finish = "stop"
        completion = count_text_tokens(text)
    n = int(body.get("n") or 1)
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:24],
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {"index": i, "message": copy.deepcopy(message), "logprobs": None, "finish_reason": finish}
            for i in range(n)
        ],
        "usage": chat_usage(body, completion * n),
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def build_chat_chunks(body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The chunk objects of a streamed answer (without the ``[DONE]`` marker),
    and the usage of the answer (sent as the last chunk only when
    ``stream_options.include_usage`` is true)."""
    cid = "chatcmpl-" + uuid.uuid4().hex[:24]
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        c: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": body.get("model"),
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            c["usage"] = None
        return c

    chunks: list[dict[str, Any]] = []
    if wants_tool_call(body):
        tool = body["tools"][0]
        args = json.dumps(tool_arguments(tool))
        chunks.append(
            chunk(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": tool_call_id(body),
                            "type": "function",
                            "function": {"name": tool["function"]["name"], "arguments": ""},
                        }
                    ],
                    "refusal": None,
                }
            )
        )
        for frag in chunk_arguments(args):
            chunks.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]}))
        chunks.append(chunk({}, "tool_calls"))
        completion = 5 + len(args.split())
    else:
        text = reply_text(body)
        chunks.append(chunk({"role": "assistant", "content": "", "refusal": None}))
        for piece in chunk_text(text):
            chunks.append(chunk({"content": piece}))
        chunks.append(chunk({}, "stop"))
        completion = count_text_tokens(text)
    usage = chat_usage(body, completion)
    if include_usage:
        chunks.append(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": body.get("model"),
                "service_tier": "default",
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [],
                "usage": usage,
            }
        )
    return chunks, usage


def build_embeddings(body: dict[str, Any]) -> dict[str, Any]:
    texts = _embedding_input_texts(body.get("input"))
    dims = int(body.get("dimensions") or DEFAULT_EMBEDDING_DIMS)
    fmt = body.get("encoding_format") or "float"
    data = []
    for i, t in enumerate(texts):
        vec = fake_embedding(t, dims)
        if fmt == "base64":
            emb: Any = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
        else:
            emb = vec
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = sum(max(1, len(t.split())) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": body.get("model"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    e = dict(ERROR_BODIES.get(status) or {
        "message": f"fake upstream error {status}",
        "type": "server_error" if status >= 500 else "invalid_request_error",
        "param": None,
        "code": None,
    })
    if message:
        e["message"] = message
    return {"error": e}


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle
    # plus delayed ACKs add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True
    fake: "FakeOpenAI"  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.fake.verbose:
            super().log_message(format, *args)

    # -- plumbing -----------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send_json(self, status: int, obj: Any, extra_headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", "req_fake_" + uuid.uuid4().hex[:16])
        self.send_header("openai-processing-ms", "1")
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, status: int, message: str | None = None) -> None:
        headers = {}
        if status == 429:
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        self._send_json(status, error_body(status, message), headers)

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _send_sse(self, chunks: list[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", "req_fake_" + uuid.uuid4().hex[:16])
        self.end_headers()
        delay = self.fake.chunk_delay
        fragment = self.fake.fragment_events
        cut = self.fake.truncate_stream_after
        try:
            for n, c in enumerate(chunks):
                if cut is not None and n >= cut:
                    # Die mid-stream: no [DONE], no chunked terminator, connection reset.
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                event = b"data: " + json.dumps(c).encode() + b"\n\n"
                if fragment:
                    # Split each event across writes (and TCP segments): mid-JSON
                    # and between the two newlines that end it.
                    cuts = [0, len(event) // 3, len(event) - 1, len(event)]
                    for a, b in zip(cuts, cuts[1:]):
                        self._write_chunk(event[a:b])
                        time.sleep(0.003)
                else:
                    self._write_chunk(event)
                if delay:
                    time.sleep(delay)
            self._write_chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _record(self, body_bytes: bytes) -> dict[str, Any] | None:
        try:
            body = json.loads(body_bytes) if body_bytes else None
        except ValueError:
            body = None
        rec = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
            "raw": body_bytes,
            "time": time.time(),
        }
        self._rec = rec
        if not self.path.startswith("/_control"):
            with self.fake.lock:
                self.fake.requests.append(rec)
        return body

    def _check_auth(self) -> bool:
        want = self.fake.expected_key
        if want is None:
            return True
        if self.headers.get("Authorization") != f"Bearer {want}":
            self._send_error(401)
            return False
        return True

    # -- routes -------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._record(b"")
        path = self.path.split("?")[0].rstrip("/")
        if path in ("/health", "/_control/health"):
            self._send_json(200, {"status": "ok"})
            return
        if not self._check_auth():
            return
        if path == "/v1/models":
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": m, "object": "model", "created": CREATED, "owned_by": "fake"} for m in UPSTREAM_MODELS
                    ],
                },
            )
            return
        if path.startswith("/v1/models/"):
            mid = path[len("/v1/models/") :]
            if mid in UPSTREAM_MODELS:
                self._send_json(200, {"id": mid, "object": "model", "created": CREATED, "owned_by": "fake"})
            else:
                self._send_json(
                    404,
                    {
                        "error": {
                            "message": f"The model '{mid}' does not exist",
                            "type": "invalid_request_error",
                            "param": "model",
                            "code": "model_not_found",
                        }
                    },
                )
            return
        self._send_json(404, {"error": {"message": f"Unknown path {path}", "type": "invalid_request_error",
                                        "param": None, "code": None}})

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        raw = self._read_body()
        body = self._record(raw)
        path = self.path.split("?")[0].rstrip("/")

        if path == "/_control/reset":
            self.fake.reset()
            self._send_json(200, {"ok": True})
            return
        if path == "/_control/fail":
            spec = body or {}
            self.fake.fail_next(int(spec.get("status", 500)), int(spec.get("count", 1)), spec.get("message"))
            self._send_json(200, {"ok": True})
            return

        if not self._check_auth():
            return
        if not isinstance(body, dict):
            self._send_json(400, {"error": {"message": "We could not parse the JSON body of your request.",
                                            "type": "invalid_request_error", "param": None, "code": None}})
            return

        forced = self.fake.take_failure()
        if forced is not None:
            self._send_error(*forced)
            return
        m = _FAIL_MODEL.search(str(body.get("model", "")))
        if m:
            self._send_error(int(m.group(1)))
            return

        if path == "/v1/chat/completions":
            if not body.get("messages"):
                self._send_json(400, {"error": {"message": "[] is too short - 'messages'",
                                                "type": "invalid_request_error", "param": "messages",
                                                "code": "empty_array"}})
                return
            if body.get("stream"):
                chunks, usage = build_chat_chunks(body)
                self._rec["usage"] = usage
                self._send_sse(chunks)
            else:
                resp = build_chat_completion(body)
                self._rec["usage"] = resp["usage"]
                self._send_json(200, resp)
            return
        if path == "/v1/embeddings":
            resp = build_embeddings(body)
            self._rec["usage"] = resp["usage"]
            self._send_json(200, resp)
            return
        self._send_json(404, {"error": {"message": f"Unknown path {path}", "type": "invalid_request_error",
                                        "param": None, "code": None}})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing an idle keep-alive connection is normal.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class FakeOpenAI:
    """In-process fake upstream; ``start()`` returns its ``/v1`` base URL."""

    def __init__(self, expected_key: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 verbose: bool = False) -> None:
        self.expected_key = expected_key
        self.verbose = verbose
        self.chunk_delay = 0.0  # seconds between stream chunks
        self.fragment_events = False  # split every SSE event across several writes
        self.truncate_stream_after: int | None = None  # drop the connection after N chunks
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self._failures: list[tuple[int, str | None]] = []
        handler = type("FakeHandler", (_Handler,), {"fake": self})
        self.httpd = _Server((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> str:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- control ------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self._failures.clear()
        self.chunk_delay = 0.0
        self.fragment_events = False
        self.truncate_stream_after = None

    def fail_next(self, status: int, count: int = 1, message: str | None = None) -> None:
        with self.lock:
            self._failures.extend([(status, message)] * count)

    def take_failure(self) -> tuple[int, str | None] | None:
        with self.lock:
            return self._failures.pop(0) if self._failures else None

    # -- inspection ---------------------------------------------------------

    def received(self, path: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            reqs = list(self.requests)
        if path is not None:
            reqs = [r for r in reqs if r["path"].split("?")[0] == path]
        return reqs

    def last(self, path: str = "/v1/chat/completions") -> dict[str, Any]:
        reqs = self.received(path)
        assert reqs, f"the fake upstream received no request on {path}"
        return reqs[-1]


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    fake = FakeOpenAI(port=port, verbose=True)
    print(f"fake OpenAI upstream on {fake.base_url}", flush=True)
    try:
        fake.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
