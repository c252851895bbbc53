//! Checks the crate against the installed JDK: the committed table must be exactly what
//! `gen/FoldTable.java` prints, and `cmp_ignore_case`/`eq_ignore_case` must agree with
//! `String.CASE_INSENSITIVE_ORDER`/`equalsIgnoreCase` on tricky and on generated pairs.
//!
//! Without `java`/`javac` on PATH the tests fail, unless `JGATE_SKIP_JAVA=1` is set.

use std::cmp::Ordering;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use java_fold::{cmp_ignore_case, eq_ignore_case, fold_char, fold_key};

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

/// Java classes compiled into a private temporary directory, removed on drop.
struct Compiled(PathBuf);

impl Drop for Compiled {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compiles one Java program (once per test); `None` means "skip" (JGATE_SKIP_JAVA=1).
fn compile(source: &str) -> Option<Compiled> {
    let have_jdk = ["java", "javac"]
        .iter()
        .all(|tool| Command::new(tool).arg("-version").output().is_ok_and(|o| o.status.success()));
    if !have_jdk {
        if std::env::var("JGATE_SKIP_JAVA").is_ok_and(|v| v == "1") {
            eprintln!("java/javac not found; JGATE_SKIP_JAVA=1, so the JDK comparison is skipped");
            return None;
        }
        panic!(
            "java and javac (JDK 17) must be on PATH to check java-fold against Java; \
             install a JDK or set JGATE_SKIP_JAVA=1 to skip this check"
        );
    }
    let stem = Path::new(source).file_stem().and_then(|s| s.to_str()).unwrap_or("java");
    let dir = std::env::temp_dir().join(format!("java-fold-{stem}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir for Java classes");
    let compiled = Compiled(dir);
    let out = Command::new("javac")
        .arg("-d")
        .arg(&compiled.0)
        .arg(Path::new(CRATE).join(source))
        .output()
        .expect("run javac");
    assert!(out.status.success(), "javac {source} failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(compiled)
}

fn run_java(dir: &Path, class: &str, stdin: &str) -> String {
    let mut child = Command::new("java")
        .arg("-cp")
        .arg(dir)
        .arg(class)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start java");
    // Writing from another thread keeps a full stdout pipe from deadlocking a large input.
    let mut input = child.stdin.take().expect("java stdin");
    let text = stdin.to_string();
    let writer = std::thread::spawn(move || input.write_all(text.as_bytes()));
    let out = child.wait_with_output().expect("wait for java");
    writer.join().expect("stdin writer").expect("write java stdin");
    assert!(out.status.success(), "java {class} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("java output is UTF-8")
}

fn java_version() -> String {
    Command::new("java")
        .arg("-version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[test]
fn committed_table_is_what_the_jdk_generates() {
    let Some(classes) = compile("gen/FoldTable.java") else { return };
    let generated = run_java(&classes.0, "FoldTable", "");
    let committed = include_str!("../src/table.rs");
    if generated != committed {
        let first = generated.lines().zip(committed.lines()).position(|(g, c)| g != c);
        panic!(
            "src/table.rs differs from what {} generates (first differing line: {first:?}; \
             generated {} lines, committed {}); regenerate it as the crate docs describe",
            java_version(),
            generated.lines().count(),
            committed.lines().count()
        );
    }
}

fn encode(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    s.chars().map(|c| format!("{:x}", c as u32)).collect::<Vec<_>>().join(",")
}

/// A fixed-seed xorshift, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn tricky_pairs() -> Vec<(String, String)> {
    let fixed = [
        ("ſ", "s"),
        ("ſ", "S"),
        ("ſecret/x", "secret/x"),
        ("releaſex", "RELEASEX"),
        ("ı", "i"),
        ("ı", "I"),
        ("admın-tools", "admin-tools"),
        ("İ", "i"),
        ("İ", "I"),
        ("ADMİN-tools", "admin-tools"),
        ("\u{212A}", "k"),
        ("\u{212A}", "K"),
        ("ß", "SS"),
        ("ß", "ss"),
        ("ß", "ẞ"),
        ("straße", "STRASSE"),
        ("\u{212B}", "å"),
        ("\u{212B}", "Å"),
        ("Σ", "ς"),
        ("Σ", "σ"),
        ("ς", "σ"),
        ("\u{B5}", "μ"),
        ("\u{B5}", "Μ"),
        ("\u{10400}", "\u{10428}"),
        ("\u{10400}", "\u{FF21}"),
        ("\u{10400}", "\u{FF41}"),
        ("\u{1F600}", "\u{E000}"),
        ("a\u{1F600}", "a\u{FFFF}"),
        ("\u{10400}x", "\u{10428}"),
        ("ǅ", "ǆ"),
        ("ǅ", "Ǆ"),
        ("ϴ", "θ"),
        ("ẞ", "ß"),
        ("ﬀ", "ff"),
        ("", ""),
        ("", "a"),
        ("a", "B"),
        ("_", "a"),
        ("Z", "_"),
    ];
    fixed.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// Pairs from characters that fold, their Rust case variants and some order-sensitive code points.
fn generated_pairs() -> Vec<(String, String)> {
    let mut pool: Vec<char> = Vec::new();
    let mut out = Vec::new();
    for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
        let rust_variants: Vec<char> = c.to_uppercase().chain(c.to_lowercase()).collect();
        if fold_char(c) != c || rust_variants.iter().any(|&v| v != c) {
            pool.push(c);
            out.push((c.to_string(), fold_char(c).to_string()));
            out.push((c.to_string(), c.to_uppercase().collect()));
            out.push((c.to_string(), c.to_lowercase().collect()));
        }
    }
    pool.extend(['_', '-', '/', '0', '\u{E000}', '\u{FFFF}', '\u{FF21}', '\u{10000}', '\u{1F600}', '\u{10FFFF}']);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        let len = rng.below(4);
        let a: Vec<char> = (0..len).map(|_| pool[rng.below(pool.len())]).collect();
        // Mostly near-misses of `a` (same string with some characters varied), some unrelated.
        let b: Vec<char> = if rng.below(4) == 0 {
            (0..rng.below(4)).map(|_| pool[rng.below(pool.len())]).collect()
        } else {
            a.iter()
                .map(|&c| match rng.below(4) {
                    0 => fold_char(c),
                    1 => c.to_uppercase().next().unwrap_or(c),
                    2 => pool[rng.below(pool.len())],
                    _ => c,
                })
                .collect()
        };
        out.push((a.into_iter().collect(), b.into_iter().collect()));
    }
    out
}

#[test]
fn comparisons_match_java() {
    let Some(classes) = compile("tests/CompareCheck.java") else { return };
    let pairs: Vec<(String, String)> = tricky_pairs().into_iter().chain(generated_pairs()).collect();
    let input: String = pairs.iter().map(|(a, b)| format!("{} {}\n", encode(a), encode(b))).collect();
    let output = run_java(&classes.0, "CompareCheck", &input);
    let answers: Vec<&str> = output.lines().collect();
    assert_eq!(answers.len(), pairs.len(), "one Java answer per pair");
    let mut failures = Vec::new();
    for ((a, b), answer) in pairs.iter().zip(answers) {
        let (sign, eq) = answer.split_once(' ').expect("Java answer is `sign eq`");
        let java_ord = match sign {
            "-1" => Ordering::Less,
            "0" => Ordering::Equal,
            "1" => Ordering::Greater,
            other => panic!("unexpected Java sign {other}"),
        };
        let java_eq = eq == "true";
        let ours = (cmp_ignore_case(a, b), eq_ignore_case(a, b), fold_key(a).cmp(&fold_key(b)));
        if ours != (java_ord, java_eq, java_ord) {
            failures.push(format!("{a:?} vs {b:?}: Java ({java_ord:?}, {java_eq}), ours {ours:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} pairs differ from Java:\n{}",
        failures.len(),
        pairs.len(),
        failures.join("\n")
    );
}
