//! Ordered upgrades: the pure planner that decides, from the spec and the workloads that run
//! now, which version and image every workload gets in this reconcile ([`Versions`], the input
//! of [`crate::build::build`]).
//!
//! The order, after Mattermost (migrate first) and Strimzi/RabbitMQ (one ordered roll):
//!
//! 1. the managed dependencies, one at a time, each until its StatefulSet is fully rolled and
//!    ready;
//! 2. the migration Job (`chat-server migrate` of the *new* image), which must succeed;
//! 3. the components in [`Component::ALL`] order (message, group, auth, chat, gateway), each
//!    until its Deployment's rollout is complete and available. Components not reached yet
//!    keep the version they run.
//!
//! The planner is level-triggered: every reconcile walks the sequence from the start against
//! what runs, so the first workload that is not at its target, or not rolled yet, is the step
//! in progress. Only the step's start time and a halt are remembered, in `status.upgrade`.
//! A first install is the same walk with nothing running: the dependencies are created
//! together, the migration runs once they are ready, then every component is created at once.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::build::{APP_CONTAINER, VERSION_LABEL};
use crate::config::{Component, DependencyKind, DependencyMode, ValidatedConfig};
use crate::crd::{ChatDeploymentStatus, UpgradeHalt, UpgradeStatus, FORCE_UPGRADE_ANNOTATION};

/// The version label and image of a component's pod template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub version: String,
    pub image: String,
}

impl Release {
    /// What the spec asks for.
    pub fn target(cfg: &ValidatedConfig) -> Self {
        Self {
            version: cfg.version.clone(),
            image: cfg.image.clone(),
        }
    }
}

/// What each workload runs in this reconcile: the input that lets the build step stay a pure
/// function while an upgrade holds components and dependencies back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Versions {
    /// Version and image of each component. A component not listed is not built (yet): on a
    /// first install the components are created only after the migration succeeded.
    pub components: BTreeMap<Component, Release>,
    /// Image of each managed dependency; one not listed runs the image of the spec.
    pub dependencies: BTreeMap<DependencyKind, String>,
    /// Whether the migration Job of the spec's image is desired.
    pub migration: bool,
}

impl Versions {
    /// Every component at the spec's version and no migration Job: the steady state.
    pub fn target(cfg: &ValidatedConfig) -> Self {
        Self {
            components: cfg
                .components
                .iter()
                .map(|c| (c.component, Release::target(cfg)))
                .collect(),
            dependencies: BTreeMap::new(),
            migration: false,
        }
    }

    /// What runs now, unchanged: nothing moves. Absent components stay absent. The migration
    /// Job is kept when `migration` asks and it still exists (for its logs); one deleted by hand
    /// is not created again.
    fn frozen(cfg: &ValidatedConfig, observed: &Observed, migration: bool) -> Self {
        Self {
            components: observed
                .deployments
                .iter()
                .map(|(c, d)| {
                    (
                        *c,
                        deployment_release(d).unwrap_or_else(|| Release::target(cfg)),
                    )
                })
                .collect(),
            dependencies: observed
                .stateful_sets
                .iter()
                .filter_map(|(k, s)| Some((*k, stateful_set_image(s)?)))
                .collect(),
            migration: migration && observed.migration.is_some(),
        }
    }
}

/// The workloads as the API server has them before this reconcile applies anything.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub deployments: BTreeMap<Component, Deployment>,
    pub stateful_sets: BTreeMap<DependencyKind, StatefulSet>,
    /// The migration Job of the spec's image, if it exists.
    pub migration: Option<Job>,
}

/// One step of the sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Dependency(DependencyKind),
    Migration,
    Component(Component),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dependency(kind) => write!(f, "dependency/{}", kind.name()),
            Self::Migration => f.write_str("migration"),
            Self::Component(component) => write!(f, "component/{}", component.role()),
        }
    }
}

/// Where the sequence stands after this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Every workload runs what the spec asks for (and has finished rolling).
    Steady,
    /// `spec.stopped`: everything scaled to zero, nothing rolls.
    Stopped,
    /// `step` is in progress; `description` says what it waits for.
    Upgrading { step: Step, description: String },
    /// The sequence stopped (`reason` is `StepTimedOut` or `MigrationFailed`) until the spec
    /// changes.
    Halted { reason: String, message: String },
    /// The version change skips a minor version and is not forced.
    Refused(String),
}

/// An event the reconciler publishes on the ChatDeployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

impl PlanEvent {
    fn normal(reason: &'static str, message: String) -> Self {
        Self {
            warning: false,
            reason,
            message,
        }
    }
}

/// What to do in this reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The input of the build step.
    pub versions: Versions,
    pub state: State,
    /// `status.upgrade` to write.
    pub upgrade: Option<UpgradeStatus>,
    /// `status.migratedImage` to write.
    pub migrated_image: Option<String>,
    /// Events marking the steps, in order.
    pub events: Vec<PlanEvent>,
}

/// Everything the planner looks at.
pub struct PlanInput<'a> {
    pub cfg: &'a ValidatedConfig,
    pub observed: &'a Observed,
    /// The status as last written.
    pub previous: Option<&'a ChatDeploymentStatus>,
    /// `metadata.generation` of the ChatDeployment.
    pub generation: Option<i64>,
    /// Name of the migration Job of the spec's image.
    pub migration_job: &'a str,
    pub now: DateTime<Utc>,
}

/// Decide which version every workload runs now, and where the upgrade stands.
pub fn plan(input: &PlanInput) -> Plan {
    let cfg = input.cfg;
    let observed = input.observed;
    let previous = input.previous.and_then(|s| s.upgrade.as_ref());
    let mut result = Plan {
        versions: Versions::target(cfg),
        state: State::Steady,
        upgrade: None,
        migrated_image: input.previous.and_then(|s| s.migrated_image.clone()),
        events: Vec::new(),
    };

    if cfg.stopped {
        // Hold every image where it is; the sequence starts over when started again.
        result.versions = Versions::frozen(cfg, observed, false);
        result.state = State::Stopped;
        return result;
    }
    if previous.is_none() && !needs_work(cfg, observed) {
        return result;
    }
    if let Some(message) = refusal(cfg, observed) {
        result.versions = Versions::frozen(cfg, observed, false);
        result.state = State::Refused(message);
        return result;
    }
    if let Some(p) = previous {
        if let Some(halt) = p
            .halted
            .as_ref()
            .filter(|h| h.generation == input.generation)
        {
            result.versions =
                Versions::frozen(cfg, observed, p.step == Step::Migration.to_string());
            result.state = State::Halted {
                reason: halt.reason.clone(),
                message: halt.message.clone(),
            };
            result.upgrade = Some(p.clone());
            return result;
        }
    }
    let resumed = previous.is_some_and(|p| p.halted.is_some());

    let walk = walk(cfg, observed, result.migrated_image.as_deref());
    result.versions = walk.versions;
    if walk.migration_succeeded {
        result.migrated_image = Some(cfg.image.clone());
        result.events.push(PlanEvent::normal(
            "MigrationSucceeded",
            format!("migration Job {} succeeded", input.migration_job),
        ));
    }
    let Some(step) = walk.step else {
        if previous.is_some() {
            result.events.push(PlanEvent::normal(
                "UpgradeCompleted",
                format!("every component runs version {}", cfg.version),
            ));
        }
        return result;
    };

    let step_name = step.to_string();
    let continuing = previous.filter(|p| !resumed && p.step == step_name && p.image == cfg.image);
    let started_at = continuing.map_or_else(|| Time(input.now), |p| p.started_at.clone());
    let description = describe(cfg, step, input.migration_job);
    if previous.is_none_or(|p| p.image != cfg.image) {
        result.events.push(PlanEvent::normal(
            "UpgradeStarted",
            format!("rolling out version {} ({})", cfg.version, cfg.image),
        ));
    }
    if continuing.is_none() {
        result
            .events
            .push(PlanEvent::normal("UpgradeStep", description.clone()));
    }

    let halt = if walk.migration_failed && resumed {
        // Run it again: the failed Job is no longer wanted, so it is pruned now and created
        // again on the next reconcile.
        result.versions.migration = false;
        None
    } else if walk.migration_failed {
        Some((
            "MigrationFailed",
            format!(
                "migration Job {} failed (see its pods' logs); nothing further rolls until the \
                 spec changes",
                input.migration_job
            ),
        ))
    } else if (input.now - started_at.0).num_seconds() > cfg.step_timeout_seconds {
        Some((
            "StepTimedOut",
            format!(
                "step {step_name} did not finish within {}s: {description}; nothing further \
                 rolls until the spec changes",
                cfg.step_timeout_seconds
            ),
        ))
    } else {
        None
    };

    let mut upgrade = UpgradeStatus {
        step: step_name,
        started_at,
        image: cfg.image.clone(),
        halted: None,
    };
    match halt {
        Some((reason, message)) => {
            result.versions = Versions::frozen(cfg, observed, step == Step::Migration);
            result.events.push(PlanEvent {
                warning: true,
                reason: "UpgradeHalted",
                message: message.clone(),
            });
            upgrade.halted = Some(UpgradeHalt {
                reason: reason.into(),
                message: message.clone(),
                generation: input.generation,
            });
            result.state = State::Halted {
                reason: reason.into(),
                message,
            };
        }
        None => result.state = State::Upgrading { step, description },
    }
    result.upgrade = Some(upgrade);
    result
}

/// The outcome of walking the sequence once.
struct Walk {
    versions: Versions,
    /// The first step not finished; `None` when everything is.
    step: Option<Step>,
    migration_succeeded: bool,
    migration_failed: bool,
}

/// Walk the sequence: everything before the first unfinished step runs its target, that step
/// gets its target (applied now, or waited for), everything after keeps what it runs.
/// Missing workloads are created at their target without waiting, except components, which
/// wait for the migration.
fn walk(cfg: &ValidatedConfig, observed: &Observed, migrated_image: Option<&str>) -> Walk {
    let mut walk = Walk {
        versions: Versions::default(),
        step: None,
        migration_succeeded: false,
        migration_failed: false,
    };
    for dependency in &cfg.dependencies {
        let DependencyMode::Managed(managed) = &dependency.mode else {
            continue;
        };
        let kind = dependency.kind;
        let live = observed.stateful_sets.get(&kind);
        let image = match live.and_then(stateful_set_image) {
            Some(running) if walk.step.is_some() => running,
            _ => managed.image.clone(),
        };
        let done = live.is_some_and(|s| {
            stateful_set_image(s).as_deref() == Some(managed.image.as_str())
                && stateful_set_rolled(s)
        });
        if !done {
            walk.step.get_or_insert(Step::Dependency(kind));
        }
        walk.versions.dependencies.insert(kind, image);
    }

    let target = Release::target(cfg);
    if components_behind(cfg, observed) && migrated_image != Some(cfg.image.as_str()) {
        let state = observed.migration.as_ref().map(job_state);
        if state == Some(JobState::Succeeded) {
            walk.migration_succeeded = true;
        } else {
            // An earlier step waiting again (a dependency restarted) does not cancel a Job
            // already running.
            walk.versions.migration = walk.step.is_none() || state.is_some();
            if walk.step.is_none() {
                walk.step = Some(Step::Migration);
                walk.migration_failed = state == Some(JobState::Failed);
            }
        }
    }

    let may_create = walk.step.is_none();
    for component in cfg.components.iter().map(|c| c.component) {
        let Some(live) = observed.deployments.get(&component) else {
            if may_create {
                walk.versions.components.insert(component, target.clone());
                walk.step.get_or_insert(Step::Component(component));
            }
            continue;
        };
        let running = deployment_release(live);
        if walk.step.is_some() {
            let keep = running.unwrap_or_else(|| target.clone());
            walk.versions.components.insert(component, keep);
            continue;
        }
        if running.as_ref() != Some(&target) || !deployment_complete(live) {
            walk.step = Some(Step::Component(component));
        }
        walk.versions.components.insert(component, target.clone());
    }
    walk
}

/// Whether a component runs another version or image than the spec's, or is missing.
fn components_behind(cfg: &ValidatedConfig, observed: &Observed) -> bool {
    let target = Release::target(cfg);
    cfg.components.iter().any(|c| {
        observed
            .deployments
            .get(&c.component)
            .and_then(deployment_release)
            .as_ref()
            != Some(&target)
    })
}

/// Whether anything runs other than what the spec asks for, or is missing.
fn needs_work(cfg: &ValidatedConfig, observed: &Observed) -> bool {
    let dependency_behind = cfg.dependencies.iter().any(|d| match &d.mode {
        DependencyMode::Managed(managed) => {
            observed
                .stateful_sets
                .get(&d.kind)
                .and_then(stateful_set_image)
                .as_deref()
                != Some(managed.image.as_str())
        }
        DependencyMode::External { .. } => false,
    });
    components_behind(cfg, observed) || dependency_behind
}

/// What a step waits for, for events and the `Progressing` condition.
fn describe(cfg: &ValidatedConfig, step: Step, migration_job: &str) -> String {
    match step {
        Step::Dependency(kind) => {
            let image = match &cfg.dependency(kind).mode {
                DependencyMode::Managed(managed) => managed.image.as_str(),
                DependencyMode::External { .. } => "",
            };
            format!(
                "rolling StatefulSet {}-{} to {image}",
                cfg.name,
                kind.name()
            )
        }
        Step::Migration => format!("running migration Job {migration_job} ({})", cfg.image),
        Step::Component(component) => format!(
            "rolling Deployment {}-{} to version {}",
            cfg.name,
            component.role(),
            cfg.version
        ),
    }
}

/// Why the version change is refused: it skips a minor version (0.1.x → 0.3.0, or across a
/// major to anything but X.0), so the migrations of the versions between would never run.
/// Versions that are not `MAJOR.MINOR.PATCH[-pre]` (a branch name, a digest) are not checked,
/// nor is anything when the force-upgrade annotation is `"true"`.
fn refusal(cfg: &ValidatedConfig, observed: &Observed) -> Option<String> {
    if cfg.force_upgrade {
        return None;
    }
    let to = SemVer::parse(&cfg.version)?;
    let mut lowest: Option<(SemVer, String)> = None;
    for deployment in observed.deployments.values() {
        let version = deployment_release(deployment)?.version;
        let parsed = SemVer::parse(&version)?;
        if lowest
            .as_ref()
            .is_none_or(|(v, _)| parsed.minor_key() < v.minor_key())
        {
            lowest = Some((parsed, version));
        }
    }
    let (from, from_text) = lowest?;
    from.skips_a_minor_to(to).then(|| {
        format!(
            "version {} skips a minor version: components run {from_text}. Upgrade one minor \
             version at a time, or set the annotation {FORCE_UPGRADE_ANNOTATION}: \"true\"",
            cfg.version
        )
    })
}

/// `MAJOR.MINOR.PATCH` with an optional `-pre` and `+build` (both ignored when comparing) and
/// an optional leading `v`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemVer {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl SemVer {
    /// Parse `text`, or `None` when it is not a semantic version.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let text = text.split_once('+').map_or(text, |(version, _)| version);
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let identifier =
            |id: &str| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if pre.is_some_and(|pre| !pre.split('.').all(identifier)) {
            return None;
        }
        let number = |part: Option<&str>| -> Option<u64> {
            let part = part?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let mut parts = core.split('.');
        let version = Self {
            major: number(parts.next())?,
            minor: number(parts.next())?,
            patch: number(parts.next())?,
        };
        parts.next().is_none().then_some(version)
    }

    fn minor_key(self) -> (u64, u64) {
        (self.major, self.minor)
    }

    /// Whether going from `self` to `to` leaves out a minor version. Downgrades and patch
    /// changes never do; a new major must start at its `.0`.
    pub fn skips_a_minor_to(self, to: SemVer) -> bool {
        if to.minor_key() <= self.minor_key() {
            return false;
        }
        if to.major == self.major {
            to.minor > self.minor + 1
        } else {
            to.major > self.major + 1 || to.minor > 0
        }
    }
}

/// The version label and `chat-server` image of a Deployment's pod template.
pub fn deployment_release(deployment: &Deployment) -> Option<Release> {
    let template = &deployment.spec.as_ref()?.template;
    let image = template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == APP_CONTAINER)?
        .image
        .clone()?;
    let version = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get(VERSION_LABEL))
        .cloned()
        .unwrap_or_default();
    Some(Release { version, image })
}

/// The image of a StatefulSet's (only) container.
pub fn stateful_set_image(set: &StatefulSet) -> Option<String> {
    set.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()
}

/// Whether a Deployment's rollout is complete: the controller saw the latest spec, every
/// replica runs the latest template and is available, and no old pod is left.
pub fn deployment_complete(deployment: &Deployment) -> bool {
    let status = deployment.status.clone().unwrap_or_default();
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let observed =
        status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    observed
        && updated >= desired
        && status.available_replicas.unwrap_or(0) >= desired
        && status.replicas.unwrap_or(0) == updated
}

/// Whether a StatefulSet is fully rolled and ready: the controller saw the latest spec, every
/// replica is updated and ready, and the current revision is the update revision.
pub fn stateful_set_rolled(set: &StatefulSet) -> bool {
    let status = set.status.clone().unwrap_or_default();
    let desired = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    status.observed_generation.unwrap_or(0) >= set.metadata.generation.unwrap_or(0)
        && status.replicas == desired
        && status.ready_replicas.unwrap_or(0) == desired
        && status.updated_replicas.unwrap_or(0) == desired
        && status.current_revision == status.update_revision
}

/// Where a Job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

/// A Job's state from its conditions (`Complete`, `Failed`) and succeeded count.
pub fn job_state(job: &Job) -> JobState {
    let status = job.status.as_ref();
    let condition = |type_: &str| {
        status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
    };
    if condition("Complete") || status.and_then(|s| s.succeeded).unwrap_or(0) > 0 {
        JobState::Succeeded
    } else if condition("Failed") {
        JobState::Failed
    } else {
        JobState::Running
    }
}

#[cfg(test)]
mod tests;
