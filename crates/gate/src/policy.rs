//! The policy: who may do what, on which controller, to which jobs.
//!
//! # The model
//!
//! An administrator gives an agent [`Grant`]s. Each grant is one toggled row:
//! agent × controller (or all controllers) × capability [`Group`] × [`Level`] (off / read / full use)
//! × job scope (a glob over Jenkins full names, or all jobs) × optional [`ParamConstraint`]s that
//! restrict the parameters of `trigger_build`.
//!
//! Nothing is allowed without a grant. [`decide`] answers one request; [`may_see`] filters list
//! results so an agent only ever sees the jobs it could read.
//!
//! # Which grant decides
//!
//! Only the agent's grants for the operation's group count, and only those whose controller is
//! unset or equal to the request's. Of those, the ones whose scope covers the job are ranked, and
//! the **most specific one decides alone** — an `off` grant that is more specific than a broad
//! `full use` grant denies (that is how an administrator carves `release/prod-*` out of
//! `release/**`). Specificity, compared in this order:
//!
//! 1. a grant for this controller beats a grant for all controllers;
//! 2. an exact job path beats any pattern, and any pattern beats "all jobs";
//! 3. a longer literal prefix (characters before the first wildcard) beats a shorter one;
//! 4. a pattern without `**` beats one with `**`;
//! 5. more literal characters in total beat fewer.
//!
//! On a full tie the more restrictive level wins (off < read < full use with approval < full use),
//! then the lower grant id.
//!
//! The deciding grant must reach the operation's level: reads ([`Access::Read`]) need `read`,
//! changes ([`Access::Write`]) need `full use`.
//!
//! Operations that do not name a job:
//!
//! - **Controller-wide** operations ([`Target::Controller`]: the queue, views, nodes, system
//!   information) show things across all jobs, so they need a grant whose scope is *all jobs*;
//!   job-scoped grants do not count.
//! - **Listings** ([`Target::Folder`], `list_jobs`): at the root, any grant of the group that
//!   reaches the level allows the listing; with a folder, the grant deciding for the folder itself
//!   decides, and when none covers the folder, a grant whose pattern can match something *below*
//!   it allows the listing. Either way the caller filters the results with [`may_see`], and should
//!   answer a missing folder exactly like an empty one.
//!
//! # Parameters
//!
//! Constraints apply to `trigger_build` only. Every constrained parameter must be present in the
//! request (names compared case-insensitively) and every value given for it must satisfy the rule.
//! A value with a control character (Unicode Cc: newline, NUL, ESC, DEL, C1 controls) or an
//! invisible format character (Cf: zero-width space, bidi overrides and isolates, BOM) never
//! satisfies a rule, whatever the rule says: such values smuggle a second line or hide text.
//! A constrained parameter that is absent denies: Jenkins would use the job's default, which the
//! policy cannot see. Parameters without a constraint pass.
//!
//! # Reasons never leak jobs
//!
//! The policy never knows whether a job exists, so a denial for a job outside every scope reads
//! exactly like one for a job that does not exist. Reasons name the group and, when a grant
//! decided, that grant — whose scope covered the requested path, so it tells nothing new. Other
//! grants' scopes are never echoed.
//!
//! # Job paths
//!
//! The policy works on Jenkins *full names* as Jenkins reports them: item names joined by `/`,
//! e.g. `shop/feature%2Fx` for the multibranch branch `feature/x` of `shop` (the branch plugin
//! stores that branch as the item named `feature%2Fx`). [`normalize_job_path`] maps every spelling
//! an agent could send to that one name, and [`glob_match`] compares case-insensitively, because
//! Jenkins looks items up case-insensitively. Callers must act on [`Decision::job`], never on the
//! raw argument; [`job_url_path`] turns it into a Jenkins URL path.
//!
//! "Case-insensitively" means exactly as Jenkins does: its item maps are ordered by Java's
//! `String.CASE_INSENSITIVE_ORDER`, which folds each character with Java's simple case mappings
//! ([`java_fold`]), not Rust's. So `ſecret` (long s), `SECRET` and `secret` are one item, as are
//! `admın` (dotless i), `ADMİN` and `admin`, while `paß` and `pass` are two. A decision depends only
//! on the Java fold of the canonical name, so every spelling of an item gets the same answer.
//!
//! # Globs
//!
//! `*` matches within one path segment, `?` one character, `[a-z]`/`[!a-z]` one character of (or
//! not of) a set, and a segment that is exactly `**` matches any number of segments, including
//! none: `release/**` covers the folder `release` itself and everything below it, but not
//! `release-old`. `**` inside a segment (`a**b`) is just `*`. In job scopes a set ignores case
//! like the rest: it matches a character when any character Java treats as equal is in the set
//! (`[a-z]` matches `S`, `ſ` and the Kelvin sign), and a negated set matches when none is.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::catalog::{Access, Group, Operation, Target};

/// The longest raw job path [`normalize_job_path`] accepts, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// How far a grant goes within its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing; as a most specific grant, an explicit denial.
    Off,
    /// The group's read operations.
    Read,
    /// Everything in the group ("full use").
    Full,
}

impl Level {
    /// The words a person sees: "off", "read", "full use".
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Read => "read",
            Level::Full => "full use",
        }
    }

    /// The level an operation of this access needs.
    pub fn required_for(access: Access) -> Level {
        match access {
            Access::Read => Level::Read,
            Access::Write => Level::Full,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = ParseError;

    /// Accepts `off`, `read`, `full`, `full use`, `full-use`, `full_use` (any case).
    fn from_str(s: &str) -> Result<Level, ParseError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(Level::Off),
            "read" => Ok(Level::Read),
            "full" | "full use" | "full-use" | "full_use" => Ok(Level::Full),
            _ => Err(ParseError::Level(s.to_string())),
        }
    }
}

/// What a constrained build parameter may be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamRule {
    /// Exactly one of these values (case-sensitive).
    OneOf(Vec<String>),
    /// A glob, case-sensitive, with the same syntax as job scopes: `feature/*` matches
    /// `feature/x` but not `feature/x/y`; `feature/**` matches both.
    Glob(String),
}

impl ParamRule {
    /// Whether `value` satisfies the rule. A value with a control or format character never does
    /// (see [`hidden_char`]).
    pub fn allows(&self, value: &str) -> bool {
        if hidden_char(value).is_some() {
            return false;
        }
        match self {
            ParamRule::OneOf(values) => values.iter().any(|v| v == value),
            ParamRule::Glob(pattern) => {
                let glob = Glob::compile(pattern, GlobMode::Param);
                let segs: Vec<Vec<char>> = value.split('/').map(|s| s.chars().collect()).collect();
                glob.matches(&segs)
            }
        }
    }
}

/// The format characters (Unicode general category Cf, through Unicode 15.1).
const FORMAT_CHARS: &[(char, char)] = &[
    ('\u{AD}', '\u{AD}'),
    ('\u{600}', '\u{605}'),
    ('\u{61C}', '\u{61C}'),
    ('\u{6DD}', '\u{6DD}'),
    ('\u{70F}', '\u{70F}'),
    ('\u{890}', '\u{891}'),
    ('\u{8E2}', '\u{8E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Why a parameter value may not pass any constraint: the first control (Cc) or format (Cf)
/// character in it, and what kind it is.
pub fn hidden_char(value: &str) -> Option<(char, &'static str)> {
    value.chars().find_map(|c| {
        if c.is_control() {
            Some((c, "a control character"))
        } else if FORMAT_CHARS.iter().any(|&(lo, hi)| (lo..=hi).contains(&c)) {
            Some((c, "an invisible format character"))
        } else {
            None
        }
    })
}

/// A rule for one `trigger_build` parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamConstraint {
    /// The parameter name (matched case-insensitively).
    pub name: String,
    pub rule: ParamRule,
}

impl fmt::Display for ParamConstraint {
    /// `ENV ∈ {dev, staging}` or `BRANCH matching feature/*`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            ParamRule::OneOf(values) => write!(f, "{} ∈ {{{}}}", self.name, values.join(", ")),
            ParamRule::Glob(pattern) => write!(f, "{} matching {}", self.name, pattern),
        }
    }
}

impl FromStr for ParamConstraint {
    type Err = ParseError;

    /// The CLI form: `ENV=dev` (exactly), `ENV=dev|staging` (one of), `BRANCH=feature/*` (a glob:
    /// the value contains `*`, `?` or `[`).
    fn from_str(s: &str) -> Result<ParamConstraint, ParseError> {
        let bad = |why: &'static str| ParseError::Param { input: s.to_string(), why };
        let (name, value) = s.split_once('=').ok_or_else(|| bad("there is no '='"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(bad("the parameter name is empty"));
        }
        if name.chars().any(|c| c.is_whitespace() || c.is_control() || "|*?[]".contains(c)) {
            return Err(bad("the parameter name may not contain spaces or any of | * ? [ ]"));
        }
        let value = value.trim();
        if value.is_empty() {
            return Err(bad("the value is empty"));
        }
        if value.chars().any(char::is_control) {
            return Err(bad("the value contains a control character"));
        }
        let rule = if value.contains(['*', '?', '[']) {
            if value.contains('|') {
                return Err(bad("a glob cannot be combined with | alternatives"));
            }
            if !brackets_balanced(value) {
                return Err(bad("a '[' has no closing ']'"));
            }
            ParamRule::Glob(value.to_string())
        } else {
            let mut values: Vec<String> = Vec::new();
            for v in value.split('|').map(str::trim) {
                if v.is_empty() {
                    return Err(bad("one of the | alternatives is empty"));
                }
                if !values.iter().any(|x| x == v) {
                    values.push(v.to_string());
                }
            }
            ParamRule::OneOf(values)
        };
        Ok(ParamConstraint { name: name.to_string(), rule })
    }
}

/// Every `[` opens a class that a later `]` closes.
fn brackets_balanced(s: &str) -> bool {
    let mut open = false;
    for c in s.chars() {
        match c {
            '[' if !open => open = true,
            ']' if open => open = false,
            _ => {}
        }
    }
    !open
}

/// A level or a parameter constraint that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown level '{0}': use off, read or full (also: full use, full-use, full_use)")]
    Level(String),
    #[error(
        "invalid parameter constraint '{input}': {why}. Write NAME=value (exactly that value), \
         NAME=a|b|c (one of these values), or NAME=pattern with * ? [ ] for a glob (e.g. BRANCH=feature/*)"
    )]
    Param { input: String, why: &'static str },
}

/// One toggled row: what an agent may do in a group, where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub id: i64,
    pub agent: String,
    /// `None` = all controllers.
    pub controller: Option<String>,
    pub group: Group,
    pub level: Level,
    /// A glob over Jenkins full names (see the module docs); `None` = all jobs.
    pub jobs: Option<String>,
    /// Rules for `trigger_build` parameters; empty = any parameters.
    pub params: Vec<ParamConstraint>,
    /// Changes this grant allows are held until an administrator approves each one (reads are
    /// never held). Only meaningful on a `full` grant.
    #[serde(default)]
    pub approve: bool,
    /// At most this many calls per hour may be decided by this grant, across every process on
    /// the store (`--max-per-hour`; see [`crate::limits`]). `None`: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_hour: Option<u32>,
}

impl Grant {
    /// The row as a person toggled it: `Trigger a build: full use on release/** (ENV ∈ {staging})`.
    pub fn describe(&self) -> String {
        let approval = if self.approve && self.level == Level::Full { ", with approval," } else { "" };
        let mut s = format!(
            "{}: {}{approval} on {}",
            self.group.title(),
            self.level,
            self.jobs.as_deref().unwrap_or("all jobs")
        );
        let mut details: Vec<String> = Vec::new();
        if let Some(c) = &self.controller {
            details.push(format!("controller {c}"));
        }
        details.extend(self.params.iter().map(ToString::to_string));
        if let Some(n) = self.max_per_hour {
            details.push(format!("at most {} per hour", crate::limits::count(n, "call")));
        }
        if !details.is_empty() {
            s.push_str(" (");
            s.push_str(&details.join("; "));
            s.push(')');
        }
        s
    }

    fn applies_to(&self, agent: &str, controller: &str, group: Group) -> bool {
        self.agent == agent && self.group == group && self.controller.as_deref().is_none_or(|c| c == controller)
    }
}

/// One request to check.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub agent: &'a str,
    pub controller: &'a str,
    pub op: &'a Operation,
    /// The job (for [`Target::Job`]) or folder (for [`Target::Folder`]), raw as the agent sent it.
    pub job: Option<&'a str>,
    /// Build parameters as sent (only `trigger_build` looks at them).
    pub params: &'a [(String, String)],
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    /// The grant that decided, if one did.
    pub grant: Option<i64>,
    /// Plain English, for audit sentences and the agent.
    pub reason: String,
    /// The normalised job (or folder) path: the one to act on.
    pub job: Option<String>,
    /// Allowed, but only once an administrator approves this exact call: the deciding grant
    /// requires approval and the request is a change (reads are never held).
    pub approval: bool,
}

impl Decision {
    fn deny(grant: Option<i64>, reason: String, job: Option<String>) -> Decision {
        Decision { allowed: false, grant, reason, job, approval: false }
    }

    fn allow(grant: &Grant, op: &Operation, extra: &str, job: Option<String>) -> Decision {
        Decision {
            allowed: true,
            grant: Some(grant.id),
            reason: format!("allowed by {}{extra}", cite(grant)),
            job,
            approval: grant.approve && op.access == Access::Write,
        }
    }
}

/// `grant 7 (Trigger a build: full use on release/**)`.
fn cite(g: &Grant) -> String {
    format!("grant {} ({})", g.id, g.describe())
}

/// Decides one request. See the module docs for the rules.
pub fn decide(grants: &[Grant], req: &Request) -> Decision {
    let op = req.op;
    let needed = Level::required_for(op.access);
    let mine = || grants.iter().filter(|g| g.applies_to(req.agent, req.controller, op.group));
    let nothing = || format!("no grant gives {}", op.group.title());

    match op.target {
        Target::Job => {
            let Some(raw) = req.job else {
                return Decision::deny(None, format!("{} needs a job path", op.name), None);
            };
            let path = match normalize_job_path(raw) {
                Ok(p) => p,
                Err(e) => return Decision::deny(None, invalid_path(raw, &e), None),
            };
            let Some(g) = deciding(mine(), &path_key(&path)) else {
                return Decision::deny(None, nothing(), Some(path));
            };
            if let Some(reason) = short_of(g, needed, op) {
                return Decision::deny(Some(g.id), reason, Some(path));
            }
            if op.name == "trigger_build"
                && let Some(reason) = params_violation(g, req.params)
            {
                return Decision::deny(Some(g.id), reason, Some(path));
            }
            Decision::allow(g, op, "", Some(path))
        }
        Target::Folder if req.job.is_some() || needed == Level::Read => {
            let filtered = "; the list shows only what the agent may see";
            let Some(raw) = req.job else {
                // The root listing: any grant that reaches the level; results are filtered.
                return match best(mine().filter(|g| g.level >= needed).map(|g| (g, spec_of(g, None)))) {
                    Some(g) => Decision::allow(g, op, filtered, None),
                    None => Decision::deny(None, nothing(), None),
                };
            };
            let path = match normalize_job_path(raw) {
                Ok(p) => p,
                Err(e) => return Decision::deny(None, invalid_path(raw, &e), None),
            };
            let key = path_key(&path);
            if let Some(g) = deciding(mine(), &key) {
                return match short_of(g, needed, op) {
                    Some(reason) => Decision::deny(Some(g.id), reason, Some(path)),
                    None => Decision::allow(g, op, filtered, Some(path)),
                };
            }
            // No grant covers the folder itself: for reading, one that covers something below it
            // will do.
            let below = mine().filter(|g| needed == Level::Read && g.level >= needed).filter_map(|g| {
                let glob = Glob::compile(g.jobs.as_deref()?, GlobMode::Job);
                glob.matches_below(&key).then(|| (g, glob.spec(g)))
            });
            match best(below) {
                Some(g) => Decision::allow(g, op, filtered, Some(path)),
                None => Decision::deny(None, nothing(), Some(path)),
            }
        }
        // Controller-wide operations (and a write at the root) need a grant on all jobs.
        Target::Folder | Target::Controller => {
            let whole = mine().filter(|g| g.jobs.is_none()).map(|g| (g, spec_of(g, None)));
            match best(whole) {
                Some(g) => match short_of(g, needed, op) {
                    Some(reason) => Decision::deny(Some(g.id), reason, None),
                    None => Decision::allow(g, op, "", None),
                },
                None if mine().next().is_some() => Decision::deny(
                    None,
                    format!("{} covers the whole controller, so it needs a grant on all jobs; {}", op.name, nothing()),
                    None,
                ),
                None => Decision::deny(None, nothing(), None),
            }
        }
    }
}

/// Whether the agent may see `job` at all: the grant deciding for it in group Status (the most
/// specific one, so `off` carve-outs hide jobs) gives at least `read`. For filtering list results;
/// `job` is a full name as Jenkins reports it (any spelling [`normalize_job_path`] accepts works).
pub fn may_see(grants: &[Grant], agent: &str, controller: &str, job: &str) -> bool {
    let Ok(path) = normalize_job_path(job) else {
        return false;
    };
    let mine = grants.iter().filter(|g| g.applies_to(agent, controller, Group::Status));
    deciding(mine, &path_key(&path)).is_some_and(|g| g.level >= Level::Read)
}

/// Whether some request for `op` could be allowed by `grants` on some controller and job: a grant
/// of its group reaches its level, and — for operations that cover the whole controller (the
/// queue, views, nodes, system information, a write at the root) — that grant is on all jobs, the
/// only grants [`decide`] counts for them. A tool for which this is false is denied whatever the
/// agent asks (so it is not listed). Parameter constraints are not weighed: a constrained trigger
/// can still be allowed.
pub fn could_allow(grants: &[Grant], op: &Operation) -> bool {
    let needed = Level::required_for(op.access);
    let whole_controller = op.target == Target::Controller || (op.target == Target::Folder && needed != Level::Read);
    grants.iter().any(|g| g.group == op.group && g.level >= needed && (!whole_controller || g.jobs.is_none()))
}

// ---------------------------------------------------------------------------------------------
// Explaining access

/// One grant weighed for a request, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Considered {
    pub grant: Grant,
    /// Whether its scope covers the request's job (for controller-wide operations: whether it is
    /// on all jobs, the only grants those count).
    pub covers: bool,
    /// Whether it is the grant that decided.
    pub decides: bool,
    /// Why it decides, or why it does not.
    pub why: String,
}

/// [`decide`]'s answer and how it came about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The answer, exactly as [`decide`] gives it (it is computed by it).
    pub decision: Decision,
    /// The agent's grants of the operation's group on the request's controller, most specific
    /// first (the order [`decide`] ranks them in).
    pub considered: Vec<Considered>,
}

/// Explains [`decide`]: its decision (computed by [`decide`] itself) and, for every grant of the
/// operation's group that applies on the controller, whether its scope covers the request and
/// why it does or does not decide — most specific first, so the first grant that covers a job
/// is the one that decides for it.
pub fn explain(grants: &[Grant], req: &Request) -> Explanation {
    let decision = decide(grants, req);
    let op = req.op;
    let path = req.job.and_then(|raw| normalize_job_path(raw).ok());
    let key = path.as_deref().map(path_key);
    let shown = path.as_deref().map(shorten);
    let mut ranked: Vec<(&Grant, Spec, bool)> = grants
        .iter()
        .filter(|g| g.applies_to(req.agent, req.controller, op.group))
        .map(|g| {
            let glob = g.jobs.as_deref().map(|p| Glob::compile(p, GlobMode::Job));
            let spec = spec_of(g, glob.as_ref());
            let covers = match (op.target, &glob, &key) {
                (_, None, _) => true,
                (Target::Controller, Some(_), _) => false,
                (_, Some(glob), Some(key)) => glob.matches(key),
                // A root listing: every grant of the group counts (the list is filtered).
                (Target::Folder, Some(_), None) => req.job.is_none() && op.access == Access::Read,
                (Target::Job, Some(_), None) => false,
            };
            (g, spec, covers)
        })
        .collect();
    ranked.sort_by(|(a, sa, _), (b, sb, _)| {
        sb.cmp(sa).then_with(|| strictness(a).cmp(&strictness(b))).then_with(|| a.id.cmp(&b.id))
    });
    let winner = ranked.iter().find(|(g, _, _)| Some(g.id) == decision.grant).map(|(g, s, _)| (*g, *s));
    let what = shown.clone().unwrap_or_else(|| "the controller".into());
    let considered = ranked
        .iter()
        .map(|&(g, spec, covers)| {
            let decides = Some(g.id) == decision.grant;
            let why = if decides {
                let how = if covers {
                    format!("the most specific grant that covers {what}")
                } else {
                    format!("its scope reaches below {what}; the listing shows only what the agent may see")
                };
                let needed = Level::required_for(op.access);
                if g.level >= needed && decision.approval {
                    format!("decides, as {how}: full use, with approval (each change waits for an administrator)")
                } else if g.level >= needed {
                    format!("decides, as {how}")
                } else if g.level == Level::Off {
                    format!("decides, as {how}: it turns this off")
                } else {
                    format!("decides, as {how}: it gives {}, but {} needs {needed}", g.level, op.name)
                }
            } else if !covers && op.target == Target::Controller {
                format!(
                    "is limited to {}, and {} covers the whole controller: only grants on all jobs count",
                    g.jobs.as_deref().unwrap_or("all jobs"),
                    op.name
                )
            } else if !covers {
                format!("does not cover {what}")
            } else {
                match winner {
                    Some((w, ws)) => format!(
                        "covers {what} too, but grant {} is more specific: {}",
                        w.id,
                        more_specific(w, &ws, g, &spec)
                    ),
                    None => format!("covers {what}, but does not decide"),
                }
            };
            Considered { grant: g.clone(), covers, decides, why }
        })
        .collect();
    Explanation { decision, considered }
}

/// Why grant `a` (spec `sa`) ranks before grant `b` (spec `sb`), in [`decide`]'s order.
fn more_specific(a: &Grant, sa: &Spec, b: &Grant, sb: &Spec) -> String {
    let text = if sa.controller_specific != sb.controller_specific {
        "a grant for this controller beats one for all controllers"
    } else if sa.scope != sb.scope {
        match (sa.scope, sb.scope) {
            (2, 1) => "an exact job path beats a pattern",
            (2, _) => "an exact job path beats all jobs",
            _ => "a pattern beats all jobs",
        }
    } else if sa.literal_prefix != sb.literal_prefix {
        "its literal prefix (before the first wildcard) is longer"
    } else if sa.no_double_star != sb.no_double_star {
        "a pattern without ** beats one with **"
    } else if sa.literals != sb.literals {
        "it has more literal characters"
    } else if sa.fewer_wildcards != sb.fewer_wildcards {
        "it has fewer wildcards"
    } else if strictness(a) != strictness(b) {
        "they are equally specific, and then the more restrictive level wins"
    } else {
        "they are equally specific and grant the same level, and then the lower grant id wins"
    };
    text.to_string()
}

/// What an agent may do in one group on one controller: the cell of `jgate access`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessCell {
    pub group: Group,
    pub controller: String,
    /// The most the agent may do somewhere in this group on this controller.
    pub best: Level,
    /// The level on every job no pattern grant below covers — and for the controller-wide
    /// operations (queue, views, nodes, system information), which count only grants on all jobs.
    pub all_jobs: Level,
    /// The grant on all jobs that decides `all_jobs`, if any.
    pub all_jobs_grant: Option<i64>,
    /// Whether that grant holds changes for approval.
    pub all_jobs_approve: bool,
    /// The grants limited to job patterns that can decide for some job here, most specific first.
    pub patterns: Vec<PatternAccess>,
}

/// A job-pattern grant in an [`AccessCell`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatternAccess {
    pub jobs: String,
    pub level: Level,
    pub grant: i64,
    /// Whether the grant is for this controller only.
    pub controller_specific: bool,
    /// Whether the grant holds changes for approval.
    pub approve: bool,
}

impl AccessCell {
    /// `Read`, or `Full — release/** full use, release/prod-* off, other jobs read`.
    pub fn summary(&self) -> String {
        let level = |l: Level, approve: bool| match (l, approve) {
            (Level::Full, true) => "full use, with approval".to_string(),
            (l, _) => l.to_string(),
        };
        // Full everywhere it is full only with approval: the cell says so.
        let full_plain = (self.all_jobs == Level::Full && !self.all_jobs_approve)
            || self.patterns.iter().any(|p| p.level == Level::Full && !p.approve);
        let word = match self.best {
            Level::Off => "Off",
            Level::Read => "Read",
            Level::Full if full_plain => "Full",
            Level::Full => "Full use, with approval",
        };
        if self.patterns.is_empty() {
            return word.to_string();
        }
        let mut parts: Vec<String> =
            self.patterns.iter().map(|p| format!("{} {}", p.jobs, level(p.level, p.approve))).collect();
        parts.push(format!("other jobs {}", level(self.all_jobs, self.all_jobs_approve)));
        format!("{word} — {}", parts.join(", "))
    }
}

/// The effective access of `agent`: for every group and each of `controllers`, which level its
/// grants give on all jobs and on which patterns — only grants that can decide for some job there
/// (a grant for all controllers never decides on a controller where a grant of the same group for
/// that controller covers all jobs, since a controller's own grant is always more specific).
/// Each level agrees with [`decide`]: on a job no listed pattern covers, [`decide`] gives
/// `all_jobs`.
pub fn access_matrix(grants: &[Grant], agent: &str, controllers: &[String]) -> Vec<AccessCell> {
    let mut cells = Vec::new();
    for &group in Group::ALL.iter() {
        for controller in controllers {
            let mine: Vec<&Grant> = grants.iter().filter(|g| g.applies_to(agent, controller, group)).collect();
            let whole = best(mine.iter().filter(|g| g.jobs.is_none()).map(|g| (*g, spec_of(g, None))));
            let specific_whole = whole.is_some_and(|g| g.controller.is_some());
            let mut ranked: Vec<(&Grant, Spec)> = mine
                .iter()
                .filter_map(|g| {
                    let p = g.jobs.as_deref()?;
                    (!specific_whole || g.controller.is_some()).then(|| (*g, Glob::compile(p, GlobMode::Job).spec(g)))
                })
                .collect();
            ranked.sort_by(|(a, sa), (b, sb)| {
                sb.cmp(sa).then_with(|| strictness(a).cmp(&strictness(b))).then_with(|| a.id.cmp(&b.id))
            });
            let mut patterns: Vec<PatternAccess> = Vec::new();
            for (g, _) in ranked {
                let jobs = g.jobs.clone().unwrap_or_default();
                // The same pattern at the same specificity twice: only the first ranked decides.
                if patterns.iter().any(|p| p.jobs == jobs && p.controller_specific == g.controller.is_some()) {
                    continue;
                }
                patterns.push(PatternAccess {
                    jobs,
                    level: g.level,
                    grant: g.id,
                    controller_specific: g.controller.is_some(),
                    approve: g.approve && g.level == Level::Full,
                });
            }
            let all_jobs = whole.map_or(Level::Off, |g| g.level);
            let best = patterns.iter().map(|p| p.level).fold(all_jobs, Level::max);
            cells.push(AccessCell {
                group,
                controller: controller.clone(),
                best,
                all_jobs,
                all_jobs_grant: whole.map(|g| g.id),
                all_jobs_approve: whole.is_some_and(|g| g.approve && g.level == Level::Full),
                patterns,
            });
        }
    }
    cells
}

/// How one job fares in one group: the grant that decides and whether reads and changes pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobAccess {
    pub group: Group,
    pub controller: String,
    /// The group's reads on the job (a read operation of the group, through [`explain`]).
    pub read: Option<Explanation>,
    /// The group's changes on the job (a write operation of the group, through [`explain`]).
    pub write: Option<Explanation>,
}

/// For `job` on `controller`, each group's answer through [`explain`] (so through [`decide`]):
/// a representative read and write operation of the group — one that names a job where the
/// group has one (for changes in the build group, one without parameter constraints:
/// `trigger_build`'s constraints are shown with the deciding grant), else its controller-wide one.
pub fn explain_job(grants: &[Grant], agent: &str, controller: &str, job: &str) -> Vec<JobAccess> {
    let pick = |group: Group, access: Access| -> Option<&'static Operation> {
        let of = || crate::catalog::OPERATIONS.iter().copied().filter(move |o| o.group == group && o.access == access);
        of().find(|o| o.target == Target::Job && o.name != "trigger_build")
            .or_else(|| of().find(|o| o.target == Target::Job))
            .or_else(|| of().next())
    };
    Group::ALL
        .iter()
        .map(|&group| {
            let run = |access: Access| {
                pick(group, access).map(|op| {
                    let job = (op.target != Target::Controller).then_some(job);
                    explain(grants, &Request { agent, controller, op, job, params: &[] })
                })
            };
            JobAccess { group, controller: controller.to_string(), read: run(Access::Read), write: run(Access::Write) }
        })
        .collect()
}

/// Checks a job pattern an administrator grants: everything [`normalize_job_pattern`] refuses,
/// and the spellings that read as a path but that no full name has — a leading `/`, a URL path
/// (`job/team/job/api`), empty segments (`a//b`, a trailing `/`) — each refused with the form
/// to write instead. Returns the pattern as written.
pub fn check_job_pattern(pattern: &str) -> Result<String, PathError> {
    let tidy = normalize_job_pattern(pattern)?;
    let s = pattern.trim();
    let segs: Vec<&str> = tidy.split('/').collect();
    if segs.len().is_multiple_of(2) && segs.iter().step_by(2).all(|x| x.eq_ignore_ascii_case("job")) {
        let names: Vec<&str> = segs.iter().skip(1).step_by(2).copied().collect();
        return Err(PathError::UrlFormPattern { suggest: names.join("/") });
    }
    if s.starts_with('/') {
        return Err(PathError::LeadingSlash { suggest: tidy });
    }
    if s.contains("//") || s.ends_with('/') {
        return Err(PathError::EmptySegment { suggest: tidy });
    }
    Ok(s.to_string())
}

fn invalid_path(raw: &str, e: &PathError) -> String {
    format!("the job path '{}' is not valid: {e}", shorten(raw))
}

/// Why `g` does not reach `needed`, if it does not.
fn short_of(g: &Grant, needed: Level, op: &Operation) -> Option<String> {
    if g.level >= needed {
        None
    } else if g.level == Level::Off {
        Some(format!("{} turns this off", cite(g)))
    } else {
        Some(format!("{} gives {}, but {} needs {}", cite(g), g.level, op.name, needed))
    }
}

/// Why the request's parameters break `g`'s constraints, if they do.
fn params_violation(g: &Grant, params: &[(String, String)]) -> Option<String> {
    for c in &g.params {
        // Java-folded like item names: a wider match only means more values get checked.
        let mut given = params.iter().filter(|(n, _)| java_fold::eq_ignore_case(n, &c.name)).peekable();
        if given.peek().is_none() {
            return Some(format!(
                "grant {} allows {c}, but the request does not set {}, so the job's default would apply",
                g.id, c.name
            ));
        }
        for (name, value) in given {
            if let Some((ch, kind)) = hidden_char(value) {
                return Some(format!(
                    "grant {} allows {c}, but parameter {} contains {kind} (U+{:04X})",
                    g.id,
                    shorten(name),
                    u32::from(ch)
                ));
            }
            if !c.rule.allows(value) {
                return Some(format!("grant {} allows {c}, not {}={}", g.id, shorten(name), shorten(value)));
            }
        }
    }
    None
}

/// Text from a request, made safe and short for a reason.
fn shorten(s: &str) -> String {
    const MAX: usize = 120;
    let escaped: String = s.escape_debug().collect();
    if escaped.chars().count() <= MAX {
        escaped
    } else {
        let mut t: String = escaped.chars().take(MAX).collect();
        t.push('…');
        t
    }
}

// ---------------------------------------------------------------------------------------------
// Specificity

/// How specific a grant is; greater is more specific. Field order is comparison order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Spec {
    controller_specific: bool,
    /// 0 = all jobs, 1 = a pattern, 2 = an exact path.
    scope: u8,
    literal_prefix: usize,
    no_double_star: bool,
    literals: usize,
    fewer_wildcards: std::cmp::Reverse<usize>,
}

fn spec_of(g: &Grant, glob: Option<&Glob>) -> Spec {
    match glob {
        Some(glob) => glob.spec(g),
        None => Spec {
            controller_specific: g.controller.is_some(),
            scope: 0,
            literal_prefix: 0,
            no_double_star: false,
            literals: 0,
            fewer_wildcards: std::cmp::Reverse(usize::MAX),
        },
    }
}

/// The most specific grant; ties go to the lower level, then the lower id.
/// How much a grant lets through, for ties between equally specific grants (the more
/// restrictive wins): off, read, full use with approval, full use.
fn strictness(g: &Grant) -> u8 {
    match g.level {
        Level::Off => 0,
        Level::Read => 1,
        Level::Full if g.approve => 2,
        Level::Full => 3,
    }
}

fn best<'g>(cands: impl Iterator<Item = (&'g Grant, Spec)>) -> Option<&'g Grant> {
    cands
        .max_by(|(a, sa), (b, sb)| {
            sa.cmp(sb).then_with(|| strictness(b).cmp(&strictness(a))).then_with(|| b.id.cmp(&a.id))
        })
        .map(|(g, _)| g)
}

/// The grant that decides for the job with match key `key`, among `grants`.
fn deciding<'g>(grants: impl Iterator<Item = &'g Grant>, key: &[Vec<char>]) -> Option<&'g Grant> {
    best(grants.filter_map(|g| match g.jobs.as_deref() {
        None => Some((g, spec_of(g, None))),
        Some(p) => {
            let glob = Glob::compile(p, GlobMode::Job);
            glob.matches(key).then(|| (g, glob.spec(g)))
        }
    }))
}

// ---------------------------------------------------------------------------------------------
// Job paths

/// Why a job path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error("it contains a '.' or '..' segment, which no Jenkins job can be named")]
    DotSegment,
    #[error("it contains a control character")]
    ControlChar,
    #[error("'{0}' is not a valid percent-escape (write % as %25)")]
    BadEscape(String),
    #[error("its percent-escapes do not decode to UTF-8 text")]
    NotUtf8,
    #[error("one of its segments is only whitespace")]
    BlankSegment,
    #[error("a '[' has no closing ']'")]
    UnclosedBracket,
    #[error(
        "it names a folder called 'job', which cannot be told apart from a URL path (job/NAME); jgate cannot scope such a folder safely, so rename it in Jenkins"
    )]
    AmbiguousJobFolder,
    #[error("job patterns are full names, without a leading '/': write '{suggest}'")]
    LeadingSlash { suggest: String },
    #[error("it is a URL path (job/NAME/job/NAME), but job patterns are full names: write '{suggest}'")]
    UrlFormPattern { suggest: String },
    #[error("it has an empty segment ('//' or a trailing '/'), which no job's full name has: write '{suggest}'")]
    EmptySegment { suggest: String },
}

/// The canonical Jenkins full name of a job, from any spelling an agent may send.
///
/// Accepted spellings, all mapping to the same name (up to letter case, which matching ignores):
///
/// - a full name, `shop/feature%2Fx`, where `%XX` escapes are part of an item name — a `%2F` never
///   splits a segment, as in Jenkins;
/// - a URL path, `/job/shop/job/feature%252Fx/` (recognised when the segments alternate between
///   a literal `job`, in any case, and a name), whose names are URL-decoded once first; the lax
///   `job/shop/job/feature%2Fx` means the same item;
/// - either with leading, trailing or repeated slashes and surrounding whitespace.
///
/// Each item name is percent-decoded once and re-encoded the way Jenkins' branch plugin encodes
/// names (`%` `/` `\` `?` `#` `[` `]` as `%25` `%2F` `%5C` `%3F` `%23` `%5B` `%5D`, nothing else),
/// so `my%20job` is `my job` and `feature%2fx` is `feature%2Fx`; whitespace around a name is
/// dropped, as Jenkins trims item names. The result keeps the letter case
/// it was given, for display; Jenkins and [`glob_match`] ignore case.
///
/// Refused ([`PathError`]): empty paths, `.` and `..` segments (also when percent-encoded, and
/// `.`/`..` components of a decoded multibranch name such as `a%2F..%2Fb`), control characters
/// (also encoded), whitespace-only segments, malformed escapes, escapes that are not UTF-8, and
/// paths over [`MAX_PATH_LEN`] bytes.
///
/// Ambiguity, resolved in favour of the URL form: a full name whose odd segments are all `job`
/// (a folder named `job` containing `x`: `job/x`) is read as a URL path. Spell such a job in URL
/// form (`job/job/job/x`). Either way the decision is about the name returned, which is what the
/// caller acts on.
pub fn normalize_job_path(raw: &str) -> Result<String, PathError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(PathError::Empty);
    }
    if s.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if s.chars().any(char::is_control) {
        return Err(PathError::ControlChar);
    }
    let segs: Vec<&str> = s.split('/').filter(|x| !x.is_empty()).collect();
    if segs.is_empty() {
        return Err(PathError::Empty);
    }
    if segs.iter().any(|x| *x == "." || *x == "..") {
        return Err(PathError::DotSegment);
    }
    let url_form = segs.len().is_multiple_of(2) && segs.iter().step_by(2).all(|x| x.eq_ignore_ascii_case("job"));
    let mut names: Vec<String> = Vec::with_capacity(segs.len());
    if url_form {
        for seg in segs.iter().skip(1).step_by(2) {
            names.push(canonical_item(&percent_decode(seg)?)?);
        }
    } else {
        for seg in &segs {
            names.push(canonical_item(seg)?);
        }
    }
    // The canonical name must read back as itself: a full name whose segments alternate with
    // `job` would be taken for a URL path next time, so it must be spelled as one.
    if names.len().is_multiple_of(2) && names.iter().step_by(2).all(|x| java_fold::eq_ignore_case(x, "job")) {
        return Err(PathError::AmbiguousJobFolder);
    }
    Ok(names.join("/"))
}

/// Checks and tidies a job scope pattern for storing in a [`Grant`]: trims it, drops empty
/// segments (leading, trailing, repeated slashes) and refuses what could never match a job:
/// empty patterns, `.`/`..` segments, control characters, whitespace-only segments, an unclosed
/// `[`. Letter case and escapes are kept as written.
pub fn normalize_job_pattern(pattern: &str) -> Result<String, PathError> {
    let s = pattern.trim();
    if s.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if s.chars().any(char::is_control) {
        return Err(PathError::ControlChar);
    }
    let segs: Vec<&str> = s.split('/').filter(|x| !x.is_empty()).collect();
    if segs.is_empty() {
        return Err(PathError::Empty);
    }
    for seg in &segs {
        if *seg == "." || *seg == ".." {
            return Err(PathError::DotSegment);
        }
        if seg.trim().is_empty() {
            return Err(PathError::BlankSegment);
        }
        if !brackets_balanced(seg) {
            return Err(PathError::UnclosedBracket);
        }
    }
    Ok(segs.join("/"))
}

/// The Jenkins URL path of a normalised full name: `shop/feature%2Fx` → `job/shop/job/feature%252Fx`.
/// Every character outside `A-Z a-z 0-9 - . _ ~` is percent-encoded, so the path names exactly the
/// item the policy decided on.
pub fn job_url_path(full_name: &str) -> String {
    let mut out = String::with_capacity(full_name.len() * 2);
    for seg in full_name.split('/').filter(|x| !x.is_empty()) {
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str("job/");
        for b in seg.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(char::from(b));
            } else {
                push_escape(&mut out, b);
            }
        }
    }
    out
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0x0f)]));
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes every `%XX` once; a `%` not followed by two hex digits is an error.
pub(crate) fn percent_decode(s: &str) -> Result<String, PathError> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(h), Some(l)) => {
                    out.push((h << 4) | l);
                    i += 3;
                }
                _ => {
                    let bad: String = s.get(i..).unwrap_or_default().chars().take(3).collect();
                    return Err(PathError::BadEscape(bad));
                }
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PathError::NotUtf8)
}

/// The characters Jenkins' branch plugin escapes in item names, and how.
fn item_escape(c: char) -> Option<&'static str> {
    Some(match c {
        '%' => "%25",
        '/' => "%2F",
        '\\' => "%5C",
        '?' => "%3F",
        '#' => "%23",
        '[' => "%5B",
        ']' => "%5D",
        _ => return None,
    })
}

fn encode_item(decoded: &str) -> String {
    let mut out = String::with_capacity(decoded.len() + 8);
    for c in decoded.chars() {
        match item_escape(c) {
            Some(e) => out.push_str(e),
            None => out.push(c),
        }
    }
    out
}

/// One item name in canonical spelling: decoded once, checked, re-encoded.
fn canonical_item(name: &str) -> Result<String, PathError> {
    let decoded = percent_decode(name)?;
    if decoded.chars().any(char::is_control) {
        return Err(PathError::ControlChar);
    }
    // Jenkins trims item names when it creates them.
    let decoded = decoded.trim();
    if decoded.is_empty() {
        return Err(PathError::BlankSegment);
    }
    if decoded.split(['/', '\\']).any(|c| c == "." || c == "..") {
        return Err(PathError::DotSegment);
    }
    Ok(encode_item(decoded))
}

/// Folds for case-insensitive comparison exactly as Jenkins (Java) does; see the module docs.
fn fold(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().map(java_fold::fold_char)
}

/// The match key of a normalised path: its segments, Java-folded.
fn path_key(path: &str) -> Vec<Vec<char>> {
    path.split('/').filter(|x| !x.is_empty()).map(|x| fold(x).collect()).collect()
}

// ---------------------------------------------------------------------------------------------
// Globs

/// Whether the job scope `pattern` covers the normalised full name `path` (see the module docs
/// for the syntax). Case-insensitive. Escapes in the pattern's literal text are read like
/// [`normalize_job_path`] reads them, so `my%20job` and `my job` are the same pattern. An empty
/// pattern matches nothing.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let key = path_key(path);
    !key.is_empty() && Glob::compile(pattern, GlobMode::Job).matches(&key)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobMode {
    /// Job scopes: empty segments dropped, literals canonicalised, case-insensitive.
    Job,
    /// Parameter values: taken as written.
    Param,
}

#[derive(Debug, Clone)]
enum Tok {
    Lit(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `[...]`; `fold`: the (already folded) character matches if any character Java treats as
    /// equal to it is in the ranges (job scopes).
    Class {
        negated: bool,
        fold: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Tok {
    fn matches(&self, c: char) -> bool {
        match self {
            Tok::Lit(l) => *l == c,
            Tok::One => true,
            Tok::Star => false,
            Tok::Class { negated, fold, ranges } => {
                let inside = |c: char| ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c));
                let hit = if *fold { java_fold::equivalents(c).any(inside) } else { inside(c) };
                hit != *negated
            }
        }
    }
}

#[derive(Debug, Clone)]
enum SegPat {
    /// `**`: any number of segments.
    Any,
    Toks(Vec<Tok>),
}

#[derive(Debug, Clone)]
struct Glob {
    segs: Vec<SegPat>,
}

impl Glob {
    fn compile(pattern: &str, mode: GlobMode) -> Glob {
        let job = mode == GlobMode::Job;
        let pattern = if job { pattern.trim() } else { pattern };
        let segs = pattern
            .split('/')
            .filter(|s| !(job && s.is_empty()))
            .map(|s| if s == "**" { SegPat::Any } else { SegPat::Toks(compile_segment(s, job)) })
            .collect();
        Glob { segs }
    }

    /// Which (pattern prefix, path prefix) pairs match: `reach[i][j]` = the first `i` pattern
    /// segments match the first `j` path segments.
    fn reach(&self, path: &[Vec<char>]) -> Vec<Vec<bool>> {
        let (np, ns) = (self.segs.len(), path.len());
        let mut f = vec![vec![false; ns + 1]; np + 1];
        f[0][0] = true;
        for i in 0..np {
            for j in 0..=ns {
                if !f[i][j] {
                    continue;
                }
                match &self.segs[i] {
                    SegPat::Any => {
                        f[i + 1][j] = true;
                        if j < ns {
                            f[i][j + 1] = true;
                        }
                    }
                    SegPat::Toks(toks) => {
                        if j < ns && segment_matches(toks, &path[j]) {
                            f[i + 1][j + 1] = true;
                        }
                    }
                }
            }
        }
        f
    }

    fn matches(&self, path: &[Vec<char>]) -> bool {
        self.reach(path)[self.segs.len()][path.len()]
    }

    /// Whether the pattern can match something strictly below `folder`.
    fn matches_below(&self, folder: &[Vec<char>]) -> bool {
        let f = self.reach(folder);
        (0..self.segs.len()).any(|i| f[i][folder.len()])
    }

    fn spec(&self, g: &Grant) -> Spec {
        let mut prefix = 0;
        let mut in_prefix = true;
        let (mut literals, mut wildcards, mut double) = (0, 0, false);
        for (n, seg) in self.segs.iter().enumerate() {
            if n > 0 {
                literals += 1;
                if in_prefix {
                    prefix += 1;
                }
            }
            match seg {
                SegPat::Any => {
                    double = true;
                    wildcards += 1;
                    in_prefix = false;
                }
                SegPat::Toks(toks) => {
                    for t in toks {
                        if let Tok::Lit(_) = t {
                            literals += 1;
                            if in_prefix {
                                prefix += 1;
                            }
                        } else {
                            wildcards += 1;
                            in_prefix = false;
                        }
                    }
                }
            }
        }
        Spec {
            controller_specific: g.controller.is_some(),
            scope: if wildcards == 0 { 2 } else { 1 },
            literal_prefix: prefix,
            no_double_star: !double,
            literals,
            fewer_wildcards: std::cmp::Reverse(wildcards),
        }
    }
}

/// Compiles one segment (not `**`). For job scopes, literal runs are canonicalised like item
/// names and Java-folded.
fn compile_segment(seg: &str, job: bool) -> Vec<Tok> {
    let chars: Vec<char> = seg.chars().collect();
    let mut toks = Vec::new();
    let mut run = String::new();
    let flush = |run: &mut String, toks: &mut Vec<Tok>| {
        if run.is_empty() {
            return;
        }
        if job {
            let canon = percent_decode(run).map(|d| encode_item(&d)).unwrap_or_else(|_| run.clone());
            toks.extend(fold(&canon).map(Tok::Lit));
        } else {
            toks.extend(run.chars().map(Tok::Lit));
        }
        run.clear();
    };
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                flush(&mut run, &mut toks);
                if !matches!(toks.last(), Some(Tok::Star)) {
                    toks.push(Tok::Star);
                }
                i += 1;
            }
            '?' => {
                flush(&mut run, &mut toks);
                toks.push(Tok::One);
                i += 1;
            }
            '[' => match parse_class(&chars[i + 1..], job) {
                Some((tok, used)) => {
                    flush(&mut run, &mut toks);
                    toks.push(tok);
                    i += 1 + used;
                }
                None => {
                    run.push('[');
                    i += 1;
                }
            },
            c => {
                run.push(c);
                i += 1;
            }
        }
    }
    flush(&mut run, &mut toks);
    toks
}

/// Parses a class after its `[`; returns the token and how many chars it used (through `]`).
fn parse_class(rest: &[char], job: bool) -> Option<(Tok, usize)> {
    let close = rest.iter().position(|&c| c == ']')?;
    let mut body = rest.get(..close)?;
    let negated = matches!(body.first(), Some('!' | '^'));
    if negated {
        body = body.get(1..)?;
    }
    if body.is_empty() {
        return None;
    }
    // Ranges keep the characters as written; job scopes fold when matching (Tok::matches), since
    // folding the ends would not fold what lies between them (`[Z-a]`).
    let mut ranges = Vec::new();
    let mut k = 0;
    while k < body.len() {
        if k + 2 < body.len() && body[k + 1] == '-' {
            ranges.push((body[k], body[k + 2]));
            k += 3;
        } else {
            ranges.push((body[k], body[k]));
            k += 1;
        }
    }
    Some((Tok::Class { negated, fold: job, ranges }, close + 1))
}

/// Whether a segment's tokens match its characters (`*` backtracks to the last star only, which
/// is complete for single-character tokens).
fn segment_matches(toks: &[Tok], s: &[char]) -> bool {
    let (mut t, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match toks.get(t) {
            Some(Tok::Star) => {
                star = Some((t, i));
                t += 1;
                continue;
            }
            Some(tok) if tok.matches(s[i]) => {
                t += 1;
                i += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((st, si)) => {
                t = st + 1;
                i = si + 1;
                star = Some((st, si + 1));
            }
            None => return false,
        }
    }
    toks.get(t..).is_some_and(|rest| rest.iter().all(|x| matches!(x, Tok::Star)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::operation;

    fn grant(id: i64, controller: Option<&str>, group: Group, level: Level, jobs: Option<&str>) -> Grant {
        Grant {
            id,
            agent: "bot".into(),
            controller: controller.map(str::to_string),
            group,
            level,
            jobs: jobs.map(str::to_string),
            params: Vec::new(),
            approve: false,
            max_per_hour: None,
        }
    }

    fn with_params(mut g: Grant, params: &[&str]) -> Grant {
        g.params = params.iter().map(|p| p.parse().expect("constraint")).collect();
        g
    }

    fn ask(grants: &[Grant], controller: &str, op: &str, job: Option<&str>, params: &[(&str, &str)]) -> Decision {
        let params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let op = operation(op).expect("operation");
        decide(grants, &Request { agent: "bot", controller, op, job, params: &params })
    }

    #[test]
    fn approval_is_reported_for_changes_under_an_approving_grant_only() {
        use Group::*;
        use Level::*;
        let mut held = grant(1, None, Build, Full, Some("release/**"));
        held.approve = true;
        let grants = vec![held, grant(2, None, Build, Full, Some("release/free")), grant(3, None, Status, Read, None)];
        let d = ask(&grants, "prod", "trigger_build", Some("Release/Deploy"), &[]);
        assert!(d.allowed && d.approval, "{d:?}");
        assert_eq!(d.job.as_deref(), Some("Release/Deploy"));
        assert!(d.reason.contains("full use, with approval,"), "{}", d.reason);
        // The more specific grant without approval decides for its job.
        let free = ask(&grants, "prod", "trigger_build", Some("release/free"), &[]);
        assert!(free.allowed && !free.approval);
        // Reads of the group are never held, even under the approving grant.
        let mut config = grant(4, None, Config, Full, None);
        config.approve = true;
        let read = ask(&[config.clone()], "prod", "get_job_config", Some("release/deploy"), &[]);
        assert!(read.allowed && !read.approval, "{read:?}");
        let write = ask(&[config], "prod", "update_job_config", Some("release/deploy"), &[]);
        assert!(write.allowed && write.approval, "{write:?}");
        // Denied is never "with approval".
        let denied = ask(&grants, "prod", "trigger_build", Some("other"), &[]);
        assert!(!denied.allowed && !denied.approval);
        // An equal tie: the approving grant is the more restrictive and decides.
        let mut a = grant(5, None, Build, Full, Some("x/*"));
        a.approve = true;
        let tie = vec![grant(4, None, Build, Full, Some("x/*")), a];
        let d = ask(&tie, "prod", "trigger_build", Some("x/y"), &[]);
        assert_eq!((d.grant, d.approval), (Some(5), true));
    }

    #[test]
    fn the_access_matrix_says_full_use_with_approval() {
        use Group::*;
        use Level::*;
        let mut held = grant(1, None, Build, Full, None);
        held.approve = true;
        let cells = access_matrix(&[held.clone()], "bot", &["prod".to_string()]);
        let build = cells.iter().find(|c| c.group == Build).expect("build cell");
        assert_eq!(build.summary(), "Full use, with approval");
        let mut pattern = held;
        pattern.jobs = Some("release/**".into());
        let cells = access_matrix(&[pattern, grant(2, None, Build, Read, None)], "bot", &["prod".to_string()]);
        let build = cells.iter().find(|c| c.group == Build).expect("build cell");
        assert_eq!(build.summary(), "Full use, with approval — release/** full use, with approval, other jobs read");
        let j = explain_job(&[grant(3, None, Build, Full, None)], "bot", "prod", "a");
        assert!(j.iter().all(|x| x.write.as_ref().is_none_or(|w| !w.decision.approval)));
    }

    #[test]
    fn decide_table() {
        use Group::*;
        use Level::*;
        let prod = Some("prod");
        let grants = vec![
            grant(1, None, Status, Read, Some("team/**")),
            grant(2, None, Build, Full, Some("release/**")),
            grant(3, None, Build, Off, Some("release/prod-*")),
            grant(4, None, Config, Read, Some("team/**")),
            grant(5, prod, Config, Full, Some("team/**")),
            with_params(grant(6, None, Build, Full, Some("deploy")), &["ENV=dev|staging", "BRANCH=feature/*"]),
            grant(7, None, Status, Read, None),
            grant(8, None, Status, Off, Some("team/secret/**")),
            grant(9, None, Nodes, Read, Some("team/**")),
        ];
        // (grants, controller, op, job, params, allowed, deciding grant, reason contains)
        type Case<'a> =
            (&'a [Grant], &'a str, &'a str, Option<&'a str>, &'a [(&'a str, &'a str)], bool, Option<i64>, &'a str);
        let cases: &[Case] = &[
            (&[], "ci", "get_job", Some("a"), &[], false, None, "no grant gives Read job and build status"),
            (
                &grants,
                "ci",
                "create_job",
                Some("team/new"),
                &[],
                false,
                None,
                "no grant gives Create, copy, or delete jobs",
            ),
            (
                &grants,
                "ci",
                "get_job",
                Some("team/api"),
                &[],
                true,
                Some(1),
                "allowed by grant 1 (Read job and build status: read on team/**)",
            ),
            (&grants, "ci", "get_job", Some("/job/Team/job/API/"), &[], true, Some(1), "grant 1"),
            (&grants, "ci", "get_job", Some("other"), &[], true, Some(7), "grant 7"),
            (
                &grants,
                "ci",
                "get_job",
                Some("team/secret"),
                &[],
                false,
                Some(8),
                "grant 8 (Read job and build status: off on team/secret/**) turns this off",
            ),
            (&grants, "ci", "get_job", Some("team//SECRET/x/"), &[], false, Some(8), "turns this off"),
            (&grants, "ci", "get_job_config", Some("team/api"), &[], true, Some(4), "grant 4"),
            (
                &grants,
                "ci",
                "update_job_config",
                Some("team/api"),
                &[],
                false,
                Some(4),
                "gives read, but update_job_config needs full use",
            ),
            (&grants, "prod", "update_job_config", Some("team/api"), &[], true, Some(5), "grant 5"),
            (
                &grants,
                "ci",
                "trigger_build",
                Some("release/app"),
                &[],
                true,
                Some(2),
                "allowed by grant 2 (Trigger a build: full use on release/**)",
            ),
            (&grants, "ci", "trigger_build", Some("release"), &[], true, Some(2), "grant 2"),
            (&grants, "ci", "trigger_build", Some("release/prod-eu"), &[], false, Some(3), "turns this off"),
            (
                &grants,
                "ci",
                "trigger_build",
                Some("release/../team/x"),
                &[],
                false,
                None,
                "the job path 'release/../team/x' is not valid: it contains a '.' or '..' segment",
            ),
            (&grants, "ci", "trigger_build", Some("release-old"), &[], false, None, "no grant gives Trigger a build"),
            (
                &grants,
                "ci",
                "trigger_build",
                Some("deploy"),
                &[("ENV", "dev"), ("BRANCH", "feature/x")],
                true,
                Some(6),
                "grant 6",
            ),
            (
                &grants,
                "ci",
                "trigger_build",
                Some("deploy"),
                &[("env", "staging"), ("BRANCH", "feature/x"), ("X", "y")],
                true,
                Some(6),
                "grant 6",
            ),
            (
                &grants,
                "ci",
                "trigger_build",
                Some("deploy"),
                &[("ENV", "production"), ("BRANCH", "feature/x")],
                false,
                Some(6),
                "grant 6 allows ENV ∈ {dev, staging}, not ENV=production",
            ),
            (
                &grants,
                "ci",
                "trigger_build",
                Some("deploy"),
                &[("ENV", "dev"), ("env", "production"), ("BRANCH", "feature/x")],
                false,
                Some(6),
                "not env=production",
            ),
            (
                &grants,
                "ci",
                "trigger_build",
                Some("deploy"),
                &[("ENV", "dev"), ("BRANCH", "main")],
                false,
                Some(6),
                "grant 6 allows BRANCH matching feature/*, not BRANCH=main",
            ),
            (
                &grants,
                "ci",
                "trigger_build",
                Some("deploy"),
                &[("ENV", "dev"), ("BRANCH", "feature/x/y")],
                false,
                Some(6),
                "BRANCH matching",
            ),
            (&grants, "ci", "trigger_build", Some("deploy"), &[("ENV", "dev")], false, Some(6), "does not set BRANCH"),
            (&grants, "ci", "stop_build", Some("deploy"), &[], true, Some(6), "grant 6"),
            (&grants, "ci", "get_queue", None, &[], true, Some(7), "grant 7"),
            (&grants, "ci", "list_nodes", None, &[], false, None, "list_nodes covers the whole controller"),
            (
                &grants,
                "ci",
                "get_system_info",
                None,
                &[],
                false,
                None,
                "no grant gives See Jenkins version and plugins",
            ),
            (&grants, "ci", "list_jobs", None, &[], true, Some(1), "only what the agent may see"),
            (&grants, "ci", "list_jobs", Some("team"), &[], true, Some(1), "grant 1"),
            (&grants, "ci", "list_jobs", Some("team/secret"), &[], false, Some(8), "turns this off"),
            (&grants, "ci", "get_job", None, &[], false, None, "get_job needs a job path"),
        ];
        for (i, (gs, ctl, op, job, params, allowed, by, reason)) in cases.iter().enumerate() {
            let d = ask(gs, ctl, op, *job, params);
            assert_eq!(d.allowed, *allowed, "case {i}: {d:?}");
            assert_eq!(d.grant, *by, "case {i}: {d:?}");
            assert!(d.reason.contains(reason), "case {i}: {:?} lacks {reason:?}", d.reason);
        }
    }

    #[test]
    fn controller_specific_beats_all_controllers() {
        let grants = vec![
            grant(1, None, Group::Build, Level::Full, Some("release/prod-x")),
            grant(2, Some("staging"), Group::Build, Level::Off, Some("**")),
        ];
        assert!(ask(&grants, "ci", "trigger_build", Some("release/prod-x"), &[]).allowed);
        let d = ask(&grants, "staging", "trigger_build", Some("release/prod-x"), &[]);
        assert_eq!((d.allowed, d.grant), (false, Some(2)));
        let other_controller = vec![grant(1, Some("prod"), Group::Build, Level::Full, None)];
        assert!(!ask(&other_controller, "ci", "trigger_build", Some("x"), &[]).allowed);
    }

    #[test]
    fn ties_go_to_the_more_restrictive_grant() {
        let grants = vec![
            grant(1, None, Group::Status, Level::Read, Some("a/*")),
            grant(2, None, Group::Status, Level::Off, Some("a/*")),
        ];
        assert_eq!(ask(&grants, "ci", "get_job", Some("a/b"), &[]).grant, Some(2));
        let exact = vec![
            grant(1, None, Group::Status, Level::Off, Some("a/**")),
            grant(2, None, Group::Status, Level::Read, Some("a/b")),
        ];
        assert!(ask(&exact, "ci", "get_job", Some("A/B"), &[]).allowed);
    }

    #[test]
    fn other_agents_grants_do_not_count() {
        let mut g = grant(1, None, Group::Status, Level::Full, None);
        g.agent = "someone-else".into();
        assert!(!ask(&[g], "ci", "get_job", Some("x"), &[]).allowed);
    }

    #[test]
    fn outside_scope_reads_like_missing() {
        let grants = vec![grant(1, None, Group::Build, Level::Full, Some("team/secret-project"))];
        let a = ask(&grants, "ci", "trigger_build", Some("team/exists-but-not-granted"), &[]);
        let b = ask(&grants, "ci", "trigger_build", Some("team/does-not-exist"), &[]);
        assert_eq!(a.reason, b.reason);
        assert!(!a.reason.contains("secret"));
    }

    #[test]
    fn may_see_filters_lists() {
        let grants = vec![
            grant(1, None, Group::Status, Level::Read, Some("team/**")),
            grant(2, None, Group::Status, Level::Off, Some("team/secret*")),
            grant(3, None, Group::Build, Level::Full, None),
            grant(4, Some("prod"), Group::Status, Level::Read, Some("ops")),
        ];
        let seen: Vec<&str> = ["team", "team/api", "team/secret", "team/secrets", "other", "ops", "team/x/../y", ""]
            .into_iter()
            .filter(|j| may_see(&grants, "bot", "ci", j))
            .collect();
        assert_eq!(seen, ["team", "team/api"]);
        assert!(may_see(&grants, "bot", "prod", "OPS"));
        assert!(!may_see(&grants, "other-bot", "ci", "team/api"));
    }

    #[test]
    fn listing_a_folder_with_grants_below_it() {
        let grants = vec![grant(1, None, Group::Status, Level::Read, Some("team/api-*"))];
        assert!(ask(&grants, "ci", "list_jobs", Some("team"), &[]).allowed);
        assert!(!ask(&grants, "ci", "list_jobs", Some("other"), &[]).allowed);
        assert!(!ask(&grants, "ci", "list_jobs", Some("team/api-x/deeper"), &[]).allowed);
    }

    #[test]
    fn normalisation_examples() {
        let ok = |raw: &str| normalize_job_path(raw).expect("valid");
        assert_eq!(ok("shop/feature%2Fx"), "shop/feature%2Fx");
        assert_eq!(ok("shop/feature%2fx"), "shop/feature%2Fx");
        assert_eq!(ok("/job/shop/job/feature%252Fx/"), "shop/feature%2Fx");
        assert_eq!(ok("job/shop/job/feature%2Fx"), "shop/feature%2Fx");
        assert_eq!(ok("JOB/a/Job/b"), "a/b");
        assert_eq!(ok("  //a///b//  "), "a/b");
        assert_eq!(ok("my%20job"), "my job");
        assert_eq!(ok("Team/API"), "Team/API");
        assert_eq!(ok("job/a/b"), "job/a/b");
        assert_eq!(ok("r%C3%A9sum%C3%A9"), "résumé");
        for bad in [
            "",
            " ",
            "/",
            "a/../b",
            "./a",
            "a/.",
            "a/%2e%2E",
            "job/%2E%2E",
            "job/%252E%252E",
            "a\nb",
            "a%0Ab",
            "a%zz",
            "a%",
            "a%ff",
            "a/%20",
            "x/a%2F..%2Fb",
        ] {
            assert!(normalize_job_path(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(job_url_path("shop/feature%2Fx"), "job/shop/job/feature%252Fx");
        assert_eq!(job_url_path("my job"), "job/my%20job");
    }

    #[test]
    fn glob_examples() {
        let yes = [
            ("release/**", "release"),
            ("release/**", "release/a/b"),
            ("api-*", "API-gateway"),
            ("a/*/c", "a/b/c"),
            ("**", "x/y"),
            ("a/**/z", "a/z"),
            ("a/**/z", "a/b/c/z"),
            ("shop/feature%2F*", "shop/feature%2Fx"),
            ("shop/*", "shop/feature%2Fx"),
            ("my%20job", "my job"),
            ("v?", "v1"),
            ("v[0-9]", "v7"),
            ("v[!0-9]", "vx"),
            ("/team/", "team"),
        ];
        let no = [
            ("release/**", "release-old"),
            ("api-*", "api/x"),
            ("*", "a/b"),
            ("a/*", "a"),
            ("a/*/c", "a/b/x/c"),
            ("v?", "v12"),
            ("v[0-9]", "vx"),
            ("", "a"),
            ("**", ""),
        ];
        for (p, s) in yes {
            assert!(glob_match(p, s), "{p} should match {s}");
        }
        for (p, s) in no {
            assert!(!glob_match(p, s), "{p} should not match {s}");
        }
    }

    #[test]
    fn parsing() {
        let c: ParamConstraint = "ENV=dev|staging".parse().expect("one of");
        assert_eq!(c.rule, ParamRule::OneOf(vec!["dev".into(), "staging".into()]));
        let c: ParamConstraint = " BRANCH = feature/* ".parse().expect("glob");
        assert_eq!((c.name.as_str(), c.rule), ("BRANCH", ParamRule::Glob("feature/*".into())));
        let c: ParamConstraint = "ENV=dev".parse().expect("exact");
        assert_eq!(c.rule, ParamRule::OneOf(vec!["dev".into()]));
        for bad in ["ENV", "=x", "ENV=", "ENV=a||b", "ENV=a*|b", "ENV=[ab", "E V=x"] {
            let e = bad.parse::<ParamConstraint>().expect_err(bad).to_string();
            assert!(e.contains("NAME=a|b|c"), "{e}");
        }
        for (s, l) in [
            ("off", Level::Off),
            ("READ", Level::Read),
            ("full", Level::Full),
            ("full-use", Level::Full),
            ("full_use", Level::Full),
            ("full use", Level::Full),
        ] {
            assert_eq!(s.parse::<Level>(), Ok(l));
        }
        assert!("write".parse::<Level>().is_err());
        assert_eq!(Level::Full.to_string(), "full use");
        assert_eq!(serde_json::to_string(&Level::Full).ok().as_deref(), Some("\"full\""));
    }

    #[test]
    fn describe_reads_like_the_row() {
        let g = with_params(grant(7, None, Group::Build, Level::Full, Some("release/**")), &["ENV=staging"]);
        assert_eq!(g.describe(), "Trigger a build: full use on release/** (ENV ∈ {staging})");
        let g = grant(2, Some("prod"), Group::Status, Level::Read, None);
        assert_eq!(g.describe(), "Read job and build status: read on all jobs (controller prod)");
        let json = serde_json::to_string(&g).expect("json");
        assert_eq!(serde_json::from_str::<Grant>(&json).expect("back"), g);
    }

    #[test]
    fn carve_outs_cover_every_spelling_jenkins_resolves_to_them() {
        use Group::Status;
        use Level::*;
        let grants = vec![
            grant(1, None, Status, Read, Some("**")),
            grant(2, None, Status, Off, Some("secret/**")),
            grant(3, None, Status, Off, Some("releasex")),
            grant(4, None, Status, Off, Some("admin-*")),
            grant(5, None, Status, Off, Some("k[a-z]be")),
        ];
        for job in [
            "secret/x",
            "SECRET/x",
            "ſecret/x", // U+017F LATIN SMALL LETTER LONG S
            "ſECRET/X",
            "job/%C5%BFecret/job/x",
            "/job/%C5%BFECRET//job/x/",
            "releaſex",
            "RELEAſEX",
            "relea%C5%BFex",
            "admın-tools", // U+0131 LATIN SMALL LETTER DOTLESS I
            "ADMİN-tools", // U+0130 LATIN CAPITAL LETTER I WITH DOT ABOVE
            "job/adm%C4%B1n-tools",
            "\u{212A}ube", // KELVIN SIGN
            "kſbe",        // the class [a-z] matches ſ as Jenkins reads it (s)
            "\u{212A}UBE",
        ] {
            let d = ask(&grants, "ci", "get_job", Some(job), &[]);
            assert!(!d.allowed, "{job} must be denied: {d:?}");
            assert!(d.reason.contains("turns this off"), "{job}: {}", d.reason);
            assert!(!may_see(&grants, "bot", "ci", job), "{job} must be hidden");
        }
        // Names Java keeps apart from the carved-out ones stay readable.
        for job in ["pasß", "secreτ/x", "releasexx", "admi̇n-tools", "adminx", "kbe"] {
            let d = ask(&grants, "ci", "get_job", Some(job), &[]);
            assert!(d.allowed, "{job} must be allowed: {d:?}");
        }
    }

    #[test]
    fn classes_in_job_scopes_fold_like_jenkins() {
        let yes = [
            ("v[a-z]", "vS"),
            ("v[a-z]", "vſ"),
            ("v[A-Z]", "vs"),
            ("v[A-Z]", "v\u{212A}"),
            ("v[k]", "v\u{212A}"),
            ("v[\u{212A}]", "vk"),
            ("v[ſ]", "vS"),
            ("v[Z-a]", "v_"),
            ("v[Z-a]", "vz"),
            ("v[Z-a]", "vA"),
            ("v[!a-z]", "v1"),
            ("v[µ]", "vμ"),
        ];
        let no = [("v[!a-z]", "vſ"), ("v[!a-z]", "vK"), ("v[!s]", "vſ"), ("v[a-z]", "vß"), ("v[Z-a]", "vb")];
        for (p, s) in yes {
            assert!(glob_match(p, s), "{p} should match {s}");
        }
        for (p, s) in no {
            assert!(!glob_match(p, s), "{p} should not match {s}");
        }
    }

    #[test]
    fn parameter_values_with_control_or_format_characters_are_refused() {
        let grants = vec![with_params(
            grant(1, None, Group::Build, Level::Full, Some("deploy")),
            &["ENV=stag*", "TARGET=eu|us"],
        )];
        let fine = ask(&grants, "ci", "trigger_build", Some("deploy"), &[("ENV", "staging"), ("TARGET", "eu")]);
        assert!(fine.allowed, "{fine:?}");
        for (value, kind) in [
            ("stag\nprod", "a control character (U+000A)"),
            ("stag\rprod", "a control character (U+000D)"),
            ("stag\0", "a control character (U+0000)"),
            ("stag\u{1B}[2J", "a control character (U+001B)"),
            ("stag\u{7F}", "a control character (U+007F)"),
            ("stag\u{85}", "a control character (U+0085)"),
            ("stag\u{9B}", "a control character (U+009B)"),
            ("stag\tx", "a control character (U+0009)"),
            ("stag\u{200B}", "an invisible format character (U+200B)"),
            ("stag\u{202E}dorp", "an invisible format character (U+202E)"),
            ("stag\u{2066}x\u{2069}", "an invisible format character (U+2066)"),
            ("\u{FEFF}staging", "an invisible format character (U+FEFF)"),
            ("stag\u{E0041}", "an invisible format character (U+E0041)"),
        ] {
            let d = ask(&grants, "ci", "trigger_build", Some("deploy"), &[("ENV", value), ("TARGET", "eu")]);
            assert!(!d.allowed, "{value:?} must be refused");
            assert_eq!(d.grant, Some(1));
            assert!(d.reason.contains(&format!("parameter ENV contains {kind}")), "{value:?}: {}", d.reason);
            assert!(!ParamRule::Glob("stag*".into()).allows(value), "{value:?}");
        }
        // One-of rules refuse them too, even if an administrator's value somehow had one.
        assert!(!ParamRule::OneOf(vec!["eu\u{200B}".into()]).allows("eu\u{200B}"));
        let d = ask(&grants, "ci", "trigger_build", Some("deploy"), &[("ENV", "staging"), ("target", "eu\r\n")]);
        assert!(!d.allowed && d.reason.contains("parameter target contains a control character"), "{d:?}");
        // Visible non-ASCII text is fine.
        let d = ask(&grants, "ci", "trigger_build", Some("deploy"), &[("ENV", "staging-ü-東京"), ("TARGET", "us")]);
        assert!(d.allowed, "{d:?}");
    }
}
