"""`kill -9` of `jgate serve` while triggers wait for their builds: after a restart, every write
that lost its outcome is closed from Jenkins' own answer, and `audit verify` has nothing open."""

from __future__ import annotations

import json
import re
import subprocess
import time

import anyio

from conftest import http_client, run
from jgate_stack import SERVE_RE, start_and_wait, start_stack

PROTOCOL = "2025-11-25"
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def verify(stack) -> subprocess.CompletedProcess:
    return stack.cli("audit", "verify", "--open-after", "0", check=False)


def test_writes_cut_off_by_kill_9_are_reconciled_after_restart():
    stack = start_stack()
    try:
        async def start_triggers():
            async with http_client(stack.keys["release-bot"]) as http:
                init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": PROTOCOL, "capabilities": {},
                    "clientInfo": {"name": "jgate-tests", "version": "0"}}}
                r = await http.post(stack.mcp_url, json=init, headers=HEADERS)
                h = HEADERS | {"mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": PROTOCOL}
                await http.post(stack.mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=h)

                async def trigger(n: int):
                    call = {"jsonrpc": "2.0", "id": 10 + n, "method": "tools/call", "params": {
                        "name": "trigger_build", "arguments": {
                            "job": "release/long-deploy", "parameters": {"ENV": "staging"}, "wait": "finish",
                            "idempotency_key": f"crash-{n}"}}}
                    try:
                        async with http.stream("POST", stack.mcp_url, json=call, headers=h) as resp:
                            async for _ in resp.aiter_bytes():
                                pass
                    except Exception:
                        pass  # the server is killed under us

                with anyio.move_on_after(4):
                    async with anyio.create_task_group() as tg:
                        for n in range(3):
                            tg.start_soon(trigger, n)
                        await anyio.sleep(3)
                        # Builds are running and their triggers are waiting: kill -9.
                        stack.server.process.kill()
                        stack.server.process.wait(timeout=10)

        run(start_triggers)
        cut = verify(stack)
        assert cut.returncode == 1 and "intent without an outcome" in cut.stdout, cut.stdout + cut.stderr
        # Restart: the new process reconciles the dead one's writes once its heartbeat is stale.
        stack.server, _ = start_and_wait(
            [stack.binary, "serve", "--addr", "127.0.0.1:0"], SERVE_RE, stack.env, "`jgate serve` (restarted)",
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            after = verify(stack)
            if after.returncode == 0:
                break
            time.sleep(2)
        assert after.returncode == 0, after.stdout + after.stderr
        outcomes = [r.get("outcome") or "" for r in stack.audit(operation="trigger_build") if r.get("phase") == "outcome"]
        reconciled = [o for o in outcomes if "after jgate stopped" in o]
        assert len(reconciled) >= 3, json.dumps(outcomes, indent=1)
        # Each names its queue item; builds that started are named (one may still wait for an
        # executor: that is said too).
        assert all(re.search(r"queued as item \d+", o) for o in reconciled), json.dumps(reconciled, indent=1)
        assert any(re.search(r"ran as #\d+", o) for o in reconciled), json.dumps(reconciled, indent=1)
    finally:
        stack.close()
