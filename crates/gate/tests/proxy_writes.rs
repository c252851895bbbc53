//! Writes through the governed proxy, on the twin: each is the typed operation an MCP client
//! would call, so the policy decides on every name it touches (a rename's old and new name, a
//! view's folder and the job it adds), Java-folded; a hidden job answers exactly like a missing
//! one; a request through a view that does not exist is 404. Attacks first, then the happy path.

use std::sync::Arc;

use gate::audit::Surface;
use gate::catalog::Group;
use gate::policy::Level;
use gate::proxy::{ProxyError, ProxyWrite};
use gate::route::{Route, classify};
use gate::secrets::MasterKey;
use gate::store::{AuditFilter, Store};
use gate::{Admin, Caller, Gate, GateError};
use jenkins_twin::{Twin, TwinServer};
use serde_json::json;

mod common;

const TOKEN: &str = "11bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

const SCENARIO: &str = r#"
[controller]
quiet_period = 0
extra_plugins = ["next-build-number"]
[[folders]]
path = "team"
[[folders]]
path = "sandbox"
[[jobs]]
path = "team/open"
script = "echo open"
[[jobs.builds]]
result = "SUCCESS"
log = "fine"
[[jobs.builds]]
result = "SUCCESS"
log = "fine again"
[[jobs]]
path = "team/secret"
script = "echo secret"
[[jobs.builds]]
result = "SUCCESS"
log = "hidden"
[[jobs]]
path = "team/other"
script = "echo other"
[[jobs]]
path = "sandbox/play"
script = "echo play"
[[jobs]]
path = "team/deploy"
label = "nowhere"
script = "echo deploying"
[[jobs.parameters]]
name = "ENV"
type = "string"
default = "staging"
[[jobs.parameters]]
name = "NOTE"
type = "string"
default = ""
"#;

async fn setup() -> (Arc<Twin>, TwinServer, Arc<Gate>) {
    let (twin, server) =
        jenkins_twin::start(SCENARIO, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let dir = common::temp_dir("proxy-writes");
    let store = Store::open(&dir.join("jgate.db").display().to_string()).await.expect("store");
    let (master, _) =
        MasterKey::load_or_create("JGATE_TEST_UNSET_MASTER_KEY", &dir.join("master.key")).expect("master key");
    let gate = Gate::open(store, master, None).await.expect("gate");
    gate.add_controller(&Admin::local_cli(), common::twin_controller("prod", &server, TOKEN), false)
        .await
        .expect("controller");
    (twin, server, Arc::new(gate))
}

fn caller(agent: &str) -> Caller {
    Caller {
        agent: agent.into(),
        key_id: None,
        surface: Surface::Proxy,
        client_addr: None,
        request_id: "proxy-test".into(),
    }
}

async fn agent(g: &Gate, name: &str, grants: &[(Group, Level, Option<&str>)]) {
    g.create_agent(&Admin::local_cli(), name, "", None).await.expect("agent");
    for (group, level, jobs) in grants {
        g.grant(&Admin::local_cli(), name, *group, *level, None, *jobs, vec![]).await.expect("grant");
    }
}

/// The team agent: sees and changes `team/**` except `team/secret`, which is hidden.
async fn team_agent(g: &Gate) {
    agent(
        g,
        "team-bot",
        &[
            (Group::Status, Level::Read, Some("team/**")),
            (Group::Jobs, Level::Full, Some("team/**")),
            (Group::Config, Level::Full, Some("team/**")),
            (Group::Build, Level::Full, Some("team/**")),
        ],
    )
    .await;
    for group in [Group::Status, Group::Jobs, Group::Config, Group::Build] {
        g.grant(&Admin::local_cli(), "team-bot", group, Level::Off, None, Some("team/secret"), vec![])
            .await
            .expect("carve-out");
    }
}

/// May create, rename and delete anything in `team/**`, but may not see `team/secret`: writing
/// to that name must not tell it whether a job is there.
async fn blind_agent(g: &Gate) {
    agent(
        g,
        "blind-bot",
        &[(Group::Status, Level::Read, Some("team/**")), (Group::Jobs, Level::Full, Some("team/**"))],
    )
    .await;
    g.grant(&Admin::local_cli(), "blind-bot", Group::Status, Level::Off, None, Some("team/secret"), vec![])
        .await
        .expect("carve-out");
}

/// An agent that may do everything (to set up and to look).
async fn root_agent(g: &Gate) {
    let all = [Group::Status, Group::Build, Group::Config, Group::Jobs, Group::Nodes, Group::System];
    let grants: Vec<(Group, Level, Option<&str>)> = all.iter().map(|g| (*g, Level::Full, None)).collect();
    agent(g, "root-bot", &grants).await;
}

/// A proxied write as the surface sends it: the HTTP status the client would see (200 for done).
async fn write(g: &Gate, who: &str, target: &str, form: &[(&str, &str)], body: Option<&str>) -> u16 {
    let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
    let c = match classify("POST", path, query) {
        Route::Op(c) => c,
        other => panic!("POST {target} was not classified: {other:?}"),
    };
    let form: Vec<(String, String)> = form.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    match g.proxy_write(&caller(who), "prod", &c, &form, body.map(str::to_string), &[]).await {
        Ok(ProxyWrite::Done | ProxyWrite::Moved { .. } | ProxyWrite::Queued { .. }) => 200,
        Err(e) => {
            eprintln!("POST {target}: {e:?}");
            status_of(&e)
        }
    }
}

fn status_of(e: &ProxyError) -> u16 {
    match e {
        ProxyError::NotFound => 404,
        ProxyError::Gate(GateError::Denied { .. }) => 403,
        ProxyError::Gate(GateError::Failed { status: Some(s), .. }) => *s,
        ProxyError::Gate(GateError::Invalid(_)) => 400,
        ProxyError::Gate(other) => panic!("unexpected error: {other:?}"),
    }
}

async fn read(g: &Gate, who: &str, target: &str) -> Result<String, u16> {
    let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
    let c = match classify("GET", path, query) {
        Route::Op(c) => c,
        other => panic!("GET {target} was not classified: {other:?}"),
    };
    match g.proxy(&caller(who), "prod", &c).await {
        Ok(answer) => Ok(match answer.body {
            gate::proxy::ProxyBody::Json(v, _) => v.to_string(),
            gate::proxy::ProxyBody::Text(t) => t,
            gate::proxy::ProxyBody::Stream(mut s) => {
                use futures_util::StreamExt;
                let mut out = Vec::new();
                while let Some(chunk) = s.next().await {
                    out.extend_from_slice(&chunk.expect("chunk"));
                }
                String::from_utf8_lossy(&out).into_owned()
            }
        }),
        Err(e) => Err(status_of(&e)),
    }
}

async fn exists(g: &Gate, job: &str) -> bool {
    let r = g.call(&caller("root-bot"), "prod", "get_job", json!({ "job": job })).await;
    match r {
        Ok(_) => true,
        Err(GateError::Failed { status: Some(404), .. }) => false,
        Err(e) => panic!("get_job {job}: {e}"),
    }
}

#[tokio::test]
async fn a_rename_checks_the_old_and_the_new_name_and_never_reveals_a_hidden_job() {
    let (_t, _s, g) = setup().await;
    team_agent(&g).await;
    root_agent(&g).await;
    // Onto the hidden job, in every spelling Jenkins folds together (Java's order: ſ is s), by
    // both of Jenkins' rename actions: 404, exactly as renaming a job that does not exist.
    let missing = write(&g, "team-bot", "/job/team/job/nosuchjob/confirmRename?newName=x", &[], None).await;
    assert_eq!(missing, 404);
    for target in [
        "/job/team/job/open/confirmRename?newName=secret",
        "/job/team/job/open/confirmRename?newName=%C5%BFecret",
        "/job/team/job/open/doRename?newName=SECRET",
        "/job/TEAM/job/OPEN/confirmRename?newName=Secret",
        "/view/all/job/team/job/open/confirmRename?newName=secret",
    ] {
        assert_eq!(write(&g, "team-bot", target, &[], None).await, missing, "{target}");
    }
    // With the right to create there, but not to see: the same 404, never Jenkins' "exists".
    blind_agent(&g).await;
    for new in ["secret", "SECRET", "%C5%BFecret"] {
        let target = format!("/job/team/job/other/confirmRename?newName={new}");
        assert_eq!(write(&g, "blind-bot", &target, &[], None).await, 404, "{new}");
    }
    // The new name in the form rather than the query is the same request.
    assert_eq!(write(&g, "team-bot", "/job/team/job/open/confirmRename", &[("newName", "secret")], None).await, 404);
    // Renaming the hidden job itself: like a missing one.
    assert_eq!(write(&g, "team-bot", "/job/team/job/%C5%BFecret/confirmRename?newName=mine", &[], None).await, 404);
    assert!(exists(&g, "team/secret").await && exists(&g, "team/open").await, "nothing was renamed");
    // Out of the folder: a path is not a name (refused before Jenkins), and '..' never resolves.
    for new in ["..%2Fsandbox%2Fx", "x%2Fy", "%2E%2E", "."] {
        let status = write(&g, "team-bot", &format!("/job/team/job/open/confirmRename?newName={new}"), &[], None).await;
        assert!(matches!(status, 400 | 403 | 404), "{new}: {status}");
    }
    assert!(!exists(&g, "sandbox/x").await && exists(&g, "team/open").await);
    // A name the agent may not create: its jobs grant covers team/open* only.
    agent(
        &g,
        "narrow-bot",
        &[(Group::Status, Level::Read, Some("team/**")), (Group::Jobs, Level::Full, Some("team/open*"))],
    )
    .await;
    assert_eq!(write(&g, "narrow-bot", "/job/team/job/open/confirmRename?newName=other2", &[], None).await, 403);
    assert!(exists(&g, "team/open").await && !exists(&g, "team/other2").await);
    // Allowed: both names in scope. The audit names the old name and says the new one.
    assert_eq!(write(&g, "team-bot", "/job/team/job/open/confirmRename?newName=renamed", &[], None).await, 200);
    assert!(exists(&g, "team/renamed").await && !exists(&g, "team/open").await);
    let records = g
        .audit(&AuditFilter {
            agent: Some("team-bot".into()),
            operation: Some("rename_job".into()),
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    let done = records
        .iter()
        .rev()
        .find(|r| r.entry.allowed && r.entry.outcome.as_deref().is_some_and(|o| o.starts_with("ok")));
    let done = done.expect("an outcome record");
    assert_eq!(done.entry.target.as_deref(), Some("team/open"));
    assert!(done.entry.outcome.as_deref().is_some_and(|o| o.contains("team/renamed")), "{:?}", done.entry.outcome);
    let denied = records.iter().filter(|r| !r.entry.allowed).count();
    assert!(denied >= 6, "every refused rename is on record ({denied})");
}

#[tokio::test]
async fn deleting_a_build_needs_the_jobs_group_and_a_hidden_build_is_missing() {
    let (_t, _s, g) = setup().await;
    team_agent(&g).await;
    root_agent(&g).await;
    agent(&g, "builder", &[(Group::Status, Level::Read, None), (Group::Build, Level::Full, None)]).await;
    // Build rights do not delete history.
    assert_eq!(write(&g, "builder", "/job/team/job/open/1/doDelete", &[], None).await, 403);
    // The hidden job's build, in any spelling, answers like a build of a job that does not exist.
    let missing = write(&g, "team-bot", "/job/team/job/nosuchjob/1/doDelete", &[], None).await;
    assert_eq!(missing, 404);
    for target in ["/job/team/job/secret/1/doDelete", "/job/TEAM/job/%C5%BFECRET/lastBuild/doDelete"] {
        assert_eq!(write(&g, "team-bot", target, &[], None).await, missing, "{target}");
    }
    assert!(read(&g, "root-bot", "/job/team/job/secret/1/api/json").await.is_ok(), "the hidden build is still there");
    // Allowed: the build is gone, its neighbour is not.
    assert_eq!(write(&g, "team-bot", "/job/team/job/open/1/doDelete", &[], None).await, 200);
    assert_eq!(read(&g, "root-bot", "/job/team/job/open/1/api/json").await.err(), Some(404));
    assert!(read(&g, "root-bot", "/job/team/job/open/2/api/json").await.is_ok());
}

#[tokio::test]
async fn descriptions_next_build_numbers_and_workspaces_follow_their_groups() {
    let (_t, _s, g) = setup().await;
    team_agent(&g).await;
    root_agent(&g).await;
    agent(&g, "builder", &[(Group::Status, Level::Read, None), (Group::Build, Level::Full, None)]).await;
    // A description is configuration: build rights are not enough, for the job or a build.
    assert_eq!(write(&g, "builder", "/job/team/job/open/submitDescription?description=x", &[], None).await, 403);
    assert_eq!(
        write(&g, "builder", "/job/team/job/open/2/submitDescription", &[("description", "x")], None).await,
        403
    );
    assert_eq!(write(&g, "team-bot", "/job/team/job/secret/submitDescription?description=x", &[], None).await, 404);
    let ok =
        write(&g, "team-bot", "/job/team/job/open/2/submitDescription", &[("description", "deployed")], None).await;
    assert_eq!(ok, 200);
    let build = read(&g, "root-bot", "/job/team/job/open/2/api/json?tree=description").await.expect("build");
    assert!(build.contains("deployed"), "{build}");
    // The next build number: Jenkins' plugin refuses a bare field (400), and so does jgate,
    // without changing anything; the structured form is served.
    assert_eq!(
        write(&g, "team-bot", "/job/team/job/other/nextbuildnumber/submit", &[("nextBuildNumber", "42")], None).await,
        400
    );
    let json = r#"{"nextBuildNumber": "42"}"#;
    assert_eq!(write(&g, "builder", "/job/team/job/other/nextbuildnumber/submit", &[("json", json)], None).await, 403);
    let job = read(&g, "root-bot", "/job/team/job/other/api/json?tree=nextBuildNumber").await.expect("job");
    assert!(job.contains("\"nextBuildNumber\":1"), "{job}");
    assert_eq!(write(&g, "team-bot", "/job/team/job/other/nextbuildnumber/submit", &[("json", json)], None).await, 200);
    let job = read(&g, "root-bot", "/job/team/job/other/api/json?tree=nextBuildNumber").await.expect("job");
    assert!(job.contains("\"nextBuildNumber\":42"), "{job}");
    // Wiping a workspace is a build-group write.
    agent(&g, "configurer", &[(Group::Status, Level::Read, None), (Group::Config, Level::Full, None)]).await;
    assert_eq!(write(&g, "configurer", "/job/team/job/open/doWipeOutWorkspace", &[], None).await, 403);
    assert_eq!(write(&g, "builder", "/job/team/job/open/doWipeOutWorkspace", &[], None).await, 200);
}

#[tokio::test]
async fn views_are_configuration_of_their_folder_and_never_list_a_hidden_job() {
    let (_t, _s, g) = setup().await;
    team_agent(&g).await;
    root_agent(&g).await;
    let xml = |name: &str, jobs: &[&str]| {
        let names: String = jobs.iter().map(|j| format!("    <string>{j}</string>\n")).collect();
        format!(
            "<?xml version=\"1.1\" encoding=\"UTF-8\"?>\n<hudson.model.ListView>\n  <name>{name}</name>\n  <filterExecutors>false</filterExecutors>\n  <filterQueue>false</filterQueue>\n  <properties class=\"hudson.model.View$PropertyList\"/>\n  <jobNames>\n    <comparator class=\"java.lang.String$CaseInsensitiveComparator\"/>\n{names}  </jobNames>\n  <jobFilters/>\n  <columns/>\n  <recurse>false</recurse>\n</hudson.model.ListView>\n"
        )
    };
    // A root view is configuration of the whole controller: a folder-scoped grant cannot make one.
    assert_eq!(write(&g, "team-bot", "/createView?name=mine", &[], Some(&xml("mine", &[]))).await, 403);
    assert_eq!(
        write(&g, "team-bot", "/createView", &[("name", "mine"), ("mode", "hudson.model.ListView")], None).await,
        403
    );
    // In its folder it may.
    let created = write(&g, "team-bot", "/job/team/createView?name=tv", &[], Some(&xml("tv", &["other"]))).await;
    assert_eq!(created, 200);
    // Adding the hidden job answers as adding one that does not exist does (Jenkins: 400).
    let missing = write(&g, "team-bot", "/job/team/view/tv/addJobToView?name=nosuchjob", &[], None).await;
    assert_eq!(missing, 400);
    for name in ["secret", "SECRET", "%C5%BFecret"] {
        let target = format!("/job/team/view/tv/addJobToView?name={name}");
        assert_eq!(write(&g, "team-bot", &target, &[], None).await, missing, "{name}");
    }
    // A relative path is not a name through jgate.
    assert_eq!(write(&g, "team-bot", "/job/team/view/tv/addJobToView?name=..%2Fsandbox%2Fplay", &[], None).await, 400);
    assert_eq!(write(&g, "team-bot", "/job/team/view/tv/addJobToView?name=open", &[], None).await, 200);
    // A view that lists the hidden job (made by someone who may) shows it to no one who may not
    // see it: not in the view's API, not in its config.xml.
    let root_xml = xml("shared", &["team-secret-alias", "secret", "open"]);
    assert_eq!(write(&g, "root-bot", "/job/team/createView?name=shared", &[], Some(&root_xml)).await, 200);
    let config = read(&g, "team-bot", "/job/team/view/shared/config.xml").await.expect("view config");
    assert!(config.contains("<string>open</string>") && !config.contains("<string>secret</string>"), "{config}");
    let full = read(&g, "root-bot", "/job/team/view/shared/config.xml").await.expect("view config");
    assert!(full.contains("<string>secret</string>"), "{full}");
    // Deleting: folder-scoped for a folder's view; the root's views need a grant on all jobs.
    assert_eq!(write(&g, "team-bot", "/view/all/doDelete", &[], None).await, 403);
    assert_eq!(write(&g, "team-bot", "/job/team/view/tv/doDelete", &[], None).await, 200);
    assert_eq!(read(&g, "root-bot", "/job/team/view/tv/api/json").await.err(), Some(404));
    // Another agent's folder: the sandbox is not the team's.
    assert_eq!(write(&g, "team-bot", "/job/sandbox/createView?name=x", &[], Some(&xml("x", &[]))).await, 404);
}

#[tokio::test]
async fn a_view_that_does_not_exist_is_not_found_for_reads_and_writes() {
    let (_t, _s, g) = setup().await;
    root_agent(&g).await;
    assert!(read(&g, "root-bot", "/view/all/job/team/job/open/api/json").await.is_ok());
    assert_eq!(read(&g, "root-bot", "/view/nope/job/team/job/open/api/json").await.err(), Some(404));
    assert_eq!(read(&g, "root-bot", "/view/nope/job/team/job/open/1/consoleText").await.err(), Some(404));
    assert_eq!(write(&g, "root-bot", "/view/nope/job/team/job/open/disable", &[], None).await, 404);
    let job = read(&g, "root-bot", "/job/team/job/open/api/json?tree=buildable").await.expect("job");
    assert!(job.contains("\"buildable\":true"), "the write through a missing view did nothing: {job}");
    assert_eq!(write(&g, "root-bot", "/view/all/job/team/job/open/disable", &[], None).await, 200);
}

#[tokio::test]
async fn form_mode_creation_is_a_creation_of_the_name_in_the_query() {
    let (_t, _s, g) = setup().await;
    team_agent(&g).await;
    root_agent(&g).await;
    let folder = [("mode", "com.cloudbees.hudson.plugins.folder.Folder")];
    // The root is not the team's; a name in the form (python-jenkins sends the full name there)
    // does not change which item is created.
    // (A name at the root is one it may not even see: answered like a missing item.)
    assert_eq!(write(&g, "team-bot", "/createItem?name=sub", &folder, None).await, 404);
    let form = [("name", "sandbox/evil"), ("mode", "com.cloudbees.hudson.plugins.folder.Folder")];
    assert_eq!(write(&g, "team-bot", "/job/team/createItem?name=sub", &form, None).await, 200);
    assert!(exists(&g, "team/sub").await && !exists(&g, "sandbox/evil").await);
    let info = read(&g, "root-bot", "/job/team/job/sub/api/json?tree=_class").await.expect("folder");
    assert!(info.contains("folder.Folder"), "{info}");
    // Onto the hidden job's name (the agent has jobs full use on team/**): Jenkins' "already
    // exists" would tell it the job is there, so it answers like a missing item, in every
    // spelling, for a creation from config.xml and a copy alike; a visible duplicate is
    // Jenkins' own 400.
    for target in ["/job/team/createItem?name=secret", "/job/TEAM/createItem?name=%C5%BFECRET"] {
        assert_eq!(write(&g, "team-bot", target, &folder, None).await, 404, "{target}");
    }
    let xml = "<project><builders/></project>";
    assert_eq!(write(&g, "team-bot", "/job/team/createItem?name=Secret", &[], Some(xml)).await, 404);
    assert_eq!(write(&g, "team-bot", "/job/team/createItem?name=secret&mode=copy&from=other", &[], None).await, 404);
    blind_agent(&g).await;
    for target in ["/job/team/createItem?name=secret", "/job/team/createItem?name=secret&mode=copy&from=other"] {
        assert_eq!(write(&g, "blind-bot", target, &folder, None).await, 404, "{target}");
    }
    let status = write(&g, "team-bot", "/job/team/createItem?name=other", &folder, None).await;
    assert_eq!(status, 400, "a duplicate the agent may see is Jenkins' 400");
    // Unknown item types are Jenkins' to refuse.
    assert_eq!(write(&g, "team-bot", "/job/team/createItem?name=z&mode=no.such.Type", &[], None).await, 400);
}

#[tokio::test]
async fn a_trigger_jenkins_refuses_keeps_jenkins_status_as_data() {
    let (_t, _s, g) = setup().await;
    root_agent(&g).await;
    assert_eq!(write(&g, "root-bot", "/job/team/job/other/disable", &[], None).await, 200);
    // Disabled: Jenkins' 409, carried from the wire client's error, not read out of its text.
    assert_eq!(write(&g, "root-bot", "/job/team/job/other/build", &[], None).await, 409);
    let records = g
        .audit(&AuditFilter {
            agent: Some("root-bot".into()),
            operation: Some("trigger_build".into()),
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert!(records.iter().any(|r| r.entry.http_status == Some(409)), "the outcome record keeps the status");
    // Not parameterized: Jenkins' 400.
    assert_eq!(write(&g, "root-bot", "/job/team/job/other/enable", &[], None).await, 200);
    assert_eq!(write(&g, "root-bot", "/job/team/job/other/buildWithParameters?X=1", &[], None).await, 400);
}

/// A trigger with file parameters (multipart): the files' content is checked under the grant's
/// constraints like any value, so a constrained parameter cannot be smuggled in as a file.
#[tokio::test]
async fn file_parameters_pass_the_same_constraints_as_fields() {
    let (_t, _s, g) = setup().await;
    root_agent(&g).await;
    g.create_agent(&Admin::local_cli(), "deployer", "", None).await.expect("agent");
    g.grant(&Admin::local_cli(), "deployer", Group::Status, Level::Read, None, None, vec![]).await.expect("grant");
    let only_staging = gate::policy::ParamConstraint {
        name: "ENV".into(),
        rule: gate::policy::ParamRule::OneOf(vec!["staging".into()]),
    };
    g.grant(&Admin::local_cli(), "deployer", Group::Build, Level::Full, None, Some("team/**"), vec![only_staging])
        .await
        .expect("grant");
    let c = match classify("POST", "/job/team/job/deploy/buildWithParameters", None) {
        Route::Op(c) => c,
        other => panic!("{other:?}"),
    };
    let file = |name: &str, content: &str| jenkins::FilePart {
        name: name.into(),
        file_name: "env.txt".into(),
        content: content.as_bytes().to_vec(),
    };
    let fields = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    let who = caller("deployer");
    // ENV as a file whose content is outside the constraint: denied, whatever the field says.
    for (form, files) in [
        (fields(&[]), vec![file("ENV", "production")]),
        (fields(&[("ENV", "staging")]), vec![file("ENV", "production")]),
        (fields(&[("ENV", "staging")]), vec![file("env", "production")]),
        (fields(&[("ENV", "staging")]), vec![file("ENV", "staging\n")]),
    ] {
        let r = g.proxy_write(&who, "prod", &c, &form, None, &files).await;
        assert!(matches!(r, Err(ProxyError::Gate(GateError::Denied { .. }))), "{form:?} {files:?}: {r:?}");
    }
    // Within the constraint: queued; the fields reached Jenkins in the multipart body.
    let r = g.proxy_write(&who, "prod", &c, &fields(&[("ENV", "staging")]), None, &[file("NOTE", "hello")]).await;
    let Ok(ProxyWrite::Queued { queue_id }) = r else { panic!("{r:?}") };
    let item = read(&g, "root-bot", &format!("/queue/item/{queue_id}/api/json")).await.expect("queue item");
    assert!(item.contains("\"ENV\"") && item.contains("\"staging\""), "{item}");
    // Files go only with buildWithParameters.
    let other = match classify("POST", "/job/team/job/deploy/config.xml", None) {
        Route::Op(c) => c,
        other => panic!("{other:?}"),
    };
    let r = g.proxy_write(&caller("root-bot"), "prod", &other, &[], Some("<x/>".into()), &[file("a", "b")]).await;
    assert!(matches!(r, Err(ProxyError::Gate(GateError::Invalid(_)))), "{r:?}");
}

#[tokio::test]
async fn answering_an_input_step_is_a_build_write_and_a_hidden_job_is_missing() {
    let (_t, _s, g) = setup().await;
    team_agent(&g).await;
    agent(&g, "configurer", &[(Group::Status, Level::Read, None), (Group::Config, Level::Full, None)]).await;
    for action in ["proceedEmpty", "proceed", "abort"] {
        let target = format!("/job/team/job/open/1/input/Approve/{action}");
        assert_eq!(write(&g, "configurer", &target, &[], None).await, 403, "{target}");
        let missing =
            write(&g, "team-bot", &format!("/job/team/job/nosuchjob/1/input/Approve/{action}"), &[], None).await;
        assert_eq!(missing, 404);
        for job in ["secret", "SECRET", "%C5%BFecret"] {
            let target = format!("/job/team/job/{job}/1/input/Approve/{action}");
            assert_eq!(write(&g, "team-bot", &target, &[], None).await, missing, "{target}");
        }
    }
}
