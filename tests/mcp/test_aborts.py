"""Clients that misbehave under load cannot lock the store for everyone (issue #16).

Many clients hang up in the middle of calls at once (reads and writes), on SQLite and on
PostgreSQL (a schema of the test's own), and two requests reuse one JSON-RPC id on one session;
afterwards every agent's next call still succeeds promptly and the audit chain verifies.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
import uuid

import anyio
import pytest

from conftest import connect, http_client, run
from jgate_stack import SetupError, start_stack
from test_trust import rpc, start_session

POSTGRES = os.environ.get("JGATE_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")


def psql(sql: str) -> subprocess.CompletedProcess:
    return subprocess.run(["psql", POSTGRES, "-v", "ON_ERROR_STOP=1", "-qc", sql],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


@pytest.fixture(params=["sqlite", "postgres"])
def any_store_stack(request):
    """The session's stack (SQLite), or a stack of its own on a fresh PostgreSQL schema (dropped
    afterwards; only its own). PostgreSQL unreachable: skipped, except under CI."""
    if request.param == "sqlite":
        yield request.getfixturevalue("stack")
        return
    schema = f"jgate_aborts_{uuid.uuid4().hex[:12]}"
    made = psql(f"CREATE SCHEMA {schema}") if shutil.which("psql") else None
    if made is None or made.returncode != 0:
        why = "psql is not installed" if made is None else made.stderr.strip()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES} is needed under CI: {why}")
        pytest.skip(f"PostgreSQL at {POSTGRES}: {why}")
    try:
        try:
            s = start_stack(f"{POSTGRES}?options=-c%20search_path%3D{schema}")
        except SetupError as e:
            pytest.fail(str(e), pytrace=False)
        yield s
        s.close()
    finally:
        psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

READ_CALL = rpc(11, "tools/call", {"name": "get_job", "arguments": {"job": "release/deploy"}})
# A short build (about a second): the write path's records and waits are cut mid-way, without
# leaving long builds that would hold the twin's executors for the tests after this one.
WRITE_CALL = rpc(12, "tools/call", {"name": "trigger_build", "arguments": {
    "job": "release/deploy", "parameters": {"ENV": "staging"}, "wait": "finish",
}})


async def hang_up_mid_call(stack, key: str, message: dict, after: float) -> None:
    async with http_client(key) as http:
        http.base_url_for_tests = stack.mcp_url
        h = await start_session(http)
        with anyio.move_on_after(after):
            async with http.stream("POST", stack.mcp_url, json=message, headers=h) as resp:
                async for _ in resp.aiter_bytes():
                    pass


def next_call_works(stack) -> float:
    """Seconds a fresh read takes for another agent (it must succeed)."""

    async def body():
        started = time.monotonic()
        async with connect(stack, "triage-bot", "http") as c:
            r = await c.call_tool("get_job", {"job": "api-server"})
            assert not r.is_error, r
        return time.monotonic() - started

    return run(body)


def test_clients_hanging_up_mid_call_leave_nothing_locked(any_store_stack):
    stack = any_store_stack
    rng = random.Random(16)

    async def body():
        async with anyio.create_task_group() as tg:
            for i in range(12):
                # Writes that wait (a transaction per record), and quick reads, cut at random moments.
                message = WRITE_CALL if i % 3 == 0 else READ_CALL
                key = stack.keys["release-bot"]
                tg.start_soon(hang_up_mid_call, stack, key, message, rng.uniform(0.01, 1.5))

    run(body)
    took = next_call_works(stack)
    assert took < 10, f"the next call waited {took:.1f} s: something stayed locked"
    verify = stack.cli("audit", "verify", "--open-after", "3600", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_one_json_rpc_id_used_twice_at_once_locks_nothing(stack):
    async def body():
        async with http_client(stack.keys["triage-bot"]) as http:
            http.base_url_for_tests = stack.mcp_url
            h = await start_session(http)
            same = rpc(5, "tools/call", {"name": "get_job", "arguments": {"job": "api-server"}})
            statuses = []

            async def send():
                r = await http.post(stack.mcp_url, json=same, headers=h)
                statuses.append(r.status_code)

            # Both answer at once: one call runs, the other is refused (409, a JSON-RPC error)
            # instead of waiting forever for an answer the first one took.
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(send)
                    tg.start_soon(send)
            assert sorted(statuses) in ([200, 200], [200, 409]), statuses

    run(body)
    took = next_call_works(stack)
    assert took < 10, f"the next call waited {took:.1f} s"
