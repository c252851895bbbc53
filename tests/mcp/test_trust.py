"""Trust findings seen through MCP, on the wire: sessions belong to the agent that opened them, a
client that goes away cancels its call (audited as cancelled), and listings are paged."""

from __future__ import annotations

import json
import time

import anyio

from conftest import connect, http_client, run

PROTOCOL = "2025-11-25"
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def rpc(id_: int | None, method: str, params: dict | None = None) -> dict:
    msg = {"jsonrpc": "2.0", "method": method, "params": params or {}}
    if id_ is not None:
        msg["id"] = id_
    return msg


def test_a_session_answers_only_the_agent_that_opened_it(stack):
    async def body():
        async with http_client(stack.keys["triage-bot"]) as owner, http_client(stack.keys["release-bot"]) as other:
            init = rpc(1, "initialize", {
                "protocolVersion": PROTOCOL, "capabilities": {},
                "clientInfo": {"name": "jgate-tests", "version": "0"},
            })
            r = await owner.post(stack.mcp_url, json=init, headers=HEADERS)
            assert r.status_code == 200, r.text
            sid = r.headers["mcp-session-id"]
            h = HEADERS | {"mcp-session-id": sid, "mcp-protocol-version": PROTOCOL}
            # Another agent's key: the session does not exist for it, for reads and for DELETE.
            r_other = await other.post(stack.mcp_url, json=rpc(2, "tools/list"), headers=h)
            d_other = await other.delete(stack.mcp_url, headers=h)
            r_unknown = await other.delete(stack.mcp_url, headers=h | {"mcp-session-id": "no-such-session"})
            assert r_other.status_code == 404, r_other.text
            assert d_other.status_code == 404, d_other.text
            assert (d_other.status_code, d_other.text) == (r_unknown.status_code, r_unknown.text)
            # The owner still has it, and may end it.
            await owner.post(stack.mcp_url, json=rpc(None, "notifications/initialized"), headers=h)
            listed = await owner.post(stack.mcp_url, json=rpc(3, "tools/list"), headers=h)
            assert listed.status_code == 200 and "whoami" in listed.text, listed.text
            ended = await owner.delete(stack.mcp_url, headers=h)
            assert ended.status_code in (200, 202, 204), ended.text

    run(body)


def test_a_client_that_goes_away_cancels_its_call(stack):
    async def body():
        async with http_client(stack.keys["release-bot"]) as http:
            init = rpc(1, "initialize", {
                "protocolVersion": PROTOCOL, "capabilities": {},
                "clientInfo": {"name": "jgate-tests", "version": "0"},
            })
            r = await http.post(stack.mcp_url, json=init, headers=HEADERS)
            sid = r.headers["mcp-session-id"]
            h = HEADERS | {"mcp-session-id": sid, "mcp-protocol-version": PROTOCOL}
            await http.post(stack.mcp_url, json=rpc(None, "notifications/initialized"), headers=h)
            call = rpc(7, "tools/call", {"name": "trigger_build", "arguments": {
                "job": "release/long-deploy", "parameters": {"ENV": "staging"}, "wait": "finish",
            }})
            # Read the start of the answer stream, then hang up mid-call.
            with anyio.move_on_after(3):
                async with http.stream("POST", stack.mcp_url, json=call, headers=h) as resp:
                    assert resp.status_code == 200
                    async for _ in resp.aiter_bytes():
                        pass

    run(body)
    deadline = time.time() + 30
    outcomes: list[str] = []
    while time.time() < deadline:
        records = stack.audit(agent="release-bot", operation="trigger_build")
        outcomes = [r.get("outcome") or "" for r in records if r.get("phase") == "outcome"]
        if any(o.startswith("cancelled:") for o in outcomes):
            break
        time.sleep(1)
    assert any(o.startswith("cancelled:") for o in outcomes), json.dumps(outcomes, indent=1)


def test_job_listings_come_in_pages(stack):
    async def body():
        async with connect(stack, "triage-bot", "http") as c:
            first = await c.call_tool("list_jobs", {"depth": 3, "limit": 1})
            assert not first.is_error, first
            page = first.structured_content
            assert len(page["jobs"]) == 1 and page["total"] > 1 and page["next_offset"] == 1, page
            rest = await c.call_tool("list_jobs", {"depth": 3, "offset": 1, "limit": 500})
            names = [j["name"] for j in page["jobs"] + rest.structured_content["jobs"]]
            assert len(names) == page["total"] and len(set(names)) == len(names), names
            assert "release/deploy" in names, names

    run(body)
