//! The operation catalog: every Jenkins operation an agent can ask for, declared once, as data.
//!
//! Policy checks, the MCP tool list, the proxy's route classifier, the CLI and the docs table all
//! read this table. Adding an operation is one entry here plus its implementation.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A capability group: the rows an administrator toggles (Off / Read / Full use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    Status,
    Build,
    Config,
    Jobs,
    Nodes,
    System,
}

impl Group {
    pub const ALL: [Group; 6] = [Group::Status, Group::Build, Group::Config, Group::Jobs, Group::Nodes, Group::System];

    /// The row title a person toggles.
    pub fn title(self) -> &'static str {
        match self {
            Group::Status => "Read job and build status",
            Group::Build => "Trigger a build",
            Group::Config => "Read or change job configuration",
            Group::Jobs => "Create, copy, or delete jobs",
            Group::Nodes => "See and manage nodes",
            Group::System => "See Jenkins version and plugins",
        }
    }

    /// What the group covers, for help texts.
    pub fn covers(self) -> &'static str {
        match self {
            Group::Status => "jobs, builds, console logs, the queue, pipeline runs, test reports, views",
            Group::Build => "trigger builds, stop running builds, cancel queued builds",
            Group::Config => "read config.xml; update it, enable and disable jobs",
            Group::Jobs => "create jobs from XML, copy jobs, delete jobs",
            Group::Nodes => "list nodes and their state",
            Group::System => "the Jenkins version and installed plugins",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Group::Status => "status",
            Group::Build => "build",
            Group::Config => "config",
            Group::Jobs => "jobs",
            Group::Nodes => "nodes",
            Group::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|g| g.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an operation only reads (needs Read) or changes something (needs Full use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
}

/// What an operation acts on, for scoping by job pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A job (or folder) given by the `job` argument.
    Job,
    /// Optionally a folder (`folder` argument); none means the root.
    Folder,
    /// The controller as a whole.
    Controller,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Stable identifier: MCP tool name, audit `operation`, CLI/API name.
    pub name: &'static str,
    pub group: Group,
    pub access: Access,
    pub target: Target,
    /// Writes that destroy or overwrite (MCP `destructiveHint`).
    pub destructive: bool,
    /// Repeating it has no further effect (MCP `idempotentHint`).
    pub idempotent: bool,
    /// The Jenkins routes it maps to (method + path pattern; `{job}` = `job/a/job/b`).
    pub routes: &'static [&'static str],
    /// The description an LLM reads.
    pub description: &'static str,
    /// The CLI verb (`jgate call <verb>`).
    pub cli: &'static str,
    /// How the audit sentence words it, after the agent's name: "triggered a build of".
    pub verb_phrase: &'static str,
}

macro_rules! op {
    ($name:literal, $group:ident, $access:ident, $target:ident, destructive: $d:literal, idempotent: $i:literal,
     routes: [$($r:literal),* $(,)?], cli: $cli:literal, phrase: $phrase:literal, $desc:literal) => {
        Operation {
            name: $name,
            group: Group::$group,
            access: Access::$access,
            target: Target::$target,
            destructive: $d,
            idempotent: $i,
            routes: &[$($r),*],
            description: $desc,
            cli: $cli,
            verb_phrase: $phrase,
        }
    };
}

/// Every operation, in display order.
pub static OPERATIONS: &[Operation] = &[
    op!("list_jobs", Status, Read, Folder, destructive: false, idempotent: true,
        routes: ["GET /api/json?tree=jobs[...]", "GET /{folder}/api/json?tree=jobs[...]"],
        cli: "jobs list", phrase: "listed the jobs in",
        "List jobs and folders at the root or in a folder (recursively if asked), with their status color."),
    op!("get_job", Status, Read, Job, destructive: false, idempotent: true,
        routes: ["GET /{job}/api/json"], cli: "job show", phrase: "read job",
        "Show a job: health, last builds (last success / failure), recent history, parameter definitions, queue state."),
    op!("get_build", Status, Read, Job, destructive: false, idempotent: true,
        routes: ["GET /{job}/{build}/api/json"], cli: "build show", phrase: "read a build of",
        "Show one build (a number or lastBuild, lastSuccessfulBuild, lastFailedBuild, ...): result, duration, causes, parameters, changes, test summary."),
    op!("get_build_log", Status, Read, Job, destructive: false, idempotent: true,
        routes: ["GET /{job}/{build}/consoleText", "GET /{job}/{build}/logText/progressiveText"],
        cli: "build log", phrase: "read the console log of",
        "Read a build's console log: tail (default), head, a line range, or regex matches with context; bounded in size, secrets redacted."),
    op!("get_test_report", Status, Read, Job, destructive: false, idempotent: true,
        routes: ["GET /{job}/{build}/testReport/api/json"], cli: "build tests", phrase: "read the test report of",
        "Show a build's test results: counts and the failing tests with their errors."),
    op!("get_pipeline_run", Status, Read, Job, destructive: false, idempotent: true,
        routes: ["GET /{job}/wfapi/runs", "GET /{job}/{build}/wfapi/describe", "GET /{job}/{build}/execution/node/{id}/wfapi/*"],
        cli: "pipeline show", phrase: "read the pipeline stages of",
        "Show a Pipeline run's stages with status and timings, and the failing stage's log excerpt."),
    op!("triage_build", Status, Read, Job, destructive: false, idempotent: true,
        routes: ["GET /{job}/{build}/api/json", "GET /{job}/{build}/consoleText", "GET /{job}/{build}/testReport/api/json", "GET /{job}/{build}/wfapi/describe"],
        cli: "build triage", phrase: "triaged a build of",
        "Explain why a build failed, in one bounded answer: the failing stage, the error lines of the log, failing tests, changes since the last success, and whether the previous build failed the same way."),
    op!("get_queue", Status, Read, Controller, destructive: false, idempotent: true,
        routes: ["GET /queue/api/json", "GET /queue/item/{id}/api/json"], cli: "queue list", phrase: "read the build queue of",
        "List queued builds and why each waits."),
    op!("list_views", Status, Read, Controller, destructive: false, idempotent: true,
        routes: ["GET /api/json?tree=views[...]", "GET /view/{view}/api/json"], cli: "views list", phrase: "listed the views of",
        "List views and the jobs in a view."),
    op!("trigger_build", Build, Write, Job, destructive: false, idempotent: false,
        routes: ["POST /{job}/build", "POST /{job}/buildWithParameters"], cli: "build trigger", phrase: "triggered a build of",
        "Trigger a build, with parameters if the job takes them; returns the queue item and the exact build number."),
    op!("stop_build", Build, Write, Job, destructive: true, idempotent: true,
        routes: ["POST /{job}/{build}/stop", "POST /{job}/{build}/term", "POST /{job}/{build}/kill"], cli: "build stop",
        phrase: "stopped a build of", "Stop (abort) a running build."),
    op!("cancel_queue_item", Build, Write, Job, destructive: true, idempotent: true,
        routes: ["POST /queue/cancelItem?id={id}"], cli: "queue cancel", phrase: "cancelled a queued build of",
        "Cancel a build that is still waiting in the queue."),
    op!("get_job_config", Config, Read, Job, destructive: false, idempotent: true,
        routes: ["GET /{job}/config.xml"], cli: "job config", phrase: "read the configuration of",
        "Read a job's config.xml."),
    op!("update_job_config", Config, Write, Job, destructive: true, idempotent: true,
        routes: ["POST /{job}/config.xml"], cli: "job reconfigure", phrase: "changed the configuration of",
        "Replace a job's config.xml."),
    op!("enable_job", Config, Write, Job, destructive: false, idempotent: true,
        routes: ["POST /{job}/enable"], cli: "job enable", phrase: "enabled job", "Enable a disabled job."),
    op!("disable_job", Config, Write, Job, destructive: false, idempotent: true,
        routes: ["POST /{job}/disable"], cli: "job disable", phrase: "disabled job", "Disable a job so it cannot be built."),
    op!("create_job", Jobs, Write, Job, destructive: false, idempotent: false,
        routes: ["POST /createItem?name={name}", "POST /{folder}/createItem?name={name}"], cli: "job create",
        phrase: "created job", "Create a job from a config.xml, at the root or in a folder."),
    op!("copy_job", Jobs, Write, Job, destructive: false, idempotent: false,
        routes: ["POST /createItem?name={name}&mode=copy&from={from}"], cli: "job copy", phrase: "copied a job to",
        "Copy an existing job to a new name."),
    op!("delete_job", Jobs, Write, Job, destructive: true, idempotent: true,
        routes: ["POST /{job}/doDelete", "DELETE /{job}/"], cli: "job delete", phrase: "deleted job",
        "Delete a job or folder with its history."),
    op!("list_nodes", Nodes, Read, Controller, destructive: false, idempotent: true,
        routes: ["GET /computer/api/json", "GET /computer/{node}/api/json"], cli: "nodes list", phrase: "listed the nodes of",
        "List nodes (agents): online/offline, executors, labels."),
    op!("get_system_info", System, Read, Controller, destructive: false, idempotent: true,
        routes: ["GET /api/json", "GET /pluginManager/api/json"], cli: "system info", phrase: "read the version and plugins of",
        "Show the Jenkins version, quiet-down state and installed plugins."),
];

/// Looks an operation up by name.
pub fn operation(name: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().find(|o| o.name == name)
}

/// The operations of a group.
pub fn in_group(group: Group) -> impl Iterator<Item = &'static Operation> {
    OPERATIONS.iter().filter(move |o| o.group == group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_group_has_operations() {
        let mut names: Vec<&str> = OPERATIONS.iter().map(|o| o.name).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len(), "duplicate operation names");
        for g in Group::ALL {
            assert!(in_group(g).next().is_some(), "{g} has no operation");
            assert_eq!(Group::parse(g.as_str()), Some(g));
        }
        assert!(OPERATIONS.iter().filter(|o| o.destructive).all(|o| o.access == Access::Write));
        assert_eq!(operation("trigger_build").map(|o| o.group), Some(Group::Build));
    }
}
