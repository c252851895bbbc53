//! The terminal: printing that never panics, colour only where it belongs, and a spinner for
//! waits longer than a moment.
//!
//! `println!`, `print!`, `eprintln!` and `eprint!` are redefined here for the whole crate (the
//! module is declared first in `main.rs`, with `#[macro_use]`): std's versions panic when standard
//! output is a closed pipe (`jgate audit | head -1`). Ours end the process quietly with exit code
//! 0 when the reader has gone away — it has read all it wanted — and report any other write error
//! once on standard error (exit code 1). Standard error failing is ignored: there is nowhere left
//! to say so.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::time::Duration;

macro_rules! println {
    () => {
        $crate::term::write_stdout(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::term::write_stdout(format_args!($($arg)*), true)
    };
}

macro_rules! print {
    ($($arg:tt)*) => {
        $crate::term::write_stdout(format_args!($($arg)*), false)
    };
}

macro_rules! eprintln {
    () => {
        $crate::term::write_stderr(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::term::write_stderr(format_args!($($arg)*), true)
    };
}

#[allow(unused_macros)]
macro_rules! eprint {
    ($($arg:tt)*) => {
        $crate::term::write_stderr(format_args!($($arg)*), false)
    };
}

/// Writes to standard output; see the module doc for what happens when that fails.
pub fn write_stdout(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| if newline { out.write_all(b"\n") } else { Ok(()) });
    if let Err(e) = written {
        stdout_failed(&e);
    }
}

/// Flushes standard output (before waiting, e.g. between `audit --follow` polls).
pub fn flush_stdout() {
    if let Err(e) = std::io::stdout().lock().flush() {
        stdout_failed(&e);
    }
}

fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        // The reader closed the pipe (`| head`): it has what it wanted. Nothing is left to flush.
        std::process::exit(0);
    }
    write_stderr(format_args!("error: cannot write to standard output: {e}"), true);
    std::process::exit(1);
}

/// Writes to standard error, ignoring failure (there is nowhere left to report it).
pub fn write_stderr(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| if newline { err.write_all(b"\n") } else { Ok(()) });
}

/// Which standard stream a decision is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn is_terminal(self) -> bool {
        match self {
            Stream::Stdout => std::io::stdout().is_terminal(),
            Stream::Stderr => std::io::stderr().is_terminal(),
        }
    }
}

/// Whether to colour what goes to `stream`: only a terminal, and never with `NO_COLOR` set (to
/// anything but the empty string) or `TERM=dumb`.
pub fn color(stream: Stream) -> bool {
    color_decision(stream.is_terminal(), std::env::var_os("NO_COLOR"), std::env::var_os("TERM"))
}

/// [`color`] with its inputs passed in.
pub fn color_decision(terminal: bool, no_color: Option<OsString>, term: Option<OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty()) && !is_dumb(term)
}

fn is_dumb(term: Option<OsString>) -> bool {
    term.is_some_and(|t| t == "dumb")
}

/// Whether live progress may be drawn on standard error: a terminal that is not `TERM=dumb`.
/// (Progress is not colour: `NO_COLOR` does not turn it off.)
pub fn progress_allowed() -> bool {
    std::io::stderr().is_terminal() && !is_dumb(std::env::var_os("TERM"))
}

/// How long a call runs before the spinner appears.
pub const SPINNER_DELAY: Duration = Duration::from_millis(400);

/// A spinner on standard error, drawn only where [`progress_allowed`]; starts hidden, so quick
/// calls show nothing.
pub struct Spinner {
    bar: Option<indicatif::ProgressBar>,
    message: String,
}

impl Spinner {
    pub fn new(message: impl Into<String>) -> Spinner {
        Spinner { bar: None, message: message.into() }
    }

    /// Draws the spinner (if allowed and not drawn yet).
    pub fn show(&mut self) {
        if self.bar.is_some() || !progress_allowed() {
            return;
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_message(self.message.clone());
        bar.enable_steady_tick(Duration::from_millis(100));
        self.bar = Some(bar);
    }

    /// Changes the text next to the spinner (shown at once if the spinner is drawn).
    pub fn message(&mut self, text: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(text.clone());
        }
        self.message = text;
    }

    /// Removes the spinner from the screen.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color_or_dumb_term() {
        let xterm = Some(OsString::from("xterm-256color"));
        assert!(color_decision(true, None, xterm.clone()));
        assert!(color_decision(true, None, None));
        assert!(!color_decision(false, None, xterm.clone()), "not a terminal");
        assert!(!color_decision(true, Some("1".into()), xterm.clone()), "NO_COLOR=1");
        assert!(!color_decision(true, Some("0".into()), xterm.clone()), "NO_COLOR set to anything");
        assert!(color_decision(true, Some("".into()), xterm), "an empty NO_COLOR does not count");
        assert!(!color_decision(true, None, Some("dumb".into())), "TERM=dumb");
    }
}
