//! A build's archived artifacts: the list, and a text artifact read with the log views.
//!
//! An artifact is read only by a path Jenkins listed for that build, checked before anything is
//! sent (the path sent is the listed one, encoded segment by segment). A binary artifact (a known
//! binary extension, or NUL bytes / invalid UTF-8 in its first 8 KiB) is answered with its
//! metadata only: its bytes never reach the agent.

use bytes::Bytes;
use futures_util::StreamExt;
use jenkins::{JenkinsClient, JobPath};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::logs::{LogMode, ViewName, view_of_stream};
use super::{BuildArg, Exec, Need, Op, resolve_number};
use crate::catalog::Operation;
use crate::error::GateError;

/// The most artifacts one answer lists.
const MAX_LISTED: usize = 200;
/// How much of an artifact is looked at to decide whether it is text.
const SNIFF_BYTES: usize = 8 * 1024;
/// Extensions of files that are binary whatever their first bytes.
const BINARY_EXTENSIONS: &[&str] = &[
    "jar", "war", "ear", "zip", "gz", "tgz", "bz2", "xz", "zst", "7z", "tar", "rar", "png", "jpg", "jpeg", "gif",
    "bmp", "ico", "webp", "pdf", "exe", "dll", "so", "dylib", "a", "o", "class", "bin", "iso", "img", "dmg", "deb",
    "rpm", "apk", "whl", "pyc", "wasm", "mp3", "mp4", "woff", "woff2", "ttf", "otf", "sqlite", "db",
];

pub struct ListArtifacts;

/// Arguments of `list_artifacts`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// The job's full name, folders separated by '/', e.g. team/api-server.
    pub job: String,
    /// A build number or a permalink (lastBuild, lastSuccessfulBuild, ...). Default: lastBuild.
    pub build: Option<BuildArg>,
}

impl Op for ListArtifacts {
    type Args = ListArgs;
    const META: Operation = crate::op!("list_artifacts", Status, Read, Job, destructive: false, idempotent: true, grouped: true,
        routes: ["GET /{job}/{build}/wfapi/artifacts", "GET /{job}/{build}/api/json?tree=artifacts[...]"],
        cli: "artifact list", phrase: "listed the artifacts of",
        "List a build's archived artifacts: name, relative path, size (when Jenkins gives it).");

    fn needs(a: &ListArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, a: ListArgs) -> Result<Value, GateError> {
        let path = cx.path(0)?;
        let number = resolve_number(cx.client, &path, BuildArg::selector(a.build.as_ref())?).await?;
        let listed = listed_artifacts(cx.client, &path, number).await?;
        let total = listed.len();
        let shown: Vec<Value> = listed
            .iter()
            .take(MAX_LISTED)
            .map(|l| json!({"name": l.name, "path": l.path, "size": l.size, "binary": is_binary_name(&l.path)}))
            .collect();
        Ok(json!({
            "job": path.to_string(),
            "number": number,
            "artifacts": shown,
            "total": total,
            "omitted": total.saturating_sub(MAX_LISTED),
            "summary": format!("{total} artifact(s) of {path} #{number}{}", if total > MAX_LISTED { format!("; the first {MAX_LISTED} are listed") } else { String::new() }),
        }))
    }
}

/// One artifact as jgate lists it.
pub(super) struct Listed {
    pub name: String,
    pub path: String,
    pub size: Option<u64>,
}

/// The artifacts Jenkins lists for a build (the build API's list is the authority; sizes come from
/// the Pipeline REST API when the job is a Pipeline with it, else they are unknown).
pub(super) async fn listed_artifacts(
    client: &JenkinsClient,
    job: &JobPath,
    number: u64,
) -> Result<Vec<Listed>, GateError> {
    let arts = client.artifacts(job, number).await?;
    let sizes = if arts.is_empty() {
        Vec::new()
    } else {
        // Freestyle jobs and controllers without the plugin have no wfapi: sizes stay unknown.
        client.pipeline_artifacts(job, number).await.unwrap_or_default()
    };
    Ok(arts
        .into_iter()
        .map(|a| {
            let size = sizes.iter().find(|s| s.path == a.relative_path).and_then(|s| s.size);
            Listed { name: a.file_name, path: a.relative_path, size }
        })
        .collect())
}

pub struct ReadArtifact;

/// Arguments of `read_artifact`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    /// The job's full name, folders separated by '/'.
    pub job: String,
    /// A build number or a permalink. Default: lastBuild.
    pub build: Option<BuildArg>,
    /// The artifact's relative path exactly as list_artifacts gives it, e.g. reports/summary.txt.
    pub path: String,
    /// tail (default): the last lines; head: the first lines; range: lines from..to; grep: lines
    /// matching pattern with context.
    pub mode: Option<ViewName>,
    /// How many lines for tail/head (1–2000, default 100).
    #[schemars(range(min = 1, max = 2000))]
    pub lines: Option<u64>,
    /// range: the first line number (1-based).
    #[schemars(range(min = 1))]
    pub from: Option<u64>,
    /// range: the last line number.
    #[schemars(range(min = 1))]
    pub to: Option<u64>,
    /// grep: a regular expression.
    pub pattern: Option<String>,
    /// grep: lines of context before and after each match (0–50, default 2).
    #[schemars(range(min = 0, max = 50))]
    pub context: Option<u64>,
}

impl Op for ReadArtifact {
    type Args = ReadArgs;
    const META: Operation = crate::op!("read_artifact", Status, Read, Job, destructive: false, idempotent: true, grouped: true,
        routes: ["GET /{job}/{build}/artifact/{path}"],
        cli: "artifact read", phrase: "read an artifact of",
        "Read a text artifact of a build with the log views (tail, head, range, grep), bounded, secrets redacted; a binary artifact gives its metadata only.");

    fn needs(a: &ReadArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, a: ReadArgs) -> Result<Value, GateError> {
        check_artifact_path(&a.path)?;
        let mode = LogMode::from_view(a.mode, a.lines, a.from, a.to, a.pattern.as_deref(), a.context)?;
        let path = cx.path(0)?;
        let number = resolve_number(cx.client, &path, BuildArg::selector(a.build.as_ref())?).await?;
        let listed = listed_artifacts(cx.client, &path, number).await?;
        let Some(artifact) = listed.into_iter().find(|l| l.path == a.path) else {
            return Err(GateError::Failed {
                message: format!(
                    "build #{number} of {path} has no artifact '{}'; list_artifacts gives the paths it has",
                    a.path
                ),
                status: Some(404),
            });
        };
        let meta = json!({"name": artifact.name, "path": artifact.path, "size": artifact.size});
        if is_binary_name(&artifact.path) {
            return Ok(binary_answer(&path, number, meta, "its extension is a binary format's"));
        }
        let mut stream = cx.client.artifact_stream(&path, number, &artifact.path).await?;
        // Look at the first bytes before anything is shown: a binary artifact stops here.
        let mut head = Vec::new();
        let mut ended = false;
        while head.len() < SNIFF_BYTES {
            match stream.next().await {
                Some(chunk) => head.extend_from_slice(&chunk?),
                None => {
                    ended = true;
                    break;
                }
            }
        }
        if let Some(why) = binary_content(&head[..head.len().min(SNIFF_BYTES)], ended && head.len() <= SNIFF_BYTES) {
            return Ok(binary_answer(&path, number, meta, why));
        }
        let whole = futures_util::stream::iter([Ok(Bytes::from(head))]).chain(stream).boxed();
        let source = format!("{path} #{number} artifact {}", artifact.path);
        let mut v = view_of_stream(whole, &mode, cx.sanitizer, &source, "the artifact").await?;
        if let Value::Object(m) = &mut v {
            m.insert("job".into(), json!(path.to_string()));
            m.insert("number".into(), json!(number));
            m.insert("artifact".into(), meta);
        }
        Ok(v)
    }
}

fn binary_answer(job: &JobPath, number: u64, meta: Value, why: &str) -> Value {
    json!({
        "job": job.to_string(),
        "number": number,
        "artifact": meta,
        "binary": true,
        "summary": format!("the artifact is binary ({why}): jgate gives its metadata only, never its bytes"),
    })
}

/// Whether an artifact's name says it is binary.
fn is_binary_name(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.').is_some_and(|(_, ext)| BINARY_EXTENSIONS.iter().any(|b| b.eq_ignore_ascii_case(ext)))
}

/// Why the first bytes of an artifact make it binary, if they do. `complete` says the bytes are
/// the whole file (else a UTF-8 sequence cut at the end is not an error).
fn binary_content(head: &[u8], complete: bool) -> Option<&'static str> {
    if head.contains(&0) {
        return Some("it has NUL bytes");
    }
    match std::str::from_utf8(head) {
        Ok(_) => None,
        Err(e) if e.error_len().is_none() && !complete => None,
        Err(_) => Some("it is not UTF-8 text"),
    }
}

/// An artifact path as an agent may name one: relative, `/`-separated, no `.`/`..` segments, no
/// backslash, no percent-encoded separator, no control characters. (It must also be one Jenkins
/// lists for the build, checked after this.)
pub(crate) fn check_artifact_path(p: &str) -> Result<(), GateError> {
    let lower = p.to_ascii_lowercase();
    let why = if p.is_empty() || p.len() > 1000 {
        Some("it must be 1 to 1000 characters")
    } else if p.starts_with('/') || p.contains(':') && p.as_bytes().get(1) == Some(&b':') {
        Some("it must be relative to the build's artifacts, not absolute")
    } else if p.contains('\\') {
        Some("it must use '/' as separator, never '\\'")
    } else if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%2e") {
        Some("encoded separators or dots are not accepted")
    } else if p.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        Some("empty, '.' and '..' segments are not accepted")
    } else if p.chars().any(char::is_control) {
        Some("control characters are not accepted")
    } else {
        None
    };
    match why {
        Some(w) => {
            Err(super::bad_request(format!("artifact path '{p}' refused: {w}; use a path list_artifacts gives")))
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_paths_are_relative_and_plain() {
        for ok in ["a.txt", "reports/summary.txt", "x/y/z.log", "with space.txt", "100%.txt"] {
            assert!(check_artifact_path(ok).is_ok(), "{ok}");
        }
        for bad in
            ["../x", "a/../b", "/etc/passwd", "a\\b", "a%2Fb", "a%2fb", "%2e%2e/x", "", "a//b", "./a", "C:/x", "a\nb"]
        {
            assert!(check_artifact_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn binary_is_told_by_name_or_content() {
        assert!(is_binary_name("target/app.JAR"));
        assert!(!is_binary_name("report.txt"));
        assert_eq!(binary_content(b"hello\0world", true), Some("it has NUL bytes"));
        assert_eq!(binary_content(&[0xff, 0xfe, b'a'], true), Some("it is not UTF-8 text"));
        // A multi-byte character cut by the sniff window is not a reason.
        assert_eq!(binary_content(&"é".as_bytes()[..1], false), None);
        assert_eq!(binary_content("plain ✓ text".as_bytes(), true), None);
    }
}
