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
import urllib.parse
import urllib.request
import base64
import pathlib

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
        for agent in ["reader-bot", "scoped-bot", "release-bot", "maker-bot"]:
            keys[agent] = re.search(r"jgate_[A-Za-z0-9_-]{20,}", jg("agent", "create", agent)).group(0)
        jg("grant", "reader-bot", "status", "read")
        jg("grant", "reader-bot", "nodes", "read")
        jg("grant", "reader-bot", "system", "read")
        jg("grant", "scoped-bot", "status", "read", "--jobs", "team-api/**")
        jg("grant", "release-bot", "status", "read", "--jobs", "release/**")
        jg("grant", "release-bot", "build", "full", "--jobs", "release/**", "--param", "ENV=staging")
        for group in ["status", "config", "jobs"]:
            jg("grant", "maker-bot", group, "full", "--jobs", "team-api/**")
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


def raw(proxied, agent, method, path, key=None, body=None, content_type=None):
    req = urllib.request.Request(proxied["url"] + path.lstrip("/"), method=method, data=body)
    if content_type:
        req.add_header("Content-Type", content_type)
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
        ("POST", "job/team-api/job/api-server/build", 403),  # reader-bot has no build grant
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


def test_triggers_go_through_the_policy_and_the_audit(proxied):
    j = client(proxied, "release-bot")
    queue_id = j.build_job("release/deploy-production", {"ENV": "staging"})
    assert isinstance(queue_id, int) and queue_id > 0, queue_id
    # Outside the parameter constraint: refused, never reaching Jenkins.
    with pytest.raises(jenkins.JenkinsException) as refused:
        j.build_job("release/deploy-production", {"ENV": "production"})
    assert "403" in str(refused.value), refused.value
    # The same constraint holds for the json= form Jenkins also reads.
    form = "json=" + urllib.parse.quote(json.dumps({"parameter": [{"name": "ENV", "value": "production"}]}))
    req = urllib.request.Request(proxied["url"] + "job/release/job/deploy-production/build", data=form.encode(),
                                 method="POST")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    token = proxied["keys"]["release-bot"]
    req.add_header("Authorization", "Basic " + base64.b64encode(f"release-bot:{token}".encode()).decode())
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 403
    # A job the agent may not see answers like a missing one, for writes too.
    code, _, _ = raw(proxied, "release-bot", "POST", "job/team-api/job/api-server/build")
    assert code == 404
    audit = proxied["jg"]("audit", "--agent", "release-bot")
    assert "release-bot, through the Jenkins proxy, triggered a build of release/deploy-production" in audit, audit[-2000:]
    assert f"queued as item {queue_id}" in audit, audit[-3000:]


FREESTYLE = (pathlib.Path(__file__).resolve().parent / "configs" / "freestyle.xml").read_bytes()


def test_create_copy_and_delete_through_the_proxy(proxied):
    """createItem (config.xml, mode=copy) and DELETE are the typed operations: the new item, and a
    copy's source, are what the policy decides on; hidden ones answer like missing ones."""
    code, _, body = raw(proxied, "maker-bot", "POST", "job/team-api/createItem?name=made", body=FREESTYLE,
                        content_type="application/xml")
    assert code == 200, body
    assert raw(proxied, "maker-bot", "GET", "job/team-api/job/made/api/json")[0] == 200
    # Creating where the agent sees nothing, or copying a source it may not see: 404, as if missing.
    code, _, _ = raw(proxied, "maker-bot", "POST", "job/release/createItem?name=x", body=FREESTYLE,
                     content_type="application/xml")
    assert code == 404
    code, _, _ = raw(proxied, "maker-bot", "POST",
                     "job/team-api/createItem?name=stolen&mode=copy&from=%2Frelease%2Fdeploy-production")
    assert code == 404
    assert raw(proxied, "maker-bot", "GET", "job/team-api/job/stolen/api/json")[0] == 404
    # A copy in the same folder (from= relative to it), reached through a view prefix too.
    code, _, body = raw(proxied, "maker-bot", "POST", "view/all/job/team-api/createItem?name=copied&mode=copy&from=made")
    assert code == 200, body
    assert raw(proxied, "maker-bot", "GET", "job/team-api/job/copied/config.xml")[0] == 200
    # A name Jenkins refuses: its 400 and X-Error come through.
    code, headers, _ = raw(proxied, "maker-bot", "POST", "job/team-api/createItem?name=made", body=FREESTYLE,
                           content_type="application/xml")
    assert code == 400 and "already exists" in headers.get("x-error", ""), (code, headers)
    assert raw(proxied, "maker-bot", "DELETE", "job/team-api/job/copied/")[0] == 204
    assert raw(proxied, "maker-bot", "GET", "job/team-api/job/copied/api/json")[0] == 404
    # A rename answers with the new location under the proxy (api4jenkins reads it), with a 200
    # rather than Jenkins' 302: the proxy serves no job pages a client could follow it to.
    code, headers, _ = raw(proxied, "maker-bot", "POST", "job/team-api/job/made/confirmRename?newName=moved")
    assert code == 200 and headers.get("location", "").endswith("/job/team-api/job/moved/"), (code, headers)
    # Requests jgate has no operation for are refused and audited.
    assert raw(proxied, "maker-bot", "POST", "job/team-api/job/moved/polling")[0] == 403
    audit = proxied["jg"]("audit", "--agent", "maker-bot")
    assert "through the Jenkins proxy, created job team-api/made" in audit, audit[-3000:]
    assert "changed the name of team-api/made" in audit and "renamed to team-api/moved" in audit, audit[-3000:]
    refusals = proxied["jg"]("audit", "--agent", "maker-bot", "--denied", "--json")
    assert "polling" in refusals, refusals[-2000:]


def test_identity_and_crumb_are_the_agents(proxied):
    code, _, body = raw(proxied, "maker-bot", "GET", "me/api/json")
    assert code == 200 and json.loads(body)["id"] == "maker-bot", body
    assert raw(proxied, "maker-bot", "GET", "user/maker-bot/api/json")[0] == 200
    assert raw(proxied, "maker-bot", "GET", "user/admin/api/json")[0] == 403
    code, _, body = raw(proxied, "maker-bot", "GET", "crumbIssuer/api/json")
    assert code == 200 and json.loads(body)["crumbRequestField"] == "Jenkins-Crumb"
    assert TWIN_TOKEN not in body


def test_pipeline_links_point_back_at_the_proxy(proxied):
    """wfapi answers JSON with root-relative links (jenkins-wire.md §12.1): they are rewritten to the
    proxy's path, and the flow nodes they lead to are served."""
    code, headers, body = raw(proxied, "reader-bot", "GET", "job/release/job/deploy-production/wfapi/runs")
    assert code == 200 and headers["content-type"].startswith("application/json"), (code, headers)
    runs = json.loads(body)
    assert runs, body
    base_path = urllib.parse.urlparse(proxied["url"]).path
    href = runs[0]["_links"]["self"]["href"]
    assert href.startswith(base_path + "job/release/job/deploy-production/"), href
    stages = runs[0]["stages"]
    assert stages, runs[0]
    node = stages[0]["_links"]["self"]["href"]
    assert node.startswith(base_path), node
    code, _, body = raw(proxied, "reader-bot", "GET", node[len(base_path):])
    assert code == 200 and json.loads(body)["id"] == stages[0]["id"], body


def test_xml_is_filtered_like_json(proxied):
    """api/xml is rendered by jgate from the filtered JSON: hidden jobs are absent there too."""
    code, headers, body = raw(proxied, "scoped-bot", "GET", "api/xml?tree=jobs[name,url,jobs[name,url]]")
    assert code == 200 and headers["content-type"].startswith("application/xml"), (code, headers, body[:300])
    import xml.etree.ElementTree as ET
    root = ET.fromstring(body)
    assert root.tag == "hudson" and root.get("_class") == "hudson.model.Hudson", body[:300]
    names = {j.findtext("name") for j in root.iter("job")}
    assert "api-server" in names, body[:1000]
    assert not any(n.startswith(("release", "nightly", "deploy")) for n in names), names
    assert "release" not in body and proxied["url"] in body
    # Stapler's XML-only parameters are not taken through jgate.
    assert raw(proxied, "scoped-bot", "GET", "api/xml?xpath=/hudson/job")[0] == 400


def test_build_with_parameters_without_any_uses_the_defaults_under_the_constraints(proxied):
    """Jenkins builds buildWithParameters without parameters with the job's defaults; jgate reads
    them (an audited get_job) and checks them against the grant as if the client had sent them."""
    code, headers, body = raw(proxied, "release-bot", "POST", "job/release/job/deploy-production/buildWithParameters")
    assert code == 201, (code, body)
    assert "/jenkins/prod/queue/item/" in headers["location"], headers
    audit = proxied["jg"]("audit", "--agent", "release-bot")
    assert "triggered a build of release/deploy-production" in audit, audit[-2000:]


def _multipart(fields, files, boundary="jgateboundary7"):
    """A multipart/form-data body as a browser (and python-jenkins' build_job with files) sends it."""
    out = b""
    for name, value in fields:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").encode()
    for name, file_name, content in files:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_file_parameters_are_bounded_and_constrained(proxied):
    """Multipart triggers: a value sent as a file passes the same constraint as a field; the body
    is capped (413); multipart is taken by buildWithParameters only (415)."""
    path = "job/release/job/deploy-production/buildWithParameters"
    body, ctype = _multipart([], [("ENV", "env.txt", b"production")])
    assert raw(proxied, "release-bot", "POST", path, body=body, content_type=ctype)[0] == 403
    body, ctype = _multipart([("ENV", "staging")], [("ENV", "env.txt", b"production")])
    assert raw(proxied, "release-bot", "POST", path, body=body, content_type=ctype)[0] == 403
    body, ctype = _multipart([("ENV", "staging")], [("NOTES", "notes.txt", b"release notes")])
    code, headers, _ = raw(proxied, "release-bot", "POST", path, body=body, content_type=ctype)
    assert code == 201 and "/jenkins/prod/queue/item/" in headers.get("location", ""), (code, headers)
    big, ctype = _multipart([("ENV", "staging")], [("NOTES", "big.bin", b"x" * (1024 * 1024 + 1))])
    code, _, body = raw(proxied, "release-bot", "POST", path, body=big, content_type=ctype)
    assert code == 413 and "limit" in body, (code, body)
    body, ctype = _multipart([], [("x", "config.xml", b"<project/>")])
    assert raw(proxied, "maker-bot", "POST", "job/team-api/job/api-server/config.xml", body=body,
               content_type=ctype)[0] == 415
    refusals = proxied["jg"]("audit", "--agent", "release-bot", "--denied")
    assert "ENV" in refusals, refusals[-2000:]
    assert "413" in refusals, "a refused body is on record too: " + refusals[-2000:]
