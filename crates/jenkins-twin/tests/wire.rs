//! Wire-level tests of the twin: status codes, headers, key order against real captures, the
//! queue life cycle, crumbs, permissions, consoles, wfapi, notifications and faults.

use std::time::Duration;

use jenkins_twin::{Twin, TwinServer, scenario};
use reqwest::{Client, StatusCode};
use serde_json::Value;

const ADMIN: (&str, &str, &str) = ("admin", "adminpass", "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");

const BASE_SCENARIO: &str = r#"
[controller]
quiet_period = 0

[[users]]
name = "reader"
password = "readerpass"
token = "11bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
permissions = ["Overall/Read", "Job/Read"]

[[users]]
name = "nobody"
password = "nobodypass"
token = "11cccccccccccccccccccccccccccccccc"
permissions = ["Overall/Read"]

[[folders]]
path = "team"

[[jobs]]
path = "team/api"
script = "echo hello from $JOB_NAME build $BUILD_NUMBER"
[[jobs.builds]]
result = "SUCCESS"
[[jobs.builds]]
result = "FAILURE"

[[jobs]]
path = "param"
script = "echo ENV=$ENV"
[[jobs.parameters]]
name = "ENV"
type = "choice"
choices = ["dev", "prod"]

[[jobs]]
path = "slow"
script = "echo start\nsleep 30\necho end"

[[jobs]]
path = "off"
disabled = true
"#;

async fn start(toml: &str) -> (TwinServer, Client, String) {
    let admins = [(ADMIN.0.to_string(), ADMIN.1.to_string(), ADMIN.2.to_string())];
    let (_twin, server) = jenkins_twin::start(toml, &admins).await.expect("twin serves");
    let client = Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let base = server.url();
    (server, client, base)
}

async fn get_json(c: &Client, url: &str) -> Value {
    let r = c.get(url).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::OK, "GET {url}");
    r.json().await.expect("json body")
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

/// Every key of the capture must exist in the twin's object (except the listed, version-dependent
/// ones), and the keys both have must come in the same order.
fn assert_key_order(what: &str, twin: &Value, capture: &Value, not_modelled: &[&str]) {
    let tk = keys(twin);
    let ck: Vec<String> = keys(capture).into_iter().filter(|k| !not_modelled.contains(&k.as_str())).collect();
    for k in &ck {
        assert!(tk.contains(k), "{what}: the capture has key `{k}` the twin lacks; twin keys: {tk:?}");
    }
    let common: Vec<&String> = tk.iter().filter(|k| ck.contains(k)).collect();
    let capture_order: Vec<&String> = ck.iter().collect();
    assert_eq!(common, capture_order, "{what}: key order differs from the real capture");
}

fn fixture(path: &str) -> Option<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/real");
    match std::fs::read_to_string(dir.join(path)) {
        Ok(text) => Some(serde_json::from_str(&text).expect("fixture is JSON")),
        Err(_) if std::env::var_os("CI").is_none() => None,
        Err(e) => panic!("fixture {path} missing under CI (shared/ must sit beside the clone): {e}"),
    }
}

async fn wait_for_build(c: &Client, location: &str) -> u64 {
    for _ in 0..200 {
        let item = get_json(c, &format!("{location}api/json")).await;
        if let Some(n) = item["executable"]["number"].as_u64() {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("queue item {location} never started a build");
}

async fn wait_done(c: &Client, build_url: &str) -> Value {
    for _ in 0..400 {
        let b = get_json(c, &format!("{build_url}api/json")).await;
        if b["building"] == Value::Bool(false) {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("build {build_url} did not finish");
}

async fn trigger(c: &Client, url: &str) -> String {
    let r = c.post(url).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("trigger");
    assert_eq!(r.status(), StatusCode::CREATED, "POST {url}");
    r.headers()["location"].to_str().expect("ascii").to_string()
}

#[tokio::test]
async fn api_headers_and_root_shape() {
    let (_s, c, base) = start(BASE_SCENARIO).await;
    let r = c.get(format!("{base}/api/json")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("req");
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["content-type"], "application/json;charset=utf-8");
    assert_eq!(h["x-jenkins"], "2.541.2");
    assert_eq!(h["x-jenkins-session"].len(), 8);
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "deny");
    let body = r.text().await.expect("body");
    assert!(
        body.starts_with(r#"{"_class":"hudson.model.Hudson","assignedLabels":[{"name":"built-in"}],"mode":"NORMAL","#),
        "{body}"
    );
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        keys(&v),
        [
            "_class",
            "assignedLabels",
            "mode",
            "nodeDescription",
            "nodeName",
            "numExecutors",
            "description",
            "jobs",
            "overallLoad",
            "primaryView",
            "quietDownReason",
            "quietingDown",
            "slaveAgentPort",
            "unlabeledLoad",
            "url",
            "useCrumbs",
            "useSecurity",
            "views"
        ]
    );
    // Folders have no color; jobs do.
    let jobs = v["jobs"].as_array().expect("jobs");
    let team = jobs.iter().find(|j| j["name"] == "team").expect("team folder");
    assert!(team.get("color").is_none());
    assert!(jobs.iter().find(|j| j["name"] == "param").expect("param")["color"].is_string());
    if let Some(cap) = fixture("joelee2012__api4jenkins/jenkins.json") {
        assert_key_order("root", &v, &cap, &[]);
    }
    // Pretty, python and xml flavours.
    let pretty =
        c.get(format!("{base}/api/json?pretty=true")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("req");
    assert!(
        pretty
            .text()
            .await
            .expect("t")
            .starts_with("{\n  \"_class\" : \"hudson.model.Hudson\",\n  \"assignedLabels\" : [\n    {\n")
    );
    let py = c.get(format!("{base}/api/python")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("req");
    assert_eq!(py.headers()["content-type"], "text/x-python;charset=utf-8");
    assert!(py.text().await.expect("t").contains(r#""quietingDown":False"#));
    let xml = c.get(format!("{base}/api/xml")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("req");
    assert!(
        xml.text()
            .await
            .expect("t")
            .starts_with("<hudson _class='hudson.model.Hudson'><assignedLabel><name>built-in</name></assignedLabel>")
    );
    // Bad depth and tree → 500; jsonp → 403.
    for (q, code) in [("depth=abc", 500), ("tree=jobs[name", 500), ("jsonp=cb", 403)] {
        let r = c.get(format!("{base}/api/json?{q}")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("req");
        assert_eq!(r.status().as_u16(), code, "{q}");
    }
}

#[tokio::test]
async fn tree_and_depth() {
    let (_s, c, base) = start(BASE_SCENARIO).await;
    let v = get_json(&c, &format!("{base}/job/team/job/api/api/json?tree=builds[number,result]{{0,1}},name")).await;
    // Stapler writes in model order (AbstractItem's `name` before Job's `builds`), not tree order.
    assert_eq!(
        v.to_string(),
        r#"{"_class":"hudson.model.FreeStyleProject","name":"api","builds":[{"_class":"hudson.model.FreeStyleBuild","number":2,"result":"FAILURE"}]}"#
    );
    let v = get_json(&c, &format!("{base}/job/team/job/api/api/json?tree=allBuilds[number]")).await;
    assert_eq!(v["allBuilds"].as_array().map(Vec::len), Some(2));
    let v = get_json(&c, &format!("{base}/job/team/job/api/api/json")).await;
    assert!(v.get("allBuilds").is_none(), "allBuilds has visibility -2");
    assert_eq!(keys(&v["lastBuild"]), ["_class", "number", "url"]);
    let deep = get_json(&c, &format!("{base}/job/team/job/api/api/json?depth=1")).await;
    assert!(deep["lastBuild"]["result"].is_string(), "depth=1 shows nested build fields");
    // A bare child prints only _class.
    let v = get_json(&c, &format!("{base}/api/json?tree=jobs")).await;
    assert!(v["jobs"].as_array().expect("jobs").iter().all(|j| keys(j) == ["_class"]));
}

#[tokio::test]
async fn job_and_build_key_order_match_real_captures() {
    let (_s, c, base) = start(BASE_SCENARIO).await;
    let build = get_json(&c, &format!("{base}/job/team/job/api/1/api/json")).await;
    if let Some(cap) = fixture("joelee2012__api4jenkins/freestylebuild.json") {
        assert_key_order("FreeStyleBuild", &build, &cap, &[]);
    }
    let job = get_json(&c, &format!("{base}/job/param/api/json")).await;
    if let Some(cap) = fixture("cdancy__jenkins-rest/job-info.json") {
        assert_key_order("FreeStyleProject", &job, &cap, &[]);
    }
    let defs = &job["property"][0]["parameterDefinitions"][0];
    assert_eq!(defs["_class"], "hudson.model.ChoiceParameterDefinition");
    assert_eq!(defs["defaultParameterValue"]["value"], "dev");
    assert_eq!(
        job["actions"][0]["parameterDefinitions"][0]["defaultParameterValue"].get("name"),
        None,
        "one level deeper: only value"
    );
    let folder = get_json(&c, &format!("{base}/job/team/api/json")).await;
    if let Some(cap) = fixture("joelee2012__api4jenkins/folder.json") {
        assert_key_order("Folder", &folder, &cap, &[]);
    }
    assert_eq!(folder["primaryView"]["name"], "All");
    let nodes = get_json(&c, &format!("{base}/computer/api/json")).await;
    assert_eq!(nodes["computer"][0]["_class"], "hudson.model.Hudson$MasterComputer");
    assert_eq!(nodes["computer"][0]["displayName"], "Built-In Node");
    if let Some(cap) = fixture("joelee2012__api4jenkins/nodes.json") {
        assert_key_order("ComputerSet", &nodes, &cap, &[]);
        assert_key_order("MasterComputer", &nodes["computer"][0], &cap["computer"][0], &[]);
    }
    let builtin = get_json(&c, &format!("{base}/computer/(built-in)/api/json")).await;
    assert_eq!(builtin["executors"].as_array().map(Vec::len), Some(2));
    let legacy = c
        .get(format!("{base}/computer/(master)/api/json"))
        .basic_auth(ADMIN.0, Some(ADMIN.2))
        .send()
        .await
        .expect("req");
    assert_eq!(legacy.status(), 200);
}

#[tokio::test]
async fn queue_life_cycle_and_exact_build_mapping() {
    let (_s, c, base) = start(BASE_SCENARIO).await;
    let loc = trigger(&c, &format!("{base}/job/team/job/api/build")).await;
    assert!(loc.starts_with(&format!("{base}/queue/item/")) && loc.ends_with('/'), "{loc}");
    let number = wait_for_build(&c, &loc).await;
    assert_eq!(number, 3);
    let item = get_json(&c, &format!("{loc}api/json")).await;
    assert_eq!(item["_class"], "hudson.model.Queue$LeftItem");
    assert_eq!(item["cancelled"], false);
    if let Some(cap) = fixture("cdancy__jenkins-rest/queueItemRunning.json") {
        assert_key_order("LeftItem", &item, &cap, &[]);
    }
    let build = wait_done(&c, &format!("{base}/job/team/job/api/{number}/")).await;
    assert_eq!(build["queueId"], item["id"], "the build's queueId is the queue item's id");
    assert_eq!(build["result"], "SUCCESS");
    let text = c
        .get(format!("{base}/job/team/job/api/{number}/consoleText"))
        .basic_auth(ADMIN.0, Some(ADMIN.2))
        .send()
        .await
        .expect("r");
    assert_eq!(text.headers()["content-type"], "text/plain;charset=UTF-8");
    let text = text.text().await.expect("t");
    assert!(text.starts_with("Started by user admin\n"), "{text}");
    assert!(text.contains("hello from team/api build 3"), "{text}");
    assert!(text.ends_with("Finished: SUCCESS\n"), "{text}");
    // Permalinks.
    for (alias, n) in [("lastBuild", 3), ("lastFailedBuild", 2), ("lastSuccessfulBuild", 3), ("lastCompletedBuild", 3)]
    {
        let b = get_json(&c, &format!("{base}/job/team/job/api/{alias}/api/json?tree=number")).await;
        assert_eq!(b["number"], n, "{alias}");
    }
    let missing = c
        .get(format!("{base}/job/team/job/api/lastUnstableBuild/api/json"))
        .basic_auth(ADMIN.0, Some(ADMIN.2))
        .send()
        .await
        .expect("r");
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn queue_waiting_cancel_and_expiry() {
    let toml = BASE_SCENARIO.replace("quiet_period = 0", "quiet_period = 3600\ntime_scale = 1.0");
    let (_s, c, base) = start(&toml).await;
    let loc = trigger(&c, &format!("{base}/job/slow/build")).await;
    let item = get_json(&c, &format!("{loc}api/json")).await;
    assert_eq!(item["_class"], "hudson.model.Queue$WaitingItem");
    assert!(item["why"].as_str().is_some_and(|w| w.starts_with("In the quiet period. Expires in ")), "{item}");
    // A second trigger returns the same item (201).
    let again = trigger(&c, &format!("{base}/job/slow/build")).await;
    assert_eq!(again, loc);
    let id = item["id"].as_u64().expect("id");
    let get =
        c.post(format!("{base}/queue/cancelItem?id={id}")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("r");
    assert_eq!(get.status(), 204);
    let left = get_json(&c, &format!("{loc}api/json")).await;
    assert_eq!(left["cancelled"], true);
    assert_eq!(left["executable"], Value::Null);
    let again =
        c.post(format!("{base}/queue/cancelItem?id={id}")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("r");
    assert_eq!(again.status(), 404);
    let get =
        c.get(format!("{base}/queue/cancelItem?id={id}")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("r");
    assert_eq!(get.status(), 405);
    // Left items expire after 5 (twin) minutes.
    let fast = BASE_SCENARIO.replace("quiet_period = 0", "quiet_period = 0\ntime_scale = 2000.0");
    let (_s2, c2, base2) = start(&fast).await;
    let loc2 = trigger(&c2, &format!("{base2}/job/team/job/api/build")).await;
    let _ = wait_for_build(&c2, &loc2).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let gone = c2.get(format!("{loc2}api/json")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("r");
    assert_eq!(gone.status(), 404);
}

#[tokio::test]
async fn trigger_status_codes() {
    let (_s, c, base) = start(BASE_SCENARIO).await;
    let post = |path: &str| c.post(format!("{base}{path}")).basic_auth(ADMIN.0, Some(ADMIN.2)).send();
    assert_eq!(post("/job/off/build").await.expect("r").status(), 409);
    assert_eq!(post("/job/team/job/api/buildWithParameters").await.expect("r").status(), 400);
    assert_eq!(post("/job/param/build").await.expect("r").status(), 400, "no json form field");
    let r = c.get(format!("{base}/job/team/job/api/build")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("r");
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert_eq!(post("/job/param/buildWithParameters?ENV=staging").await.expect("r").status(), 500, "illegal choice");
    let loc = trigger(&c, &format!("{base}/job/param/buildWithParameters?ENV=prod")).await;
    let n = wait_for_build(&c, &loc).await;
    let b = wait_done(&c, &format!("{base}/job/param/{n}/")).await;
    assert_eq!(b["actions"][0]["parameters"][0]["value"], "prod");
    let log =
        c.get(format!("{base}/job/param/{n}/consoleText")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("r");
    assert!(log.text().await.expect("t").contains("ENV=prod"));
}

#[tokio::test]
async fn authentication_and_permissions() {
    let (_s, c, base) = start(BASE_SCENARIO).await;
    let r = c.get(format!("{base}/api/json")).basic_auth("admin", Some("wrong")).send().await.expect("r");
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"Jenkins\"");
    let r = c.get(format!("{base}/api/json")).send().await.expect("r");
    assert_eq!(r.status(), 403, "anonymous gets 403, not 401");
    assert_eq!(r.headers()["x-you-are-authenticated-as"], "anonymous");
    assert_eq!(r.headers()["x-required-permission"], "hudson.model.Hudson.Read");
    assert!(r.text().await.expect("t").contains("Authentication required"));
    let r = c
        .post(format!("{base}/createItem?name=x"))
        .basic_auth("reader", Some("11bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"))
        .header("Content-Type", "application/xml")
        .body("<project/>")
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-required-permission"], "hudson.model.Item.Create");
    assert!(r.text().await.expect("t").contains("reader is missing the Job/Create permission"));
    let r = c
        .get(format!("{base}/job/team/api/json"))
        .basic_auth("nobody", Some("11cccccccccccccccccccccccccccccccc"))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 404, "items a user cannot see do not exist");
    let root = c
        .get(format!("{base}/api/json"))
        .basic_auth("nobody", Some("11cccccccccccccccccccccccccccccccc"))
        .send()
        .await
        .expect("r");
    let root: Value = root.json().await.expect("json");
    assert_eq!(root["jobs"], Value::Array(vec![]));
    let who: Value = c.get(format!("{base}/whoAmI/api/json")).send().await.expect("r").json().await.expect("json");
    assert_eq!(who["name"], "anonymous");
    assert_eq!(who["anonymous"], true);
}

#[tokio::test]
async fn crumbs_for_password_sessions() {
    let (_s, _c, base) = start(BASE_SCENARIO).await;
    let c = Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let url = format!("{base}/job/team/job/api/build");
    let r = c.post(&url).basic_auth(ADMIN.0, Some(ADMIN.1)).send().await.expect("r");
    assert_eq!(r.status(), 403);
    assert!(r.text().await.expect("t").contains("No valid crumb was included in the request"));
    let crumb =
        c.get(format!("{base}/crumbIssuer/api/json")).basic_auth(ADMIN.0, Some(ADMIN.1)).send().await.expect("r");
    assert!(crumb.headers()["set-cookie"].to_str().expect("ascii").starts_with("JSESSIONID."));
    let crumb: Value = crumb.json().await.expect("json");
    assert_eq!(crumb["_class"], "hudson.security.csrf.DefaultCrumbIssuer");
    assert_eq!(crumb["crumbRequestField"], "Jenkins-Crumb");
    let value = crumb["crumb"].as_str().expect("crumb").to_string();
    assert_eq!(value.len(), 64);
    let r = c.post(&url).basic_auth(ADMIN.0, Some(ADMIN.1)).header("Jenkins-Crumb", &value).send().await.expect("r");
    assert_eq!(r.status(), 201);
    // The same crumb without the session cookie is refused: it is bound to the session.
    let fresh = Client::new();
    let r =
        fresh.post(&url).basic_auth(ADMIN.0, Some(ADMIN.1)).header("Jenkins-Crumb", &value).send().await.expect("r");
    assert_eq!(r.status(), 403);
    // API tokens need no crumb.
    let r = fresh.post(&url).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("r");
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn create_copy_config_delete() {
    let (_s, c, base) = start(BASE_SCENARIO).await;
    let auth = |rb: reqwest::RequestBuilder| rb.basic_auth(ADMIN.0, Some(ADMIN.2));
    let xml = "<?xml version='1.1' encoding='UTF-8'?>\n<project><description>made</description><builders><hudson.tasks.Shell><command>echo made</command></hudson.tasks.Shell></builders></project>";
    let r = auth(
        c.post(format!("{base}/job/team/createItem?name=made")).header("Content-Type", "application/xml").body(xml),
    )
    .send()
    .await
    .expect("r");
    assert_eq!(r.status(), 200);
    let r = auth(
        c.post(format!("{base}/job/team/createItem?name=made")).header("Content-Type", "application/xml").body(xml),
    )
    .send()
    .await
    .expect("r");
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-error"].as_bytes(), "A job already exists with the name ‘made’".as_bytes());
    let r = auth(c.post(format!("{base}/createItem?name=a%3Fb")).header("Content-Type", "application/xml").body(xml))
        .send()
        .await
        .expect("r");
    assert_eq!(r.headers()["x-error"].as_bytes(), "‘?’ is an unsafe character".as_bytes());
    let r = auth(c.post(format!("{base}/createItem?name=nobody-type"))).send().await.expect("r");
    assert_eq!(r.headers()["x-error"], "No Content-Type header set");
    let got = auth(c.get(format!("{base}/job/team/job/made/config.xml"))).send().await.expect("r");
    assert_eq!(got.headers()["content-type"], "application/xml");
    assert_eq!(got.text().await.expect("t"), xml, "config.xml is returned as stored (Jenkins < 2.568)");
    let r = auth(c.post(format!("{base}/createItem?name=copy&mode=copy&from=team/made"))).send().await.expect("r");
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], format!("{base}/job/copy/configure").as_str());
    let r = auth(c.post(format!("{base}/createItem?name=f2&mode=com.cloudbees.hudson.plugins.folder.Folder")))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 302);
    let f2 = get_json(&c, &format!("{base}/job/f2/api/json")).await;
    assert_eq!(f2["_class"], "com.cloudbees.hudson.plugins.folder.Folder");
    let r = auth(c.post(format!("{base}/job/copy/disable"))).send().await.expect("r");
    assert_eq!(r.status(), 302);
    let copy = get_json(&c, &format!("{base}/job/copy/api/json?tree=color,buildable")).await;
    assert_eq!(copy["color"], "disabled");
    let r = auth(c.post(format!("{base}/job/copy/doDelete"))).send().await.expect("r");
    assert_eq!(r.status(), 302);
    let r = auth(c.delete(format!("{base}/job/team/job/made/"))).send().await.expect("r");
    assert_eq!(r.status(), 204);
    let r = auth(c.get(format!("{base}/job/team/job/made/api/json"))).send().await.expect("r");
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn progressive_text_and_stop() {
    let (_s, c, base) = start(BASE_SCENARIO).await;
    let loc = trigger(&c, &format!("{base}/job/slow/build")).await;
    let n = wait_for_build(&c, &loc).await;
    let url = format!("{base}/job/slow/{n}/");
    let mut saw_more = false;
    for _ in 0..100 {
        let r = c
            .get(format!("{url}logText/progressiveText?start=0"))
            .basic_auth(ADMIN.0, Some(ADMIN.2))
            .send()
            .await
            .expect("r");
        let size: u64 = r.headers()["x-text-size"].to_str().expect("a").parse().expect("n");
        saw_more = r.headers().get("x-more-data").is_some_and(|v| v == "true");
        let body = r.text().await.expect("t");
        assert_eq!(size, body.len() as u64);
        if body.contains("start") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_more, "a running build sends X-More-Data: true");
    let r = c.post(format!("{url}stop")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("r");
    assert_eq!(r.status(), 302);
    let b = wait_done(&c, &url).await;
    assert_eq!(b["result"], "ABORTED");
    let r = c
        .get(format!("{url}logText/progressiveText?start=999999"))
        .basic_auth(ADMIN.0, Some(ADMIN.2))
        .send()
        .await
        .expect("r");
    assert!(r.headers().get("x-more-data").is_none(), "finished builds have no X-More-Data");
    let body = r.text().await.expect("t");
    assert!(body.starts_with("Started by user admin"), "start past the end restarts from 0");
    assert!(body.contains("Aborted by admin") && body.ends_with("Finished: ABORTED\n"), "{body}");
}

#[tokio::test]
async fn gigabyte_log_is_served_without_holding_it() {
    let toml = r#"
[[jobs]]
path = "huge"
[[jobs.builds]]
result = "SUCCESS"
log_bytes = 1073741824
"#;
    let (_s, c, base) = start(toml).await;
    let r = c.get(format!("{base}/job/huge/1/consoleText")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("r");
    let len: u64 = r.headers()["content-length"].to_str().expect("a").parse().expect("n");
    assert!(len > 1 << 30);
    drop(r);
    let r = c
        .get(format!("{base}/job/huge/1/logText/progressiveText?start={}", len - 100))
        .basic_auth(ADMIN.0, Some(ADMIN.2))
        .send()
        .await
        .expect("r");
    assert_eq!(r.headers()["x-text-size"], len.to_string().as_str());
    let tail = r.text().await.expect("t");
    assert!(tail.ends_with("Finished: SUCCESS\n"), "{tail}");
}

#[tokio::test]
async fn wfapi_and_its_absence() {
    let toml = r#"
[[jobs]]
path = "pipe"
kind = "pipeline"
[[jobs.builds]]
result = "FAILURE"
stages = [{ name = "Build", duration_ms = 1000 }, { name = "Test", status = "FAILED", error = "script returned exit code 1" }]
"#;
    let (_s, c, base) = start(toml).await;
    let runs = get_json(&c, &format!("{base}/job/pipe/wfapi/runs")).await;
    let run = &runs[0];
    assert_eq!(
        keys(run),
        [
            "_links",
            "id",
            "name",
            "status",
            "startTimeMillis",
            "endTimeMillis",
            "durationMillis",
            "queueDurationMillis",
            "pauseDurationMillis",
            "stages"
        ]
    );
    assert_eq!(run["status"], "FAILED");
    assert_eq!(run["stages"][1]["status"], "FAILED");
    assert_eq!(run["stages"][1]["error"]["message"], "script returned exit code 1");
    assert_eq!(
        keys(&run["stages"][0]),
        ["_links", "id", "name", "execNode", "status", "startTimeMillis", "durationMillis", "pauseDurationMillis"]
    );
    let id = run["stages"][1]["id"].as_str().expect("id");
    let log = get_json(&c, &format!("{base}/job/pipe/1/execution/node/{id}/wfapi/log")).await;
    assert_eq!(log["nodeStatus"], "FAILED");
    let without = toml.replace("[[jobs]]", "[controller]\nremove_plugins = [\"pipeline-rest-api\"]\n\n[[jobs]]");
    let (_s2, c2, base2) = start(&without).await;
    let r = c2
        .get(format!("{base2}/job/pipe/1/wfapi/describe"))
        .basic_auth(ADMIN.0, Some(ADMIN.2))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 404, "no pipeline-rest-api plugin, no wfapi");
}

#[tokio::test]
async fn multibranch_names_are_encoded_twice_in_urls() {
    let toml = r#"
[[folders]]
path = "shop"
multibranch = true
[[jobs]]
path = "shop/feature/x"
branch_of = "shop"
kind = "pipeline"
[[jobs]]
path = "my job é"
"#;
    let (_s, c, base) = start(toml).await;
    let mb = get_json(&c, &format!("{base}/job/shop/api/json")).await;
    assert_eq!(mb["_class"], "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject");
    assert_eq!(mb["jobs"][0]["name"], "feature%2Fx");
    assert_eq!(mb["jobs"][0]["url"], format!("{base}/job/shop/job/feature%252Fx/"));
    let branch = get_json(&c, &format!("{base}/job/shop/job/feature%252Fx/api/json")).await;
    assert_eq!(branch["displayName"], "feature/x");
    assert_eq!(branch["fullDisplayName"], "shop » feature/x");
    let odd = get_json(&c, &format!("{base}/job/my%20job%20%C3%A9/api/json")).await;
    assert_eq!(odd["url"], format!("{base}/job/my%20job%20%C3%A9/"));
}

#[tokio::test]
async fn notification_plugin_posts_every_phase() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(8);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                loop {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
                            let _ = tx.send(body.to_string()).await;
                            break;
                        }
                    }
                }
            });
        }
    });
    let toml = format!(
        "[controller]\nquiet_period = 0\nextra_plugins = [\"notification\"]\n[[jobs]]\npath = \"n\"\nscript = \"echo hi\"\n[[jobs.notifications]]\nurl = \"http://{addr}/hook\"\n"
    );
    let (_s, c, base) = start(&toml).await;
    let _ = trigger(&c, &format!("{base}/job/n/build")).await;
    let mut phases = Vec::new();
    for _ in 0..4 {
        let body = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("notification in time")
            .expect("body");
        let v: Value = serde_json::from_str(&body).expect("json payload");
        assert_eq!(v["name"], "n");
        assert_eq!(v["url"], "job/n/");
        assert_eq!(v["build"]["url"], "job/n/1/");
        phases.push(v["build"]["phase"].as_str().expect("phase").to_string());
        if v["build"]["phase"] == "FINALIZED" {
            assert_eq!(v["build"]["status"], "SUCCESS");
        }
    }
    assert_eq!(phases, ["QUEUED", "STARTED", "COMPLETED", "FINALIZED"]);
}

#[tokio::test]
async fn faults_are_injected() {
    let toml = "[faults]\nerror_500_rate = 1.0\npath_prefix = \"/job/\"\n";
    let (_s, c, base) = start(toml).await;
    let r = c.get(format!("{base}/job/x/api/json")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("r");
    assert_eq!(r.status(), 500);
    assert!(r.text().await.expect("t").contains("java.lang.NullPointerException"));
    let ok = c.get(format!("{base}/api/json")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("r");
    assert_eq!(ok.status(), 200, "the prefix limits the fault");
    let (_s2, c2, base2) = start("[faults]\nreset_rate = 1.0\n").await;
    let err = c2.get(format!("{base2}/api/json")).send().await;
    assert!(err.is_err(), "every connection is reset");
    let (_s3, c3, base3) = start("[faults]\nerror_503_rate = 1.0\n").await;
    let r = c3.get(format!("{base3}/api/json")).send().await.expect("r");
    assert_eq!(r.status(), 503);
    assert!(r.text().await.expect("t").contains("getting ready to work"));
}

#[tokio::test]
async fn quiet_down_holds_builds() {
    let (_s, c, base) = start(BASE_SCENARIO).await;
    let r = c.post(format!("{base}/quietDown")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("r");
    assert_eq!(r.status(), 302);
    let loc = trigger(&c, &format!("{base}/job/team/job/api/build")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let item = get_json(&c, &format!("{loc}api/json")).await;
    assert_eq!(item["why"], "Jenkins is about to shut down");
    let root = get_json(&c, &format!("{base}/api/json?tree=quietingDown")).await;
    assert_eq!(root["quietingDown"], true);
    let _ = c.post(format!("{base}/cancelQuietDown")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("r");
    let n = wait_for_build(&c, &loc).await;
    assert_eq!(n, 3);
}

#[tokio::test]
async fn running_pipeline_reports_stages_and_input() {
    let toml = r#"
[controller]
quiet_period = 0
[[jobs]]
path = "pipe"
kind = "pipeline"
script = """
pipeline {
  agent any
  stages {
    stage('Build') { steps { echo "building ${env.BUILD_NUMBER}" } }
    stage('Test') { steps { sh 'echo testing; exit 1' } }
    stage('Deploy') { steps { echo 'never' } }
  }
}
"""
[[jobs]]
path = "gate"
kind = "pipeline"
script = "node { stage('Ask') { input message: 'Ship it?', ok: 'Ship' } }\nnode { stage('After') { echo 'shipped' } }"
"#;
    let (_s, c, base) = start(toml).await;
    let loc = trigger(&c, &format!("{base}/job/pipe/build")).await;
    let n = wait_for_build(&c, &loc).await;
    let b = wait_done(&c, &format!("{base}/job/pipe/{n}/")).await;
    assert_eq!(b["result"], "FAILURE");
    assert_eq!(b["_class"], "org.jenkinsci.plugins.workflow.job.WorkflowRun");
    let run = get_json(&c, &format!("{base}/job/pipe/{n}/wfapi/describe")).await;
    let stages: Vec<(String, String)> = run["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| (s["name"].as_str().unwrap_or("").to_string(), s["status"].as_str().unwrap_or("").to_string()))
        .collect();
    assert_eq!(stages[0], ("Build".to_string(), "SUCCESS".to_string()));
    assert_eq!(stages[1], ("Test".to_string(), "FAILED".to_string()), "{stages:?}");
    assert_eq!(run["stages"][1]["error"]["message"], "script returned exit code 1");
    assert_eq!(run["status"], "FAILED");
    let log =
        c.get(format!("{base}/job/pipe/{n}/consoleText")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("r");
    let log = log.text().await.expect("t");
    assert!(log.contains("[Pipeline] { (Build)") && log.contains("building 1"), "{log}");
    assert!(log.contains("ERROR: script returned exit code 1") && log.ends_with("Finished: FAILURE\n"), "{log}");

    let loc = trigger(&c, &format!("{base}/job/gate/build")).await;
    let n = wait_for_build(&c, &loc).await;
    let mut pending = Value::Null;
    for _ in 0..100 {
        let v = get_json(&c, &format!("{base}/job/gate/{n}/wfapi/pendingInputActions")).await;
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            pending = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pending[0]["message"], "Ship it?");
    assert_eq!(pending[0]["proceedText"], "Ship");
    let run = get_json(&c, &format!("{base}/job/gate/{n}/wfapi/describe")).await;
    assert_eq!(run["status"], "PAUSED_PENDING_INPUT");
    let proceed = pending[0]["proceedUrl"].as_str().expect("url");
    let r = c.post(format!("{base}{proceed}")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("r");
    assert_eq!(r.status(), 200);
    let b = wait_done(&c, &format!("{base}/job/gate/{n}/")).await;
    assert_eq!(b["result"], "SUCCESS");
}

#[tokio::test]
async fn slow_drip_and_starting_faults() {
    let toml = "[faults]\ndrip_bytes = 7\ndrip_interval_ms = 20\n[[jobs]]\npath = \"j\"\n[[jobs.builds]]\nlog = \"line one\\nline two\"\n";
    let (_s, c, base) = start(toml).await;
    let started = std::time::Instant::now();
    let mut r =
        c.get(format!("{base}/job/j/1/consoleText")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("r");
    let mut pieces = Vec::new();
    while let Some(chunk) = r.chunk().await.expect("chunk") {
        pieces.push(chunk);
    }
    let text: String = pieces.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    assert_eq!(text, "Started by user admin\nline one\nline two\nFinished: SUCCESS\n");
    assert!(pieces.iter().all(|p| p.len() <= 7), "pieces of at most drip_bytes");
    // 54 bytes in 7-byte pieces: at least 7 pauses of 20 ms (a lower bound, not a timing goal).
    assert!(started.elapsed() >= Duration::from_millis(140));

    let sc = scenario::parse("").expect("empty scenario");
    let twin = Twin::new(&sc, &[]).expect("twin");
    twin.set_faults(scenario::FaultSpec::default(), Duration::from_secs(3600));
    let server = twin.serve("127.0.0.1:0".parse().expect("addr")).await.expect("serve");
    let r = Client::new().get(format!("{}/api/json", server.url())).send().await.expect("r");
    assert_eq!(r.status(), 503, "Jenkins answers 503 while starting");
    assert!(r.headers().contains_key("x-jenkins"));
}

/// Issue #15: junit's `suites` and `cases` are inline exports, so a test report at depth 0 carries
/// every suite and case (it used to be a list of empty objects), for builds run now as well as
/// for the scenario's history.
#[tokio::test]
async fn junit_reports_of_fresh_builds_export_suites_and_cases_inline() {
    let scenario = r#"
[controller]
quiet_period = 0

[[jobs]]
path = "unit"
script = "echo testing"

[jobs.junit]
passed = ["com.example.CartTest.adds"]
failed = [{ name = "com.example.CheckoutTest.discount", error = "expected:<90> but was:<100>" }]

[[jobs]]
path = "nofiles"
script = "echo no reports"
config_xml = """<?xml version='1.1' encoding='UTF-8'?>
<project><builders><hudson.tasks.Shell><command>echo no reports</command></hudson.tasks.Shell></builders>
<publishers><hudson.tasks.junit.JUnitResultArchiver><testResults>out/*.xml</testResults></hudson.tasks.junit.JUnitResultArchiver></publishers></project>"""
"#;
    let (_s, c, base) = start(scenario).await;
    let config = c.get(format!("{base}/job/unit/config.xml")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await;
    let config = config.expect("config").text().await.expect("text");
    assert!(config.contains("<hudson.tasks.junit.JUnitResultArchiver"), "{config}");
    assert!(config.contains("<testResults>target/surefire-reports/*.xml</testResults>"), "{config}");

    let location = trigger(&c, &format!("{base}/job/unit/build")).await;
    let number = wait_for_build(&c, &location).await;
    let build = wait_done(&c, &format!("{base}/job/unit/{number}/")).await;
    assert_eq!(build["result"], "UNSTABLE", "a failing test marks a successful build unstable");

    let report = get_json(&c, &format!("{base}/job/unit/{number}/testReport/api/json")).await;
    assert_eq!((report["failCount"].as_u64(), report["passCount"].as_u64()), (Some(1), Some(1)));
    let suites = report["suites"].as_array().expect("suites");
    assert_eq!(suites.len(), 2, "{report}");
    let cases: Vec<&Value> = suites.iter().flat_map(|s| s["cases"].as_array().into_iter().flatten()).collect();
    let failed = cases.iter().find(|c| c["status"] == "FAILED").expect("a failed case at depth 0");
    assert_eq!(failed["name"], "discount");
    assert_eq!(failed["className"], "com.example.CheckoutTest");
    assert_eq!(failed["errorDetails"], "expected:<90> but was:<100>");
    assert_eq!(suites[1]["name"], "com.example.CheckoutTest");
    if let Some(cap) = fixture("joelee2012__api4jenkins/test_report.json") {
        assert_key_order("TestResult", &report, &cap, &[]);
        assert_key_order("SuiteResult", &suites[0], &cap["suites"][0], &[]);
        assert_key_order("CaseResult", &suites[0]["cases"][0], &cap["suites"][0]["cases"][0], &[]);
    }
    // depth=1 adds nothing the inline exports did not already show; tree= still narrows.
    let narrowed =
        get_json(&c, &format!("{base}/job/unit/{number}/testReport/api/json?tree=suites[cases[name,status]]")).await;
    assert_eq!(narrowed["suites"][1]["cases"][0], serde_json::json!({"name": "discount", "status": "FAILED"}));

    // A JUnit publisher that finds no report files fails the build, as the junit plugin does.
    let location = trigger(&c, &format!("{base}/job/nofiles/build")).await;
    let number = wait_for_build(&c, &location).await;
    let build = wait_done(&c, &format!("{base}/job/nofiles/{number}/")).await;
    assert_eq!(build["result"], "FAILURE");
    let log = c.get(format!("{base}/job/nofiles/{number}/consoleText")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await;
    let log = log.expect("log").text().await.expect("text");
    assert!(log.contains("No test report files were found. Configuration error?"), "{log}");
    let missing = c
        .get(format!("{base}/job/nofiles/{number}/testReport/api/json"))
        .basic_auth(ADMIN.0, Some(ADMIN.2))
        .send()
        .await
        .expect("req");
    assert_eq!(missing.status(), 404, "no report was recorded");
}
