"""`jgate mcp` (stdio) refuses to serve without a valid agent key."""

from __future__ import annotations

import json
import subprocess

import pytest

INIT = json.dumps({
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}) + "\n"


@pytest.mark.parametrize("key", [None, "jgate_not-a-real-key"])
def test_stdio_without_a_valid_key_exits(stack, key):
    env = {"PATH": "/usr/bin:/bin", "JGATE_DATA_DIR": str(stack.data_dir)}
    if key is not None:
        env["JGATE_AGENT_KEY"] = key
    cp = subprocess.run([stack.binary, "mcp"], input=INIT, env=env, capture_output=True, text=True, timeout=30)
    assert cp.returncode != 0, f"jgate mcp served without a valid key:\n{cp.stdout}\n{cp.stderr}"
    assert '"result"' not in cp.stdout, cp.stdout
    assert "JGATE_AGENT_KEY" in cp.stderr or "key" in cp.stderr.lower(), cp.stderr
    assert "jgate_not-a-real-key" not in cp.stderr, "the presented key must not be echoed"
