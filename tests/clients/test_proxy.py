"""The governed proxy: unmodified Jenkins clients pointed at jgate instead of Jenkins.

jgate serves the twin (demo scenario) as the controller `prod`; the clients talk to
http://<jgate>/jenkins/prod/ with an agent's name and key as user and API token. Reads work as
against Jenkins; what the agent may not see is absent (listings) or missing (404); endpoints no
grant opens (script console, CLI...) are refused; every request is in the audit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
import base64

import jenkins
import jenkinsapi.jenkins
import pytest

TWIN_TOKEN = "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"


def _start(cmd, env, pattern):
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in iter(proc.stdout.readline, ""):
        seen.append(line)
        m = re.search(pattern, line)
        if m:
            return proc, m.group(1)
        if len(seen) > 200:
            break
    proc.kill()
    raise AssertionError(f"{cmd[1:3]} did not start:\n{''.join(seen)}")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    binary = os.environ.get("JGATE_BIN")
    if not binary:
        pytest.fail("JGATE_BIN is not set", pytrace=False)
    tmp = tmp_path_factory.mktemp("proxy")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "JGATE_DATA_DIR": str(tmp / "data"), "USER": "tester",
           "NO_COLOR": "1"}
    twin, twin_url = _start(
        [binary, "twin", "serve", "--addr", "127.0.0.1:0", "--scenario", "demo", "--user", f"admin:admin:{TWIN_TOKEN}"],
        env, r"twin listening on (http://\S+)",
    )
    procs = [twin]
    try:
        port = twin_url.rsplit(":", 1)[1].strip("/")
        (tmp / "token").write_text(TWIN_TOKEN)

        def jg(*args):
            cp = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=120)
            assert cp.returncode == 0, f"jgate {' '.join(args)}:\n{cp.stdout}{cp.stderr}"
            return cp.stdout

        jg("controller", "add", "prod", "--url", twin_url, "--username", "admin", "--token-file", str(tmp / "token"),
           "--allow-private", f"127.0.0.1:{port}")
        keys = {}
        for agent in ["reader-bot", "scoped-bot"]:
            keys[agent] = re.search(r"jgate_[A-Za-z0-9_-]{20,}", jg("agent", "create", agent)).group(0)
        jg("grant", "reader-bot", "status", "read")
        jg("grant", "reader-bot", "nodes", "read")
        jg("grant", "reader-bot", "system", "read")
        jg("grant", "scoped-bot", "status", "read", "--jobs", "team-api/**")
        serve, addr = _start([binary, "serve", "--addr", "127.0.0.1:0"], env, r"jgate serving on (http://\S+?) ")
        procs.append(serve)
        yield {"url": f"{addr}/jenkins/prod/", "addr": addr, "keys": keys, "jg": jg}
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def client(proxied, agent):
    return jenkins.Jenkins(proxied["url"], username=agent, password=proxied["keys"][agent], timeout=30)


def raw(proxied, agent, method, path, key=None):
    req = urllib.request.Request(proxied["url"] + path.lstrip("/"), method=method)
    token = key if key is not None else proxied["keys"][agent]
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{agent}:{token}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


def test_python_jenkins_reads_through_the_proxy(proxied):
    j = client(proxied, "reader-bot")
    names = {job["fullname"] for job in j.get_all_jobs()}
    assert {"nightly-cleanup", "team-api/api-server", "release/deploy-production"} <= names, names
    info = j.get_job_info("team-api/api-server")
    assert info["name"] == "api-server"
    # Absolute URLs point back at the proxy, so clients keep coming through jgate.
    assert info["url"].startswith(proxied["url"]), info["url"]
    last = info["lastBuild"]["number"]
    build = j.get_build_info("team-api/api-server", last)
    assert build["number"] == last
    console = j.get_build_console_output("team-api/api-server", last)
    assert console.strip(), "empty console"
    # The version comes from the X-Jenkins header of the root page.
    assert re.match(r"\d+\.\d+", j.get_version()), j.get_version()


def test_jenkinsapi_reads_through_the_proxy(proxied):
    # jenkinsapi reads api/python and follows the URLs in the answers.
    j = jenkinsapi.jenkins.Jenkins(proxied["url"], username="reader-bot", password=proxied["keys"]["reader-bot"],
                                   timeout=30)
    job = j.get_job("team-api/api-server")
    assert job.get_last_buildnumber() >= 1


def test_hidden_jobs_are_absent_and_answer_like_missing_ones(proxied):
    j = client(proxied, "scoped-bot")
    names = {job["fullname"] for job in j.get_all_jobs()}
    assert "team-api/api-server" in names, names
    assert not any(n.startswith(("release", "nightly")) for n in names), names
    hidden = raw(proxied, "scoped-bot", "GET", "job/release/job/deploy-production/api/json")
    missing = raw(proxied, "scoped-bot", "GET", "job/release/job/no-such-job/api/json")
    assert hidden[0] == 404, hidden
    assert missing[0] == 404, missing
    # Case and spelling variants of a hidden name are hidden too (the policy folds as Jenkins).
    assert raw(proxied, "scoped-bot", "GET", "job/RELEASE/job/deploy-production/api/json")[0] == 404


def test_dangerous_and_unknown_endpoints_are_refused_and_audited(proxied):
    for method, path, status in [
        ("POST", "scriptText", 403),
        ("GET", "script", 403),
        ("POST", "computer/(built-in)/scriptText", 403),
        ("GET", "cli", 403),
        ("POST", "job/team-api/job/api-server/build", 403),  # writes are not served yet
        ("GET", "job/team-api//job/api-server/api/json", 400),
        ("GET", "job/team-api/job/..%2f/api/json", 400),
        ("GET", "job/team-api/job/api-server/ws/", 403),
    ]:
        code, _, body = raw(proxied, "reader-bot", method, path)
        assert code == status, f"{method} {path}: {code}\n{body[:500]}"
    audit = proxied["jg"]("audit", "--agent", "reader-bot", "--json")
    assert "scriptText" in audit and "proxy" in audit, audit[-2000:]


def test_bad_credentials_get_a_jenkins_shaped_401(proxied):
    code, headers, _ = raw(proxied, "reader-bot", "GET", "api/json", key="jgate_wrong")
    assert code == 401
    assert headers.get("www-authenticate", "").startswith("Basic"), headers
    # Another agent's name with this key is refused too.
    code, _, _ = raw(proxied, "scoped-bot", "GET", "api/json", key=proxied["keys"]["reader-bot"])
    assert code == 401


def test_no_jenkins_token_in_any_answer(proxied):
    for path in ["api/json?depth=1", "job/team-api/job/api-server/api/json", "computer/api/json"]:
        code, headers, body = raw(proxied, "reader-bot", "GET", path)
        assert TWIN_TOKEN not in body and TWIN_TOKEN not in json.dumps(headers), path
