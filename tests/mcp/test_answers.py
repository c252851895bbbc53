"""Issue #14's reads over MCP, as an agent reaches them (through `read_more`) on every transport:
artifacts (text through the log views, secrets redacted; binaries as metadata only), a Pipeline
stage's own log, two builds compared, flaky tests and deployments; each audited under its own name
and refused like a missing job for a job the agent may not see."""

import json
import uuid

import pytest

from conftest import connect, describe, run, text_of

pytestmark = pytest.mark.parametrize("transport", ["http", "http-legacy", "stdio"])


def _more(stack, agent, transport, what, args):
    async def body():
        async with connect(stack, agent, transport) as c:
            return await c.call_tool("read_more", {"what": what, "args": args})

    return run(body)


def _seen(r):
    return json.dumps(r.structured_content) + text_of(r)


def test_artifacts_are_listed_and_read_with_secrets_redacted(stack, transport):
    listed = _more(stack, "triage-bot", transport, "list_artifacts", {"job": "release/web", "build": 1})
    assert not listed.is_error, describe(listed)
    paths = json.dumps(listed.structured_content)
    assert "reports/summary.txt" in paths and "bin/web.png" in paths, describe(listed)
    text = _more(stack, "triage-bot", transport, "read_artifact",
                 {"job": "release/web", "build": 1, "path": "reports/summary.txt"})
    assert not text.is_error, describe(text)
    assert "summary last line" in _seen(text), describe(text)
    assert "npm_Zr8kQ2" not in _seen(text), "the secret in the artifact is redacted"
    binary = _more(stack, "triage-bot", transport, "read_artifact",
                   {"job": "release/web", "build": 1, "path": "bin/web.png"})
    assert not binary.is_error, describe(binary)
    assert "PNG" not in _seen(binary), "a binary artifact's bytes never reach the agent"
    escape = _more(stack, "triage-bot", transport, "read_artifact",
                   {"job": "release/web", "build": 1, "path": "../../config.xml"})
    assert escape.is_error, describe(escape)


def test_a_stage_log_comes_from_its_node_redacted(stack, transport):
    r = _more(stack, "triage-bot", transport, "get_stage_log", {"job": "release/pipe", "build": 1, "stage": "Publish"})
    assert not r.is_error, describe(r)
    seen = _seen(r)
    assert "push refused by the registry" in seen, describe(r)
    assert "compiling the web app" not in seen, "only the stage's own log"
    assert "ghp_T4k9" not in seen, "the secret in the stage's log is redacted"


def test_two_builds_compared_and_flaky_tests_found(stack, transport):
    r = _more(stack, "triage-bot", transport, "compare_builds", {"job": "release/web"})
    assert not r.is_error, describe(r)
    seen = _seen(r)
    assert "web.UiTest.saves" in seen, "the newly failing test: " + describe(r)
    assert "b2b2b2b" in seen, "the change between them: " + describe(r)
    flaky = _more(stack, "triage-bot", transport, "find_flaky_tests", {"job": "release/web"})
    assert not flaky.is_error, describe(flaky)
    assert "web.UiTest.saves" in _seen(flaky), describe(flaky)


def test_deployments_say_what_jenkins_cannot_tell(stack, transport):
    r = _more(stack, "triage-bot", transport, "get_deployments", {"job": "release/deploy"})
    assert not r.is_error, describe(r)
    assert r.structured_content.get("cannot_know"), describe(r)


def test_new_reads_are_audited_under_their_own_names_and_hide_what_is_not_granted(stack, transport):
    before = len(stack.audit(agent="triage-bot", operation="compare_builds"))
    _more(stack, "triage-bot", transport, "compare_builds", {"job": "release/web"})
    assert len(stack.audit(agent="triage-bot", operation="compare_builds")) == before + 1
    # release-bot reads release/** only: api-server answers like a job that does not exist.
    hidden = _more(stack, "release-bot", transport, "compare_builds", {"job": "api-server"})
    missing = _more(stack, "release-bot", transport, "compare_builds", {"job": "no-such-job"})
    assert hidden.is_error and missing.is_error, (describe(hidden), describe(missing))
    assert text_of(hidden).replace("api-server", "X") == text_of(missing).replace("no-such-job", "X"), (
        describe(hidden), describe(missing))


def _replay_agent(stack, grants: list[list[str]]) -> str:
    name = f"replay-bot-{uuid.uuid4().hex[:8]}"
    stack.keys[name] = json.loads(stack.cli("--json", "agent", "create", name).stdout)["key"]
    for g in grants:
        stack.cli("grant", name, *g)
    return name


def _call(stack, agent, transport, tool, args):
    async def body():
        async with connect(stack, agent, transport) as c:
            return await c.call_tool(tool, args)

    return run(body)


def test_a_replay_runs_the_new_script_only_with_config_full_use(stack, transport):
    tag = uuid.uuid4().hex[:8]
    script = f"echo 'replayed-{tag}'"
    status = ["status", "read", "--jobs", "release/pipe"]
    build_only = _replay_agent(stack, [status, ["build", "full", "--jobs", "release/pipe"]])
    both = _replay_agent(stack, [status, ["build", "full", "--jobs", "release/pipe"],
                                 ["config", "full", "--jobs", "release/pipe"]])
    before = _call(stack, both, transport, "get_job", {"job": "release/pipe"}).structured_content["next_build_number"]
    # Build full use alone does not replay modified code: refused, nothing started.
    denied = _call(stack, build_only, transport, "replay", {"job": "release/pipe", "build": 1, "script": script})
    assert denied.is_error, describe(denied)
    after_denied = _call(stack, both, transport, "get_job", {"job": "release/pipe"}).structured_content
    assert after_denied["next_build_number"] == before, "nothing was started"
    # With config full use too: the new run runs the new script, caused by the replay of #1.
    r = _call(stack, both, transport, "replay", {"job": "release/pipe", "build": 1, "script": script, "wait": "finish"})
    assert not r.is_error, describe(r)
    number = r.structured_content.get("build")
    if isinstance(number, dict):
        number = number.get("number")
    assert isinstance(number, int) and number >= before, describe(r)
    log = _call(stack, both, transport, "get_build_log", {"job": "release/pipe", "build": number})
    assert f"replayed-{tag}" in _seen(log), describe(log)
    b = _call(stack, both, transport, "get_build", {"job": "release/pipe", "build": number})
    assert "Replayed #1" in _seen(b), describe(b)
    # The audit names the replay, never the script itself.
    records = stack.audit(agent=both, operation="replay")
    assert records and not any(f"replayed-{tag}" in json.dumps(rec) for rec in records), records
