"""Human approval over MCP: a trigger under an `--approve` grant is held, the client gets
progress naming the approval while it waits, and the real result once an administrator runs
`jgate approve`; a denial ends the call with the reason."""

from __future__ import annotations

import json

import anyio
import pytest

from conftest import connect, describe, run, text_of

JOB = "release/deploy"


def _agent(stack, name: str) -> str:
    """A fresh agent whose trigger grant on release/** requires approval."""
    created = json.loads(stack.cli("--json", "agent", "create", name).stdout)
    stack.keys[name] = created["key"]
    stack.cli("grant", name, "build", "full", "--jobs", "release/**", "--approve")
    stack.cli("grant", name, "status", "read", "--jobs", "release/**")
    return name


async def _pending_of(stack, agent: str) -> dict:
    for _ in range(150):
        cp = await anyio.to_thread.run_sync(lambda: stack.cli("--json", "approvals"))
        mine = [a for a in json.loads(cp.stdout) if a["agent"] == agent]
        if mine:
            return mine[0]
        await anyio.sleep(0.2)
    raise AssertionError(f"no pending approval of {agent} appeared")


async def _held_call(stack, agent, transport, decide):
    """Triggers as `agent`, and meanwhile runs `decide(approval)` once the approval is listed
    and the client has had progress. Returns (result, progress, approval)."""
    progress, seen = [], {}

    async def on_progress(done, total, message):
        progress.append((done, total, message))

    async with connect(stack, agent, transport) as c:
        async def approver():
            a = await _pending_of(stack, agent)
            for _ in range(100):
                if progress:
                    break
                await anyio.sleep(0.1)
            seen["approval"] = a
            await anyio.to_thread.run_sync(lambda: decide(a))

        result = {}

        async def caller():
            result["r"] = await c.call_tool(
                "trigger_build", {"job": JOB, "parameters": {"ENV": "production"}},
                read_timeout_seconds=120, progress_callback=on_progress,
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            tg.start_soon(approver)
        return result["r"], progress, seen["approval"]


@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_a_held_trigger_shows_progress_and_completes_after_jgate_approve(stack, transport):
    agent = _agent(stack, f"approve-bot-{transport}")

    def approve(a):
        stack.cli("approve", a["id"], "--reason", "change 42")

    r, progress, approval = run(_held_call, stack, agent, transport, approve)
    assert not r.is_error, describe(r)
    assert isinstance(r.structured_content["build"]["number"], int), describe(r)
    assert approval["summary"] == f"{agent}'s request to trigger a build of {JOB} on prod with ENV=production"
    assert any(f"waiting for approval {approval['id']}" in p[2] for p in progress), progress
    done = [p[0] for p in progress]
    assert done == sorted(done) and len(set(done)) == len(done), f"progress must increase: {progress}"
    assert any("queued" in p[2] or "started" in p[2] for p in progress), progress
    listed = json.loads(stack.cli("--json", "approvals", "--all").stdout)
    assert [a["status"] for a in listed if a["id"] == approval["id"]] == ["used"], listed
    sentences = [r["sentence"] for r in stack.audit()]
    assert any(
        s.endswith(f"approved {approval['summary']} (approval {approval['id']}; reason: change 42)") for s in sentences
    ), sentences[-10:]
    assert any(f"held for approval {approval['id']}" in s for s in sentences), sentences[-10:]


def test_a_denied_trigger_fails_with_the_reason(stack):
    agent = _agent(stack, "deny-bot")

    def deny(a):
        stack.cli("deny", a["id"], "--reason", "release freeze")

    r, _, approval = run(_held_call, stack, agent, "http", deny)
    assert r.is_error, describe(r)
    assert "release freeze" in text_of(r) and approval["id"] in text_of(r), describe(r)
