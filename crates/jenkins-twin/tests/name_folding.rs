//! Item names are matched with Java's `CASE_INSENSITIVE_ORDER`, as on a real controller: `ſ`
//! is `s`, `ı`/`İ` are `i`, the Kelvin sign is `k`, but `ß` is not `ss`.

use jenkins_twin::TwinServer;
use reqwest::{Client, StatusCode};
use serde_json::Value;

const ADMIN: (&str, &str, &str) = ("admin", "adminpass", "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");

const SCENARIO: &str = r#"
[controller]
quiet_period = 0

[[folders]]
path = "secret"

[[jobs]]
path = "secret/x"
script = "echo x"

[[jobs]]
path = "releasex"
script = "echo r"

[[jobs]]
path = "admin-tools"
script = "echo a"

[[jobs]]
path = "kube"
script = "echo k"

[[jobs]]
path = "pass"
script = "echo p"

[[jobs]]
path = "\u1C8Aob"
script = "echo tje"

[[views]]
name = "mine"
jobs = ["RELEASEX", "releaſex"]
"#;

async fn start() -> (TwinServer, Client, String) {
    let admins = [(ADMIN.0.to_string(), ADMIN.1.to_string(), ADMIN.2.to_string())];
    let (_twin, server) = jenkins_twin::start(SCENARIO, &admins).await.expect("twin serves");
    let client = Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let base = server.url();
    (server, client, base)
}

async fn get(c: &Client, url: &str) -> (StatusCode, Option<Value>) {
    let r = c.get(url).basic_auth(ADMIN.0, Some(ADMIN.2)).send().await.expect("request");
    let status = r.status();
    (status, if status == StatusCode::OK { r.json().await.ok() } else { None })
}

#[tokio::test]
async fn java_folded_spellings_resolve_to_the_item() {
    let (_server, c, base) = start().await;
    for (path, full_name) in [
        ("job/%C5%BFecret/job/x", "secret/x"),   // ſ U+017F
        ("job/SECRET/job/X", "secret/x"),        // plain case
        ("job/%C5%BFECRET/job/x", "secret/x"),   // ſ among upper case
        ("job/relea%C5%BFex", "releasex"),       // ſ
        ("job/adm%C4%B1n-tools", "admin-tools"), // ı U+0131
        ("job/ADM%C4%B0N-TOOLS", "admin-tools"), // İ U+0130
        ("job/%E2%84%AAube", "kube"),            // KELVIN SIGN U+212A
        ("job/%E2%84%AAUBE", "kube"),            // KELVIN SIGN, upper case
        ("job/%E1%B2%8AOB", "\u{1C8A}ob"),       // the item itself, as a control
    ] {
        let (status, body) = get(&c, &format!("{base}/{path}/api/json")).await;
        assert_eq!(status, StatusCode::OK, "{path} resolves");
        assert_eq!(body.as_ref().and_then(|b| b["fullName"].as_str()), Some(full_name), "{path}");
    }
}

#[tokio::test]
async fn names_java_keeps_apart_do_not_resolve() {
    let (_server, c, base) = start().await;
    // `ß` has no simple upper case in Java, so `paß` is not `pass` (Rust's full mapping, `SS`,
    // would make them equal under upper-casing); the dotted `i̇` pair is not `i` either. Java 17's
    // Unicode predates U+1C89 (capital of U+1C8A), which Rust's `to_lowercase` maps.
    for path in ["job/pa%C3%9F", "job/PA%C3%9F", "job/adm%69%CC%87n-tools", "job/secret/job/y", "job/%E1%B2%89ob"] {
        let (status, _) = get(&c, &format!("{base}/{path}/api/json")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} must not resolve");
    }
}

#[tokio::test]
async fn list_views_hold_java_folded_names() {
    let (_server, c, base) = start().await;
    // The scenario lists `RELEASEX` and `releaſex`: one name to Java, one job in the view.
    let (status, view) = get(&c, &format!("{base}/view/mine/api/json")).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = view
        .as_ref()
        .and_then(|v| v["jobs"].as_array())
        .map(|jobs| jobs.iter().filter_map(|j| j["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["releasex"]);

    // Adding by a Java-folded spelling stores the item's own name, once.
    let add = c
        .post(format!("{base}/view/mine/addJobToView?name=adm%C4%B1n-tools"))
        .basic_auth(ADMIN.0, Some(ADMIN.2))
        .send()
        .await
        .expect("request");
    assert_eq!(add.status(), StatusCode::OK);
    let xml = c
        .get(format!("{base}/view/mine/config.xml"))
        .basic_auth(ADMIN.0, Some(ADMIN.2))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert!(xml.contains("<string>admin-tools</string>"), "{xml}");
    assert_eq!(xml.matches("<string>").count(), 2, "{xml}");

    // Removing by another spelling removes it.
    let remove = c
        .post(format!("{base}/view/mine/removeJobFromView?name=ADM%C4%B0N-TOOLS"))
        .basic_auth(ADMIN.0, Some(ADMIN.2))
        .send()
        .await
        .expect("request");
    assert_eq!(remove.status(), StatusCode::OK);
    let (_, view) = get(&c, &format!("{base}/view/mine/api/json")).await;
    let count = view.as_ref().and_then(|v| v["jobs"].as_array()).map(Vec::len);
    assert_eq!(count, Some(1));
}
