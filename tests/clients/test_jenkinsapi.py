"""Drive the twin with the unmodified jenkinsapi client (PyPI jenkinsapi==0.3.23).

jenkinsapi reads every object through ``<url>/api/python``, follows the absolute ``url`` fields of
the answers, fetches crumbs from ``crumbIssuer/api/python`` (``ast.literal_eval``) and polls the
root when ``Jenkins()`` is constructed.
"""

import re

import pytest
import requests
from jenkinsapi.build import Build
from jenkinsapi.custom_exceptions import BadParams, JenkinsAPIException, NoBuildData, UnknownJob
from jenkinsapi.jenkins import Jenkins
from jenkinsapi.job import Job
from jenkinsapi.queue import QueueItem

from conftest import config, wait_for


def connect(base_url, creds, **kwargs):
    user, secret = creds[0], creds[-1]
    return Jenkins(base_url, username=user, password=secret, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def japi(base_url, admin):
    return connect(base_url, admin)


def start(job: Job, **kwargs) -> Build:
    qi = job.invoke(**kwargs)
    assert isinstance(qi, QueueItem)
    return wait_for(lambda: _built(qi), timeout=30, what=f"queue item of {job.name} to start")


def _built(qi: QueueItem):
    qi.poll()
    if (qi._data.get("executable") or {}).get("number"):
        return qi.get_build()
    return None


def finish(build: Build, timeout=30) -> Build:
    wait_for(lambda: not build.is_running(), timeout=timeout, what=f"{build} to finish")
    build.poll()
    return build


def run(job: Job, **kwargs) -> Build:
    return finish(start(job, **kwargs))


def test_connect_and_version(japi, base_url):
    assert re.match(r"^\d+\.\d+", japi.version), japi.version
    assert japi.baseurl == base_url.rstrip("/")
    assert isinstance(japi.keys(), list)
    assert japi.is_quieting_down is False


def test_create_folder_and_jobs_from_config_xml(japi, unique):
    folder = unique("folder")
    japi.create_job(folder, config("folder"))
    inner = f"{folder}/inner"
    job = japi.create_job(inner, config("freestyle"))
    assert isinstance(job, Job)
    assert job.get_full_name() == inner
    japi.create_job(f"{folder}/pipe", config("pipeline"))
    root_job = unique("root")
    japi.create_job(root_job, config("freestyle"))

    japi.poll()
    # the folder itself has no colour and is replaced by its children in jenkinsapi's job list
    assert inner in japi.jobs
    assert f"{folder}/pipe" in japi.jobs
    assert root_job in japi.jobs
    assert inner in japi.keys()

    fetched = japi.get_job(inner)
    assert fetched.url.rstrip("/").endswith(f"/job/{folder}/job/inner")
    assert "seq 3" in fetched.get_config()
    assert fetched.get_description() == "Freestyle job used by the Python client tests"
    assert fetched.get_next_build_number() == 1
    assert fetched.has_params() is False
    assert fetched.is_enabled()


def test_build_without_parameters(japi, unique):
    name = unique("free")
    job = japi.create_job(name, config("freestyle"))
    build = run(job)
    assert build.get_number() == 1
    assert build.get_status() == "SUCCESS"
    assert build.is_good()
    assert str(build) == f"{name} #1"
    assert build.get_params() == {}
    assert any(c.get("userId") == "admin" for c in build.get_causes())
    console = build.get_console()
    assert f"hello from {name} build #1" in console
    assert "1\n2\n3\n" in console
    assert console.rstrip().endswith("Finished: SUCCESS")
    streamed = "".join(build.stream_logs())
    assert streamed.rstrip().endswith("Finished: SUCCESS")
    job.poll()
    assert job.get_next_build_number() == 2
    with pytest.raises(BadParams):
        job.invoke(build_params={"X": "y"})


def test_build_inside_folder(japi, unique):
    folder = unique("bfolder")
    japi.create_job(folder, config("folder"))
    job = japi.create_job(f"{folder}/inner", config("freestyle"))
    build = run(job)
    assert build.get_status() == "SUCCESS"
    assert build.get_build_url().endswith(f"/job/{folder}/job/inner/1/")
    assert f"hello from {folder}/inner build #1" in build.get_console()


def test_build_with_parameters(japi, unique):
    name = unique("params")
    job = japi.create_job(name, config("parameterized"))
    assert job.has_params()
    assert job.get_params_list() == ["GREETING", "TARGET"]
    build = run(job, build_params={"GREETING": "ciao", "TARGET": "production"})
    assert build.get_status() == "SUCCESS"
    assert build.get_params() == {"GREETING": "ciao", "TARGET": "production"}
    assert "ciao, deploying to production" in build.get_console()

    # no parameters given: jenkinsapi still POSTs buildWithParameters (with an empty json form)
    build2 = run(job)
    assert build2.get_number() == 2
    assert build2.get_params() == {"GREETING": "hello", "TARGET": "staging"}
    assert "hello, deploying to staging" in build2.get_console()


def test_failure_and_build_aliases(japi, unique):
    name = unique("perma")
    job = japi.create_job(name, config("freestyle"))
    with pytest.raises(NoBuildData):
        job.get_last_buildnumber()
    assert run(job).get_status() == "SUCCESS"
    job.update_config(config("failing"))
    bad = run(job)
    assert bad.get_number() == 2
    assert bad.get_status() == "FAILURE"
    assert not bad.is_good()
    assert bad.get_console().rstrip().endswith("Finished: FAILURE")

    assert job.get_last_buildnumber() == 2
    assert job.get_last_completed_buildnumber() == 2
    assert job.get_last_good_buildnumber() == 1
    assert job.get_last_stable_buildnumber() == 1
    assert job.get_last_failed_buildnumber() == 2
    assert job.get_first_buildnumber() == 1
    assert job.get_last_good_build().get_status() == "SUCCESS"
    assert job.get_last_build().get_status() == "FAILURE"
    assert sorted(job.get_build_dict()) == [1, 2]
    assert list(job.get_build_ids()) == [2, 1]
    job.poll()
    assert job.get_next_build_number() == 3
    assert not job.is_queued_or_running()


def test_copy_disable_enable_rename_delete(japi, unique):
    src = unique("src")
    japi.create_job(src, config("freestyle"))
    dst = unique("copy")
    copied = japi.copy_job(src, dst)
    assert copied.name == dst
    assert japi.has_job(dst)
    assert "seq 3" in copied.get_config()

    copied.disable()
    assert copied.is_enabled() is False
    copied.enable()
    assert copied.is_enabled() is True

    renamed = unique("renamed")
    new_job = japi.rename_job(dst, renamed)
    assert new_job.name == renamed
    assert japi.has_job(renamed)
    assert not japi.has_job(dst)

    japi.delete_job(renamed)
    fresh = japi._clone()  # re-polls the server instead of jenkinsapi's local job cache
    assert not fresh.has_job(renamed)
    assert fresh.has_job(src)
    with pytest.raises(UnknownJob):
        fresh.get_job(renamed)


def stop_everything(japi, job):
    queue = japi.get_queue()
    for qi in queue.get_queue_items_for_job(job.name):
        queue.delete_item(qi)
    for number in job.get_build_dict():
        job.get_build(number).stop()


def test_cancel_queued_item_and_stop_running_builds(japi, unique, cleanup):
    name = unique("sleeper")
    job = japi.create_job(name, config("sleeper"))
    cleanup(lambda: stop_everything(japi, job))
    b1 = start(job)
    b2 = start(job)
    assert sorted([b1.get_number(), b2.get_number()]) == [1, 2]
    assert b1.is_running() and b2.is_running()

    qi3 = job.invoke()
    qi3.poll()
    assert qi3.is_queued()
    assert qi3.why
    queue = japi.get_queue()
    assert qi3.queue_id in queue.keys()
    assert [q.queue_id for q in queue.get_queue_items_for_job(name)] == [qi3.queue_id]
    queue.delete_item(qi3)  # POST /queue/cancelItem?id=N
    qi3.poll()
    assert qi3._data["cancelled"] is True
    assert qi3._data["executable"] is None
    queue.poll()
    assert qi3.queue_id not in queue.keys()

    # progressive log of a running build: X-Text-Size offsets and X-More-Data: true until it ends
    wait_for(lambda: "sleeping" in b1.get_console(), timeout=10, what="the echo before the sleep")
    logs = b1.stream_logs(interval=0.2)
    first = next(logs)
    assert "sleeping" in first and "Finished" not in first

    assert b1.stop() is True
    assert b2.stop() is True
    rest = "".join(logs)
    assert "sleeping" not in rest  # offsets honoured: nothing is sent twice
    assert rest.rstrip().endswith("Finished: ABORTED")
    for b in (b1, b2):
        finish(b, timeout=20)
        assert b.get_status() == "ABORTED"
        console = b.get_console()
        assert "sleeping" in console and "woke up" not in console
        assert console.rstrip().endswith("Finished: ABORTED")
    assert b1.stop() is False  # not running any more


def test_quiet_down_holds_builds(japi, unique, cleanup):
    name = unique("quiet")
    job = japi.create_job(name, config("freestyle"))
    cleanup(japi.cancel_quiet_down)
    japi.quiet_down()  # POST /quietDown → 302 → GET / (must be 200)
    assert japi.is_quieting_down is True
    qi = job.invoke()
    qi.poll()
    assert qi.is_queued()
    assert qi.why == "Jenkins is about to shut down"
    japi.cancel_quiet_down()
    assert japi.is_quieting_down is False
    build = finish(wait_for(lambda: _built(qi), timeout=30, what="the held build to start"))
    assert build.get_status() == "SUCCESS"


def test_nodes(japi):
    nodes = japi.get_nodes()
    assert nodes.keys() == ["Built-In Node"]
    node = japi.get_node("Built-In Node")  # -> /computer/(built-in)/api/python
    assert node.is_online()
    assert node.get_num_executors() == 2
    assert not node.is_temporarily_offline()


def test_views(japi, unique):
    job = unique("viewjob")
    japi.create_job(job, config("freestyle"))
    name = unique("view")
    view = japi.views.create(name)  # form post: name, mode=hudson.model.ListView, json
    assert view is not None
    assert view.name == name
    assert name in japi.views
    assert "all" in japi.views.keys()
    assert len(view) == 0
    assert view.add_job(job) is True
    view.poll()
    assert job in view.keys()
    del japi.views[name]
    assert name not in japi.views


def test_plugins(japi):
    plugins = japi.get_plugins()
    assert len(plugins) > 0
    for short in ("workflow-job", "cloudbees-folder", "pipeline-stage-view"):
        assert japi.has_plugin(short), short
        assert plugins[short].version


def test_pipeline_console_and_wfapi(japi, unique):
    name = unique("pipe")
    job = japi.create_job(name, config("pipeline"))
    build = run(job)
    assert build.get_status() == "SUCCESS"
    assert build._data["_class"] == "org.jenkinsci.plugins.workflow.job.WorkflowRun"
    console = build.get_console()
    assert "building the thing" in console and "all tests passed" in console
    # jenkinsapi has no wfapi helper: use its own requester, as its users do
    run_ext = japi.requester.get_and_confirm_status(f"{build.baseurl}/wfapi/describe").json()
    assert run_ext["status"] == "SUCCESS"
    assert [(s["name"], s["status"]) for s in run_ext["stages"]] == [("Build", "SUCCESS"), ("Test", "SUCCESS")]

    failing = japi.create_job(unique("pipefail"), config("pipeline_failing"))
    fb = run(failing)
    assert fb.get_status() == "FAILURE"
    run_ext = japi.requester.get_and_confirm_status(f"{fb.baseurl}/wfapi/describe").json()
    assert run_ext["status"] == "FAILED"
    assert [(s["name"], s["status"]) for s in run_ext["stages"]][:2] == [("Checkout", "SUCCESS"), ("Deploy", "FAILED")]


def test_wrong_token_is_401(base_url):
    with pytest.raises(requests.exceptions.HTTPError) as exc:
        connect(base_url, ("admin", "11" + "f" * 32))  # the constructor polls /api/python
    assert exc.value.response.status_code == 401


def test_reader_can_read_but_not_create(japi, base_url, reader, unique):
    name = unique("readable")
    japi.create_job(name, config("freestyle"))
    r = connect(base_url, reader)
    assert r.has_job(name)
    assert r.get_job(name).get_next_build_number() == 1
    with pytest.raises(JenkinsAPIException, match="status=403"):
        r.create_job(unique("forbidden"), config("freestyle"))
    with pytest.raises(JenkinsAPIException, match="status=403"):
        r.get_job(name).invoke()


def test_unknown_job(japi):
    assert not japi.has_job("no-such-job-anywhere")
    with pytest.raises(UnknownJob):
        japi.get_job("no-such-job-anywhere")
    with pytest.raises(requests.exceptions.HTTPError) as exc:
        Job(f"{japi.baseurl}/job/no-such-job-anywhere", "no-such-job-anywhere", japi)
    assert exc.value.response.status_code == 404


def test_nobody_cannot_see_jobs(japi, base_url, nobody, unique):
    name = unique("hidden")
    japi.create_job(name, config("freestyle"))
    n = connect(base_url, nobody)
    assert n.keys() == []
    assert not n.has_job(name)


def test_password_auth_with_crumb(base_url, admin, unique):
    user, password, _token = admin
    j = Jenkins(base_url, username=user, password=password, timeout=30)  # CrumbRequester by default
    name = unique("pwjob")
    job = j.create_job(name, config("freestyle"))
    assert run(job).get_status() == "SUCCESS"
    assert j.requester._last_crumb_data  # {"Jenkins-Crumb": "..."} from crumbIssuer/api/python
