"""`jgate demo --serve` prints client configs; the stdio one must work as pasted.

The config a user pastes into Claude Desktop (or any client that starts the server itself) is
started here exactly as printed, with the real Python MCP client, and must reach the demo's own
store: its agent key is only known there.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from conftest import run

STARTUP_TIMEOUT = 120.0


def _read(stream, lines: "queue.Queue[str | None]") -> None:
    for raw in iter(stream.readline, ""):
        lines.put(raw)
    lines.put(None)


def test_the_printed_stdio_config_serves_the_demo_agent(tmp_path):
    binary = os.environ.get("JGATE_BIN")
    if not binary:
        pytest.fail("JGATE_BIN is not set", pytrace=False)
    # A clean environment: the config must carry everything the server needs.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [binary, "demo", "--serve"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    lines: "queue.Queue[str | None]" = queue.Queue()
    threading.Thread(target=_read, args=(proc.stdout, lines), daemon=True).start()
    seen: list[str] = []
    config = None
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while config is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            seen.append(line)
            text = line.strip()
            if text.startswith("{") and '"command"' in text:
                config = json.loads(text)
        assert config is not None, "no stdio config printed:\n" + "".join(seen)[-4000:]
        server = config["mcpServers"]["jgate"]
        assert server["args"] == ["mcp"]
        assert "JGATE_DATA_DIR" in server["env"], server

        async def body():
            params = StdioServerParameters(command=server["command"], args=server["args"], env=server["env"])
            async with Client(params) as client:
                tools = {t.name for t in (await client.list_tools()).tools}
                assert "get_job" in tools, tools
                result = await client.call_tool("get_job", {"job": "team-api/api-server"})
                assert not result.is_error, result

        run(body)

        # The console login link comes after the configs; it logs in once.
        link = None
        deadline = time.monotonic() + 30
        while link is None and time.monotonic() < deadline:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                break
            seen.append(line)
            if "/console/link?token=" in line:
                link = line.strip()
        assert link, "no console login link printed:\n" + "".join(seen)[-4000:]
        import re
        import urllib.parse

        import httpx2 as httpx

        origin = "{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(link))

        def redeem():
            # As a browser does: the link's page, then its form (the token is used by the POST only).
            with httpx.Client(follow_redirects=False) as http:
                page = http.get(link)
                assert page.status_code == 200, page.status_code
                fields = dict(re.findall(r'name="(nonce|token)" value="([^"]*)"', page.text))
                return http.post(origin + "/console/link", data=fields, headers={"Origin": origin})

        first = redeem()
        assert first.status_code in (302, 303), (first.status_code, first.text[:300])
        assert first.headers.get("location", "").startswith("/console"), first.headers
        assert "HttpOnly" in first.headers.get("set-cookie", ""), first.headers
        again = redeem()
        assert again.status_code == 401, ("a link works once", again.status_code)
    finally:
        proc.send_signal(signal.SIGINT)  # the demo removes its data directory on Ctrl-C
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
