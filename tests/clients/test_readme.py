"""README.md is literally true: every command in its shell and Python blocks runs as shown.

The README's fenced ``sh`` and ``python`` blocks are extracted and run, in order, in a fresh data
directory with ``jgate`` on PATH (the binary under test): the twin exactly as the README starts
it, the python-jenkins snippet against it, the administration session, ``jgate serve`` and
``jgate mcp``. Two substitutions only, both stated in the failure output: the binary under test
stands for ``cargo run --release --`` (same program, no second build), and when port 8080 or 8765
is taken on this machine another free port stands for it.

Every command must be known to this test: a new README command fails it until it is either run
here or listed in SKIPPED with the reason.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

# Commands not run here, each with the reason.
SKIPPED = {
    "cargo xtask test": "this is the command that runs this test",
}


def fenced_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def commands(block: str) -> list[str]:
    """Shell lines with continuations joined and comments dropped (as the shell reads them)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        m = re.search(r"(^|\s)#(\s|$)", line)
        raw = (line[: m.start()] if m else line).strip()
        if raw:
            out.append(raw)
    return out


def free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


def wait_for(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answers: up (the twin's root may ask for a login)
        except OSError as e:
            last = e
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout:.0f}s: {last}")


class Session:
    def __init__(self, tmp: pathlib.Path, binary: str):
        self.bin_dir = tmp / "bin"
        self.bin_dir.mkdir()
        (self.bin_dir / "jgate").symlink_to(binary)
        self.work = tmp / "work"
        self.work.mkdir()
        self.env = {
            "PATH": f"{self.bin_dir}:/usr/bin:/bin",
            "HOME": str(tmp),
            "JGATE_DATA_DIR": str(tmp / "data"),
            "USER": "readme",
            "NO_COLOR": "1",
        }
        self.ports = {8080: free_port(8080), 8765: free_port(8765)}
        self.background: list[subprocess.Popen] = []
        self.log: list[str] = []
        self.keys: dict[str, str] = {}

    def substitute(self, command: str) -> str:
        command = re.sub(r"^cargo run --release --(?= )", "jgate", command)
        for shown, real in self.ports.items():
            command = command.replace(f"127.0.0.1:{shown}", f"127.0.0.1:{real}")
        return command

    def run(self, shown: str, stdin: str | None = None, timeout: float = 120) -> str:
        command = self.substitute(shown)
        cp = subprocess.run(
            ["bash", "-c", command], cwd=self.work, env=self.env, input=stdin,
            capture_output=True, text=True, timeout=timeout,
        )
        self.log.append(f"$ {shown}\n  (ran: {command})\n  exit {cp.returncode}\n{cp.stdout}{cp.stderr}")
        assert cp.returncode == 0, "README command failed:\n" + self.log[-1]
        return cp.stdout

    def start(self, shown: str, env: dict[str, str] | None = None, stdin=None) -> subprocess.Popen:
        command = self.substitute(shown)
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], cwd=self.work, env={**self.env, **(env or {})},
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.background.append(proc)
        self.log.append(f"$ {shown} &\n  (ran: {command})")
        return proc

    def stop_all(self) -> None:
        for proc in self.background:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def test_every_readme_command_runs_as_shown(tmp_path):
    binary = os.environ.get("JGATE_BIN")
    if not binary:
        pytest.fail("JGATE_BIN is not set", pytrace=False)
    text = README.read_text()
    shell = [c for block in fenced_blocks(text, "sh") for c in commands(block)]
    python = fenced_blocks(text, "python")
    s = Session(tmp_path, os.path.abspath(binary))
    ran: set[str] = set()
    try:
        # Quick start.
        demo = "cargo run --release -- demo"
        assert demo in shell, "the README no longer shows the demo command"
        out = s.run(demo, timeout=300)
        assert "verif" in out.lower(), out[-2000:]
        ran.add(demo)

        # The twin, then the Python snippet against it.
        twin = next(c for c in shell if c.startswith("cargo run --release -- twin serve"))
        s.start(twin)
        wait_for(f"http://127.0.0.1:{s.ports[8080]}/login")
        ran.add(twin)
        assert python, "the README's python snippet is gone"
        for snippet in python:
            code = s.substitute(snippet)
            cp = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
            )
            assert cp.returncode == 0, f"README python snippet failed:\n{snippet}\n{cp.stdout}{cp.stderr}"
            assert "team-api/api-server" in cp.stdout, cp.stdout

        # The administration session, in order (it connects the twin started above).
        admin = [c for c in shell if c.startswith(("jgate ", "printf "))
                 and not c.startswith(("jgate serve", "jgate mcp"))]
        for command in admin:
            out = s.run(command)
            m = re.search(r"\bjgate_[A-Za-z0-9_-]{20,}", out)
            if command.startswith("jgate agent create") and m:
                s.keys[command.split()[3]] = m.group(0)
            ran.add(command)
        assert "triage-bot" in s.keys, "`jgate agent create triage-bot` printed no key:\n" + "\n".join(s.log[-3:])

        # MCP: the HTTP server and the stdio server, with an agent key created above.
        serve = next(c for c in shell if c.startswith("jgate serve"))
        s.start(serve)
        wait_for(f"http://127.0.0.1:{s.ports[8765]}/healthz")
        ran.add(serve)
        stdio = next(c for c in shell if "jgate mcp" in c)
        init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "readme", "version": "0"}}})
        cp = subprocess.run(
            ["bash", "-c", s.substitute(stdio.replace("jgate_...", s.keys["triage-bot"]))],
            cwd=s.work, env=s.env, input=init + "\n", capture_output=True, text=True, timeout=60,
        )
        assert '"result"' in cp.stdout, f"`{stdio}` did not answer initialize:\n{cp.stdout}{cp.stderr}"
        ran.add(stdio)
    finally:
        s.stop_all()

    unknown = [c for c in shell if c not in ran and c not in SKIPPED]
    assert not unknown, (
        "README commands this test does not run (run them here or add them to SKIPPED with the reason):\n"
        + "\n".join(unknown)
    )
