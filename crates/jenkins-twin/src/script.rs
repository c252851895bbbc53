//! Interpreters for the documented subsets of the shell builder and the Jenkinsfile.
//!
//! Nothing here runs anything on the host: shell text and Jenkinsfiles are interpreted into a
//! [`Plan`] that reproduces what a real Jenkins would print and do. Inputs come from users over
//! HTTP, so every unsupported or malformed input is an error value, never a panic.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::plan::{Op, Plan};

/// The environment of one build: BUILD_NUMBER, JOB_NAME, BUILD_URL, WORKSPACE... plus build
/// parameters (filled by the caller).
pub struct BuildEnv {
    pub vars: BTreeMap<String, String>,
}

const SUBSET_HINT: &str = "the twin supports only the subset documented in docs/twin.md";

/// Why a Jenkinsfile cannot be interpreted by the twin.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The text is not well formed (unterminated string, unbalanced braces, stray token...).
    #[error("Jenkinsfile line {line}: syntax error: {message} ({SUBSET_HINT})")]
    Syntax { line: usize, message: String },
    /// Well formed, but outside the interpreted subset (unknown step, section, expression...).
    #[error("Jenkinsfile line {line}: unsupported {construct}: {detail} ({SUBSET_HINT})")]
    Unsupported { line: usize, construct: String, detail: String },
}

fn syntax(line: usize, message: impl Into<String>) -> ScriptError {
    ScriptError::Syntax { line, message: message.into() }
}

fn unsupported(line: usize, construct: impl Into<String>, detail: impl Into<String>) -> ScriptError {
    ScriptError::Unsupported { line, construct: construct.into(), detail: detail.into() }
}

/// FNV-1a: a tiny stable hash, so generated file names and input ids are deterministic across
/// runs and Rust versions (std's `DefaultHasher` makes no such promise).
fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

// ---------------------------------------------------------------------------------------------
// Shell subset
// ---------------------------------------------------------------------------------------------

/// How a simple command is joined to the previous one on its line.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Conn {
    Seq,
    And,
    Or,
}

/// One simple command after expansion.
#[derive(Debug, Default)]
struct Cmd {
    words: Vec<String>,
    /// The command as written (for commands the twin does not model: pipes, redirections...).
    raw: String,
    /// Contains constructs the twin does not model; traced but otherwise a no-op.
    complex: bool,
}

/// Expands `$NAME`, `${NAME}`, `${NAME:-default}` and `$?` starting right after a `$`.
/// Returns the expansion and the number of chars consumed after the `$`.
fn expand_dollar(rest: &[char], vars: &BTreeMap<String, String>, status: i32) -> (String, usize) {
    match rest.first() {
        Some('{') => {
            let Some(close) = rest.iter().position(|c| *c == '}') else {
                return ("${".to_string(), 1);
            };
            let inner: String = rest.get(1..close).unwrap_or_default().iter().collect();
            let value = match inner.split_once(":-") {
                Some((name, default)) => match vars.get(name) {
                    Some(v) if !v.is_empty() => v.clone(),
                    _ => default.to_string(),
                },
                None => vars.get(&inner).cloned().unwrap_or_default(),
            };
            (value, close + 1)
        }
        Some('?') => (status.to_string(), 1),
        Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
            let len = rest.iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').count();
            let name: String = rest.iter().take(len).collect();
            (vars.get(&name).cloned().unwrap_or_default(), len)
        }
        // A lone `$` stays literal, as in sh.
        _ => ("$".to_string(), 0),
    }
}

/// Splits one logical line into simple commands with their connectors, expanding variables.
/// Errors (unterminated quote) are returned as sh's own message.
fn split_line(line: &str, vars: &BTreeMap<String, String>, status: i32) -> Result<Vec<(Conn, Cmd)>, String> {
    let chars: Vec<char> = line.chars().collect();
    let mut out: Vec<(Conn, Cmd)> = Vec::new();
    let mut conn = Conn::Seq;
    let mut cmd = Cmd::default();
    let mut word = String::new();
    let mut in_word = false;
    let mut raw_start = 0usize;
    let mut i = 0usize;
    let finish = |cmd: &mut Cmd, out: &mut Vec<(Conn, Cmd)>, conn: Conn, raw_end: usize, raw_start: usize| {
        cmd.raw = chars.get(raw_start..raw_end).unwrap_or_default().iter().collect::<String>().trim().to_string();
        let done = std::mem::take(cmd);
        if !done.words.is_empty() || done.complex {
            out.push((conn, done));
        }
    };
    while let Some(&c) = chars.get(i) {
        match c {
            '\'' => {
                let Some(len) = chars.get(i + 1..).and_then(|r| r.iter().position(|x| *x == '\'')) else {
                    return Err("Syntax error: Unterminated quoted string".into());
                };
                word.extend(chars.get(i + 1..i + 1 + len).unwrap_or_default());
                in_word = true;
                i += len + 2;
            }
            '"' => {
                in_word = true;
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("Syntax error: Unterminated quoted string".into()),
                        Some('"') => break,
                        Some('\\') if matches!(chars.get(i + 1), Some('"' | '\\' | '$' | '`')) => {
                            word.extend(chars.get(i + 1));
                            i += 2;
                        }
                        Some('$') => {
                            if chars.get(i + 1) == Some(&'(') {
                                cmd.complex = true;
                            }
                            let (v, used) = expand_dollar(chars.get(i + 1..).unwrap_or_default(), vars, status);
                            word.push_str(&v);
                            i += 1 + used;
                        }
                        Some('`') => {
                            cmd.complex = true;
                            word.push('`');
                            i += 1;
                        }
                        Some(x) => {
                            word.push(*x);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            '\\' => {
                word.extend(chars.get(i + 1));
                in_word = true;
                i += 2;
            }
            '$' => {
                if chars.get(i + 1) == Some(&'(') {
                    cmd.complex = true;
                }
                let (v, used) = expand_dollar(chars.get(i + 1..).unwrap_or_default(), vars, status);
                word.push_str(&v);
                in_word = true;
                i += 1 + used;
            }
            '#' if !in_word => break,
            ' ' | '\t' => {
                if in_word {
                    cmd.words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                i += 1;
            }
            ';' | '&' | '|' => {
                if in_word {
                    cmd.words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                let next = chars.get(i + 1).copied();
                let sep = match (c, next) {
                    (';', _) => Some((Conn::Seq, 1)),
                    ('&', Some('&')) => Some((Conn::And, 2)),
                    ('|', Some('|')) => Some((Conn::Or, 2)),
                    _ => None,
                };
                match sep {
                    Some((new_conn, len)) => {
                        finish(&mut cmd, &mut out, conn, i, raw_start);
                        conn = new_conn;
                        i += len;
                        raw_start = i;
                    }
                    None => {
                        // Pipes and background jobs are not modelled.
                        cmd.complex = true;
                        i += 1;
                    }
                }
            }
            '>' | '<' | '`' | '(' | ')' => {
                cmd.complex = true;
                word.push(c);
                in_word = true;
                i += 1;
            }
            _ => {
                word.push(c);
                in_word = true;
                i += 1;
            }
        }
    }
    if in_word {
        cmd.words.push(word);
    }
    finish(&mut cmd, &mut out, conn, chars.len().min(i), raw_start);
    Ok(out)
}

/// Quotes a word for the `+ ...` trace line the way `sh -x` does.
fn trace_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c) || (!c.is_ascii() && !c.is_whitespace()));
    if plain { w.to_string() } else { format!("'{}'", w.replace('\'', "'\\''")) }
}

/// Parses a `sleep` argument: seconds, fractional allowed, optional s/m/h/d suffix.
fn parse_sleep(arg: &str) -> Option<Duration> {
    let (num, mult) = match arg.char_indices().last() {
        Some((i, 's')) => (arg.get(..i)?, 1.0),
        Some((i, 'm')) => (arg.get(..i)?, 60.0),
        Some((i, 'h')) => (arg.get(..i)?, 3600.0),
        Some((i, 'd')) => (arg.get(..i)?, 86400.0),
        _ => (arg, 1.0),
    };
    let secs: f64 = num.parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs * mult).ok()
}

/// Interprets shell text as `/bin/sh -xe` would and returns the exit status.
fn run_shell(text: &str, env: &BTreeMap<String, String>, out: &mut Plan) -> i32 {
    // Assignments (`X=1`) only live for this script, as in a real shell.
    let mut vars = env.clone();
    let mut status = 0i32;
    // Join backslash-continued lines first.
    let mut logical: Vec<String> = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(line);
                logical.push(std::mem::take(&mut pending));
            }
        }
    }
    if !pending.is_empty() {
        logical.push(pending);
    }
    for (n, line) in logical.iter().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let cmds = match split_line(trimmed, &vars, status) {
            Ok(c) => c,
            Err(msg) => {
                out.push(Op::Line(format!("/bin/sh: {}: {msg}", n + 1)));
                return 2;
            }
        };
        // Commands form and-or lists separated by `;`. Under `-e` the shell exits when a list's
        // status is nonzero and came from the list's last command (`false && x` does not exit).
        let mut lists: Vec<Vec<(Conn, Cmd)>> = Vec::new();
        for (conn, cmd) in cmds {
            match lists.last_mut() {
                Some(list) if conn != Conn::Seq => list.push((conn, cmd)),
                _ => lists.push(vec![(conn, cmd)]),
            }
        }
        for list in lists {
            let mut last_run = 0usize;
            for (idx, (conn, cmd)) in list.iter().enumerate() {
                let skip = match conn {
                    Conn::And => status != 0,
                    Conn::Or => status == 0,
                    Conn::Seq => false,
                };
                if idx > 0 && skip {
                    continue;
                }
                if let Some(code) = run_command(cmd, &mut vars, &mut status, out) {
                    return code;
                }
                last_run = idx;
            }
            if status != 0 && last_run + 1 == list.len() {
                return status;
            }
        }
    }
    status
}

/// Runs one simple command; returns `Some(code)` when the script must end right away.
fn run_command(cmd: &Cmd, vars: &mut BTreeMap<String, String>, status: &mut i32, out: &mut Plan) -> Option<i32> {
    if cmd.complex {
        // Pipes, redirections and substitutions are not modelled: trace only (documented no-op).
        out.push(Op::Line(format!("+ {}", cmd.raw)));
        *status = 0;
        return None;
    }
    let trace: Vec<String> = cmd.words.iter().map(|w| trace_word(w)).collect();
    out.push(Op::Line(format!("+ {}", trace.join(" "))));
    let name = cmd.words.first().map(String::as_str).unwrap_or_default();
    let args = cmd.words.get(1..).unwrap_or_default();
    *status = match name {
        "echo" => {
            out.push(Op::Line(args.join(" ")));
            0
        }
        "true" | ":" => 0,
        "false" => 1,
        "exit" => {
            let code = match args.first() {
                None => *status,
                Some(a) => match a.parse::<i64>() {
                    Ok(v) => (v & 0xff) as i32,
                    Err(_) => {
                        out.push(Op::Line(format!("/bin/sh: exit: Illegal number: {a}")));
                        2
                    }
                },
            };
            return Some(code);
        }
        "sleep" => match args.first().and_then(|a| parse_sleep(a)) {
            Some(d) => {
                out.push(Op::Sleep(d));
                0
            }
            None => {
                out.push(Op::Line(format!("sleep: invalid time interval '{}'", args.join(" "))));
                1
            }
        },
        "seq" => match (args.len(), args.first().map(|a| a.parse::<u64>())) {
            (1, Some(Ok(n))) => {
                out.push(Op::Seq(n));
                0
            }
            _ => {
                out.push(Op::Line(format!("seq: invalid argument: '{}'", args.join(" "))));
                1
            }
        },
        _ => {
            // `NAME=value` words alone are assignments; anything else is a documented no-op.
            if cmd.words.iter().all(|w| is_assignment(w)) {
                for w in &cmd.words {
                    if let Some((k, v)) = w.split_once('=') {
                        vars.insert(k.to_string(), v.to_string());
                    }
                }
            }
            0
        }
    };
    None
}

fn is_assignment(w: &str) -> bool {
    match w.split_once('=') {
        Some((k, _)) => {
            k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// The plan of a freestyle build whose builders are `hudson.tasks.Shell` steps.
pub fn freestyle_plan(job_short_name: &str, shell_steps: &[String], env: &BuildEnv) -> Plan {
    let mut out = Plan::new();
    for step in shell_steps {
        // Jenkins writes each step to a temp file with a random name; ours is derived from the
        // text so plans are reproducible.
        let digits = fnv1a(0, step.as_bytes()) % 10_000_000_000_000_000_000;
        out.push(Op::Line(format!("[{job_short_name}] $ /bin/sh -xe /tmp/jenkins{digits:019}.sh")));
        let code = run_shell(step, &env.vars, &mut out);
        if code != 0 {
            out.push(Op::Line("Build step 'Execute shell' marked build as failure".into()));
            out.push(Op::Fail {
                message: format!("script returned exit code {code}"),
                error_type: "hudson.AbortException".into(),
            });
            break;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Jenkinsfile subset: tokens
// ---------------------------------------------------------------------------------------------

/// A piece of a Groovy string: literal text or a `${...}` / `$name` interpolation.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Expr(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(Vec<Part>),
    Num(String),
    Punct(char),
    Newline,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Str(_) => "a string".into(),
        Tok::Num(n) => format!("number {n}"),
        Tok::Punct(c) => format!("`{c}`"),
        Tok::Newline => "end of line".into(),
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.'
}

fn tokenize(src: &str) -> Result<Vec<Token>, ScriptError> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut line = 1usize;
    let mut i = 0usize;
    let at = |i: usize| chars.get(i).copied();
    // A shebang line is allowed (and ignored) in Jenkinsfiles.
    if src.starts_with("#!") {
        i = chars.iter().position(|c| *c == '\n').unwrap_or(chars.len());
    }
    while let Some(c) = at(i) {
        match c {
            '\n' => {
                toks.push(Token { tok: Tok::Newline, line });
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '/' if at(i + 1) == Some('/') => {
                while at(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
            }
            '/' if at(i + 1) == Some('*') => {
                let start = line;
                i += 2;
                loop {
                    match at(i) {
                        None => return Err(syntax(start, "unterminated /* comment")),
                        Some('*') if at(i + 1) == Some('/') => {
                            i += 2;
                            break;
                        }
                        Some(ch) => {
                            if ch == '\n' {
                                line += 1;
                            }
                            i += 1;
                        }
                    }
                }
            }
            '\'' | '"' => {
                let start = line;
                let triple = at(i + 1) == Some(c) && at(i + 2) == Some(c);
                let interpolate = c == '"';
                i += if triple { 3 } else { 1 };
                let mut parts = Vec::new();
                let mut lit = String::new();
                loop {
                    let Some(ch) = at(i) else {
                        return Err(syntax(start, "unterminated string"));
                    };
                    if ch == c && (!triple || (at(i + 1) == Some(c) && at(i + 2) == Some(c))) {
                        i += if triple { 3 } else { 1 };
                        break;
                    }
                    match ch {
                        '\n' if !triple => return Err(syntax(start, "unterminated string")),
                        '\\' => {
                            let esc = at(i + 1).ok_or_else(|| syntax(start, "unterminated string"))?;
                            match esc {
                                'n' => lit.push('\n'),
                                't' => lit.push('\t'),
                                'r' => lit.push('\r'),
                                '\\' | '\'' | '"' | '$' => lit.push(esc),
                                '\n' => line += 1,
                                other => {
                                    lit.push('\\');
                                    lit.push(other);
                                }
                            }
                            i += 2;
                        }
                        '$' if interpolate => {
                            if !lit.is_empty() {
                                parts.push(Part::Lit(std::mem::take(&mut lit)));
                            }
                            if at(i + 1) == Some('{') {
                                let close = chars
                                    .get(i + 2..)
                                    .and_then(|r| r.iter().position(|x| *x == '}'))
                                    .ok_or_else(|| syntax(line, "unterminated ${...} in string"))?;
                                let expr: String = chars.get(i + 2..i + 2 + close).unwrap_or_default().iter().collect();
                                line += expr.matches('\n').count();
                                parts.push(Part::Expr(expr.trim().to_string()));
                                i += close + 3;
                            } else if at(i + 1).is_some_and(|x| x.is_ascii_alphabetic() || x == '_') {
                                let len = chars
                                    .get(i + 1..)
                                    .unwrap_or_default()
                                    .iter()
                                    .take_while(|x| x.is_ascii_alphanumeric() || **x == '_' || **x == '.')
                                    .count();
                                let name: String = chars.get(i + 1..i + 1 + len).unwrap_or_default().iter().collect();
                                // A trailing dot ends the sentence, not the property path.
                                let trimmed = name.trim_end_matches('.');
                                parts.push(Part::Expr(trimmed.to_string()));
                                i += 1 + trimmed.chars().count();
                            } else {
                                return Err(syntax(
                                    line,
                                    "illegal character after `$` in a double-quoted string (escape it as `\\$`)",
                                ));
                            }
                        }
                        _ => {
                            if ch == '\n' {
                                line += 1;
                            }
                            lit.push(ch);
                            i += 1;
                        }
                    }
                }
                if !lit.is_empty() || parts.is_empty() {
                    parts.push(Part::Lit(lit));
                }
                toks.push(Token { tok: Tok::Str(parts), line: start });
            }
            c if c.is_ascii_digit() => {
                let len =
                    chars.get(i..).unwrap_or_default().iter().take_while(|x| x.is_ascii_digit() || **x == '.').count();
                let num: String = chars.get(i..i + len).unwrap_or_default().iter().collect();
                toks.push(Token { tok: Tok::Num(num), line });
                i += len;
            }
            c if is_ident_start(c) => {
                let len = chars.get(i..).unwrap_or_default().iter().take_while(|x| is_ident_char(**x)).count();
                let name: String = chars.get(i..i + len).unwrap_or_default().iter().collect();
                toks.push(Token { tok: Tok::Ident(name), line });
                i += len;
            }
            other => {
                toks.push(Token { tok: Tok::Punct(other), line });
                i += 1;
            }
        }
    }
    Ok(toks)
}

// ---------------------------------------------------------------------------------------------
// Jenkinsfile subset: syntax tree
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Value {
    Str(Vec<Part>),
    Num(String),
    Ident(String),
    List(Vec<Arg>),
    Closure(Vec<Stmt>),
    Call(String, Vec<Arg>),
}

#[derive(Debug, Clone)]
struct Arg {
    key: Option<String>,
    value: Value,
}

#[derive(Debug, Clone)]
enum StmtKind {
    /// `name args { block }` in any of Groovy's call spellings.
    Call { name: String, args: Vec<Arg>, block: Option<Vec<Stmt>> },
    /// `NAME = value` (declarative `environment`, `env.X = ...`).
    Assign { name: String, value: Value },
    /// A section the twin accepts but ignores (options, parameters, when...); not parsed.
    Ignored,
}

#[derive(Debug, Clone)]
struct Stmt {
    kind: StmtKind,
    line: usize,
}

/// Sections whose content is free-form Groovy the twin does not interpret: skipped unparsed.
const IGNORED_SECTIONS: &[&str] = &["options", "parameters", "triggers", "tools", "when", "libraries", "properties"];

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    /// Nesting depth of blocks and argument lists, bounded so hostile input cannot overflow the
    /// stack of this recursive parser (or of the interpreter walking its output).
    depth: usize,
}

const MAX_NESTING: usize = 64;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn peek_at(&self, ahead: usize) -> Option<&Tok> {
        self.toks.get(self.pos + ahead).map(|t| &t.tok)
    }

    /// The line of the current token (or of the last one at end of input).
    fn line(&self) -> usize {
        self.toks.get(self.pos).or(self.toks.last()).map_or(1, |t| t.line)
    }

    fn is_punct(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Punct(c))
    }

    fn skip_newlines(&mut self) {
        while self.peek() == Some(&Tok::Newline) {
            self.pos += 1;
        }
    }

    /// Statements up to the matching `}` (consumed) or, at top level, to the end of input.
    fn block(&mut self, open_line: Option<usize>) -> Result<Vec<Stmt>, ScriptError> {
        self.nested(|p| p.block_inner(open_line))
    }

    /// Runs `f` one nesting level deeper, refusing absurd depths.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, ScriptError>) -> Result<T, ScriptError> {
        if self.depth >= MAX_NESTING {
            return Err(unsupported(self.line(), "nesting", format!("more than {MAX_NESTING} levels")));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn block_inner(&mut self, open_line: Option<usize>) -> Result<Vec<Stmt>, ScriptError> {
        let mut stmts = Vec::new();
        loop {
            while matches!(self.peek(), Some(Tok::Newline | Tok::Punct(';'))) {
                self.pos += 1;
            }
            match self.peek() {
                None => {
                    return match open_line {
                        Some(l) => Err(syntax(l, "unbalanced braces: `{` opened here is never closed")),
                        None => Ok(stmts),
                    };
                }
                Some(Tok::Punct('}')) => {
                    return match open_line {
                        Some(_) => {
                            self.pos += 1;
                            Ok(stmts)
                        }
                        None => Err(syntax(self.line(), "unbalanced braces: `}` without a matching `{`")),
                    };
                }
                _ => stmts.push(self.statement()?),
            }
        }
    }

    fn statement(&mut self) -> Result<Stmt, ScriptError> {
        let line = self.line();
        let name = match self.peek() {
            Some(Tok::Ident(n)) => n.clone(),
            Some(other) => {
                return Err(unsupported(
                    line,
                    "construct",
                    format!("unexpected {}; expected a step or section", describe(other)),
                ));
            }
            None => return Err(syntax(line, "unexpected end of input")),
        };
        self.pos += 1;
        let kind = if self.is_punct('=') && self.peek_at(1) != Some(&Tok::Punct('=')) {
            self.pos += 1;
            StmtKind::Assign { name, value: self.value()? }
        } else if IGNORED_SECTIONS.contains(&name.as_str()) {
            if self.is_punct('(') {
                self.skip_balanced('(', ')')?;
            }
            if self.is_punct('{') {
                self.skip_balanced('{', '}')?;
            }
            StmtKind::Ignored
        } else {
            let mut args = Vec::new();
            if self.is_punct('(') {
                self.pos += 1;
                args = self.args_until(')')?;
            } else if !matches!(self.peek(), None | Some(Tok::Newline | Tok::Punct(';' | '}' | '{'))) {
                // Command syntax: `sh 'x'`, `sh script: 'x', returnStatus: true`.
                loop {
                    args.push(self.arg()?);
                    if self.is_punct(',') {
                        self.pos += 1;
                        self.skip_newlines();
                    } else {
                        break;
                    }
                }
            }
            let block = if self.is_punct('{') {
                let open = self.line();
                self.pos += 1;
                Some(self.block(Some(open))?)
            } else {
                None
            };
            StmtKind::Call { name, args, block }
        };
        // After a closing `}` another statement may follow on the same line (`a { } b { }`).
        let ends_with_block = matches!(&kind, StmtKind::Call { block: Some(_), .. } | StmtKind::Ignored);
        match self.peek() {
            _ if ends_with_block => Ok(Stmt { kind, line }),
            None | Some(Tok::Newline | Tok::Punct(';' | '}')) => Ok(Stmt { kind, line }),
            Some(other) => {
                Err(unsupported(self.line(), "construct", format!("unexpected {} in statement", describe(other))))
            }
        }
    }

    fn skip_balanced(&mut self, open: char, close: char) -> Result<(), ScriptError> {
        let start = self.line();
        let mut depth = 0usize;
        loop {
            match self.peek() {
                None => return Err(syntax(start, format!("unbalanced `{open}`: never closed"))),
                Some(Tok::Punct(c)) if *c == open => depth += 1,
                Some(Tok::Punct(c)) if *c == close => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        self.pos += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
    }

    /// Comma-separated arguments up to `close` (consumed); newlines allowed anywhere.
    fn args_until(&mut self, close: char) -> Result<Vec<Arg>, ScriptError> {
        self.nested(|p| p.args_until_inner(close))
    }

    fn args_until_inner(&mut self, close: char) -> Result<Vec<Arg>, ScriptError> {
        let mut args = Vec::new();
        loop {
            self.skip_newlines();
            if self.is_punct(close) {
                self.pos += 1;
                return Ok(args);
            }
            // `[:]`, the empty map.
            if close == ']' && self.is_punct(':') && self.peek_at(1) == Some(&Tok::Punct(']')) {
                self.pos += 2;
                return Ok(args);
            }
            args.push(self.arg()?);
            self.skip_newlines();
            if self.is_punct(',') {
                self.pos += 1;
            } else if !self.is_punct(close) {
                return match self.peek() {
                    None => Err(syntax(self.line(), format!("missing `{close}`"))),
                    Some(t) => Err(syntax(self.line(), format!("expected `,` or `{close}`, found {}", describe(t)))),
                };
            }
        }
    }

    fn arg(&mut self) -> Result<Arg, ScriptError> {
        let key = match (self.peek(), self.peek_at(1)) {
            (Some(Tok::Ident(k)), Some(Tok::Punct(':'))) => Some(k.clone()),
            (Some(Tok::Str(parts)), Some(Tok::Punct(':'))) => Some(literal(parts)),
            _ => None,
        };
        if key.is_some() {
            self.pos += 2;
            self.skip_newlines();
        }
        Ok(Arg { key, value: self.value()? })
    }

    fn value(&mut self) -> Result<Value, ScriptError> {
        let line = self.line();
        let tok = self.peek().cloned().ok_or_else(|| syntax(line, "unexpected end of input, expected a value"))?;
        self.pos += 1;
        match tok {
            Tok::Str(parts) => Ok(Value::Str(parts)),
            Tok::Num(n) => Ok(Value::Num(n)),
            Tok::Punct('-') => match self.peek().cloned() {
                Some(Tok::Num(n)) => {
                    self.pos += 1;
                    Ok(Value::Num(format!("-{n}")))
                }
                _ => Err(unsupported(line, "expression", "`-` is only supported before a number")),
            },
            Tok::Ident(name) => {
                if self.is_punct('(') {
                    self.pos += 1;
                    Ok(Value::Call(name, self.args_until(')')?))
                } else {
                    Ok(Value::Ident(name))
                }
            }
            Tok::Punct('[') => Ok(Value::List(self.args_until(']')?)),
            Tok::Punct('{') => Ok(Value::Closure(self.block(Some(line))?)),
            other => Err(unsupported(line, "expression", format!("unexpected {}", describe(&other)))),
        }
    }
}

/// The literal text of a string token (interpolations kept as written).
fn literal(parts: &[Part]) -> String {
    parts
        .iter()
        .map(|p| match p {
            Part::Lit(s) => s.clone(),
            Part::Expr(e) => format!("${{{e}}}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Jenkinsfile subset: interpreter
// ---------------------------------------------------------------------------------------------

/// Steps that do their work and return (no block).
const ATOM_STEPS: &[&str] = &[
    "sh",
    "echo",
    "sleep",
    "error",
    "input",
    "unstable",
    "junit",
    "archiveArtifacts",
    "checkout",
    "git",
    "deleteDir",
    "cleanWs",
];
/// Steps that wrap a block and run it once.
const BLOCK_STEPS: &[&str] = &["timestamps", "timeout", "withEnv", "dir", "script", "ansiColor", "withCredentials"];
/// Names that only structure a Jenkinsfile.
const STRUCTURE: &[&str] = &["pipeline", "node", "stage", "parallel"];
/// Declarative names that never denote steps (checked by `validate`).
const DECLARATIVE: &[&str] = &[
    "agent",
    "environment",
    "stages",
    "steps",
    "post",
    "always",
    "success",
    "failure",
    "unstable",
    "aborted",
    "cleanup",
    "changed",
    "fixed",
    "regression",
    "unsuccessful",
    "failFast",
];
/// Post conditions in the order Jenkins evaluates them.
const POST_ORDER: &[&str] = &[
    "always",
    "changed",
    "fixed",
    "regression",
    "aborted",
    "failure",
    "success",
    "unstable",
    "unsuccessful",
    "cleanup",
];

fn supported_steps() -> String {
    let mut all: Vec<&str> = ATOM_STEPS.iter().chain(BLOCK_STEPS).chain(STRUCTURE).copied().collect();
    all.sort_unstable();
    all.join(", ")
}

/// Checks every call name up front, as Jenkins compiles the whole script before running it: an
/// unknown step in a stage that a failure later skips is still reported.
fn validate(stmts: &[Stmt]) -> Result<(), ScriptError> {
    for s in stmts {
        let StmtKind::Call { name, args, block } = &s.kind else { continue };
        let known = ATOM_STEPS.contains(&name.as_str())
            || BLOCK_STEPS.contains(&name.as_str())
            || STRUCTURE.contains(&name.as_str())
            || DECLARATIVE.contains(&name.as_str());
        if !known {
            return Err(unsupported(
                s.line,
                format!("step `{name}`"),
                format!("no such step (NoSuchMethodError); supported steps: {}", supported_steps()),
            ));
        }
        // The agent block describes where to run (label, docker...) and a stage's `input { }`
        // its parameters: neither holds steps.
        if name == "agent" || name == "input" {
            continue;
        }
        validate_args(args)?;
        if let Some(b) = block {
            validate(b)?;
        }
    }
    Ok(())
}

/// Closures can hide in arguments (`parallel a: { ... }`, nested lists and calls).
fn validate_args(args: &[Arg]) -> Result<(), ScriptError> {
    for a in args {
        match &a.value {
            Value::Closure(body) => validate(body)?,
            Value::List(items) | Value::Call(_, items) => validate_args(items)?,
            Value::Str(_) | Value::Num(_) | Value::Ident(_) => {}
        }
    }
    Ok(())
}

/// Whether the interpreter keeps going or unwinds after a failure (recorded in `Interp`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flow {
    Go,
    Stop,
}

type Run = Result<Flow, ScriptError>;

struct Failure {
    message: String,
    error_type: String,
}

struct Interp {
    out: Plan,
    vars: BTreeMap<String, String>,
    failure: Option<Failure>,
    unstable: bool,
    inputs: u64,
}

fn positional(args: &[Arg]) -> Option<&Value> {
    args.iter().find(|a| a.key.is_none()).map(|a| &a.value)
}

fn named<'a>(args: &'a [Arg], key: &str) -> Option<&'a Value> {
    args.iter().find(|a| a.key.as_deref() == Some(key)).map(|a| &a.value)
}

/// The step's main argument: `step 'x'` or `step key: 'x'`.
fn main_arg<'a>(args: &'a [Arg], key: &str) -> Option<&'a Value> {
    named(args, key).or_else(|| positional(args))
}

impl Interp {
    fn line(&mut self, s: impl Into<String>) {
        self.out.push(Op::Line(s.into()));
    }

    fn step(&mut self, step: &str, name: &str, description: impl Into<String>) {
        self.line(format!("[Pipeline] {step}"));
        self.out.push(Op::Step { name: name.into(), description: description.into() });
    }

    /// Records a failure; the first one is what the build reports.
    fn fail(&mut self, message: impl Into<String>) -> Flow {
        let message = message.into();
        // Marks the failing step and its stages now; the build itself fails at the end (Op::Fail).
        self.out.push(Op::StepFailed { message: message.clone(), error_type: "hudson.AbortException".into() });
        if self.failure.is_none() {
            self.failure = Some(Failure { message, error_type: "hudson.AbortException".into() });
        }
        Flow::Stop
    }

    fn workspace(&self) -> String {
        match self.vars.get("WORKSPACE") {
            Some(w) if !w.is_empty() => w.clone(),
            _ => format!("/var/jenkins_home/workspace/{}", self.vars.get("JOB_NAME").map_or("job", String::as_str)),
        }
    }

    /// Evaluates a `${...}` expression of the subset.
    fn expr(&self, e: &str, line: usize) -> Result<String, ScriptError> {
        let lookup = |k: &str| self.vars.get(k).cloned();
        let value = if let Some(k) = e.strip_prefix("env.") {
            lookup(k).unwrap_or_else(|| "null".into())
        } else if let Some(k) = e.strip_prefix("params.") {
            lookup(k).unwrap_or_else(|| "null".into())
        } else if e == "currentBuild.number" {
            lookup("BUILD_NUMBER").unwrap_or_default()
        } else if e == "currentBuild.displayName" {
            format!("#{}", lookup("BUILD_NUMBER").unwrap_or_default())
        } else if !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            lookup(e).ok_or_else(|| {
                unsupported(line, "expression", format!("`{e}` is not an environment variable or parameter"))
            })?
        } else {
            return Err(unsupported(
                line,
                "expression",
                format!("`${{{e}}}`; only env.X, params.X, X and currentBuild.number are interpolated"),
            ));
        };
        Ok(value)
    }

    fn string(&self, v: &Value, line: usize) -> Result<String, ScriptError> {
        match v {
            Value::Str(parts) => {
                let mut s = String::new();
                for p in parts {
                    match p {
                        Part::Lit(l) => s.push_str(l),
                        Part::Expr(e) => s.push_str(&self.expr(e, line)?),
                    }
                }
                Ok(s)
            }
            Value::Num(n) => Ok(n.clone()),
            Value::Ident(i) if i == "true" || i == "false" => Ok(i.clone()),
            Value::Ident(i) if i.contains('.') || self.vars.contains_key(i) => self.expr(i, line),
            _ => Err(unsupported(line, "argument", "expected a string")),
        }
    }

    fn truthy(&self, v: Option<&Value>, line: usize) -> Result<bool, ScriptError> {
        match v {
            None => Ok(false),
            Some(v) => Ok(self.string(v, line)? == "true"),
        }
    }

    fn block(&mut self, stmts: &[Stmt]) -> Run {
        for s in stmts {
            if self.stmt(s)? == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Go)
    }

    /// `[Pipeline] name` / `{` body `}` / `// name`, the console shape of every block step.
    fn wrapped(&mut self, name: &str, extra: Option<String>, body: &[Stmt]) -> Run {
        self.line(format!("[Pipeline] {name}"));
        if let Some(e) = extra {
            self.line(e);
        }
        self.line("[Pipeline] {");
        let flow = self.block(body)?;
        self.line("[Pipeline] }");
        self.line(format!("[Pipeline] // {name}"));
        Ok(flow)
    }

    fn node(&mut self, body: impl FnOnce(&mut Self) -> Run) -> Run {
        self.line("[Pipeline] node");
        let ws = self.workspace();
        self.line(format!("Running on Jenkins in {ws}"));
        self.line("[Pipeline] {");
        let flow = body(self)?;
        self.line("[Pipeline] }");
        self.line("[Pipeline] // node");
        Ok(flow)
    }

    fn stage_name(&self, args: &[Arg], line: usize) -> Result<String, ScriptError> {
        let v = main_arg(args, "name").ok_or_else(|| unsupported(line, "stage", "a stage needs a name"))?;
        self.string(v, line)
    }

    /// Opens a stage, runs `body`, closes it.
    fn stage(&mut self, name: &str, body: impl FnOnce(&mut Self) -> Run) -> Run {
        self.out.push(Op::StageStart { name: name.to_string() });
        self.line("[Pipeline] stage");
        self.line(format!("[Pipeline] {{ ({name})"));
        let flow = body(self)?;
        self.line("[Pipeline] }");
        self.line("[Pipeline] // stage");
        self.out.push(Op::StageEnd);
        Ok(flow)
    }

    fn stmt(&mut self, s: &Stmt) -> Run {
        let line = s.line;
        let (name, args, block) = match &s.kind {
            StmtKind::Ignored => return Ok(Flow::Go),
            StmtKind::Assign { name, value } => return self.assign(name, value, line),
            StmtKind::Call { name, args, block } => (name.as_str(), args.as_slice(), block.as_deref()),
        };
        if let Some(body) = block
            && (BLOCK_STEPS.contains(&name) || name == "node" || name == "stage" || name == "pipeline")
        {
            return self.block_step(name, args, body, line);
        }
        if block.is_some() || BLOCK_STEPS.contains(&name) || name == "node" || name == "pipeline" {
            let detail = if block.is_some() { "this step takes no block" } else { "this step needs a `{ ... }` block" };
            return Err(unsupported(line, format!("use of `{name}`"), detail));
        }
        self.atom_step(name, args, line)
    }

    fn assign(&mut self, name: &str, value: &Value, line: usize) -> Run {
        let v = self.string(value, line)?;
        if let Some(k) = name.strip_prefix("env.") {
            self.vars.insert(k.to_string(), v);
        } else if name == "currentBuild.result" && v == "UNSTABLE" {
            self.unstable = true;
            self.out.push(Op::Unstable);
        } else if name == "currentBuild.result" && v == "SUCCESS" {
        } else {
            return Err(unsupported(
                line,
                "assignment",
                format!("`{name} = ...` (only env.X and currentBuild.result = 'UNSTABLE')"),
            ));
        }
        Ok(Flow::Go)
    }

    fn block_step(&mut self, name: &str, args: &[Arg], body: &[Stmt], line: usize) -> Run {
        match name {
            "pipeline" => self.declarative(body, line),
            "node" => self.node(|me| me.block(body)),
            "stage" => {
                let stage = self.stage_name(args, line)?;
                self.stage(&stage, |me| me.block(body))
            }
            "dir" => {
                let d = main_arg(args, "path").map(|v| self.string(v, line)).transpose()?.unwrap_or_default();
                let ws = self.workspace();
                self.wrapped("dir", Some(format!("Running in {ws}/{d}")), body)
            }
            "withEnv" => {
                let mut added = Vec::new();
                if let Some(Value::List(items)) = positional(args) {
                    for item in items {
                        let kv = self.string(&item.value, line)?;
                        if let Some((k, v)) = kv.split_once('=') {
                            added.push((k.to_string(), v.to_string()));
                        }
                    }
                }
                self.with_vars(added, |me| me.wrapped("withEnv", None, body))
            }
            _ => self.wrapped(name, None, body),
        }
    }

    /// Runs `f` with extra variables, restoring the previous ones afterwards.
    fn with_vars(&mut self, added: Vec<(String, String)>, f: impl FnOnce(&mut Self) -> Run) -> Run {
        let saved = self.vars.clone();
        self.vars.extend(added);
        let r = f(self);
        self.vars = saved;
        r
    }

    fn atom_step(&mut self, name: &str, args: &[Arg], line: usize) -> Run {
        let text = |me: &Self, key: &str| -> Result<String, ScriptError> {
            let v = main_arg(args, key)
                .ok_or_else(|| unsupported(line, format!("use of `{name}`"), format!("missing `{key}` argument")))?;
            me.string(v, line)
        };
        match name {
            "sh" => {
                let script = text(self, "script")?;
                let return_status = self.truthy(named(args, "returnStatus"), line)?;
                self.step("sh", "Shell Script", script.clone());
                let vars = self.vars.clone();
                let code = run_shell(&script, &vars, &mut self.out);
                if code != 0 && !return_status {
                    return Ok(self.fail(format!("script returned exit code {code}")));
                }
            }
            "echo" => {
                let msg = text(self, "message")?;
                self.step("echo", "Print Message", msg.clone());
                for l in msg.split('\n') {
                    self.line(l);
                }
            }
            "sleep" => {
                let amount: f64 = text(self, "time")?
                    .parse()
                    .map_err(|_| unsupported(line, "use of `sleep`", "the time must be a number"))?;
                let unit = match named(args, "unit") {
                    Some(Value::Ident(u)) => u.clone(),
                    Some(v) => self.string(v, line)?,
                    None => "SECONDS".into(),
                };
                let factor = match unit.trim_start_matches("TimeUnit.") {
                    "NANOSECONDS" => 1e-9,
                    "MICROSECONDS" => 1e-6,
                    "MILLISECONDS" => 1e-3,
                    "SECONDS" => 1.0,
                    "MINUTES" => 60.0,
                    "HOURS" => 3600.0,
                    "DAYS" => 86400.0,
                    other => return Err(unsupported(line, "use of `sleep`", format!("unknown unit `{other}`"))),
                };
                let d = (amount >= 0.0)
                    .then(|| Duration::try_from_secs_f64(amount * factor).ok())
                    .flatten()
                    .ok_or_else(|| unsupported(line, "use of `sleep`", "time out of range"))?;
                self.step("sleep", "Sleep", "");
                self.line(format!("Sleeping for {}", time_span(d)));
                self.out.push(Op::Sleep(d));
            }
            "error" => {
                let msg = text(self, "message")?;
                self.step("error", "Error signal", msg.clone());
                return Ok(self.fail(msg));
            }
            "input" => {
                let message = text(self, "message")?;
                let ok =
                    named(args, "ok").map(|v| self.string(v, line)).transpose()?.unwrap_or_else(|| "Proceed".into());
                self.inputs += 1;
                let id = match named(args, "id") {
                    Some(v) => capitalize(&self.string(v, line)?),
                    None => input_id(&message, self.inputs),
                };
                self.step("input", "Wait for interactive input", message.clone());
                self.out.push(Op::Input { id, message, ok });
            }
            "unstable" => {
                let msg = text(self, "message")?;
                self.step("unstable", "Set stage result to unstable", msg.clone());
                self.line(format!("WARNING: {msg}"));
                self.unstable = true;
                self.out.push(Op::Unstable);
            }
            "junit" => {
                self.step("junit", "Record JUnit test results", "");
                self.line("Recording test results");
            }
            "archiveArtifacts" => {
                self.step("archiveArtifacts", "Archive the artifacts", "");
                self.line("Archiving artifacts");
            }
            "checkout" => self.step("checkout", "General SCM", ""),
            "git" => self.step("git", "Git", ""),
            "deleteDir" => self.step("deleteDir", "Recursively delete the current directory from the workspace", ""),
            "cleanWs" => {
                self.step("cleanWs", "Delete workspace when build is done", "");
                self.line("[WS-CLEANUP] Deleting project workspace...");
                self.line("[WS-CLEANUP] done");
            }
            "parallel" => return self.scripted_parallel(args, line),
            _ => {
                return Err(unsupported(
                    line,
                    format!("step `{name}`"),
                    format!("no such step here; supported steps: {}", supported_steps()),
                ));
            }
        }
        Ok(Flow::Go)
    }

    /// `parallel a: { ... }, b: { ... }`. The twin serializes parallel branches: they run one
    /// after the other, each as a nested stage, and every branch runs even if an earlier one
    /// failed (as concurrent branches would have).
    fn scripted_parallel(&mut self, args: &[Arg], line: usize) -> Run {
        let mut branches = Vec::new();
        for a in args {
            match (&a.key, &a.value) {
                (Some(k), _) if k == "failFast" => {}
                (Some(k), Value::Closure(body)) => branches.push((k.clone(), body)),
                _ => return Err(unsupported(line, "use of `parallel`", "expected `name: { ... }` branches")),
            }
        }
        self.line("[Pipeline] parallel");
        let mut flow = Flow::Go;
        for (name, body) in branches {
            self.out.push(Op::StageStart { name: name.clone() });
            self.line(format!("[Pipeline] {{ (Branch: {name})"));
            if self.block(body)? == Flow::Stop {
                flow = Flow::Stop;
            }
            self.line("[Pipeline] }");
            self.out.push(Op::StageEnd);
        }
        self.line("[Pipeline] // parallel");
        Ok(flow)
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// 32 hex chars, first one capitalized, like the digest-based ids Jenkins gives input steps.
fn input_id(message: &str, position: u64) -> String {
    let mut key = message.as_bytes().to_vec();
    key.extend_from_slice(&position.to_le_bytes());
    capitalize(&format!("{:016x}{:016x}", fnv1a(1, &key), fnv1a(0x9e37_79b9_7f4a_7c15, &key)))
}

/// Jenkins' `Util.getTimeSpanString` style: "500 ms", "5 sec", "1.5 sec", "2 min 5 sec".
fn time_span(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let secs = d.as_secs();
    if secs < 60 {
        let tenths = (ms % 1000) / 100;
        return if tenths == 0 { format!("{secs} sec") } else { format!("{secs}.{tenths} sec") };
    }
    if secs < 3600 {
        return format!("{} min {} sec", secs / 60, secs % 60);
    }
    format!("{} hr {} min", secs / 3600, (secs % 3600) / 60)
}

/// The sections of a declarative `pipeline { }` or `stage { }` block, by name.
struct Sections<'a> {
    calls: Vec<Section<'a>>,
}

/// One section call: `name args { block }` at `line`.
#[derive(Clone, Copy)]
struct Section<'a> {
    name: &'a str,
    args: &'a [Arg],
    block: Option<&'a [Stmt]>,
    line: usize,
}

impl<'a> Sections<'a> {
    fn new(body: &'a [Stmt], allowed: &[&str], what: &str) -> Result<Self, ScriptError> {
        let mut calls = Vec::new();
        for s in body {
            match &s.kind {
                StmtKind::Ignored => {}
                StmtKind::Call { name, args, block } if allowed.contains(&name.as_str()) => {
                    calls.push(Section {
                        name: name.as_str(),
                        args: args.as_slice(),
                        block: block.as_deref(),
                        line: s.line,
                    });
                }
                StmtKind::Call { name, .. } => {
                    return Err(unsupported(
                        s.line,
                        format!("{what} section `{name}`"),
                        format!("supported sections: {}", allowed.join(", ")),
                    ));
                }
                StmtKind::Assign { name, .. } => {
                    return Err(unsupported(
                        s.line,
                        format!("assignment to `{name}`"),
                        format!("not allowed in {what}"),
                    ));
                }
            }
        }
        Ok(Sections { calls })
    }

    fn get(&self, name: &str) -> Option<Section<'a>> {
        self.calls.iter().find(|c| c.name == name).copied()
    }

    fn block(&self, name: &str) -> Result<Option<&'a [Stmt]>, ScriptError> {
        match self.get(name) {
            None => Ok(None),
            Some(Section { block: Some(b), .. }) => Ok(Some(b)),
            Some(Section { block: None, line, .. }) => {
                Err(unsupported(line, format!("section `{name}`"), "it needs a `{ ... }` block"))
            }
        }
    }
}

impl Interp {
    fn declarative(&mut self, body: &[Stmt], line: usize) -> Run {
        let secs = Sections::new(body, &["agent", "environment", "stages", "post"], "pipeline")?;
        let stages =
            secs.block("stages")?.ok_or_else(|| unsupported(line, "pipeline", "a `stages` section is required"))?;
        let on_node = match secs.get("agent") {
            None => return Err(unsupported(line, "pipeline", "an `agent` section is required")),
            Some(Section { args, .. }) => !matches!(positional(args), Some(Value::Ident(a)) if a == "none"),
        };
        let env = secs.block("environment")?;
        let post = secs.block("post")?;
        let run = |me: &mut Self| -> Run {
            me.with_environment(env, |me| {
                me.stages(stages, false)?;
                if let Some(p) = post {
                    me.post(p, me.failure.is_some(), true)?;
                }
                Ok(Flow::Go)
            })
        };
        if on_node { self.node(run) } else { run(self) }
    }

    /// Declarative `environment { K = 'v' }`: the variables, wrapped in a `withEnv` block.
    fn with_environment(&mut self, env: Option<&[Stmt]>, f: impl FnOnce(&mut Self) -> Run) -> Run {
        let Some(env) = env else { return f(self) };
        let saved = self.vars.clone();
        for s in env {
            match &s.kind {
                StmtKind::Assign { name, value } => {
                    let v = match value {
                        // Credentials are masked in real logs; the twin has no secrets to bind.
                        Value::Call(c, _) if c == "credentials" => "****".to_string(),
                        other => self.string(other, s.line)?,
                    };
                    self.vars.insert(name.clone(), v);
                }
                StmtKind::Ignored | StmtKind::Call { .. } => {
                    return Err(unsupported(s.line, "environment entry", "expected `NAME = 'value'`"));
                }
            }
        }
        self.line("[Pipeline] withEnv");
        self.line("[Pipeline] {");
        let r = f(self);
        self.line("[Pipeline] }");
        self.line("[Pipeline] // withEnv");
        self.vars = saved;
        r
    }

    /// Runs declarative stages in order; after a failure the remaining ones are shown skipped,
    /// unless `force` (branches of a parallel, which in Jenkins were already running).
    fn stages(&mut self, stmts: &[Stmt], force: bool) -> Run {
        let mut flow = Flow::Go;
        for s in stmts {
            let StmtKind::Call { name, args, block: Some(body) } = &s.kind else {
                return Err(unsupported(s.line, "construct in stages", "expected `stage('name') { ... }`"));
            };
            if name != "stage" {
                return Err(unsupported(s.line, format!("`{name}` in stages"), "expected `stage('name') { ... }`"));
            }
            let stage = self.stage_name(args, s.line)?;
            if self.failure.is_some() && !force {
                self.stage(&stage, |me| {
                    me.line(format!("Stage \"{stage}\" skipped due to earlier failure(s)"));
                    Ok(Flow::Stop)
                })?;
                flow = Flow::Stop;
                continue;
            }
            if self.decl_stage(&stage, body, s.line)? == Flow::Stop {
                flow = Flow::Stop;
            }
        }
        Ok(flow)
    }

    fn decl_stage(&mut self, stage: &str, body: &[Stmt], line: usize) -> Run {
        let secs = Sections::new(
            body,
            &["agent", "environment", "steps", "stages", "parallel", "post", "failFast", "input"],
            "stage",
        )?;
        let steps = secs.block("steps")?;
        let nested = secs.block("stages")?;
        let parallel = secs.block("parallel")?;
        if steps.is_none() && nested.is_none() && parallel.is_none() {
            return Err(unsupported(line, format!("stage `{stage}`"), "it needs `steps`, `stages` or `parallel`"));
        }
        let env = secs.block("environment")?;
        let post = secs.block("post")?;
        self.stage(stage, |me| {
            me.with_environment(env, |me| {
                let before = me.failure.is_some();
                let mut flow = Flow::Go;
                if let Some(steps) = steps {
                    flow = me.block(steps)?;
                }
                if let Some(nested) = nested
                    && flow == Flow::Go
                {
                    flow = me.stages(nested, false)?;
                }
                if let Some(branches) = parallel
                    && flow == Flow::Go
                {
                    flow = me.decl_parallel(branches)?;
                }
                if let Some(p) = post {
                    let failed = flow == Flow::Stop || (!before && me.failure.is_some());
                    me.post(p, failed, false)?;
                }
                Ok(if me.failure.is_some() && !before { Flow::Stop } else { flow })
            })
        })
    }

    /// Declarative `parallel { stage(...) {...} ... }`, serialized like the scripted form.
    fn decl_parallel(&mut self, body: &[Stmt]) -> Run {
        self.line("[Pipeline] parallel");
        let mut flow = Flow::Go;
        for s in body {
            let StmtKind::Call { name, args, block: Some(stage_body) } = &s.kind else {
                return Err(unsupported(s.line, "construct in parallel", "expected `stage('name') { ... }`"));
            };
            if name != "stage" {
                return Err(unsupported(s.line, format!("`{name}` in parallel"), "expected `stage('name') { ... }`"));
            }
            let stage = self.stage_name(args, s.line)?;
            self.line(format!("[Pipeline] {{ (Branch: {stage})"));
            if self.decl_stage(&stage, stage_body, s.line)? == Flow::Stop {
                flow = Flow::Stop;
            }
            self.line("[Pipeline] }");
        }
        self.line("[Pipeline] // parallel");
        Ok(flow)
    }

    /// Declarative `post`: the conditions that hold, in Jenkins' order. The pipeline-level one
    /// runs in its own "Declarative: Post Actions" stage; a stage's runs inside that stage.
    fn post(&mut self, body: &[Stmt], failed: bool, top_level: bool) -> Run {
        let secs = Sections::new(body, POST_ORDER, "post")?;
        let mut runnable = Vec::new();
        for cond in POST_ORDER {
            let Some(block) = secs.block(cond)? else { continue };
            let holds = match *cond {
                "always" | "cleanup" => true,
                "failure" => failed,
                "success" => !failed && !self.unstable,
                "unstable" => !failed && self.unstable,
                "unsuccessful" => failed || self.unstable,
                // No build history or abort during interpretation: these never hold.
                _ => false,
            };
            if holds {
                runnable.push(block);
            }
        }
        if runnable.is_empty() {
            return Ok(Flow::Go);
        }
        let run_all = |me: &mut Self| -> Run {
            let mut flow = Flow::Go;
            for b in runnable {
                // Every condition runs even if an earlier one failed, as in Jenkins.
                if me.block(b)? == Flow::Stop {
                    flow = Flow::Stop;
                }
            }
            Ok(flow)
        };
        if top_level {
            self.stage("Declarative: Post Actions", run_all)
        } else {
            self.line("Post stage");
            run_all(self)
        }
    }
}

/// The plan of a pipeline build from its Jenkinsfile.
pub fn pipeline_plan(script: &str, env: &BuildEnv) -> Result<Plan, ScriptError> {
    let toks = tokenize(script)?;
    let mut parser = Parser { toks, pos: 0, depth: 0 };
    let stmts = parser.block(None)?;
    validate(&stmts)?;
    let mut it = Interp { out: Plan::new(), vars: env.vars.clone(), failure: None, unstable: false, inputs: 0 };
    it.line("[Pipeline] Start of Pipeline");
    it.block(&stmts)?;
    it.line("[Pipeline] End of Pipeline");
    if let Some(f) = it.failure.take() {
        it.line(format!("ERROR: {}", f.message));
        it.out.push(Op::Fail { message: f.message, error_type: f.error_type });
    }
    Ok(it.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BuildEnv {
        let mut vars = BTreeMap::new();
        for (k, v) in [("BUILD_NUMBER", "7"), ("JOB_NAME", "demo"), ("ENV", "staging")] {
            vars.insert(k.to_string(), v.to_string());
        }
        BuildEnv { vars }
    }

    fn lines(plan: &Plan) -> Vec<String> {
        plan.iter()
            .filter_map(|op| match op {
                Op::Line(l) => Some(l.clone()),
                _ => None,
            })
            .collect()
    }

    /// Stage ops never close more than they open and all are closed at the end.
    fn assert_balanced(plan: &Plan) {
        let mut depth = 0i32;
        for op in plan {
            match op {
                Op::StageStart { .. } => depth += 1,
                Op::StageEnd => depth -= 1,
                _ => {}
            }
            assert!(depth >= 0, "StageEnd without StageStart in {plan:?}");
        }
        assert_eq!(depth, 0, "unclosed stage in {plan:?}");
    }

    fn stages(plan: &Plan) -> Vec<String> {
        plan.iter()
            .filter_map(|op| match op {
                Op::StageStart { name } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn freestyle_echo_and_expansion() {
        let steps =
            vec!["# comment\necho hello   world\necho \"build $BUILD_NUMBER\" '${JOB_NAME}' ${JOB_NAME}x".to_string()];
        let plan = freestyle_plan("demo", &steps, &env());
        let l = lines(&plan);
        assert!(l[0].starts_with("[demo] $ /bin/sh -xe /tmp/jenkins") && l[0].ends_with(".sh"), "{l:?}");
        let digits = l[0].trim_start_matches("[demo] $ /bin/sh -xe /tmp/jenkins").trim_end_matches(".sh");
        assert_eq!(digits.len(), 19);
        assert!(digits.chars().all(|c| c.is_ascii_digit()));
        assert_eq!(
            &l[1..],
            ["+ echo hello world", "hello world", "+ echo 'build 7' '${JOB_NAME}' demox", "build 7 ${JOB_NAME} demox"]
        );
        // Deterministic file name.
        assert_eq!(plan, freestyle_plan("demo", &steps, &env()));
        assert!(!plan.iter().any(|op| matches!(op, Op::Fail { .. })));
    }

    #[test]
    fn freestyle_sleep_seq_and_separators() {
        let steps = vec!["sleep 0.5; seq 5 && true\n:".to_string(), "unknown-cmd --flag".to_string()];
        let plan = freestyle_plan("j", &steps, &env());
        let ops: Vec<&Op> = plan.iter().skip(1).collect();
        assert_eq!(ops[0], &Op::Line("+ sleep 0.5".into()));
        assert_eq!(ops[1], &Op::Sleep(Duration::from_millis(500)));
        assert_eq!(ops[2], &Op::Line("+ seq 5".into()));
        assert_eq!(ops[3], &Op::Seq(5));
        assert_eq!(ops[4], &Op::Line("+ true".into()));
        assert_eq!(ops[5], &Op::Line("+ :".into()));
        assert!(matches!(ops[6], Op::Line(l) if l.starts_with("[j] $ /bin/sh -xe")));
        assert_eq!(ops[7], &Op::Line("+ unknown-cmd --flag".into()));
        assert_eq!(ops.len(), 8);
    }

    #[test]
    fn freestyle_exit_fails_build_and_stops() {
        let steps = vec!["echo a\nexit 3\necho never".to_string(), "echo next step".to_string()];
        let plan = freestyle_plan("j", &steps, &env());
        let l = lines(&plan);
        assert_eq!(&l[1..], ["+ echo a", "a", "+ exit 3", "Build step 'Execute shell' marked build as failure"]);
        assert_eq!(
            plan.last(),
            Some(&Op::Fail {
                message: "script returned exit code 3".into(),
                error_type: "hudson.AbortException".into()
            })
        );
    }

    #[test]
    fn freestyle_exit_zero_ends_only_its_step_and_false_fails() {
        let steps = vec!["exit 0\necho skipped".to_string(), "false && echo no\necho yes\nfalse".to_string()];
        let plan = freestyle_plan("j", &steps, &env());
        let l = lines(&plan);
        assert!(!l.contains(&"skipped".to_string()));
        // `false && x` does not trip -e; the final `false` does.
        assert_eq!(
            &l[3..],
            ["+ false", "+ echo yes", "yes", "+ false", "Build step 'Execute shell' marked build as failure"]
        );
        assert!(matches!(plan.last(), Some(Op::Fail { message, .. }) if message == "script returned exit code 1"));
    }

    #[test]
    fn shell_unterminated_quote_is_exit_2_not_panic() {
        let plan = freestyle_plan("j", &["echo 'oops".to_string()], &env());
        assert!(matches!(plan.last(), Some(Op::Fail { message, .. }) if message == "script returned exit code 2"));
    }

    const DECLARATIVE_FAILING: &str = r#"
pipeline {
    agent any
    options { timeout(time: 1, unit: 'HOURS') }
    environment { GREETING = 'hi' }
    stages {
        stage('Build') {
            steps {
                sh 'echo $GREETING'
            }
        }
        stage('Test') {
            steps {
                sh 'exit 1'
                echo 'not reached'
            }
        }
        stage('Deploy') {
            steps { echo 'nope' }
        }
    }
    post {
        always { echo 'always ran' }
        success { echo 'success ran' }
        failure { echo 'failure ran' }
    }
}
"#;

    #[test]
    fn declarative_failure_skips_later_stages_and_runs_post() {
        let plan = pipeline_plan(DECLARATIVE_FAILING, &env()).unwrap_or_else(|e| panic!("{e}"));
        assert_balanced(&plan);
        let l = lines(&plan);
        let pos = |s: &str| l.iter().position(|x| x == s).unwrap_or_else(|| panic!("missing {s:?} in {l:#?}"));
        assert_eq!(l[0], "[Pipeline] Start of Pipeline");
        assert_eq!(l[2], "Running on Jenkins in /var/jenkins_home/workspace/demo");
        assert!(pos("+ echo hi") < pos("+ exit 1"));
        assert!(pos("+ exit 1") < pos("Stage \"Deploy\" skipped due to earlier failure(s)"));
        assert!(!l.contains(&"not reached".to_string()) && !l.contains(&"nope".to_string()));
        assert!(pos("[Pipeline] { (Declarative: Post Actions)") < pos("always ran"));
        assert!(pos("always ran") < pos("failure ran"));
        assert!(!l.contains(&"success ran".to_string()));
        assert!(pos("failure ran") < pos("[Pipeline] End of Pipeline"));
        assert_eq!(l.last().map(String::as_str), Some("ERROR: script returned exit code 1"));
        assert_eq!(stages(&plan), ["Build", "Test", "Deploy", "Declarative: Post Actions"]);
        assert_eq!(
            plan.last(),
            Some(&Op::Fail {
                message: "script returned exit code 1".into(),
                error_type: "hudson.AbortException".into()
            })
        );
        assert!(plan.contains(&Op::Step { name: "Shell Script".into(), description: "exit 1".into() }));
    }

    #[test]
    fn scripted_node_stage_exact_console() {
        let plan = pipeline_plan("node {\n  stage('a') {\n    echo \"${env.BUILD_NUMBER}\"\n  }\n}\n", &env())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            lines(&plan),
            [
                "[Pipeline] Start of Pipeline",
                "[Pipeline] node",
                "Running on Jenkins in /var/jenkins_home/workspace/demo",
                "[Pipeline] {",
                "[Pipeline] stage",
                "[Pipeline] { (a)",
                "[Pipeline] echo",
                "7",
                "[Pipeline] }",
                "[Pipeline] // stage",
                "[Pipeline] }",
                "[Pipeline] // node",
                "[Pipeline] End of Pipeline",
            ]
        );
        assert!(plan.contains(&Op::Step { name: "Print Message".into(), description: "7".into() }));
        assert_balanced(&plan);
    }

    #[test]
    fn params_interpolation_and_agent_none() {
        let src = "pipeline {\n agent none\n stages { stage('x') { steps { echo \"deploy to ${params.ENV} #$BUILD_NUMBER\" } } }\n}";
        let plan = pipeline_plan(src, &env()).unwrap_or_else(|e| panic!("{e}"));
        let l = lines(&plan);
        assert!(l.contains(&"deploy to staging #7".to_string()));
        assert!(!l.contains(&"[Pipeline] node".to_string()));
    }

    #[test]
    fn input_step_has_deterministic_capitalized_id() {
        let src = "node {\n input message: 'Ship it?', ok: 'Go'\n input 'Again?'\n}";
        let plan = pipeline_plan(src, &env()).unwrap_or_else(|e| panic!("{e}"));
        let inputs: Vec<&Op> = plan.iter().filter(|op| matches!(op, Op::Input { .. })).collect();
        assert_eq!(inputs.len(), 2);
        let Op::Input { id, message, ok } = inputs[0] else { panic!("not an input") };
        assert_eq!((message.as_str(), ok.as_str()), ("Ship it?", "Go"));
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!id.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
        assert!(matches!(inputs[1], Op::Input { ok, .. } if ok == "Proceed"));
        assert_eq!(plan, pipeline_plan(src, &env()).unwrap_or_else(|e| panic!("{e}")));
    }

    #[test]
    fn scripted_parallel_runs_branches_as_nested_stages() {
        let src = "stage('p') {\n  parallel a: { echo 'in a' }, b: {\n    sh 'exit 4'\n  }, c: { echo 'in c' }\n}";
        let plan = pipeline_plan(src, &env()).unwrap_or_else(|e| panic!("{e}"));
        assert_balanced(&plan);
        assert_eq!(stages(&plan), ["p", "a", "b", "c"]);
        let l = lines(&plan);
        assert!(l.contains(&"[Pipeline] { (Branch: a)".to_string()));
        // Branch c still runs after b failed: branches are conceptually concurrent.
        assert!(l.contains(&"in c".to_string()));
        assert!(matches!(plan.last(), Some(Op::Fail { message, .. }) if message == "script returned exit code 4"));
    }

    #[test]
    fn declarative_parallel_and_sleep_and_unstable() {
        let src = r#"pipeline {
  agent { label 'linux' }
  stages {
    stage('Checks') {
      parallel {
        stage('lint') { steps { sleep(time: 250, unit: 'MILLISECONDS') } }
        stage('unit') { steps { unstable 'flaky'; junit 'target/*.xml' } }
      }
    }
  }
  post { unstable { echo 'was unstable' } success { echo 'was success' } }
}"#;
        let plan = pipeline_plan(src, &env()).unwrap_or_else(|e| panic!("{e}"));
        assert_balanced(&plan);
        assert_eq!(stages(&plan), ["Checks", "lint", "unit", "Declarative: Post Actions"]);
        assert!(plan.contains(&Op::Sleep(Duration::from_millis(250))));
        assert!(plan.contains(&Op::Unstable));
        let l = lines(&plan);
        assert!(l.contains(&"Sleeping for 250 ms".to_string()));
        assert!(l.contains(&"WARNING: flaky".to_string()));
        assert!(l.contains(&"was unstable".to_string()) && !l.contains(&"was success".to_string()));
        assert!(!plan.iter().any(|op| matches!(op, Op::Fail { .. })));
    }

    #[test]
    fn error_step_and_triple_quoted_sh() {
        let src =
            "node {\n  sh '''\n    echo one\n    echo two\n  '''\n  error \"bad ${env.JOB_NAME}\"\n  echo 'after'\n}";
        let plan = pipeline_plan(src, &env()).unwrap_or_else(|e| panic!("{e}"));
        let l = lines(&plan);
        assert!(l.contains(&"two".to_string()));
        assert!(!l.contains(&"after".to_string()));
        assert_eq!(l.last().map(String::as_str), Some("ERROR: bad demo"));
        assert!(
            matches!(plan.last(), Some(Op::Fail { message, error_type }) if message == "bad demo" && error_type == "hudson.AbortException")
        );
    }

    #[test]
    fn sh_return_status_does_not_fail() {
        let plan =
            pipeline_plan("node { sh script: 'exit 2', returnStatus: true }", &env()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!plan.iter().any(|op| matches!(op, Op::Fail { .. })));
    }

    fn err_line(src: &str) -> (usize, String) {
        match pipeline_plan(src, &env()) {
            Ok(p) => panic!("expected an error, got {p:?}"),
            Err(e) => {
                let line = match &e {
                    ScriptError::Syntax { line, .. } | ScriptError::Unsupported { line, .. } => *line,
                };
                (line, e.to_string())
            }
        }
    }

    #[test]
    fn unterminated_string_names_its_line() {
        let (line, msg) = err_line("node {\n  echo 'ok'\n  echo 'oops\n}");
        assert_eq!(line, 3);
        assert!(msg.contains("unterminated string") && msg.contains("docs/twin.md"), "{msg}");
    }

    #[test]
    fn unknown_step_is_reported_even_in_a_stage_never_reached() {
        let src = "pipeline {\n agent any\n stages {\n  stage('a') { steps { error 'x' } }\n  stage('b') { steps {\n   foo 'x'\n  } }\n }\n}";
        let (line, msg) = err_line(src);
        assert_eq!(line, 6);
        assert!(msg.contains("`foo`") && msg.contains("supported steps") && msg.contains("sh"), "{msg}");
    }

    #[test]
    fn unbalanced_braces_are_errors() {
        let (line, msg) = err_line("node {\n  stage('a') {\n    echo 'x'\n}\n");
        assert_eq!(line, 1);
        assert!(msg.contains("unbalanced"), "{msg}");
        let (line, msg) = err_line("node {\n}\n}\n");
        assert_eq!(line, 3);
        assert!(msg.contains("unbalanced"), "{msg}");
    }

    #[test]
    fn unsupported_constructs_are_errors() {
        assert_eq!(err_line("node {\n  def x = 1\n}").0, 2);
        assert_eq!(err_line("pipeline {\n agent any\n stages { stage('a') { steps { echo \"${foo()}\" } } }\n}").0, 3);
        assert_eq!(err_line("pipeline {\n  agent any\n  bogus { }\n  stages { }\n}").0, 3);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let src = format!("{}{}", "node {".repeat(10_000), "}".repeat(10_000));
        assert!(err_line(&src).1.contains("nesting"));
        let src = format!("echo {}'x'{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(err_line(&src).1.contains("nesting"));
    }
}
