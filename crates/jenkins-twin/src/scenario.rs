//! Scenarios: a TOML description of a controller (users and permissions, folders, jobs with
//! history, nodes, views, plugins, faults) turned into a [`State`]. The format is documented in
//! docs/twin.md; `demo` is built in.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config_xml::{self, ItemKind, JobConfig, NotificationEndpoint, ParamDef, ParamKind};
use crate::log::Log;
use crate::model::{
    Build, BuildControl, BuildResult, Cause, Change, FlowNode, Item, ItemId, Node, ParamValue, Perm, Plugin, Settings,
    State, TestCase, TestStatus, User, View, ViewKind,
};

/// The built-in demo scenario.
pub const DEMO: &str = include_str!("../scenarios/demo.toml");

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario is not valid TOML or has an unknown field: {0}\n  (the format is documented in docs/twin.md)")]
    Toml(#[from] toml::de::Error),
    #[error("scenario: {0}")]
    Invalid(String),
    #[error("cannot serve the twin: {0}")]
    Serve(#[from] std::io::Error),
}

fn invalid<T>(msg: impl Into<String>) -> Result<T, ScenarioError> {
    Err(ScenarioError::Invalid(msg.into()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub controller: ControllerSpec,
    #[serde(default)]
    pub users: Vec<UserSpec>,
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
    #[serde(default)]
    pub folders: Vec<FolderSpec>,
    #[serde(default)]
    pub jobs: Vec<JobSpec>,
    #[serde(default)]
    pub views: Vec<ViewSpec>,
    #[serde(default)]
    pub queue: Vec<QueuedSpec>,
    #[serde(default)]
    pub faults: FaultSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerSpec {
    #[serde(default = "default_version")]
    pub version: String,
    /// The configured root URL; without it, URLs are derived from each request.
    pub url: Option<String>,
    pub description: Option<String>,
    #[serde(default = "default_executors")]
    pub executors: usize,
    #[serde(default = "default_quiet_period")]
    pub quiet_period: u64,
    #[serde(default = "default_scale")]
    pub time_scale: f64,
    /// Fixes the twin clock's start (epoch ms) for deterministic timestamps.
    pub start_time_ms: Option<i64>,
    #[serde(default = "default_agent_port")]
    pub slave_agent_port: i64,
    #[serde(default = "yes")]
    pub crumbs: bool,
    /// Permissions of anonymous users (none by default).
    #[serde(default)]
    pub anonymous: Vec<String>,
    /// Replaces the default plugin set (short names, optionally `name@version`).
    pub plugins: Option<Vec<String>>,
    #[serde(default)]
    pub extra_plugins: Vec<String>,
    #[serde(default)]
    pub remove_plugins: Vec<String>,
    /// Start in quiet-down mode with this reason ("" for none).
    pub quiet_down: Option<String>,
}

impl Default for ControllerSpec {
    fn default() -> Self {
        ControllerSpec {
            version: default_version(),
            url: None,
            description: None,
            executors: default_executors(),
            quiet_period: default_quiet_period(),
            time_scale: default_scale(),
            start_time_ms: None,
            slave_agent_port: default_agent_port(),
            crumbs: true,
            anonymous: Vec::new(),
            plugins: None,
            extra_plugins: Vec::new(),
            remove_plugins: Vec::new(),
            quiet_down: None,
        }
    }
}

/// The Jenkins version the twin claims by default; behaviour follows this version's row of the
/// reference's version table.
pub const DEFAULT_VERSION: &str = "2.541.2";

fn default_version() -> String {
    DEFAULT_VERSION.into()
}
fn default_executors() -> usize {
    2
}
fn default_quiet_period() -> u64 {
    5
}
fn default_scale() -> f64 {
    1.0
}
fn default_agent_port() -> i64 {
    50000
}
fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub name: String,
    pub password: String,
    pub token: Option<String>,
    pub full_name: Option<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    #[serde(default = "one")]
    pub executors: usize,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub offline: bool,
    pub offline_reason: Option<String>,
    #[serde(default)]
    pub description: String,
}
fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderSpec {
    pub path: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub multibranch: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    pub name: String,
    #[serde(default = "string_kind", rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub default: String,
    #[serde(default)]
    pub choices: Vec<String>,
    #[serde(default)]
    pub description: String,
}
fn string_kind() -> String {
    "string".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    pub url: String,
    #[serde(default = "all_events")]
    pub event: String,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}
fn all_events() -> String {
    "all".into()
}
fn default_timeout() -> u64 {
    30_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Full path: `folder/sub/job`. Parent folders are created as plain folders if not declared.
    /// For a branch of a multibranch project, the path's last segment is the branch name
    /// (`shop/feature/x` with `branch = true`: everything after the project is the branch).
    pub path: String,
    /// `freestyle` (default) or `pipeline`.
    #[serde(default = "freestyle")]
    pub kind: String,
    /// Name of the multibranch project (full path) this job is a branch of; `path`'s remainder
    /// after it is the branch name, which may contain `/`.
    pub branch_of: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub disabled: bool,
    pub concurrent: Option<bool>,
    pub label: Option<String>,
    pub quiet_period: Option<u64>,
    #[serde(default)]
    pub parameters: Vec<ParamSpec>,
    /// Shell commands (freestyle) or the Jenkinsfile (pipeline).
    pub script: Option<String>,
    /// A complete config.xml instead of the fields above.
    pub config_xml: Option<String>,
    #[serde(default)]
    pub notifications: Vec<NotifySpec>,
    #[serde(default)]
    pub builds: Vec<BuildSpec>,
    /// Freestyle: the job publishes JUnit results, and these are what its report files hold
    /// after every run (see docs/twin.md).
    pub junit: Option<JunitSpec>,
}
fn freestyle() -> String {
    "freestyle".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSpec {
    #[serde(default = "success")]
    pub result: String,
    #[serde(default = "default_duration")]
    pub duration_ms: i64,
    /// How long before the twin's start the build started (default: spaced one hour apart).
    pub ago_ms: Option<i64>,
    /// Console text between the "Started by" line and "Finished: RESULT".
    pub log: Option<String>,
    /// Adds this many bytes of generated lines (never held in memory): huge-log tests.
    pub log_bytes: Option<u64>,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// `user:NAME`, `timer`, `scm`, `upstream:JOB#N`, `remote:ADDR` (default `user:admin`).
    pub cause: Option<String>,
    #[serde(default)]
    pub changes: Vec<ChangeSpec>,
    pub tests: Option<TestsSpec>,
    #[serde(default)]
    pub stages: Vec<StageSpec>,
    #[serde(default)]
    pub artifacts: Vec<String>,
    /// Artifacts with content: relative path → text (TOML escapes such as `\u0000` make a binary
    /// one). Each is listed with `artifacts` too; an artifact without content serves 0 bytes.
    #[serde(default)]
    pub artifact_files: BTreeMap<String, String>,
    pub description: Option<String>,
}
fn success() -> String {
    "SUCCESS".into()
}
fn default_duration() -> i64 {
    60_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeSpec {
    pub commit: String,
    pub author: String,
    #[serde(default)]
    pub email: String,
    pub message: String,
    #[serde(default)]
    pub paths: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestsSpec {
    #[serde(default)]
    pub passed: Vec<String>,
    #[serde(default)]
    pub skipped: Vec<String>,
    #[serde(default)]
    pub failed: Vec<FailedTest>,
}

/// A freestyle job's JUnit publisher and the results each of its runs records.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JunitSpec {
    /// The publisher's `testResults` pattern.
    #[serde(default = "default_junit_pattern")]
    pub test_results: String,
    #[serde(default)]
    pub passed: Vec<String>,
    #[serde(default)]
    pub skipped: Vec<String>,
    #[serde(default)]
    pub failed: Vec<FailedTest>,
}
fn default_junit_pattern() -> String {
    "target/surefire-reports/*.xml".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedTest {
    /// `package.Class.method`
    pub name: String,
    #[serde(default)]
    pub error: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub name: String,
    #[serde(default = "success")]
    pub status: String,
    #[serde(default = "default_stage_duration")]
    pub duration_ms: i64,
    pub error: Option<String>,
    /// Console lines of this stage.
    pub log: Option<String>,
}
fn default_stage_duration() -> i64 {
    10_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewSpec {
    pub name: String,
    #[serde(default)]
    pub jobs: Vec<String>,
    pub regex: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuedSpec {
    pub job: String,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    pub cause: Option<String>,
}

/// Fault injection; see docs/twin.md.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Added to every response.
    #[serde(default)]
    pub latency_ms: u64,
    /// Fraction (0..1) of requests answered with a 500 stack-trace page.
    #[serde(default)]
    pub error_500_rate: f64,
    /// Fraction answered with 503 (Jenkins starting up).
    #[serde(default)]
    pub error_503_rate: f64,
    /// Fraction whose connection is reset before a response.
    #[serde(default)]
    pub reset_rate: f64,
    /// Console streams are sent in pieces of this many bytes...
    pub drip_bytes: Option<usize>,
    /// ...with this pause between pieces.
    #[serde(default)]
    pub drip_interval_ms: u64,
    /// Only requests whose path starts with this prefix are affected (all by default).
    pub path_prefix: Option<String>,
    /// Seed of the fault generator (deterministic runs).
    pub seed: Option<u64>,
}

/// Parses a scenario file's text.
pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Ok(toml::from_str(text)?)
}

/// The default plugins: the suggested plugins of a standard install (name, version, long name).
pub const DEFAULT_PLUGINS: &[(&str, &str, &str)] = &[
    ("ant", "513.vde9e7b_a_0da_0f", "Ant Plugin"),
    ("antisamy-markup-formatter", "173.v680e3a_b_69ff3", "OWASP Markup Formatter Plugin"),
    ("branch-api", "2.1217.v43d8b_b_d8b_2c7", "Branch API Plugin"),
    ("build-timeout", "1.38", "Build Timeout"),
    ("cloudbees-folder", "6.999.v42253c105443", "Folders Plugin"),
    ("credentials", "1415.v831096eb_5534", "Credentials Plugin"),
    ("credentials-binding", "687.v619cb_15e923f", "Credentials Binding Plugin"),
    ("email-ext", "1876.v28d8d38315b_d", "Email Extension Plugin"),
    ("git", "5.7.0", "Git plugin"),
    ("git-client", "6.1.3", "Jenkins Git client plugin"),
    ("github-branch-source", "1815.v9152b_2ff7a_1b_", "GitHub Branch Source Plugin"),
    ("gradle", "2.14.1", "Gradle Plugin"),
    ("junit", "1335.v6b_a_a_e18534e1", "JUnit Plugin"),
    ("ldap", "780.vcb_33c9a_e4332", "LDAP Plugin"),
    ("mailer", "508.vb_1d6a_d1b_a_c4b", "Jenkins Mailer Plugin"),
    ("matrix-auth", "3.2.6", "Matrix Authorization Strategy Plugin"),
    ("matrix-project", "847.v88a_f90ff9f20", "Matrix Project Plugin"),
    ("pam-auth", "1.12", "PAM Authentication plugin"),
    ("pipeline-github-lib", "61.v629f2cc41d83", "Pipeline: GitHub Groovy Libraries"),
    ("pipeline-graph-view", "447.v6df9a_8b_8b_1c2", "Pipeline Graph View Plugin"),
    ("pipeline-model-definition", "2.2255.v56a_15e805f12", "Pipeline: Declarative"),
    ("pipeline-rest-api", "2.38", "Pipeline: REST API Plugin"),
    ("pipeline-stage-view", "2.38", "Pipeline: Stage View Plugin"),
    ("scm-api", "704.v3ce5c542825a_", "SCM API Plugin"),
    ("script-security", "1373.vb_b_4a_a_c26fa_00", "Script Security Plugin"),
    ("ssh-slaves", "3.1031.v72c6b_883b_869", "SSH Build Agents plugin"),
    ("structs", "343.vdcf37b_a_c81d5", "Structs Plugin"),
    ("timestamper", "1.28", "Timestamper"),
    ("workflow-aggregator", "600.vb_57cdd26fdd7", "Pipeline"),
    ("workflow-api", "1371.ve334280b_d611", "Pipeline: API"),
    ("workflow-basic-steps", "1079.vce64b_a_929c5a_", "Pipeline: Basic Steps"),
    ("workflow-cps", "4150.ve20ca_b_a_a_2815", "Pipeline: Groovy"),
    ("workflow-durable-task-step", "1405.v1fcd4a_d00096", "Pipeline: Nodes and Processes"),
    ("workflow-job", "1520.v56d65e3b_4566", "Pipeline: Job"),
    ("workflow-multibranch", "806.vb_b_688f609ee9", "Pipeline: Multibranch"),
    ("workflow-scm-step", "437.v05a_f66b_e5ef8", "Pipeline: SCM Step"),
    ("workflow-step-api", "700.v6e45cb_a_5df35", "Pipeline: Step API"),
    ("workflow-support", "968.v8f17397e87b_8", "Pipeline: Supporting APIs"),
    ("ws-cleanup", "0.48", "Workspace Cleanup Plugin"),
];

const KNOWN_EXTRA_PLUGINS: &[(&str, &str, &str)] =
    &[("notification", "1.17", "Notification plugin"), ("next-build-number", "1.8", "Next Build Number Plugin")];

fn plugin_from(spec: &str) -> Plugin {
    let (name, version) = spec.split_once('@').map_or((spec, None), |(n, v)| (n, Some(v)));
    let known = DEFAULT_PLUGINS.iter().chain(KNOWN_EXTRA_PLUGINS).find(|(n, _, _)| *n == name);
    let version =
        version.map(str::to_string).or_else(|| known.map(|k| k.1.to_string())).unwrap_or_else(|| "1.0".into());
    let long = known.map(|k| k.2.to_string()).unwrap_or_else(|| name.to_string());
    let deps = match name {
        "pipeline-stage-view" => vec![("pipeline-rest-api".into(), version.clone(), false)],
        "workflow-job" => vec![("workflow-support".into(), "968.v8f17397e87b_8".into(), false)],
        "git" => {
            vec![("git-client".into(), "6.1.3".into(), false), ("scm-api".into(), "704.v3ce5c542825a_".into(), false)]
        }
        _ => Vec::new(),
    };
    Plugin {
        short_name: name.to_string(),
        long_name: long,
        version,
        dependencies: deps,
        url: format!("https://plugins.jenkins.io/{name}"),
    }
}

/// Parses `user:NAME`, `timer`, `scm`, `upstream:JOB#N`, `remote:ADDR`, `branch-indexing`.
pub fn parse_cause(spec: Option<&str>, users: &[User]) -> Result<Cause, ScenarioError> {
    let spec = spec.unwrap_or("user:admin");
    let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
    Ok(match kind {
        "user" => {
            let id = if rest.is_empty() { "admin" } else { rest };
            let name = users.iter().find(|u| u.name == id).map_or(id.to_string(), |u| u.full_name.clone());
            Cause::User { id: id.to_string(), name }
        }
        "timer" => Cause::Timer,
        "scm" => Cause::Scm,
        "branch-indexing" => Cause::BranchIndexing,
        "remote" => Cause::Remote { addr: rest.to_string(), note: None },
        "upstream" => {
            let Some((project, n)) = rest.split_once('#') else {
                return invalid(format!("cause '{spec}': write upstream causes as upstream:JOB#NUMBER"));
            };
            let Ok(build) = n.parse() else {
                return invalid(format!("cause '{spec}': '{n}' is not a build number"));
            };
            Cause::Upstream {
                project: project.to_string(),
                build,
                url: format!("job/{}/", project.replace('/', "/job/")),
            }
        }
        _ => {
            return invalid(format!(
                "unknown cause '{spec}': use user:NAME, timer, scm, upstream:JOB#N, remote:ADDR or branch-indexing"
            ));
        }
    })
}

fn param_kind(kind: &str) -> Result<ParamKind, ScenarioError> {
    Ok(match kind.to_ascii_lowercase().as_str() {
        "string" => ParamKind::String,
        "text" => ParamKind::Text,
        "boolean" | "bool" => ParamKind::Boolean,
        "choice" => ParamKind::Choice,
        "password" => ParamKind::Password,
        other => {
            return invalid(format!("unknown parameter type '{other}': use string, text, boolean, choice or password"));
        }
    })
}

/// An empty item of a kind.
pub fn new_item(name: &str, parent: Option<ItemId>, config_xml: String, config: JobConfig) -> Item {
    let views = match config.kind {
        ItemKind::Folder => vec![all_view("All")],
        ItemKind::Multibranch => vec![all_view("default")],
        _ => Vec::new(),
    };
    Item {
        name: name.to_string(),
        parent,
        kind: config.kind,
        config_xml,
        config,
        display_name: None,
        children: BTreeMap::new(),
        views,
        builds: BTreeMap::new(),
        next_build_number: 1,
        is_branch: false,
        junit_reports: None,
    }
}

pub fn all_view(name: &str) -> View {
    View {
        name: name.into(),
        kind: ViewKind::All,
        description: None,
        job_names: Vec::new(),
        include_regex: None,
        config_xml: None,
    }
}

pub fn empty_config(kind: ItemKind) -> JobConfig {
    JobConfig::new(kind)
}

/// Builds the controller state a scenario describes. `now` is the twin clock at start.
pub fn build_state(sc: &Scenario, extra_admins: &[(String, String, String)], now: i64) -> Result<State, ScenarioError> {
    let c = &sc.controller;
    let mut users = Vec::new();
    for (name, password, token) in extra_admins {
        users.push(User {
            name: name.clone(),
            full_name: name.clone(),
            password: password.clone(),
            token: token.clone(),
            perms: vec![Perm::Administer],
        });
    }
    for u in &sc.users {
        let mut perms = Vec::new();
        for p in &u.permissions {
            match Perm::parse(p) {
                Some(p) => perms.push(p),
                None => {
                    return invalid(format!(
                        "user '{}': unknown permission '{p}' (use e.g. Overall/Read, Job/Build; see docs/twin.md)",
                        u.name
                    ));
                }
            }
        }
        users.push(User {
            name: u.name.clone(),
            full_name: u.full_name.clone().unwrap_or_else(|| u.name.clone()),
            password: u.password.clone(),
            token: u.token.clone().unwrap_or_default(),
            perms,
        });
    }
    let mut anonymous = Vec::new();
    for p in &c.anonymous {
        anonymous.push(
            Perm::parse(p).ok_or_else(|| ScenarioError::Invalid(format!("anonymous: unknown permission '{p}'")))?,
        );
    }
    let mut plugins: Vec<Plugin> = match &c.plugins {
        Some(list) => list.iter().map(|s| plugin_from(s)).collect(),
        None => DEFAULT_PLUGINS.iter().map(|(n, _, _)| plugin_from(n)).collect(),
    };
    plugins.extend(c.extra_plugins.iter().map(|s| plugin_from(s)));
    plugins.retain(|p| !c.remove_plugins.contains(&p.short_name));
    let mut nodes = vec![Node {
        name: String::new(),
        description: String::new(),
        labels: Vec::new(),
        num_executors: c.executors,
        offline: false,
        offline_reason: None,
        temporarily_offline: false,
        busy: vec![None; c.executors],
        one_off: Vec::new(),
        remote_fs: "/var/jenkins_home".into(),
    }];
    for n in &sc.nodes {
        nodes.push(Node {
            name: n.name.clone(),
            description: n.description.clone(),
            labels: n.labels.clone(),
            num_executors: n.executors,
            offline: n.offline,
            offline_reason: n.offline_reason.clone(),
            temporarily_offline: false,
            busy: vec![None; n.executors],
            one_off: Vec::new(),
            remote_fs: "/home/jenkins".into(),
        });
    }
    let session_hex = format!("{:08x}", fastrand::u32(..));
    let mut st = State {
        settings: Settings {
            version: c.version.clone(),
            root_url: c.url.as_ref().map(|u| if u.ends_with('/') { u.clone() } else { format!("{u}/") }),
            description: c.description.clone(),
            quiet_period_secs: c.quiet_period,
            slave_agent_port: c.slave_agent_port,
            use_crumbs: c.crumbs,
            session_hex,
            crumb_salt: format!("{:016x}", fastrand::u64(..)),
            mode: "NORMAL".into(),
        },
        users,
        anonymous,
        items: Vec::new(),
        root: BTreeMap::new(),
        views: vec![all_view("all")],
        primary_view: "all".into(),
        queue: Vec::new(),
        left: Vec::new(),
        next_queue_id: 1,
        nodes,
        quiet_down: c.quiet_down.clone().map(|r| if r.is_empty() { None } else { Some(r) }),
        sessions: Vec::new(),
        plugins,
    };
    for f in &sc.folders {
        let (parent, name) = ensure_parents(&mut st, &f.path)?;
        if st.child(parent, &name).is_some() {
            return invalid(format!("folder '{}' is declared twice", f.path));
        }
        let kind = if f.multibranch { ItemKind::Multibranch } else { ItemKind::Folder };
        let mut cfg = empty_config(kind);
        cfg.description = f.description.clone();
        let xml = config_xml::render_config(&cfg);
        st.add_item(parent, new_item(&name, parent, xml, cfg));
    }
    let mut spacing_base = now;
    for j in &sc.jobs {
        let (parent, name, is_branch) = match &j.branch_of {
            Some(mb) => {
                let Some(mb_id) = st.resolve(mb) else {
                    return invalid(format!(
                        "job '{}': multibranch project '{mb}' is not declared in [[folders]] with multibranch = true",
                        j.path
                    ));
                };
                let Some(branch) = j.path.strip_prefix(mb.as_str()).map(|s| s.trim_start_matches('/')) else {
                    return invalid(format!(
                        "job '{}': its path must start with its multibranch project '{mb}'",
                        j.path
                    ));
                };
                (Some(mb_id), crate::model::raw_encode_branch(branch), true)
            }
            None => {
                let (p, n) = ensure_parents(&mut st, &j.path)?;
                (p, n, false)
            }
        };
        if st.child(parent, &name).is_some() {
            return invalid(format!("job '{}' is declared twice", j.path));
        }
        let (xml, cfg) = job_config(j)?;
        let mut item = new_item(&name, parent, xml, cfg);
        item.is_branch = is_branch;
        item.junit_reports = j.junit.as_ref().map(|ju| test_cases(&ju.passed, &ju.failed, &ju.skipped));
        let id = st.add_item(parent, item);
        let users = st.users.clone();
        let n = j.builds.len() as i64;
        for (i, b) in j.builds.iter().enumerate() {
            let ago = b.ago_ms.unwrap_or((n - i as i64) * 3_600_000);
            let build = history_build(&st, id, (i + 1) as u64, b, spacing_base - ago, &users)?;
            if let Some(item) = st.item_mut(id) {
                item.builds.insert(build.number, build);
                item.next_build_number = i as u64 + 2;
            }
        }
        spacing_base -= 1;
    }
    for v in &sc.views {
        st.views.push(View {
            name: v.name.clone(),
            kind: ViewKind::List,
            description: v.description.clone(),
            job_names: v.jobs.clone(),
            include_regex: v.regex.clone(),
            config_xml: None,
        });
    }
    st.views.sort_by_key(|v| v.name.to_lowercase());
    let users = st.users.clone();
    for q in &sc.queue {
        let Some(job) = st.resolve(&q.job) else {
            return invalid(format!("queue: job '{}' is not declared", q.job));
        };
        let params = resolve_params(&st, job, &q.parameters)?;
        let cause = parse_cause(q.cause.as_deref(), &users)?;
        if crate::engine::schedule(&mut st, now, job, vec![cause], params, Some(0)).is_none() {
            return invalid(format!("queue: job '{}' cannot be built (disabled, or a folder)", q.job));
        }
    }
    Ok(st)
}

fn resolve_params(st: &State, job: ItemId, given: &BTreeMap<String, String>) -> Result<Vec<ParamValue>, ScenarioError> {
    let defs: Vec<ParamDef> = st.item(job).map(|i| i.config.parameters.clone()).unwrap_or_default();
    for k in given.keys() {
        if !defs.iter().any(|d| &d.name == k) {
            return invalid(format!("parameter '{k}' is not defined by job '{}'", st.full_name(job)));
        }
    }
    Ok(defs
        .iter()
        .map(|d| ParamValue {
            name: d.name.clone(),
            kind: d.kind,
            value: given.get(&d.name).cloned().unwrap_or_else(|| d.default.clone()),
        })
        .collect())
}

fn ensure_parents(st: &mut State, path: &str) -> Result<(Option<ItemId>, String), ScenarioError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some((last, parents)) = segs.split_last() else {
        return invalid(format!("empty item path '{path}'"));
    };
    let mut cur = None;
    for seg in parents {
        cur = Some(match st.child(cur, seg) {
            Some(id) => {
                if !st.item(id).is_some_and(|i| i.is_folder()) {
                    return invalid(format!("'{path}': '{seg}' is a job, not a folder"));
                }
                id
            }
            None => {
                let cfg = empty_config(ItemKind::Folder);
                let xml = config_xml::render_config(&cfg);
                st.add_item(cur, new_item(seg, cur, xml, cfg))
            }
        });
    }
    Ok((cur, last.to_string()))
}

fn job_config(j: &JobSpec) -> Result<(String, JobConfig), ScenarioError> {
    if let Some(xml) = &j.config_xml {
        let cfg =
            config_xml::parse_config(xml).map_err(|e| ScenarioError::Invalid(format!("job '{}': {e}", j.path)))?;
        return Ok((xml.clone(), cfg));
    }
    let kind = match j.kind.as_str() {
        "freestyle" => ItemKind::Freestyle,
        "pipeline" => ItemKind::Pipeline,
        other => {
            return invalid(format!(
                "job '{}': unknown kind '{other}' (use freestyle or pipeline; folders go in [[folders]])",
                j.path
            ));
        }
    };
    let mut cfg = empty_config(kind);
    cfg.description = j.description.clone();
    cfg.disabled = j.disabled;
    if let Some(c) = j.concurrent {
        cfg.concurrent_build = c;
    }
    cfg.assigned_label = j.label.clone();
    cfg.quiet_period_secs = j.quiet_period;
    for p in &j.parameters {
        let kind = param_kind(&p.kind)?;
        let default = if kind == ParamKind::Choice && p.default.is_empty() {
            p.choices.first().cloned().unwrap_or_default()
        } else {
            p.default.clone()
        };
        cfg.parameters.push(ParamDef {
            name: p.name.clone(),
            kind,
            default,
            choices: p.choices.clone(),
            description: p.description.clone(),
        });
    }
    match kind {
        ItemKind::Pipeline => cfg.pipeline_script = j.script.clone(),
        _ => cfg.shell_steps = j.script.iter().cloned().collect(),
    }
    if let Some(junit) = &j.junit {
        if kind != ItemKind::Freestyle {
            return invalid(format!(
                "job '{}': `junit` is for freestyle jobs (a Pipeline records tests with its `junit` step)",
                j.path
            ));
        }
        cfg.junit_test_results = Some(junit.test_results.clone());
    }
    cfg.notification_endpoints = j
        .notifications
        .iter()
        .map(|n| NotificationEndpoint {
            url: n.url.clone(),
            event: n.event.clone(),
            format: "JSON".into(),
            timeout_ms: n.timeout_ms,
        })
        .collect();
    Ok((config_xml::render_config(&cfg), cfg))
}

/// Test cases from `package.Class.method` names, in the order Jenkins lists them here.
pub fn test_cases(passed: &[String], failed: &[FailedTest], skipped: &[String]) -> Vec<TestCase> {
    let split =
        |n: &str| n.rsplit_once('.').map_or((String::new(), n.to_string()), |(c, m)| (c.to_string(), m.to_string()));
    let mut v = Vec::new();
    for n in passed {
        let (c, m) = split(n);
        v.push(TestCase { class_name: c, name: m, status: TestStatus::Passed, duration_secs: 0.05, error: None });
    }
    for f in failed {
        let (c, m) = split(&f.name);
        v.push(TestCase {
            class_name: c,
            name: m,
            status: TestStatus::Failed,
            duration_secs: 0.2,
            error: Some(f.error.clone()),
        });
    }
    for n in skipped {
        let (c, m) = split(n);
        v.push(TestCase { class_name: c, name: m, status: TestStatus::Skipped, duration_secs: 0.0, error: None });
    }
    v
}

fn history_build(
    st: &State,
    job: ItemId,
    number: u64,
    b: &BuildSpec,
    start: i64,
    users: &[User],
) -> Result<Build, ScenarioError> {
    let full = st.full_name(job);
    let Some(result) = BuildResult::parse(&b.result) else {
        return invalid(format!(
            "job '{full}' build {number}: unknown result '{}' (SUCCESS, UNSTABLE, FAILURE, NOT_BUILT, ABORTED)",
            b.result
        ));
    };
    let cause = parse_cause(b.cause.as_deref(), users)?;
    let params = resolve_params(st, job, &b.parameters)?;
    let log = Log::new();
    log.line(&cause.short_description());
    let pipeline = st.item(job).is_some_and(|i| i.kind == ItemKind::Pipeline);
    let mut flow_nodes = Vec::new();
    // Generated bulk first, so a long failing log still ends with its failure.
    if let Some(bytes) = b.log_bytes {
        log.filler(bytes);
    }
    if let Some(text) = &b.log {
        for l in text.lines() {
            log.line(l);
        }
    }
    let mut t = start + 500;
    let mut next_id = 3;
    for s in &b.stages {
        let log_start = log.len();
        if pipeline {
            log.line("[Pipeline] stage");
            log.line(&format!("[Pipeline] {{ ({})", s.name));
        }
        for l in s.log.as_deref().unwrap_or("").lines() {
            log.line(l);
        }
        if let Some(e) = &s.error {
            log.line(&format!("ERROR: {e}"));
        }
        if pipeline {
            log.line("[Pipeline] }");
            log.line("[Pipeline] // stage");
        }
        flow_nodes.push(FlowNode {
            id: next_id,
            name: s.name.clone(),
            is_stage: true,
            parent: None,
            description: String::new(),
            status: s.status.clone(),
            error: s.error.clone().map(|e| (e, "hudson.AbortException".to_string())),
            start_ms: t,
            duration_ms: s.duration_ms,
            pause_ms: 0,
            log_start,
            log_end: Some(log.len()),
        });
        next_id += 5;
        t += s.duration_ms;
    }
    if let Some(tests) = &b.tests {
        let total = tests.passed.len() + tests.failed.len() + tests.skipped.len();
        log.line(&format!("Recording test results ({total} tests)"));
    }
    log.line(&format!("Finished: {}", result.as_str()));
    log.finish();
    let tests = b.tests.as_ref().map(|ts| test_cases(&ts.passed, &ts.failed, &ts.skipped));
    let changes = b
        .changes
        .iter()
        .map(|c| Change {
            commit_id: c.commit.clone(),
            author: c.author.clone(),
            author_email: if c.email.is_empty() {
                format!("{}@example.com", c.author.to_lowercase())
            } else {
                c.email.clone()
            },
            message: c.message.clone(),
            timestamp_ms: start - 600_000,
            paths: c.paths.iter().map(|p| ("edit".to_string(), p.clone())).collect(),
        })
        .collect();
    Ok(Build {
        number,
        queue_id: number + 1000 * (job as u64 + 1),
        timestamp: start,
        start_ms: start,
        duration_ms: b.duration_ms,
        queue_ms: 7,
        estimated_duration: b.duration_ms,
        result: Some(result),
        building: false,
        causes: vec![cause],
        params,
        log,
        built_on: String::new(),
        executor: None,
        flow_nodes,
        changes,
        tests,
        artifacts: {
            let mut a = b.artifacts.clone();
            a.extend(b.artifact_files.keys().filter(|k| !b.artifacts.contains(k)).cloned());
            a
        },
        artifact_content: std::sync::Arc::new(
            b.artifact_files.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect(),
        ),
        description: b.description.clone(),
        display_name: None,
        keep_log: false,
        pending_input: None,
        control: std::sync::Arc::new(BuildControl::default()),
        replay_script: None,
    })
}
