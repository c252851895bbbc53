//! Reading and changing a job's configuration (group `config`).

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::status::JobArgs;
use super::{BuildArg, Exec, Facts, Need, Op, resolve_number};
use crate::catalog::Operation;
use crate::error::GateError;

pub struct GetJobConfig;

impl Op for GetJobConfig {
    type Args = JobArgs;
    const META: Operation = crate::op!("get_job_config", Config, Read, Job, destructive: false, idempotent: true,
        routes: ["GET /{job}/config.xml"], cli: "job config", phrase: "read the configuration of",
        "Read a job's config.xml (secrets redacted).");

    fn needs(a: &JobArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, _a: JobArgs) -> Result<Value, GateError> {
        // config.xml can carry secrets (tokens in scripts, Jenkins-encrypted {AQAA...} blobs);
        // the blobs are removed here, everything else goes through the sanitizer like any answer.
        let xml = cx.client.config_xml(&cx.path(0)?).await?;
        let cleaned: String = xml.lines().map(|l| format!("{}\n", redact_encrypted_blobs(l))).collect();
        Ok(json!({ "config_xml": cleaned }))
    }
}

/// Jenkins stores secrets in config.xml encrypted with the controller's key, as `{AQAAAB...}`.
pub(crate) fn redact_encrypted_blobs(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("{AQAAAB") {
        let after = &rest[i..];
        match after.find('}') {
            Some(end) if end > 20 && after[1..end].chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)) => {
                out.push_str(&rest[..i]);
                out.push_str("[REDACTED:jenkins-encrypted-secret]");
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str(&rest[..i + 1]);
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

pub struct UpdateJobConfig;

/// Arguments of operations that send a config.xml.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigArgs {
    /// The job's full name, folders separated by '/'.
    pub job: String,
    /// The job's complete config.xml.
    pub config_xml: String,
}

impl Op for UpdateJobConfig {
    type Args = ConfigArgs;
    const META: Operation = crate::op!("update_job_config", Config, Write, Job, destructive: true, idempotent: true,
        routes: ["POST /{job}/config.xml"], cli: "job reconfigure", phrase: "changed the configuration of",
        "Replace a job's config.xml.");

    fn needs(a: &ConfigArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, a: ConfigArgs) -> Result<Value, GateError> {
        cx.client.update_config_xml(&cx.path(0)?, &a.config_xml).await?;
        Ok(json!({ "updated": true }))
    }
}

pub struct EnableJob;

impl Op for EnableJob {
    type Args = JobArgs;
    const META: Operation = crate::op!("enable_job", Config, Write, Job, destructive: false, idempotent: true,
        routes: ["POST /{job}/enable"], cli: "job enable", phrase: "enabled job", "Enable a disabled job.");

    fn needs(a: &JobArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, _a: JobArgs) -> Result<Value, GateError> {
        cx.client.set_enabled(&cx.path(0)?, true).await?;
        Ok(json!({ "enabled": true }))
    }
}

pub struct DisableJob;

impl Op for DisableJob {
    type Args = JobArgs;
    const META: Operation = crate::op!("disable_job", Config, Write, Job, destructive: false, idempotent: true,
        routes: ["POST /{job}/disable"], cli: "job disable", phrase: "disabled job",
        "Disable a job so it cannot be built.");

    fn needs(a: &JobArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, _a: JobArgs) -> Result<Value, GateError> {
        cx.client.set_enabled(&cx.path(0)?, false).await?;
        Ok(json!({ "enabled": false }))
    }
}

pub struct SetDescription;

/// Arguments of `set_description`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescriptionArgs {
    /// The job's full name, folders separated by '/'.
    pub job: String,
    /// A build of the job (a number or a permalink such as lastBuild); omit to describe the job.
    pub build: Option<BuildArg>,
    /// The new description (HTML as Jenkins' markup formatter allows; empty clears it).
    pub description: String,
}

impl Op for SetDescription {
    type Args = DescriptionArgs;
    const META: Operation = crate::op!("set_description", Config, Write, Job, destructive: false, idempotent: true,
        routes: ["POST /{job}/submitDescription", "POST /{job}/{build}/submitDescription"],
        cli: "job describe", phrase: "changed the description of",
        "Set the description of a job, or of one of its builds.");

    fn needs(a: &DescriptionArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, a: DescriptionArgs) -> Result<Value, GateError> {
        if a.description.len() > MAX_DESCRIPTION_BYTES {
            return Err(super::bad_request(format!(
                "the description is over {} KiB; shorten it",
                MAX_DESCRIPTION_BYTES / 1024
            )));
        }
        let jp = cx.path(0)?;
        let number = match &a.build {
            Some(b) => Some(resolve_number(cx.client, &jp, BuildArg::selector(Some(b))?).await?),
            None => None,
        };
        cx.client.set_description(&jp, number, &a.description).await?;
        Ok(json!({ "described": jp.to_string(), "number": number }))
    }
}

/// The longest description jgate sends (Jenkins has no limit; an agent has no need for more).
const MAX_DESCRIPTION_BYTES: usize = 64 * 1024;

pub struct SetNextBuildNumber;

/// Arguments of `set_next_build_number`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NextBuildNumberArgs {
    /// The job's full name, folders separated by '/'.
    pub job: String,
    /// The number the next build gets; Jenkins ignores a number not above the last build's.
    #[schemars(range(min = 1))]
    pub number: u64,
}

impl Op for SetNextBuildNumber {
    type Args = NextBuildNumberArgs;
    const META: Operation = crate::op!("set_next_build_number", Config, Write, Job, destructive: false, idempotent: true,
        routes: ["POST /{job}/nextbuildnumber/submit"], cli: "job next-build-number",
        phrase: "changed the next build number of",
        "Set the number of a job's next build (needs the Next Build Number plugin in Jenkins).");

    fn needs(a: &NextBuildNumberArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    fn facts(answer: &Value) -> Facts {
        let note = answer.get("next_build_number").and_then(Value::as_u64).map(|n| format!("next build is #{n}"));
        Facts { note, build_number: None }
    }

    async fn run(cx: &mut Exec<'_>, a: NextBuildNumberArgs) -> Result<Value, GateError> {
        if a.number == 0 || a.number > i32::MAX as u64 {
            return Err(super::bad_request("number must be between 1 and 2147483647 (a Java int)"));
        }
        cx.client.set_next_build_number(&cx.path(0)?, a.number).await?;
        Ok(json!({ "next_build_number": a.number }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_blobs_are_redacted() {
        let line = "<password>{AQAAABAAAAAQ1234567890abcdefghijKLMNOP=}</password> {AQAAAB short} {x}";
        assert_eq!(
            redact_encrypted_blobs(line),
            "<password>[REDACTED:jenkins-encrypted-secret]</password> {AQAAAB short} {x}"
        );
    }
}
