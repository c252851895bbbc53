"""Tools seen and called by agents through the real Python MCP client, over HTTP and stdio."""

from __future__ import annotations

import json
import re

import pytest

from conftest import AGENTS, TRANSPORTS, connect, describe, run, text_of

pytestmark = pytest.mark.parametrize("transport", TRANSPORTS)

# SEP-986 (2025-11-25): 1-128 characters of A-Z a-z 0-9 _ - .
TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


@pytest.mark.parametrize("agent", AGENTS)
def test_tools_listed_follow_the_grants(stack, catalog, expected_tools, transport, agent):
    async def body():
        async with connect(stack, agent, transport) as c:
            return (await c.list_tools()).tools

    tools = run(body)
    names = [t.name for t in tools]
    assert len(names) == len(set(names)), f"duplicate tool names: {names}"
    assert set(names) == expected_tools[agent], (
        f"{agent} over {transport}: expected exactly {sorted(expected_tools[agent])}, got {sorted(names)}"
    )
    for t in tools:
        assert TOOL_NAME.match(t.name), t.name
        assert t.description, f"{t.name} has no description"
        assert t.input_schema.get("type") == "object", f"{t.name}: {t.input_schema}"
        assert t.annotations is not None, f"{t.name} has no annotations"
        reads = t.name in ("whoami", "read_more") or catalog[t.name]["access"] == "read"
        assert t.annotations.read_only_hint is reads, f"{t.name}: readOnlyHint={t.annotations.read_only_hint}"
    by_name = {t.name: t for t in tools}
    if "trigger_build" in by_name:
        props = by_name["trigger_build"].input_schema.get("properties", {})
        for arg in ("controller", "job", "parameters", "wait"):
            assert arg in props, f"trigger_build lacks argument {arg}: {sorted(props)}"
        assert set(props["wait"].get("enum", [])) == {"none", "start", "finish"}, props["wait"]


@pytest.mark.parametrize("agent", AGENTS)
def test_whoami_names_the_agent(stack, transport, agent):
    async def body():
        async with connect(stack, agent, transport) as c:
            return await c.call_tool("whoami", {})

    r = run(body)
    assert not r.is_error, describe(r)
    assert isinstance(r.structured_content, dict), describe(r)
    assert r.structured_content.get("agent") == agent, describe(r)
    assert agent in text_of(r), describe(r)


def test_triage_reads_the_failed_build_log(stack, transport):
    async def body():
        async with connect(stack, "triage-bot", transport) as c:
            return await c.call_tool("get_build_log", {"job": "api-server", "build": "lastFailedBuild"})

    r = run(body)
    assert not r.is_error, describe(r)
    assert isinstance(r.structured_content, dict), describe(r)
    # What a text-only client (and the model) sees must carry the log itself.
    assert "error: tests failed" in text_of(r), describe(r)
    assert "error: tests failed" in json.dumps(r.structured_content), describe(r)


def test_release_bot_lists_only_its_jobs(stack, transport):
    async def body():
        async with connect(stack, "release-bot", transport) as c:
            return await c.call_tool("list_jobs", {"depth": 2})

    r = run(body)
    assert not r.is_error, describe(r)
    listing = json.dumps(r.structured_content)
    assert "release/deploy" in listing, describe(r)
    assert "api-server" not in listing, describe(r)
    assert "api-server" not in text_of(r), describe(r)


def _denied_records(stack, agent, operation):
    return [r for r in stack.audit(agent=agent, operation=operation) if r["phase"] == "denied"]


def _check_denied(stack, agent, operation, args, transport, must_contain):
    before = len(_denied_records(stack, agent, operation))

    async def body():
        async with connect(stack, agent, transport) as c:
            return await c.call_tool(operation, args)

    r = run(body)
    assert r.is_error, f"{agent} {operation} {args} should be denied:\n{describe(r)}"
    text = text_of(r)
    assert "denied" in text.lower(), describe(r)
    for s in must_contain:
        assert s in text, f"{s!r} missing from the denial:\n{describe(r)}"
    after = _denied_records(stack, agent, operation)
    assert len(after) == before + 1, f"expected one new denied audit record, got {after[before:]}"
    rec = after[-1]
    assert rec["allowed"] is False, rec
    assert rec["agent"] == agent and rec["operation"] == operation, rec
    assert rec.get("surface") == "mcp", f"audit record should name the MCP surface: {rec}"
    if "job" in args:
        assert rec.get("target") == args["job"], rec
    return text


def test_triage_cannot_trigger(stack, transport):
    _check_denied(stack, "triage-bot", "trigger_build", {"job": "release/deploy"}, transport, ["no grant gives"])


def test_release_bot_cannot_trigger_production(stack, transport):
    _check_denied(
        stack, "release-bot", "trigger_build",
        {"job": "release/deploy", "parameters": {"ENV": "production"}, "wait": "none"},
        transport, ["production"],
    )


def test_release_bot_cannot_delete(stack, transport):
    existing = _check_denied(stack, "release-bot", "delete_job", {"job": "release/deploy"}, transport, ["no grant gives"])
    missing = _check_denied(stack, "release-bot", "delete_job", {"job": "release/nope"}, transport, ["no grant gives"])
    # A denial must not tell whether the job exists.
    assert existing.replace("release/deploy", "JOB") == missing.replace("release/nope", "JOB"), (existing, missing)


def test_release_bot_cannot_read_outside_its_jobs(stack, transport):
    # release-bot reads only release/**: api-server is denied, not reported missing.
    _check_denied(stack, "release-bot", "get_build_log", {"job": "api-server", "build": "lastFailedBuild"}, transport, [])


def test_both_protocol_eras_are_served(stack, transport):
    async def body():
        async with connect(stack, "triage-bot", transport) as c:
            return c.protocol_version, c.server_info

    version, info = run(body)
    # The client's default probes server/discover (2026-07-28, stateless) before falling back to
    # initialize; the legacy mode forces the 2025-11-25 handshake. jgate serves both.
    assert version == ("2025-11-25" if transport == "http-legacy" else "2026-07-28"), version
    if info is not None:
        assert info.name == "jgate", info


def test_a_missing_job_is_a_tool_error(stack, transport):
    async def body():
        async with connect(stack, "triage-bot", transport) as c:
            return await c.call_tool("get_job", {"job": "release/nope"})

    r = run(body)
    assert r.is_error, describe(r)
    assert "not found" in text_of(r), describe(r)


def test_controller_argument(stack, transport):
    async def body():
        async with connect(stack, "release-bot", transport) as c:
            named = await c.call_tool("get_job", {"job": "release/deploy", "controller": "prod"})
            default = await c.call_tool("get_job", {"job": "release/deploy"})
            unknown = await c.call_tool("get_job", {"job": "release/deploy", "controller": "nope"})
            return named, default, unknown

    named, default, unknown = run(body)
    assert not named.is_error, describe(named)
    assert not default.is_error, describe(default)
    assert unknown.is_error, describe(unknown)


def test_failing_tests_of_a_fresh_build_are_named(stack, transport):
    """A freestyle job publishing JUnit results, run now: its report and its triage name the test."""

    async def body():
        async with connect(stack, "release-bot", transport) as c:
            t = await c.call_tool(
                "trigger_build",
                {"job": "release/unit-tests", "parameters": {"ENV": "staging"}, "wait": "finish"},
                read_timeout_seconds=120,
            )
            assert not t.is_error, describe(t)
            n = t.structured_content["build"]["number"]
            report = await c.call_tool("get_test_report", {"job": "release/unit-tests", "build": n})
            triage = await c.call_tool("triage_build", {"job": "release/unit-tests", "build": n})
            return t, report, triage

    t, report, triage = run(body)
    assert t.structured_content["build"].get("result") == "UNSTABLE", describe(t)
    for r in (report, triage):
        assert not r.is_error, describe(r)
        seen = json.dumps(r.structured_content) + text_of(r)
        assert "appliesDiscount" in seen, describe(r)
        assert "expected:<90> but was:<100>" in seen, describe(r)
    counts = report.structured_content["report"]
    assert (counts.get("failed"), counts.get("passed")) == (1, 2), describe(report)


@pytest.mark.parametrize("tool,arguments", [
    ("get_job", {"job": "api-server"}),
    ("list_jobs", {"depth": 2}),
    ("get_build", {"job": "api-server", "build": "lastFailedBuild"}),
])
def test_text_answers_are_compact_json_of_the_structured_content(stack, transport, tool, arguments):
    async def body():
        async with connect(stack, "triage-bot", transport) as c:
            return await c.call_tool(tool, arguments)

    r = run(body)
    assert not r.is_error, describe(r)
    text = text_of(r)
    # Compact: no indentation, not even a line break (strings carry theirs escaped).
    assert "\n" not in text and '{\n  "' not in text, describe(r)
    assert not re.search(r'(?<!\\)": ', text), f"not compact (a space after a key): {text[:300]}"
    assert json.loads(text) == r.structured_content, describe(r)



# --- Lean answers: read_more (grouped reads) and response budgets (issue #14) ---

def _tools(stack, agent, transport):
    async def body():
        async with connect(stack, agent, transport) as c:
            return {t.name: t for t in (await c.list_tools()).tools}

    return run(body)


def _call(stack, agent, transport, tool, args):
    async def body():
        async with connect(stack, agent, transport) as c:
            return await c.call_tool(tool, args)

    return run(body)


def test_read_more_offers_the_grouped_reads_the_agent_could_use(stack, catalog, transport):
    tools = _tools(stack, "triage-bot", transport)
    grouped = {n for n, op in catalog.items() if op.get("grouped")}
    assert grouped >= {"get_queue", "list_views", "get_system_info"}, grouped
    assert not (grouped & set(tools)), f"grouped reads listed as tools of their own: {grouped & set(tools)}"
    rm = tools["read_more"]
    what = rm.input_schema["properties"]["what"]["enum"]
    # triage-bot reads status everywhere, but has no nodes or system grant.
    status_grouped = {n for n in grouped if catalog[n]["group"] == "status"}
    assert {"get_queue", "list_views", "compare_builds"} <= status_grouped, status_grouped
    assert set(what) == status_grouped, what
    for name in what:
        assert f"- {name}: " in rm.description, rm.description
    assert "stuck_factor?" in rm.description, "each read's arguments are described"
    assert rm.annotations.read_only_hint is True
    # release-bot's grants are job-scoped: read_more offers the grouped reads of jobs, never the
    # controller-wide ones (the queue, views), which no job-scoped grant could pass.
    scoped = _tools(stack, "release-bot", transport)["read_more"].input_schema["properties"]["what"]["enum"]
    assert "compare_builds" in scoped and not ({"get_queue", "list_views"} & set(scoped)), scoped


def test_read_more_dispatches_through_the_call_path(stack, transport):
    before = len(stack.audit(agent="triage-bot", operation="get_queue"))
    via = _call(stack, "triage-bot", transport, "read_more", {"what": "get_queue", "args": {"stuck_factor": 2}})
    direct = _call(stack, "triage-bot", transport, "get_queue", {"stuck_factor": 2})
    assert not via.is_error, describe(via)
    assert set(via.structured_content) == set(direct.structured_content), (describe(via), describe(direct))
    records = stack.audit(agent="triage-bot", operation="get_queue")
    assert len(records) == before + 2, "read_more's call is audited under the read's own name"
    assert not stack.audit(agent="triage-bot", operation="read_more"), "no operation is called read_more"
    # Arguments are the read's own: a wrong one is refused by its strict parse.
    bad = _call(stack, "triage-bot", transport, "read_more", {"what": "get_queue", "args": {"nope": 1}})
    assert bad.is_error and "nope" in text_of(bad), describe(bad)
    # Only grouped reads: others have their own tool, and the answer says so.
    other = _call(stack, "triage-bot", transport, "read_more", {"what": "get_job", "args": {"job": "api-server"}})
    assert other.is_error and "call it directly" in text_of(other), describe(other)
    extra = _call(stack, "triage-bot", transport, "read_more", {"what": "list_views", "controller": "prod"})
    assert extra.is_error and "inside args" in text_of(extra), describe(extra)


def test_read_more_denial_is_audited_under_the_real_operation(stack, transport):
    before = len(_denied_records(stack, "release-bot", "get_queue"))
    r = _call(stack, "release-bot", transport, "read_more", {"what": "get_queue"})
    assert r.is_error and "denied" in text_of(r).lower(), describe(r)
    after = _denied_records(stack, "release-bot", "get_queue")
    assert len(after) == before + 1, after[before:]
    assert after[-1]["operation"] == "get_queue" and after[-1].get("surface") == "mcp", after[-1]


def test_an_agent_with_every_grant_sees_at_most_30_tools(stack, catalog, transport):
    import json as _json

    if "all-bot" not in stack.keys:
        created = _json.loads(stack.cli("--json", "agent", "create", "all-bot").stdout)
        stack.keys["all-bot"] = created["key"]
        for group in sorted({op["group"] for op in catalog.values()}):
            stack.cli("grant", "all-bot", group, "full")
    tools = _tools(stack, "all-bot", transport)
    assert len(tools) <= 30, f"{len(tools)} tools: {sorted(tools)}"
    grouped = {n for n, op in catalog.items() if op.get("grouped")}
    assert set(tools["read_more"].input_schema["properties"]["what"]["enum"]) == grouped
    # Every operation is reachable: its own tool, or through read_more.
    assert set(catalog) - grouped <= set(tools), set(catalog) - grouped - set(tools)


def test_every_read_tool_takes_max_bytes(stack, catalog, transport):
    tools = _tools(stack, "triage-bot", transport)
    for name, t in tools.items():
        if name in ("whoami", "read_more"):
            continue
        props = t.input_schema.get("properties", {})
        assert catalog[name]["access"] == "read"
        if name == "get_job_config":
            # A document the agent writes back is never cut: no budget.
            assert "max_bytes" not in props, f"{name}: {props.get('max_bytes')}"
            continue
        assert props.get("max_bytes", {}).get("maximum") == 65536, f"{name}: {props.get('max_bytes')}"


def test_a_small_budget_cuts_the_answer_and_says_how_to_get_the_rest(stack, transport):
    full = _call(stack, "triage-bot", transport, "list_jobs", {"depth": 3})
    cut = _call(stack, "triage-bot", transport, "list_jobs", {"depth": 3, "max_bytes": 512})
    assert not full.is_error and not cut.is_error, describe(cut)
    assert "omitted" not in full.structured_content, describe(full)
    body = cut.structured_content
    assert len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()) <= 512, describe(cut)
    kept = len(body["jobs"])
    assert 0 < kept < len(full.structured_content["jobs"]), describe(cut)
    assert body["jobs"] == full.structured_content["jobs"][:kept], "the start of the list is kept"
    assert body["next_offset"] == kept and f"offset={kept}" in body["omitted"]["how"], describe(cut)
    # The next page, with the offset the note gave, goes on where the cut page stopped.
    rest = _call(stack, "triage-bot", transport, "list_jobs", {"depth": 3, "offset": kept})
    assert rest.structured_content["jobs"][0] == full.structured_content["jobs"][kept], describe(rest)
    # A log tail cut to the budget keeps its last line, and says so in the text too.
    log = _call(stack, "triage-bot", transport, "get_build_log",
                {"job": "api-server", "build": "lastFailedBuild", "max_bytes": 512})
    assert not log.is_error and "omitted" in log.structured_content, describe(log)
    assert "Finished: FAILURE\n<<<END UNTRUSTED" in log.structured_content["text"], describe(log)
    assert "for the rest:" in text_of(log), "a text-only client learns of the cut too"
    too_small = _call(stack, "triage-bot", transport, "get_job", {"job": "api-server", "max_bytes": 100})
    assert too_small.is_error and "512 to 65536" in text_of(too_small), describe(too_small)


def test_fields_narrow_an_answer_to_the_keys_asked_for(stack, transport):
    full = _call(stack, "triage-bot", transport, "get_job", {"job": "api-server"})
    narrow = _call(stack, "triage-bot", transport, "get_job",
                   {"job": "api-server", "fields": ["last_build", "last_failed_build", "recent_builds.result"]})
    assert not full.is_error and not narrow.is_error, describe(narrow)
    body = narrow.structured_content
    # Only what was asked for, plus the boundary's count of what it removed.
    assert set(body) == {"last_build", "last_failed_build", "recent_builds", "redactions"}, describe(narrow)
    assert body["last_build"] == full.structured_content["last_build"]
    assert body["recent_builds"] == [{"result": b["result"]} for b in full.structured_content["recent_builds"]]
    # The text a model reads is the same narrowed answer.
    assert json.loads(text_of(narrow)) == body
    assert len(text_of(narrow)) * 4 < len(text_of(full)), (text_of(narrow), text_of(full))
    # A misspelt key is not an error: the answer says what matched nothing and what there is.
    typo = _call(stack, "triage-bot", transport, "get_job", {"job": "api-server", "fields": ["last_bild"]})
    assert not typo.is_error, describe(typo)
    assert typo.structured_content["fields_unmatched"] == ["last_bild"], describe(typo)
    assert "last_build" in typo.structured_content["fields_available"], describe(typo)
    # A log view narrowed to its cursor is JSON, not an empty log.
    cursor = _call(stack, "triage-bot", transport, "get_build_log",
                   {"job": "api-server", "build": "lastFailedBuild", "fields": ["next_cursor", "summary"]})
    assert not cursor.is_error and "text" not in cursor.structured_content, describe(cursor)
    assert json.loads(text_of(cursor)) == cursor.structured_content, text_of(cursor)
    # Not a list of key paths: refused, with the fix.
    bad = _call(stack, "triage-bot", transport, "get_job", {"job": "api-server", "fields": "last_build"})
    assert bad.is_error and "e.g." in text_of(bad), describe(bad)
    # Writes take no `fields`: refused as an unknown argument, nothing triggered.
    write = _call(stack, "release-bot", transport, "trigger_build", {"job": "release/web", "fields": ["number"]})
    assert write.is_error and "fields" in text_of(write), describe(write)
