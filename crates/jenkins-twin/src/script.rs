//! Interpreters for the documented subsets of the shell builder and the Jenkinsfile.
//! STUB: being replaced by the full interpreter.

use std::collections::BTreeMap;

use crate::plan::{Op, Plan};

pub struct BuildEnv {
    pub vars: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("line {line}: {message}")]
    Unsupported { line: usize, message: String },
}

pub fn freestyle_plan(_job_short_name: &str, shell_steps: &[String], _env: &BuildEnv) -> Plan {
    shell_steps.iter().map(|s| Op::Line(s.clone())).collect()
}

pub fn pipeline_plan(script: &str, _env: &BuildEnv) -> Result<Plan, ScriptError> {
    Ok(script.lines().map(|s| Op::Line(s.to_string())).collect())
}
