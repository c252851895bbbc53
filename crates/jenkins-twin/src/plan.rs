//! What a build does when it runs: the output of the shell and Jenkinsfile interpreters
//! (`script.rs`) and the input of the twin's executor (`engine.rs`).
//!
//! A plan is a flat list of operations executed in order on the twin's clock. Nothing in a plan
//! ever touches the host: it only describes console lines, waits, stages and results.

use std::time::Duration;

/// One operation of a build plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// One line of console output, without its trailing newline.
    Line(String),
    /// The numbers `1..=n`, one per line (shell `seq N`); generated lazily, so `n` may be huge.
    Seq(u64),
    /// Wait this long on the twin's clock.
    Sleep(Duration),
    /// A pipeline stage opens (pipeline jobs only). Stages may nest (parallel branches).
    StageStart { name: String },
    /// The innermost open stage closes.
    StageEnd,
    /// A pipeline step starts inside the current stage, for wfapi `stageFlowNodes`
    /// (`name` as Jenkins shows it: "Shell Script", "Print Message", "Sleep", "Error signal").
    Step { name: String, description: String },
    /// The build fails here: result FAILURE; `message` becomes the wfapi error message
    /// (e.g. "script returned exit code 1"); `error_type` the Java exception class
    /// (e.g. "hudson.AbortException"). The lines explaining the failure are emitted as `Line`s
    /// before this op. Remaining ops are skipped.
    Fail { message: String, error_type: String },
    /// The current step fails (pipeline): it and its enclosing stages are marked FAILED with this
    /// error for wfapi, but the plan goes on (post blocks, skipped stages) until `Fail`.
    StepFailed { message: String, error_type: String },
    /// The build result becomes UNSTABLE (it continues).
    Unstable,
    /// The build pauses until someone proceeds or aborts (`input` step): PAUSED_PENDING_INPUT.
    Input { id: String, message: String, ok: String },
}

/// The plan of one build.
pub type Plan = Vec<Op>;
