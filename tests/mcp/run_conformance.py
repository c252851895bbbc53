"""Run the official MCP conformance suite (npm @modelcontextprotocol/conformance) against `jgate serve`.

    JGATE_BIN=target/debug/jgate python tests/mcp/run_conformance.py \
        --node NODE --cli .../@modelcontextprotocol/conformance/dist/index.js [--revision R ...]

Starts the same setup as the pytest suite (twin, controller, agents, `jgate serve`), puts the
auth-adding proxy (conformance_proxy.py) in front of /mcp as agent triage-bot, and runs exactly
the scenarios each spec revision requires (`--requirements REVISION`) against it, with
tests/mcp/conformance-expected-failures.yml as the baseline: an unlisted failure, or a listed
scenario that now passes, fails the run. Exit code: 0 when every run matches the baseline.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import re
import subprocess
import sys
import time

from conformance_proxy import AuthProxy
from jgate_stack import HERE, SetupError, start_stack

EXPECTED = HERE / "conformance-expected-failures.yml"
REVISIONS = ["2025-11-25", "2026-07-28"]


def reword(line: str) -> str:
    """'Total: 97 passed, 70 failed' → 'Total: checks ok 97 / not ok 70 (expected failures included)'."""
    m = re.search(r"(\d+) passed, (\d+) failed", line)
    if not m:
        return line
    return line[: m.start()] + f"checks ok {m.group(1)} / not ok {m.group(2)}" + line[m.end():]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True, help="the Node 22 binary")
    ap.add_argument("--cli", required=True, help="the conformance package's dist/index.js")
    ap.add_argument("--revision", action="append", help=f"default: {' and '.join(REVISIONS)}")
    ap.add_argument("--scenario", help="run one scenario only (no baseline)")
    ap.add_argument("--agent", default="triage-bot")
    ap.add_argument("--output-dir", default=str(HERE.parents[1] / "target" / "conformance-results"))
    ap.add_argument("--timeout-ms", default="30000")
    args = ap.parse_args()
    for what, path in (("node", args.node), ("conformance CLI", args.cli), ("expected failures", EXPECTED)):
        if not os.path.isfile(path):
            print(f"run_conformance: {what} missing: {path}", file=sys.stderr)
            return 2
    try:
        stack = start_stack()
    except SetupError as e:
        print(f"run_conformance: {e}", file=sys.stderr)
        return 2
    failed = []
    try:
        with AuthProxy(stack.mcp_url, stack.keys[args.agent]) as proxy:
            url = proxy.url + "/mcp"
            for version in args.revision or REVISIONS:
                out = pathlib.Path(args.output_dir) / version
                shutil.rmtree(out, ignore_errors=True)
                cmd = [args.node, args.cli, "server", "--url", url, "--timeout", args.timeout_ms, "-o", str(out)]
                if args.scenario:
                    cmd += ["--scenario", args.scenario, "--spec-version", version]
                else:
                    cmd += ["--requirements", version, "--expected-failures", str(EXPECTED)]
                print(f"run_conformance: revision {version}: {' '.join(cmd)}", flush=True)
                started = time.monotonic()
                # The suite's per-scenario lines read "N passed, M failed"; expected failures included,
                # so they are reworded: CI treats a bare "N passed, M failed" line as a test verdict.
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                assert proc.stdout is not None
                for line in proc.stdout:
                    print(reword(line.rstrip("\n")), flush=True)
                rc = proc.wait()
                print(f"run_conformance: revision {version}: exit {rc} after {time.monotonic() - started:.0f}s "
                      f"(results in {out})", flush=True)
                if rc != 0:
                    failed.append(version)
            if proxy.requests == 0:
                print("run_conformance: the suite sent no request through the proxy", file=sys.stderr)
                failed.append("no-requests")
    finally:
        if failed:
            print("run_conformance: jgate serve output (last 3000 chars):\n" + stack.server.text()[-3000:], file=sys.stderr)
        stack.close()
    if failed:
        print(f"run_conformance: FAILED for {', '.join(failed)}: see the unexpected failures / stale entries above",
              file=sys.stderr)
        return 1
    print("run_conformance: conformance matches tests/mcp/conformance-expected-failures.yml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
