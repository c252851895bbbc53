"""The community MCP server mcp-jenkins (PyPI, pinned), unmodified, governed by jgate.

It is started under `jgate exec`, which hands it the proxy's URL, the agent's name and a token
made for the run, and driven by the Python MCP client as any MCP host would: its read tools
answer within the agent's grants, a trigger outside the grant and its script console tool are
refused, and the console it reads has the leaked token redacted. It never holds a Jenkins token.
"""

from __future__ import annotations

import os

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from conftest import describe, run, text_of

LEAKED = "ghp_R8k2QzR8k2QzR8k2QzR8k2QzR8k2QzR8k2Qz"


def mcp_jenkins() -> str:
    exe = os.environ.get("MCP_JENKINS_BIN")
    if not exe or not os.access(exe, os.X_OK):
        pytest.fail(
            "MCP_JENKINS_BIN is not set to the mcp-jenkins executable: `cargo xtask test` installs it "
            "(target/xtask-mcp-jenkins-venv/bin/mcp-jenkins from tests/mcp/mcp-jenkins-requirements.txt)",
            pytrace=False,
        )
    return exe


def test_mcp_jenkins_under_jgate_exec_is_governed(stack, tmp_path):
    exe = mcp_jenkins()
    # The variables `jgate exec` sets fill mcp-jenkins' own options.
    script = f'exec "{exe}" --jenkins-url "$JENKINS_URL" --jenkins-username "$JENKINS_USER" --jenkins-password "$JENKINS_TOKEN"'
    params = StdioServerParameters(
        command=os.path.abspath(stack.binary),
        args=["exec", "--url", stack.base_url, "--ttl", "10m", "--", "sh", "-c", script],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "JGATE_AGENT_KEY": stack.keys["release-bot"]},
        cwd=str(tmp_path),
    )

    async def body():
        async with Client(params) as c:
            tools = {t.name for t in (await c.list_tools()).tools}
            assert {"get_all_items", "get_build_console_output", "build_item"} <= tools, tools

            r = await c.call_tool("get_all_items", {})
            assert not r.is_error, describe(r)
            listed = text_of(r)
            assert "deploy" in listed, listed
            # release-bot may see release/** only.
            assert "api-server" not in listed and "ops-cleanup" not in listed, listed

            r = await c.call_tool("get_build_console_output", {"fullname": "release/leaky", "number": 1})
            assert not r.is_error, describe(r)
            console = text_of(r)
            assert LEAKED not in console and "REDACTED" in console, console

            r = await c.call_tool(
                "build_item", {"fullname": "release/deploy", "build_type": "buildWithParameters", "data": {"ENV": "production"}}
            )
            assert r.is_error, f"a trigger outside the grant went through: {describe(r)}"

            r = await c.call_tool("run_groovy_script", {"script": "println(Jenkins.instance.systemMessage)"})
            assert r.is_error, f"the script console went through: {describe(r)}"

    run(body)
    records = stack.audit(agent="release-bot")
    proxied = [r for r in records if r.get("entry", r).get("surface") == "proxy"]
    assert proxied, "the proxy's calls are in the audit"
    text = str(records)
    assert "scriptText" in text, "the refused script console call is on record"
    assert LEAKED not in text
