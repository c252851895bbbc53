//! A tail of a big finished console through the call path (issue #9): the first tail streams the
//! log (Jenkins cannot tell a log's size first, jenkins-wire.md §10.6) and learns its size and
//! line count; every later tail reads only the end, and answers exactly as the first did —
//! the same numbered lines, the same totals, the same redactions.

use gate::audit::Surface;
use gate::catalog::Group;
use gate::policy::Level;
use gate::{Admin, Caller, Gate};
use serde_json::{Value, json};

mod common;

const LOG_BYTES: u64 = 8 << 20;

fn secret() -> String {
    format!("ghp_{}", "R8v2Kp".repeat(6))
}

async fn setup() -> (std::sync::Arc<jenkins_twin::Twin>, jenkins_twin::TwinServer, Gate) {
    let scenario = format!(
        "[controller]\nquiet_period = 0\n[[jobs]]\npath = \"big\"\n[[jobs.builds]]\nresult = \"FAILURE\"\n\
         log_bytes = {LOG_BYTES}\nlog = \"deploying with token {}\\nerror: the deploy failed\"\n\
         [[jobs]]\npath = \"long\"\nscript = \"sleep 600\"\n",
        secret()
    );
    common::gate_on_twin("tail", &scenario).await
}

async fn tail(g: &Gate, lines: u64) -> Value {
    let caller =
        Caller { agent: "bot".into(), key_id: None, surface: Surface::Mcp, client_addr: None, request_id: "t".into() };
    g.call(&caller, "prod", "get_build_log", json!({"job": "big", "build": 1, "lines": lines})).await.expect("tail")
}

#[tokio::test]
async fn a_repeated_tail_of_a_big_finished_log_reads_only_its_end_and_answers_the_same() {
    let (twin, _server, g) = setup().await;
    let sent = twin.log_bytes_sent();
    let cold = tail(&g, 20).await;
    let cold_bytes = twin.log_bytes_sent() - sent;
    assert!(cold_bytes >= LOG_BYTES, "the first tail streams the log: {cold_bytes} bytes");
    let text = cold["text"].as_str().expect("text");
    assert!(text.contains("error: the deploy failed") && text.contains("Finished: FAILURE"), "{text}");
    assert!(!text.contains(&secret()), "redacted: {text}");
    let total = cold["total_lines"].as_u64().expect("total known");
    assert_eq!(cold["last_line"].as_u64(), Some(total));
    assert_eq!(cold["first_line"].as_u64(), Some(total - 19));

    for _ in 0..3 {
        let sent = twin.log_bytes_sent();
        let warm = tail(&g, 20).await;
        let warm_bytes = twin.log_bytes_sent() - sent;
        assert!(warm_bytes <= 1 << 20, "a later tail reads only the end: {warm_bytes} bytes");
        for key in ["text", "summary", "first_line", "last_line", "total_lines", "redactions", "scan_stopped_at_limit"]
        {
            assert_eq!(warm[key], cold[key], "{key} differs");
        }
    }
    // Another count of lines is read from the end too, numbered the same way.
    let sent = twin.log_bytes_sent();
    let longer = tail(&g, 300).await;
    assert!(twin.log_bytes_sent() - sent <= 1 << 20);
    assert_eq!(longer["last_line"].as_u64(), Some(total));
    assert_eq!(longer["first_line"].as_u64(), Some(total - 299));
}

/// A client that learnt only the log's size (here from a follow's page from the top) reads the end
/// without line numbers, and says so instead of guessing them.
#[tokio::test]
async fn a_tail_that_knows_only_the_size_reads_the_end_and_says_the_count_is_unknown() {
    let (twin, _server, g) = setup().await;
    let caller =
        Caller { agent: "bot".into(), key_id: None, surface: Surface::Mcp, client_addr: None, request_id: "f".into() };
    let page = json!({"job": "big", "build": 1, "mode": "follow", "cursor": 0});
    g.call(&caller, "prod", "get_build_log", page).await.expect("follow");
    let sent = twin.log_bytes_sent();
    let v = tail(&g, 20).await;
    assert!(twin.log_bytes_sent() - sent <= 1 << 20, "only the end");
    let text = v["text"].as_str().expect("text");
    assert!(text.contains("error: the deploy failed") && text.contains("Finished: FAILURE"), "{text}");
    assert!(!text.contains(&secret()), "redacted: {text}");
    assert!(v["first_line"].is_null() && v["total_lines"].is_null(), "{v}");
    let summary = v["summary"].as_str().expect("summary");
    assert!(summary.contains("20 line(s)") && summary.contains("line count is not known"), "{summary}");
}

/// A follow without a cursor begins like `tail -f`: the log's last lines and the cursor after
/// them, read from the end once the log's size is known; a follow from 0 still starts at the top.
#[tokio::test]
async fn a_follow_without_a_cursor_begins_with_the_last_lines_and_their_cursor() {
    let (twin, _server, g) = setup().await;
    let caller =
        Caller { agent: "bot".into(), key_id: None, surface: Surface::Mcp, client_addr: None, request_id: "f".into() };
    let follow = async |args: Value| g.call(&caller, "prod", "get_build_log", args).await.expect("follow");
    // Not seen before: progressiveText is read from 0 (what a follow from the start asks of
    // Jenkins too), so the cursor is exact.
    let first = follow(json!({"job": "big", "build": 1, "mode": "follow", "lines": 5})).await;
    let text = first["text"].as_str().expect("text");
    assert!(text.contains("error: the deploy failed") && text.contains("Finished: FAILURE"), "{text}");
    assert!(!text.contains(&secret()), "redacted: {text}");
    assert_eq!(first["more"], false);
    let total = first["total_lines"].as_u64().expect("total");
    assert_eq!(first["last_line"].as_u64(), Some(total));
    assert!(first["summary"].as_str().is_some_and(|s| s.contains("the last 5 line(s)") && s.contains("complete")));
    let cursor = first["next_cursor"].as_u64().expect("cursor");
    assert!(cursor >= LOG_BYTES, "the cursor is the log's end: {cursor}");
    let after = follow(json!({"job": "big", "build": 1, "mode": "follow", "cursor": cursor})).await;
    assert_eq!(after["text"].as_str().map(|t| t.contains("Finished")), Some(false), "nothing after the end: {after}");
    assert_eq!(after["more"], false);

    // Now the size is known: only the end is read, and the page is the same.
    let sent = twin.log_bytes_sent();
    let again = follow(json!({"job": "big", "build": 1, "mode": "follow", "lines": 5})).await;
    assert!(twin.log_bytes_sent() - sent <= 1 << 20, "only the end");
    for key in ["text", "next_cursor", "first_line", "last_line", "total_lines", "more"] {
        assert_eq!(again[key], first[key], "{key} differs");
    }
    // An explicit 0 is still the top of the log.
    let top = follow(json!({"job": "big", "build": 1, "mode": "follow", "cursor": 0})).await;
    assert!(!top["text"].as_str().expect("text").contains("Finished: FAILURE"));
    assert_eq!(top["more"], true, "a page of 24 KiB from the top: more to read");
}

/// A running build: the first page of a follow ends at an exact cursor, and what follows it
/// continues there — nothing repeated, nothing skipped, through the build's end.
#[tokio::test]
async fn a_follow_of_a_running_build_continues_exactly_where_its_first_page_ended() {
    let (_twin, _server, g) = setup().await;
    g.grant(&Admin::local_cli(), "bot", Group::Build, Level::Full, None, None, vec![]).await.expect("grant");
    let caller =
        Caller { agent: "bot".into(), key_id: None, surface: Surface::Mcp, client_addr: None, request_id: "r".into() };
    let call = async |op: &str, args: Value| g.call(&caller, "prod", op, args).await.expect(op);
    let started = call("trigger_build", json!({"job": "long", "wait": "start"})).await;
    let number = started["build"]["number"].as_u64().expect("number");
    let first = call("get_build_log", json!({"job": "long", "build": number, "mode": "follow"})).await;
    assert_eq!(first["more"], true, "{first}");
    assert!(first["text"].as_str().is_some_and(|t| t.contains("Building in workspace")), "{first}");
    let mut cursor = first["next_cursor"].as_u64().expect("cursor");
    call("stop_build", json!({"job": "long", "build": number})).await;
    let mut rest = String::new();
    for _ in 0..20 {
        let page = call(
            "get_build_log",
            json!({"job": "long", "build": number, "mode": "follow", "cursor": cursor, "wait_s": 5}),
        )
        .await;
        rest.push_str(page["text"].as_str().unwrap_or_default());
        cursor = page["next_cursor"].as_u64().expect("cursor");
        if page["more"] == false {
            break;
        }
    }
    assert!(rest.contains("Finished: ABORTED"), "the end arrives: {rest}");
    assert!(!rest.contains("Building in workspace"), "nothing of the first page again: {rest}");
}
