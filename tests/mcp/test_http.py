"""The Streamable HTTP endpoint's gatekeeping, on the wire (httpx2, no MCP client logic)."""

from __future__ import annotations

import urllib.parse

import pytest

from conftest import connect, http_client, run

PROTOCOL = "2025-11-25"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": PROTOCOL,
        "capabilities": {},
        "clientInfo": {"name": "jgate-tests", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def post_initialize(stack, key, **headers):
    async def body():
        async with http_client(key) as http:
            return await http.post(stack.mcp_url, json=INITIALIZE, headers=MCP_HEADERS | headers)

    return run(body)


def show(resp) -> str:
    return f"HTTP {resp.status_code} {dict(resp.headers)}\n{resp.text[:1000]}"


def test_healthz_needs_no_auth(stack):
    async def body():
        async with http_client(None) as http:
            return await http.get(stack.base_url + "/healthz")

    resp = run(body)
    assert resp.status_code == 200, show(resp)


def test_valid_key_initializes(stack):
    resp = post_initialize(stack, stack.keys["triage-bot"])
    assert resp.status_code == 200, show(resp)
    assert '"protocolVersion"' in resp.text, show(resp)


@pytest.mark.parametrize("key", [None, "jgate_not-a-real-key", "", "Basic YWRtaW46YWRtaW4="])
def test_missing_or_bad_key_is_401(stack, key):
    headers = {}
    if key is not None and key.startswith("Basic "):
        headers["Authorization"] = key
        key = None
    resp = post_initialize(stack, key, **headers)
    assert resp.status_code == 401, show(resp)
    challenge = resp.headers.get("www-authenticate", "")
    assert challenge.lower().startswith("bearer"), show(resp)
    assert "jgate_" not in resp.text, show(resp)


def test_get_without_key_is_401(stack):
    async def body():
        async with http_client(None) as http:
            return await http.get(stack.mcp_url, headers={"Accept": "text/event-stream"})

    resp = run(body)
    assert resp.status_code == 401, show(resp)
    assert resp.headers.get("www-authenticate", "").lower().startswith("bearer"), show(resp)


def test_forged_key_with_a_real_prefix_is_401(stack):
    # A well-formed key id with a wrong secret: the key's prefix must not be enough.
    real = stack.keys["triage-bot"]
    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    resp = post_initialize(stack, forged)
    assert resp.status_code == 401, show(resp)


@pytest.mark.parametrize("origin", ["http://evil.example.com", "https://attacker.test:8443", "null"])
def test_foreign_origin_is_403(stack, origin):
    resp = post_initialize(stack, stack.keys["triage-bot"], Origin=origin)
    assert resp.status_code == 403, show(resp)


def test_local_origin_is_accepted(stack):
    port = urllib.parse.urlsplit(stack.base_url).port
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        resp = post_initialize(stack, stack.keys["triage-bot"], Origin=origin)
        assert resp.status_code == 200, f"Origin {origin}: {show(resp)}"


def test_foreign_host_is_rejected(stack):
    resp = post_initialize(stack, stack.keys["triage-bot"], Host="evil.example.com")
    assert 400 <= resp.status_code < 500 and resp.status_code != 401, show(resp)
    port = urllib.parse.urlsplit(stack.base_url).port
    resp = post_initialize(stack, stack.keys["triage-bot"], Host=f"localhost:{port}")
    assert resp.status_code == 200, show(resp)


def test_mcp_client_with_bad_key_cannot_connect(stack):
    async def body():
        stack.keys["nobody"] = "jgate_not-a-real-key"
        try:
            async with connect(stack, "nobody", "http-legacy") as c:
                await c.list_tools()
        finally:
            del stack.keys["nobody"]

    with pytest.raises(BaseException) as info:
        run(body)
    assert "401" in repr(info.value) or "nauthorized" in repr(info.value), repr(info.value)
