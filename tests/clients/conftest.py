"""Start the jgate Jenkins twin once per session and expose it to unmodified PyPI clients.

Run with:
    JGATE_BIN=/work/main/target/debug/jgate /tmp/pyclients/bin/pytest -q tests/clients

With ``JGATE_CLIENTS_VIA=proxy`` the same suites run a second time *through jgate's governed
proxy* (issue #11): ``jgate serve`` serves the twin as controller ``prod``, an agent holds every
group at ``full`` on every job, and the clients get ``http://<jgate>/jenkins/prod/`` with the
agent's name and key as the administrator's credentials. The test files do not change. Skipped in
that run, each with its reason (``PROXY_SKIPS``): tests about Jenkins' own users and password
sessions, and the proxy's known gaps (docs/proxy.md). ``JGATE_PROXY_AUDIT_DUMP=FILE`` writes the
agent's audit records (JSON lines) there at the end, to see which requests were refused.
"""

import itertools
import os
import pathlib
import queue
import re
import subprocess
import threading
import time
import uuid

import pytest

HERE = pathlib.Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
SCENARIO = HERE / "scenario.toml"

ADMIN_USER = "admin"
ADMIN_PASSWORD = "adminpass"
ADMIN_TOKEN = "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

# Users defined in scenario.toml.
READER = ("reader", "readerpass", "11bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
NOBODY = ("nobody", "nobodypass", "11cccccccccccccccccccccccccccccccc")

LISTEN_RE = re.compile(r"twin listening on (http://\S+)")
SERVE_RE = re.compile(r"jgate serving on (http://\S+?) ")
STARTUP_TIMEOUT = 30.0

VIA = os.environ.get("JGATE_CLIENTS_VIA", "direct")
# Named as the twin's administrator, so tests that check who they are (`me["id"] == "admin"`) hold.
PROXY_AGENT = "admin"

# Tests that exercise Jenkins' own users (password sessions, crumbs, the reader/nobody accounts of
# scenario.toml): through the proxy there is one identity, the agent, so they test the twin, not
# the proxy, and run only in the direct run. Anything not listed here must pass through the proxy.
_USERS = "about the twin's Jenkins users (reader/nobody accounts), not the proxy: runs in the direct run"
_PASSWORD = "password login, crumbs and sessions are Jenkins' own; agents authenticate with their key"
PROXY_SKIPS = {
    "test_python_jenkins.py::test_get_version_on_fresh_client_is_anonymous": _USERS,
    "test_python_jenkins.py::test_crumb_is_bound_to_the_session": _PASSWORD,
    "test_python_jenkins.py::test_reader_can_read_but_not_create": _USERS,
    "test_python_jenkins.py::test_nobody_cannot_see_jobs": _USERS,
    "test_python_jenkins.py::test_password_auth_uses_crumb_and_session": _PASSWORD,
    "test_python_jenkins.py::test_password_auth_without_crumb_is_403": _PASSWORD,
    "test_jenkinsapi.py::test_reader_can_read_but_not_create": _USERS,
    "test_jenkinsapi.py::test_nobody_cannot_see_jobs": _USERS,
    "test_jenkinsapi.py::test_password_auth_with_crumb": _PASSWORD,
    "test_api4jenkins.py::test_reader_can_read_but_not_create": _USERS,
    "test_api4jenkins.py::test_nobody_cannot_see_jobs": _USERS,
    "test_api4jenkins.py::test_password_auth_with_crumb_and_session": _PASSWORD,
    "test_python_jenkins.py::test_cancel_queued_item_and_stop_running_builds": _USERS,
}
# Where jgate deliberately differs from Jenkins (docs/proxy.md).
_SERIALISED = ("jgate never lets Jenkins merge identical triggers (each trigger is its own build: the "
               "next waits until the previous one left the queue), so Jenkins' merge is not reproduced")
_SANITIZER = ("the sanitizer rewrites bracket look-alikes in every string Jenkins sends (» → >>, so no "
              "answer can forge an untrusted-content fence): fullDisplayName of an item in a folder differs")
PROXY_SKIPS.update({
    "test_python_jenkins.py::test_build_inside_folder": _SANITIZER,
    "test_python_jenkins.py::test_non_concurrent_job_queues_once": _SERIALISED,
    "test_python_jenkins.py::test_identical_parameters_merge_with_303": _SERIALISED,
    "test_jenkinsapi.py::test_quiet_down_holds_builds":
        "quietDown is never forwarded (stopping Jenkins is not reachable through jgate)",
    "test_api4jenkins.py::test_identical_parameters_merge_with_303": _SERIALISED,
})
# The Jenkins client suites; the others (about jgate itself) are not run a second time.
CLIENT_SUITES = ("test_python_jenkins.py", "test_jenkinsapi.py", "test_api4jenkins.py")


def pytest_report_header(config):
    if VIA == "proxy":
        return "clients run THROUGH jgate's Jenkins proxy (JGATE_CLIENTS_VIA=proxy)"
    return None


def pytest_collection_modifyitems(config, items):
    if VIA != "proxy":
        return
    for item in items:
        file = pathlib.Path(str(item.fspath)).name
        if file not in CLIENT_SUITES:
            item.add_marker(pytest.mark.skip(reason=f"{file} is not a client suite: runs in the direct run only"))
            continue
        reason = PROXY_SKIPS.get(f"{file}::{item.originalname}")
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"through the proxy: {reason}"))


def _reader_thread(stream, lines: "queue.Queue[str | None]", sink: list):
    for raw in iter(stream.readline, ""):
        sink.append(raw)
        lines.put(raw)
    lines.put(None)


@pytest.fixture(scope="session")
def twin():
    """The running twin: a dict with base_url (ending in '/'), process and captured output."""
    binary = os.environ.get("JGATE_BIN")
    if not binary:
        pytest.fail(
            "JGATE_BIN is not set: point it at the jgate binary, e.g. "
            "JGATE_BIN=/work/main/target/debug/jgate (build it with `cargo build -p jgate`)",
            pytrace=False,
        )
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.fail(f"JGATE_BIN={binary!r} does not exist or is not executable", pytrace=False)
    if not SCENARIO.is_file():
        pytest.fail(f"scenario file missing: {SCENARIO}", pytrace=False)

    cmd = [
        binary, "twin", "serve",
        "--addr", "127.0.0.1:0",
        "--scenario", str(SCENARIO),
        "--user", f"{ADMIN_USER}:{ADMIN_PASSWORD}:{ADMIN_TOKEN}",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    output: list[str] = []
    lines: "queue.Queue[str | None]" = queue.Queue()
    t = threading.Thread(target=_reader_thread, args=(proc.stdout, lines, output), daemon=True)
    t.start()

    base_url = None
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while base_url is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:  # EOF: the process exited
            break
        m = LISTEN_RE.search(line)
        if m:
            base_url = m.group(1)

    if base_url is None:
        proc.kill()
        proc.wait(timeout=10)
        shown = "".join(output)[-4000:] or "<nothing>"
        pytest.fail(
            f"twin did not print 'twin listening on http://ADDR' within {STARTUP_TIMEOUT:.0f}s "
            f"(exit code {proc.returncode}).\ncommand: {' '.join(cmd)}\noutput:\n{shown}",
            pytrace=False,
        )

    if not base_url.endswith("/"):
        base_url += "/"
    info = {"base_url": base_url, "process": proc, "output": output}
    yield info

    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _start(cmd, env, pattern, what):
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    output: list[str] = []
    lines: "queue.Queue[str | None]" = queue.Queue()
    threading.Thread(target=_reader_thread, args=(proc.stdout, lines, output), daemon=True).start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(remaining, 0.01)) if remaining > 0 else None
        except queue.Empty:
            line = None
        if line is None:
            proc.kill()
            proc.wait(timeout=10)
            pytest.fail(f"{what} did not start:\n{''.join(output)[-4000:]}", pytrace=False)
        m = pattern.search(line)
        if m:
            return proc, m.group(1)


@pytest.fixture(scope="session")
def proxy(twin, tmp_path_factory):
    """jgate serve in front of the twin (only with JGATE_CLIENTS_VIA=proxy): the proxy's Jenkins URL
    for controller `prod` and the key of an agent granted every group at `full` on every job."""
    if VIA != "proxy":
        yield None
        return
    binary = os.environ["JGATE_BIN"]
    tmp = tmp_path_factory.mktemp("jgate")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp), "JGATE_DATA_DIR": str(tmp / "data"),
           "USER": "tester", "NO_COLOR": "1"}
    (tmp / "token").write_text(ADMIN_TOKEN)

    def jg(*args):
        cp = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=120)
        if cp.returncode != 0:
            pytest.fail(f"jgate {' '.join(args)}:\n{cp.stdout}{cp.stderr}", pytrace=False)
        return cp.stdout

    twin_url = twin["base_url"]
    port = twin_url.rstrip("/").rsplit(":", 1)[1]
    jg("controller", "add", "prod", "--url", twin_url, "--username", ADMIN_USER, "--token-file", str(tmp / "token"),
       "--allow-private", f"127.0.0.1:{port}")
    m = re.search(r"jgate_[A-Za-z0-9_-]{20,}", jg("agent", "create", PROXY_AGENT))
    if not m:
        pytest.fail("jgate agent create printed no key", pytrace=False)
    key = m.group(0)
    for group in ["status", "build", "config", "jobs", "nodes", "system"]:
        jg("grant", PROXY_AGENT, group, "full")
    proc, addr = _start([binary, "serve", "--addr", "127.0.0.1:0"], env, SERVE_RE, "jgate serve")
    yield {"url": f"{addr}/jenkins/prod/", "agent": PROXY_AGENT, "key": key, "jg": jg}
    dump = os.environ.get("JGATE_PROXY_AUDIT_DUMP")
    if dump:  # for finding the proxy's gaps: every audited request of the run, as JSON
        pathlib.Path(dump).write_text(jg("audit", "--agent", PROXY_AGENT, "--json"))
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def base_url(twin, proxy) -> str:
    """Base URL the clients use, with a trailing slash: the twin's (``http://127.0.0.1:PORT/``), or
    the proxy's (``http://127.0.0.1:PORT/jenkins/prod/``) with JGATE_CLIENTS_VIA=proxy."""
    return proxy["url"] if proxy else twin["base_url"]


@pytest.fixture(scope="session")
def admin(proxy):
    """(user, password, api token) of the administrator passed with --user; through the proxy the
    agent's name and key (the key stands for both: agents have no password)."""
    if proxy:
        return (proxy["agent"], proxy["key"], proxy["key"])
    return (ADMIN_USER, ADMIN_PASSWORD, ADMIN_TOKEN)


@pytest.fixture(scope="session")
def reader():
    return READER


@pytest.fixture(scope="session")
def nobody():
    return NOBODY


_counter = itertools.count(1)


@pytest.fixture
def unique(request):
    """unique('job') -> a job name unique to this test, e.g. 'pj-job-7-3fa2c1'."""
    module = request.module.__name__.split(".")[-1]
    prefix = {"test_python_jenkins": "pj", "test_jenkinsapi": "ja", "test_api4jenkins": "a4j"}.get(module, "t")

    def make(stem: str = "job") -> str:
        return f"{prefix}-{stem}-{next(_counter)}-{uuid.uuid4().hex[:6]}"

    return make


def config(name: str) -> str:
    """Text of tests/clients/configs/<name>.xml."""
    return (CONFIGS / f"{name}.xml").read_text(encoding="utf-8")


def view_config(name: str) -> str:
    return config("listview").replace("<name>placeholder</name>", f"<name>{name}</name>")


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    """Poll predicate() until it returns a truthy value; return that value or fail."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # keep polling; report the last error on timeout
            last_exc = exc
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            if last_exc is not None:
                msg += f" (last error: {last_exc!r})"
            pytest.fail(msg)
        time.sleep(interval)


@pytest.fixture
def cleanup():
    """cleanup(fn) registers fn to run after the test, even when it failed (errors are ignored).
    Used to stop 30 s builds so that a failing test does not starve the next ones of executors."""
    fns = []
    yield fns.append
    for fn in reversed(fns):
        try:
            fn()
        except Exception:
            pass
