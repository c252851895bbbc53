//! The Pipeline plugin's replay (`POST <build>/replay/run`) on the twin: crumbs, permissions,
//! a freestyle or unknown build and a disabled job answering 404, the form error, the redirect
//! to the job, and a replayed run that runs the new script with UserIdCause + ReplayCause and
//! the original's parameters.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const ADMIN: (&str, &str, &str) = ("admin", "adminpass", "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
const BUILDER: (&str, &str) = ("builder", "11bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");

const SCENARIO: &str = r#"
[controller]
quiet_period = 0

[[users]]
name = "builder"
password = "builderpass"
token = "11bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
permissions = ["Overall/Read", "Job/Read", "Job/Build"]

[[jobs]]
path = "pipe"
kind = "pipeline"
script = "node { echo 'original script' }"
[[jobs.parameters]]
name = "ENV"
type = "string"
default = "dev"
[[jobs.builds]]
result = "SUCCESS"
parameters = { ENV = "staging" }

[[jobs]]
path = "free"
script = "echo freestyle"
[[jobs.builds]]
result = "SUCCESS"

[[jobs]]
path = "off"
kind = "pipeline"
disabled = true
[[jobs.builds]]
result = "SUCCESS"
"#;

async fn start() -> (jenkins_twin::TwinServer, String) {
    let admins = [(ADMIN.0.to_string(), ADMIN.1.to_string(), ADMIN.2.to_string())];
    let (_twin, server) = jenkins_twin::start(SCENARIO, &admins).await.expect("twin serves");
    let base = server.url();
    (server, base)
}

fn client() -> Client {
    Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

fn form(script: &str) -> Vec<(&'static str, String)> {
    vec![("json", json!({ "mainScript": script }).to_string())]
}

async fn get_json(c: &Client, url: &str) -> Value {
    let r = c.get(url).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::OK, "GET {url}");
    r.json().await.expect("json")
}

#[tokio::test]
async fn replay_run_needs_a_crumb_for_a_password_session_and_redirects_to_the_job() {
    let (_s, base) = start().await;
    let c = client();
    let url = format!("{base}/job/pipe/1/replay/run");
    let r = c.post(&url).basic_auth(ADMIN.0, Some(ADMIN.1)).form(&form("echo 'x'")).send().await.expect("r");
    assert_eq!(r.status(), 403);
    assert!(r.text().await.expect("t").contains("No valid crumb"));
    let crumb: Value = c
        .get(format!("{base}/crumbIssuer/api/json"))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .await
        .expect("r")
        .json()
        .await
        .expect("json");
    let crumb = crumb["crumb"].as_str().expect("crumb").to_string();
    let r = c
        .post(&url)
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .header("Jenkins-Crumb", &crumb)
        .form(&form("node { echo 'replayed script' }"))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers()["location"].to_str().expect("ascii"), format!("{base}/job/pipe/"));
    // A GET is refused (@RequirePOST).
    let r = c.get(&url).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("r");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_replayed_run_runs_the_new_script_with_the_causes_and_parameters() {
    let (_s, base) = start().await;
    let c = client();
    let r = c
        .post(format!("{base}/job/pipe/1/replay/run"))
        .basic_auth(ADMIN.0, Some(ADMIN.2))
        .form(&form("node { echo \"replayed with $ENV\" }"))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), StatusCode::FOUND);
    let mut build = Value::Null;
    for _ in 0..200 {
        let b = c.get(format!("{base}/job/pipe/2/api/json")).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await;
        if let Ok(b) = b
            && b.status() == StatusCode::OK
        {
            let v: Value = b.json().await.expect("json");
            if v["building"] == false {
                build = v;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(build["result"], "SUCCESS", "{build}");
    let causes = build["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find_map(|a| a.get("causes"))
        .and_then(Value::as_array)
        .expect("causes")
        .clone();
    assert_eq!(causes[0]["_class"], "hudson.model.Cause$UserIdCause");
    assert_eq!(causes[0]["userId"], "admin");
    assert_eq!(
        causes[1],
        json!({"_class": "org.jenkinsci.plugins.workflow.cps.replay.ReplayCause", "shortDescription": "Replayed #1"})
    );
    let params = build["actions"].as_array().expect("actions").iter().find_map(|a| a.get("parameters")).cloned();
    assert_eq!(params.expect("parameters")[0]["value"], "staging");
    let log = c
        .get(format!("{base}/job/pipe/2/consoleText"))
        .basic_auth(ADMIN.0, Some(ADMIN.2))
        .send()
        .await
        .expect("r")
        .text()
        .await
        .expect("t");
    assert!(log.contains("Replayed #1") && log.contains("replayed with staging"), "{log}");
    assert!(!log.contains("original script"), "{log}");
    // The job's own script is unchanged: a plain build runs it.
    let job = get_json(&c, &format!("{base}/job/pipe/api/json?tree=nextBuildNumber")).await;
    assert_eq!(job["nextBuildNumber"], 3);
}

#[tokio::test]
async fn freestyle_unknown_disabled_forbidden_and_malformed() {
    let (_s, base) = start().await;
    let c = client();
    let post = |url: String, who: (&'static str, &'static str), body: Vec<(&'static str, String)>| {
        let c = c.clone();
        async move { c.post(url).basic_auth(who.0, Some(who.1)).form(&body).send().await.expect("r").status() }
    };
    let admin = (ADMIN.0, ADMIN.2);
    // No ReplayAction on a freestyle run, on a missing build, or while the job is not buildable.
    assert_eq!(post(format!("{base}/job/free/1/replay/run"), admin, form("x")).await, 404);
    assert_eq!(post(format!("{base}/job/pipe/9/replay/run"), admin, form("x")).await, 404);
    assert_eq!(post(format!("{base}/job/off/1/replay/run"), admin, form("x")).await, 404);
    // Job/Build without Run/Replay (implied by Job/Configure): the action is there (rebuild),
    // but running an edited script is refused.
    assert_eq!(post(format!("{base}/job/pipe/1/replay/run"), BUILDER, form("x")).await, 403);
    // Stapler's form errors: no `json` field; a form without mainScript is the plugin's
    // JSONException (500).
    assert_eq!(post(format!("{base}/job/pipe/1/replay/run"), admin, vec![]).await, 400);
    assert_eq!(post(format!("{base}/job/pipe/1/replay/run"), admin, vec![("json", "not json".into())]).await, 400);
    assert_eq!(post(format!("{base}/job/pipe/1/replay/run"), admin, vec![("json", "{}".into())]).await, 500);
    // Nothing of that queued anything.
    let job = get_json(&c, &format!("{base}/job/pipe/api/json?tree=nextBuildNumber")).await;
    assert_eq!(job["nextBuildNumber"], 2);
    let q = get_json(&c, &format!("{base}/queue/api/json")).await;
    assert_eq!(q["items"], json!([]));
}
