//! The operator's Helm chart rendered by Helm's own engine (`helm-python-sdk`) through
//! `tests/chart_tools.py`, for the chart tests and the control-plane suite, which installs
//! exactly what a user's `helm install` would.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    super::crate_dir().join("../charts/chat-operator")
}

/// The tools venv's Python, checked once per test process to have every module the tests use.
pub fn python() -> PathBuf {
    let venv = super::kubernetes_validate()
        .parent()
        .and_then(Path::parent)
        .expect("the venv holds bin/kubernetes-validate")
        .to_path_buf();
    let python = venv.join("bin/python");
    let probe = Command::new(&python)
        .args(["-c", "import helm_python, jsonschema, yaml"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        probe.status.success(),
        "{} lacks helm-python-sdk or jsonschema; install them with \
         `eval \"$(scripts/infra.sh tools)\"`:\n{}",
        python.display(),
        String::from_utf8_lossy(&probe.stderr)
    );
    python
}

/// Run a `chart_tools.py` command: its stdout, or its stderr when it fails.
pub fn chart_tools<I, S>(args: I) -> Result<String, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let output = Command::new(python())
        .arg(super::crate_dir().join("tests/chart_tools.py"))
        .args(args)
        .output()
        .expect("chart_tools.py runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stderr}{stdout}"))
    }
}

/// A scratch directory for this test process.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chat-chart-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What `helm template` would produce: each template's text, and the chart's `crds/` files
/// (none: the CRD is a template, so `helm upgrade` upgrades it).
pub struct Rendered {
    pub templates: BTreeMap<String, String>,
    pub crds: BTreeMap<String, String>,
}

impl Rendered {
    /// The YAML documents of every template (NOTES.txt is not a manifest), empty ones dropped,
    /// in the order Helm installs them.
    pub fn documents(&self) -> Vec<(Value, String)> {
        let mut docs: Vec<(Value, String)> = self
            .templates
            .iter()
            .filter(|(path, _)| path.ends_with(".yaml"))
            .flat_map(|(_, text)| text.split("\n---\n").map(str::to_owned))
            .map(|doc| doc.trim_matches('\n').to_owned())
            .filter_map(|doc| {
                let value: Value = serde_yaml::from_str(&doc).ok()?;
                (!value.is_null()).then_some((value, doc))
            })
            .collect();
        docs.sort_by_key(|(value, _)| install_order(value["kind"].as_str().unwrap_or_default()));
        docs
    }

    pub fn objects(&self) -> Vec<Value> {
        self.documents().into_iter().map(|(v, _)| v).collect()
    }

    pub fn manifests(&self) -> String {
        self.documents()
            .into_iter()
            .map(|(_, text)| text + "\n")
            .collect::<Vec<_>>()
            .join("---\n")
    }

    pub fn notes(&self) -> &str {
        self.templates
            .iter()
            .find(|(path, _)| path.ends_with("NOTES.txt"))
            .map(|(_, text)| text.as_str())
            .unwrap_or_default()
    }

    pub fn kinds(&self) -> Vec<String> {
        self.objects()
            .iter()
            .map(|o| o["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub fn one(&self, kind: &str) -> Value {
        let mut found = self.objects().into_iter().filter(|o| o["kind"] == kind);
        let object = found.next().unwrap_or_else(|| panic!("no {kind} rendered"));
        assert!(found.next().is_none(), "more than one {kind} rendered");
        object
    }
}

/// Helm's install order, for the kinds this chart renders.
pub fn install_order(kind: &str) -> usize {
    const ORDER: [&str; 10] = [
        "Namespace",
        "ServiceAccount",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "ServiceMonitor",
    ];
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}

/// Render the chart as release `release` in `namespace`, with a values file when given.
pub fn try_render(
    release: &str,
    values: Option<&Path>,
    namespace: &str,
) -> Result<Rendered, String> {
    let chart = chart_dir();
    let mut args: Vec<&OsStr> = vec![
        "render".as_ref(),
        chart.as_os_str(),
        release.as_ref(),
        namespace.as_ref(),
    ];
    if let Some(values) = values {
        args.push(values.as_os_str());
    }
    let json: Value = serde_json::from_str(&chart_tools(args)?).expect("render prints JSON");
    let strings = |key: &str| -> BTreeMap<String, String> {
        serde_json::from_value(json[key].clone()).expect("a map of strings")
    };
    Ok(Rendered {
        templates: strings("templates"),
        crds: strings("crds"),
    })
}
