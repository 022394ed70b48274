"""A fake Gemini API (generativelanguage v1beta) upstream, stdlib only.

Speaks the real wire format (https://ai.google.dev/api/generate-content):

* ``POST {base}/models/{model}:generateContent``: a ``GenerateContentResponse``
  (``candidates[].content.parts`` with ``text`` or ``functionCall``,
  ``candidates[].finishReason``, ``usageMetadata``, ``modelVersion``,
  ``responseId``).
* ``POST {base}/models/{model}:streamGenerateContent?alt=sse``: a stream of
  ``GenerateContentResponse`` objects, each ``data: <json>\\r\\n\\r\\n`` (CRLF,
  as Google sends it), no ``[DONE]`` sentinel. Every chunk carries a
  ``usageMetadata`` whose counts are cumulative; the last chunk has the
  ``finishReason`` and the final counts. Function calls arrive whole, in one
  chunk.

``{base}`` is ``http://127.0.0.1:PORT/v1beta``. The key goes in
``x-goog-api-key`` (or ``?key=``); a wrong key gets 400 ``INVALID_ARGUMENT``
with reason ``API_KEY_INVALID``, as from Google.

Function calling: when the request has ``functionDeclarations`` (and
``toolConfig.functionCallingConfig.mode`` is not ``NONE``) and the last
content has no ``functionResponse`` part, the answer is a ``functionCall`` of
the first declared function (or the first of ``allowedFunctionNames``), with
``finishReason: "STOP"`` (Gemini says STOP after function calls). Gemini 3
models attach a ``thoughtSignature`` to the function-call part and reject a
later request whose history has a function call of the current turn without
its signature (``require_thought_signature``, on by default).
Otherwise the answer is text; after a ``functionResponse`` it quotes the
response (``The function returned: ...``).

Usage: ``promptTokenCount`` (includes ``cachedContentTokenCount`` =
CACHED_TOKENS), ``candidatesTokenCount``, ``thoughtsTokenCount`` =
THOUGHTS_TOKENS, ``totalTokenCount``; recorded in ``rec["usage"]``.

Validation like the real API (400 ``INVALID_ARGUMENT``): unknown fields, roles
other than ``user``/``model`` (a ``system`` role must go to
``systemInstruction``), empty ``contents``, empty parts, a function response
turn that does not follow a function call turn or whose number of parts
differs.

Failure injection: ``FakeGemini.fail_next(status, count=1)`` (429
``RESOURCE_EXHAUSTED`` with a ``RetryInfo``, 503 ``UNAVAILABLE``, 500
``INTERNAL``, 400 ``INVALID_ARGUMENT`` ...); ``FakeGemini.safety_block_next()``
answers the next request with ``finishReason: "SAFETY"`` and blocked
``safetyRatings`` (streamed: some text first, then the SAFETY chunk); magic
model names ``...fail-<status>``.

Run standalone: ``python fake_gemini.py [port]``.
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
from urllib.parse import parse_qs, urlsplit

from fake_openai import _example_value, _Handler as _OpenAIHandler, _Server

GEMINI_REPLY = "Greetings from the fake Gemini upstream, relayed by Switchyard."
SAFETY_PARTIAL = "I started to answer but"
CACHED_TOKENS = 4
THOUGHTS_TOKENS = 9
RETRY_DELAY_SECONDS = 1

_FAIL_MODEL = re.compile(r"fail-(\d{3})\b")
_PATH = re.compile(r"^/v1beta/models/([^/:]+):(generateContent|streamGenerateContent)$")

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
STATUS_MESSAGES = {
    429: "You exceeded your current quota, please check your plan and billing details. (fake-429-marker)",
    500: "An internal error has occurred. (fake-500-marker)",
    503: "The model is overloaded. Please try again later. (fake-503-marker)",
}

TOP_FIELDS = {"contents", "tools", "toolConfig", "safetySettings", "systemInstruction", "generationConfig",
              "cachedContent", "model"}
GENERATION_FIELDS = {
    "stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "responseModalities",
    "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed", "presencePenalty",
    "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers", "speechConfig",
    "thinkingConfig", "imageConfig", "mediaResolution",
}
PART_FIELDS = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
               "codeExecutionResult", "thought", "thoughtSignature", "videoMetadata", "partMetadata"}
PART_DATA = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
             "codeExecutionResult"}


def camel(key: str) -> str:
    """Google's JSON parser takes both lowerCamel and snake_case field names."""
    head, *rest = key.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def get(d: dict[str, Any], key: str, default: Any = None) -> Any:
    for k, v in d.items():
        if camel(k) == key:
            return v
    return default


def words(text: str) -> int:
    return len(text.split())


def part_text(p: dict[str, Any]) -> str:
    if "text" in p:
        return str(p["text"])
    fc = get(p, "functionCall")
    if fc:
        return json.dumps(fc.get("args"))
    fr = get(p, "functionResponse")
    if fr:
        return json.dumps(fr.get("response"))
    return ""


def system_instruction_text(body: dict[str, Any]) -> str:
    si = get(body, "systemInstruction") or {}
    return " ".join(part_text(p) for p in si.get("parts") or [])


def count_prompt_tokens(body: dict[str, Any]) -> int:
    n = 2 + words(system_instruction_text(body))
    for c in get(body, "contents") or []:
        n += 1 + sum(words(part_text(p)) for p in c.get("parts") or [])
    for t in get(body, "tools") or []:
        n += 4 * len(get(t, "functionDeclarations") or [])
    return max(n, CACHED_TOKENS)


def declarations(body: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in get(body, "tools") or []:
        out.extend(get(t, "functionDeclarations") or [])
    return out


def function_responses(content: dict[str, Any]) -> list[dict[str, Any]]:
    return [get(p, "functionResponse") for p in content.get("parts") or [] if get(p, "functionResponse")]


def wants_function_call(body: dict[str, Any]) -> bool:
    decls = declarations(body)
    cfg = get(get(body, "toolConfig") or {}, "functionCallingConfig") or {}
    if not decls or str(cfg.get("mode", "")).upper() == "NONE":
        return False
    contents = get(body, "contents") or []
    return not (contents and function_responses(contents[-1]))


def _lower_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_lower_types(x) for x in schema]
    return schema


def function_args(decl: dict[str, Any]) -> dict[str, Any]:
    """The args the fake calls a function declaration with: an example value per property."""
    schema = _lower_types(get(decl, "parameters") or get(decl, "parametersJsonSchema") or {})
    return {k: _example_value(k, v) for k, v in (schema.get("properties") or {}).items()}


def chosen_declaration(body: dict[str, Any]) -> dict[str, Any]:
    decls = declarations(body)
    cfg = get(get(body, "toolConfig") or {}, "functionCallingConfig") or {}
    allowed = get(cfg, "allowedFunctionNames") or []
    for d in decls:
        if d.get("name") in allowed:
            return d
    return decls[0]


def thought_signature(body: dict[str, Any]) -> str:
    h = hashlib.sha256(json.dumps(get(body, "contents"), sort_keys=True).encode()).hexdigest()
    return "CiQB" + h[:40]


def reply_text(body: dict[str, Any]) -> str:
    contents = get(body, "contents") or []
    frs = function_responses(contents[-1]) if contents else []
    if frs:
        return "The function returned: " + " | ".join(json.dumps(fr.get("response"), sort_keys=True) for fr in frs)
    return GEMINI_REPLY


def usage_metadata(prompt: int, candidates: int, thoughts: int = THOUGHTS_TOKENS) -> dict[str, Any]:
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates + thoughts,
        "cachedContentTokenCount": CACHED_TOKENS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": CACHED_TOKENS}],
        "thoughtsTokenCount": thoughts,
    }


SAFETY_RATINGS_BLOCKED = [
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
]


def build_parts(body: dict[str, Any], model: str) -> tuple[list[dict[str, Any]], str]:
    """(parts, finishReason) of the answer."""
    if wants_function_call(body):
        d = chosen_declaration(body)
        part: dict[str, Any] = {"functionCall": {"name": d["name"], "args": function_args(d)}}
        if model.startswith("gemini-3"):
            part["thoughtSignature"] = thought_signature(body)
        return [part], "STOP"
    text = reply_text(body)
    cfg = get(body, "generationConfig") or {}
    for s in get(cfg, "stopSequences") or []:
        if s and s in text:
            return [{"text": text[: text.index(s)]}], "STOP"
    mx = get(cfg, "maxOutputTokens")
    if isinstance(mx, int) and mx < words(text):
        return [{"text": " ".join(text.split()[:mx])}], "MAX_TOKENS"
    return [{"text": text}], "STOP"


def candidates_tokens(parts: list[dict[str, Any]]) -> int:
    return sum(words(p["text"]) if "text" in p else 2 + words(json.dumps(p["functionCall"]["args"])) for p in parts)


def build_response(body: dict[str, Any], model: str, response_id: str) -> dict[str, Any]:
    parts, finish = build_parts(body, model)
    prompt = count_prompt_tokens(body)
    return {
        "candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": 0}],
        "usageMetadata": usage_metadata(prompt, candidates_tokens(parts)),
        "modelVersion": model,
        "responseId": response_id,
    }


def build_safety_response(body: dict[str, Any], model: str, response_id: str) -> dict[str, Any]:
    return {
        "candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": SAFETY_RATINGS_BLOCKED}],
        "usageMetadata": usage_metadata(count_prompt_tokens(body), 0),
        "modelVersion": model,
        "responseId": response_id,
    }


def split_text(text: str, pieces: int = 3) -> list[str]:
    step = max(1, len(text) // pieces)
    return [text[i : i + step] for i in range(0, len(text), step)] or [""]


def build_chunks(body: dict[str, Any], model: str, response_id: str, safety: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    prompt = count_prompt_tokens(body)

    def chunk(parts: list[dict[str, Any]] | None, cands: int, finish: str | None = None,
              ratings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        cand: dict[str, Any] = {"index": 0}
        if parts is not None:
            cand["content"] = {"parts": parts, "role": "model"}
        if finish:
            cand["finishReason"] = finish
        if ratings:
            cand["safetyRatings"] = ratings
        return {"candidates": [cand], "usageMetadata": usage_metadata(prompt, cands),
                "modelVersion": model, "responseId": response_id}

    if safety:
        chunks = [chunk([{"text": SAFETY_PARTIAL}], words(SAFETY_PARTIAL)),
                  chunk(None, words(SAFETY_PARTIAL), "SAFETY", SAFETY_RATINGS_BLOCKED)]
        return chunks, chunks[-1]["usageMetadata"]
    parts, finish = build_parts(body, model)
    if "functionCall" in parts[0]:
        chunks = [chunk(parts, candidates_tokens(parts), finish)]
        return chunks, chunks[-1]["usageMetadata"]
    pieces = split_text(parts[0]["text"])
    chunks = []
    sofar = ""
    for i, piece in enumerate(pieces):
        sofar += piece
        last = i == len(pieces) - 1
        chunks.append(chunk([{"text": piece}], words(sofar) if not last else candidates_tokens(parts),
                            finish if last else None))
    return chunks, chunks[-1]["usageMetadata"]


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    name = STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    err: dict[str, Any] = {"code": status, "message": message or STATUS_MESSAGES.get(status, f"fake error {status}"),
                           "status": name}
    if status == 429:
        err["details"] = [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                             "quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{RETRY_DELAY_SECONDS}s"},
        ]
    return {"error": err}


def validate(body: Any, model: str, require_signature: bool) -> str | None:
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    for k in body:
        if camel(k) not in TOP_FIELDS:
            return f'Invalid JSON payload received. Unknown name "{k}": Cannot find field.'
    for k in get(body, "generationConfig") or {}:
        if camel(k) not in GENERATION_FIELDS:
            return f'Invalid JSON payload received. Unknown name "{k}" at \'generation_config\': Cannot find field.'
    contents = get(body, "contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    si = get(body, "systemInstruction")
    if si is not None and (not isinstance(si, dict) or not si.get("parts")):
        return "* GenerateContentRequest.system_instruction.parts: contents.parts must not be empty."
    for t in get(body, "tools") or []:
        for d in get(t, "functionDeclarations") or []:
            if not re.match(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,127}$", str(d.get("name", ""))):
                return "* GenerateContentRequest.tools[0].function_declarations[0].name: Invalid function name."
    prev_calls: list[dict[str, Any]] = []
    current_turn_start = 0
    for i, c in enumerate(contents):
        role = c.get("role", "user")
        if role not in ("user", "model"):
            return "Please use a valid role: user, model."
        parts = c.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
        for j, p in enumerate(parts):
            if not isinstance(p, dict):
                return f"Invalid JSON payload received at contents[{i}].parts[{j}]."
            for k in p:
                if camel(k) not in PART_FIELDS:
                    return f'Invalid JSON payload received. Unknown name "{k}" at \'contents[{i}].parts[{j}]\': Cannot find field.'
            if sum(1 for k in p if camel(k) in PART_DATA) != 1:
                return (f"* GenerateContentRequest.contents[{i}].parts[{j}].data: required oneof field 'data' "
                        "must have one initialized field")
            fc = get(p, "functionCall")
            if fc is not None and role != "model":
                return f"* GenerateContentRequest.contents[{i}].parts[{j}]: function calls must come from the model."
        frs = function_responses(c)
        if frs:
            if not prev_calls:
                return ("Please ensure that function response turn comes immediately after a function call turn.")
            if len(frs) != len(prev_calls):
                return ("Please ensure that the number of function response parts is equal to the number of "
                        "function call parts of the function call turn.")
            names = sorted(fc["name"] for fc in prev_calls)
            if sorted(str(fr.get("name")) for fr in frs) != names:
                return "Function response names must match the function call names of the previous turn."
        if role == "user" and not frs:
            current_turn_start = i
        prev_calls = [get(p, "functionCall") for p in parts if get(p, "functionCall")] if role == "model" else []
    if require_signature and model.startswith("gemini-3"):
        for i, c in enumerate(contents[current_turn_start:], start=current_turn_start):
            if c.get("role") != "model":
                continue
            calls = [p for p in c["parts"] if get(p, "functionCall")]
            if calls and not get(calls[0], "thoughtSignature"):
                return (f"Function call is missing a thought_signature in functionCall parts. This is required for "
                        f"tools to work correctly, and missing thought_signature may lead to degraded model "
                        f"performance. Additional data, function call `default_api:{get(calls[0], 'functionCall')['name']}` "
                        f", position {i + 1}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures "
                        "for more details.")
    return None


class _GeminiHandler(_OpenAIHandler):
    server_version = "FakeGemini/1.0"
    fake: "FakeGemini"  # type: ignore[assignment]

    def _send_json(self, status: int, obj: Any, extra_headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj, indent=2).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Server-Timing", "gfet4t7; dur=1")
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, status: int, message: str | None = None) -> None:
        self._rec["error_status"] = status
        self._send_json(status, error_body(status, message))

    def _send_sse(self, chunks: list[dict[str, Any]]) -> None:  # type: ignore[override]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Disposition", "attachment")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for c in chunks:
                self._write_chunk(b"data: " + json.dumps(c, separators=(",", ":")).encode() + b"\r\n\r\n")
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
        self._send_error(404, f"Method not found: {self.path}")

    def do_POST(self) -> None:  # noqa: N802
        raw = self._read_body()
        body = self._record(raw)
        url = urlsplit(self.path)
        m = _PATH.match(url.path)
        if not m:
            self._send_json(404, error_body(404, f"Method not found: {url.path}"))
            return
        model, method = m.group(1), m.group(2)
        query = parse_qs(url.query)
        key = self.headers.get("x-goog-api-key") or (query.get("key") or [None])[0]
        if key != self.fake.expected_key:
            self._send_json(400, {"error": {
                "code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                             "domain": "googleapis.com",
                             "metadata": {"service": "generativelanguage.googleapis.com"}}]}})
            return
        problem = validate(body, model, self.fake.require_thought_signature)
        if problem:
            self._send_error(400, problem)
            return
        assert isinstance(body, dict)
        forced = self.fake.take_failure()
        if forced is not None:
            self._send_error(*forced)
            return
        fm = _FAIL_MODEL.search(model)
        if fm:
            self._send_error(int(fm.group(1)))
            return
        safety = self.fake.take_safety()
        response_id = "fakeResp" + uuid.uuid4().hex[:14]
        if method == "streamGenerateContent":
            if (query.get("alt") or [""])[0] != "sse":
                self._send_error(400, "this fake only streams with alt=sse")
                return
            chunks, usage = build_chunks(body, model, response_id, safety)
            self._rec["usage"] = usage
            self._rec["chunks"] = chunks
            self._send_sse(chunks)
        else:
            resp = (build_safety_response if safety else build_response)(body, model, response_id)
            self._rec["usage"] = resp["usageMetadata"]
            self._rec["response"] = resp
            self._send_json(200, resp)


class FakeGemini:
    """In-process fake Gemini API; ``base_url`` ends in ``/v1beta``."""

    def __init__(self, expected_key: str, host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> None:
        self.expected_key = expected_key
        self.verbose = verbose
        self.chunk_delay = 0.0
        self.require_thought_signature = True
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self._failures: list[tuple[int, str | None]] = []
        self._safety = 0
        handler = type("FakeGeminiHandler", (_GeminiHandler,), {"fake": self})
        self.httpd = _Server((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1beta"

    def start(self) -> str:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fake-gemini", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self._failures.clear()
            self._safety = 0
        self.chunk_delay = 0.0
        self.require_thought_signature = True

    def fail_next(self, status: int, count: int = 1, message: str | None = None) -> None:
        with self.lock:
            self._failures.extend([(status, message)] * count)

    def take_failure(self) -> tuple[int, str | None] | None:
        with self.lock:
            return self._failures.pop(0) if self._failures else None

    def safety_block_next(self, count: int = 1) -> None:
        with self.lock:
            self._safety += count

    def take_safety(self) -> bool:
        with self.lock:
            if self._safety:
                self._safety -= 1
                return True
            return False

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["method"] == "POST"]

    def last(self) -> dict[str, Any]:
        reqs = self.received()
        assert reqs, "the fake Gemini upstream received no request"
        return reqs[-1]


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    fake = FakeGemini(expected_key=sys.argv[2] if len(sys.argv) > 2 else "gm-fake", port=port, verbose=True)
    print(f"fake Gemini upstream on {fake.base_url}", flush=True)
    try:
        fake.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
