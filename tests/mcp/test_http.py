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


@pytest.mark.parametrize(
    "authorization", [None, "Bearer jgate_not-a-real-key", "Bearer", "Basic YWRtaW46YWRtaW4=", "jgate_x"]
)
def test_missing_or_bad_key_is_401(stack, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    resp = post_initialize(stack, None, **headers)
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

    # The client library reports the 401 as a connection failure (the status itself is checked
    # on the wire above); what matters here is that no session comes up.
    with pytest.raises(Exception):
        run(body)


def _rpc_result(resp) -> dict:
    """The JSON-RPC response in a JSON or SSE body."""
    import json

    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        for line in resp.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                msg = json.loads(line[5:])
                if "id" in msg:
                    return msg
        raise AssertionError(f"no JSON-RPC response in the stream: {show(resp)}")
    return resp.json()


def test_a_session_cannot_be_borrowed_by_another_agent(stack):
    """release-bot's session id used with triage-bot's key acts as triage-bot (or is refused)."""

    async def body():
        release, triage = stack.keys["release-bot"], stack.keys["triage-bot"]
        async with http_client(release) as http:
            init = await http.post(stack.mcp_url, json=INITIALIZE, headers=MCP_HEADERS)
            assert init.status_code == 200, show(init)
            sid = init.headers.get("mcp-session-id")
            if sid is None:
                return None  # stateless: nothing to borrow
            h = MCP_HEADERS | {"Mcp-Session-Id": sid, "MCP-Protocol-Version": PROTOCOL}
            note = await http.post(stack.mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=h)
            assert note.status_code == 202, show(note)
        async with http_client(triage) as http:
            listing = await http.post(stack.mcp_url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=h)
            call = await http.post(
                stack.mcp_url,
                json={"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "trigger_build", "arguments": {"job": "release/deploy",
                                                                        "parameters": {"ENV": "staging"}, "wait": "none"}}},
                headers=h,
            )
            return listing, call

    out = run(body)
    if out is None:
        return
    listing, call = out
    if listing.status_code != 200:
        assert 400 <= listing.status_code < 500, show(listing)
    else:
        names = {t["name"] for t in _rpc_result(listing)["result"]["tools"]}
        assert "trigger_build" not in names, f"triage-bot saw release-bot's tools through its session: {sorted(names)}"
    if call.status_code != 200:
        assert 400 <= call.status_code < 500, show(call)
    else:
        result = _rpc_result(call).get("result", {})
        assert result.get("isError") is True, f"triage-bot triggered a build through release-bot's session: {show(call)}"


def test_session_lifecycle_on_the_wire(stack):
    """2025-11-25 sessions: unknown or deleted session -> 404, unsupported protocol version -> 400."""

    async def body():
        async with http_client(stack.keys["release-bot"]) as http:
            init = await http.post(stack.mcp_url, json=INITIALIZE, headers=MCP_HEADERS)
            sid = init.headers.get("mcp-session-id")
            h = MCP_HEADERS | {"Mcp-Session-Id": sid or "", "MCP-Protocol-Version": PROTOCOL}
            listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
            out = {"init": init}
            out["initialized"] = await http.post(
                stack.mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=h
            )
            out["bad_version"] = await http.post(
                stack.mcp_url, json=listing, headers=h | {"MCP-Protocol-Version": "1999-01-01"}
            )
            out["unknown_session"] = await http.post(
                stack.mcp_url, json=listing, headers=h | {"Mcp-Session-Id": "no-such-session"}
            )
            out["delete"] = await http.delete(stack.mcp_url, headers=h)
            out["after_delete"] = await http.post(stack.mcp_url, json=listing, headers=h)
            return sid, out

    sid, out = run(body)
    assert out["init"].status_code == 200 and sid, show(out["init"])
    assert out["initialized"].status_code == 202, show(out["initialized"])
    assert out["bad_version"].status_code == 400, show(out["bad_version"])
    assert out["unknown_session"].status_code == 404, show(out["unknown_session"])
    assert out["delete"].status_code in (200, 202, 204), show(out["delete"])
    assert out["after_delete"].status_code == 404, show(out["after_delete"])
