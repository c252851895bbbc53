"""Bytes, not speed: what answering on-call questions costs an agent's context (issue #14).

Run by `cargo xtask bench` (or by hand):

    JGATE_BIN=target/debug/jgate target/xtask-venv/bin/python tests/mcp/lean_bench.py \
        --mcp-jenkins target/xtask-mcp-jenkins-venv/bin/mcp-jenkins --out docs/lean-bench.md \
        --tools-out docs/lean.md

Two parts, one run:

1. Side by side with mcp-jenkins (PyPI, pinned in tests/mcp/mcp-jenkins-requirements.txt): the same
   twin (a generated scenario of 2,000 jobs in 20 folders), the same five questions, the bytes of
   each tool answer the agent receives (the text content of the MCP result, what a model reads).
   jgate's answers are checked for the facts the question needs; the ratio is reported against
   the goal of at most 1/5 of mcp-jenkins' bytes. mcp-jenkins talks to the twin directly with the
   admin's token (it sees everything); jgate's agent has status read everywhere.
2. Per jgate read tool on the demo scenario: bytes fetched from Jenkins (counted by a TCP relay in
   front of the twin, HTTP headers included) and bytes returned to the agent.

Bytes do not depend on the build mode: a debug jgate is fine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import pathlib
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import httpx2  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from jgate_stack import ADMIN_TOKEN, SERVE_RE, TWIN_RE, jgate_bin, run_cli, start_and_wait  # noqa: E402

TARGET = "team-07/checkout"
FOLDERS = 20
PER_FOLDER = 100
LOG_LINES = 3000
FAILING_TEST = "com.example.checkout.PaymentTest.capturesAuthorizedAmount"
FAILING_ERROR = "expected:<4200> but was:<0>"
COMMIT = "9c4e1f07b2d84a6e53f0c1a2b3d4e5f60718293a"
GOAL = 5.0
# The section of docs/benchmarks.md this script owns (replaced on every run; gateway_bench writes
# the rest of the file).
SECTION = "## Lean answers: jgate vs mcp-jenkins, bytes per question"


def toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string for this text


def scenario_2000() -> str:
    """2,000 jobs in 20 folders; TARGET has three builds, the last one failing a test."""
    out = ["[controller]", "quiet_period = 0", "start_time_ms = 1764547200000", ""]
    for f in range(FOLDERS):
        out += ["[[folders]]", f'path = "team-{f:02d}"', ""]
    log = "\n".join(
        f"[{i:05d}] [INFO] --- maven-surefire-plugin:3.2.5:test (default-test) @ checkout --- module {i % 17}"
        for i in range(1, LOG_LINES + 1)
    )
    log += f"\n[ERROR] Tests run: 214, Failures: 1, Errors: 0, Skipped: 0\n[ERROR] {FAILING_TEST}: {FAILING_ERROR}\nBuild step 'Invoke top-level Maven targets' marked build as failure"
    for f in range(FOLDERS):
        for j in range(PER_FOLDER):
            path = f"team-{f:02d}/svc-{j:03d}"
            if path == "team-07/svc-000":
                path = TARGET
            out += ["[[jobs]]", f'path = "{path}"', 'script = "mvn -B verify"']
            if path == TARGET:
                out += ["[[jobs.builds]]", 'result = "SUCCESS"', 'log = "ok"']
                out += ["[[jobs.builds]]", 'result = "SUCCESS"', 'log = "ok"']
                out += [
                    "[[jobs.builds]]", 'result = "FAILURE"', "duration_ms = 412000", f"log = {toml_str(log)}",
                    "[jobs.builds.tests]",
                    'passed = ["com.example.checkout.CartTest.addsItem", "com.example.checkout.CartTest.removesItem"]',
                    f'failed = [{{ name = "{FAILING_TEST}", error = "{FAILING_ERROR}" }}]',
                    "[[jobs.builds.changes]]", f'commit = "{COMMIT}"', 'author = "dana"',
                    'email = "dana@example.com"', 'message = "Capture payments asynchronously"',
                    'paths = ["src/main/java/com/example/checkout/Payments.java"]',
                ]
            elif j % 10 == 0:
                out += ["[[jobs.builds]]", 'result = "SUCCESS"', 'log = "ok"']
            out.append("")
    return "\n".join(out)


class Relay:
    """A TCP relay in front of the twin that counts the bytes the twin sends (what jgate fetches)."""

    def __init__(self, upstream_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.down = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            up = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, up, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(65536):
                if count:
                    with self.lock:
                        self.down += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def read(self) -> int:
        with self.lock:
            return self.down


class Setup:
    """A twin (with a metering relay), jgate serve with controller `prod`, one agent."""

    def __init__(self, binary: str, scenario: str, grants: list[list[str]]):
        self.binary = binary
        self.data_dir = pathlib.Path(tempfile.mkdtemp(prefix="jgate-lean-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("JGATE_")}
        env["JGATE_DATA_DIR"] = str(self.data_dir)
        self.env = env
        self.twin = self.server = None
        self.twin, m = start_and_wait(
            [binary, "twin", "serve", "--addr", "127.0.0.1:0", "--scenario", scenario,
             "--user", f"admin:admin:{ADMIN_TOKEN}"], TWIN_RE, env, "the twin")
        self.twin_url = m.group(1).rstrip("/")
        self.relay = Relay(int(self.twin_url.rsplit(":", 1)[1]))
        relay_url = f"http://127.0.0.1:{self.relay.port}"
        run_cli(binary, env | {"JENKINS_TOKEN": ADMIN_TOKEN}, [
            "controller", "add", "prod", "--url", relay_url, "--username", "admin",
            "--token-env", "JENKINS_TOKEN", "--allow-private", f"127.0.0.1:{self.relay.port}"])
        self.key = json.loads(run_cli(binary, env, ["--json", "agent", "create", "oncall"]).stdout)["key"]
        for g in grants:
            run_cli(binary, env, ["grant", "oncall", *g])
        self.server, m = start_and_wait([binary, "serve", "--addr", "127.0.0.1:0"], SERVE_RE, env, "`jgate serve`")
        self.mcp_url = m.group(2)

    def close(self) -> None:
        for p in (self.server, self.twin):
            if p is not None:
                p.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def text_of(result) -> str:
    return "\n".join(getattr(b, "text", "") for b in result.content)


def nbytes(s: str) -> int:
    return len(s.encode("utf-8"))


# (question, jgate tool, its arguments, the `fields` an agent that wants only this question's facts
# adds to them, or None where the whole answer is the facts)
QUESTIONS = [
    ("status of job X", "get_job", {"job": TARGET}, ["last_build", "last_successful_build", "last_failed_build"]),
    ("why did build N fail", "triage_build", {"job": TARGET, "build": 3}, ["tests.failing_tests"]),
    ("last 100 lines of the log", "get_build_log", {"job": TARGET, "build": 3, "lines": 100}, None),
    ("what changed in build N", "get_build", {"job": TARGET, "build": 3}, ["changes"]),
    ("list jobs", "list_jobs", {"depth": 2}, None),
]


def _has(needle: str):
    return lambda t: needle in t


# The facts each question needs, as checks on the text an agent receives (the same checks for
# both servers; the item count is read off each server's own listing).
def _json(t: str) -> dict:
    try:
        v = json.loads(t)
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


def _last_build_failed(t: str) -> bool:
    """The last build's result is FAILURE: said as a result, or (jgate's job summary) as the last
    failed build being the last build."""
    v = _json(t)
    return "FAILURE" in t or (v.get("last_build") == 3 and v.get("last_failed_build") == 3)


FACTS = {
    "status of job X": [
        ("last build #3", lambda t: '"number":3' in t or _json(t).get("last_build") == 3),
        ("its result FAILURE", _last_build_failed),
    ],
    "why did build N fail": [("the failing test", _has("capturesAuthorizedAmount")), ("its error", _has(FAILING_ERROR))],
    "last 100 lines of the log": [
        ("the last line", _has("Finished: FAILURE")),
        ("the failing test's line", _has(f"[ERROR] {FAILING_TEST}")),
        # Console line k is "[k-1]" (line 1 says who started it); the 100th from the end is 2907.
        ("line 100 from the end", _has(f"[{LOG_LINES - 94:05d}]")),
    ],
    "what changed in build N": [("the commit id", _has(COMMIT[:12])), ("its author", _has("dana"))],
    "list jobs": [(
        f"the number of jobs ({FOLDERS * PER_FOLDER:,})",
        # jgate: the listing's total (jobs and folders); mcp-jenkins: its distinct job URLs (it
        # lists each job twice, inside its folder and on its own).
        lambda t: '"total":2020' in t or len(set(re.findall(r'/job/team-\d\d/job/[^/"]+/', t))) == FOLDERS * PER_FOLDER,
    )],
}


def facts_ok(question: str, answer: str) -> tuple[bool, str]:
    """Whether an answer carries the facts the question needs: (all there, which / which missing)."""
    checks = FACTS[question]
    missing = [name for name, check in checks if not check(answer)]
    names = ", ".join(name for name, _ in checks)
    return (not missing, names if not missing else f"missing: {', '.join(missing)}")


async def jgate_calls(setup: Setup, calls: list[tuple[str, dict]]) -> list[tuple[str, int, int, bool]]:
    """(text, bytes returned, bytes fetched from the twin, is_error) per call, in order."""
    out = []
    headers = {"Authorization": f"Bearer {setup.key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60.0, read=300.0)) as http:
        async with Client(streamable_http_client(setup.mcp_url, http_client=http)) as c:
            for tool, args in calls:
                before = setup.relay.read()
                if tool.startswith("read_more:"):
                    r = await c.call_tool("read_more", {"what": tool.split(":", 1)[1], "args": args})
                else:
                    r = await c.call_tool(tool, args)
                await asyncio.sleep(0.05)  # let the relay's threads count the last bytes
                t = text_of(r)
                if os.environ.get("LEAN_BENCH_DUMP"):
                    print(f"--- jgate {tool} {args}: {nbytes(t)} bytes\n{t[:1500]}", file=sys.stderr)
                out.append((t, nbytes(t), setup.relay.read() - before, bool(r.is_error)))
    return out


async def mcp_jenkins_calls(exe: str, twin_url: str, home: str) -> dict[str, tuple[int, list[str], str]]:
    """The same questions asked of mcp-jenkins, with the tools it offers for them."""
    params = StdioServerParameters(
        command=exe,
        args=["--jenkins-url", twin_url, "--jenkins-username", "admin", "--jenkins-password", ADMIN_TOKEN],
        env={"PATH": "/usr/bin:/bin", "HOME": home},
        cwd=home,
    )
    results: dict[str, tuple[int, list[str], str]] = {}
    async with Client(params) as c:
        names = {t.name for t in (await c.list_tools()).tools}

        async def call(tool: str, args: dict) -> tuple[int, str]:
            if tool not in names:
                raise SystemExit(f"mcp-jenkins has no tool {tool}; it offers {sorted(names)}")
            r = await c.call_tool(tool, args)
            t = text_of(r)
            if os.environ.get("LEAN_BENCH_DUMP"):
                print(f"--- mcp-jenkins {tool} {args}: {nbytes(t)} bytes\n{t[:1500]}", file=sys.stderr)
            if r.is_error:
                raise SystemExit(f"mcp-jenkins {tool} {args} failed: {t[:500]}")
            return nbytes(t), t

        async def ask(question: str, *calls: tuple[str, dict]) -> None:
            total, texts = 0, []
            for tool, args in calls:
                n, t = await call(tool, args)
                total += n
                texts.append(t)
            results[question] = (total, [tool for tool, _ in calls], "\n".join(texts))

        await ask("status of job X", ("get_item", {"fullname": TARGET}), ("get_build", {"fullname": TARGET}))
        await ask("why did build N fail", ("get_build", {"fullname": TARGET, "number": 3}),
                  ("get_build_test_failures", {"fullname": TARGET, "number": 3}))
        await ask("last 100 lines of the log", ("get_build_console_output", {"fullname": TARGET, "number": 3}))
        await ask("what changed in build N", ("get_build", {"fullname": TARGET, "number": 3}))
        await ask("list jobs", ("get_all_items", {}))
    return results


def machine() -> str:
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} CPU(s){mem}, {platform.machine()}"


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                             cwd=HERE, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=HERE).stdout
        return sha + (" (with uncommitted changes)" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def side_by_side(binary: str, exe: str) -> tuple[str, list[str]]:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="lean-bench-"))
    scenario = tmp / "jobs2000.toml"
    scenario.write_text(scenario_2000())
    setup = Setup(binary, str(scenario), [["status", "read"]])
    calls = [(tool, args) for _, tool, args, _ in QUESTIONS]
    narrowed = [(tool, args | {"fields": fields}) for _, tool, args, fields in QUESTIONS if fields]
    try:
        jg = asyncio.run(jgate_calls(setup, calls + narrowed))
        mj = asyncio.run(mcp_jenkins_calls(exe, setup.twin_url, str(tmp)))
    finally:
        setup.close()
        shutil.rmtree(tmp, ignore_errors=True)
    whole, rest = jg[: len(calls)], iter(jg[len(calls):])
    rows, failures = [], []
    total_j = total_best = 0
    for (question, tool, args, fields), (text, returned, _, err) in zip(QUESTIONS, whole):
        ok, facts = facts_ok(question, text)
        if err or not ok:
            failures.append(f"{question}: {'error: ' + text[:300] if err else facts}")
        # The leanest jgate answer that carries the facts: the whole one, or the one narrowed
        # to the question's `fields` (checked the same way).
        best, narrow_cell = returned, "—"
        if fields:
            n_text, n_returned, _, n_err = next(rest)
            n_ok, n_facts = facts_ok(question, n_text)
            if n_err or not n_ok:
                failures.append(f"{question} with fields {fields}: {'error: ' + n_text[:300] if n_err else n_facts}")
            else:
                best = min(best, n_returned)
            narrow_cell = f"{n_returned:,} (`fields` {json.dumps(fields, separators=(',', ':'))})"
        total_j += returned
        total_best += best
        theirs, their_tools, their_text = mj[question]
        their_ok, their_facts = facts_ok(question, their_text)
        ratio = theirs / best if best else float("inf")
        if not (ok and not err):
            met = "**not met** (jgate lacks facts)"
        elif not their_ok:
            met = "n/a: mcp-jenkins' answer lacks the facts"
        else:
            met = "met" if ratio >= GOAL else "**not met**"
        rows.append(
            f"| {question} | `{tool}` {json.dumps(args, separators=(',', ':'))} | {returned:,} | {narrow_cell} | "
            f"{' + '.join(f'`{t}`' for t in their_tools)} | {theirs:,} | 1/{theirs / max(returned, 1):.1f} | "
            f"1/{ratio:.1f} | {facts} | {'yes' if their_ok else their_facts} | {met} |"
        )
    total_m = sum(v[0] for v in mj.values())
    lines = [
        SECTION,
        "",
        "<!-- Written by tests/mcp/lean_bench.py (run by `cargo xtask bench`); rerun to refresh. -->",
        "",
        "The bytes an agent receives (the text content of the MCP tool result, what a model reads) for five",
        "on-call questions, asked of jgate and of **mcp-jenkins** "
        f"({pinned_version()}, PyPI, pinned in tests/mcp/mcp-jenkins-requirements.txt) pointed at the same twin:",
        f"{FOLDERS * PER_FOLDER:,} jobs in {FOLDERS} folders; `{TARGET}` has three builds, #3 failed one test",
        f"after a {LOG_LINES:,}-line console. jgate's agent has status read everywhere; each question is asked",
        "of jgate twice where it has a larger answer: with the defaults (budget 16 KiB, the whole answer), and",
        "narrowed with `fields` to the keys the question needs (what an agent that wants one fact asks).",
        "mcp-jenkins is given the admin's token directly. Each of jgate's answers must carry the facts the",
        "question needs (checked; the run fails otherwise); mcp-jenkins' answers are checked the same way and",
        "the table says when they lack them. Goal (issue #14): jgate ≤ 1/5 of mcp-jenkins' bytes for the",
        "same facts, judged on jgate's leanest answer that carries them.",
        "",
        f"- **Date:** {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- **Commit:** {commit()}",
        f"- **Machine:** {machine()}",
        "",
        "| Question | jgate call | jgate bytes (whole answer) | jgate bytes, narrowed | mcp-jenkins tools | mcp-jenkins bytes "
        "| whole / mcp-jenkins | leanest / mcp-jenkins | facts (checked in jgate's answers) | in mcp-jenkins' answer? | goal ≤ 1/5 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        f"| **all five** | | {total_j:,} | {total_best:,} (leanest) | | {total_m:,} | 1/{total_m / max(total_j, 1):.1f} "
        f"| 1/{total_m / max(total_best, 1):.1f} | | | |",
        "",
        "- mcp-jenkins needs two calls where one tool of its own does not answer the question (a job's",
        "  status: the item, then its last build; a failure: the build, then its test results); both are",
        "  counted. jgate answers each with one call.",
        "- \"list jobs\": mcp-jenkins' `get_all_items` lists every job twice (inside its folder and on its",
        "  own); its count is checked as distinct job URLs. jgate's `list_jobs` pages (100 entries by",
        "  default) and says the total; the rest is `offset` away.",
        "- \"what changed\": no mcp-jenkins tool returns a build's change set, so its `get_build` answer",
        "  lacks the commit; the row has no ratio to meet.",
        "- Whole answers to single-object questions (a job's status, why a build failed) carry more than",
        "  mcp-jenkins' (last success and failure, health, recent builds; a triage's log excerpts around",
        "  the error, changes and tests). Narrowed with `fields` they carry the question's facts alone.",
        "  \"Why did build N fail\" cannot reach 1/5 in JSON: the facts themselves (a 57-character test",
        "  name and its error) are most of the bytes that 1/5 of mcp-jenkins' answer allows, and every",
        "  jgate answer also says how many secrets the boundary removed (`redactions`).",
        "- \"last 100 lines\": mcp-jenkins' `get_build_console_output` returns the whole console;",
        "  jgate's `get_build_log` tail returns the last 100 lines, numbered and fenced as untrusted.",
    ]
    if failures:
        lines += ["", "**Facts missing from jgate's answers:**", *[f"- {f}" for f in failures]]
    return "\n".join(lines) + "\n", failures


def pinned_version() -> str:
    req = (HERE / "mcp-jenkins-requirements.txt").read_text()
    for line in req.splitlines():
        if line.startswith("mcp-jenkins=="):
            return line.replace("==", " ")
    return "mcp-jenkins"


DEMO_CALLS = [
    ("list_jobs", {}),
    ("list_jobs", {"depth": 3}),
    ("get_job", {"job": "team-api/api-server"}),
    ("get_build", {"job": "team-api/api-server", "build": "lastFailedBuild"}),
    ("get_build_log", {"job": "team-api/api-server", "build": "lastFailedBuild"}),
    ("get_build_log", {"job": "team-api/api-server", "build": "lastFailedBuild", "mode": "grep", "pattern": "FAIL|ERROR"}),
    ("get_test_report", {"job": "team-api/api-server", "build": "lastFailedBuild"}),
    ("get_pipeline_run", {"job": "release/deploy-production", "build": "lastFailedBuild"}),
    ("triage_build", {"job": "team-api/api-server"}),
    ("wait_for_build", {"job": "team-api/api-server", "build": 2}),
    ("get_job_config", {"job": "team-api/api-server"}),
    ("list_nodes", {}),
    ("read_more:get_queue", {}),
    ("read_more:list_views", {}),
    ("read_more:get_system_info", {}),
]


def per_tool(binary: str) -> str:
    grants = [[g, "read"] for g in ("status", "config", "nodes", "system")]
    setup = Setup(binary, "demo", grants)
    try:
        res = asyncio.run(jgate_calls(setup, DEMO_CALLS))
    finally:
        setup.close()
    rows = []
    for (tool, args), (text, returned, fetched, err) in zip(DEMO_CALLS, res):
        name = f"`read_more` → `{tool.split(':', 1)[1]}`" if tool.startswith("read_more:") else f"`{tool}`"
        shown = json.dumps(args, separators=(",", ":")).replace("|", "\\|")  # a table cell
        rows.append(f"| {name} | {shown} | {fetched:,} | {returned:,} | {'error: ' + text[:80] if err else ''} |")
    return "\n".join([
        "## Bytes per tool on the demo scenario",
        "",
        "<!-- Written by tests/mcp/lean_bench.py (run by `cargo xtask bench`); rerun to refresh. -->",
        "",
        "Each read tool called once, in this order, on `jgate twin serve --scenario demo` (an agent with",
        "read on status, config, nodes and system). *Fetched*: bytes the twin sent to jgate for the call",
        "(HTTP headers included, counted by a TCP relay in front of the twin; jgate's cache of finished",
        "builds means a later call may fetch less). *Returned*: bytes of the tool result's text",
        "content, what the agent's model reads (the structured content carries the same JSON). All",
        "with the default budget (16 KiB). A log view's first read of a console streams it (Jenkins",
        "offers no cheap way to learn a log's size); a later tail of a finished build's log reads only",
        "its end (docs/benchmarks.md, Tail).",
        "",
        f"- **Date:** {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit()}",
        "",
        "| tool | arguments | fetched from Jenkins | returned to the agent | note |",
        "|---|---|---|---|---|",
        *rows,
    ]) + "\n"


LEAN_HEAD = """# Lean answers

What an answer costs an agent is its bytes: every one lands in a context window. jgate keeps them
small by design (issue #14):

- **Compact answers.** Operations return the facts a question needs, not Jenkins' objects: a job's
  health and last builds, a build's result, causes, changes and test counts, a triage's failing
  stage, test and log excerpt. Text answers are compact JSON.
- **A budget on every read** (`max_bytes`, default 16 KiB, 512 to 64 KiB; docs/tools.md): over it,
  the answer is cut structurally (longest lists from the end, long texts with a marker, console
  excerpts by whole lines) and `omitted` says what was left out and how to get it (the next
  `offset`, a narrower log view, a larger budget). One implementation for every tool
  (crates/gate/src/budget.rs), applied in the call path after the sanitizer.
- **Only the keys asked for.** Every read also takes `fields` (dotted for nested keys:
  `last_build.result`, `builds.number`): "did job X's last build fail?" is `get_job` with
  `fields: ["last_build", "last_failed_build"]`, about 60 bytes. Applied in the call path after
  the sanitizer, like the budget (crates/gate/src/fields.rs); the audit's facts come from the whole
  answer.
- **No over-fetch.** The wire client (crates/jenkins/src/client.rs) never asks for `depth=N`:
  listings, jobs, the queue, nodes, test reports (counts and each case's status and error, not
  stack traces or captured output) and the other structured reads name their fields with
  `tree=`; a build's own JSON is read at depth 0 (its actions are what `get_build` reads: causes,
  parameters, test counts, changes). Console logs are read as streams within bounds, and a tail
  of a finished log jgate has read before fetches only its end; finished builds' answers are
  cached.
- **Few tools.** Less common reads (the queue, views, the Jenkins version and plugins) are offered
  through one `read_more` tool, so an agent with every grant sees at most 30 tools.

Side by side with mcp-jenkins: docs/benchmarks.md, section "Lean answers".

"""


def put_section(path: pathlib.Path, section: str) -> None:
    """Puts `section` (starting with SECTION) into the Markdown file at `path`: in place of the
    previous run's, else at the end."""
    text = path.read_text() if path.exists() else ""
    lines = text.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.rstrip("\n") == SECTION), None)
    if start is None:
        path.write_text(text.rstrip("\n") + ("\n\n" if text else "") + section)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    rest = "".join(lines[end:])
    path.write_text("".join(lines[:start]) + section + ("\n" + rest if rest else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mcp-jenkins", required=True, help="the mcp-jenkins executable (its own venv)")
    ap.add_argument("--out", default=str(HERE.parent.parent / "docs/benchmarks.md"),
                    help="the report's section is put into this file (replacing its previous run)")
    ap.add_argument("--tools-out", default=str(HERE.parent.parent / "docs/lean.md"))
    a = ap.parse_args()
    binary = jgate_bin()
    report, failures = side_by_side(binary, a.mcp_jenkins)
    put_section(pathlib.Path(a.out), report)
    print(report)
    tools = per_tool(binary)
    pathlib.Path(a.tools_out).write_text(LEAN_HEAD + tools)
    print(tools)
    if failures:
        print("lean_bench: jgate's answers lack facts:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
