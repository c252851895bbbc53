//! The twin's clock, queue scheduler and executors: a triggered build waits in the queue (quiet
//! period, blocked, waiting for an executor), then runs its plan on the twin clock, writing its
//! console log, stages and result, and posting Notification-plugin payloads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Twin;
use crate::config_xml::ItemKind;
use crate::model::{
    Build, BuildControl, BuildResult, Cause, FlowNode, ItemId, LeftInfo, ParamValue, PendingInput, QueueItem,
    QueueState, State,
};
use crate::plan::{Op, Plan};
use crate::script::{self, BuildEnv};

/// How long a LeftItem stays readable (Queue.java `leftItems` cache: 5 minutes).
pub const LEFT_ITEM_TTL_MS: i64 = 5 * 60 * 1000;

/// The twin clock: epoch milliseconds that advance `scale` times faster than real time, from a
/// start time that a scenario can fix (deterministic timestamps).
#[derive(Debug, Clone)]
pub struct Clock {
    start: Instant,
    start_ms: i64,
    scale: f64,
}

impl Clock {
    pub fn new(start_ms: Option<i64>, scale: f64) -> Self {
        let start_ms = start_ms
            .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0));
        let scale = if scale.is_finite() && scale > 0.0 { scale } else { 1.0 };
        Clock { start: Instant::now(), start_ms, scale }
    }
    pub fn now_ms(&self) -> i64 {
        self.start_ms + (self.start.elapsed().as_secs_f64() * 1000.0 * self.scale) as i64
    }
    /// Real time to wait for `twin` time to pass.
    pub fn real(&self, twin: Duration) -> Duration {
        twin.div_f64(self.scale)
    }
}

/// Jenkins' `Util.getTimeSpanString`: `4.6 sec`, `15 sec`, `1 min 5 sec`, `2 hr 3 min`, `1 day 4 hr`.
pub fn time_span(ms: i64) -> String {
    let ms = ms.max(0);
    let days = ms / 86_400_000;
    let hours = (ms / 3_600_000) % 24;
    let mins = (ms / 60_000) % 60;
    let secs = (ms / 1000) % 60;
    if days > 0 {
        format!("{days} day {hours} hr")
    } else if hours > 0 {
        format!("{hours} hr {mins} min")
    } else if mins > 0 {
        format!("{mins} min {secs} sec")
    } else if ms >= 10_000 {
        format!("{secs} sec")
    } else if ms >= 1000 {
        format!("{:.1} sec", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

/// `yyyy-MM-dd HH:mm:ss +0000`, the git plugin's change-set date form.
pub fn format_git_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000", rem / 3600, (rem / 60) % 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// ListView `includeRegex`: the whole name must match (Java `Pattern.matcher(name).matches()`).
pub fn simple_regex_match(pattern: &str, name: &str) -> bool {
    regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|r| r.is_match(name))
}

// ---------------------------------------------------------------------------------------------
// scheduling

/// Puts a build of `job` in the queue. Returns the queue item id; if the job is already queued
/// and not concurrent (or an identical parameterized item exists), returns the existing item and
/// `false`.
pub fn schedule(
    st: &mut State,
    now: i64,
    job: ItemId,
    causes: Vec<Cause>,
    params: Vec<ParamValue>,
    delay_ms: Option<i64>,
) -> Option<(u64, bool)> {
    let item = st.item(job)?;
    if !item.is_job() || item.config.disabled {
        return None;
    }
    let quiet_ms = delay_ms
        .unwrap_or_else(|| item.config.quiet_period_secs.unwrap_or(st.settings.quiet_period_secs) as i64 * 1000);
    let task_name = item.name.clone();
    // Jenkins merges a trigger into an identical pending item (same parameters); a replay is
    // never merged into, nor merges (its ReplayFlowFactoryAction's shouldSchedule is always true).
    if let Some(existing) =
        st.queue.iter_mut().find(|q| q.job == job && q.params == params && q.replay_script.is_none())
    {
        existing.causes.extend(causes);
        return Some((existing.id, false));
    }
    Some((push_item(st, now, job, causes, params, quiet_ms, task_name, None), true))
}

/// Puts a replay of a Pipeline build in the queue with its replacement `script`: always a new
/// item (never merged). None when the job cannot be built (disabled).
pub fn schedule_replay(
    st: &mut State,
    now: i64,
    job: ItemId,
    causes: Vec<Cause>,
    params: Vec<ParamValue>,
    script: Arc<str>,
) -> Option<u64> {
    let item = st.item(job)?;
    if !item.is_job() || item.config.disabled {
        return None;
    }
    // ParameterizedJobMixIn.scheduleBuild2 with quiet period 0, as ReplayAction.run2 asks.
    let task_name = item.name.clone();
    Some(push_item(st, now, job, causes, params, 0, task_name, Some(script)))
}

#[allow(clippy::too_many_arguments)]
fn push_item(
    st: &mut State,
    now: i64,
    job: ItemId,
    causes: Vec<Cause>,
    params: Vec<ParamValue>,
    quiet_ms: i64,
    task_name: String,
    replay_script: Option<Arc<str>>,
) -> u64 {
    let id = st.next_queue_id;
    st.next_queue_id += 1;
    st.queue.push(QueueItem {
        id,
        job,
        in_queue_since: now,
        timestamp: now + quiet_ms.max(0),
        buildable_since: now + quiet_ms.max(0),
        causes,
        params,
        state: QueueState::Waiting,
        why: Some(format!("In the quiet period. Expires in {}", time_span(quiet_ms))),
        stuck: false,
        left: None,
        task_name,
        replay_script,
    });
    id
}

/// Cancels a live queue item; it becomes a cancelled LeftItem.
pub fn cancel_queue_item(st: &mut State, id: u64, now: i64) -> bool {
    let Some(pos) = st.queue.iter().position(|q| q.id == id) else { return false };
    let mut q = st.queue.remove(pos);
    q.left = Some(LeftInfo { at_ms: now, cancelled: true, build: None });
    st.left.push(q);
    true
}

/// One pass of the scheduler: updates every queue item's state and `why`, starts what can
/// start, and returns the builds started plus how long until the next quiet period ends.
pub fn tick(st: &mut State, now: i64) -> (Vec<(ItemId, u64)>, Option<i64>) {
    st.left.retain(|q| q.left.as_ref().is_some_and(|l| now - l.at_ms < LEFT_ITEM_TTL_MS));
    let mut started = Vec::new();
    let mut next_wake: Option<i64> = None;
    let ids: Vec<u64> = st.queue.iter().map(|q| q.id).collect();
    for id in ids {
        let Some(pos) = st.queue.iter().position(|q| q.id == id) else { continue };
        let (job, ts) = (st.queue[pos].job, st.queue[pos].timestamp);
        if now < ts {
            let q = &mut st.queue[pos];
            q.state = QueueState::Waiting;
            q.why = Some(format!("In the quiet period. Expires in {}", time_span(ts - now)));
            next_wake = Some(next_wake.map_or(ts - now, |w: i64| w.min(ts - now)));
            continue;
        }
        let Some(item) = st.item(job) else { continue };
        let label = item.config.assigned_label.clone().filter(|l| !l.trim().is_empty());
        let concurrent = item.config.concurrent_build;
        let running =
            item.builds.values().rev().find(|b| b.building).map(|b| (b.number, b.start_ms, b.estimated_duration));
        if st.quiet_down.is_some() {
            set_why(st, pos, QueueState::Buildable, "Jenkins is about to shut down", false);
            continue;
        }
        if let (false, Some((n, start, est))) = (concurrent, running) {
            let eta = if est > 0 { time_span((start + est - now).max(0)) } else { "N/A".into() };
            set_why(st, pos, QueueState::Blocked, &format!("Build #{n} is already in progress (ETA:{eta})"), false);
            continue;
        }
        let matching: Vec<usize> = (0..st.nodes.len())
            .filter(|i| st.nodes[*i].matches_label(label.as_deref()) && st.nodes[*i].num_executors > 0)
            .collect();
        if matching.is_empty() {
            let l = label.clone().unwrap_or_default();
            set_why(st, pos, QueueState::Buildable, &format!("There are no nodes with the label ‘{l}’"), true);
            continue;
        }
        let online: Vec<usize> =
            matching.iter().copied().filter(|i| !st.nodes[*i].offline && !st.nodes[*i].temporarily_offline).collect();
        if online.is_empty() {
            let l = label.clone().unwrap_or_default();
            let msg = if matching.len() == 1 && st.nodes[matching[0]].name == l {
                format!("‘{l}’ is offline")
            } else {
                format!("All nodes of label ‘{l}’ are offline")
            };
            set_why(st, pos, QueueState::Buildable, &msg, true);
            continue;
        }
        let free = online.iter().find_map(|i| st.nodes[*i].busy.iter().position(|b| b.is_none()).map(|e| (*i, e)));
        let Some((node_idx, exec)) = free else {
            let msg = match &label {
                Some(l) => format!("Waiting for next available executor on ‘{l}’"),
                None => "Waiting for next available executor".to_string(),
            };
            set_why(st, pos, QueueState::Buildable, &msg, false);
            continue;
        };
        let q = st.queue.remove(pos);
        if let Some(number) = start_build(st, now, &q, node_idx, exec) {
            started.push((job, number));
            let mut left = q;
            left.left = Some(LeftInfo { at_ms: now, cancelled: false, build: Some(number) });
            left.why = None;
            st.left.push(left);
        }
    }
    (started, next_wake)
}

fn set_why(st: &mut State, pos: usize, state: QueueState, why: &str, stuck: bool) {
    let q = &mut st.queue[pos];
    q.state = state;
    q.why = Some(why.to_string());
    q.stuck = stuck;
}

fn estimated_duration(builds: &BTreeMap<u64, Build>) -> i64 {
    let recent: Vec<i64> = builds
        .values()
        .rev()
        .filter(|b| !b.building && matches!(b.result, Some(BuildResult::Success | BuildResult::Unstable)))
        .take(3)
        .map(|b| b.duration_ms)
        .collect();
    if recent.is_empty() { -1 } else { recent.iter().sum::<i64>() / recent.len() as i64 }
}

fn start_build(st: &mut State, now: i64, q: &QueueItem, node_idx: usize, exec: usize) -> Option<u64> {
    let node_name = st.nodes.get(node_idx)?.name.clone();
    let item = st.item_mut(q.job)?;
    let number = item.next_build_number;
    item.next_build_number += 1;
    let est = estimated_duration(&item.builds);
    let pipeline = item.kind == ItemKind::Pipeline;
    item.builds.insert(
        number,
        Build {
            number,
            queue_id: q.id,
            timestamp: now,
            start_ms: now,
            duration_ms: 0,
            queue_ms: now - q.in_queue_since,
            estimated_duration: est,
            result: None,
            building: true,
            causes: q.causes.clone(),
            params: q.params.clone(),
            log: crate::log::Log::new(),
            built_on: node_name,
            executor: Some((node_idx, exec)),
            flow_nodes: Vec::new(),
            changes: Vec::new(),
            tests: None,
            artifacts: Vec::new(),
            artifact_content: Arc::default(),
            description: None,
            display_name: None,
            keep_log: false,
            pending_input: None,
            control: Arc::new(BuildControl::default()),
            replay_script: q.replay_script.clone(),
        },
    );
    if let Some(slot) = st.nodes.get_mut(node_idx).and_then(|n| n.busy.get_mut(exec)) {
        *slot = Some((q.job, number));
    }
    // A Pipeline run is a flyweight task: it runs on a one-off executor of the built-in node,
    // while its `node {}` block holds the regular executor (as a placeholder).
    if pipeline && let Some(builtin) = st.nodes.first_mut() {
        builtin.one_off.push((q.job, number));
    }
    Some(number)
}

/// The scheduler task: ticks whenever woken (trigger, build end, cancel) or when a quiet period
/// ends, and at least every twin second so `why` texts stay current.
pub async fn scheduler(twin: Arc<Twin>) {
    loop {
        let now = twin.clock.now_ms();
        let (started, next) = match twin.state.lock() {
            Ok(mut st) => tick(&mut st, now),
            Err(_) => return,
        };
        for (job, number) in started {
            tokio::spawn(run_build(twin.clone(), job, number));
        }
        let wait_ms = next.unwrap_or(1000).clamp(1, 1000) as u64;
        let wait = twin.clock.real(Duration::from_millis(wait_ms)).max(Duration::from_millis(5));
        tokio::select! {
            _ = twin.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// executing builds

struct RunInfo {
    kind: ItemKind,
    short_name: String,
    full_name: String,
    shell_steps: Vec<String>,
    pipeline_script: Option<String>,
    env: BuildEnv,
    log: crate::log::Log,
    control: Arc<BuildControl>,
    causes: Vec<Cause>,
    built_on: String,
    /// The JUnit publisher's pattern (freestyle) and what the report files hold.
    junit: Option<(String, Option<Vec<crate::model::TestCase>>)>,
}

fn run_info(twin: &Twin, job: ItemId, number: u64) -> Option<RunInfo> {
    let st = twin.state.lock().ok()?;
    let item = st.item(job)?;
    let b = item.builds.get(&number)?;
    let full_name = st.full_name(job);
    let base = twin.root_url(&st);
    let job_url = format!("{base}{}", st.item_path(job));
    let mut vars = BTreeMap::new();
    let node_name = if b.built_on.is_empty() { "built-in".to_string() } else { b.built_on.clone() };
    let workspace = format!("/var/jenkins_home/workspace/{full_name}");
    for (k, v) in [
        ("BUILD_NUMBER", number.to_string()),
        ("BUILD_ID", number.to_string()),
        ("BUILD_DISPLAY_NAME", format!("#{number}")),
        ("JOB_NAME", full_name.clone()),
        ("JOB_BASE_NAME", item.name.clone()),
        ("BUILD_TAG", format!("jenkins-{}-{number}", full_name.replace('/', "-"))),
        ("BUILD_URL", format!("{job_url}{number}/")),
        ("JOB_URL", job_url.clone()),
        ("JENKINS_URL", base.clone()),
        ("JENKINS_HOME", "/var/jenkins_home".to_string()),
        ("WORKSPACE", workspace),
        ("NODE_NAME", node_name),
        ("NODE_LABELS", if b.built_on.is_empty() { "built-in".into() } else { b.built_on.clone() }),
        ("EXECUTOR_NUMBER", b.executor.map_or(0, |e| e.1).to_string()),
    ] {
        vars.insert(k.to_string(), v);
    }
    for p in &b.params {
        vars.insert(p.name.clone(), p.value.clone());
    }
    Some(RunInfo {
        kind: item.kind,
        short_name: item.name.clone(),
        full_name,
        shell_steps: item.config.shell_steps.clone(),
        junit: item.config.junit_test_results.clone().map(|p| (p, item.junit_reports.clone())),
        // A replay runs its replacement script, not the job's.
        pipeline_script: b.replay_script.as_deref().map(str::to_string).or_else(|| item.config.pipeline_script.clone()),
        env: BuildEnv { vars },
        log: b.log.clone(),
        control: b.control.clone(),
        causes: b.causes.clone(),
        built_on: b.built_on.clone(),
    })
}

/// Runs one build to completion.
/// A freestyle job's JUnit publisher after the build steps (not after an abort): records the
/// report files' results, and marks a successful build unstable when a test failed; with no
/// report files the step fails the build, as the junit plugin does unless empty results are
/// allowed.
fn publish_junit(info: &RunInfo, result: BuildResult) -> (BuildResult, Option<Vec<crate::model::TestCase>>) {
    let Some((_, reports)) = &info.junit else { return (result, None) };
    if result == BuildResult::Aborted {
        return (result, None);
    }
    match reports {
        Some(cases) => {
            info.log.line("Recording test results");
            let failed = cases.iter().any(|c| c.status == crate::model::TestStatus::Failed);
            let result = if failed && result == BuildResult::Success { BuildResult::Unstable } else { result };
            (result, Some(cases.clone()))
        }
        None => {
            info.log.line("Recording test results");
            info.log.line(
                "ERROR: Step \u{2018}Publish JUnit test result report\u{2019} failed: No test report files were found. Configuration error?",
            );
            (BuildResult::Failure, None)
        }
    }
}

pub async fn run_build(twin: Arc<Twin>, job: ItemId, number: u64) {
    let Some(info) = run_info(&twin, job, number) else { return };
    crate::notify::send(&twin, job, number, "QUEUED").await;
    crate::notify::send(&twin, job, number, "STARTED").await;
    let log = info.log.clone();
    for c in &info.causes {
        log.line(&c.short_description());
    }
    let plan: Result<Plan, String> = match info.kind {
        ItemKind::Pipeline => match &info.pipeline_script {
            Some(s) => script::pipeline_plan(s, &info.env).map_err(|e| e.to_string()),
            None => Ok(Vec::new()),
        },
        _ => {
            if info.built_on.is_empty() {
                log.line(&format!("Building in workspace /var/jenkins_home/workspace/{}", info.full_name));
            } else {
                log.line(&format!(
                    "Building remotely on {} in workspace /home/jenkins/workspace/{}",
                    info.built_on, info.full_name
                ));
            }
            Ok(script::freestyle_plan(&info.short_name, &info.shell_steps, &info.env))
        }
    };
    let result = match plan {
        Err(e) => {
            // What Jenkins does with a Jenkinsfile it cannot compile: a failed build naming it.
            log.line("org.codehaus.groovy.control.MultipleCompilationErrorsException: startup failed:");
            log.line(&format!("WorkflowScript: {e}"));
            BuildResult::Failure
        }
        Ok(plan) => execute(&twin, job, number, &info, plan).await,
    };
    let (result, tests) = publish_junit(&info, result);
    if result == BuildResult::Aborted && info.kind != ItemKind::Pipeline {
        log.line("Build was aborted");
    }
    if result == BuildResult::Aborted {
        let by = info.control.aborted_by.lock().ok().and_then(|g| g.clone());
        if let Some(by) = by {
            log.line(&format!("Aborted by {by}"));
        }
    }
    log.line(&format!("Finished: {}", result.as_str()));
    log.finish();
    let now = twin.clock.now_ms();
    if let Ok(mut st) = twin.state.lock() {
        let mut freed = None;
        if let Some(b) = st.item_mut(job).and_then(|i| i.builds.get_mut(&number)) {
            b.result = Some(result);
            b.tests = tests;
            b.building = false;
            b.duration_ms = (now - b.start_ms).max(1);
            b.pending_input = None;
            freed = b.executor.take();
            for n in b.flow_nodes.iter_mut() {
                if n.status == "IN_PROGRESS" || n.status == "PAUSED_PENDING_INPUT" {
                    n.status = if result == BuildResult::Aborted { "ABORTED".into() } else { "SUCCESS".into() };
                    n.duration_ms = now - n.start_ms;
                }
            }
        }
        if let Some((node, exec)) = freed
            && let Some(slot) = st.nodes.get_mut(node).and_then(|n| n.busy.get_mut(exec))
        {
            *slot = None;
        }
        for n in st.nodes.iter_mut() {
            n.one_off.retain(|r| *r != (job, number));
        }
    }
    twin.wake.notify_one();
    crate::notify::send(&twin, job, number, "COMPLETED").await;
    crate::notify::send(&twin, job, number, "FINALIZED").await;
}

fn with_build<R>(twin: &Twin, job: ItemId, number: u64, f: impl FnOnce(&mut Build) -> R) -> Option<R> {
    let mut st = twin.state.lock().ok()?;
    let b = st.item_mut(job)?.builds.get_mut(&number)?;
    Some(f(b))
}

/// Sleeps on the twin clock; returns false if the build was aborted meanwhile.
async fn sleep_abortable(twin: &Twin, control: &BuildControl, d: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + twin.clock.real(d);
    loop {
        if control.abort.load(Ordering::SeqCst) {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return !control.abort.load(Ordering::SeqCst),
            _ = control.wake.notified() => {}
        }
    }
}

async fn execute(twin: &Twin, job: ItemId, number: u64, info: &RunInfo, plan: Plan) -> BuildResult {
    let log = &info.log;
    let mut result = BuildResult::Success;
    let mut next_id: u64 = 3;
    let mut stage_stack: Vec<u64> = Vec::new();
    let mut open_step: Option<u64> = None;
    // Stages that contain a failed step keep FAILED when they close.
    let mut failed_stages: Vec<u64> = Vec::new();
    let close_step = |b: &mut Build, id: Option<u64>, now: i64, log_len: u64, status: &str| {
        if let Some(n) = id.and_then(|id| b.flow_nodes.iter_mut().find(|n| n.id == id)) {
            n.status = status.to_string();
            n.duration_ms = now - n.start_ms;
            n.log_end = Some(log_len);
        }
    };
    for op in plan {
        if info.control.abort.load(Ordering::SeqCst) {
            return BuildResult::Aborted;
        }
        let now = twin.clock.now_ms();
        match op {
            Op::Line(text) => log.line(&text),
            Op::Seq(n) => log.seq(n),
            Op::Sleep(d) => {
                if !sleep_abortable(twin, &info.control, d).await {
                    let now = twin.clock.now_ms();
                    let stack = stage_stack.clone();
                    with_build(twin, job, number, |b| {
                        close_step(b, open_step, now, log.len(), "ABORTED");
                        for s in &stack {
                            close_step(b, Some(*s), now, log.len(), "ABORTED");
                        }
                    });
                    return BuildResult::Aborted;
                }
            }
            Op::StageStart { name } => {
                let id = next_id;
                next_id += 2;
                let parent = stage_stack.last().copied();
                let log_start = log.len();
                with_build(twin, job, number, |b| {
                    b.flow_nodes.push(FlowNode {
                        id,
                        name,
                        is_stage: true,
                        parent,
                        description: String::new(),
                        status: "IN_PROGRESS".into(),
                        error: None,
                        start_ms: now,
                        duration_ms: 0,
                        pause_ms: 0,
                        log_start,
                        log_end: None,
                    })
                });
                stage_stack.push(id);
            }
            Op::StageEnd => {
                let step = open_step.take();
                let stage = stage_stack.pop();
                let failed = stage.is_some_and(|s| failed_stages.contains(&s));
                with_build(twin, job, number, |b| {
                    close_step(b, step, now, log.len(), "SUCCESS");
                    let status = if failed {
                        "FAILED"
                    } else if result == BuildResult::Unstable {
                        "UNSTABLE"
                    } else {
                        "SUCCESS"
                    };
                    close_step(b, stage, now, log.len(), status);
                });
            }
            Op::Step { name, description } => {
                let prev = open_step.take();
                let id = next_id;
                next_id += 1;
                let parent = stage_stack.last().copied();
                let log_start = log.len();
                with_build(twin, job, number, |b| {
                    close_step(b, prev, now, log.len(), "SUCCESS");
                    b.flow_nodes.push(FlowNode {
                        id,
                        name,
                        is_stage: false,
                        parent,
                        description,
                        status: "IN_PROGRESS".into(),
                        error: None,
                        start_ms: now,
                        duration_ms: 0,
                        pause_ms: 0,
                        log_start,
                        log_end: None,
                    })
                });
                open_step = Some(id);
            }
            Op::Fail { message, error_type } => {
                let stack = stage_stack.clone();
                with_build(twin, job, number, |b| {
                    let err = Some((message.clone(), error_type.clone()));
                    for id in open_step.iter().chain(stack.iter()) {
                        if let Some(n) = b.flow_nodes.iter_mut().find(|n| n.id == *id) {
                            n.status = "FAILED".into();
                            if n.error.is_none() {
                                n.error = err.clone();
                            }
                            n.duration_ms = now - n.start_ms;
                            n.log_end = Some(log.len());
                        }
                    }
                });
                return BuildResult::Failure;
            }
            Op::StepFailed { message, error_type } => {
                let stack = stage_stack.clone();
                let step = open_step.take();
                with_build(twin, job, number, |b| {
                    let err = Some((message.clone(), error_type.clone()));
                    for id in step.iter().chain(stack.iter()) {
                        if let Some(n) = b.flow_nodes.iter_mut().find(|n| n.id == *id) {
                            n.status = "FAILED".into();
                            n.error = err.clone();
                        }
                    }
                    close_step(b, step, now, log.len(), "FAILED");
                });
                failed_stages.extend(stack);
            }
            Op::Unstable => {
                result = BuildResult::Unstable;
            }
            Op::Input { id, message, ok } => {
                let pause_start = now;
                let stack = stage_stack.clone();
                log.line(&message);
                log.line(&format!("{ok} or Abort"));
                with_build(twin, job, number, |b| {
                    b.pending_input = Some(PendingInput { id: id.clone(), message: message.clone(), ok: ok.clone() });
                    for sid in open_step.iter().chain(stack.iter()) {
                        if let Some(n) = b.flow_nodes.iter_mut().find(|n| n.id == *sid) {
                            n.status = "PAUSED_PENDING_INPUT".into();
                        }
                    }
                });
                let answer = loop {
                    if info.control.abort.load(Ordering::SeqCst) {
                        break false;
                    }
                    if let Some(a) = info.control.input_answer.lock().ok().and_then(|mut g| g.take()) {
                        break a;
                    }
                    info.control.wake.notified().await;
                };
                let now = twin.clock.now_ms();
                let by = info.control.aborted_by.lock().ok().and_then(|g| g.clone()).unwrap_or_else(|| "admin".into());
                with_build(twin, job, number, |b| {
                    b.pending_input = None;
                    for sid in open_step.iter().chain(stack.iter()) {
                        if let Some(n) = b.flow_nodes.iter_mut().find(|n| n.id == *sid) {
                            n.status = "IN_PROGRESS".into();
                            n.pause_ms += now - pause_start;
                        }
                    }
                });
                if !answer {
                    log.line(&format!("Aborted by {by}"));
                    info.control.abort.store(true, Ordering::SeqCst);
                    if let Ok(mut g) = info.control.aborted_by.lock() {
                        *g = None;
                    }
                    return BuildResult::Aborted;
                }
                log.line(&format!("Approved by {by}"));
            }
        }
    }
    let now = twin.clock.now_ms();
    let stack = stage_stack.clone();
    with_build(twin, job, number, |b| {
        close_step(b, open_step, now, log.len(), "SUCCESS");
        for s in &stack {
            close_step(b, Some(*s), now, log.len(), "SUCCESS");
        }
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_spans_read_like_jenkins() {
        assert_eq!(time_span(4600), "4.6 sec");
        assert_eq!(time_span(15_000), "15 sec");
        assert_eq!(time_span(65_000), "1 min 5 sec");
        assert_eq!(time_span(3_780_000), "1 hr 3 min");
    }

    #[test]
    fn git_dates() {
        assert_eq!(format_git_date(0), "1970-01-01 00:00:00 +0000");
        assert_eq!(format_git_date(1_461_091_892_000), "2016-04-19 18:51:32 +0000");
    }
}
