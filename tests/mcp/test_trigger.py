"""trigger_build with wait="finish": under concurrent triggers each caller gets its own build."""

from __future__ import annotations

import json

import anyio
import pytest

from conftest import connect, describe, run, text_of

JOB = "release/deploy"
CONCURRENT = 3


async def _trigger(c):
    return await c.call_tool(
        "trigger_build",
        {"job": JOB, "parameters": {"ENV": "staging"}, "wait": "finish"},
        read_timeout_seconds=120,
    )


async def _concurrently(make_call, n):
    results = [None] * n

    async def one(i):
        results[i] = await make_call(i)

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return results


def _check_builds(stack, transport, results):
    numbers, queue_ids = [], []
    for r in results:
        assert not r.is_error, describe(r)
        s = r.structured_content
        assert isinstance(s, dict), describe(r)
        assert isinstance(s.get("queue_id"), int), describe(r)
        build = s.get("build") or {}
        assert isinstance(build.get("number"), int), describe(r)
        assert build.get("result") == "SUCCESS", f"wait=finish must report the result:\n{describe(r)}"
        numbers.append(build["number"])
        queue_ids.append(s["queue_id"])
    everything = "\n".join(describe(r) for r in results)
    assert len(set(numbers)) == len(numbers), f"build numbers not distinct: {numbers}\n{everything}"
    assert len(set(queue_ids)) == len(queue_ids), f"queue ids not distinct: {queue_ids}\n{everything}"

    async def verify():
        async with connect(stack, "release-bot", transport) as c:
            out = []
            for n in numbers:
                b = await c.call_tool("get_build", {"job": JOB, "build": n})
                log = await c.call_tool("get_build_log", {"job": JOB, "build": n})
                out.append((n, b, log))
            return out

    for n, b, log in run(verify):
        assert not b.is_error, describe(b)
        s = b.structured_content
        assert s.get("number") == n, describe(b)
        assert s.get("result") == "SUCCESS", describe(b)
        params = {p["name"]: p["value"] for p in s.get("parameters") or []}
        assert params.get("ENV") == "staging", describe(b)
        assert not log.is_error, describe(log)
        assert "to staging" in json.dumps(log.structured_content), describe(log)
        assert "to staging" in text_of(log), describe(log)

    # Each trigger left an allowed outcome record naming its exact build.
    outcomes = [
        r for r in stack.audit(agent="release-bot", operation="trigger_build")
        if r["phase"] == "outcome" and r["allowed"] and r.get("surface") == "mcp"
    ]
    recorded = {r.get("build_number") for r in outcomes}
    assert set(numbers) <= recorded, f"audit outcome records lack builds {set(numbers) - recorded}: {outcomes[-5:]}"
    return numbers


@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_concurrent_triggers_in_one_session(stack, transport):
    async def body():
        async with connect(stack, "release-bot", transport) as c:
            return await _concurrently(lambda _i: _trigger(c), CONCURRENT)

    _check_builds(stack, transport, run(body))


def test_concurrent_triggers_from_separate_http_clients(stack):
    async def one(_i):
        async with connect(stack, "release-bot", "http") as c:
            return await _trigger(c)

    async def body():
        return await _concurrently(one, CONCURRENT)

    _check_builds(stack, "http", run(body))


def test_wait_start_returns_the_exact_build_number(stack):
    async def body():
        async with connect(stack, "release-bot", "http") as c:
            r = await c.call_tool("trigger_build", {"job": JOB, "parameters": {"ENV": "staging"}})
            assert not r.is_error, describe(r)
            n = (r.structured_content.get("build") or {}).get("number")
            assert isinstance(n, int), describe(r)
            b = await c.call_tool("get_build", {"job": JOB, "build": n})
            return r, n, b

    r, n, b = run(body)
    assert b.structured_content.get("number") == n, describe(b)


@pytest.mark.parametrize("transport", ["http", "http-legacy", "stdio"])
def test_wait_finish_reports_progress(stack, transport):
    progress = []

    async def on_progress(done, total, message):
        progress.append((done, total, message))

    async def body():
        async with connect(stack, "release-bot", transport) as c:
            return await c.call_tool(
                "trigger_build", {"job": JOB, "parameters": {"ENV": "staging"}, "wait": "finish"},
                read_timeout_seconds=120, progress_callback=on_progress,
            )

    r = run(body)
    assert not r.is_error, describe(r)
    n = r.structured_content["build"]["number"]
    assert progress, "no notifications/progress while waiting for the build"
    done = [p[0] for p in progress]
    assert done == sorted(done) and len(set(done)) == len(done), f"progress must increase: {progress}"
    assert f"#{n}" in progress[-1][2] and "SUCCESS" in progress[-1][2], progress
