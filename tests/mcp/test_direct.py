"""Tool calls on a session (revisions before 2026-07-28) that jgate answers itself, beside rmcp
(crates/jgate/src/mcp_direct.rs), on the wire: the same answer as rmcp's, as JSON when quick and as
an SSE stream when not, cancelled by `notifications/cancelled` and by the session's end; and the
requests it must leave to rmcp are answered by rmcp."""

from __future__ import annotations

import json
import time
import urllib.parse

import anyio

from conftest import http_client, run
from test_trust import HEADERS, LONG_CALL, cancelled_calls, rpc, start_session, wait_for_cancelled


def events(text: str) -> list[dict]:
    """The JSON-RPC messages of an SSE body."""
    out = []
    for line in text.splitlines():
        if line.startswith("data:") and line[5:].strip():
            out.append(json.loads(line[5:]))
    return out


def answer(resp) -> dict:
    """The one JSON-RPC answer of a response, JSON or SSE."""
    kind = resp.headers.get("content-type", "")
    if kind.startswith("application/json"):
        return resp.json()
    answers = [m for m in events(resp.text) if "id" in m]
    assert len(answers) == 1, f"{kind}: {resp.text[:2000]}"
    return answers[0]


def call(id_: int, name: str, arguments: dict, meta: dict | None = None) -> dict:
    params: dict = {"name": name, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    return rpc(id_, "tools/call", params)


def test_a_direct_answer_is_rmcps_answer_as_json(stack):
    """The same calls with a progress token go through rmcp's session (SSE); without one they are
    answered directly (JSON): the JSON-RPC answers are the same, success, tool error and protocol
    error alike."""

    async def body():
        async with http_client(stack.keys["triage-bot"]) as http:
            http.base_url_for_tests = stack.mcp_url
            h = await start_session(http)
            out = []
            cases = [
                ("whoami", {}),
                ("get_job", {"job": "release/deploy", "fields": ["name", "buildable"]}),
                ("get_job", {"job": "no/such-job"}),  # a tool error
                ("no_such_tool", {}),  # a protocol error
                ("read_more", {"what": "get_node", "args": {"node": "built-in"}}),
            ]
            for n, (name, args) in enumerate(cases):
                direct = await http.post(stack.mcp_url, json=call(100 + n, name, args), headers=h)
                via_rmcp = await http.post(
                    stack.mcp_url, json=call(100 + n, name, args, {"progressToken": f"p{n}"}), headers=h
                )
                out.append((name, direct, via_rmcp))
            return out

    for name, direct, via_rmcp in run(body):
        assert direct.status_code == 200 and via_rmcp.status_code == 200, (direct.text, via_rmcp.text)
        assert direct.headers["content-type"].startswith("application/json"), (name, dict(direct.headers))
        # A whole answer goes out sized, not chunked (the body that holds the call's guards keeps
        # the answer's length).
        assert direct.headers.get("content-length") == str(len(direct.content)), (name, dict(direct.headers))
        assert "transfer-encoding" not in direct.headers, (name, dict(direct.headers))
        assert via_rmcp.headers["content-type"].startswith("text/event-stream"), (name, dict(via_rmcp.headers))
        assert answer(direct) == answer(via_rmcp), f"{name}:\ndirect {direct.text[:1500]}\nrmcp {via_rmcp.text[:1500]}"


STATELESS = "2026-07-28"
LIFECYCLE_META = {
    "io.modelcontextprotocol/protocolVersion": STATELESS,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "jgate-tests", "version": "0"},
}


def test_a_direct_2026_07_28_answer_is_rmcps_answer(stack):
    """Self-contained 2026-07-28 calls: with a progress token they go through rmcp, without one
    they are answered directly; status, content type and JSON-RPC answer are the same."""

    async def body():
        async with http_client(stack.keys["triage-bot"]) as http:
            out = []
            cases = [
                ("whoami", {}),
                ("get_job", {"job": "release/deploy", "fields": ["name", "buildable"]}),
                ("get_job", {"job": "no/such-job"}),
                ("read_more", {"what": "get_node", "args": {"node": "built-in"}}),
            ]
            for n, (name, args) in enumerate(cases):
                h = HEADERS | {"mcp-protocol-version": STATELESS, "mcp-method": "tools/call", "mcp-name": name}
                direct = await http.post(stack.mcp_url, json=call(200 + n, name, args, LIFECYCLE_META), headers=h)
                via_rmcp = await http.post(
                    stack.mcp_url, json=call(200 + n, name, args, LIFECYCLE_META | {"progressToken": n}), headers=h
                )
                out.append((name, direct, via_rmcp))
            return out

    for name, direct, via_rmcp in run(body):
        assert direct.status_code == via_rmcp.status_code == 200, (direct.text, via_rmcp.text)
        assert direct.headers["content-type"] == via_rmcp.headers["content-type"], (name, direct.headers, via_rmcp.headers)
        assert answer(direct) == answer(via_rmcp), f"{name}:\ndirect {direct.text[:1500]}\nrmcp {via_rmcp.text[:1500]}"
        assert "mcp-session-id" not in direct.headers


def test_what_rmcp_must_check_still_reaches_it(stack):
    """A tool call with an unsupported protocol version is answered by rmcp (400) and not run; one
    with a header rmcp reads (`Mcp-Method`) is left to rmcp whatever it makes of it (its SSE
    answer, not a direct JSON one)."""

    async def body():
        async with http_client(stack.keys["release-bot"]) as http:
            http.base_url_for_tests = stack.mcp_url
            h = await start_session(http)
            trigger = call(5, "trigger_build", {"job": "release/deploy", "parameters": {"ENV": "staging"}, "wait": "none"})
            bad_version = await http.post(stack.mcp_url, json=trigger, headers=h | {"mcp-protocol-version": "1999-01-01"})
            with_header = await http.post(stack.mcp_url, json=call(6, "whoami", {}), headers=h | {"mcp-method": "tools/call"})
            return bad_version, with_header

    before = len(stack.audit(agent="release-bot", operation="trigger_build"))
    bad_version, with_header = run(body)
    assert bad_version.status_code == 400, bad_version.text
    assert len(stack.audit(agent="release-bot", operation="trigger_build")) == before, "a refused request ran"
    assert with_header.headers.get("content-type", "").startswith("text/event-stream"), dict(with_header.headers)


def test_a_foreign_host_or_origin_is_refused_on_a_session_tool_call_too(stack):
    """The DNS-rebinding checks hold for the calls jgate answers itself: a session's tool call
    with another Origin or Host is refused (403) and not run; a local Origin is served."""
    port = urllib.parse.urlsplit(stack.base_url).port
    trigger = call(9, "trigger_build", {"job": "release/deploy", "parameters": {"ENV": "staging"}, "wait": "none"})

    async def body():
        async with http_client(stack.keys["release-bot"]) as http:
            http.base_url_for_tests = stack.mcp_url
            h = await start_session(http)
            out = {}
            for origin in ("http://evil.example.com", "null", f"http://localhost:{port}.evil.example"):
                out[origin] = await http.post(stack.mcp_url, json=trigger, headers=h | {"Origin": origin})
            out["host"] = await http.post(stack.mcp_url, json=trigger, headers=h | {"Host": "evil.example.com"})
            out["local"] = await http.post(
                stack.mcp_url, json=call(10, "whoami", {}), headers=h | {"Origin": f"http://localhost:{port}"}
            )
            return out

    before = len(stack.audit(agent="release-bot", operation="trigger_build"))
    out = run(body)
    local = out.pop("local")
    for what, resp in out.items():
        assert resp.status_code == 403 or (what == "host" and 400 <= resp.status_code < 500 and resp.status_code != 401), (
            what, resp.status_code, resp.text)
    assert len(stack.audit(agent="release-bot", operation="trigger_build")) == before, "a refused call ran"
    assert local.status_code == 200 and answer(local)["result"]["isError"] is False, local.text


def test_a_long_direct_call_streams_and_a_cancellation_stops_it(stack):
    """A call still running after a second is answered as an SSE stream; `notifications/cancelled`
    naming it ends it (audited as cancelled), and the stream carries its final answer."""
    before = cancelled_calls(stack)

    async def body():
        async with http_client(stack.keys["release-bot"]) as http, http_client(stack.keys["release-bot"]) as other:
            http.base_url_for_tests = stack.mcp_url
            h = await start_session(http)
            seen: dict = {}

            async def long_call():
                async with http.stream("POST", stack.mcp_url, json=LONG_CALL, headers=h) as resp:
                    seen["type"] = resp.headers.get("content-type", "")
                    seen["text"] = (await resp.aread()).decode()
                    seen["ended"] = time.monotonic()

            async with anyio.create_task_group() as tg:
                tg.start_soon(long_call)
                await anyio.sleep(3)
                note = rpc(None, "notifications/cancelled", {"requestId": LONG_CALL["id"], "reason": "test"})
                r = await other.post(stack.mcp_url, json=note, headers=h)
                assert r.status_code == 202, r.text
                sent = time.monotonic()
                with anyio.fail_after(30):
                    while "ended" not in seen:
                        await anyio.sleep(0.1)
            return seen, seen["ended"] - sent

    seen, took = run(body)
    assert seen["type"].startswith("text/event-stream"), seen
    final = [m for m in events(seen["text"]) if m.get("id") == LONG_CALL["id"]]
    assert len(final) == 1, seen["text"][:2000]
    assert final[0]["result"]["isError"] is True and "cancel" in json.dumps(final[0]).lower(), final
    assert took < 20, f"the cancelled call ran on for {took:.1f} s"
    wait_for_cancelled(stack, before)
