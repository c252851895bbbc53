"""Human approval over MCP: a trigger under an `--approve` grant is held, the client gets
progress naming the approval while it waits, and the real result once an administrator runs
`jgate approve`; a denial ends the call with the reason."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import connect, describe, http_client, run, text_of
from jgate_stack import ADMIN_TOKEN, SERVE_RE, run_cli, start_and_wait

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


# --- Two `jgate serve` replicas on one PostgreSQL database ------------------------------------

PG = os.environ.get("JGATE_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_replicas(stack):
    """Two `jgate serve` processes on one PostgreSQL schema of their own (the stack's twin as the
    controller), and the environment for CLI commands on that store. Skipped where PostgreSQL or
    psql is missing, unless under CI."""
    schema = f"jgmcp_{os.getpid()}_{int(time.time() * 1000) % 10**9}"
    created = subprocess.run(
        ["psql", PG, "-q", "-c", f"CREATE SCHEMA {schema}"], capture_output=True, text=True, timeout=30,
    ) if shutil.which("psql") else None
    if created is None or created.returncode != 0:
        why = created.stderr if created is not None else "psql is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG} is needed under CI: {why}")
        pytest.skip(f"PostgreSQL at {PG} not usable: {why}")
    db = f"{PG}?options=-c%20search_path%3D{schema}"
    data = pathlib.Path(tempfile.mkdtemp(prefix="jgate-mcp-pg-"))
    env = {k: v for k, v in stack.env.items() if not k.startswith("JGATE_")}
    env |= {"JGATE_DATA_DIR": str(data), "JGATE_DB": db}
    procs = []
    try:
        port = stack.twin_url.rsplit(":", 1)[1]
        run_cli(stack.binary, env | {"JENKINS_TOKEN": ADMIN_TOKEN}, [
            "controller", "add", "prod", "--url", stack.twin_url, "--username", "admin",
            "--token-env", "JENKINS_TOKEN", "--allow-private", f"127.0.0.1:{port}",
        ])
        key = json.loads(run_cli(stack.binary, env, ["--json", "agent", "create", "pg-bot"]).stdout)["key"]
        run_cli(stack.binary, env, ["grant", "pg-bot", "build", "full", "--jobs", "release/**", "--approve"])
        urls = []
        for _ in range(2):
            p, m = start_and_wait([stack.binary, "serve", "--addr", "127.0.0.1:0"], SERVE_RE, env, "`jgate serve` on PostgreSQL")
            procs.append(p)
            urls.append(m.group(2))
        yield env, key, urls
    finally:
        for p in procs:
            p.stop()
        subprocess.run(["psql", PG, "-q", "-c", f"DROP SCHEMA IF EXISTS {schema} CASCADE"], capture_output=True, timeout=30)
        shutil.rmtree(data, ignore_errors=True)


def test_an_approval_through_one_replica_releases_the_call_waiting_on_another(stack, pg_replicas):
    env, key, (url_a, url_b) = pg_replicas
    progress, seen = [], {}

    async def on_progress(done, total, message):
        progress.append(message)

    async def body():
        async with http_client(key) as http:
            async with Client(streamable_http_client(url_b, http_client=http)) as c:
                async def approver():
                    for _ in range(150):
                        cp = await anyio.to_thread.run_sync(lambda: run_cli(stack.binary, env, ["--json", "approvals"]))
                        pending = json.loads(cp.stdout)
                        if pending and progress:
                            seen["id"] = pending[0]["id"]
                            # Decided through replica A's store connection: the CLI on the same database.
                            await anyio.to_thread.run_sync(
                                lambda: run_cli(stack.binary, env, ["approve", seen["id"], "--reason", "replica test"])
                            )
                            return
                        await anyio.sleep(0.2)

                result = {}

                async def caller():
                    result["r"] = await c.call_tool(
                        "trigger_build", {"job": JOB, "parameters": {"ENV": "staging"}},
                        read_timeout_seconds=120, progress_callback=on_progress,
                    )

                async with anyio.create_task_group() as tg:
                    tg.start_soon(caller)
                    tg.start_soon(approver)
                return result["r"]

    r = run(body)
    assert not r.is_error, describe(r)
    assert isinstance(r.structured_content["build"]["number"], int), describe(r)
    assert any(f"waiting for approval {seen['id']}" in m for m in progress), progress
    # The other replica sees the approval used.
    listed = json.loads(run_cli(stack.binary, env, ["--json", "approvals", "--all"]).stdout)
    assert [a["status"] for a in listed if a["id"] == seen["id"]] == ["used"], listed
    verified = run_cli(stack.binary, env, ["audit", "verify"], check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
