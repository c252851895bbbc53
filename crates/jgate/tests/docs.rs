//! docs/tools.md is generated from the catalog; this fails when it is stale.

#[test]
fn tools_doc_is_current() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jgate"))
        .args(["docs", "tools"])
        .output()
        .expect("run jgate docs tools");
    assert!(out.status.success());
    let generated = String::from_utf8_lossy(&out.stdout);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/tools.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/tools.md is stale: regenerate it with `cargo run -q -- docs tools > docs/tools.md` and commit it"
    );
}
