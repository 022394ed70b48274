"""Fixtures for the end-to-end tests of Switchyard with the official `openai` client.

Environment:
  SWITCHYARD_BIN          the gateway binary (default: <repo>/target/debug/switchyard)
  SWITCHYARD_TEST_TARGET  "gateway" (default) or "fake": point the client straight
                          at the fake upstream, to validate the fake and the tests
                          themselves; gateway-only tests are skipped then.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx2 as httpx
import openai
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fake_openai import FakeOpenAI  # noqa: E402

REPO = HERE.parent.parent
SWITCHYARD_BIN = os.path.abspath(os.environ.get("SWITCHYARD_BIN") or str(REPO / "target" / "debug" / "switchyard"))
TARGET = os.environ.get("SWITCHYARD_TEST_TARGET", "gateway").strip().lower()
DIRECT = TARGET == "fake"

UPSTREAM_KEY = "sk-upstream-secret-" + secrets.token_hex(16)
CLIENT_KEY = "sk-client-anything"
ADMIN_KEY = "admin-secret-" + secrets.token_hex(12)

# ---------------------------------------------------------------------------
# Secret scan: every response body and header the suite receives and every
# line any gateway logs is kept, and test_zz_secret_scan.py checks that no
# configured secret appears in them.
# ---------------------------------------------------------------------------

CAPTURED: list[bytes] = []
# Secrets that must appear in no response and no log line.
SECRETS: set[str] = {UPSTREAM_KEY, ADMIN_KEY}
# Secrets that may be shown to their owner once (virtual keys), but never logged.
LOG_SECRETS: set[str] = set()
ALL_LOGS: list[Path] = []


class _TeeStream(httpx.SyncByteStream):
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            CAPTURED.append(bytes(chunk))
            yield chunk

    def close(self) -> None:
        self.inner.close()


class TeeTransport(httpx.HTTPTransport):
    """An httpx transport that keeps a copy of every response (headers and body)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = super().handle_request(request)
        CAPTURED.append(str(resp.headers).encode())
        resp.stream = _TeeStream(resp.stream)
        return resp


def tee_http_client(timeout: float = 30.0) -> httpx.Client:
    return httpx.Client(transport=TeeTransport(), timeout=timeout)


class _TeeResponse:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def read(self, *a: Any) -> bytes:
        data = self._inner.read(*a)
        CAPTURED.append(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        for line in self._inner:
            CAPTURED.append(line)
            yield line

    def readline(self, *a: Any) -> bytes:
        data = self._inner.readline(*a)
        CAPTURED.append(data)
        return data

    def __enter__(self) -> "_TeeResponse":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


_real_urlopen = urllib.request.urlopen


def _tee_urlopen(*args: Any, **kwargs: Any) -> Any:
    try:
        r = _real_urlopen(*args, **kwargs)
    except urllib.error.HTTPError as e:
        body = e.read()
        CAPTURED.append(str(e.headers).encode() + body)
        import io

        raise urllib.error.HTTPError(e.url, e.code, e.msg, e.headers, io.BytesIO(body)) from None
    CAPTURED.append(str(r.headers).encode())
    return _TeeResponse(r)


urllib.request.urlopen = _tee_urlopen
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0

# What the gateway config maps public names to.
UPSTREAM_MODEL = {"fast": "gpt-5.4-mini", "default": "gpt-5.4-mini", "embed": "text-embedding-3-small"}
PRICE_FAST = {"input": 0.4, "output": 1.6, "cached_input": 0.04}

CONFIG_TEMPLATE = """\
# One upstream attempt per request and a breaker that never opens: these tests
# check single calls (retries and breakers are covered by tests/resilience.rs).
[resilience]
max_attempts = 1
breaker_consecutive_failures = 100000
breaker_min_calls = 100000

[providers.fake]
type = "openai"
base_url = "{base_url}"
api_key = "${{FAKE_UPSTREAM_KEY}}"
models = ["gpt-*"]

[models.fast]
provider = "fake"
model = "gpt-5.4-mini"
price = {{ input = 0.4, output = 1.6, cached_input = 0.04 }}

[models.embed]
provider = "fake"
model = "text-embedding-3-small"

[aliases]
default = "fast"
"""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gateway_only: needs the real gateway (skipped with SWITCHYARD_TEST_TARGET=fake)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not DIRECT:
        return
    skip = pytest.mark.skip(reason="gateway-specific; SWITCHYARD_TEST_TARGET=fake")
    for item in items:
        if "gateway_only" in item.keywords:
            item.add_marker(skip)


def upstream_model(public: str) -> str:
    """The model id the upstream should receive for a public name."""
    return public if DIRECT else UPSTREAM_MODEL.get(public, public)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Gateway:
    """One running `switchyard serve` process."""

    def __init__(self, tmp: Path, config_text: str, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.config_path = tmp / "switchyard.toml"
        self.config_path.write_text(config_text)
        self.ledger_path = tmp / "ledger.sqlite"
        self.stderr_path = tmp / "stderr.log"
        self.stdout_path = tmp / "stdout.log"
        ALL_LOGS.extend([self.stderr_path, self.stdout_path])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.returncode: int | None = None
        full_env = dict(os.environ)
        full_env["FAKE_UPSTREAM_KEY"] = UPSTREAM_KEY
        full_env.update(env or {})
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [
                SWITCHYARD_BIN,
                "serve",
                "--config",
                str(self.config_path),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--ledger",
                str(self.ledger_path),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            env=full_env,
        )
        self._wait_ready()

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = "no answer"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self._close_files()
                pytest.fail(
                    f"switchyard exited with code {rc} before becoming ready.\n"
                    f"--- stderr ---\n{self.stderr()}\n--- stdout ---\n{self.stdout()}"
                )
            try:
                status, body = http_get(self.url + "/ready", timeout=1.0)
                if status == 200:
                    return
                last = f"HTTP {status}: {body[:200]!r}"
            except OSError as e:
                last = repr(e)
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        self._close_files()
        pytest.fail(
            f"switchyard not ready within {READY_TIMEOUT_S}s (last /ready: {last}).\n"
            f"--- stderr ---\n{self.stderr()}\n--- stdout ---\n{self.stdout()}"
        )

    def _close_files(self) -> None:
        for f in (self._out, self._err):
            if not f.closed:
                f.close()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Graceful stop; returns the exit code (killed after STOP_TIMEOUT_S)."""
        if self.returncode is not None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.returncode = -9
                self._close_files()
                pytest.fail(f"switchyard did not exit within {STOP_TIMEOUT_S}s of signal {sig}\n{self.stderr()}")
        self.returncode = self.proc.returncode
        self._close_files()
        return self.returncode

    def ledger_rows(self) -> list[dict[str, Any]]:
        """All ledger rows (read-only open; fine while running or after stop)."""
        assert self.ledger_path.exists(), f"no ledger file at {self.ledger_path}"
        con = sqlite3.connect(f"file:{self.ledger_path}?mode=ro", uri=True, timeout=5)
        try:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute("SELECT * FROM ledger")]
        finally:
            con.close()


class DirectTarget:
    """Stand-in for Gateway in SWITCHYARD_TEST_TARGET=fake mode."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.url = f"http://127.0.0.1:{fake.port}"
        self.base_url = fake.base_url

    def stderr(self) -> str:
        return ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        return 0


def gateway_config(fake: FakeOpenAI) -> str:
    return CONFIG_TEMPLATE.format(base_url=fake.base_url)


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeOpenAI]:
    f = FakeOpenAI(expected_key=CLIENT_KEY if DIRECT else UPSTREAM_KEY)
    f.start()
    yield f
    f.stop()


@pytest.fixture(autouse=True)
def _reset_fake(fake: FakeOpenAI) -> Iterator[None]:
    fake.reset()
    yield
    fake.reset()


@pytest.fixture(scope="session")
def gateway(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The shared gateway (or the fake itself in direct mode)."""
    if DIRECT:
        yield DirectTarget(fake)
        return
    if not os.path.exists(SWITCHYARD_BIN):
        pytest.fail(f"switchyard binary not found at {SWITCHYARD_BIN} (set SWITCHYARD_BIN, or SWITCHYARD_TEST_TARGET=fake)")
    gw = Gateway(tmp_path_factory.mktemp("gateway"), gateway_config(fake))
    yield gw
    rc = gw.stop()
    assert rc == 0, f"switchyard exited with {rc} on SIGTERM\n--- stderr ---\n{gw.stderr()}"


@pytest.fixture
def start_gateway(fake: FakeOpenAI, tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Factory for a dedicated gateway (own ledger); stopped at teardown."""
    if not os.path.exists(SWITCHYARD_BIN):
        pytest.fail(f"switchyard binary not found at {SWITCHYARD_BIN}")
    started: list[Gateway] = []

    def start(config_text: str | None = None, env: dict[str, str] | None = None) -> Gateway:
        gw = Gateway(tmp_path / f"gw{len(started)}", config_text or gateway_config(fake), env)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


def make_client(base_url: str, api_key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=base_url, api_key=api_key, max_retries=0, timeout=30.0, http_client=tee_http_client()
    )


@pytest.fixture
def client(gateway: Any) -> Iterator[openai.OpenAI]:
    c = make_client(gateway.base_url)
    yield c
    c.close()
