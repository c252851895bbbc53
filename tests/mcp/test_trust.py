"""Trust findings seen through MCP, on the wire: sessions belong to the agent that opened them, a
client that goes away cancels its call (audited as cancelled), and listings are paged."""

from __future__ import annotations

import json
import time

import anyio
import pytest

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


def cancelled_calls(stack) -> int:
    records = stack.audit(agent="release-bot", operation="trigger_build")
    return sum(1 for r in records if r.get("phase") == "outcome" and (r.get("outcome") or "").startswith("cancelled:"))


def wait_for_cancelled(stack, before: int) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        if cancelled_calls(stack) > before:
            return
        time.sleep(1)
    records = stack.audit(agent="release-bot", operation="trigger_build")
    raise AssertionError("no cancelled outcome was audited:\n" + json.dumps(records[-4:], indent=1))


async def start_session(http) -> dict[str, str]:
    init = rpc(1, "initialize", {
        "protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "jgate-tests", "version": "0"},
    })
    r = await http.post(http.base_url_for_tests, json=init, headers=HEADERS)
    sid = r.headers["mcp-session-id"]
    h = HEADERS | {"mcp-session-id": sid, "mcp-protocol-version": PROTOCOL}
    await http.post(http.base_url_for_tests, json=rpc(None, "notifications/initialized"), headers=h)
    return h


LONG_CALL = rpc(7, "tools/call", {"name": "trigger_build", "arguments": {
    "job": "release/long-deploy", "parameters": {"ENV": "staging"}, "wait": "finish",
}})


# Hung up before the answer's headers (jgate runs a call in the request's task for its first
# second) and after it became a stream (the call runs in a task of its own by then).
@pytest.mark.parametrize("hang_up_after", [0.5, 3])
def test_a_client_that_goes_away_cancels_its_call(stack, hang_up_after):
    before = cancelled_calls(stack)

    async def body():
        async with http_client(stack.keys["release-bot"]) as http:
            http.base_url_for_tests = stack.mcp_url
            h = await start_session(http)
            # Hang up mid-call (reading the answer stream if it has begun).
            with anyio.move_on_after(hang_up_after):
                async with http.stream("POST", stack.mcp_url, json=LONG_CALL, headers=h) as resp:
                    assert resp.status_code == 200
                    async for _ in resp.aiter_bytes():
                        pass

    run(body)
    wait_for_cancelled(stack, before)


def test_deleting_a_session_cancels_its_calls(stack):
    before = cancelled_calls(stack)

    async def body():
        async with http_client(stack.keys["release-bot"]) as http, http_client(stack.keys["release-bot"]) as ender:
            http.base_url_for_tests = stack.mcp_url
            h = await start_session(http)

            async def call():
                async with http.stream("POST", stack.mcp_url, json=LONG_CALL, headers=h) as resp:
                    async for _ in resp.aiter_bytes():
                        pass

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await anyio.sleep(2)
                ended = await ender.delete(stack.mcp_url, headers=h)
                assert ended.status_code in (200, 202, 204), ended.text
                with anyio.move_on_after(20):
                    await anyio.sleep(20)
                tg.cancel_scope.cancel()

    run(body)
    wait_for_cancelled(stack, before)


def test_job_listings_come_in_pages(stack):
    async def body():
        async with connect(stack, "triage-bot", "http") as c:
            first = await c.call_tool("list_jobs", {"depth": 3, "limit": 1})
            assert not first.is_error, first
            page = first.structured_content
            assert len(page["jobs"]) == 1 and page["total"] > 1 and page["next_offset"] == 1, page
            names = [j["name"] for j in page["jobs"]]
            offset = 1
            # A page is also cut to the answer's byte budget (max_bytes): follow next_offset.
            while offset is not None:
                rest = (await c.call_tool("list_jobs", {"depth": 3, "offset": offset, "limit": 500})).structured_content
                names += [j["name"] for j in rest["jobs"]]
                offset = rest["next_offset"]
            assert len(names) == page["total"] and len(set(names)) == len(names), names
            assert "release/deploy" in names, names

    run(body)


def test_a_queue_item_is_cancelled_only_through_the_job_that_owns_it(stack):
    async def body():
        async with connect(stack, "triage-bot", "http") as reader, connect(stack, "release-bot", "http") as bot:
            queue = (await reader.call_tool("get_queue", {})).structured_content["items"]
            item = next(i for i in queue if i["job"] == "ops-cleanup")
            # release-bot may cancel builds of release/**: naming its own job with another job's
            # queue item is refused from Jenkins' own answer about the item.
            r = await bot.call_tool("cancel_queue_item", {"job": "release/deploy", "queue_id": item["id"]})
            assert r.is_error and "is not a queued build of release/deploy" in r.content[0].text, r
            r = await bot.call_tool("cancel_queue_item", {"job": "ops-cleanup", "queue_id": item["id"]})
            assert r.is_error and "denied" in r.content[0].text, r
            queue = (await reader.call_tool("get_queue", {})).structured_content["items"]
            assert any(i["id"] == item["id"] for i in queue), "the item is still queued"

    run(body)
