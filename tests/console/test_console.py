"""The web console in real Chromium (Debian's /usr/bin/chromium, driven by Playwright for Python).

The scenario of issue #12's proof: log in; connect the twin with a wrong token and read the 401
diagnosis; fix the token and save; create an agent; set Read on status and Full use on build for
release/** with ENV=staging; make MCP calls as that agent and see them appear in the audit view
without reloading, the denial included; a form posted without the CSRF token is refused; the
console without a session sends to the login page. Screenshots of each page go to
$JGATE_SCREENSHOT_DIR (default target/console-screenshots; docs/screenshots holds the README's).

Run with:
    JGATE_BIN=target/debug/jgate target/xtask-console-venv/bin/python -m pytest -q tests/console
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import urllib.request

import pytest
from playwright.sync_api import Page, expect, sync_playwright

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHROMIUM = os.environ.get("JGATE_CHROMIUM", "/usr/bin/chromium")
TOKEN = "11bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
WRONG_TOKEN = "11cccccccccccccccccccccccccccccccc"
PASSWORD = "a long console passphrase"

# The MCP test helpers' stack starter (twin + jgate serve from the CLI) is reused.
import sys  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "mcp"))
from jgate_stack import SetupError, jgate_bin, run_cli, start_and_wait, TWIN_RE, SERVE_RE  # noqa: E402


def shots_dir() -> pathlib.Path:
    d = pathlib.Path(os.environ.get("JGATE_SCREENSHOT_DIR", ROOT / "target" / "console-screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def stack():
    binary = jgate_bin()
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium is missing at {CHROMIUM}: install Debian's package (apt-get install chromium)", pytrace=False)
    data = pathlib.Path(tempfile.mkdtemp(prefix="jgate-console-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JGATE_")}
    env["JGATE_DATA_DIR"] = str(data)
    twin = server = None
    try:
        twin, m = start_and_wait(
            [binary, "twin", "serve", "--addr", "127.0.0.1:0", "--scenario", str(HERE / "scenario.toml"),
             "--user", f"admin:admin:{TOKEN}"],
            TWIN_RE, env, "the twin",
        )
        twin_url = m.group(1).rstrip("/")
        pw = data / "password.txt"
        pw.write_text(PASSWORD + "\n")
        run_cli(binary, env, ["admin", "create", "alice", "--password-file", str(pw)])
        pw.unlink()
        server, m = start_and_wait([binary, "serve", "--addr", "127.0.0.1:0"], SERVE_RE, env, "`jgate serve`")
        yield {"base": m.group(1).rstrip("/"), "twin": twin_url, "binary": binary, "env": env}
    except SetupError as e:
        pytest.fail(str(e), pytrace=False)
    finally:
        for p in (server, twin):
            if p is not None:
                p.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


def mcp_call(base: str, key: str, tool: str, arguments: dict) -> str:
    """One MCP tool call over streamable HTTP (initialize, initialized, tools/call): the answer's text."""
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }

    def post(body: dict, session: str | None = None) -> tuple[str | None, str]:
        h = dict(headers)
        if session:
            h["mcp-session-id"] = session
        req = urllib.request.Request(base + "/mcp", data=json.dumps(body).encode(), headers=h, method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.headers.get("mcp-session-id"), r.read().decode()

    session, _ = post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "console-test", "version": "1"}}})
    post({"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    _, text = post({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                    "params": {"name": tool, "arguments": arguments}}, session)
    return text


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(shots_dir() / f"{name}.png"), full_page=True)


def test_console_scenario(stack, browser):
    base = stack["base"]
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()

    # Without a session: the login page.
    page.goto(base + "/console/audit")
    expect(page).to_have_url(re.compile(r"/console/login"))
    shot(page, "login")
    # By keyboard: the name field has the focus; Tab to the password, Enter submits.
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    # Back to the page that was asked for.
    expect(page).to_have_url(re.compile(r"/console/audit$"))
    expect(page.locator("header .who")).to_have_text("alice")
    page.get_by_role("navigation").get_by_role("link", name="Controllers").click()
    expect(page).to_have_url(re.compile(r"/console/controllers"))

    # Connect the twin with a wrong token: Test shows the 401 diagnosis, with its fix.
    port = stack["twin"].rsplit(":", 1)[1]
    form = page.locator("#connect-form")
    form.locator("input[name=name]").fill("prod")
    form.locator("input[name=url]").fill(stack["twin"])
    form.locator("input[name=username]").fill("admin")
    form.locator("input[name=token]").fill(WRONG_TOKEN)
    form.locator("textarea[name=allow_private]").fill(f"127.0.0.1:{port}")
    form.locator("button[value=test]").click()
    result = page.locator("#test-result")
    expect(result).to_contain_text("Connection test failed")
    expect(result).to_contain_text("HTTP 401")
    expect(result).to_contain_text("Fix:")
    assert WRONG_TOKEN not in page.content()
    shot(page, "controller-test-401")
    # Fix it: the right token (write-only: typed again), Test passes, Save stores.
    form = page.locator("#connect-form")
    expect(form.locator("input[name=url]")).to_have_value(stack["twin"])
    form.locator("input[name=token]").fill(TOKEN)
    form.locator("button[value=test]").click()
    expect(page.locator("#test-result")).to_contain_text("Connection test passed")
    page.locator("#connect-form input[name=token]").fill(TOKEN)
    page.locator("#connect-form button[value=save]").click()
    expect(page.locator(".notice")).to_contain_text("Controller prod was saved")
    row = page.locator("table.list tbody tr", has_text="prod")
    expect(row).to_contain_text("passed")
    shot(page, "controllers")

    # Create an agent: its key is shown once, with the MCP configurations.
    page.get_by_role("navigation").get_by_role("link", name="Agents").click()
    page.locator("#create-agent input[name=name]").fill("release-bot")
    page.locator("#create-agent input[name=description]").fill("deploys to staging")
    page.locator("#create-agent button").click()
    key = page.locator("#agent-key").inner_text().strip()
    assert key.startswith("jgate_"), key
    expect(page.locator("#snip-cursor")).to_contain_text("Bearer " + key)
    shot(page, "agent-key")

    # Its matrix: all Off (deny by default); Read on status; Full use on build for release/** with ENV=staging.
    page.locator("a", has_text="release-bot").first.click()
    expect(page.locator(".hint", has_text="Deny by default")).to_be_visible()
    status = page.locator("#matrix tr[data-group=status] select")
    status.select_option("read")  # submits itself
    expect(page.locator(".notice")).to_contain_text("The access was changed")
    expect(page.locator("#matrix tr[data-group=status] td.cell")).to_have_class(re.compile("level-read"))
    g = page.locator("#grant-form")
    g.locator("select[name=group]").select_option("build")
    g.locator("select[name=level]").select_option("full")
    g.locator("select[name=controller]").select_option("prod")
    g.locator("input[name=jobs]").fill("release/**")
    g.locator("textarea[name=params]").fill("ENV=staging")
    g.locator("button").click()
    expect(page.locator(".notice")).to_contain_text("The grant was added")
    expect(page.locator("#matrix tr[data-group=build]")).to_contain_text("release/**: full use")
    # The explainer for a job.
    page.locator("input[name=job]").fill("release/deploy")
    page.get_by_role("button", name="Explain").click()
    expect(page.locator("table.explain")).to_contain_text("trigger_build also needs: ENV ∈ {staging}")
    shot(page, "matrix")

    # The audit page, live: MCP calls as the agent appear without reloading, the denial marked.
    page.get_by_role("navigation").get_by_role("link", name="Audit").click()
    expect(page.locator("#chain")).to_contain_text("The audit chain verifies")
    expect(page.locator("#live-state")).to_contain_text("Live")
    url_before = page.url
    above_rows = ("() => ['#chain', '#live-state', '#audit-table thead']"
                  ".map(s => document.querySelector(s).getBoundingClientRect().top)")
    tops_before = page.evaluate(above_rows)
    answer = mcp_call(base, key, "get_job", {"job": "release/deploy"})
    assert "release/deploy" in answer, answer
    denied = mcp_call(base, key, "trigger_build", {"job": "release/deploy", "parameters": {"ENV": "production"}})
    assert "denied" in denied.lower() or "not allowed" in denied.lower(), denied
    expect(page.locator("#audit-table tbody tr.denied").first).to_contain_text("release-bot was denied", timeout=15000)
    expect(page.locator("#audit-table tbody tr", has_text="release-bot read").first).to_be_visible(timeout=15000)
    assert page.url == url_before, "the page was reloaded"
    # No layout shift above the rows while the audit streams (the banner, the live note and the
    # table's header stay where they were; new rows go in below the header).
    assert page.evaluate(above_rows) == tops_before, "the page above the rows moved while records streamed in"
    shot(page, "audit")

    # Narrow window: readable, nothing wider than the window.
    page.set_viewport_size({"width": 420, "height": 800})
    wide = page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")
    assert not wide, "the audit page overflows a narrow window"
    shot(page, "audit-narrow")
    page.set_viewport_size({"width": 1280, "height": 800})

    # Connect an agent.
    page.get_by_role("navigation").get_by_role("link", name="Connect an agent").click()
    expect(page.locator("#mcp-url")).to_have_text(base + "/mcp")
    expect(page.locator("main")).to_contain_text(base + "/jenkins/prod/")
    shot(page, "connect")

    # A form posted without the CSRF token is refused (and changes nothing).
    status_code = page.evaluate(
        """async () => (await fetch('/console/agents', {method: 'POST',
              headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'name=sneaky-bot'})).status"""
    )
    assert status_code == 403
    page.get_by_role("navigation").get_by_role("link", name="Agents").click()
    expect(page.locator("main")).not_to_contain_text("sneaky-bot")

    # Another browser without a session: sent to the login page.
    other = browser.new_context().new_page()
    other.goto(base + "/console/agents/release-bot")
    expect(other).to_have_url(re.compile(r"/console/login"))

    # Logging out ends the session.
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/console/login"))
    page.goto(base + "/console/controllers")
    expect(page).to_have_url(re.compile(r"/console/login"))
    ctx.close()
