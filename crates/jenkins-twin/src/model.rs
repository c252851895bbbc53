//! The twin's in-memory controller: items (folders, jobs, multibranch projects), builds, the
//! queue, nodes, views, users. Plain data plus the queries every endpoint needs; the HTTP layer
//! (`http.rs`) and the executor (`engine.rs`) hold the one lock around it only between awaits.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config_xml::{ItemKind, JobConfig, ParamKind};
use crate::log::Log;

pub type ItemId = usize;

/// Matrix-authorization permissions the twin models (their Java ids go in headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Perm {
    Administer,
    OverallRead,
    JobRead,
    JobDiscover,
    JobBuild,
    JobCancel,
    JobConfigure,
    JobCreate,
    JobDelete,
    JobExtendedRead,
    JobWorkspace,
    RunUpdate,
    RunDelete,
    ViewRead,
    ViewCreate,
    ViewConfigure,
    ViewDelete,
    AgentConnect,
    AgentConfigure,
    SystemRead,
}

impl Perm {
    pub const ALL: [Perm; 20] = [
        Perm::Administer,
        Perm::OverallRead,
        Perm::JobRead,
        Perm::JobDiscover,
        Perm::JobBuild,
        Perm::JobCancel,
        Perm::JobConfigure,
        Perm::JobCreate,
        Perm::JobDelete,
        Perm::JobExtendedRead,
        Perm::JobWorkspace,
        Perm::RunUpdate,
        Perm::RunDelete,
        Perm::ViewRead,
        Perm::ViewCreate,
        Perm::ViewConfigure,
        Perm::ViewDelete,
        Perm::AgentConnect,
        Perm::AgentConfigure,
        Perm::SystemRead,
    ];

    /// The name shown in the matrix UI and in "is missing the X permission".
    pub fn title(self) -> &'static str {
        match self {
            Perm::Administer => "Overall/Administer",
            Perm::OverallRead => "Overall/Read",
            Perm::JobRead => "Job/Read",
            Perm::JobDiscover => "Job/Discover",
            Perm::JobBuild => "Job/Build",
            Perm::JobCancel => "Job/Cancel",
            Perm::JobConfigure => "Job/Configure",
            Perm::JobCreate => "Job/Create",
            Perm::JobDelete => "Job/Delete",
            Perm::JobExtendedRead => "Job/ExtendedRead",
            Perm::JobWorkspace => "Job/Workspace",
            Perm::RunUpdate => "Run/Update",
            Perm::RunDelete => "Run/Delete",
            Perm::ViewRead => "View/Read",
            Perm::ViewCreate => "View/Create",
            Perm::ViewConfigure => "View/Configure",
            Perm::ViewDelete => "View/Delete",
            Perm::AgentConnect => "Agent/Connect",
            Perm::AgentConfigure => "Agent/Configure",
            Perm::SystemRead => "Overall/SystemRead",
        }
    }

    /// The Java id used in `X-Required-Permission`.
    pub fn java_id(self) -> &'static str {
        match self {
            Perm::Administer => "hudson.model.Hudson.Administer",
            Perm::OverallRead => "hudson.model.Hudson.Read",
            Perm::JobRead => "hudson.model.Item.Read",
            Perm::JobDiscover => "hudson.model.Item.Discover",
            Perm::JobBuild => "hudson.model.Item.Build",
            Perm::JobCancel => "hudson.model.Item.Cancel",
            Perm::JobConfigure => "hudson.model.Item.Configure",
            Perm::JobCreate => "hudson.model.Item.Create",
            Perm::JobDelete => "hudson.model.Item.Delete",
            Perm::JobExtendedRead => "hudson.model.Item.ExtendedRead",
            Perm::JobWorkspace => "hudson.model.Item.Workspace",
            Perm::RunUpdate => "hudson.model.Run.Update",
            Perm::RunDelete => "hudson.model.Run.Delete",
            Perm::ViewRead => "hudson.model.View.Read",
            Perm::ViewCreate => "hudson.model.View.Create",
            Perm::ViewConfigure => "hudson.model.View.Configure",
            Perm::ViewDelete => "hudson.model.View.Delete",
            Perm::AgentConnect => "hudson.model.Computer.Connect",
            Perm::AgentConfigure => "hudson.model.Computer.Configure",
            Perm::SystemRead => "hudson.model.Hudson.SystemRead",
        }
    }

    /// The permissions whose grant implies this one (Jenkins' `impliedBy` chain, one step).
    pub fn implied_by(self) -> &'static [Perm] {
        match self {
            Perm::Administer => &[],
            Perm::JobDiscover => &[Perm::JobRead],
            Perm::JobCancel => &[Perm::JobBuild],
            Perm::JobExtendedRead => &[Perm::JobConfigure],
            _ => &[Perm::Administer],
        }
    }

    /// The Java ids of the generic permissions in the implication chain, for
    /// `X-Permission-Implied-By` headers.
    pub fn implied_by_headers(self) -> Vec<&'static str> {
        let generic = match self {
            Perm::OverallRead | Perm::JobRead | Perm::ViewRead | Perm::JobWorkspace => {
                Some("hudson.security.Permission.GenericRead")
            }
            Perm::JobBuild | Perm::JobCancel | Perm::RunUpdate => Some("hudson.security.Permission.GenericUpdate"),
            Perm::JobConfigure | Perm::JobExtendedRead | Perm::ViewConfigure | Perm::AgentConfigure => {
                Some("hudson.security.Permission.GenericConfigure")
            }
            Perm::JobCreate | Perm::ViewCreate => Some("hudson.security.Permission.GenericCreate"),
            Perm::JobDelete | Perm::RunDelete | Perm::ViewDelete => Some("hudson.security.Permission.GenericDelete"),
            _ => None,
        };
        let mut v: Vec<&'static str> =
            self.implied_by().iter().filter(|p| **p != Perm::Administer).map(|p| p.java_id()).collect();
        v.extend(generic);
        if self != Perm::Administer {
            v.push(Perm::Administer.java_id());
        }
        v
    }

    /// Parses "Overall/Read", "Job/Build", "hudson.model.Item.Build" (case-insensitive).
    pub fn parse(s: &str) -> Option<Perm> {
        let s = s.trim();
        Perm::ALL.into_iter().find(|p| {
            p.title().eq_ignore_ascii_case(s)
                || p.java_id().eq_ignore_ascii_case(s)
                || (s.eq_ignore_ascii_case("Agent/Build") && *p == Perm::AgentConnect)
        })
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub full_name: String,
    pub password: String,
    pub token: String,
    pub perms: Vec<Perm>,
}

/// Grants: a user (or anonymous) has a permission if it was granted or is implied by one that was.
pub fn has_perm(granted: &[Perm], perm: Perm) -> bool {
    granted.contains(&Perm::Administer)
        || granted.contains(&perm)
        || perm.implied_by().iter().any(|p| *p != Perm::Administer && has_perm(granted, *p))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildResult {
    Success,
    Unstable,
    Failure,
    NotBuilt,
    Aborted,
}

impl BuildResult {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildResult::Success => "SUCCESS",
            BuildResult::Unstable => "UNSTABLE",
            BuildResult::Failure => "FAILURE",
            BuildResult::NotBuilt => "NOT_BUILT",
            BuildResult::Aborted => "ABORTED",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "SUCCESS" => BuildResult::Success,
            "UNSTABLE" => BuildResult::Unstable,
            "FAILURE" | "FAILED" => BuildResult::Failure,
            "NOT_BUILT" => BuildResult::NotBuilt,
            "ABORTED" => BuildResult::Aborted,
            _ => return None,
        })
    }
    /// Ball colour of a finished build (BallColor.java).
    pub fn color(self) -> &'static str {
        match self {
            BuildResult::Success => "blue",
            BuildResult::Unstable => "yellow",
            BuildResult::Failure => "red",
            BuildResult::NotBuilt => "notbuilt",
            BuildResult::Aborted => "aborted",
        }
    }
    /// Jenkins orders results: SUCCESS < UNSTABLE < FAILURE < NOT_BUILT < ABORTED.
    pub fn ordinal(self) -> u8 {
        match self {
            BuildResult::Success => 0,
            BuildResult::Unstable => 1,
            BuildResult::Failure => 2,
            BuildResult::NotBuilt => 3,
            BuildResult::Aborted => 4,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Cause {
    User {
        id: String,
        name: String,
    },
    Upstream {
        project: String,
        build: u64,
        url: String,
    },
    Remote {
        addr: String,
        note: Option<String>,
    },
    Timer,
    Scm,
    BranchIndexing,
    /// The Pipeline plugin's `ReplayCause`: this run replays build `original` of the same job.
    Replay {
        original: u64,
    },
}

impl Cause {
    pub fn short_description(&self) -> String {
        match self {
            Cause::User { name, .. } => format!("Started by user {name}"),
            Cause::Upstream { project, build, .. } => {
                format!("Started by upstream project \"{project}\" build number {build}")
            }
            Cause::Remote { addr, note } => match note {
                Some(n) => format!("Started by remote host {addr} with note: {n}"),
                None => format!("Started by remote host {addr}"),
            },
            Cause::Timer => "Started by timer".into(),
            Cause::Scm => "Started by an SCM change".into(),
            Cause::BranchIndexing => "Branch indexing".into(),
            Cause::Replay { original } => format!("Replayed #{original}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParamValue {
    pub name: String,
    pub kind: ParamKind,
    pub value: String,
}

#[derive(Debug, Clone, Default)]
pub struct Change {
    pub commit_id: String,
    pub author: String,
    pub author_email: String,
    pub message: String,
    pub timestamp_ms: i64,
    pub paths: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestStatus {
    Passed,
    Failed,
    Skipped,
}

#[derive(Debug, Clone)]
pub struct TestCase {
    pub class_name: String,
    pub name: String,
    pub status: TestStatus,
    pub duration_secs: f64,
    pub error: Option<String>,
}

/// A Pipeline flow node (stage or step) for the wfapi endpoints.
#[derive(Debug, Clone)]
pub struct FlowNode {
    pub id: u64,
    pub name: String,
    pub is_stage: bool,
    pub parent: Option<u64>,
    pub description: String,
    /// One of the wfapi statuses (SUCCESS, FAILED, IN_PROGRESS, ...).
    pub status: String,
    pub error: Option<(String, String)>,
    pub start_ms: i64,
    pub duration_ms: i64,
    pub pause_ms: i64,
    /// The node's slice of the build log, for `wfapi/log`.
    pub log_start: u64,
    pub log_end: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct PendingInput {
    pub id: String,
    pub message: String,
    pub ok: String,
}

/// Signals from HTTP handlers to the executor running a build.
#[derive(Debug, Default)]
pub struct BuildControl {
    pub wake: Notify,
    pub abort: std::sync::atomic::AtomicBool,
    /// Some(true) = proceed, Some(false) = abort, for a pending input.
    pub input_answer: std::sync::Mutex<Option<bool>>,
    pub aborted_by: std::sync::Mutex<Option<String>>,
}

#[derive(Debug, Clone)]
pub struct Build {
    pub number: u64,
    pub queue_id: u64,
    /// `timestamp`: when the build was scheduled to start (epoch ms).
    pub timestamp: i64,
    pub start_ms: i64,
    pub duration_ms: i64,
    pub queue_ms: i64,
    pub estimated_duration: i64,
    pub result: Option<BuildResult>,
    pub building: bool,
    pub causes: Vec<Cause>,
    pub params: Vec<ParamValue>,
    pub log: Log,
    pub built_on: String,
    pub executor: Option<(usize, usize)>,
    pub flow_nodes: Vec<FlowNode>,
    pub changes: Vec<Change>,
    pub tests: Option<Vec<TestCase>>,
    pub artifacts: Vec<String>,
    /// The bytes of artifacts that have content (others serve 0 bytes).
    pub artifact_content: Arc<std::collections::BTreeMap<String, Vec<u8>>>,
    pub description: Option<String>,
    pub display_name: Option<String>,
    pub keep_log: bool,
    pub pending_input: Option<PendingInput>,
    pub control: Arc<BuildControl>,
    /// A replay's replacement Pipeline script, run instead of the job's (None: the job's own).
    pub replay_script: Option<Arc<str>>,
}

impl Build {
    pub fn color(&self, previous: Option<&Build>) -> String {
        match (self.result, self.building) {
            (Some(r), false) => r.color().into(),
            _ => {
                let base = previous.and_then(|p| p.result).map_or("notbuilt", |r| r.color());
                format!("{base}_anime")
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Item {
    pub name: String,
    pub parent: Option<ItemId>,
    pub kind: ItemKind,
    pub config_xml: String,
    pub config: JobConfig,
    pub display_name: Option<String>,
    pub children: BTreeMap<String, ItemId>,
    pub views: Vec<View>,
    pub builds: BTreeMap<u64, Build>,
    pub next_build_number: u64,
    /// A branch job of a multibranch project (its name is the encoded branch name).
    pub is_branch: bool,
    /// Twin-only: what the JUnit report files in this job's workspace hold after every run (the
    /// twin reads no files; the scenario's `junit` sets it). Recorded when the job's config has
    /// a JUnit publisher.
    pub junit_reports: Option<Vec<TestCase>>,
}

impl Item {
    pub fn is_job(&self) -> bool {
        matches!(self.kind, ItemKind::Freestyle | ItemKind::Pipeline)
    }
    pub fn is_folder(&self) -> bool {
        matches!(self.kind, ItemKind::Folder | ItemKind::Multibranch)
    }
    pub fn class(&self) -> &'static str {
        match self.kind {
            ItemKind::Freestyle => "hudson.model.FreeStyleProject",
            ItemKind::Pipeline => "org.jenkinsci.plugins.workflow.job.WorkflowJob",
            ItemKind::Folder => "com.cloudbees.hudson.plugins.folder.Folder",
            ItemKind::Multibranch => "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject",
        }
    }
    pub fn build_class(&self) -> &'static str {
        match self.kind {
            ItemKind::Pipeline => "org.jenkinsci.plugins.workflow.job.WorkflowRun",
            _ => "hudson.model.FreeStyleBuild",
        }
    }
    pub fn last_build(&self) -> Option<&Build> {
        self.builds.values().next_back()
    }
    pub fn is_building(&self) -> bool {
        self.builds.values().any(|b| b.building)
    }
    /// The displayed name: explicit display name, the decoded branch name, or the name.
    pub fn display(&self) -> String {
        if let Some(d) = &self.display_name {
            return d.clone();
        }
        if self.is_branch {
            return percent_encoding::percent_decode_str(&self.name).decode_utf8_lossy().into_owned();
        }
        self.name.clone()
    }

    /// A permalink (`lastBuild`, `lastSuccessfulBuild`, ...) resolved to a build number
    /// (PeepholePermalink rules, jenkins-wire.md §5.12).
    pub fn permalink(&self, name: &str) -> Option<u64> {
        let done = |b: &&Build| !b.building;
        let mut it = self.builds.values().rev();
        let found = match name {
            "lastBuild" => it.next(),
            "lastCompletedBuild" => it.find(done),
            "lastStableBuild" => it.find(|b| !b.building && b.result == Some(BuildResult::Success)),
            "lastSuccessfulBuild" => {
                it.find(|b| !b.building && matches!(b.result, Some(BuildResult::Success | BuildResult::Unstable)))
            }
            "lastFailedBuild" => it.find(|b| !b.building && b.result == Some(BuildResult::Failure)),
            "lastUnstableBuild" => it.find(|b| !b.building && b.result == Some(BuildResult::Unstable)),
            "lastUnsuccessfulBuild" => it.find(|b| !b.building && b.result.is_some_and(|r| r != BuildResult::Success)),
            "firstBuild" => self.builds.values().next(),
            _ => None,
        };
        found.map(|b| b.number)
    }

    /// Job colour: the colour of the last build, `notbuilt` without builds, `disabled` when
    /// disabled (jenkins-wire.md §5.14).
    pub fn color(&self) -> String {
        let building = self.is_building();
        if self.config.disabled {
            return if building { "disabled_anime".into() } else { "disabled".into() };
        }
        let mut rev = self.builds.values().rev();
        match rev.next() {
            None => "notbuilt".into(),
            Some(last) => last.color(rev.next()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewKind {
    All,
    List,
    My,
}

#[derive(Debug, Clone)]
pub struct View {
    pub name: String,
    pub kind: ViewKind,
    pub description: Option<String>,
    pub job_names: Vec<String>,
    pub include_regex: Option<String>,
    pub config_xml: Option<String>,
}

impl View {
    pub fn class(&self) -> &'static str {
        match self.kind {
            ViewKind::All => "hudson.model.AllView",
            ViewKind::List => "hudson.model.ListView",
            ViewKind::My => "hudson.model.MyView",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub description: String,
    pub labels: Vec<String>,
    pub num_executors: usize,
    pub offline: bool,
    pub offline_reason: Option<String>,
    pub temporarily_offline: bool,
    /// What each executor runs: (job, build number).
    pub busy: Vec<Option<(ItemId, u64)>>,
    /// Flyweight (one-off) executors: Pipeline runs themselves, on the built-in node.
    pub one_off: Vec<(ItemId, u64)>,
    pub remote_fs: String,
}

impl Node {
    pub fn is_builtin(&self) -> bool {
        self.name.is_empty()
    }
    pub fn display_name(&self) -> &str {
        if self.is_builtin() { "Built-In Node" } else { &self.name }
    }
    pub fn matches_label(&self, label: Option<&str>) -> bool {
        match label {
            None => true,
            Some(l) => {
                let l = l.trim();
                l.is_empty()
                    || (self.is_builtin() && (l == "built-in" || l == "master"))
                    || self.name == l
                    || self.labels.iter().any(|x| x == l)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueState {
    Waiting,
    Blocked,
    Buildable,
}

#[derive(Debug, Clone)]
pub struct LeftInfo {
    pub at_ms: i64,
    pub cancelled: bool,
    pub build: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct QueueItem {
    pub id: u64,
    pub job: ItemId,
    pub in_queue_since: i64,
    /// End of the quiet period (the WaitingItem `timestamp`).
    pub timestamp: i64,
    pub buildable_since: i64,
    pub causes: Vec<Cause>,
    pub params: Vec<ParamValue>,
    pub state: QueueState,
    pub why: Option<String>,
    pub stuck: bool,
    pub left: Option<LeftInfo>,
    /// Task as it was when queued (name, url, class), for LeftItems whose job is gone.
    pub task_name: String,
    /// A replay's replacement Pipeline script; such an item is never merged with another.
    pub replay_script: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
pub struct Plugin {
    pub short_name: String,
    pub long_name: String,
    pub version: String,
    pub dependencies: Vec<(String, String, bool)>,
    pub url: String,
}

/// An HTTP notification endpoint defined in a scenario for all jobs (besides those in
/// each job's config.xml).
#[derive(Debug, Clone)]
pub struct Settings {
    pub version: String,
    pub root_url: Option<String>,
    pub description: Option<String>,
    pub quiet_period_secs: u64,
    pub slave_agent_port: i64,
    pub use_crumbs: bool,
    pub session_hex: String,
    pub crumb_salt: String,
    pub mode: String,
}

pub struct State {
    pub settings: Settings,
    pub users: Vec<User>,
    pub anonymous: Vec<Perm>,
    pub items: Vec<Option<Item>>,
    pub root: BTreeMap<String, ItemId>,
    pub views: Vec<View>,
    pub primary_view: String,
    pub queue: Vec<QueueItem>,
    pub left: Vec<QueueItem>,
    pub next_queue_id: u64,
    pub nodes: Vec<Node>,
    pub quiet_down: Option<Option<String>>,
    pub sessions: Vec<(String, String)>,
    pub plugins: Vec<Plugin>,
}

/// Items are keyed case-insensitively as Jenkins does: its item maps are `TreeMap`s ordered by
/// `compareToIgnoreCase` (hudson.util.CaseInsensitiveComparator), whose Java fold differs from
/// Rust's `to_lowercase` (`ſ` is `s`, `ı` is `i`, `ß` stays `ß`). The fold key's `Ord` is that
/// order, so the maps also list children in Jenkins' order.
pub fn item_key(name: &str) -> String {
    java_fold::fold_key(name)
}

impl State {
    pub fn item(&self, id: ItemId) -> Option<&Item> {
        self.items.get(id).and_then(|i| i.as_ref())
    }
    pub fn item_mut(&mut self, id: ItemId) -> Option<&mut Item> {
        self.items.get_mut(id).and_then(|i| i.as_mut())
    }

    pub fn children_of(&self, parent: Option<ItemId>) -> Vec<ItemId> {
        let map = match parent {
            None => &self.root,
            Some(p) => match self.item(p) {
                Some(i) => &i.children,
                None => return Vec::new(),
            },
        };
        map.values().copied().collect()
    }

    pub fn child(&self, parent: Option<ItemId>, name: &str) -> Option<ItemId> {
        let map = match parent {
            None => &self.root,
            Some(p) => &self.item(p)?.children,
        };
        map.get(&item_key(name)).copied()
    }

    /// Resolves a full name `a/b/c` to an item.
    pub fn resolve(&self, full_name: &str) -> Option<ItemId> {
        let mut cur = None;
        for seg in full_name.split('/').filter(|s| !s.is_empty()) {
            cur = Some(self.child(cur, seg)?);
        }
        cur
    }

    pub fn full_name(&self, id: ItemId) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(id);
        while let Some(c) = cur {
            match self.item(c) {
                Some(i) => {
                    parts.push(i.name.clone());
                    cur = i.parent;
                }
                None => break,
            }
        }
        parts.reverse();
        parts.join("/")
    }

    pub fn full_display_name(&self, id: ItemId) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(id);
        while let Some(c) = cur {
            match self.item(c) {
                Some(i) => {
                    parts.push(i.display());
                    cur = i.parent;
                }
                None => break,
            }
        }
        parts.reverse();
        parts.join(" » ")
    }

    /// The item's URL path relative to the root, e.g. `job/a/job/b%20c/`.
    pub fn item_path(&self, id: ItemId) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(id);
        while let Some(c) = cur {
            match self.item(c) {
                Some(i) => {
                    parts.push(format!("job/{}/", raw_encode(&i.name)));
                    cur = i.parent;
                }
                None => break,
            }
        }
        parts.reverse();
        parts.concat()
    }

    pub fn add_item(&mut self, parent: Option<ItemId>, item: Item) -> ItemId {
        let key = item_key(&item.name);
        let id = self.items.len();
        self.items.push(Some(item));
        match parent {
            None => {
                self.root.insert(key, id);
            }
            Some(p) => {
                if let Some(pi) = self.item_mut(p) {
                    pi.children.insert(key, id);
                }
            }
        }
        id
    }

    /// Removes an item and everything below it.
    pub fn remove_item(&mut self, id: ItemId) {
        let Some(item) = self.item(id) else { return };
        let parent = item.parent;
        let key = item_key(&item.name);
        let children: Vec<ItemId> = item.children.values().copied().collect();
        for c in children {
            self.remove_item(c);
        }
        match parent {
            None => {
                self.root.remove(&key);
            }
            Some(p) => {
                if let Some(pi) = self.item_mut(p) {
                    pi.children.remove(&key);
                }
            }
        }
        self.queue.retain(|q| q.job != id);
        if let Some(slot) = self.items.get_mut(id) {
            *slot = None;
        }
    }

    /// All items below `parent`, depth first, in name order.
    pub fn descendants(&self, parent: Option<ItemId>) -> Vec<ItemId> {
        let mut out = Vec::new();
        for c in self.children_of(parent) {
            out.push(c);
            if self.item(c).is_some_and(|i| i.is_folder()) {
                out.extend(self.descendants(Some(c)));
            }
        }
        out
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name.eq_ignore_ascii_case(name))
    }

    pub fn queue_item(&self, id: u64) -> Option<&QueueItem> {
        self.queue.iter().chain(self.left.iter()).find(|q| q.id == id)
    }

    pub fn plugin_installed(&self, short_name: &str) -> bool {
        self.plugins.iter().any(|p| p.short_name == short_name)
    }
}

/// Jenkins' `Util.rawEncode`: keeps ``!$&'()*+,-.0-9=@A-Z_a-z`` and percent-encodes the rest.
pub fn raw_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"!$&'()*+,-.=@_".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Jenkins' `Util.fullEncode` for computer URLs: only alphanumerics are kept.
pub fn full_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// branch-api `NameEncoder`: a branch name becomes a safe item name by percent-encoding the
/// characters Jenkins forbids in names (`feature/x` → `feature%2Fx`).
pub fn raw_encode_branch(branch: &str) -> String {
    let mut out = String::with_capacity(branch.len());
    for ch in branch.chars() {
        match ch {
            '%' | '/' | '\\' | '?' | '*' | '!' | '@' | '#' | '$' | '^' | '&' | '|' | '<' | '>' | '[' | ']' | ':'
            | ';' => out.push_str(&format!("%{:02X}", ch as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_encode_matches_jenkins() {
        assert_eq!(raw_encode("my job"), "my%20job");
        assert_eq!(raw_encode("feature%2Fx"), "feature%252Fx");
        assert_eq!(raw_encode("é"), "%C3%A9");
        assert_eq!(raw_encode("a-b_c.d(e)"), "a-b_c.d(e)");
    }

    #[test]
    fn permission_implications() {
        assert!(has_perm(&[Perm::JobBuild], Perm::JobCancel));
        assert!(has_perm(&[Perm::JobRead], Perm::JobDiscover));
        assert!(has_perm(&[Perm::JobConfigure], Perm::JobExtendedRead));
        assert!(!has_perm(&[Perm::JobRead], Perm::JobBuild));
        assert!(has_perm(&[Perm::Administer], Perm::JobDelete));
        assert_eq!(Perm::parse("job/build"), Some(Perm::JobBuild));
    }
}
