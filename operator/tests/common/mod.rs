//! Helpers shared by the operator's integration tests.
#![allow(dead_code)]

pub mod defaults;
pub mod helm;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The crate's directory (`operator/`), as the test runner gives it when the test runs: a test
/// binary reused from a build cache shared by two checkouts would otherwise read the files of the
/// checkout that built it.
pub fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// `kubernetes-validate` from the tools venv (`$CHAT_TOOLS_VENV`, default
/// `~/.cache/scalable-chat/venv`). Fails, never skips, when it is missing: CI installs it.
pub fn kubernetes_validate() -> PathBuf {
    let venv = std::env::var_os("CHAT_TOOLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/scalable-chat/venv")
        });
    let tool = venv.join("bin/kubernetes-validate");
    assert!(
        tool.exists(),
        "kubernetes-validate is not installed at {}; install it with `eval \"$(scripts/infra.sh tools)\"` \
         (or set CHAT_TOOLS_VENV to a venv that has it)",
        tool.display()
    );
    tool
}

/// Validate every document of `file` against the Kubernetes 1.30 schemas, rejecting unknown
/// fields. Panics with the tool's report when anything fails.
pub fn validate_manifests(file: &Path) {
    let output = Command::new(kubernetes_validate())
        .args(["--strict", "-k", "1.30.0", "--quiet"])
        .arg(file)
        .output()
        .expect("kubernetes-validate runs");
    assert!(
        output.status.success(),
        "{} does not validate against the Kubernetes 1.30 schemas:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Compare `actual` with the file at `path`; with `UPDATE_GOLDEN=1` write it instead.
/// On a mismatch the failure shows the first differing lines and how to accept the change.
pub fn assert_golden(path: &Path, actual: &str, regenerate: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, actual).expect("golden file is writable");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected == actual {
        return;
    }
    panic!(
        "{} is out of date.\n{}\nIf the change is intended, regenerate it with:\n  {regenerate}\nand review the diff.",
        path.display(),
        line_diff(&expected, actual)
    );
}

/// A short diff: the region between the common prefix and the common suffix, with line
/// numbers, enough to see a change without an external diff tool.
fn line_diff(expected: &str, actual: &str) -> String {
    const MOST: usize = 40;
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let prefix = e.iter().zip(&a).take_while(|(x, y)| x == y).count();
    let suffix = e[prefix..]
        .iter()
        .rev()
        .zip(a[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let mut out = String::new();
    for (sign, lines) in [
        ("-", &e[prefix..e.len() - suffix]),
        ("+", &a[prefix..a.len() - suffix]),
    ] {
        for (i, line) in lines.iter().enumerate().take(MOST) {
            out.push_str(&format!("{:>5} {sign} {line}\n", prefix + i + 1));
        }
        if lines.len() > MOST {
            out.push_str(&format!(
                "      {sign} … {} more lines\n",
                lines.len() - MOST
            ));
        }
    }
    out
}
