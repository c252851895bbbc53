//! The exported shape of every model object (jenkins-wire.md §5): which properties each Java
//! class declares, at which visibility, in which class group. `export.rs` does the writing.

use crate::config_xml::{ItemKind, ParamKind};
use crate::export::{Bean, Value, p, pi, pv};
use crate::model::{
    Build, Cause, Change, ItemId, Node, ParamValue, QueueItem, QueueState, State, TestStatus, View, ViewKind,
    full_encode, raw_encode,
};

/// What every bean builder needs: the state and the root URL that absolute URLs start with.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub st: &'a State,
    /// Root URL with a trailing slash (configured, else request-derived).
    pub base: &'a str,
    /// The authenticated user's permissions filter (items the caller cannot see are hidden).
    pub can_see: &'a dyn Fn(ItemId) -> bool,
    /// The twin clock's current time (epoch ms).
    pub now: i64,
}

impl<'a> Ctx<'a> {
    pub fn item_url(&self, id: ItemId) -> String {
        format!("{}{}", self.base, self.st.item_path(id))
    }
    fn visible_children(&self, parent: Option<ItemId>) -> Vec<ItemId> {
        self.st.children_of(parent).into_iter().filter(|c| (self.can_see)(*c)).collect()
    }
}

fn s<'a>(v: impl Into<String>) -> Value<'a> {
    Value::Str(v.into())
}

// ---------------------------------------------------------------------------------------------
// root

pub fn root<'a>(cx: Ctx<'a>) -> Bean<'a> {
    let st = cx.st;
    let builtin = st.nodes.first();
    Bean::new("hudson.model.Hudson")
        .group(vec![
            p("assignedLabels", Value::List(vec![Value::bean(label_ref("built-in"))])),
            p("mode", s(st.settings.mode.clone())),
            p("nodeDescription", s("the Jenkins controller's built-in node")),
            p("nodeName", s("")),
            p("numExecutors", Value::int(builtin.map_or(0, |n| n.num_executors))),
        ])
        .group(vec![
            p("description", Value::opt_str(st.settings.description.clone())),
            p("jobs", Value::List(cx.visible_children(None).into_iter().map(|c| item_lazy(cx, c)).collect())),
            p("overallLoad", Value::bean(Bean::plain("hudson.model.OverallLoadStatistics"))),
            p("primaryView", Value::bean(view(cx, None, primary_root_view(st)))),
            p("quietDownReason", Value::opt_str(st.quiet_down.clone().flatten())),
            p("quietingDown", Value::Bool(st.quiet_down.is_some())),
            p("slaveAgentPort", Value::Int(st.settings.slave_agent_port)),
            p("unlabeledLoad", Value::bean(Bean::new("jenkins.model.UnlabeledLoadStatistics"))),
            p("url", Value::opt_str(st.settings.root_url.clone())),
            p("useCrumbs", Value::Bool(st.settings.use_crumbs)),
            p("useSecurity", Value::Bool(true)),
            p("views", Value::List(st.views.iter().map(|v| Value::bean(view(cx, None, v))).collect())),
        ])
}

fn label_ref<'a>(name: &str) -> Bean<'a> {
    Bean::plain("hudson.model.labels.LabelAtom").group(vec![pv("name", 2, s(name))])
}

pub fn primary_root_view(st: &State) -> &View {
    st.views.iter().find(|v| v.name == st.primary_view).or(st.views.first()).unwrap_or(&FALLBACK_VIEW)
}

static FALLBACK_VIEW: View = View {
    name: String::new(),
    kind: ViewKind::All,
    description: None,
    job_names: Vec::new(),
    include_regex: None,
    config_xml: None,
};

// ---------------------------------------------------------------------------------------------
// items

pub fn item_lazy<'a>(cx: Ctx<'a>, id: ItemId) -> Value<'a> {
    Value::lazy(move || item(cx, id))
}

/// The full bean of any item (job, folder, multibranch project).
pub fn item<'a>(cx: Ctx<'a>, id: ItemId) -> Bean<'a> {
    let Some(it) = cx.st.item(id) else {
        return Bean::new("hudson.model.Item");
    };
    let st = cx.st;
    let mut actions: Vec<Value> = Vec::new();
    if it.is_job() && !it.config.parameters.is_empty() {
        actions.push(Value::bean(params_definition_property(cx, id)));
    }
    actions.extend([Value::Opaque, Value::Opaque]);
    actions.push(Value::bean(Bean::new("com.cloudbees.plugins.credentials.ViewCredentialsAction")));
    let url = cx.item_url(id);
    let bean = Bean::new(it.class()).group(vec![p("actions", Value::List(actions))]).group(vec![
        p(
            "description",
            if it.config.description.is_empty() && it.is_folder() && it.kind == ItemKind::Multibranch {
                Value::Null
            } else {
                s(it.config.description.clone())
            },
        ),
        p("displayName", s(it.display())),
        p("displayNameOrNull", Value::opt_str(it.display_name.clone())),
        p("fullDisplayName", s(st.full_display_name(id))),
        p("fullName", s(st.full_name(id))),
        pv("name", 999, s(it.name.clone())),
        pv("url", 999, s(url.clone())),
    ]);
    if it.is_folder() {
        let children = cx.visible_children(Some(id));
        let mut health = Vec::new();
        if it.kind == ItemKind::Multibranch
            && let Some((score, desc)) = worst_child_health(cx, id)
        {
            health.push(Value::bean(health_report(score, &desc)));
        }
        let folder_views: Vec<Value> = it.views.iter().map(|v| Value::bean(view(cx, Some(id), v))).collect();
        let primary = it.views.first().map(|v| Value::bean(view(cx, Some(id), v))).unwrap_or(Value::Null);
        let mut b = bean.group(vec![
            p("healthReport", Value::List(health)),
            p("jobs", Value::List(children.into_iter().map(|c| item_lazy(cx, c)).collect())),
            p("primaryView", primary),
            p("views", Value::List(folder_views)),
        ]);
        if it.kind == ItemKind::Multibranch {
            b = b
                .group(vec![p("buildable", Value::Bool(true))])
                .group(vec![p("sources", Value::List(vec![Value::Opaque]))]);
        }
        return b;
    }
    // Jobs.
    let builds: Vec<Value> = it.builds.values().rev().take(100).map(|b| build_ref(cx, id, b.number)).collect();
    let all_builds: Vec<Value> = it.builds.values().rev().map(|b| build_ref(cx, id, b.number)).collect();
    let link = |name: &str| it.permalink(name).map_or(Value::Null, |n| build_ref(cx, id, n));
    let queued = st.queue.iter().find(|q| q.job == id);
    let mut property = Vec::new();
    if !it.config.parameters.is_empty() {
        property.push(Value::bean(params_definition_property(cx, id)));
    }
    let health = job_health(it).map(|(score, desc)| vec![Value::bean(health_report(score, &desc))]).unwrap_or_default();
    let job_group = vec![
        pv("allBuilds", -2, Value::List(all_builds)),
        p("buildable", Value::Bool(!it.config.disabled)),
        p("builds", Value::List(builds)),
        pv("color", 2, s(it.color())),
        p("firstBuild", link("firstBuild")),
        p("healthReport", Value::List(health)),
        p("inQueue", Value::Bool(queued.is_some())),
        p("keepDependencies", Value::Bool(false)),
        p("lastBuild", link("lastBuild")),
        p("lastCompletedBuild", link("lastCompletedBuild")),
        p("lastFailedBuild", link("lastFailedBuild")),
        p("lastStableBuild", link("lastStableBuild")),
        p("lastSuccessfulBuild", link("lastSuccessfulBuild")),
        p("lastUnstableBuild", link("lastUnstableBuild")),
        p("lastUnsuccessfulBuild", link("lastUnsuccessfulBuild")),
        p("nextBuildNumber", Value::int(it.next_build_number)),
        pi("property", 1, Value::List(property)),
        p("queueItem", queued.map_or(Value::Null, |q| Value::bean(queue_item(cx, q)))),
    ];
    let bean = bean.group(job_group);
    match it.kind {
        ItemKind::Pipeline => bean.group(vec![
            p("concurrentBuild", Value::Bool(it.config.concurrent_build)),
            p("disabled", Value::Bool(it.config.disabled)),
            p("inQueue", Value::Bool(queued.is_some())),
            p("queueItem", queued.map_or(Value::Null, |q| Value::bean(queue_item(cx, q)))),
            p("resumeBlocked", Value::Bool(false)),
        ]),
        _ => bean.group(vec![
            p("concurrentBuild", Value::Bool(it.config.concurrent_build)),
            p("disabled", Value::Bool(it.config.disabled)),
            p("downstreamProjects", Value::List(vec![])),
            p("labelExpression", Value::opt_str(it.config.assigned_label.clone())),
            p("scm", Value::bean(Bean::new("hudson.scm.NullSCM"))),
            p("upstreamProjects", Value::List(vec![])),
        ]),
    }
}

fn params_definition_property<'a>(cx: Ctx<'a>, id: ItemId) -> Bean<'a> {
    let defs = cx.st.item(id).map(|i| i.config.parameters.clone()).unwrap_or_default();
    let defs: Vec<Value> = defs
        .into_iter()
        .map(|d| {
            let (class, value_class, ty) = param_classes(&d.kind);
            let default = Bean::new(value_class)
                .group(vec![pv("name", 3, s(d.name.clone())), pv("value", 4, param_json_value(&d.kind, &d.default))]);
            let default = if d.kind == ParamKind::Password {
                Bean::new(value_class).group(vec![pv("name", 3, s(d.name.clone()))])
            } else {
                default
            };
            let mut props = vec![
                pv("defaultParameterValue", 3, Value::bean(default)),
                pv("description", 3, s(d.description.clone())),
                pv("name", 3, s(d.name.clone())),
                pv("type", 3, s(ty)),
            ];
            let mut b = Bean::new(class).group(std::mem::take(&mut props));
            if d.kind == ParamKind::Choice {
                b = b.group(vec![pv("choices", 3, Value::List(d.choices.iter().map(|c| s(c.clone())).collect()))]);
            }
            Value::bean(b)
        })
        .collect();
    Bean::new("hudson.model.ParametersDefinitionProperty").group(vec![pv("parameterDefinitions", 2, Value::List(defs))])
}

fn param_classes(kind: &ParamKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        ParamKind::String => {
            ("hudson.model.StringParameterDefinition", "hudson.model.StringParameterValue", "StringParameterDefinition")
        }
        ParamKind::Text => {
            ("hudson.model.TextParameterDefinition", "hudson.model.TextParameterValue", "TextParameterDefinition")
        }
        ParamKind::Boolean => (
            "hudson.model.BooleanParameterDefinition",
            "hudson.model.BooleanParameterValue",
            "BooleanParameterDefinition",
        ),
        ParamKind::Choice => {
            ("hudson.model.ChoiceParameterDefinition", "hudson.model.StringParameterValue", "ChoiceParameterDefinition")
        }
        ParamKind::Password => (
            "hudson.model.PasswordParameterDefinition",
            "hudson.model.PasswordParameterValue",
            "PasswordParameterDefinition",
        ),
    }
}

fn param_json_value<'a>(kind: &ParamKind, v: &str) -> Value<'a> {
    match kind {
        ParamKind::Boolean => Value::Bool(v.eq_ignore_ascii_case("true")),
        _ => s(v),
    }
}

fn health_report<'a>(score: i64, desc: &str) -> Bean<'a> {
    let icon = match score {
        i64::MIN..=20 => "00to19",
        21..=40 => "20to39",
        41..=60 => "40to59",
        61..=80 => "60to79",
        _ => "80plus",
    };
    Bean::plain("hudson.model.HealthReport").group(vec![
        pv("description", 2, s(desc)),
        pv("iconClassName", 2, s(format!("icon-health-{icon}"))),
        pv("iconUrl", 2, s(format!("health-{icon}.png"))),
        pv("score", 2, Value::Int(score)),
    ])
}

/// Build-stability health over the last five completed builds (Job.getBuildStabilityHealthReport).
pub fn job_health(it: &crate::model::Item) -> Option<(i64, String)> {
    let recent: Vec<&Build> = it.builds.values().rev().filter(|b| !b.building).take(5).collect();
    let counted: Vec<&&Build> = recent
        .iter()
        .filter(|b| {
            matches!(
                b.result,
                Some(
                    crate::model::BuildResult::Success
                        | crate::model::BuildResult::Unstable
                        | crate::model::BuildResult::Failure
                )
            )
        })
        .collect();
    let total = counted.len() as i64;
    if total == 0 {
        return None;
    }
    let failed = counted.iter().filter(|b| b.result == Some(crate::model::BuildResult::Failure)).count() as i64;
    let score = 100 * (total - failed) / total;
    let text = if failed == 0 {
        "No recent builds failed.".to_string()
    } else if failed == total {
        "All recent builds failed.".to_string()
    } else {
        format!("{failed} out of the last {total} builds failed.")
    };
    Some((score, format!("Build stability: {text}")))
}

fn worst_child_health(cx: Ctx, id: ItemId) -> Option<(i64, String)> {
    let mut worst: Option<(i64, String)> = None;
    for c in cx.st.children_of(Some(id)) {
        let Some(ci) = cx.st.item(c) else { continue };
        if let Some((score, desc)) = job_health(ci)
            && worst.as_ref().is_none_or(|(w, _)| score < *w)
        {
            worst = Some((score, format!("Worst health: {}: {desc}", cx.st.full_display_name(c))));
        }
    }
    worst
}

// ---------------------------------------------------------------------------------------------
// builds

pub fn build_ref<'a>(cx: Ctx<'a>, job: ItemId, number: u64) -> Value<'a> {
    Value::lazy(move || build(cx, job, number))
}

pub fn build_url(cx: Ctx, job: ItemId, number: u64) -> String {
    format!("{}{}/", cx.item_url(job), number)
}

pub fn build<'a>(cx: Ctx<'a>, job: ItemId, number: u64) -> Bean<'a> {
    let st = cx.st;
    let Some(it) = st.item(job) else { return Bean::new("hudson.model.Run") };
    let Some(b) = it.builds.get(&number) else { return Bean::new(it.build_class()) };
    let now = cx.now;
    let pipeline = it.kind == ItemKind::Pipeline;
    let mut actions = Vec::new();
    let params = if b.params.is_empty() { None } else { Some(Value::bean(parameters_action(&b.params))) };
    let causes = Value::bean(cause_action(&b.causes));
    if pipeline {
        actions.push(causes);
        actions.extend(params);
    } else {
        actions.extend(params);
        actions.push(causes);
    }
    if !b.changes.is_empty() {
        actions.push(Value::bean(git_build_data(b)));
    }
    if let Some(tests) = &b.tests {
        let fail = tests.iter().filter(|t| t.status == TestStatus::Failed).count();
        let skip = tests.iter().filter(|t| t.status == TestStatus::Skipped).count();
        actions.push(Value::bean(Bean::new("hudson.tasks.junit.TestResultAction").group(vec![
            pv("failCount", 2, Value::int(fail)),
            pv("skipCount", 2, Value::int(skip)),
            pv("totalCount", 2, Value::int(tests.len())),
            pv("urlName", 2, s("testReport")),
        ])));
    }
    actions.extend([Value::Opaque, Value::Opaque]);
    if pipeline {
        actions.push(Value::bean(Bean::new("org.jenkinsci.plugins.workflow.job.views.FlowGraphAction")));
        actions.push(Value::Opaque);
    }
    let artifacts: Vec<Value> = b
        .artifacts
        .iter()
        .map(|a| {
            let file = a.rsplit('/').next().unwrap_or(a).to_string();
            Value::bean(Bean::plain("hudson.model.Run$Artifact").group(vec![
                pv("displayPath", 3, s(file.clone())),
                pv("fileName", 3, s(file)),
                pv("relativePath", 3, s(a.clone())),
            ]))
        })
        .collect();
    let display = b.display_name.clone().unwrap_or_else(|| format!("#{}", b.number));
    let executor = if b.building {
        Value::bean(Bean::plain("hudson.model.Executor").group(executor_props(cx, Some((job, b.number)), 0, now)))
    } else {
        Value::Null
    };
    let bean = Bean::new(it.build_class()).group(vec![p("actions", Value::List(actions))]).group(vec![
        p("artifacts", Value::List(artifacts)),
        p("building", Value::Bool(b.building)),
        p("description", Value::opt_str(b.description.clone())),
        p("displayName", s(display.clone())),
        p("duration", Value::Int(if b.building { 0 } else { b.duration_ms })),
        p("estimatedDuration", Value::Int(b.estimated_duration)),
        p("executor", executor),
        p("fullDisplayName", s(format!("{} {}", st.full_display_name(job), display))),
        p("id", s(b.number.to_string())),
        p("inProgress", Value::Bool(b.building)),
        p("keepLog", Value::Bool(b.keep_log)),
        pv("number", 2, Value::int(b.number)),
        p("queueId", Value::int(b.queue_id)),
        p("result", Value::opt_str(b.result.map(|r| r.as_str()))),
        p("timestamp", Value::Int(b.timestamp)),
        pv("url", 2, s(build_url(cx, job, b.number))),
    ]);
    let culprits: Vec<Value> = culprits(cx, &b.changes);
    if pipeline {
        let change_sets = if b.changes.is_empty() { vec![] } else { vec![Value::bean(change_set(cx, &b.changes))] };
        let prev = it.builds.range(..b.number).next_back().map(|(n, _)| *n);
        let next = it.builds.range(b.number + 1..).next().map(|(n, _)| *n);
        let plain_ref = |n: Option<u64>| {
            n.map_or(Value::Null, |n| {
                Value::lazy(move || {
                    let mut bb = build(cx, job, n);
                    bb.class_when_nested = false;
                    bb
                })
            })
        };
        bean.group(vec![
            p("changeSets", Value::List(change_sets)),
            p("culprits", Value::List(culprits)),
            p("inProgress", Value::Bool(b.building)),
            p("nextBuild", plain_ref(next)),
            p("previousBuild", plain_ref(prev)),
        ])
    } else {
        let cs = if b.changes.is_empty() {
            Value::bean(
                Bean::new("hudson.scm.EmptyChangeLogSet")
                    .group(vec![pv("items", 999, Value::List(vec![])), pv("kind", 999, Value::Null)]),
            )
        } else {
            Value::bean(change_set(cx, &b.changes))
        };
        bean.group(vec![p("builtOn", s(b.built_on.clone())), p("changeSet", cs), p("culprits", Value::List(culprits))])
    }
}

fn culprits<'a>(cx: Ctx<'a>, changes: &[Change]) -> Vec<Value<'a>> {
    let mut seen: Vec<&str> = Vec::new();
    for c in changes {
        if !seen.contains(&c.author.as_str()) {
            seen.push(&c.author);
        }
    }
    seen.into_iter().map(|a| Value::bean(user_ref(cx, a))).collect()
}

fn user_ref<'a>(cx: Ctx<'a>, name: &str) -> Bean<'a> {
    Bean::plain("hudson.model.User").group(vec![
        pv("absoluteUrl", 999, s(format!("{}user/{}", cx.base, raw_encode(&name.to_lowercase())))),
        pv("fullName", 999, s(name)),
    ])
}

fn change_set<'a>(cx: Ctx<'a>, changes: &[Change]) -> Bean<'a> {
    let items: Vec<Value> = changes
        .iter()
        .map(|c| {
            let affected: Vec<Value> = c.paths.iter().map(|(_, f)| s(f.clone())).collect();
            let paths: Vec<Value> = c
                .paths
                .iter()
                .map(|(t, f)| {
                    Value::bean(
                        Bean::plain("hudson.plugins.git.GitChangeSet$Path")
                            .group(vec![pv("editType", 999, s(t.clone())), pv("file", 999, s(f.clone()))]),
                    )
                })
                .collect();
            Value::bean(
                Bean::new("hudson.plugins.git.GitChangeSet")
                    .group(vec![
                        pv("affectedPaths", 999, Value::List(affected)),
                        pv("commitId", 999, s(c.commit_id.clone())),
                        pv("timestamp", 999, Value::Int(c.timestamp_ms)),
                    ])
                    .group(vec![
                        pv("author", 999, Value::bean(user_ref(cx, &c.author))),
                        pv("authorEmail", 999, s(c.author_email.clone())),
                        pv("comment", 999, s(format!("{}\n", c.message))),
                        pv("date", 999, s(crate::engine::format_git_date(c.timestamp_ms))),
                        pv("id", 999, s(c.commit_id.clone())),
                        pv("msg", 999, s(c.message.lines().next().unwrap_or("").to_string())),
                        pv("paths", 999, Value::List(paths)),
                    ]),
            )
        })
        .collect();
    Bean::new("hudson.plugins.git.GitChangeSetList")
        .group(vec![pv("items", 999, Value::List(items)), pv("kind", 999, s("git"))])
}

fn git_build_data<'a>(b: &Build) -> Bean<'a> {
    let sha = b.changes.last().map(|c| c.commit_id.clone()).unwrap_or_default();
    let branch = Bean::plain("hudson.plugins.git.Branch")
        .group(vec![pv("SHA1", 999, s(sha.clone())), pv("name", 999, s("refs/remotes/origin/main"))]);
    let revision = Bean::plain("hudson.plugins.git.Revision")
        .group(vec![pv("SHA1", 999, s(sha)), pv("branch", 999, Value::List(vec![Value::bean(branch)]))]);
    Bean::new("hudson.plugins.git.util.BuildData").group(vec![
        pv("buildsByBranchName", 999, Value::Map(vec![])),
        pv("lastBuiltRevision", 999, Value::bean(revision)),
        pv("remoteUrls", 999, Value::List(vec![s("https://git.example.com/repo.git")])),
        pv("scmName", 999, s("")),
    ])
}

pub fn parameters_action<'a>(params: &[ParamValue]) -> Bean<'a> {
    let values: Vec<Value> = params
        .iter()
        .map(|pv_| {
            let (_, class, _) = param_classes(&pv_.kind);
            let mut props = vec![pv("name", 3, s(pv_.name.clone()))];
            if pv_.kind != ParamKind::Password {
                props.push(pv("value", 4, param_json_value(&pv_.kind, &pv_.value)));
            }
            Value::bean(Bean::new(class).group(props))
        })
        .collect();
    Bean::new("hudson.model.ParametersAction").group(vec![pv("parameters", 2, Value::List(values))])
}

pub fn cause_action<'a>(causes: &[Cause]) -> Bean<'a> {
    let list: Vec<Value> = causes
        .iter()
        .map(|c| {
            let sd = pv("shortDescription", 3, s(c.short_description()));
            Value::bean(match c {
                Cause::User { id, name } => Bean::new("hudson.model.Cause$UserIdCause")
                    .group(vec![sd])
                    .group(vec![pv("userId", 3, s(id.clone())), pv("userName", 3, s(name.clone()))]),
                Cause::Upstream { project, build, url } => {
                    Bean::new("hudson.model.Cause$UpstreamCause").group(vec![sd]).group(vec![
                        pv("upstreamBuild", 3, Value::int(*build)),
                        pv("upstreamProject", 3, s(project.clone())),
                        pv("upstreamUrl", 3, s(url.clone())),
                    ])
                }
                Cause::Remote { addr, note } => Bean::new("hudson.model.Cause$RemoteCause")
                    .group(vec![sd])
                    .group(vec![pv("addr", 3, s(addr.clone())), pv("note", 3, Value::opt_str(note.clone()))]),
                Cause::Timer => Bean::new("hudson.triggers.TimerTrigger$TimerTriggerCause").group(vec![sd]),
                Cause::Scm => Bean::new("hudson.triggers.SCMTrigger$SCMTriggerCause").group(vec![sd]),
                Cause::BranchIndexing => Bean::new("jenkins.branch.BranchIndexingCause").group(vec![sd]),
                // ReplayCause exports nothing of its own (its originalNumber is not @Exported):
                // only Cause's shortDescription, "Replayed #N".
                Cause::Replay { .. } => {
                    Bean::new("org.jenkinsci.plugins.workflow.cps.replay.ReplayCause").group(vec![sd])
                }
            })
        })
        .collect();
    Bean::new("hudson.model.CauseAction").group(vec![pv("causes", 2, Value::List(list))])
}

/// `/job/X/N/testReport/api/json` (junit `hudson.tasks.junit.TestResult`).
///
/// Visibilities as the junit plugin declares them (`TestResult`, `SuiteResult`, `CaseResult`,
/// `hudson.tasks.test.TestObject`): `suites` and `cases` are `@Exported(inline=true,
/// visibility=9)`, so at depth 0 every suite and every case is written in full (an inline
/// property does not open a nesting level). See docs/twin.md, "Inline exports".
pub fn test_report<'a>(b: &Build) -> Option<Bean<'a>> {
    let tests = b.tests.as_ref()?;
    let duration: f64 = tests.iter().map(|t| t.duration_secs).sum();
    let count = |st: TestStatus| tests.iter().filter(|t| t.status == st).count();
    let mut suites: Vec<(String, Vec<Value>)> = Vec::new();
    for t in tests {
        let suite = t.class_name.clone();
        let case = Bean::plain("hudson.tasks.junit.CaseResult")
            .group(vec![pv("testActions", 3, Value::List(vec![]))])
            .group(vec![
                pv("age", 9, Value::Int(if t.status == TestStatus::Failed { 1 } else { 0 })),
                pv("className", 9, s(t.class_name.clone())),
                pv("duration", 9, format_float(t.duration_secs)),
                p("errorDetails", Value::opt_str(t.error.clone())),
                p(
                    "errorStackTrace",
                    Value::opt_str(t.error.as_ref().map(|e| format!("{e}\n\tat {}.{}", t.class_name, t.name))),
                ),
                pv("failedSince", 9, Value::Int(if t.status == TestStatus::Failed { b.number as i64 } else { 0 })),
                pv("name", 999, s(t.name.clone())),
                pv("skipped", 9, Value::Bool(t.status == TestStatus::Skipped)),
                p("skippedMessage", Value::Null),
                pv(
                    "status",
                    9,
                    s(match t.status {
                        TestStatus::Passed => "PASSED",
                        TestStatus::Failed => "FAILED",
                        TestStatus::Skipped => "SKIPPED",
                    }),
                ),
                p("stderr", Value::Null),
                p("stdout", Value::Null),
            ]);
        match suites.iter_mut().find(|(n, _)| *n == suite) {
            Some((_, v)) => v.push(Value::bean(case)),
            None => suites.push((suite, vec![Value::bean(case)])),
        }
    }
    let suites: Vec<Value> = suites
        .into_iter()
        .map(|(name, cases)| {
            let suite_duration: f64 = tests.iter().filter(|t| t.class_name == name).map(|t| t.duration_secs).sum();
            Value::bean(Bean::plain("hudson.tasks.junit.SuiteResult").group(vec![
                pi("cases", 9, Value::List(cases)),
                pv("duration", 9, format_float(suite_duration)),
                pv("enclosingBlockNames", 9, Value::List(vec![])),
                pv("enclosingBlocks", 9, Value::List(vec![])),
                pv("id", 9, Value::Null),
                pv("name", 9, s(name)),
                pv("nodeId", 9, Value::Null),
                p("stderr", Value::Null),
                p("stdout", Value::Null),
                pv("timestamp", 9, Value::Null),
            ]))
        })
        .collect();
    Some(Bean::new("hudson.tasks.junit.TestResult").group(vec![pv("testActions", 3, Value::List(vec![]))]).group(vec![
        pv("duration", 999, format_float(duration)),
        pv("empty", 999, Value::Bool(tests.is_empty())),
        pv("failCount", 999, Value::int(count(TestStatus::Failed))),
        pv("passCount", 999, Value::int(count(TestStatus::Passed))),
        pv("skipCount", 999, Value::int(count(TestStatus::Skipped))),
        pi("suites", 9, Value::List(suites)),
    ]))
}

fn format_float<'a>(v: f64) -> Value<'a> {
    Value::Float((v * 1000.0).round() / 1000.0)
}

// ---------------------------------------------------------------------------------------------
// queue

pub fn queue<'a>(cx: Ctx<'a>) -> Bean<'a> {
    let st = cx.st;
    let order = |s: &QueueState| match s {
        QueueState::Waiting => 0,
        QueueState::Blocked => 1,
        QueueState::Buildable => 2,
    };
    let mut items: Vec<&QueueItem> = st.queue.iter().filter(|q| (cx.can_see)(q.job)).collect();
    items.sort_by_key(|q| (order(&q.state), if q.state == QueueState::Buildable { u64::MAX - q.id } else { q.id }));
    Bean::new("hudson.model.Queue").group(vec![
        p("discoverableItems", Value::List(vec![])),
        // Queue.getItems is `@Exported(inline = true)`.
        pi("items", 1, Value::List(items.into_iter().map(|q| Value::bean(queue_item(cx, q))).collect())),
    ])
}

pub fn queue_item<'a>(cx: Ctx<'a>, q: &QueueItem) -> Bean<'a> {
    let st = cx.st;
    let class = match (&q.left, &q.state) {
        (Some(_), _) => "hudson.model.Queue$LeftItem",
        (None, QueueState::Waiting) => "hudson.model.Queue$WaitingItem",
        (None, QueueState::Blocked) => "hudson.model.Queue$BlockedItem",
        (None, QueueState::Buildable) => "hudson.model.Queue$BuildableItem",
    };
    let mut actions = Vec::new();
    if !q.params.is_empty() {
        actions.push(Value::bean(parameters_action(&q.params)));
    }
    actions.push(Value::bean(cause_action(&q.causes)));
    let params: String = q
        .params
        .iter()
        .map(|pv_| format!("\n{}={}", pv_.name, if pv_.kind == ParamKind::Password { "****" } else { &pv_.value }))
        .collect();
    let task = if st.item(q.job).is_some() {
        item_lazy(cx, q.job)
    } else {
        Value::bean(Bean::new("hudson.model.FreeStyleProject").group(vec![pv("name", 999, s(q.task_name.clone()))]))
    };
    let left = q.left.is_some();
    let base = vec![
        pv("actions", 999, Value::List(actions)),
        pv("blocked", 999, Value::Bool(!left && q.state == QueueState::Blocked)),
        pv("buildable", 999, Value::Bool(!left && q.state == QueueState::Buildable)),
        pv("id", 999, Value::int(q.id)),
        pv("inQueueSince", 999, Value::Int(q.in_queue_since)),
        pv("params", 999, s(params)),
        pv("stuck", 999, Value::Bool(!left && q.stuck)),
        pv("task", 999, task),
        pv("url", 999, s(format!("queue/item/{}/", q.id))),
        pv("why", 999, if left { Value::Null } else { Value::opt_str(q.why.clone()) }),
    ];
    let bean = Bean::new(class).group(base);
    match (&q.left, &q.state) {
        (Some(l), _) => {
            let exec = match l.build {
                Some(n) if st.item(q.job).is_some_and(|i| i.builds.contains_key(&n)) => build_ref(cx, q.job, n),
                _ => Value::Null,
            };
            bean.group(vec![pv("cancelled", 999, Value::Bool(l.cancelled)), pv("executable", 999, exec)])
        }
        (None, QueueState::Waiting) => bean.group(vec![pv("timestamp", 999, Value::Int(q.timestamp))]),
        (None, QueueState::Blocked) => {
            bean.group(vec![pv("buildableStartMilliseconds", 999, Value::Int(q.buildable_since))])
        }
        (None, QueueState::Buildable) => bean.group(vec![
            pv("buildableStartMilliseconds", 999, Value::Int(q.buildable_since)),
            pv("pending", 999, Value::Bool(false)),
        ]),
    }
}

// ---------------------------------------------------------------------------------------------
// nodes

pub fn computer_set<'a>(cx: Ctx<'a>) -> Bean<'a> {
    let st = cx.st;
    let busy: usize = st.nodes.iter().map(|n| n.busy.iter().filter(|b| b.is_some()).count()).sum();
    let total: usize = st.nodes.iter().filter(|n| !n.offline).map(|n| n.num_executors).sum();
    Bean::new("hudson.model.ComputerSet").group(vec![
        p("busyExecutors", Value::int(busy)),
        // ComputerSet.get_all is `@Exported(name = "computer", inline = true)`.
        pi("computer", 1, Value::List((0..st.nodes.len()).map(|i| Value::lazy(move || computer(cx, i))).collect())),
        p("displayName", s("Nodes")),
        p("totalExecutors", Value::int(total)),
    ])
}

/// What a regular executor shows as running: the build, or for a Pipeline run the placeholder
/// of its `node {}` block (the run itself sits on a one-off executor).
fn executable_value<'a>(cx: Ctx<'a>, running: Option<(ItemId, u64)>, regular: bool) -> Value<'a> {
    match running {
        None => Value::Null,
        Some((j, _)) if regular && cx.st.item(j).is_some_and(|i| i.kind == ItemKind::Pipeline) => {
            Value::bean(Bean::new(
                "org.jenkinsci.plugins.workflow.support.steps.ExecutorStepExecution$PlaceholderTask$PlaceholderExecutable",
            ))
        }
        Some((j, n)) => build_ref(cx, j, n),
    }
}

fn executor_props<'a>(
    cx: Ctx<'a>,
    running: Option<(ItemId, u64)>,
    number: usize,
    now: i64,
) -> Vec<crate::export::Prop<'a>> {
    executor_props_of(cx, running, number, now, true)
}

fn executor_props_of<'a>(
    cx: Ctx<'a>,
    running: Option<(ItemId, u64)>,
    number: usize,
    now: i64,
    regular: bool,
) -> Vec<crate::export::Prop<'a>> {
    let progress =
        running
            .and_then(|(j, n)| cx.st.item(j).and_then(|i| i.builds.get(&n)))
            .map(|b| {
                if b.estimated_duration > 0 {
                    ((now - b.start_ms) * 100 / b.estimated_duration).clamp(0, 99)
                } else {
                    -1
                }
            })
            .unwrap_or(-1);
    vec![
        p("currentExecutable", executable_value(cx, running, regular)),
        p("idle", Value::Bool(running.is_none())),
        p("likelyStuck", Value::Bool(false)),
        p("number", Value::int(number)),
        p("progress", Value::Int(progress)),
    ]
}

pub fn computer<'a>(cx: Ctx<'a>, idx: usize) -> Bean<'a> {
    let Some(n) = cx.st.nodes.get(idx) else { return Bean::new("hudson.model.Computer") };
    let now = cx.now;
    let class = if n.is_builtin() { "hudson.model.Hudson$MasterComputer" } else { "hudson.slaves.SlaveComputer" };
    let labels: Vec<Value> = node_labels(n).into_iter().map(|l| Value::bean(label_ref(&l))).collect();
    let executors: Vec<Value> = n
        .busy
        .iter()
        .enumerate()
        .map(|(i, b)| Value::bean(Bean::plain("hudson.model.Executor").group(executor_props(cx, *b, i, now))))
        .collect();
    let idle = n.busy.iter().all(|b| b.is_none());
    let offline_cause = if n.offline {
        Value::bean(
            Bean::new("hudson.slaves.OfflineCause$ByCLI")
                .group(vec![p("description", Value::opt_str(n.offline_reason.clone()))]),
        )
    } else {
        Value::Null
    };
    let monitor = Value::Map(vec![
        (
            "hudson.node_monitors.SwapSpaceMonitor".into(),
            if n.offline {
                Value::Null
            } else {
                Value::bean(Bean::new("hudson.node_monitors.SwapSpaceMonitor$MemoryUsage2").group(vec![
                    p("availablePhysicalMemory", Value::Int(8_000_000_000)),
                    p("availableSwapSpace", Value::Int(2_000_000_000)),
                    p("totalPhysicalMemory", Value::Int(16_000_000_000)),
                    p("totalSwapSpace", Value::Int(2_000_000_000)),
                ]))
            },
        ),
        ("hudson.node_monitors.TemporarySpaceMonitor".into(), Value::Null),
        (
            "hudson.node_monitors.DiskSpaceMonitor".into(),
            if n.offline {
                Value::Null
            } else {
                Value::bean(Bean::new("hudson.node_monitors.DiskSpaceMonitorDescriptor$DiskSpace").group(vec![
                    p("timestamp", Value::Int(now)),
                    p("path", s(n.remote_fs.clone())),
                    p("size", Value::Int(107_374_182_400)),
                ]))
            },
        ),
        ("hudson.node_monitors.ArchitectureMonitor".into(), if n.offline { Value::Null } else { s("Linux (amd64)") }),
        (
            "hudson.node_monitors.ResponseTimeMonitor".into(),
            if n.offline {
                Value::Null
            } else {
                Value::bean(
                    Bean::new("hudson.node_monitors.ResponseTimeMonitor$Data")
                        .group(vec![p("timestamp", Value::Int(now)), p("average", Value::Int(0))]),
                )
            },
        ),
        (
            "hudson.node_monitors.ClockMonitor".into(),
            if n.offline {
                Value::Null
            } else {
                Value::bean(Bean::new("hudson.util.ClockDifference").group(vec![p("diff", Value::Int(0))]))
            },
        ),
    ]);
    let bean = Bean::new(class).group(vec![
        p("actions", Value::List(vec![Value::Opaque])),
        p("assignedLabels", Value::List(labels)),
        p(
            "description",
            s(if n.is_builtin() {
                "the Jenkins controller's built-in node".to_string()
            } else {
                n.description.clone()
            }),
        ),
        p("displayName", s(n.display_name())),
        p("executors", Value::List(executors)),
        p("icon", s(if n.offline { "symbol-computer-x" } else { "symbol-computer" })),
        p("iconClassName", s(if n.offline { "symbol-computer-x" } else { "symbol-computer" })),
        p("idle", Value::Bool(idle)),
        p("jnlpAgent", Value::Bool(!n.is_builtin())),
        p("launchSupported", Value::Bool(!n.is_builtin())),
        p("loadStatistics", Value::bean(Bean::new("hudson.model.Label$1"))),
        p("manualLaunchAllowed", Value::Bool(true)),
        pi("monitorData", 1, monitor),
        p("numExecutors", Value::int(n.num_executors)),
        p("offline", Value::Bool(n.offline)),
        p("offlineCause", offline_cause),
        p("offlineCauseReason", s(n.offline_reason.clone().unwrap_or_default())),
        p(
            "oneOffExecutors",
            Value::List(
                n.one_off
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        Value::bean(Bean::plain("hudson.model.OneOffExecutor").group(executor_props_of(
                            cx,
                            Some(*r),
                            i,
                            now,
                            false,
                        )))
                    })
                    .collect(),
            ),
        ),
        p("temporarilyOffline", Value::Bool(n.temporarily_offline)),
    ]);
    if n.is_builtin() {
        bean
    } else {
        bean.group(vec![p("absoluteRemotePath", if n.offline { Value::Null } else { s(n.remote_fs.clone()) })])
    }
}

fn node_labels(n: &Node) -> Vec<String> {
    let mut v = n.labels.clone();
    if n.is_builtin() {
        v.push("built-in".into());
    } else {
        v.push(n.name.clone());
    }
    v.sort();
    v.dedup();
    v
}

pub fn computer_url(base: &str, n: &Node) -> String {
    if n.is_builtin() {
        format!("{base}computer/(built-in)/")
    } else {
        format!("{base}computer/{}/", full_encode(&n.name))
    }
}

// ---------------------------------------------------------------------------------------------
// views

pub fn view_url(cx: Ctx, owner: Option<ItemId>, v: &View, primary: bool) -> String {
    let owner_url = owner.map_or_else(|| cx.base.to_string(), |o| cx.item_url(o));
    if primary { owner_url } else { format!("{owner_url}view/{}/", raw_encode(&v.name)) }
}

/// Jobs a view lists: all (AllView) or the named jobs and regex matches (ListView).
pub fn view_jobs(cx: Ctx, owner: Option<ItemId>, v: &View) -> Vec<ItemId> {
    let children = cx.visible_children(owner);
    match v.kind {
        ViewKind::All | ViewKind::My => children,
        ViewKind::List => children
            .into_iter()
            .filter(|c| {
                let name = cx.st.item(*c).map(|i| i.name.clone()).unwrap_or_default();
                v.job_names.iter().any(|j| java_fold::eq_ignore_case(j, &name))
                    || v.include_regex.as_deref().is_some_and(|r| crate::engine::simple_regex_match(r, &name))
            })
            .collect(),
    }
}

pub fn view<'a>(cx: Ctx<'a>, owner: Option<ItemId>, v: &View) -> Bean<'a> {
    let primary = match owner {
        None => v.name == cx.st.primary_view,
        Some(o) => cx.st.item(o).and_then(|i| i.views.first()).is_some_and(|pv_| pv_.name == v.name),
    };
    let class = match owner.and_then(|o| cx.st.item(o)).map(|i| i.kind) {
        Some(ItemKind::Multibranch) => "jenkins.branch.MultiBranchProjectViewHolder$ViewImpl",
        _ => v.class(),
    };
    let jobs: Vec<Value> = view_jobs(cx, owner, v).into_iter().map(|c| item_lazy(cx, c)).collect();
    Bean::new(class).group(vec![
        p("description", Value::opt_str(v.description.clone())),
        p("jobs", Value::List(jobs)),
        pv("name", 2, s(v.name.clone())),
        p("property", Value::List(vec![])),
        pv("url", 2, s(view_url(cx, owner, v, primary))),
    ])
}

// ---------------------------------------------------------------------------------------------
// plugins, crumbs, users

pub fn plugin_manager<'a>(cx: Ctx<'a>) -> Bean<'a> {
    let plugins: Vec<Value> = cx
        .st
        .plugins
        .iter()
        .map(|pl| {
            let deps: Vec<Value> = pl
                .dependencies
                .iter()
                .map(|(n, v, opt)| {
                    Value::bean(Bean::plain("hudson.PluginWrapper$Dependency").group(vec![
                        p("optional", Value::Bool(*opt)),
                        p("shortName", s(n.clone())),
                        p("version", s(v.clone())),
                    ]))
                })
                .collect();
            Value::bean(Bean::plain("hudson.PluginWrapper").group(vec![
                p("active", Value::Bool(true)),
                p("backupVersion", Value::Null),
                p("bundled", Value::Bool(false)),
                p("deleted", Value::Bool(false)),
                p("dependencies", Value::List(deps)),
                p("detached", Value::Bool(false)),
                p("downgradable", Value::Bool(false)),
                p("enabled", Value::Bool(true)),
                p("hasUpdate", Value::Bool(false)),
                p("longName", s(pl.long_name.clone())),
                p("pinned", Value::Bool(false)),
                p("requiredCoreVersion", s("2.479.3")),
                p("shortName", s(pl.short_name.clone())),
                p("supportsDynamicLoad", s("MAYBE")),
                p("url", s(pl.url.clone())),
                p("version", s(pl.version.clone())),
            ]))
        })
        .collect();
    Bean::new("hudson.LocalPluginManager").group(vec![p("plugins", Value::List(plugins))])
}

pub fn crumb_issuer<'a>(crumb: &str) -> Bean<'a> {
    Bean::new("hudson.security.csrf.DefaultCrumbIssuer")
        .group(vec![p("crumb", s(crumb)), p("crumbRequestField", s("Jenkins-Crumb"))])
}

/// `/whoAmI`: Spring's anonymous token counts as authenticated too (WhoAmI.isAuthenticated), so
/// `authenticated` is always true and only `anonymous` tells them apart.
pub fn who_am_i<'a>(name: &str, anonymous: bool, authorities: Vec<String>) -> Bean<'a> {
    Bean::new("hudson.security.WhoAmI").group(vec![
        p("anonymous", Value::Bool(anonymous)),
        p("authenticated", Value::Bool(true)),
        p("authorities", Value::List(authorities.into_iter().map(s).collect())),
        p("details", Value::Null),
        p("name", s(name)),
        p("toString", s(format!("Username: {name}"))),
    ])
}

pub fn user<'a>(cx: Ctx<'a>, id: &str, full_name: &str) -> Bean<'a> {
    Bean::new("hudson.model.User").group(vec![
        pv("absoluteUrl", 999, s(format!("{}user/{}", cx.base, raw_encode(&id.to_lowercase())))),
        p("description", Value::Null),
        pv("fullName", 999, s(full_name)),
        p("id", s(id)),
        p(
            "property",
            Value::List(vec![
                Value::bean(Bean::new("jenkins.security.ApiTokenProperty")),
                Value::bean(Bean::new("hudson.model.MyViewsProperty")),
                Value::bean(Bean::new("hudson.model.PaneStatusProperties")),
                Value::bean(Bean::new("jenkins.security.seed.UserSeedProperty")),
                Value::bean(
                    Bean::new("hudson.search.UserSearchProperty")
                        .group(vec![p("insensitiveSearch", Value::Bool(true))]),
                ),
                Value::bean(Bean::new("hudson.model.TimeZoneProperty")),
                Value::bean(Bean::new("hudson.security.HudsonPrivateSecurityRealm$Details")),
                Value::bean(Bean::new("jenkins.security.LastGrantedAuthoritiesProperty")),
            ]),
        ),
    ])
}
