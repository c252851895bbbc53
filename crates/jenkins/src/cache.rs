//! Single-flight reads and a small cache of answers Jenkins can no longer change.
//!
//! Many agents often poll the same build at once. Identical reads in flight at the same moment
//! share one upstream request; answers about a *finished* build (its
//! JSON, test report, completed console) are immutable, so they are kept for a short TTL in a
//! bounded LRU. Nothing that can change (jobs, queue, running builds, permalinks) is cached.
//!
//! All state sits behind one `std::sync::Mutex` that is never held across an `.await`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{BoxFuture, Shared, WeakShared};

use crate::error::Error;

/// Limits of a client's cache of immutable answers. `max_entries == 0` or a zero `ttl` turns
/// caching off (identical reads in flight are still made once).
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// How long a finished build's answer is reused.
    pub ttl: Duration,
    /// Most answers kept.
    pub max_entries: usize,
    /// Most body bytes kept, all answers together; a larger answer is not cached.
    pub max_bytes: usize,
    /// How long the client remembers that a build has finished (and its final log size, used by
    /// [`crate::JenkinsClient::tail_from_end`]); a few bytes per build.
    pub finished_ttl: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            ttl: Duration::from_secs(60),
            max_entries: 256,
            max_bytes: 16 * 1024 * 1024,
            finished_ttl: Duration::from_secs(600),
        }
    }
}

/// A buffered answer and the headers the typed calls need.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub body: Bytes,
    /// `X-Jenkins`.
    pub version: Option<String>,
    /// `X-Text-Size` of a progressiveText answer.
    pub text_size: Option<u64>,
    /// `X-More-Data: true`.
    pub more_data: bool,
    /// The body was cut at the caller's limit.
    pub cut: bool,
}

pub(crate) type Outcome = Result<Fetched, Error>;
pub(crate) type SharedOutcome = Shared<BoxFuture<'static, Outcome>>;

/// What may be kept once a read completes.
#[derive(Debug, Clone)]
pub(crate) enum Keep {
    /// Can change at any time: coalesce only.
    Never,
    /// A build's JSON: cached if it says `building: false`. `numbered` is false for permalinks,
    /// which move, so only the finished mark of the build they resolved to is recorded.
    BuildJson { job_prefix: String, numbered: bool },
    /// Data of build `build` that is immutable once the build has finished (test report):
    /// cached only if the build is already known to be finished.
    IfFinished { build: String },
    /// A progressiveText read: cached when Jenkins says the log is complete and nothing was cut.
    Log { build: String },
}

struct Entry {
    value: Fetched,
    at: Instant,
    used: u64,
}

struct Finished {
    at: Instant,
    log_size: Option<u64>,
    /// The complete log's line count, when a read of it counted them; it belongs to `log_size`
    /// and is dropped whenever another size is recorded.
    log_lines: Option<u64>,
}

/// What a client remembers of a finished build's complete log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FinalLog {
    /// `X-Text-Size` of the complete log (progressiveText byte offsets).
    pub size: u64,
    /// Its line count, if known.
    pub lines: Option<u64>,
}

#[derive(Default)]
struct State {
    /// Reads in flight, held weakly: the callers own a read, and a read all of them gave up on
    /// is dropped (its [`Wire::abandon`] then removes the dead entry).
    inflight: HashMap<String, WeakShared<BoxFuture<'static, Outcome>>>,
    cache: HashMap<String, Entry>,
    bytes: usize,
    tick: u64,
    finished: HashMap<String, Finished>,
    /// Answers of reads made for waits (a running build, a queue item), with when each read
    /// began: any waiter polling the same resource within its interval takes the answer instead
    /// of asking Jenkins again (see [`Wire::polled`]).
    polled: HashMap<String, (Instant, Fetched)>,
}

/// The most polled answers kept (resources being waited on at once), their bytes in all, and how
/// long one is kept.
const MAX_POLLED: usize = 1024;
const MAX_POLLED_BYTES: usize = 32 * 1024 * 1024;
const POLLED_KEEP: Duration = Duration::from_secs(10);

/// Per-client single-flight map and cache.
pub(crate) struct Wire {
    opts: CacheOptions,
    state: Mutex<State>,
}

/// What [`Wire::join_or_start`] found.
pub(crate) enum Found {
    Cached(Fetched),
    Join(SharedOutcome),
}

impl Wire {
    pub fn new(opts: CacheOptions) -> Self {
        Wire { opts, state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind, still consistent enough to use.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn caching(&self) -> bool {
        self.opts.max_entries > 0 && !self.opts.ttl.is_zero()
    }

    /// A cached answer, or the read in flight — started with `start` if there is none. `start`
    /// runs under the lock, so a second caller cannot slip between the check and the registration.
    pub fn join_or_start(&self, key: &str, start: impl FnOnce() -> SharedOutcome) -> Found {
        let mut st = self.lock();
        let now = Instant::now();
        st.tick += 1;
        let tick = st.tick;
        let ttl = self.opts.ttl;
        let mut expired = false;
        if let Some(e) = st.cache.get_mut(key) {
            if now.duration_since(e.at) < ttl {
                e.used = tick;
                return Found::Cached(e.value.clone());
            }
            expired = true;
        }
        if expired && let Some(e) = st.cache.remove(key) {
            st.bytes -= e.value.body.len();
        }
        if let Some(f) = st.inflight.get(key).and_then(WeakShared::upgrade) {
            return Found::Join(f);
        }
        let fut = start();
        // `None` only for a read already finished, which has nothing left to share.
        match fut.downgrade() {
            Some(weak) => st.inflight.insert(key.to_string(), weak),
            None => st.inflight.remove(key),
        };
        Found::Join(fut)
    }

    /// Called by the read itself, once, as it ends: removes the in-flight entry and keeps the
    /// answer if `keep` allows.
    pub fn complete(&self, key: &str, keep: &Keep, outcome: &Outcome) {
        let mut st = self.lock();
        st.inflight.remove(key);
        let Ok(f) = outcome else { return };
        let now = Instant::now();
        let cache = match keep {
            Keep::Never => false,
            Keep::BuildJson { job_prefix, numbered } => match build_state(&f.body) {
                Some((number, false)) => {
                    self.mark(&mut st, format!("{job_prefix}{number}/"), None, None, now);
                    *numbered
                }
                _ => false,
            },
            Keep::IfFinished { build } => self.known_finished(&mut st, build, now).is_some(),
            Keep::Log { build } => {
                if f.more_data {
                    false
                } else {
                    self.mark(&mut st, build.clone(), f.text_size, None, now);
                    !f.cut
                }
            }
        };
        if cache && self.caching() {
            self.insert(&mut st, key, f.clone(), now);
        }
    }

    /// Drops the in-flight entry of a read that ended without [`Wire::complete`] — every caller
    /// gave up on it, or it panicked — once no caller holds it, so later reads start afresh. An
    /// entry still held (or a newer read's, registered meanwhile) stays.
    pub fn abandon(&self, key: &str) {
        let taken = self.lock().inflight.remove(key);
        // Checked outside the lock: the read held here might be dropped with it, and dropping a
        // read calls this function.
        if let Some(weak) = taken
            && let Some(held) = weak.upgrade()
        {
            self.lock().inflight.entry(key.to_string()).or_insert(weak);
            drop(held);
        }
    }

    /// Records that a build has finished with a log of `log_size` bytes (an answer without
    /// `X-More-Data`) and, when a read counted them, `log_lines` lines.
    pub fn finished_log(&self, build: &str, log_size: u64, log_lines: Option<u64>) {
        let mut st = self.lock();
        self.mark(&mut st, build.to_string(), Some(log_size), log_lines, Instant::now());
    }

    /// The final log of a build this client has seen finish, if it remembers its size.
    pub fn final_log(&self, build: &str) -> Option<FinalLog> {
        let mut st = self.lock();
        let now = Instant::now();
        self.known_finished(&mut st, build, now)?;
        let f = st.finished.get(build)?;
        Some(FinalLog { size: f.log_size?, lines: f.log_lines })
    }

    /// Forgets everything: after deleting or creating jobs, build numbers can be reused.
    pub fn clear(&self) {
        let mut st = self.lock();
        st.cache.clear();
        st.bytes = 0;
        st.finished.clear();
        st.polled.clear();
    }

    /// A polled answer whose read began less than `within` ago and not before `not_before`.
    pub fn polled(&self, key: &str, within: Duration, not_before: Option<Instant>) -> Option<Fetched> {
        let st = self.lock();
        let (at, f) = st.polled.get(key)?;
        (at.elapsed() < within && not_before.is_none_or(|t| *at >= t)).then(|| f.clone())
    }

    /// Keeps a polled answer (read begun at `at`). Answers older than [`POLLED_KEEP`] are
    /// dropped first (a wait shares answers for about a second), and nothing is kept past
    /// [`MAX_POLLED`] entries or [`MAX_POLLED_BYTES`]: then waiters simply read again.
    pub fn remember_polled(&self, key: &str, at: Instant, f: &Fetched) {
        let mut st = self.lock();
        // A read begun earlier than the one kept is older news.
        if st.polled.get(key).is_some_and(|(t, _)| *t > at) {
            return;
        }
        st.polled.remove(key);
        st.polled.retain(|_, (t, _)| t.elapsed() < POLLED_KEEP);
        let bytes: usize = st.polled.values().map(|(_, f)| f.body.len()).sum();
        if st.polled.len() < MAX_POLLED && bytes + f.body.len() <= MAX_POLLED_BYTES {
            st.polled.insert(key.to_string(), (at, f.clone()));
        }
    }

    #[cfg(test)]
    fn sizes(&self) -> (usize, usize, usize) {
        let st = self.lock();
        (st.inflight.len(), st.cache.len(), st.bytes)
    }

    /// `Some(log_size)` if the build is known to be finished.
    fn known_finished(&self, st: &mut State, build: &str, now: Instant) -> Option<Option<u64>> {
        let f = st.finished.get(build)?;
        if now.duration_since(f.at) >= self.opts.finished_ttl {
            st.finished.remove(build);
            return None;
        }
        Some(f.log_size)
    }

    fn mark(&self, st: &mut State, build: String, log_size: Option<u64>, log_lines: Option<u64>, now: Instant) {
        if self.opts.finished_ttl.is_zero() {
            return;
        }
        let limit = self.opts.max_entries.max(1) * 16;
        if st.finished.len() >= limit && !st.finished.contains_key(&build) {
            let ttl = self.opts.finished_ttl;
            st.finished.retain(|_, f| now.duration_since(f.at) < ttl);
            if st.finished.len() >= limit
                && let Some(oldest) = st.finished.iter().min_by_key(|(_, f)| f.at).map(|(k, _)| k.clone())
            {
                st.finished.remove(&oldest);
            }
        }
        let e = st.finished.entry(build).or_insert(Finished { at: now, log_size: None, log_lines: None });
        e.at = now;
        if let Some(size) = log_size {
            // A count of lines describes one size: another size (or none given) forgets it.
            if e.log_size != Some(size) || log_lines.is_some() {
                e.log_lines = log_lines;
            }
            e.log_size = Some(size);
        }
    }

    fn insert(&self, st: &mut State, key: &str, value: Fetched, now: Instant) {
        let size = value.body.len();
        if size > self.opts.max_bytes {
            return;
        }
        if let Some(old) = st.cache.remove(key) {
            st.bytes -= old.value.body.len();
        }
        let ttl = self.opts.ttl;
        let mut freed = 0;
        st.cache.retain(|_, e| {
            let live = now.duration_since(e.at) < ttl;
            if !live {
                freed += e.value.body.len();
            }
            live
        });
        st.bytes -= freed;
        while !st.cache.is_empty() && (st.cache.len() >= self.opts.max_entries || st.bytes + size > self.opts.max_bytes)
        {
            // Linear scan: the cache holds a few hundred entries at most.
            let Some(lru) = st.cache.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) else { break };
            if let Some(e) = st.cache.remove(&lru) {
                st.bytes -= e.value.body.len();
            }
        }
        st.tick += 1;
        let used = st.tick;
        st.bytes += size;
        st.cache.insert(key.to_string(), Entry { value, at: now, used });
    }
}

/// `(number, building)` of a build's JSON, if it has both.
fn build_state(body: &[u8]) -> Option<(u64, bool)> {
    #[derive(serde::Deserialize)]
    struct B {
        number: Option<u64>,
        building: Option<bool>,
    }
    let b: B = serde_json::from_slice(body).ok()?;
    Some((b.number?, b.building?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn answer(body: &str) -> Fetched {
        Fetched { body: Bytes::from(body.to_string()), version: None, text_size: None, more_data: false, cut: false }
    }

    fn ready(o: Outcome) -> SharedOutcome {
        futures_util::future::ready(o).boxed().shared()
    }

    fn build_json(n: u64, building: bool) -> Fetched {
        answer(&format!(r#"{{"_class":"x","building":{building},"number":{n}}}"#))
    }

    #[test]
    fn finished_builds_are_cached_running_ones_are_not() {
        let w = Wire::new(CacheOptions::default());
        let keep = Keep::BuildJson { job_prefix: "job/a/".into(), numbered: true };
        assert!(matches!(w.join_or_start("k1", || ready(Ok(build_json(1, true)))), Found::Join(_)));
        w.complete("k1", &keep, &Ok(build_json(1, true)));
        assert!(matches!(w.join_or_start("k1", || ready(Ok(build_json(1, true)))), Found::Join(_)));
        w.complete("k1", &keep, &Ok(build_json(1, false)));
        assert!(matches!(w.join_or_start("k1", || unreachable!()), Found::Cached(_)));
        assert_eq!(w.sizes().0, 0, "no in-flight entry is left behind");
        // The test report of a build known to be finished is kept; of an unknown build, not.
        let report = Keep::IfFinished { build: "job/a/1/".into() };
        w.complete("r1", &report, &Ok(answer("{}")));
        let other = Keep::IfFinished { build: "job/a/2/".into() };
        w.complete("r2", &other, &Ok(answer("{}")));
        assert_eq!(w.sizes().1, 2);
    }

    #[test]
    fn permalinks_and_errors_are_not_cached() {
        let w = Wire::new(CacheOptions::default());
        let keep = Keep::BuildJson { job_prefix: "job/a/".into(), numbered: false };
        w.complete("last", &keep, &Ok(build_json(7, false)));
        assert_eq!(w.sizes().1, 0);
        assert_eq!(w.final_log("job/a/7/"), None, "finished, size unknown");
        let log = Keep::Log { build: "job/a/7/".into() };
        w.complete("p", &log, &Err(Error::Unavailable { detail: "x".into() }));
        assert_eq!(w.sizes().1, 0);
        let mut chunk = answer("tail");
        chunk.text_size = Some(1234);
        chunk.cut = true;
        w.complete("p", &log, &Ok(chunk.clone()));
        assert_eq!(w.sizes().1, 0, "a cut chunk is not the whole answer");
        assert_eq!(w.final_log("job/a/7/"), Some(FinalLog { size: 1234, lines: None }));
        // A line count sticks to its size: the same size keeps it, another size drops it.
        w.finished_log("job/a/7/", 1234, Some(40));
        w.complete("p", &log, &Ok(chunk.clone()));
        assert_eq!(w.final_log("job/a/7/"), Some(FinalLog { size: 1234, lines: Some(40) }));
        w.finished_log("job/a/7/", 1300, None);
        assert_eq!(w.final_log("job/a/7/"), Some(FinalLog { size: 1300, lines: None }));
        w.clear();
        assert_eq!(w.final_log("job/a/7/"), None);
    }

    #[test]
    fn bounded_by_entries_bytes_and_ttl() {
        let w = Wire::new(CacheOptions { max_entries: 3, max_bytes: 10, ..CacheOptions::default() });
        let log = Keep::Log { build: "b/".into() };
        for k in ["a", "b", "c"] {
            w.complete(k, &log, &Ok(answer("123")));
        }
        // Touch "a" so that "b" is the least recently used.
        assert!(matches!(w.join_or_start("a", || unreachable!()), Found::Cached(_)));
        w.complete("d", &log, &Ok(answer("123")));
        let (_, entries, bytes) = w.sizes();
        assert_eq!((entries, bytes), (3, 9));
        assert!(matches!(w.join_or_start("b", || ready(Ok(answer("")))), Found::Join(_)));
        w.complete("b", &Keep::Never, &Ok(answer("")));
        w.complete("big", &log, &Ok(answer("01234567890")));
        assert!(w.sizes().2 <= 10);
        let short = Wire::new(CacheOptions { ttl: Duration::from_millis(1), ..CacheOptions::default() });
        short.complete("x", &log, &Ok(answer("1")));
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(short.join_or_start("x", || ready(Ok(answer("")))), Found::Join(_)));
        assert_eq!(short.sizes().2, 0);
    }

    #[test]
    fn a_polled_answer_is_shared_within_its_interval_and_only_if_begun_after_an_event() {
        let w = Wire::new(CacheOptions::default());
        let f = |b: &'static str| Fetched {
            body: Bytes::from_static(b.as_bytes()),
            version: None,
            text_size: None,
            more_data: false,
            cut: false,
        };
        let t0 = Instant::now();
        w.remember_polled("GET b", t0, &f("one"));
        let got = |within: u64, not_before: Option<Instant>| {
            w.polled("GET b", Duration::from_millis(within), not_before).map(|f| f.body)
        };
        assert_eq!(got(60_000, None).as_deref(), Some(&b"one"[..]));
        assert_eq!(got(0, None), None, "a zero interval never shares");
        assert_eq!(got(60_000, Some(t0 + Duration::from_millis(1))), None, "begun before the event");
        assert_eq!(got(60_000, Some(t0)).as_deref(), Some(&b"one"[..]));
        // An answer of a read begun earlier does not replace a newer one.
        w.remember_polled("GET b", t0 - Duration::from_millis(5), &f("older"));
        assert_eq!(got(60_000, None).as_deref(), Some(&b"one"[..]));
        w.remember_polled("GET b", t0 + Duration::from_millis(5), &f("newer"));
        assert_eq!(got(60_000, None).as_deref(), Some(&b"newer"[..]));
        w.clear();
        assert_eq!(got(60_000, None), None, "cleared with the rest");
    }
}
