"""Start a complete jgate setup from the outside, the way an administrator would.

A temporary data directory (master key + SQLite database, or the PostgreSQL database given as
`db_url`), the Jenkins twin, the controller `prod`, two agents with grants, and `jgate serve`. Used by conftest.py (pytest) and by
run_conformance.py (the official conformance suite). Only the jgate CLI is used: nothing here
reaches into jgate's internals.
"""

from __future__ import annotations

import json
import os
import pathlib
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

HERE = pathlib.Path(__file__).resolve().parent
SCENARIO = HERE / "scenario.toml"

ADMIN_TOKEN = "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
CONTROLLER = "prod"
STARTUP_TIMEOUT = 30.0

TWIN_RE = re.compile(r"twin listening on (http://\S+)")
SERVE_RE = re.compile(r"jgate serving on (http://\S+) \(MCP endpoint (http://\S+)\)")

# The grants of each agent, as `jgate grant AGENT ...` arguments.
GRANTS = {
    "triage-bot": [["status", "read"]],
    "release-bot": [
        ["build", "full", "--jobs", "release/**", "--param", "ENV=staging"],
        ["status", "read", "--jobs", "release/**"],
    ],
}


class SetupError(RuntimeError):
    pass


def jgate_bin() -> str:
    binary = os.environ.get("JGATE_BIN")
    if not binary:
        raise SetupError(
            "JGATE_BIN is not set: point it at the jgate binary, e.g. "
            "JGATE_BIN=/work/main/target/debug/jgate (build it with `cargo build -p jgate`)"
        )
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise SetupError(f"JGATE_BIN={binary!r} does not exist or is not executable")
    return binary


def _pump(stream, lines: "queue.Queue[str | None]", sink: list[str]) -> None:
    for raw in iter(stream.readline, ""):
        sink.append(raw)
        lines.put(raw)
    lines.put(None)


@dataclass
class Proc:
    """A long-running child whose merged output is captured."""

    cmd: list[str]
    process: subprocess.Popen
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.output)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_and_wait(cmd: list[str], pattern: re.Pattern, env: dict[str, str], what: str) -> tuple[Proc, re.Match]:
    """Start cmd and wait for a line matching pattern; fail loudly with the output otherwise."""
    process = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        text=True, bufsize=1, env=env,
    )
    proc = Proc(cmd, process)
    lines: "queue.Queue[str | None]" = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines, proc.output), daemon=True).start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        line = None
        if remaining > 0:
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                line = None
        if line is None:
            proc.stop()
            raise SetupError(
                f"{what} did not print a line matching {pattern.pattern!r} within {STARTUP_TIMEOUT:.0f}s "
                f"(exit code {process.returncode}).\ncommand: {' '.join(cmd)}\noutput:\n{proc.text()[-4000:] or '<nothing>'}"
            )
        m = pattern.search(line)
        if m:
            return proc, m


@dataclass
class Stack:
    binary: str
    data_dir: pathlib.Path
    env: dict[str, str]
    twin: Proc
    twin_url: str
    server: Proc
    base_url: str  # http://127.0.0.1:PORT (no trailing slash)
    mcp_url: str  # http://127.0.0.1:PORT/mcp
    keys: dict[str, str]  # agent -> key

    def cli(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return run_cli(self.binary, self.env | (env or {}), list(args), check=check)

    def audit(self, **filters: str) -> list[dict]:
        """The audit log as records (`jgate --json audit`), optionally filtered with --agent etc."""
        args = ["--json", "audit"]
        for k, v in filters.items():
            args += [f"--{k.replace('_', '-')}", v]
        out = self.cli(*args).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def stdio_env(self, agent: str) -> dict[str, str]:
        """The environment `jgate mcp` needs for this agent (nothing else is inherited)."""
        env = {"JGATE_DATA_DIR": str(self.data_dir), "JGATE_AGENT_KEY": self.keys[agent]}
        if "JGATE_DB" in self.env:
            env["JGATE_DB"] = self.env["JGATE_DB"]
        return env

    def close(self) -> None:
        self.server.stop()
        self.twin.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def run_cli(binary: str, env: dict[str, str], args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    cp = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if check and cp.returncode != 0:
        raise SetupError(
            f"`jgate {' '.join(args)}` failed with exit code {cp.returncode}\nstdout:\n{cp.stdout}\nstderr:\n{cp.stderr}"
        )
    return cp


def start_stack(db_url: str | None = None) -> Stack:
    """The whole setup; `db_url` (e.g. postgres://...) is the store of every jgate command in it
    (JGATE_DB), else a SQLite file in the data directory."""
    binary = jgate_bin()
    if not SCENARIO.is_file():
        raise SetupError(f"twin scenario missing: {SCENARIO}")
    data_dir = pathlib.Path(tempfile.mkdtemp(prefix="jgate-mcp-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JGATE_")}
    env["JGATE_DATA_DIR"] = str(data_dir)
    if db_url:
        env["JGATE_DB"] = db_url
    twin = server = None
    try:
        twin, m = start_and_wait(
            [binary, "twin", "serve", "--addr", "127.0.0.1:0", "--scenario", str(SCENARIO),
             "--user", f"admin:admin:{ADMIN_TOKEN}"],
            TWIN_RE, env, "the twin",
        )
        twin_url = m.group(1).rstrip("/")
        port = twin_url.rsplit(":", 1)[1]
        run_cli(binary, env | {"JENKINS_TOKEN": ADMIN_TOKEN}, [
            "controller", "add", CONTROLLER, "--url", twin_url, "--username", "admin",
            "--token-env", "JENKINS_TOKEN", "--allow-private", f"127.0.0.1:{port}",
        ])
        keys = {}
        for agent, grants in GRANTS.items():
            created = json.loads(run_cli(binary, env, ["--json", "agent", "create", agent]).stdout)
            keys[agent] = created["key"]
            for g in grants:
                run_cli(binary, env, ["grant", agent, *g])
        server, m = start_and_wait(
            [binary, "serve", "--addr", "127.0.0.1:0"], SERVE_RE, env, "`jgate serve`",
        )
        base_url, mcp_url = m.group(1).rstrip("/"), m.group(2)
        return Stack(binary, data_dir, env, twin, twin_url, server, base_url, mcp_url, keys)
    except BaseException:
        for p in (server, twin):
            if p is not None:
                p.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
