"""MCP resources (issue 13, docs/tools.md "Resources"): builds and their logs as jenkins:// URIs,
read through the same policy, audit and sanitizer as the tools, and subscriptions notified by the
controller's build events (the twin's Notification plugin posting to `jgate serve`'s hook).

Run with:
    JGATE_BIN=target/debug/jgate target/xtask-venv/bin/pytest -q tests/mcp/test_resources.py
"""

from __future__ import annotations

import json
import time
import uuid

import anyio
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from conftest import TRANSPORTS, connect, http_client, run
from jgate_stack import ADMIN_TOKEN

LEAKED = "ghp_R8k2QzR8k2QzR8k2QzR8k2QzR8k2QzR8k2Qz"
BUILD_TEMPLATE = "jenkins://{controller}/job/{+job}/{number}"
LOG_TEMPLATE = "jenkins://{controller}/job/{+job}/{number}/log"

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_two_templates_are_listed_and_subscribe_is_offered(stack, transport):
    async def body():
        async with connect(stack, "triage-bot", transport) as c:
            caps = c.server_capabilities.resources
            assert caps is not None, c.server_capabilities
            # Build events reach jgate serve; a stdio process on SQLite (this stack) hears none.
            assert bool(caps.subscribe) == (transport != "stdio"), (transport, caps)
            assert not caps.list_changed, "the lists never change: no listChanged"
            templates = (await c.list_resource_templates()).resource_templates
            by_uri = {t.uri_template: t for t in templates}
            assert set(by_uri) == {BUILD_TEMPLATE, LOG_TEMPLATE}, by_uri
            assert by_uri[BUILD_TEMPLATE].mime_type == "application/json"
            assert by_uri[LOG_TEMPLATE].mime_type == "text/plain"
            assert "get_build_log" in by_uri[LOG_TEMPLATE].description
            # Nothing subscribed yet: nothing listed.
            assert (await c.list_resources()).resources == []

    run(body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_build_and_its_log_are_read_through_the_policy_and_the_sanitizer(stack, transport):
    async def body():
        async with connect(stack, "release-bot", transport) as c:
            uri = "jenkins://prod/job/release/leaky/1"
            build = (await c.read_resource(uri, cache_mode="bypass")).contents
            assert len(build) == 1 and build[0].uri == uri and build[0].mime_type == "application/json", build
            b = json.loads(build[0].text)
            assert (b["number"], b["result"]) == (1, "SUCCESS"), b
            log = (await c.read_resource(uri + "/log", cache_mode="bypass")).contents
            assert len(log) == 1 and log[0].mime_type == "text/plain", log
            text = log[0].text
            assert "deploying with GITHUB_TOKEN=" in text, text
            assert LEAKED not in text, "the secret in the console reached the agent"
            assert "1 secret(s) redacted" in text, text
            # Another spelling of the same job (letter case) is the same build, decided the same way.
            alias = json.loads((await c.read_resource("jenkins://prod/job/RELEASE/Leaky/1", cache_mode="bypass")).contents[0].text)
            assert alias["number"] == 1
        records = [r for r in stack.audit(agent="release-bot") if r.get("operation") in ("get_build", "get_build_log")]
        reads = [(r["operation"], r.get("target"), r.get("phase")) for r in records if r.get("surface") == "mcp"]
        assert ("get_build", "release/leaky", "read") in reads, reads
        assert ("get_build_log", "release/leaky", "read") in reads, reads
        assert ("get_build", "RELEASE/Leaky", "read") in reads, reads
        assert not any(LEAKED in json.dumps(r) for r in records), "the secret reached the audit"

    run(body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_hidden_missing_unknown_and_malformed_are_one_answer(stack, transport):
    async def body():
        async with connect(stack, "release-bot", transport) as c:
            answers = {}
            for what, uri in [
                ("hidden job", "jenkins://prod/job/api-server/1"),  # exists; outside release/**
                ("missing build", "jenkins://prod/job/release/leaky/999"),
                ("missing job", "jenkins://prod/job/release/nothing-here/1"),
                ("unknown controller", "jenkins://staging/job/release/leaky/1"),
                ("trailing slash", "jenkins://prod/job/release/leaky/1/"),
                ("dot segment", "jenkins://prod/job/release/../api-server/1"),
                ("permalink", "jenkins://prod/job/release/leaky/lastBuild"),
                ("another scheme", "https://prod/job/release/leaky/1"),
            ]:
                with pytest.raises(MCPError) as e:
                    await c.read_resource(uri, cache_mode="bypass")
                assert e.value.data == {"uri": uri}, (what, e.value.error)
                answers[what] = (e.value.code, e.value.message)
            assert len(set(answers.values())) == 1, answers
            code, message = answers["hidden job"]
            assert message == "Resource not found", message
            legacy_era = not c.protocol_version.startswith("2026")
            assert code == (-32002 if legacy_era else -32602), (c.protocol_version, code)
        # The hidden read was decided and audited as a denial; the missing one as an error.
        records = stack.audit(agent="release-bot")
        denied = [r for r in records if r.get("operation") == "get_build" and r.get("target") == "api-server"]
        assert denied and all(r.get("phase") == "denied" for r in denied), denied

    run(body)


# ---------------------------------------------------------------------------------------------
# Subscriptions, woken by the twin's Notification plugin events


def twin(stack) -> httpx2.Client:
    return httpx2.Client(base_url=stack.twin_url, auth=("admin", ADMIN_TOKEN), timeout=30.0)


def job_xml(hook: str, seconds: int) -> str:
    return f"""<?xml version='1.1' encoding='UTF-8'?>
<project>
  <description>posts its build events to jgate</description>
  <properties>
    <com.tikal.hudson.plugins.notification.HudsonNotificationProperty plugin="notification@1.17">
      <endpoints>
        <com.tikal.hudson.plugins.notification.Endpoint>
          <protocol>HTTP</protocol>
          <format>JSON</format>
          <urlInfo><urlOrId>{hook}</urlOrId><urlType>PUBLIC</urlType></urlInfo>
          <event>all</event>
          <timeout>5000</timeout>
          <loglines>0</loglines>
        </com.tikal.hudson.plugins.notification.Endpoint>
      </endpoints>
    </com.tikal.hudson.plugins.notification.HudsonNotificationProperty>
  </properties>
  <builders>
    <hudson.tasks.Shell><command>echo deploying
sleep {seconds}
echo done</command></hudson.tasks.Shell>
  </builders>
</project>
"""


@pytest.fixture(scope="module")
def hook(stack) -> str:
    """The hook endpoint jgate serve receives the twin's events on (made once; --rotate makes the
    module independent of any earlier secret)."""
    out = json.loads(stack.cli("--json", "controller", "hook", "prod", "--public-url", stack.base_url, "--rotate").stdout)
    return out["endpoint_url"]


def hook_accepted(stack) -> int:
    stats = json.loads(stack.cli("--json", "controller", "hook", "prod", "--stats").stdout)
    return stats["counts"].get("accepted", {}).get("count", 0)


def make_job(stack, hook: str, name: str, seconds: int) -> None:
    with twin(stack) as t:
        r = t.post(f"/job/release/createItem?name={name}", content=job_xml(hook, seconds),
                   headers={"Content-Type": "application/xml"})
        assert r.status_code == 200, (r.status_code, r.text[:500])


def start_build(stack, name: str) -> int:
    """Triggers the job on the twin (as Jenkins' own user, not through jgate) and waits until its
    build exists; returns its number."""
    with twin(stack) as t:
        before = t.get(f"/job/release/job/{name}/api/json").json().get("nextBuildNumber", 1)
        r = t.post(f"/job/release/job/{name}/build")
        assert r.status_code in (200, 201), (r.status_code, r.text[:500])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            b = t.get(f"/job/release/job/{name}/{before}/api/json")
            if b.status_code == 200:
                return before
            time.sleep(0.1)
    raise AssertionError(f"build {before} of release/{name} did not start")


def new_agent(stack, grants: list[list[str]]) -> tuple[str, str, list[int]]:
    name = f"watcher-{uuid.uuid4().hex[:8]}"
    key = json.loads(stack.cli("--json", "agent", "create", name).stdout)["key"]
    ids = [json.loads(stack.cli("--json", "grant", name, *g).stdout)["id"] for g in grants]
    return name, key, ids


# resources/subscribe is the handshake era's API, deprecated by the client for 2026-07-28: here on purpose.
@pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")
def test_subscriptions_are_notified_by_build_events_until_the_grant_is_revoked(stack, hook):
    tag = uuid.uuid4().hex[:6]
    kept, revoked = f"notified-{tag}-a", f"notified-{tag}-b"
    for name in (kept, revoked):
        make_job(stack, hook, name, 4)
    agent, key, (kept_grant, revoked_grant) = new_agent(
        stack, [["status", "read", "--jobs", f"release/{kept}"], ["status", "read", "--jobs", f"release/{revoked}"]]
    )
    n_kept, n_revoked = start_build(stack, kept), start_build(stack, revoked)
    kept_uri = f"jenkins://prod/job/release/{kept}/{n_kept}"
    kept_log = kept_uri + "/log"
    revoked_uri = f"jenkins://prod/job/release/{revoked}/{n_revoked}"
    accepted_before = hook_accepted(stack)
    updated: list[str] = []

    async def on_message(message) -> None:
        if getattr(message, "method", None) == "notifications/resources/updated":
            updated.append(message.params.uri)

    async def body():
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"},
                                      timeout=httpx2.Timeout(30.0, read=300.0)) as http:
            async with Client(streamable_http_client(stack.mcp_url, http_client=http), mode="legacy",
                              message_handler=on_message) as c:
                for uri in (kept_uri, kept_log, revoked_uri):
                    await c.subscribe_resource(uri)
                # A build the agent may not read: refused exactly like one that does not exist.
                for uri in ("jenkins://prod/job/api-server/1", f"jenkins://prod/job/release/{kept}/999"):
                    with pytest.raises(MCPError) as e:
                        await c.subscribe_resource(uri)
                    assert (e.value.code, e.value.message, e.value.data) == (-32002, "Resource not found", {"uri": uri})
                listed = sorted(r.uri for r in (await c.list_resources(cache_mode="bypass")).resources)
                assert listed == sorted([kept_uri, kept_log, revoked_uri]), listed
                stack.cli("ungrant", str(revoked_grant))
                # Both builds end together; the kept ones are announced when they do.
                with anyio.fail_after(30):
                    while not {kept_uri, kept_log} <= set(updated):
                        await anyio.sleep(0.1)
                # The revoked build's events came in too (4 phases of each build reached the hook)...
                with anyio.fail_after(15):
                    while hook_accepted(stack) - accepted_before < 4:
                        await anyio.sleep(0.2)
                await anyio.sleep(1.5)
                # ...but were not announced to an agent that may no longer read the build, and the
                # subscription is gone.
                assert revoked_uri not in updated, updated
                listed = sorted(r.uri for r in (await c.list_resources(cache_mode="bypass")).resources)
                assert revoked_uri not in listed, listed
                await c.unsubscribe_resource(kept_log)
                listed = [r.uri for r in (await c.list_resources(cache_mode="bypass")).resources]
                assert listed == [kept_uri], listed

    run(body)
    # The subscriptions were checked as audited reads (the refused one as a denial).
    records = stack.audit(agent=agent)
    checks = [(r.get("operation"), r.get("target"), r.get("phase")) for r in records]
    assert ("get_build", f"release/{kept}", "read") in checks, checks
    assert ("get_build", f"release/{revoked}", "read") in checks, checks
    assert ("get_build", "api-server", "denied") in checks, checks


def test_a_modern_client_listens_for_its_builds(stack, hook):
    """2026-07-28 has no resources/subscribe: the same subscriptions over subscriptions/listen."""
    name = f"listened-{uuid.uuid4().hex[:6]}"
    make_job(stack, hook, name, 2)
    agent, key, _ = new_agent(stack, [["status", "read", "--jobs", "release/listened-*"]])
    number = start_build(stack, name)
    uri = f"jenkins://prod/job/release/{name}/{number}"
    hidden = "jenkins://prod/job/api-server/1"

    async def body():
        async with http_client(key) as http:
            async with Client(streamable_http_client(stack.mcp_url, http_client=http)) as c:
                if not c.protocol_version.startswith("2026"):
                    pytest.skip(f"negotiated {c.protocol_version}")
                async with c.listen(resource_subscriptions=[uri, hidden]) as sub:
                    with anyio.fail_after(30):
                        async for event in sub:
                            if getattr(event, "uri", None) == uri:
                                break
                            assert getattr(event, "uri", None) != hidden, event

    run(body)
    checks = [(r.get("operation"), r.get("target"), r.get("phase")) for r in stack.audit(agent=agent)]
    assert ("get_build", f"release/{name}", "read") in checks, checks
    assert ("get_build", "api-server", "denied") in checks, checks


@pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")
def test_a_stdio_process_on_sqlite_refuses_subscriptions_it_could_never_notify(stack):
    async def body():
        async with connect(stack, "triage-bot", "stdio") as c:
            uri = "jenkins://prod/job/api-server/1"
            with pytest.raises(MCPError) as e:
                if c.protocol_version.startswith("2026"):
                    async with c.listen(resource_subscriptions=[uri]):
                        pass
                else:
                    await c.subscribe_resource(uri)
            if not c.protocol_version.startswith("2026"):
                assert "jgate serve" in e.value.message, e.value.error
            # Reads work as over HTTP.
            assert json.loads((await c.read_resource(uri, cache_mode="bypass")).contents[0].text)["number"] == 1

    run(body)
