//! Lean answers through the call path on the twin (issue #14). `fields` (crates/gate/src/fields.rs):
//! an answer narrowed to the keys asked for, secrets still redacted and counted, the audit's facts
//! taken from the whole answer, and a bad selection refused (audited) before anything is asked of
//! Jenkins. A triage does not repeat the log's end when its error lines already show it. A job's
//! summary (get_job) is computed from Jenkins' answer, read in one pass.

use gate::audit::Surface;
use gate::store::AuditFilter;
use gate::{Caller, Gate, GateError};
use serde_json::{Value, json};

mod common;

fn secret() -> String {
    format!("ghp_{}", "R8v2Kp".repeat(6))
}

async fn setup() -> (std::sync::Arc<jenkins_twin::Twin>, jenkins_twin::TwinServer, Gate) {
    let scenario = format!(
        r#"
[controller]
quiet_period = 0
[[jobs]]
path = "team/app"
script = "echo app"
[[jobs.builds]]
result = "SUCCESS"
[[jobs.builds]]
result = "FAILURE"
tests = {{ passed = ["a.T.two"], failed = [{{ name = "a.T.one", error = "token {} leaked" }}] }}
log = "step 1\nerror: it broke\nstep 2"
[[jobs]]
path = "team/noisy"
script = "echo noisy"
[[jobs.builds]]
result = "FAILURE"
log = "{}"
"#,
        secret(),
        noisy_log()
    );
    common::gate_on_twin("fields", &format!("[[folders]]\npath = \"team\"\n{scenario}")).await
}

/// Eight error lines early, then forty quiet ones: the grep stops at its five matches long before
/// the end, so the tail shows what the error lines do not.
fn noisy_log() -> String {
    let mut log: Vec<String> = (1..=8).map(|i| format!("error: early problem {i}")).collect();
    log.extend((1..=40).map(|i| format!("quiet line {i}")));
    log.join("\\n")
}

async fn call(g: &Gate, op: &str, args: Value) -> Result<Value, GateError> {
    let caller =
        Caller { agent: "bot".into(), key_id: None, surface: Surface::Mcp, client_addr: None, request_id: "f".into() };
    g.call(&caller, "prod", op, args).await
}

#[tokio::test]
async fn an_answer_is_narrowed_and_still_clean_and_fully_audited() {
    let (_twin, _server, g) = setup().await;
    let whole = call(&g, "get_build", json!({"job": "team/app", "build": 2})).await.expect("whole");
    let v = call(&g, "get_build", json!({"job": "team/app", "build": 2, "fields": ["result", "tests.failing_tests"]}))
        .await
        .expect("narrowed");
    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["result", "tests", "redactions"], "{v}");
    assert_eq!(v["result"], "FAILURE");
    assert_eq!(v["tests"], json!({"failing_tests": whole["tests"]["failing_tests"]}), "{v}");
    // The secret in the test's error was redacted, and the count of what the boundary removed
    // is kept whatever was selected.
    let text = v.to_string();
    assert!(!text.contains(&secret()) && text.contains("a.T.one"), "{text}");
    assert!(v["redactions"].as_u64().unwrap_or(0) >= 1, "{v}");
    // The audit's facts come from the whole answer: the build number is recorded though the
    // agent did not ask for it.
    let records =
        g.audit(&AuditFilter { operation: Some("get_build".into()), ..AuditFilter::default() }).await.expect("audit");
    let last = records.last().expect("a record");
    assert_eq!(last.entry.build_number, Some(2), "{:?}", last.entry);
    assert_eq!(last.entry.outcome.as_deref(), Some("ok"));
}

#[tokio::test]
async fn a_bad_selection_is_refused_before_jenkins_is_asked_and_audited() {
    let (twin, _server, g) = setup().await;
    let before = twin.requests_to("/api/json");
    for bad in [json!("result"), json!([]), json!(["a b"]), json!([7])] {
        let err =
            call(&g, "get_build", json!({"job": "team/app", "build": 1, "fields": bad})).await.expect_err("refused");
        assert!(matches!(err, GateError::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains("e.g."), "names the fix: {err}");
    }
    assert_eq!(twin.requests_to("/api/json"), before, "nothing asked of Jenkins");
    let denied = g
        .audit(&AuditFilter { operation: Some("get_build".into()), allowed: Some(false), ..AuditFilter::default() })
        .await
        .expect("audit");
    assert_eq!(denied.len(), 4, "each refusal audited");
    // A write takes no `fields`: its strict arguments refuse it.
    let err = call(&g, "trigger_build", json!({"job": "team/app", "fields": ["number"]})).await.expect_err("refused");
    assert!(err.to_string().contains("fields"), "{err}");
}

#[tokio::test]
async fn a_triage_leaves_out_a_tail_its_error_lines_already_show() {
    let (_twin, _server, g) = setup().await;
    // The error lines run to the log's last line ("Finished: FAILURE"): no tail repeating them.
    let t = call(&g, "triage_build", json!({"job": "team/app", "build": 2})).await.expect("triage");
    let errors = t["error_lines"].as_str().unwrap_or_default();
    assert!(errors.contains("it broke") && errors.contains("Finished: FAILURE"), "{t}");
    assert!(t["log_tail"].is_null() && t["log_tail_in_error_lines"] == true, "{t}");
    assert!(t.to_string().len() < 2048, "a small failure's triage fits 2 KB: {} bytes", t.to_string().len());
    // The grep stopped at its matches long before the end: the tail shows the end.
    let t = call(&g, "triage_build", json!({"job": "team/noisy", "build": 1})).await.expect("triage");
    assert_eq!(t["log_tail_in_error_lines"], false, "{t}");
    let tail = t["log_tail"].as_str().unwrap_or_default();
    assert!(tail.contains("quiet line 40") && tail.contains("Finished: FAILURE"), "{t}");
    assert!(!t["error_lines"].as_str().unwrap_or_default().contains("quiet line 40"), "{t}");
}

#[tokio::test]
async fn a_job_summary_is_computed_from_jenkins_answer() {
    let (_twin, _server, g) = setup().await;
    let j = call(&g, "get_job", json!({"job": "team/app"})).await.expect("job");
    assert_eq!(
        (&j["last_build"], &j["last_successful_build"], &j["last_failed_build"], &j["last_completed_build"]),
        (&json!(2), &json!(1), &json!(2), &json!(2)),
        "{j}"
    );
    let recent: Vec<(Value, Value, Value)> = j["recent_builds"]
        .as_array()
        .expect("recent builds")
        .iter()
        .map(|b| (b["number"].clone(), b["result"].clone(), b["building"].clone()))
        .collect();
    assert_eq!(recent, [(json!(2), json!("FAILURE"), json!(false)), (json!(1), json!("SUCCESS"), json!(false))], "{j}");
    assert_eq!(j["success_rate_percent_last_10"], json!(50.0), "{j}");
    assert_eq!(j["usual_duration_ms"], json!(60_000), "{j}");
    assert_eq!(j["next_build_number"], json!(3), "{j}");
    // A folder lists its children instead.
    let f = call(&g, "get_job", json!({"job": "team"})).await.expect("folder");
    assert_eq!(f["kind"], "folder", "{f}");
    let names: Vec<&str> = f["items"].as_array().expect("items").iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(names, ["team/app", "team/noisy"], "{f}");
}
