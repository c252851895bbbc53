"""Drive the twin with the unmodified api4jenkins client (PyPI api4jenkins==2.1.0, httpx based).

api4jenkins builds its objects from the ``_class`` of every JSON answer, navigates by the absolute
``url`` fields, does not follow redirects, fetches a crumb before its first request and reads
``X-Error`` on every 400.
"""

import re

import pytest
from api4jenkins import Jenkins
from api4jenkins.build import FreeStyleBuild, WorkflowRun
from api4jenkins.exceptions import AuthenticationError, BadRequestError, ItemNotFoundError
from api4jenkins.job import Folder, FreeStyleProject, WorkflowJob
from api4jenkins.node import MasterComputer
from api4jenkins.queue import QueueItem
from api4jenkins.view import AllView, ListView

from conftest import config, view_config, wait_for


def connect(base_url, creds) -> Jenkins:
    user, secret = creds[0], creds[-1]
    return Jenkins(base_url, auth=(user, secret), timeout=30)


@pytest.fixture(scope="module")
def aj(base_url, admin):
    return connect(base_url, admin)


def start(item: QueueItem):
    assert isinstance(item, QueueItem)
    return wait_for(item.get_build, timeout=30, what=f"queue item {item.id} to start")


def finish(build, timeout=30):
    wait_for(lambda: build.building is False, timeout=timeout, what=f"{build} to finish")
    return build


def run(aj, name, **params):
    return finish(start(aj.build_job(name, **params)))


def stop_everything(aj, name):
    job = aj.get_job(name)
    for item in aj.queue:
        if item.api_json(tree="task[url]")["task"]["url"] == job.url:
            item.cancel()
    for b in job:
        if b.building:
            b.stop()


def console(build) -> str:
    return "\n".join(build.console_text())


def test_version_and_user(aj):
    assert re.match(r"^\d+\.\d+", aj.version), aj.version  # HEAD / → X-Jenkins
    me = aj.me.api_json()  # GET user/admin/api/json
    assert me["id"] == "admin"
    assert me["_class"] == "hudson.model.User"
    assert aj.crumb and list(aj.crumb) == ["Jenkins-Crumb"]


def test_create_folder_and_jobs_from_config_xml(aj, unique):
    folder = unique("folder")
    aj.create_job(folder, config("folder"))
    aj.create_job(f"{folder}/inner", config("freestyle"))
    aj.create_job(f"{folder}/pipe", config("pipeline"))

    f = aj.get_job(folder)
    assert isinstance(f, Folder)
    inner = aj.get_job(f"{folder}/inner")
    assert isinstance(inner, FreeStyleProject)
    assert inner.full_name == f"{folder}/inner"
    assert inner.url.endswith(f"/job/{folder}/job/inner/")
    assert isinstance(aj.get_job(f"{folder}/pipe"), WorkflowJob)
    assert sorted(j.name for j in f) == ["inner", "pipe"]
    assert "seq 3" in inner.configure()
    assert inner.next_build_number == 1
    assert inner.color == "notbuilt"
    # a folder's default view is an AllView named "All" (capital A), reached as job/F/view/All/
    views = list(f.views)
    assert [type(v) for v in views] == [AllView]
    assert views[0].url == f"{f.url}view/All/"
    assert sorted(j.name for j in views[0]) == ["inner", "pipe"]

    # recursive creation uses api4jenkins' minimal <com.cloudbees.hudson.plugins.folder.Folder/>
    deep = f"{folder}/a/b/leaf"
    aj.create_job(deep, config("freestyle"), recursive=True)
    assert isinstance(aj.get_job(f"{folder}/a/b"), Folder)
    assert isinstance(aj.get_job(deep), FreeStyleProject)
    names = {j.full_name for j in aj.iter(depth=4)}
    assert {folder, f"{folder}/inner", f"{folder}/a", f"{folder}/a/b", deep} <= names


def test_duplicate_and_unsafe_names_are_400_with_x_error(aj, unique):
    name = unique("dup")
    aj.create_job(name, config("freestyle"))
    with pytest.raises(BadRequestError, match="already exists"):
        aj.create_job(name, config("freestyle"))
    with pytest.raises(BadRequestError, match="unsafe character"):
        aj.create_job(unique("bad") + "?x", config("freestyle"))


def test_build_follow_queue_and_console(aj, unique):
    name = unique("free")
    aj.create_job(name, config("freestyle"))
    item = aj.build_job(name)
    build = finish(start(item))
    assert isinstance(build, FreeStyleBuild)
    assert build.url.endswith(f"/job/{name}/1/")
    assert build.number == 1
    assert build.result == "SUCCESS"
    assert int(build.queue_id) == item.id
    assert any(c.get("userId") == "admin" for c in build.get_causes())
    text = console(build)
    assert f"hello from {name} build #1" in text
    assert text.rstrip().endswith("Finished: SUCCESS")
    progressive = list(build.progressive_output())
    assert progressive[-1] == "Finished: SUCCESS"
    assert item.api_json()["_class"] == "hudson.model.Queue$LeftItem"
    assert item.api_json()["executable"]["number"] == 1


def test_build_inside_folder(aj, unique):
    folder = unique("bfolder")
    aj.create_job(folder, config("folder"))
    aj.create_job(f"{folder}/inner", config("freestyle"))
    build = run(aj, f"{folder}/inner")
    assert build.result == "SUCCESS"
    assert build.url.endswith(f"/job/{folder}/job/inner/1/")
    assert f"hello from {folder}/inner build #1" in console(build)
    assert build.project.full_name == f"{folder}/inner"


def test_names_with_spaces(aj, unique):
    name = unique("my job")
    aj.create_job(name, config("freestyle"))
    job = aj.get_job(name)
    assert job.url.endswith("/job/" + name.replace(" ", "%20") + "/")
    build = run(aj, name)
    assert build.result == "SUCCESS"
    assert f"hello from {name} build #1" in console(build)


def test_build_with_parameters(aj, unique):
    name = unique("params")
    aj.create_job(name, config("parameterized"))
    job = aj.get_job(name)
    defs = job.get_parameters()
    assert [(d["_class"], d["name"]) for d in defs] == [
        ("hudson.model.StringParameterDefinition", "GREETING"),
        ("hudson.model.ChoiceParameterDefinition", "TARGET"),
    ]
    assert defs[1]["choices"] == ["staging", "production"]

    build = run(aj, name, GREETING="hej", TARGET="production")
    assert build.result == "SUCCESS"
    params = {p.name: p for p in build.get_parameters()}
    assert params["GREETING"].value == "hej"
    assert params["TARGET"].value == "production"
    # a choice parameter produces a StringParameterValue in real Jenkins
    assert {p.class_name for p in params.values()} == {"hudson.model.StringParameterValue"}
    assert "hej, deploying to production" in console(build)

    # delay only → POST /job/X/build?delay=0 on a parameterized job without a form → 400
    # (jenkins-wire.md §10.1). Real Jenkins answers with a Jetty error page (sendError) without
    # X-Error, on which api4jenkins' check_response fails with KeyError('X-Error').
    with pytest.raises((BadRequestError, KeyError)):
        aj.build_job(name, delay=0)


def test_identical_parameters_merge_with_303(aj, unique, cleanup):
    """buildWithParameters with the parameters of an already queued item → 303 to that item (§10.2)."""
    name = unique("merge")
    xml = config("parameterized").replace(
        'echo "${GREETING}, deploying to $TARGET"', 'echo "${GREETING}"\nsleep 30')
    aj.create_job(name, xml)
    cleanup(lambda: stop_everything(aj, name))
    b1 = start(aj.build_job(name, GREETING="one"))
    i2 = aj.build_job(name, GREETING="two")
    i2_again = aj.build_job(name, GREETING="two")  # 303, Location = the same queue item
    assert i2_again.id == i2.id
    i3 = aj.build_job(name, GREETING="three")
    assert i3.id != i2.id
    assert {i.id for i in aj.queue if i.get_job() == aj.get_job(name)} == {i2.id, i3.id}
    i2.cancel()
    i3.cancel()
    b1.stop()
    finish(b1, timeout=20)
    assert b1.result == "ABORTED"


def test_set_next_build_number(aj, unique):
    """api4jenkins posts nextBuildNumber plus the `json` form field the Next Build Number plugin reads."""
    assert aj.plugins.get("next-build-number") is not None
    name = unique("nextnum")
    aj.create_job(name, config("freestyle"))
    job = aj.get_job(name)
    job.set_next_build_number(42)
    assert job.next_build_number == 42
    assert run(aj, name).number == 42


def test_build_with_delay_on_plain_job(aj, unique):
    name = unique("delay")
    aj.create_job(name, config("freestyle"))
    build = run(aj, name, delay=0)  # POST /job/X/build?delay=0
    assert build.result == "SUCCESS"


def test_failure_and_permalinks(aj, unique):
    name = unique("perma")
    aj.create_job(name, config("freestyle"))
    job = aj.get_job(name)
    assert job.get_last_build() is None
    assert run(aj, name).result == "SUCCESS"
    job.configure(config("failing"))  # POST config.xml
    bad = run(aj, name)
    assert bad.number == 2
    assert bad.result == "FAILURE"
    assert console(bad).rstrip().endswith("Finished: FAILURE")

    assert job.get_last_build().number == 2
    assert job.get_last_completed_build().number == 2
    assert job.get_last_successful_build().number == 1
    assert job.get_last_stable_build().number == 1
    assert job.get_last_failed_build().number == 2
    assert job.get_last_unsuccessful_build().number == 2
    assert job.get_last_unstable_build() is None
    assert job.get_first_build().number == 1
    assert job.get(1).number == 1
    assert job.get(3) is None
    assert [b.number for b in job] == [2, 1]
    assert job.next_build_number == 3
    assert job.building is False
    assert [b.number for b in job.filter_builds_by_result(result="FAILURE")] == [2]
    # FreeStyleBuild does not export previousBuild/nextBuild (only WorkflowRun does, §5.6):
    # api4jenkins then fails with KeyError, exactly as against a real controller
    with pytest.raises(KeyError):
        bad.get_previous_build()


def test_copy_disable_enable_rename_delete(aj, unique):
    folder = unique("cfolder")
    aj.create_job(folder, config("folder"))
    aj.create_job(f"{folder}/src", config("freestyle"))
    aj.copy_job(f"{folder}/src", "copy")
    copy = aj.get_job(f"{folder}/copy")
    assert isinstance(copy, FreeStyleProject)
    assert "seq 3" in copy.configure()

    copy.disable()
    assert copy.color == "disabled"
    assert copy.buildable is False
    copy.enable()
    assert copy.color == "notbuilt"
    assert copy.buildable is True

    aj.rename_job(f"{folder}/copy", "renamed")  # POST confirmRename → reads Location
    assert aj.get_job(f"{folder}/copy") is None
    renamed = aj.get_job(f"{folder}/renamed")
    assert renamed is not None

    aj.delete_job(f"{folder}/renamed")
    assert aj.get_job(f"{folder}/renamed") is None
    assert sorted(j.name for j in aj.get_job(folder)) == ["src"]


def test_rename_reports_new_location(aj, unique):
    name = unique("mv")
    aj.create_job(name, config("freestyle"))
    job = aj.get_job(name)
    new = unique("moved")
    job.rename(new)
    assert job.url == f"{aj.url}job/{new}/"
    assert job.exists()


def test_cancel_queued_item_and_stop_running_builds(aj, unique, cleanup):
    name = unique("sleeper")
    aj.create_job(name, config("sleeper"))
    cleanup(lambda: stop_everything(aj, name))
    b1 = start(aj.build_job(name))
    b2 = start(aj.build_job(name))
    assert sorted([b1.number, b2.number]) == [1, 2]
    running = {b.url for b in aj.nodes.iter_builds()}
    assert {b1.url, b2.url} <= running

    item = aj.build_job(name)
    assert item.api_json()["_class"] in (
        "hudson.model.Queue$BuildableItem", "hudson.model.Queue$WaitingItem", "hudson.model.Queue$BlockedItem")
    assert item.get_build() is None
    assert aj.queue.get(item.id) is not None
    item.cancel()  # POST queue/cancelItem?id=N
    left = item.api_json()
    assert left["_class"] == "hudson.model.Queue$LeftItem"
    assert left["cancelled"] is True
    assert left["executable"] is None
    assert aj.queue.get(item.id) is None

    # progressive output of a running build
    lines = b1.progressive_output()
    assert next(lines).startswith("Started by user")
    b1.stop()
    b2.stop()
    rest = list(lines)
    assert rest[-1] == "Finished: ABORTED"
    for b in (b1, b2):
        finish(b, timeout=20)
        assert b.result == "ABORTED"
        text = console(b)
        assert "woke up" not in text
        assert text.rstrip().endswith("Finished: ABORTED")


def test_nodes(aj):
    nodes = list(aj.nodes)
    assert len(nodes) == 1
    node = nodes[0]
    assert isinstance(node, MasterComputer)
    assert node.url == f"{aj.url}computer/(built-in)/"
    data = node.api_json()
    assert data["displayName"] == "Built-In Node"
    assert data["numExecutors"] == 2
    assert data["offline"] is False
    assert aj.nodes.get("Built-In Node") == node


def test_views(aj, unique):
    job = unique("viewjob")
    aj.create_job(job, config("freestyle"))
    name = unique("view")
    aj.views.create(name, view_config(name))
    view = aj.views.get(name)
    assert isinstance(view, ListView)
    assert list(view) == []
    view.include(job)
    assert [j.name for j in view] == [job]
    assert isinstance(view.get(job), FreeStyleProject)
    all_view = aj.views.get("all")
    assert isinstance(all_view, AllView)
    assert job in [j.name for j in all_view]
    view.delete()
    assert aj.views.get(name) is None


def test_plugins(aj):
    names = [p.url.rstrip("/").split("/")[-1] for p in aj.plugins]
    for short in ("workflow-job", "cloudbees-folder", "pipeline-stage-view"):
        assert short in names
    plugin = aj.plugins.get("workflow-job")
    assert plugin is not None
    assert aj.plugins.get("no-such-plugin") is None


def test_pipeline_stages(aj, unique):
    name = unique("pipe")
    aj.create_job(name, config("pipeline"))
    build = run(aj, name)
    assert isinstance(build, WorkflowRun)
    assert build.result == "SUCCESS"
    assert "all tests passed" in console(build)
    describe = build.handle_req("GET", "wfapi/describe").json()
    assert describe["status"] == "SUCCESS"
    assert [(s["name"], s["status"]) for s in describe["stages"]] == [("Build", "SUCCESS"), ("Test", "SUCCESS")]
    assert build.get_pending_input() is None
    second = run(aj, name)
    assert second.get_previous_build() == build
    assert build.get_next_build() == second
    assert second.get_next_build() is None

    failing = unique("pipefail")
    aj.create_job(failing, config("pipeline_failing"))
    fb = run(aj, failing)
    assert fb.result == "FAILURE"
    describe = fb.handle_req("GET", "wfapi/describe").json()
    assert describe["status"] == "FAILED"
    stages = [(s["name"], s["status"]) for s in describe["stages"]]
    assert stages[:2] == [("Checkout", "SUCCESS"), ("Deploy", "FAILED")]


def test_running_pipeline_occupies_flyweight_and_heavyweight_executors(aj, unique):
    """A running declarative pipeline shows its WorkflowRun on a one-off (flyweight) executor and a
    PlaceholderExecutable on a regular executor (`agent any`); api4jenkins skips the placeholder."""
    name = unique("pipesleep")
    aj.create_job(name, config("pipeline").replace("sh 'echo compiled'", "sleep 30"))
    build = start(aj.build_job(name))
    try:
        assert isinstance(build, WorkflowRun)
        wait_for(lambda: "compiled" not in console(build) and "building the thing" in console(build),
                 timeout=10, what="the pipeline to reach its sleep")
        raw = aj.nodes.api_json(tree="computer[executors[currentExecutable[url]],oneOffExecutors[currentExecutable[url]]]",
                                depth=2)
        execs = [e["currentExecutable"] for c in raw["computer"] for e in c["executors"] if e["currentExecutable"]]
        one_off = [e["currentExecutable"] for c in raw["computer"] for e in c["oneOffExecutors"] if e["currentExecutable"]]
        assert [e["_class"] for e in one_off if e["url"] == build.url] == ["org.jenkinsci.plugins.workflow.job.WorkflowRun"]
        assert any(e["_class"].endswith("PlaceholderTask$PlaceholderExecutable") for e in execs), execs
        assert [b.url for b in aj.nodes.iter_builds()].count(build.url) == 1
        describe = build.handle_req("GET", "wfapi/describe").json()
        assert describe["status"] == "IN_PROGRESS"
        assert [(s["name"], s["status"]) for s in describe["stages"]] == [("Build", "IN_PROGRESS")]
    finally:
        build.stop()  # never leave a 30 s pipeline holding an executor for the next tests
    finish(build, timeout=20)
    assert build.result == "ABORTED"
    describe = build.handle_req("GET", "wfapi/describe").json()
    assert describe["status"] == "ABORTED"


def test_pipeline_input_step(aj, unique):
    name = unique("pipeinput")
    aj.create_job(name, config("pipeline_input"))
    build = start(aj.build_job(name))
    pending = wait_for(build.get_pending_input, timeout=30, what="the input step to be pending")
    assert pending.raw["message"] == "Proceed with release?"
    describe = build.handle_req("GET", "wfapi/describe").json()
    assert describe["status"] == "PAUSED_PENDING_INPUT"
    assert build.building is True
    pending.submit()  # POST .../input/<id>/proceedEmpty
    finish(build)
    assert build.result == "SUCCESS"
    assert "released" in console(build)
    describe = build.handle_req("GET", "wfapi/describe").json()
    assert [(s["name"], s["status"]) for s in describe["stages"]] == [("Approve", "SUCCESS"), ("Release", "SUCCESS")]


def test_descriptions(aj, unique):
    name = unique("desc")
    aj.create_job(name, config("freestyle"))
    job = aj.get_job(name)
    job.set_description("new job description")  # POST job/X/submitDescription?description=...
    assert job.api_json(tree="description")["description"] == "new job description"
    build = run(aj, name)
    build.set_description("deployed to staging")  # POST job/X/1/submitDescription
    assert build.description == "deployed to staging"


def test_no_test_report(aj, unique):
    name = unique("noreport")
    aj.create_job(name, config("freestyle"))
    build = run(aj, name)
    assert build.get_test_report() is None


def test_wrong_token_is_401(base_url):
    bad = connect(base_url, ("admin", "11" + "f" * 32))
    with pytest.raises(AuthenticationError):
        bad.version  # the crumb request already gets 401


def test_reader_can_read_but_not_create(aj, base_url, reader, unique):
    name = unique("readable")
    aj.create_job(name, config("freestyle"))
    r = connect(base_url, reader)
    assert isinstance(r.get_job(name), FreeStyleProject)
    with pytest.raises(PermissionError):
        r.create_job(unique("forbidden"), config("freestyle"))
    with pytest.raises(PermissionError):
        r.build_job(name)
    with pytest.raises(PermissionError):
        r.delete_job(name)
    assert aj.get_job(name) is not None


def test_unknown_job(aj):
    assert aj.get_job("no-such-job-anywhere") is None
    with pytest.raises(ItemNotFoundError):
        aj.build_job("no-such-job-anywhere")
    assert not Folder(aj, f"{aj.url}job/no-such-folder/").exists()
    with pytest.raises(ItemNotFoundError):
        aj.handle_req("GET", "job/no-such-job-anywhere/api/json")


def test_nobody_cannot_see_jobs(aj, base_url, nobody, unique):
    name = unique("hidden")
    aj.create_job(name, config("freestyle"))
    n = connect(base_url, nobody)
    assert n.get_job(name) is None
    assert list(n.iter()) == []


def test_password_auth_with_crumb_and_session(base_url, admin, unique):
    user, password, _token = admin
    j = Jenkins(base_url, auth=(user, password), timeout=30)
    name = unique("pwjob")
    j.create_job(name, config("freestyle"))
    assert j.http_client.cookies, "the crumb request should have started a session"
    assert run(j, name).result == "SUCCESS"
