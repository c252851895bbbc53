//! Typed views of the JSON objects the client reads (jenkins-wire.md §5, §12). Every field is
//! optional or defaulted: controllers differ by version and plugins, and a missing field must not
//! turn into an error. `class` holds `_class`.

use serde::Deserialize;
use serde_json::Value;

/// A reference to an item in a list (`jobs[]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ItemRef {
    #[serde(rename = "_class")]
    pub class: String,
    pub name: String,
    pub url: String,
    /// Absent for folders.
    pub color: Option<String>,
    /// Present for folders when the tree asked for them.
    pub jobs: Option<Vec<ItemRef>>,
    #[serde(rename = "fullName")]
    pub full_name: Option<String>,
}

impl ItemRef {
    /// Folders and multibranch projects contain items; jobs have builds.
    pub fn is_folder(&self) -> bool {
        self.class.ends_with(".Folder")
            || self.class.contains("MultiBranchProject")
            || self.class.contains("OrganizationFolder")
    }
}

/// `/api/json` of the controller.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RootInfo {
    #[serde(rename = "_class")]
    pub class: String,
    pub mode: Option<String>,
    pub node_description: Option<String>,
    pub num_executors: Option<u32>,
    pub description: Option<String>,
    pub jobs: Vec<ItemRef>,
    pub quieting_down: bool,
    pub quiet_down_reason: Option<String>,
    pub url: Option<String>,
    pub use_crumbs: bool,
    pub use_security: bool,
    pub views: Vec<ViewRef>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ViewRef {
    #[serde(rename = "_class")]
    pub class: String,
    pub name: String,
    pub url: String,
}

/// A reference to a build (`lastBuild`, `builds[]`, `executable`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct BuildRef {
    #[serde(rename = "_class")]
    pub class: String,
    pub number: u64,
    pub url: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HealthReport {
    pub description: String,
    pub score: i64,
}

/// A job or folder (`/job/X/api/json`). `B` is how its `builds` are read: references by
/// default; a read asking more of each build (a `tree=` naming result, duration, ...) names its
/// own type.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Job<B = BuildRef> {
    #[serde(rename = "_class")]
    pub class: String,
    pub name: String,
    pub full_name: String,
    pub display_name: String,
    pub full_display_name: String,
    pub description: Option<String>,
    pub url: String,
    pub buildable: Option<bool>,
    pub color: Option<String>,
    pub disabled: Option<bool>,
    pub in_queue: Option<bool>,
    pub concurrent_build: Option<bool>,
    pub next_build_number: Option<u64>,
    pub builds: Vec<B>,
    pub first_build: Option<BuildRef>,
    pub last_build: Option<BuildRef>,
    pub last_completed_build: Option<BuildRef>,
    pub last_failed_build: Option<BuildRef>,
    pub last_stable_build: Option<BuildRef>,
    pub last_successful_build: Option<BuildRef>,
    pub last_unstable_build: Option<BuildRef>,
    pub last_unsuccessful_build: Option<BuildRef>,
    pub health_report: Vec<HealthReport>,
    pub property: Vec<Value>,
    pub queue_item: Option<QueueItem>,
    /// Folders only.
    pub jobs: Option<Vec<ItemRef>>,
}

/// A parameter a job declares.
#[derive(Debug, Clone, PartialEq)]
pub struct ParameterDefinition {
    pub name: String,
    /// `StringParameterDefinition`, `ChoiceParameterDefinition`, ...
    pub kind: String,
    pub default: Option<Value>,
    pub choices: Vec<String>,
    pub description: String,
}

impl<B> Job<B> {
    pub fn is_folder(&self) -> bool {
        self.jobs.is_some()
    }

    /// The parameter definitions from `property[]` (ParametersDefinitionProperty).
    pub fn parameters(&self) -> Vec<ParameterDefinition> {
        let mut out = Vec::new();
        for p in &self.property {
            let Some(defs) = p.get("parameterDefinitions").and_then(Value::as_array) else { continue };
            for d in defs {
                out.push(ParameterDefinition {
                    name: d.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
                    kind: d.get("type").and_then(Value::as_str).unwrap_or_default().to_string(),
                    default: d.get("defaultParameterValue").and_then(|v| v.get("value")).cloned(),
                    choices: d
                        .get("choices")
                        .and_then(Value::as_array)
                        .map(|c| c.iter().filter_map(Value::as_str).map(str::to_string).collect())
                        .unwrap_or_default(),
                    description: d.get("description").and_then(Value::as_str).unwrap_or_default().to_string(),
                });
            }
        }
        out
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Artifact {
    pub display_path: String,
    pub file_name: String,
    pub relative_path: String,
}

/// A build (`/job/X/N/api/json`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Build {
    #[serde(rename = "_class")]
    pub class: String,
    pub number: u64,
    pub url: String,
    pub result: Option<String>,
    pub building: bool,
    pub in_progress: Option<bool>,
    pub duration: i64,
    pub estimated_duration: i64,
    pub timestamp: i64,
    pub queue_id: Option<u64>,
    pub display_name: String,
    pub full_display_name: String,
    pub description: Option<String>,
    pub built_on: Option<String>,
    pub actions: Vec<Value>,
    pub artifacts: Vec<Artifact>,
    pub change_set: Option<Value>,
    pub change_sets: Option<Vec<Value>>,
    pub culprits: Vec<Value>,
}

/// A cause of a build (`CauseAction.causes[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub class: String,
    pub short_description: String,
    pub user_id: Option<String>,
}

impl Build {
    /// `name=value` pairs from the ParametersAction (passwords have no value).
    pub fn parameters(&self) -> Vec<(String, Option<Value>)> {
        self.actions
            .iter()
            .filter_map(|a| a.get("parameters").and_then(Value::as_array))
            .flatten()
            .map(|p| (p.get("name").and_then(Value::as_str).unwrap_or_default().to_string(), p.get("value").cloned()))
            .collect()
    }

    pub fn causes(&self) -> Vec<Cause> {
        self.actions
            .iter()
            .filter_map(|a| a.get("causes").and_then(Value::as_array))
            .flatten()
            .map(|c| Cause {
                class: c.get("_class").and_then(Value::as_str).unwrap_or_default().to_string(),
                short_description: c.get("shortDescription").and_then(Value::as_str).unwrap_or_default().to_string(),
                user_id: c.get("userId").and_then(Value::as_str).map(str::to_string),
            })
            .collect()
    }

    /// The junit summary (failCount, skipCount, totalCount) if the build recorded tests.
    pub fn test_counts(&self) -> Option<(u64, u64, u64)> {
        self.actions.iter().find(|a| a.get("urlName").and_then(Value::as_str) == Some("testReport")).map(|a| {
            let n = |k: &str| a.get(k).and_then(Value::as_u64).unwrap_or(0);
            (n("failCount"), n("skipCount"), n("totalCount"))
        })
    }
}

/// A queue item, live or left (`/queue/item/N/api/json`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct QueueItem {
    #[serde(rename = "_class")]
    pub class: String,
    pub id: u64,
    pub blocked: bool,
    pub buildable: bool,
    pub stuck: bool,
    pub why: Option<String>,
    pub in_queue_since: i64,
    pub params: String,
    pub task: Option<ItemRef>,
    pub url: String,
    /// LeftItem only.
    pub cancelled: Option<bool>,
    /// LeftItem only: the build it became.
    pub executable: Option<BuildRef>,
    pub actions: Vec<Value>,
}

impl QueueItem {
    pub fn is_left(&self) -> bool {
        self.class.ends_with("$LeftItem")
    }
}

/// Where a queue item stands ([`crate::JenkinsClient::queue_item_fate`]).
#[derive(Debug, Clone, PartialEq)]
pub enum QueueFate {
    /// It became this build.
    Started(BuildRef),
    /// It was cancelled before it started.
    Cancelled,
    /// Still in the queue, with Jenkins' reason.
    Waiting(Option<String>),
    /// Jenkins no longer knows the item and no build of the job came from it.
    Gone,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Queue {
    pub items: Vec<QueueItem>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Label {
    pub name: String,
}

/// A node (`/computer/NAME/api/json`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Computer {
    #[serde(rename = "_class")]
    pub class: String,
    pub display_name: String,
    pub description: Option<String>,
    pub assigned_labels: Vec<Label>,
    pub idle: bool,
    pub num_executors: u32,
    pub offline: bool,
    pub temporarily_offline: bool,
    pub offline_cause_reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ComputerSet {
    pub busy_executors: u32,
    pub total_executors: u32,
    pub computer: Vec<Computer>,
}

/// A view (`/view/NAME/api/json`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct View {
    #[serde(rename = "_class")]
    pub class: String,
    pub name: String,
    pub url: String,
    pub description: Option<String>,
    pub jobs: Vec<ItemRef>,
}

/// An installed plugin (`/pluginManager/api/json?depth=1`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Plugin {
    pub short_name: String,
    pub long_name: String,
    pub version: String,
    pub active: bool,
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PluginList {
    pub plugins: Vec<Plugin>,
}

/// `/crumbIssuer/api/json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Crumb {
    pub crumb: String,
    pub crumb_request_field: String,
}

/// `/whoAmI/api/json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WhoAmI {
    pub name: String,
    pub anonymous: bool,
    pub authenticated: bool,
    pub authorities: Vec<String>,
}

/// A Pipeline run from the Pipeline REST API (`wfapi/describe`, `wfapi/runs`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PipelineRun {
    pub id: String,
    pub name: String,
    pub status: String,
    pub start_time_millis: i64,
    pub end_time_millis: i64,
    pub duration_millis: i64,
    pub queue_duration_millis: i64,
    pub pause_duration_millis: i64,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct StageError {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A stage (or step node) of a Pipeline run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Stage {
    pub id: String,
    pub name: String,
    pub exec_node: String,
    pub status: String,
    pub error: Option<StageError>,
    pub parameter_description: Option<String>,
    pub start_time_millis: i64,
    pub duration_millis: i64,
    pub pause_duration_millis: i64,
    pub stage_flow_nodes: Option<Vec<Stage>>,
}

/// One entry of `wfapi/artifacts` (jenkins-wire.md §12.4).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PipelineArtifact {
    pub id: String,
    pub name: String,
    pub path: String,
    pub url: String,
    pub size: Option<u64>,
}

/// `execution/node/ID/wfapi/log`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeLog {
    pub node_id: String,
    pub node_status: String,
    pub length: u64,
    pub has_more: bool,
    /// HTML-escaped text (the last ≤ 10 KiB).
    pub text: String,
    pub console_url: String,
}
