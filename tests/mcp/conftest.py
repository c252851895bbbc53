"""Drive `jgate serve` (Streamable HTTP) and `jgate mcp` (stdio) with the real Python MCP client.

Run with:
    JGATE_BIN=/work/main/target/debug/jgate target/xtask-venv/bin/pytest -q tests/mcp
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from jgate_stack import SetupError, Stack, start_stack

# How each test reaches jgate: Streamable HTTP with the client's default negotiation
# (server/discover first, falling back to initialize), Streamable HTTP forced onto the
# initialize handshake (2025-11-25 era), and stdio (`jgate mcp`).
TRANSPORTS = ["http", "http-legacy", "stdio"]

# The tools the brief's grants must show at least (the catalog may grow; see expected_tools).
STATUS_TOOLS = {
    "list_jobs", "get_job", "get_build", "get_build_log", "get_test_report",
    "get_pipeline_run", "get_queue", "list_views",
}
BUILD_TOOLS = {"trigger_build", "stop_build", "cancel_queue_item"}
AGENTS = ["triage-bot", "release-bot"]
# What each agent's grants (jgate_stack.GRANTS) give: group -> level.
GRANTED_LEVELS = {
    "triage-bot": {"status": "read"},
    "release-bot": {"status": "read", "build": "full"},
}
LEVEL_RANK = {"off": 0, "read": 1, "full": 2}
# Groups in which every grant of the agent is limited to job patterns: no request for a
# controller-wide operation (the queue, views; folder-level writes) could pass, so those tools
# are not listed (policy::could_allow).
JOB_SCOPED = {"triage-bot": set(), "release-bot": {"status", "build"}}


@pytest.fixture(scope="session")
def stack() -> Stack:
    try:
        s = start_stack()
    except SetupError as e:
        pytest.fail(str(e), pytrace=False)
    yield s
    s.close()


@pytest.fixture(scope="session")
def catalog(stack) -> dict[str, dict]:
    """The operation catalog as `jgate --json operations` prints it: name -> {group, access, ...}."""
    ops = json.loads(stack.cli("--json", "operations").stdout)
    return {op["name"]: op for op in ops}


@pytest.fixture(scope="session")
def expected_tools(catalog) -> dict[str, set[str]]:
    """Exactly the tools each agent must see: whoami, plus every catalog operation whose group
    the agent's grants give at the needed level (read operations need read, writes need full)."""
    out = {}
    for agent, levels in GRANTED_LEVELS.items():
        names = {"whoami"}
        for name, op in catalog.items():
            need = 1 if op["access"] == "read" else 2
            whole_controller = op["target"] == "controller" or (op["target"] == "folder" and need == 2)
            if whole_controller and op["group"] in JOB_SCOPED[agent]:
                continue
            if LEVEL_RANK[levels.get(op["group"], "off")] >= need:
                names.add(name)
        # Grouped reads are offered through the one read_more tool, listed when any is usable.
        grouped = {n for n in names if catalog.get(n, {}).get("grouped")}
        names -= grouped
        if grouped:
            names.add("read_more")
        out[agent] = names
    grouped_all = {n for n, op in catalog.items() if op.get("grouped")}
    must = {
        "triage-bot": STATUS_TOOLS - grouped_all,
        "release-bot": (STATUS_TOOLS - {"get_queue", "list_views"} - grouped_all) | BUILD_TOOLS,
    }
    for agent, names in must.items():
        assert names <= out[agent], f"the catalog lost tools {sorted(names - out[agent])} for {agent}"
    assert not ({"trigger_build", "delete_job"} & out["triage-bot"]), out["triage-bot"]
    assert "delete_job" not in out["release-bot"], out["release-bot"]
    return out


def http_client(key: str | None, **headers: str) -> httpx2.AsyncClient:
    h = dict(headers)
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    return httpx2.AsyncClient(headers=h, timeout=httpx2.Timeout(30.0, read=300.0))


@asynccontextmanager
async def connect(stack: Stack, agent: str, transport: str) -> AsyncIterator[Client]:
    """An initialized MCP client session for the agent over the transport."""
    if transport in ("http", "http-legacy"):
        mode = "legacy" if transport == "http-legacy" else "auto"
        async with http_client(stack.keys[agent]) as http:
            async with Client(streamable_http_client(stack.mcp_url, http_client=http), mode=mode) as c:
                yield c
    elif transport == "stdio":
        params = StdioServerParameters(command=stack.binary, args=["mcp"], env=stack.stdio_env(agent))
        async with Client(params) as c:
            yield c
    else:
        raise ValueError(transport)


def run(fn, *args: Any) -> Any:
    """Run an async test body (kept synchronous for pytest: no async plugin needed)."""
    return anyio.run(fn, *args)


def text_of(result) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def describe(result) -> str:
    """A result as text for assertion messages."""
    return json.dumps(
        {"is_error": result.is_error, "text": text_of(result), "structured": result.structured_content},
        indent=1, default=str,
    )[:3000]
