//! The wire path under load (issue #9): identical reads coalesced, finished builds cached,
//! crumbs reused, and console tails read from the end. Upstream requests are counted by the twin.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use jenkins::ssrf::AllowEntry;
use jenkins::{BuildSelector, Credentials, Error, JenkinsClient, JobPath, Limits};
use jenkins_twin::{Twin, TwinServer};
use secrecy::SecretString;

const TOKEN: &str = "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

const SCENARIO: &str = r#"
[controller]
quiet_period = 0

[[jobs]]
path = "team/api"
script = "echo hello"
[[jobs.builds]]
result = "FAILURE"
tests = { passed = ["a.B.ok"], failed = [{ name = "a.B.bad", error = "boom" }] }

[[jobs]]
path = "long"
script = "echo start\nsleep 600\necho end"

[[jobs]]
path = "huge"
[[jobs.builds]]
result = "SUCCESS"
log_bytes = 1073741824
log = "the very end"
"#;

async fn twin(toml: &str) -> (Arc<Twin>, TwinServer) {
    let toml = format!("[[folders]]\npath = \"team\"\n{toml}");
    jenkins_twin::start(&toml, &[("admin".into(), "adminpass".into(), TOKEN.into())]).await.expect("twin")
}

fn builder(s: &TwinServer) -> jenkins::ClientBuilder {
    let allow: AllowEntry = format!("127.0.0.1/32:{}", s.addr().port()).parse().expect("allow entry");
    JenkinsClient::builder(s.url()).allow_private(allow)
}

fn admin(s: &TwinServer) -> JenkinsClient {
    builder(s)
        .credentials(Credentials::api_token("admin", SecretString::from(TOKEN.to_string())))
        .build()
        .expect("client")
}

fn path(p: &str) -> JobPath {
    JobPath::parse(p).expect("job path")
}

/// Starts a build of `long` (it runs for ten minutes) and returns its number.
async fn running_build(c: &JenkinsClient) -> u64 {
    let job = path("long");
    let id = c.trigger(&job, &[]).await.expect("trigger");
    let b = c.wait_for_build(&job, id, Duration::from_secs(20), Duration::from_millis(20)).await.expect("started");
    b.number
}

#[tokio::test]
async fn twenty_reads_of_a_finished_build_make_one_request() {
    let (t, s) = twin(SCENARIO).await;
    let c = admin(&s);
    let job = path("team/api");
    let before = t.requests_received();
    let builds = join_all((0..20).map(|_| c.build(&job, BuildSelector::Number(1)))).await;
    assert!(builds.iter().all(|b| b.as_ref().is_ok_and(|b| b.number == 1 && !b.building)));
    assert_eq!(t.requests_received() - before, 1, "twenty identical reads in flight: one request");

    // Finished: later reads, by this client or a clone of it, come from the cache.
    let before = t.requests_received();
    let again = join_all((0..20).map(|_| c.build(&job, BuildSelector::Number(1)))).await;
    assert!(again.iter().all(Result::is_ok));
    let clone = c.clone();
    clone.build(&job, BuildSelector::Number(1)).await.expect("clone");
    assert_eq!(t.requests_received() - before, 0, "a finished build is not asked for again");

    // Its test report too, once the build is known to be finished; the job itself never.
    let before = t.requests_received();
    for _ in 0..5 {
        let r = c.test_report(&job, 1).await.expect("report").expect("has tests");
        assert_eq!(r["failCount"], 1);
        c.job(&job).await.expect("job");
        c.build(&job, BuildSelector::LastBuild).await.expect("permalink");
    }
    assert_eq!(t.requests_received() - before, 1 + 5 + 5, "report once; job and permalink every time");

    // A client built with caching off still coalesces, but asks again afterwards.
    let off = builder(&s)
        .credentials(Credentials::api_token("admin", SecretString::from(TOKEN.to_string())))
        .cache(jenkins::CacheOptions { max_entries: 0, ..Default::default() })
        .build()
        .expect("client");
    let before = t.requests_received();
    join_all((0..20).map(|_| off.build(&job, BuildSelector::Number(1)))).await;
    off.build(&job, BuildSelector::Number(1)).await.expect("again");
    assert_eq!(t.requests_received() - before, 2);
}

#[tokio::test]
async fn a_running_build_is_coalesced_but_never_cached() {
    let (t, s) = twin(SCENARIO).await;
    let c = admin(&s);
    let n = running_build(&c).await;
    let job = path("long");
    for round in 0..3 {
        let before = t.requests_received();
        let builds = join_all((0..20).map(|_| c.build(&job, BuildSelector::Number(n)))).await;
        assert!(builds.iter().all(|b| b.as_ref().is_ok_and(|b| b.building)), "{builds:?}");
        assert_eq!(t.requests_received() - before, 1, "round {round}: one request per round");
    }
    // The console of a running build is not cached either (Jenkins is still writing it).
    let before = t.requests_received();
    for _ in 0..3 {
        let chunk = c.progressive_text(&job, n, 0, 4096).await.expect("chunk");
        assert!(chunk.more);
    }
    assert_eq!(t.requests_received() - before, 3);
    c.stop_build(&job, n).await.expect("stop");
}

#[tokio::test]
async fn a_dropped_waiter_does_not_cancel_the_read_for_the_others() {
    let toml = format!("{SCENARIO}\n[faults]\nlatency_ms = 300\npath_prefix = \"/job/long/\"\n");
    let (t, s) = twin(&toml).await;
    let c = admin(&s);
    let n = running_build(&c).await;
    let job = path("long");
    let before = t.requests_received();
    // The first caller starts the shared read and gives up while the others wait for it.
    let first = tokio::time::timeout(Duration::from_millis(100), c.build(&job, BuildSelector::Number(n)));
    let rest = join_all((0..19).map(|_| c.build(&job, BuildSelector::Number(n))));
    let (first, rest) = tokio::join!(first, rest);
    assert!(first.is_err(), "the first caller gave up");
    assert!(rest.iter().all(|b| b.as_ref().is_ok_and(|b| b.number == n)), "{rest:?}");
    assert_eq!(t.requests_received() - before, 1, "the others joined the first caller's read");
    // Nothing is left in flight: the next read is a new request.
    let before = t.requests_received();
    c.build(&job, BuildSelector::Number(n)).await.expect("later read");
    assert_eq!(t.requests_received() - before, 1);
    // A read every caller gave up on stops and leaves nothing behind: the next read is new too.
    let gone = tokio::time::timeout(Duration::from_millis(100), c.build(&job, BuildSelector::Number(n))).await;
    assert!(gone.is_err(), "the only caller gave up");
    let before = t.requests_received();
    c.build(&job, BuildSelector::Number(n)).await.expect("read after an abandoned one");
    assert_eq!(t.requests_received() - before, 1);
    c.stop_build(&job, n).await.expect("stop");
}

#[tokio::test]
async fn a_shared_failure_reaches_every_waiter() {
    let toml = "[controller]\nquiet_period = 0\n[faults]\nerror_503_rate = 1.0\n[[jobs]]\npath = \"j\"\n";
    let (t, s) = jenkins_twin::start(toml, &[("admin".into(), "p".into(), TOKEN.into())]).await.expect("twin");
    let c = builder(&s)
        .credentials(Credentials::api_token("admin", SecretString::from(TOKEN.to_string())))
        .limits(Limits { read_attempts: 1, ..Limits::default() })
        .build()
        .expect("client");
    let before = t.requests_received();
    let j = path("j");
    let all = join_all((0..20).map(|_| c.job(&j))).await;
    assert!(all.iter().all(|r| matches!(r, Err(Error::Unavailable { .. }))), "{all:?}");
    assert_eq!(t.requests_received() - before, 1);
    // Failures are not cached.
    let _ = c.job(&j).await;
    assert_eq!(t.requests_received() - before, 2);
}

#[tokio::test]
async fn password_sessions_fetch_one_crumb_for_many_writes() {
    let (t, s) = twin(SCENARIO).await;
    let c = builder(&s)
        .credentials(Credentials::password("admin", SecretString::from("adminpass".to_string())))
        .build()
        .expect("client");
    let job = path("team/api");
    let before = t.requests_received();
    for i in 0..10 {
        c.set_enabled(&job, i % 2 == 1).await.expect("POST with the session's crumb");
    }
    assert_eq!(t.requests_received() - before, 10 + 1, "ten POSTs and one crumb");
    // Concurrent writes wait for the one crumb too.
    let c = builder(&s)
        .credentials(Credentials::password("admin", SecretString::from("adminpass".to_string())))
        .build()
        .expect("client");
    let before = t.requests_received();
    let all = join_all((0..10).map(|_| c.set_enabled(&job, true))).await;
    assert!(all.iter().all(Result::is_ok), "{all:?}");
    assert_eq!(t.requests_received() - before, 10 + 1);
    // API tokens need no crumb at all (jenkins-wire.md §8.6).
    let c = admin(&s);
    let before = t.requests_received();
    for _ in 0..10 {
        c.set_enabled(&job, true).await.expect("POST without a crumb");
    }
    assert_eq!(t.requests_received() - before, 10);
}

#[tokio::test]
async fn a_gigabyte_tail_reads_only_the_end_once_the_size_is_known() {
    let (t, s) = twin(SCENARIO).await;
    let c = admin(&s);
    let job = path("huge");
    // The reference: the streaming tail over the whole consoleText.
    let stream = c.console_stream(&job, 1).await.expect("stream");
    let want = jenkins::logs::tail(stream, 50, 4096).await.expect("streaming tail");
    let want_text: Vec<&str> = want.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(want_text[48..], ["the very end", "Finished: SUCCESS"]);

    // Without a size, tail_from_end streams too (Jenkins has no cheap way to tell the size)...
    let small = c.tail_from_end(&path("team/api"), 1, 3, 4096, None, u64::MAX).await.expect("small tail");
    let streamed =
        jenkins::logs::tail(c.console_stream(&path("team/api"), 1).await.expect("s"), 3, 4096).await.expect("tail");
    assert_eq!(small.total_lines, Some(streamed.total_lines));
    let numbers: Vec<Option<u64>> = small.lines.iter().map(|l| l.number).collect();
    assert_eq!(numbers, streamed.lines.iter().map(|l| Some(l.number)).collect::<Vec<_>>());

    // ...but once this client has seen the finished log's size (here from a one-byte
    // progressive read), only the end is fetched.
    let probe = c.progressive_text(&job, 1, 0, 1).await.expect("probe");
    assert!(probe.more, "cut after one byte");
    let before = t.requests_received();
    let got = c.tail_from_end(&job, 1, 50, 4096, None, u64::MAX).await.expect("tail from end");
    assert_eq!(t.requests_received() - before, 1);
    assert!(got.bytes_read <= 1 << 20, "read {} bytes", got.bytes_read);
    assert!(got.log_size.is_some_and(|n| n > 1 << 30));
    assert!(!got.more && got.total_lines.is_none());
    let got_text: Vec<&str> = got.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(got_text, want_text, "the same lines as the streaming tail");

    // A size from the caller works the same; a wrong (too large) one falls back to the whole log.
    let size = got.log_size.expect("size");
    let fresh = admin(&s);
    let again = fresh.tail_from_end(&job, 1, 50, 4096, Some(size), u64::MAX).await.expect("known size");
    assert_eq!(again.lines, got.lines);
    let over = fresh.tail_from_end(&path("team/api"), 1, 3, 4096, Some(1 << 40), u64::MAX).await.expect("too large");
    assert_eq!(over.total_lines, Some(streamed.total_lines), "Jenkins restarted from 0: the whole log");
    assert_eq!(over.lines, small.lines);
}

/// A cold tail of a big finished log streams it (Jenkins cannot tell the size first), then learns
/// the size with one more request that reads headers only: the next tail reads only the end. A
/// small log is not worth that request.
#[tokio::test]
async fn after_a_streamed_tail_of_a_finished_log_the_next_reads_only_the_end() {
    let (t, s) = twin(SCENARIO).await;
    let c = admin(&s);
    let job = path("huge");
    let before = t.requests_received();
    let cold = c.tail_from_end(&job, 1, 50, 4096, None, u64::MAX).await.expect("cold tail");
    assert!(cold.bytes_read > 1 << 30, "the cold tail streams the log: {} bytes", cold.bytes_read);
    assert_eq!(t.requests_received() - before, 2, "the stream and the size");
    let before = t.requests_received();
    let warm = c.tail_from_end(&job, 1, 50, 4096, None, u64::MAX).await.expect("warm tail");
    assert_eq!(t.requests_received() - before, 1);
    assert!(warm.bytes_read <= 1 << 20, "read {} bytes", warm.bytes_read);
    assert_eq!(warm.lines, cold.lines, "the same lines, numbered from the end with the count the cold tail learnt");
    assert!(cold.lines.iter().all(|l| l.number.is_some()));
    assert_eq!(warm.total_lines, cold.total_lines);
    assert!(warm.log_size.is_some_and(|n| n >= cold.bytes_read));

    // A client that knows only the size (from a progressive read) reads the end unnumbered.
    let sized = admin(&s);
    sized.progressive_text(&job, 1, 0, 1).await.expect("probe");
    let unnumbered = sized.tail_from_end(&job, 1, 50, 4096, None, u64::MAX).await.expect("sized tail");
    assert!(unnumbered.bytes_read <= 1 << 20);
    assert!(unnumbered.lines.iter().all(|l| l.number.is_none()) && unnumbered.total_lines.is_none());

    let before = t.requests_received();
    c.tail_from_end(&path("team/api"), 1, 3, 4096, None, u64::MAX).await.expect("small tail");
    assert_eq!(t.requests_received() - before, 1, "a small log is only streamed");

    // A tail stopped at its scan limit has not seen the end: it says so and learns nothing.
    let capped = admin(&s);
    let before = t.requests_received();
    let cut = capped.tail_from_end(&job, 1, 50, 4096, None, 8 << 20).await.expect("capped tail");
    assert!(cut.scan_stopped && cut.bytes_read < 16 << 20, "stopped after {} bytes", cut.bytes_read);
    assert_ne!(cut.lines.last().map(|l| l.text.as_str()), Some("Finished: SUCCESS"));
    assert_eq!(t.requests_received() - before, 1, "no size is learnt from a partial read");
    let again = capped.tail_from_end(&job, 1, 50, 4096, None, 8 << 20).await.expect("capped again");
    assert!(again.scan_stopped, "still streamed: the size was not learnt");
}

#[tokio::test]
async fn tails_from_the_end_agree_with_streaming_tails_wherever_the_read_begins() {
    // 100 kB of 64-byte filler lines, then awkward lines: CRLF, multi-byte characters, a line
    // longer than the first window (so the window has to grow), and no final newline.
    let long = "x".repeat(40_000);
    let toml = format!(
        "[controller]\nquiet_period = 0\n[[jobs]]\npath = \"mixed\"\n[[jobs.builds]]\nresult = \"SUCCESS\"\n\
         log_bytes = 100000\nlog = \"first\\n\\nthird é€😀\\r\\n{long}\\nshort\\r\\nlast\"\n"
    );
    let (t, s) = jenkins_twin::start(&toml, &[("admin".into(), "p".into(), TOKEN.into())]).await.expect("twin");
    let c = admin(&s);
    let job = path("mixed");
    let whole = jenkins::logs::tail(c.console_stream(&job, 1).await.expect("s"), 0, 64).await.expect("count");
    let mut numbered = 0;
    for max_line in [16, 64, 100_000] {
        for n in [0, 1, 2, 3, 4, 5, 6, 7, 50, 300, 2_000, 5_000] {
            let want =
                jenkins::logs::tail(c.console_stream(&job, 1).await.expect("s"), n, max_line).await.expect("tail");
            let before = t.requests_received();
            let got = c.tail_from_end(&job, 1, n, max_line, Some(whole.total_bytes), u64::MAX).await.expect("from end");
            let reads = t.requests_received() - before;
            let got_lines: Vec<(&str, bool)> = got.lines.iter().map(|l| (l.text.as_str(), l.truncated)).collect();
            let want_lines: Vec<(&str, bool)> = want.lines.iter().map(|l| (l.text.as_str(), l.truncated)).collect();
            assert_eq!(got_lines, want_lines, "n = {n}, max_line = {max_line}");
            if got.total_lines.is_some() {
                assert_eq!(got.total_lines, Some(want.total_lines));
                // Numbered (from the end, when only the end was read) as the streaming tail numbers.
                let numbers: Vec<Option<u64>> = got.lines.iter().map(|l| l.number).collect();
                assert_eq!(numbers, want.lines.iter().map(|l| Some(l.number)).collect::<Vec<_>>(), "n = {n}");
                numbered += 1;
            }
            assert!((1..=4).contains(&reads), "n = {n}: {reads} reads");
        }
    }
    // Once a read of the whole log counted its lines, the suffixes are numbered too.
    assert!(numbered > 20, "{numbered} numbered tails");
}
