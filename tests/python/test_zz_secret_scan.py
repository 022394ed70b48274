"""Runs last (file order): every response body and header the suite received
and every line every gateway logged must be free of the configured secrets:
the upstream provider keys, the admin key, and (in logs) the virtual keys."""

from __future__ import annotations

import time

import pytest

from conftest import ALL_LOGS, CAPTURED, DIRECT, LOG_SECRETS, SECRETS


@pytest.mark.skipif(DIRECT, reason="scans the gateway's output")
def test_no_secret_in_any_response_or_log_line():
    time.sleep(0.3)  # the gateways' log writers are asynchronous
    assert len(CAPTURED) > 100, f"the suite should have captured its responses ({len(CAPTURED)})"
    logs = [p for p in ALL_LOGS if p.exists()]
    assert logs, "no gateway logs found"
    blob = b"\n".join(CAPTURED)
    log_text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert "switchyard::access" in log_text, "access log lines expected"
    leaks = []
    for s in SECRETS:
        # The whole secret and its distinctive tail (a partially masked key still leaks).
        for needle in (s, s[-12:]):
            if needle.encode() in blob:
                leaks.append(f"response contains {needle[:6]}...")
            if needle in log_text:
                leaks.append(f"log contains {needle[:6]}...")
    for s in LOG_SECRETS:
        if s in log_text or s[-12:] in log_text:
            leaks.append(f"log contains virtual key {s[:8]}...")
    assert not leaks, leaks
