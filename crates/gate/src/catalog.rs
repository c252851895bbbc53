//! The operation catalog: every Jenkins operation an agent can ask for, declared once, as data.
//!
//! The types of the catalog; the entries themselves are declared with their implementations in
//! [`crate::ops`], and [`OPERATIONS`] is generated from them. Policy checks, the MCP tool list,
//! the CLI and the docs table all read it.

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
            Group::Build => {
                "trigger builds, stop running builds, cancel queued builds, answer Pipeline input steps, wipe workspaces"
            }
            Group::Config => {
                "read config.xml; update it, enable and disable jobs, set descriptions and the next build number, \
                 create, change and delete views (on the folder that holds them; the root's views need all jobs)"
            }
            Group::Jobs => {
                "create jobs (from XML or as an empty item such as a folder), copy, rename and delete jobs, delete builds"
            }
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
    /// A rarely used read: MCP offers it through the one `read_more` tool rather than as a tool
    /// of its own, so that clients which cap their tool count keep room.
    pub grouped: bool,
}

/// The rarely used reads offered through `read_more` (see [`Operation::grouped`]).
pub const GROUPED: &[&str] = &["get_queue", "list_views", "get_system_info"];

/// Whether `name` is in [`GROUPED`] (a `const fn`: `op!` builds entries in constants).
#[doc(hidden)]
pub const fn is_grouped(name: &str) -> bool {
    let mut i = 0;
    while i < GROUPED.len() {
        let (a, b) = (GROUPED[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// Builds an [`Operation`] from its fields (used by each operation's declaration in `ops`).
#[macro_export]
#[doc(hidden)]
macro_rules! op {
    ($name:literal, $group:ident, $access:ident, $target:ident, destructive: $d:literal, idempotent: $i:literal,
     routes: [$($r:literal),* $(,)?], cli: $cli:literal, phrase: $phrase:literal, $desc:literal) => {
        $crate::catalog::Operation {
            name: $name,
            group: $crate::catalog::Group::$group,
            access: $crate::catalog::Access::$access,
            target: $crate::catalog::Target::$target,
            destructive: $d,
            idempotent: $i,
            routes: &[$($r),*],
            description: $desc,
            cli: $cli,
            verb_phrase: $phrase,
            grouped: $crate::catalog::is_grouped($name),
        }
    };
}

/// Every operation, in display order: generated from the operations' own declarations.
pub use crate::ops::OPERATIONS;

/// Looks an operation up by name.
pub fn operation(name: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().copied().find(|o| o.name == name)
}

/// The operations of a group.
pub fn in_group(group: Group) -> impl Iterator<Item = &'static Operation> {
    OPERATIONS.iter().copied().filter(move |o| o.group == group)
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
        // Only reads are grouped (read_more is a read-only tool), and each grouped name exists.
        for name in GROUPED {
            let op = operation(name).unwrap_or_else(|| panic!("{name} is not an operation"));
            assert!(op.grouped && op.access == Access::Read, "{name}");
        }
        assert!(!operation("get_build").is_some_and(|o| o.grouped));
    }
}
