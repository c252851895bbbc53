"""Drive the twin with the unmodified python-jenkins client (PyPI python-jenkins==1.8.3)."""

import re

import jenkins
import pytest
import requests

from conftest import config, view_config, wait_for


@pytest.fixture(scope="module")
def server(base_url, admin):
    user, _password, token = admin
    return jenkins.Jenkins(base_url, username=user, password=token, timeout=30)


def as_reader(base_url, creds):
    user, _password, token = creds
    return jenkins.Jenkins(base_url, username=user, password=token, timeout=30)


def run_build(server, name, parameters=None, timeout=30):
    """Trigger, follow the queue item to the build and wait for completion. Returns build info."""
    qid = server.build_job(name, parameters)
    assert isinstance(qid, int) and qid > 0
    item = wait_for(
        lambda: (lambda i: i if (i.get("executable") or {}).get("number") else None)(server.get_queue_item(qid)),
        timeout=timeout,
        what=f"queue item {qid} of {name} to start",
    )
    number = item["executable"]["number"]
    assert item["executable"]["url"].rstrip("/").endswith(f"/{number}")
    info = wait_for(
        lambda: (lambda b: b if not b["building"] else None)(server.get_build_info(name, number)),
        timeout=timeout,
        what=f"{name} #{number} to finish",
    )
    assert info["queueId"] == qid
    return info


def stop_everything(server, name):
    """Cancel queued items and stop running builds of a job (test cleanup)."""
    for item in server.get_queue_info():
        if item["task"].get("name") == name.split("/")[-1]:
            server.cancel_queue(item["id"])
    for b in server.get_job_info(name)["builds"]:
        if server.get_build_info(name, b["number"])["building"]:
            server.stop_build(name, b["number"])


def params_of(build_info):
    for action in build_info["actions"]:
        if action and action.get("_class") == "hudson.model.ParametersAction":
            return {p["name"]: p.get("value") for p in action["parameters"]}
    return {}


# --------------------------------------------------------------------------------------- connect


def test_whoami_and_version(server):
    me = server.get_whoami()
    assert me["id"] == "admin"
    assert me["fullName"]
    version = server.get_version()  # GET / and read the X-Jenkins header
    assert re.match(r"^\d+\.\d+", version), version
    info = server.get_info()
    assert info["_class"] == "hudson.model.Hudson"
    assert info["useCrumbs"] is True
    assert info["useSecurity"] is True
    assert any(v["name"] == "all" for v in info["views"])


def test_get_version_on_fresh_client_is_anonymous(base_url, admin):
    """python-jenkins' get_version() does not resolve auth first: a fresh client asks GET / anonymously,
    and anonymous without Overall/Read gets 403 (jenkins-wire.md §8.1) → BadHTTPException."""
    user, _password, token = admin
    fresh = jenkins.Jenkins(base_url, username=user, password=token, timeout=30)
    with pytest.raises(jenkins.BadHTTPException):
        fresh.get_version()
    fresh.get_whoami()  # resolves auth
    assert re.match(r"^\d+\.\d+", fresh.get_version())


# ----------------------------------------------------------------------- folders and config.xml


def test_create_folder_and_jobs_from_config_xml(server, unique):
    folder = unique("folder")
    server.create_job(folder, config("folder"))
    assert server.job_exists(folder)
    finfo = server.get_job_info(folder)
    assert finfo["_class"] == "com.cloudbees.hudson.plugins.folder.Folder"
    assert finfo["jobs"] == []
    assert "color" not in finfo

    inner = f"{folder}/inner"
    server.create_job(inner, config("freestyle"))
    pipe = f"{folder}/pipe"
    server.create_job(pipe, config("pipeline"))
    root_job = unique("root")
    server.create_job(root_job, config("freestyle"))

    info = server.get_job_info(inner)
    assert info["_class"] == "hudson.model.FreeStyleProject"
    assert info["name"] == "inner"
    assert info["fullName"] == inner
    assert info["color"] == "notbuilt"
    assert info["nextBuildNumber"] == 1
    assert info["lastBuild"] is None
    assert info["url"].endswith(f"/job/{folder}/job/inner/")
    assert server.get_job_info(pipe)["_class"] == "org.jenkinsci.plugins.workflow.job.WorkflowJob"

    xml = server.get_job_config(inner)
    assert "<hudson.tasks.Shell>" in xml
    assert "seq 3" in xml

    all_jobs = {j["fullname"]: j for j in server.get_all_jobs()}
    assert inner in all_jobs and pipe in all_jobs and root_job in all_jobs and folder in all_jobs
    assert all_jobs[inner]["color"] == "notbuilt"
    assert "color" not in all_jobs[folder]
    top = {j["fullname"] for j in server.get_jobs(folder_depth=0)}
    assert folder in top and inner not in top

    folder_jobs = {j["name"] for j in server.get_job_info(folder)["jobs"]}
    assert folder_jobs == {"inner", "pipe"}

    # creating the same job twice is refused by the client after an existence check
    with pytest.raises(jenkins.JenkinsException, match="already exists"):
        server.create_job(inner, config("freestyle"))


def test_create_folder_with_form_mode(server, unique):
    """create_folder() posts name=<full name>&mode=...Folder as a form, with ?name=<short> in the URL."""
    parent = unique("formfolder")
    server.create_folder(parent)
    assert server.get_job_info(parent)["_class"] == "com.cloudbees.hudson.plugins.folder.Folder"
    server.create_folder(f"{parent}/sub")
    sub = server.get_job_info(f"{parent}/sub")
    assert sub["_class"] == "com.cloudbees.hudson.plugins.folder.Folder"
    assert sub["fullName"] == f"{parent}/sub"


def test_reconfig_job_round_trip(server, unique):
    name = unique("reconf")
    server.create_job(name, config("freestyle"))
    server.reconfig_job(name, config("failing"))
    assert "exit 3" in server.get_job_config(name)


# ------------------------------------------------------------------------------------- builds


def test_build_follow_queue_and_console(server, unique):
    name = unique("free")
    server.create_job(name, config("freestyle"))
    info = run_build(server, name)
    assert info["_class"] == "hudson.model.FreeStyleBuild"
    assert info["number"] == 1
    assert info["result"] == "SUCCESS"
    assert info["id"] == "1"
    assert info["url"].endswith(f"/job/{name}/1/")
    causes = [c for a in info["actions"] if a and "causes" in a for c in a["causes"]]
    assert any(c.get("userId") == "admin" for c in causes), causes

    console = server.get_build_console_output(name, 1)
    assert f"hello from {name} build #1" in console
    assert "1\n2\n3\n" in console
    assert console.rstrip().endswith("Finished: SUCCESS")

    job = server.get_job_info(name)
    assert job["color"] == "blue"
    assert job["nextBuildNumber"] == 2
    assert job["lastBuild"]["number"] == 1
    assert [b["number"] for b in job["builds"]] == [1]


def test_build_inside_folder(server, unique):
    folder = unique("bfolder")
    server.create_job(folder, config("folder"))
    name = f"{folder}/inner"
    server.create_job(name, config("freestyle"))
    info = run_build(server, name)
    assert info["result"] == "SUCCESS"
    assert info["url"].endswith(f"/job/{folder}/job/inner/1/")
    assert info["fullDisplayName"] == f"{folder} » inner #1"
    console = server.get_build_console_output(name, 1)
    # JOB_NAME is the full name
    assert f"hello from {folder}/inner build #1" in console
    assert "Finished: SUCCESS" in console


def test_names_with_spaces_are_percent_encoded(server, unique):
    """Job 'a b' lives at /job/a%20b/; JSON `name` is raw, `url` encoded (§4)."""
    folder = unique("space folder")
    server.create_job(folder, config("folder"))
    name = f"{folder}/my job"
    server.create_job(name, config("freestyle"))
    info = server.get_job_info(name)
    assert info["name"] == "my job"
    assert info["fullName"] == name
    assert info["url"].endswith("/job/" + folder.replace(" ", "%20") + "/job/my%20job/")
    build = run_build(server, name)
    assert build["result"] == "SUCCESS"
    assert f"hello from {name} build #1" in server.get_build_console_output(name, 1)
    assert name in {j["fullname"] for j in server.get_all_jobs()}


def test_build_with_parameters(server, unique):
    name = unique("params")
    server.create_job(name, config("parameterized"))
    job = server.get_job_info(name)
    defs = [d for p in job["property"] if "parameterDefinitions" in p for d in p["parameterDefinitions"]]
    assert [d["name"] for d in defs] == ["GREETING", "TARGET"]
    assert defs[0]["_class"] == "hudson.model.StringParameterDefinition"
    assert defs[0]["defaultParameterValue"]["value"] == "hello"
    assert defs[1]["_class"] == "hudson.model.ChoiceParameterDefinition"
    assert defs[1]["choices"] == ["staging", "production"]

    info = run_build(server, name, {"GREETING": "bonjour", "TARGET": "production"})
    assert info["result"] == "SUCCESS"
    assert params_of(info) == {"GREETING": "bonjour", "TARGET": "production"}
    assert "bonjour, deploying to production" in server.get_build_console_output(name, info["number"])

    # only one parameter given: the other takes its default (first choice for a choice parameter)
    info2 = run_build(server, name, {"GREETING": "hi"})
    assert params_of(info2) == {"GREETING": "hi", "TARGET": "staging"}
    assert "hi, deploying to staging" in server.get_build_console_output(name, info2["number"])


def test_build_parameterized_job_without_parameters_is_400(server, unique):
    """POST /job/X/build on a parameterized job without a form → 400 (jenkins-wire.md §10.1)."""
    name = unique("params400")
    server.create_job(name, config("parameterized"))
    with pytest.raises(requests.exceptions.HTTPError) as exc:
        server.build_job(name)
    assert exc.value.response.status_code == 400


def test_failure_and_permalinks(server, unique):
    name = unique("perma")
    server.create_job(name, config("freestyle"))
    ok = run_build(server, name)
    assert ok["result"] == "SUCCESS"
    server.reconfig_job(name, config("failing"))
    bad = run_build(server, name)
    assert bad["number"] == 2
    assert bad["result"] == "FAILURE"
    console = server.get_build_console_output(name, 2)
    assert "about to fail" in console
    assert console.rstrip().endswith("Finished: FAILURE")

    job = server.get_job_info(name)
    assert job["color"] == "red"
    assert job["lastBuild"]["number"] == 2
    assert job["lastCompletedBuild"]["number"] == 2
    assert job["lastSuccessfulBuild"]["number"] == 1
    assert job["lastStableBuild"]["number"] == 1
    assert job["lastFailedBuild"]["number"] == 2
    assert job["lastUnsuccessfulBuild"]["number"] == 2
    assert job["lastUnstableBuild"] is None
    assert job["firstBuild"]["number"] == 1
    assert job["nextBuildNumber"] == 3
    assert [b["number"] for b in job["builds"]] == [2, 1]

    # permalinks as build "numbers"
    assert server.get_build_info(name, "lastBuild")["number"] == 2
    assert server.get_build_info(name, "lastSuccessfulBuild")["number"] == 1
    assert server.get_build_info(name, "lastFailedBuild")["number"] == 2
    assert "Finished: SUCCESS" in server.get_build_console_output(name, "lastSuccessfulBuild")
    with pytest.raises(jenkins.JenkinsException, match="does not exist"):
        server.get_build_info(name, "lastUnstableBuild")

    # deleting the only successful build moves the permalinks (POST job/X/1/doDelete → 302)
    server.delete_build(name, 1)
    with pytest.raises(jenkins.JenkinsException, match="does not exist"):
        server.get_build_info(name, 1)
    job = server.get_job_info(name)
    assert [b["number"] for b in job["builds"]] == [2]
    assert job["firstBuild"]["number"] == 2
    assert job["lastSuccessfulBuild"] is None
    assert job["nextBuildNumber"] == 3


def test_builds_list_is_capped_at_100(server, unique):
    """`builds` holds the newest 100 builds; python-jenkins' fetch_all_builds re-reads
    job/X/api/json?tree=allBuilds[number,url] (§5.2, §3.8)."""
    import time
    name = unique("many")
    xml = config("freestyle").replace('echo "hello from ${JOB_NAME} build #${BUILD_NUMBER}"\nseq 3\ntrue', "true")
    assert "<command>true</command>" in xml
    server.create_job(name, xml)
    for n in range(1, 102):
        q = server.build_job(name)
        deadline = time.monotonic() + 20
        while True:
            exe = server.get_queue_item(q).get("executable")
            if exe and not server.get_build_info(name, exe["number"])["building"]:
                assert exe["number"] == n
                break
            assert time.monotonic() < deadline, f"build {n} did not finish"
            time.sleep(0.01)
    info = server.get_job_info(name)
    assert len(info["builds"]) == 100
    assert info["builds"][0]["number"] == 101 and info["builds"][-1]["number"] == 2
    assert info["firstBuild"]["number"] == 1
    full = server.get_job_info(name, fetch_all_builds=True)
    assert [b["number"] for b in full["builds"]] == list(range(101, 0, -1))


def test_copy_disable_enable_rename_delete(server, unique):
    src = unique("src")
    server.create_job(src, config("freestyle"))
    dst = unique("copy")
    server.copy_job(src, dst)
    assert server.job_exists(dst)
    assert "seq 3" in server.get_job_config(dst)
    assert server.get_job_info(dst)["nextBuildNumber"] == 1

    server.disable_job(dst)
    info = server.get_job_info(dst)
    assert info["color"] == "disabled"
    assert info["disabled"] is True
    assert info["buildable"] is False
    with pytest.raises(requests.exceptions.HTTPError) as exc:
        server.build_job(dst)
    assert exc.value.response.status_code == 409

    server.enable_job(dst)
    info = server.get_job_info(dst)
    assert info["color"] == "notbuilt"
    assert info["disabled"] is False
    assert info["buildable"] is True

    renamed = unique("renamed")
    server.rename_job(dst, renamed)
    assert server.job_exists(renamed)
    assert not server.job_exists(dst)
    assert server.get_job_info(renamed)["name"] == renamed

    server.delete_job(renamed)
    assert not server.job_exists(renamed)
    with pytest.raises(jenkins.NotFoundException):
        server.jenkins_open(requests.Request("GET", server._build_url(f"job/{renamed}/api/json")))


def test_copy_and_rename_inside_folder(server, unique):
    folder = unique("cfolder")
    server.create_job(folder, config("folder"))
    server.create_job(f"{folder}/a", config("freestyle"))
    server.copy_job(f"{folder}/a", f"{folder}/b")
    assert server.job_exists(f"{folder}/b")
    server.rename_job(f"{folder}/b", f"{folder}/c")
    assert server.job_exists(f"{folder}/c")
    assert not server.job_exists(f"{folder}/b")
    assert {j["name"] for j in server.get_job_info(folder)["jobs"]} == {"a", "c"}
    server.delete_job(f"{folder}/c")
    assert {j["name"] for j in server.get_job_info(folder)["jobs"]} == {"a"}


def test_cancel_queued_item_and_stop_running_builds(server, base_url, reader, nobody, unique, cleanup):
    name = unique("sleeper")
    server.create_job(name, config("sleeper"))
    cleanup(lambda: stop_everything(server, name))
    q1 = server.build_job(name)
    q2 = server.build_job(name)
    numbers = []
    for q in (q1, q2):
        item = wait_for(
            lambda: (lambda i: i if i.get("executable") else None)(server.get_queue_item(q)),
            timeout=20,
            what=f"queue item {q} to get an executor",
        )
        numbers.append(item["executable"]["number"])
    assert sorted(numbers) == [1, 2]

    # both executors are busy now: a third build stays in the queue
    q3 = server.build_job(name)
    item = server.get_queue_item(q3)
    assert item["_class"] in ("hudson.model.Queue$BuildableItem", "hudson.model.Queue$WaitingItem",
                              "hudson.model.Queue$BlockedItem")
    assert item["id"] == q3
    assert item.get("executable") is None
    assert item["_class"] == "hudson.model.Queue$BuildableItem"
    assert item["why"].startswith("Waiting for next available executor"), item["why"]
    assert item["task"]["name"] == name
    queued = [i for i in server.get_queue_info() if i["id"] == q3]
    assert len(queued) == 1

    running = server.get_running_builds()
    assert sorted(b["number"] for b in running if b["name"] == name) == [1, 2]

    # reader may read the item but lacks Job/Cancel → 422 (§10.4), raised as a raw HTTPError
    r = as_reader(base_url, reader)
    with pytest.raises(requests.exceptions.HTTPError) as exc:
        r.cancel_queue(q3)
    assert exc.value.response.status_code == 422
    # nobody cannot read it → 404, which python-jenkins swallows silently; the item stays queued
    as_reader(base_url, nobody).cancel_queue(q3)
    assert server.get_queue_item(q3).get("cancelled") is not True

    server.cancel_queue(q3)
    left = server.get_queue_item(q3)
    assert left["_class"] == "hudson.model.Queue$LeftItem"
    assert left["cancelled"] is True
    assert left["executable"] is None
    assert not [i for i in server.get_queue_info() if i["id"] == q3]

    for n in numbers:
        server.stop_build(name, n)
    for n in numbers:
        info = wait_for(
            lambda: (lambda b: b if not b["building"] else None)(server.get_build_info(name, n)),
            timeout=20,
            what=f"{name} #{n} to stop",
        )
        assert info["result"] == "ABORTED"
        console = server.get_build_console_output(name, n)
        assert "sleeping" in console and "woke up" not in console
        assert console.rstrip().endswith("Finished: ABORTED")
    assert server.get_job_info(name)["nextBuildNumber"] == 3


def non_concurrent_sleeper():
    return config("sleeper").replace("<concurrentBuild>true</concurrentBuild>", "<concurrentBuild>false</concurrentBuild>")


def test_non_concurrent_job_queues_once(server, unique, cleanup):
    """A queued (blocked) non-concurrent job is not queued twice: /build answers 201 with the existing item (§10.1)."""
    name = unique("blocked")
    server.create_job(name, non_concurrent_sleeper())
    cleanup(lambda: stop_everything(server, name))
    q1 = server.build_job(name)
    wait_for(lambda: server.get_queue_item(q1).get("executable"), timeout=20, what="build #1 to start")
    q2 = server.build_job(name)
    item = server.get_queue_item(q2)
    assert item["_class"] == "hudson.model.Queue$BlockedItem"
    assert item["blocked"] is True
    assert item["why"].startswith("Build #1 is already in progress"), item["why"]
    q3 = server.build_job(name)
    assert q3 == q2
    assert server.get_job_info(name)["inQueue"] is True
    assert server.get_job_info(name)["queueItem"]["id"] == q2
    server.stop_build(name, 1)
    started = wait_for(lambda: server.get_queue_item(q2).get("executable"), timeout=20, what="build #2 to start")
    assert started["number"] == 2
    server.stop_build(name, 2)
    wait_for(lambda: server.get_build_info(name, 2)["result"] == "ABORTED", timeout=20, what="#2 aborted")
    assert server.get_build_info(name, 1)["result"] == "ABORTED"


def test_identical_parameters_merge_with_303(server, unique, cleanup):
    """buildWithParameters with the parameters of an already queued item → 303 to that item (2.308+, §10.2).
    requests follows the 303 to GET queue/item/N/, whose answer has no Location → EmptyResponseException."""
    name = unique("merge")
    xml = config("parameterized").replace(
        'echo "${GREETING}, deploying to $TARGET"', 'echo "${GREETING}"\nsleep 30')
    server.create_job(name, xml)
    cleanup(lambda: stop_everything(server, name))
    q1 = server.build_job(name, {"GREETING": "one"})
    wait_for(lambda: server.get_queue_item(q1).get("executable"), timeout=20, what="build #1 to start")
    q2 = server.build_job(name, {"GREETING": "two"})
    with pytest.raises(jenkins.EmptyResponseException):
        server.build_job(name, {"GREETING": "two"})
    q3 = server.build_job(name, {"GREETING": "three"})
    assert q3 != q2
    ids = [i["id"] for i in server.get_queue_info() if i["task"]["name"] == name]
    assert sorted(ids) == sorted([q2, q3])
    assert server.get_queue_item(q2)["params"] == "\nGREETING=two\nTARGET=staging"
    server.cancel_queue(q2)
    server.cancel_queue(q3)
    server.stop_build(name, 1)
    wait_for(lambda: server.get_build_info(name, 1)["result"] == "ABORTED", timeout=20, what="#1 aborted")


def test_set_next_build_number(server, unique):
    """POST job/X/nextbuildnumber/submit belongs to the Next Build Number plugin. Its current version
    (jakarta, StaplerRequest2) reads req.getSubmittedForm(): python-jenkins posts only
    nextBuildNumber=N without the `json` form field → 400 "This page expects a form submission"."""
    assert "next-build-number" in server.get_plugins(depth=1), "the endpoint exists, so the plugin must be listed"
    name = unique("nextnum")
    server.create_job(name, config("freestyle"))
    with pytest.raises(requests.exceptions.HTTPError) as exc:
        server.set_next_build_number(name, 42)
    assert exc.value.response.status_code == 400
    assert server.get_job_info(name)["nextBuildNumber"] == 1


def test_crumb_is_bound_to_the_session(base_url, admin, unique):
    """Since SECURITY-626 a crumb is only valid with the session it was issued to (§8.6)."""
    user, password, _token = admin
    first = jenkins.Jenkins(base_url, username=user, password=password, timeout=30)
    first.create_job(unique("sess"), config("freestyle"))  # fetches crumb + cookie
    second = jenkins.Jenkins(base_url, username=user, password=password, timeout=30)
    second.crumb = dict(first.crumb)  # same crumb, but no session cookie
    with pytest.raises(jenkins.JenkinsException, match=r"\[403\]"):
        second.create_job(unique("stolen"), config("freestyle"))


# -------------------------------------------------------------------------- nodes, views, plugins


def test_nodes(server):
    nodes = server.get_nodes()
    assert nodes == [{"name": "Built-In Node", "offline": False}]
    detailed = server.get_nodes_with_info()
    assert detailed[0]["idle"] in (True, False)
    assert any(label.get("name") == "built-in" for label in detailed[0]["assignedLabels"])
    # python-jenkins maps 'Built-In Node' to computer/(master)/
    node = server.get_node_info("Built-In Node")
    assert node["_class"] == "hudson.model.Hudson$MasterComputer"
    assert node["numExecutors"] == 2
    assert server.node_exists("Built-In Node")
    assert not server.node_exists("no-such-agent")


def test_views(server, unique):
    job = unique("viewjob")
    server.create_job(job, config("freestyle"))
    view = unique("view")
    server.create_view(view, view_config(view))
    assert server.view_exists(view)
    names = {v["name"] for v in server.get_views()}
    assert {"all", view} <= names
    assert server.get_jobs(view_name=view) == []
    all_view_jobs = {j["name"] for j in server.get_jobs(view_name="all")}
    assert job in all_view_jobs
    assert server.get_view_config(view).lstrip().startswith("<?xml")
    server.delete_view(view)
    assert not server.view_exists(view)

    # views inside a folder: job/F/createView, job/F/view/V/api/json
    folder = unique("vfolder")
    server.create_job(folder, config("folder"))
    server.create_view(f"{folder}/{view}", view_config(view))
    assert server.view_exists(f"{folder}/{view}")
    assert {v["name"] for v in server.get_job_info(folder)["views"]} == {"All", view}


def test_plugins(server):
    plugins = server.get_plugins()
    assert len(plugins) > 0
    for short in ("workflow-job", "cloudbees-folder", "pipeline-stage-view"):
        assert short in plugins, f"{short} missing from {list(plugins.keys())}"
        assert plugins[short]["version"]
        assert plugins[short]["active"] is True


# ------------------------------------------------------------------------------------ pipelines


def test_pipeline_stages_success(server, unique):
    name = unique("pipe")
    server.create_job(name, config("pipeline"))
    info = run_build(server, name)
    assert info["_class"] == "org.jenkinsci.plugins.workflow.job.WorkflowRun"
    assert info["result"] == "SUCCESS"
    console = server.get_build_console_output(name, info["number"])
    assert "building the thing" in console
    assert "compiled" in console
    assert "all tests passed" in console
    assert console.rstrip().endswith("Finished: SUCCESS")

    run = server.get_build_stages(name, info["number"])
    assert run["status"] == "SUCCESS"
    assert run["name"] == f"#{info['number']}"
    assert run["id"] == str(info["number"])
    assert [(s["name"], s["status"]) for s in run["stages"]] == [("Build", "SUCCESS"), ("Test", "SUCCESS")]
    assert "_class" not in run


def test_pipeline_stages_failure(server, unique):
    name = unique("pipefail")
    server.create_job(name, config("pipeline_failing"))
    info = run_build(server, name)
    assert info["result"] == "FAILURE"
    console = server.get_build_console_output(name, info["number"])
    assert "deploying" in console
    assert "never reached" not in console
    assert "script returned exit code 1" in console
    assert console.rstrip().endswith("Finished: FAILURE")
    run = server.get_build_stages(name, info["number"])
    assert run["status"] == "FAILED"
    stages = [(s["name"], s["status"]) for s in run["stages"]]
    assert stages[:2] == [("Checkout", "SUCCESS"), ("Deploy", "FAILED")]
    assert "Notify" not in [s for s, _ in stages]


def test_workspace_wipeout_and_plugin_less_endpoints(server, unique):
    name = unique("ws")
    server.create_job(name, config("freestyle"))
    run_build(server, name)
    server.wipeout_job_workspace(name)  # POST job/X/doWipeOutWorkspace (core) → 302 to the job
    # EnvInject is not installed: injectedEnvVars → 404 → python-jenkins returns None
    assert server.get_build_env_vars(name, 1) is None


def test_test_report_absent_and_stages_of_freestyle(server, unique):
    name = unique("noreport")
    server.create_job(name, config("freestyle"))
    info = run_build(server, name)
    assert server.get_build_test_report(name, info["number"]) is None
    # a freestyle build has no wfapi: 404 → python-jenkins returns None
    assert server.get_build_stages(name, info["number"]) is None


# --------------------------------------------------------------------------------------- errors


def test_wrong_token_is_401(base_url):
    bad = jenkins.Jenkins(base_url, username="admin", password="11" + "f" * 32, timeout=30)
    with pytest.raises(jenkins.JenkinsException, match=r"\[401\]"):
        bad.get_whoami()
    with pytest.raises(jenkins.JenkinsException, match=r"\[401\]"):
        bad.get_job_info("anything")  # 401 is not turned into 'does not exist'


def test_reader_can_read_but_not_create(server, base_url, reader, unique):
    name = unique("readable")
    server.create_job(name, config("freestyle"))
    r = as_reader(base_url, reader)
    assert r.get_whoami()["id"] == "reader"
    assert r.get_job_info(name)["name"] == name
    with pytest.raises(jenkins.JenkinsException, match=r"\[403\]"):
        r.create_job(unique("forbidden"), config("freestyle"))
    with pytest.raises(jenkins.JenkinsException, match=r"\[403\]"):
        r.build_job(name)
    with pytest.raises(jenkins.JenkinsException, match=r"\[403\]"):
        r.delete_job(name)
    assert server.job_exists(name)


def test_unknown_job_is_404(server):
    with pytest.raises(jenkins.JenkinsException, match="does not exist"):
        server.get_job_info("no-such-job-anywhere")
    assert not server.job_exists("no-such-job-anywhere")
    with pytest.raises(jenkins.NotFoundException):
        server.jenkins_open(requests.Request("GET", server._build_url("job/no-such-job-anywhere/api/json")))
    with pytest.raises(jenkins.JenkinsException, match="does not exist"):
        server.get_build_console_output("no-such-job-anywhere", 1)
    with pytest.raises(jenkins.JenkinsException, match="does not exist"):
        server.get_queue_item(987654)


def test_nobody_cannot_see_jobs(server, base_url, nobody, unique):
    name = unique("hidden")
    server.create_job(name, config("freestyle"))
    n = as_reader(base_url, nobody)
    assert n.get_whoami()["id"] == "nobody"
    assert n.get_all_jobs() == []
    assert not n.job_exists(name)
    with pytest.raises(jenkins.JenkinsException, match="does not exist"):
        n.get_job_info(name)


# ------------------------------------------------------------------- password auth and crumbs


def test_password_auth_uses_crumb_and_session(base_url, admin, unique):
    user, password, _token = admin
    s = jenkins.Jenkins(base_url, username=user, password=password, timeout=30)
    name = unique("pwjob")
    s.create_job(name, config("freestyle"))  # POST with crumb + session cookie
    assert isinstance(s.crumb, dict)
    assert s.crumb["crumbRequestField"] == "Jenkins-Crumb"
    assert re.fullmatch(r"[0-9a-f]{64}", s.crumb["crumb"]), s.crumb
    assert s._session.cookies, "crumb issuer should have started an HTTP session (JSESSIONID cookie)"
    info = run_build(s, name)
    assert info["result"] == "SUCCESS"


def test_password_auth_without_crumb_is_403(base_url, admin, unique):
    user, password, _token = admin
    s = jenkins.Jenkins(base_url, username=user, password=password, timeout=30)
    s.crumb = False  # what python-jenkins does when the crumb issuer answers 404
    with pytest.raises(jenkins.JenkinsException, match=r"\[403\]"):
        s.create_job(unique("nocrumb"), config("freestyle"))


def test_token_auth_needs_no_crumb(base_url, admin, unique):
    user, _password, token = admin
    s = jenkins.Jenkins(base_url, username=user, password=token, timeout=30)
    s.crumb = False
    name = unique("tokennocrumb")
    s.create_job(name, config("freestyle"))
    assert s.job_exists(name)
