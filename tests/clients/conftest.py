"""Start the jgate Jenkins twin once per session and expose it to unmodified PyPI clients.

Run with:
    JGATE_BIN=/work/main/target/debug/jgate /tmp/pyclients/bin/pytest -q tests/clients
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
STARTUP_TIMEOUT = 30.0


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


@pytest.fixture(scope="session")
def base_url(twin) -> str:
    """Base URL of the twin, with a trailing slash (``http://127.0.0.1:PORT/``)."""
    return twin["base_url"]


@pytest.fixture(scope="session")
def admin():
    """(user, password, api token) of the administrator passed with --user."""
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
