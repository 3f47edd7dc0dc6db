//! The reconciler: one `reconcile()` entry (controller-rs shape) running the pipeline
//! validate → dereference → create missing secrets (rotate the JWT key when asked) →
//! observe the workloads → plan the upgrade → build → apply → prune → status.
//!
//! A steady-state reconcile changes nothing. Generated Secrets are only ever created (the JWT
//! key Secret is rewritten only when a rotation is asked for or an old key retires); the
//! status is written only when it differs from the stored one (condition transition times
//! are kept while a condition's status stays the same); and the owned objects are sent with
//! server-side apply only when the cached live object differs from the intent (`drift`).
//! Owned objects are read from the watches' cache (`cache`), so a steady-state reconcile
//! reads only the Secrets from the API server. Failures back off exponentially per
//! ChatDeployment (5 s doubling to 5 min), and bursts of watch events are debounced.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource as _, ResourceExt};
use serde_json::json;
use tracing::{debug, info, instrument, warn};

use crate::build::{
    build, data_selector, dependency_data_selector, migration_job, owned_selector, prunable_kinds,
    Resource, FIELD_MANAGER,
};
use crate::cache::OwnedCache;
use crate::config::{validate, Component, DependencyKind, DependencyMode, ValidatedConfig};
use crate::crd::{ChatDeployment, ChatDeploymentStatus, DeletionPolicy, JwtKeyStatus};
use crate::drift;
use crate::metrics::Metrics;
use crate::secrets::{
    generated_secrets, jwt_keys, maintain_jwt_keys, SecretDigests, SecretGenerator, SystemGenerator,
};
use crate::status::{self, Workloads, DEGRADED, READY};
use crate::storage;
use crate::upgrade::{self, Observed, PlanInput, State};

/// Requeue while a rollout is under way (watches on Deployments, StatefulSets and Jobs
/// usually trigger earlier).
const REQUEUE_PROGRESSING: Duration = Duration::from_secs(30);
/// Requeue when everything is ready: re-reads user Secrets, whose changes are not watched.
const REQUEUE_READY: Duration = Duration::from_secs(300);
/// Requeue after an error or while a referenced Secret is missing.
const REQUEUE_ERROR: Duration = Duration::from_secs(30);

/// Finalizer on a ChatDeployment whose `deletionPolicy` is `Delete`: the data outlives owner
/// references (claims are not owned), so the operator deletes it before letting go.
pub const FINALIZER: &str = "chat.scalablechat.dev/delete-data";

/// Why a reconciliation failed. Messages never contain secret values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// The API server's own message is left out: it could echo the Secret's content.
    #[error("{action} Secret {name} failed with HTTP {code} ({reason})")]
    WriteSecret {
        action: &'static str,
        name: String,
        code: u16,
        reason: String,
    },
    /// An object the stack needs exists under its name but is not this ChatDeployment's.
    #[error("{kind} {name} already exists and is not owned by this ChatDeployment; the operator does not take it over: delete or rename it")]
    NotOwned { kind: String, name: String },
    /// One object could not be applied; the others were still applied.
    #[error("applying {kind} {name} failed: {source}")]
    Apply {
        kind: String,
        name: String,
        source: kube::Error,
    },
    #[error("the ChatDeployment has no namespace")]
    MissingNamespace,
}

impl Error {
    /// Label of the failure metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::WriteSecret { .. } => "write_secret",
            Self::Apply { .. } => "apply",
            Self::NotOwned { .. } => "not_owned",
            Self::MissingNamespace => "missing_namespace",
        }
    }

    /// The condition reason and event reason that report it on the ChatDeployment.
    pub fn reason(&self) -> &'static str {
        let forbidden = |e: &kube::Error| matches!(e, kube::Error::Api(a) if a.code == 403);
        match self {
            Self::Kube(e) | Self::Apply { source: e, .. } if forbidden(e) => "Forbidden",
            Self::Kube(_) => "ApiError",
            Self::WriteSecret { code: 403, .. } => "Forbidden",
            Self::WriteSecret { .. } => "SecretWriteFailed",
            Self::Apply { .. } => "ApplyFailed",
            Self::NotOwned { .. } => "NameConflict",
            Self::MissingNamespace => "InvalidSpec",
        }
    }

    /// A failed Secret write, without the API server's message.
    fn secret(action: &'static str, name: String, error: kube::Error) -> Self {
        match error {
            kube::Error::Api(e) => Self::WriteSecret {
                action,
                name,
                code: e.code,
                reason: e.reason,
            },
            other => other.into(),
        }
    }
}

/// What every reconciliation shares.
pub struct Context {
    pub client: Client,
    /// Publishes Events on ChatDeployments.
    pub events: EventPublisher,
    pub metrics: Arc<Metrics>,
    /// Source of generated secret values; tests pass a deterministic one.
    pub generator: Mutex<Box<dyn SecretGenerator + Send>>,
    /// The current time, truncated to seconds as the API server stores it.
    pub clock: fn() -> DateTime<Utc>,
    /// The owned objects as the watches last saw them; an empty cache lists from the API.
    pub cache: OwnedCache,
    /// Reconciles failed in a row, per ChatDeployment (`namespace/name`): the back-off.
    pub failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context for the real cluster, reading owned objects from `cache`.
    pub fn new(client: Client, metrics: Arc<Metrics>, cache: OwnedCache) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            events: EventPublisher::new(client.clone(), reporter),
            client,
            metrics,
            generator: Mutex::new(Box::new(SystemGenerator::default())),
            clock: || Utc::now().trunc_subsecs(0),
            cache,
            failures: Mutex::default(),
        }
    }

    /// The objects of `kind` in `namespace` that `instance` owns: from the cache, or listed
    /// from the API server when the kind is not cached.
    async fn owned(
        &self,
        kind: &ApiResource,
        namespace: &str,
        instance: &str,
    ) -> Result<Vec<DynamicObject>, kube::Error> {
        if let Some(cached) = self.cache.owned(kind, namespace, instance).await {
            return Ok(cached);
        }
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, kind);
        Ok(api
            .list(&ListParams::default().labels(&owned_selector(instance)))
            .await?
            .items)
    }

    /// Owned objects of a typed kind.
    async fn owned_typed<K>(&self, namespace: &str, instance: &str) -> Result<Vec<K>, kube::Error>
    where
        K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
    {
        let kind = ApiResource::erase::<K>(&());
        let objects = self.owned(&kind, namespace, instance).await?;
        Ok(objects
            .into_iter()
            .filter_map(|o| o.try_parse::<K>().ok())
            .collect())
    }
}

/// How long to wait after the `failures`-th failure in a row: 5 s, doubling up to 5 minutes
/// (client-go's per-item exponential back-off).
pub fn backoff(failures: u32) -> Duration {
    let doubled = 5u64.saturating_mul(1 << failures.saturating_sub(1).min(10));
    Duration::from_secs(doubled.min(300))
}

/// Reconcile one ChatDeployment.
#[instrument(skip(cd, ctx), fields(name = %cd.name_any(), namespace = cd.namespace().unwrap_or_default()))]
pub async fn reconcile(cd: Arc<ChatDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    let result = reconcile_stack(&cd, &ctx).await;
    match &result {
        Err(error) => report_failure(&ctx, &cd, error).await,
        Ok(_) => {
            ctx.failures.lock().unwrap().remove(&key_of(&cd));
        }
    }
    result
}

/// Say why a reconcile failed where users look: the `Degraded` condition and a Warning event.
/// Best effort: when the status cannot be written either (the same RBAC gap, an API server
/// away), the log and the failure metric still say it.
async fn report_failure(ctx: &Context, cd: &ChatDeployment, error: &Error) {
    let Some(namespace) = cd.namespace() else {
        return;
    };
    let api: Api<ChatDeployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let message = error.to_string();
    let status = status::blocked(cd, error.reason(), message.clone(), (ctx.clock)());
    match write_status(&api, cd, &status).await {
        Ok(true) => publish(ctx, cd, EventType::Warning, error.reason(), &message).await,
        Ok(false) => {}
        Err(e) => warn!(error = %e, "could not report the failure in the status"),
    }
}

async fn reconcile_stack(cd: &ChatDeployment, ctx: &Context) -> Result<Action, Error> {
    let namespace = cd.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<ChatDeployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let now = (ctx.clock)();

    if cd.metadata.deletion_timestamp.is_some() {
        return finalize(ctx, cd, &api, &namespace).await;
    }

    if cd.spec.paused {
        let status = status::paused(cd, now);
        if write_status(&api, cd, &status).await? {
            publish(
                ctx,
                cd,
                EventType::Normal,
                "Paused",
                "reconciliation paused; no object is written",
            )
            .await;
        }
        return Ok(Action::await_change());
    }

    let cfg = match validate(cd) {
        Ok(cfg) => cfg,
        Err(invalid) => {
            warn!(error = %invalid, "invalid spec");
            let message = invalid.to_string();
            let status = status::blocked(cd, "InvalidSpec", message.clone(), now);
            if write_status(&api, cd, &status).await? {
                publish(ctx, cd, EventType::Warning, "InvalidSpec", &message).await;
            }
            return Ok(Action::await_change());
        }
    };
    sync_finalizer(&api, cd, cfg.deletion_policy == DeletionPolicy::Delete).await?;

    let secrets_api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let (mut digests, missing, jwt_secret) = dereference(&secrets_api, &cfg).await?;
    if !missing.is_empty() {
        let message = format!("waiting for Secret {}", missing.join(", "));
        warn!(%message, "referenced Secret missing");
        let status = status::blocked(cd, "SecretMissing", message.clone(), now);
        if write_status(&api, cd, &status).await? {
            publish(ctx, cd, EventType::Warning, "SecretMissing", &message).await;
        }
        return Ok(Action::requeue(REQUEUE_ERROR));
    }
    let lost = lost_passwords(&ctx.client, &namespace, &cfg, &digests).await?;
    if !lost.is_empty() {
        let message = lost.join("; ");
        warn!(%message, "generated Secret deleted while its data remains");
        let status = status::blocked(cd, "SecretLost", message.clone(), now);
        if write_status(&api, cd, &status).await? {
            publish(ctx, cd, EventType::Warning, "SecretLost", &message).await;
        }
        return Ok(Action::requeue(REQUEUE_ERROR));
    }
    let created_jwt =
        create_missing_secrets(ctx, cd, &secrets_api, &cfg, &mut digests, now).await?;
    let jwt_keys = maintain_jwt_key(
        ctx,
        cd,
        &secrets_api,
        &cfg,
        &mut digests,
        created_jwt.or(jwt_secret),
        now,
    )
    .await?;

    let job = migration_job(&cfg).name_any();
    let observed = observe(ctx, &namespace, &cfg, &job).await?;
    let plan = upgrade::plan(&PlanInput {
        cfg: &cfg,
        observed: &observed,
        previous: cd.status.as_ref(),
        generation: cd.metadata.generation,
        migration_job: &job,
        now,
    });

    let objects = build(&cfg, &digests, &plan.versions);
    let storage =
        storage::reconcile_storage(&ctx.client, &namespace, &cfg.name, &observed, &objects).await?;
    if !storage.expanded.is_empty() {
        let note = format!("grew PersistentVolumeClaim {}", storage.expanded.join(", "));
        publish(ctx, cd, EventType::Normal, "StorageExpanded", &note).await;
    }
    let applied = apply_all(ctx, &namespace, &cfg, &observed, &objects, &storage.hold).await?;
    prune(ctx, cd, &namespace, &objects).await?;

    let next_retirement = jwt_keys
        .iter()
        .filter_map(|k| k.retire_after.as_ref())
        .map(|t| (t.0 - now).to_std().unwrap_or_default() + Duration::from_secs(1))
        .min();
    let status = status::rolled_out(cd, &cfg, &applied, &plan, jwt_keys, now);
    let status = if storage.refused.is_empty() {
        status
    } else {
        let message = storage.refused.join("; ");
        warn!(%message, "storage change refused");
        status::also_degraded(cd, status, "StorageChangeRefused", message, now)
    };
    let ready = condition_is(&status, READY, "True");
    let wrote = write_status(&api, cd, &status).await?;
    for event in &plan.events {
        let type_ = if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, cd, type_, event.reason, &event.message).await;
    }
    if wrote {
        report_transitions(ctx, cd, &status).await;
    }
    let requeue = match &plan.state {
        State::Upgrading { .. } => REQUEUE_PROGRESSING,
        _ if ready => REQUEUE_READY,
        State::Halted { .. } | State::Refused(_) | State::Stopped => REQUEUE_READY,
        State::Steady => REQUEUE_PROGRESSING,
    };
    Ok(Action::requeue(
        next_retirement.map_or(requeue, |r| r.min(requeue)),
    ))
}

fn key_of(cd: &ChatDeployment) -> String {
    format!("{}/{}", cd.namespace().unwrap_or_default(), cd.name_any())
}

/// Count the failure and retry later: 5 s after the first, twice as long after each next
/// one in a row, at most 5 minutes, so a broken API server or webhook is not hammered.
pub fn error_policy(cd: Arc<ChatDeployment>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error.kind());
    let failures = {
        let mut failures = ctx.failures.lock().unwrap();
        let count = failures.entry(key_of(&cd)).or_default();
        *count = count.saturating_add(1);
        *count
    };
    let delay = backoff(failures);
    warn!(name = %cd.name_any(), %error, failures, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Read every Secret the stack uses: digests of their values, the user-supplied ones (or keys)
/// that do not exist, and the generated JWT key Secret. Generated Secrets that do not exist
/// yet are simply absent.
async fn dereference(
    secrets: &Api<Secret>,
    cfg: &ValidatedConfig,
) -> Result<(SecretDigests, Vec<String>, Option<Secret>), Error> {
    let mut digests = SecretDigests::default();
    let mut missing = Vec::new();
    let mut jwt = None;
    let keys = cfg.secret_keys();
    let names: BTreeSet<&str> = keys.iter().map(|k| k.secret.as_str()).collect();
    for name in names {
        if let Some(secret) = secrets.get_opt(name).await? {
            digests.insert_secret(&secret);
            if cfg.jwt_generated && name == cfg.jwt_secret {
                jwt = Some(secret);
            }
        }
    }
    for key in keys.iter().filter(|k| !k.generated) {
        if digests.get(&key.secret, &key.key).is_none() {
            missing.push(format!("{} (key {})", key.secret, key.key));
        }
    }
    Ok((digests, missing, jwt))
}

/// Generated dependency Secrets that are gone while the dependency's data is still there.
/// The data was written with the password (or, for Kafka, the cluster id) the Secret held;
/// generating a new value would lock every component out of it, so the operator refuses and
/// says how to recover. Before any data exists, a missing Secret is simply generated.
async fn lost_passwords(
    client: &Client,
    namespace: &str,
    cfg: &ValidatedConfig,
    digests: &SecretDigests,
) -> Result<Vec<String>, Error> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let mut lost = Vec::new();
    for dependency in &cfg.dependencies {
        let DependencyMode::Managed(managed) = &dependency.mode else {
            continue;
        };
        let credential = &managed.credential;
        if !credential.generated || digests.has_secret(&credential.secret) {
            continue;
        }
        let selector = dependency_data_selector(&cfg.name, dependency.kind);
        let data = claims
            .list_metadata(&ListParams::default().labels(&selector))
            .await?;
        if let Some(claim) = data.items.first() {
            lost.push(format!(
                "generated Secret {secret} was deleted, but the data of {kind} \
                 (PersistentVolumeClaim {claim}) uses the value it held; a new one would lock \
                 the components out. Restore Secret {secret} (key {key}) from a backup, or \
                 delete the claim to start {kind} empty",
                secret = credential.secret,
                kind = dependency.kind.name(),
                claim = claim.name_any(),
                key = credential.key,
            ));
        }
    }
    Ok(lost)
}

/// Create the generated Secrets that do not exist. Existing ones are never patched. Returns
/// the generated JWT key Secret when it was created now.
async fn create_missing_secrets(
    ctx: &Context,
    cd: &ChatDeployment,
    secrets: &Api<Secret>,
    cfg: &ValidatedConfig,
    digests: &mut SecretDigests,
    now: DateTime<Utc>,
) -> Result<Option<Secret>, Error> {
    let absent: Vec<String> = cfg
        .generated_secret_names()
        .into_iter()
        .filter(|name| !digests.has_secret(name))
        .collect();
    if absent.is_empty() {
        return Ok(None);
    }
    let generated = {
        let mut generator = ctx
            .generator
            .lock()
            .expect("generator lock is not poisoned");
        generated_secrets(cfg, generator.as_mut(), now)
    };
    let mut jwt = None;
    for secret in generated {
        let name = secret.name_any();
        if !absent.contains(&name) {
            continue;
        }
        let stored = match secrets.create(&PostParams::default(), &secret).await {
            Ok(created) => {
                info!(secret = %name, "generated Secret created");
                publish(
                    ctx,
                    cd,
                    EventType::Normal,
                    "SecretCreated",
                    &format!("generated Secret {name}"),
                )
                .await;
                // As the server has it (with its resourceVersion), like the one read later.
                created
            }
            // Another writer created it since we looked: use theirs, never overwrite.
            Err(kube::Error::Api(e)) if e.code == 409 => secrets.get(&name).await?,
            Err(e) => return Err(Error::secret("creating", name, e)),
        };
        digests.insert_secret(&stored);
        if name == cfg.jwt_secret {
            jwt = Some(stored);
        }
    }
    Ok(jwt)
}

/// Rotate the generated JWT key when the annotation asks for it, and drop retired keys from
/// the bundle (the one exception to "never patched"). Returns the keys for the status.
async fn maintain_jwt_key(
    ctx: &Context,
    cd: &ChatDeployment,
    secrets: &Api<Secret>,
    cfg: &ValidatedConfig,
    digests: &mut SecretDigests,
    secret: Option<Secret>,
    now: DateTime<Utc>,
) -> Result<Vec<JwtKeyStatus>, Error> {
    let Some(secret) = secret.filter(|_| cfg.jwt_generated) else {
        return Ok(Vec::new());
    };
    // Tokens signed with the old key expire one access-token lifetime after the last auth
    // pod stopped signing with it; its rollout takes at most one upgrade step.
    let keep = chrono::Duration::seconds(cfg.access_token_ttl_seconds + cfg.step_timeout_seconds);
    let update = {
        let mut generator = ctx
            .generator
            .lock()
            .expect("generator lock is not poisoned");
        maintain_jwt_keys(
            &secret,
            cfg.jwt_rotation.as_deref(),
            generator.as_mut(),
            now,
            keep,
        )
    };
    let Some(update) = update else {
        return Ok(jwt_keys(&secret));
    };
    let name = cfg.jwt_secret.clone();
    secrets
        .replace(&name, &PostParams::default(), &update.secret)
        .await
        .map_err(|e| Error::secret("updating", name.clone(), e))?;
    digests.insert_secret(&update.secret);
    if let Some(kid) = &update.rotated {
        info!(secret = %name, %kid, "JWT signing key rotated");
        let note = format!(
            "new JWT signing key {kid} in Secret {name}; the previous keys keep verifying for {}s",
            keep.num_seconds()
        );
        publish(ctx, cd, EventType::Normal, "JwtKeyRotated", &note).await;
    }
    if !update.retired.is_empty() {
        let note = format!(
            "retired JWT key(s) {} from Secret {name}",
            update.retired.join(", ")
        );
        publish(ctx, cd, EventType::Normal, "JwtKeyRetired", &note).await;
    }
    Ok(jwt_keys(&update.secret))
}

/// The workloads this ChatDeployment owns as they are now, and its migration Job `job`.
async fn observe(
    ctx: &Context,
    namespace: &str,
    cfg: &ValidatedConfig,
    job: &str,
) -> Result<Observed, Error> {
    let component_of = |meta: &kube::api::ObjectMeta| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/component"))
            .cloned()
            .unwrap_or_default()
    };
    let mut observed = Observed::default();
    for deployment in ctx.owned_typed::<Deployment>(namespace, &cfg.name).await? {
        let label = component_of(&deployment.metadata);
        if let Some(c) = Component::ALL.into_iter().find(|c| c.role() == label) {
            observed.deployments.insert(c, deployment);
        }
    }
    for set in ctx.owned_typed::<StatefulSet>(namespace, &cfg.name).await? {
        let label = component_of(&set.metadata);
        if let Some(k) = DependencyKind::ALL.into_iter().find(|k| k.name() == label) {
            observed.stateful_sets.insert(k, set);
        }
    }
    observed.migration = ctx
        .owned_typed::<Job>(namespace, &cfg.name)
        .await?
        .into_iter()
        .find(|j| j.metadata.name.as_deref() == Some(job));
    Ok(observed)
}

/// Server-side apply every object in order; returns the workloads as the server has them.
async fn apply_all(
    ctx: &Context,
    namespace: &str,
    cfg: &ValidatedConfig,
    observed: &Observed,
    objects: &[Resource],
    hold: &BTreeSet<String>,
) -> Result<Workloads, Error> {
    let client = &ctx.client;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut workloads = Workloads::default();
    let mut first_error = None;
    let mut live = LiveObjects::default();
    for object in objects {
        if matches!(object, Resource::StatefulSet(_)) && hold.contains(object.name()) {
            continue; // see `storage`
        }
        let resource = object.api_resource();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let desired = drift::with_intent(object.to_json());
        let failed = |source: kube::Error| Error::Apply {
            kind: resource.kind.clone(),
            name: object.name().to_owned(),
            source,
        };
        let applied = async {
            // Nothing to send when the live object already is what we want: a reconcile
            // with nothing to do writes nothing (see `drift`).
            let current = live
                .get(ctx, namespace, &resource, &cfg.name, object.name())
                .await
                .map_err(failed)?;
            match current {
                Some(current) => match drift::difference(&current, &desired) {
                    None => {
                        return serde_json::from_value(current)
                            .map_err(|e| failed(kube::Error::SerdeError(e)))
                    }
                    Some(path) => {
                        debug!(kind = %resource.kind, name = object.name(), %path, "differs")
                    }
                },
                // Not among ours: a forced apply would take over an object someone else made.
                None => refuse_foreign(&api, &resource, object.name(), &cfg.owner.uid).await?,
            }
            if let Resource::Deployment(deployment) = object {
                hand_replicas_over(client, namespace, cfg, observed, deployment)
                    .await
                    .map_err(failed)?;
            }
            debug!(kind = %resource.kind, name = object.name(), "applying");
            let mut applied = api
                .patch(object.name(), &params, &Patch::Apply(&desired))
                .await
                .map_err(failed)?;
            if matches!(object, Resource::Deployment(_)) {
                raise_to_autoscaler_minimum(client, namespace, cfg, &mut applied)
                    .await
                    .map_err(failed)?;
            }
            ctx.cache
                .wrote(&resource, namespace, object.name(), Some(applied.clone()));
            Ok(applied)
        }
        .await;
        // One object's failure must not block the others (a later spec change could never
        // reach them): apply the rest, then report the first failure.
        let applied: DynamicObject = match applied {
            Ok(applied) => applied,
            Err(error) => {
                warn!(kind = %resource.kind, name = object.name(), %error, "apply failed");
                first_error.get_or_insert(error);
                continue;
            }
        };
        let component = applied
            .labels()
            .get("app.kubernetes.io/component")
            .cloned()
            .unwrap_or_default();
        match object {
            Resource::Deployment(_) => {
                if let (Some(c), Ok(d)) = (
                    Component::ALL.into_iter().find(|c| c.role() == component),
                    applied.try_parse::<Deployment>(),
                ) {
                    workloads.deployments.push((c, d));
                }
            }
            Resource::StatefulSet(_) => {
                if let (Some(k), Ok(s)) = (
                    DependencyKind::ALL
                        .into_iter()
                        .find(|k| k.name() == component),
                    applied.try_parse::<StatefulSet>(),
                ) {
                    workloads.stateful_sets.push((k, s));
                }
            }
            _ => {}
        }
    }
    first_error.map_or(Ok(workloads), Err)
}

/// The objects this ChatDeployment owns as they are now, read once per kind (from the cache,
/// or listed by the owned labels) the first time a kind is needed in a reconcile.
#[derive(Default)]
struct LiveObjects {
    by_kind: HashMap<String, HashMap<String, serde_json::Value>>,
}

impl LiveObjects {
    async fn get(
        &mut self,
        ctx: &Context,
        namespace: &str,
        resource: &ApiResource,
        instance: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>, kube::Error> {
        if !self.by_kind.contains_key(&resource.kind) {
            let objects = ctx
                .owned(resource, namespace, instance)
                .await?
                .into_iter()
                .filter_map(|o| Some((o.name_any(), serde_json::to_value(o).ok()?)))
                .collect();
            self.by_kind.insert(resource.kind.clone(), objects);
        }
        Ok(self.by_kind[&resource.kind].get(name).cloned())
    }
}

/// Refuse to apply over an object of the same name that this ChatDeployment does not own
/// (a user's Service called `chat-gateway`, another stack's object): server-side apply with
/// `force` would silently take it over.
async fn refuse_foreign(
    api: &Api<DynamicObject>,
    resource: &ApiResource,
    name: &str,
    owner_uid: &str,
) -> Result<(), Error> {
    let existing = api.get_opt(name).await.map_err(|source| Error::Apply {
        kind: resource.kind.clone(),
        name: name.to_owned(),
        source,
    })?;
    match existing {
        Some(existing)
            if !existing
                .owner_references()
                .iter()
                .any(|o| o.uid == owner_uid) =>
        {
            Err(Error::NotOwned {
                kind: resource.kind.clone(),
                name: name.to_owned(),
            })
        }
        _ => Ok(()),
    }
}

/// Field manager that takes `spec.replicas` off our hands when an autoscaler takes over.
const HANDOVER_MANAGER: &str = "chat-operator-replicas-handover";

/// When a component switches to autoscaling, its Deployment is applied without `replicas`.
/// If this field manager still owned the field, SSA would remove it and Kubernetes would
/// default it to 1, scaling the component down before the HPA acts. So first apply the live
/// value under a separate manager that never applies again (the handover recipe of the
/// server-side-apply docs); the HPA then changes it freely. The value handed over is at least
/// the autoscaler's minimum: coming back from `stopped` the live value is 0, and an HPA never
/// scales a Deployment up from zero.
async fn hand_replicas_over(
    client: &Client,
    namespace: &str,
    cfg: &ValidatedConfig,
    observed: &Observed,
    desired: &Deployment,
) -> Result<(), kube::Error> {
    if desired.spec.as_ref().is_some_and(|s| s.replicas.is_some()) {
        return Ok(());
    }
    let Some((live, component)) = cfg.components.iter().find_map(|c| {
        let live = observed.deployments.get(&c.component)?;
        (live.name_any() == desired.name_any()).then_some((live, c))
    }) else {
        return Ok(());
    };
    let we_own_replicas = live.managed_fields().iter().any(|entry| {
        entry.manager.as_deref() == Some(FIELD_MANAGER)
            && entry.operation.as_deref() == Some("Apply")
            && entry
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.pointer("/f:spec/f:replicas"))
                .is_some()
    });
    let Some(live_replicas) = live.spec.as_ref().and_then(|s| s.replicas) else {
        return Ok(());
    };
    if we_own_replicas {
        let replicas = live_replicas.max(component.scaling.min_replicas());
        hand_over(client, namespace, &live.name_any(), replicas).await?;
    }
    Ok(())
}

/// After applying an autoscaled Deployment: a new one starts at Kubernetes' default of one
/// pod, so raise it to the autoscaler's minimum at once rather than at the autoscaler's next
/// sync. Never lowers it.
async fn raise_to_autoscaler_minimum(
    client: &Client,
    namespace: &str,
    cfg: &ValidatedConfig,
    applied: &mut DynamicObject,
) -> Result<(), kube::Error> {
    let Some(min) = cfg.components.iter().find_map(|c| {
        let autoscaled = matches!(c.scaling, crate::config::Scaling::Auto { .. });
        (autoscaled && format!("{}-{}", cfg.name, c.component.role()) == applied.name_any())
            .then(|| c.scaling.min_replicas())
    }) else {
        return Ok(());
    };
    let live = applied.data["spec"]["replicas"].as_i64().unwrap_or(1);
    if live > 0 && live < i64::from(min) {
        hand_over(client, namespace, &applied.name_any(), min).await?;
        applied.data["spec"]["replicas"] = json!(min);
    }
    Ok(())
}

/// Apply `replicas` under the hand-over manager, taking the field from the operator's own
/// manager (`force`: without it the API server refuses with a conflict whenever the value
/// differs from the one the operator applied, e.g. 0 while stopped).
async fn hand_over(
    client: &Client,
    namespace: &str,
    name: &str,
    replicas: i32,
) -> Result<(), kube::Error> {
    let patch = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    });
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    api.patch(
        name,
        &PatchParams::apply(HANDOVER_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    info!(deployment = %name, replicas, "handed replicas over to the autoscaler");
    Ok(())
}

/// Delete objects this ChatDeployment owns but no longer wants (an HPA after autoscaling was
/// removed, a StatefulSet after a dependency turned external, …). PersistentVolumeClaims are
/// never deleted.
async fn prune(
    ctx: &Context,
    cd: &ChatDeployment,
    namespace: &str,
    desired: &[Resource],
) -> Result<(), Error> {
    let uid = cd.uid().unwrap_or_default();
    for kind in prunable_kinds() {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, &kind);
        for existing in ctx.owned(&kind, namespace, &cd.name_any()).await? {
            let name = existing.name_any();
            let wanted = desired
                .iter()
                .any(|d| d.api_resource().kind == kind.kind && d.name() == name);
            let ours = existing.owner_references().iter().any(|o| o.uid == uid);
            if !wanted && ours {
                // The cache may still hold an object deleted a moment ago: gone is done.
                match api.delete(&name, &DeleteParams::background()).await {
                    Err(kube::Error::Api(e)) if e.code == 404 => continue,
                    result => {
                        result?;
                    }
                }
                ctx.cache.wrote(&kind, namespace, &name, None);
                info!(kind = %kind.kind, %name, "deleted object no longer desired");
                publish(
                    ctx,
                    cd,
                    EventType::Normal,
                    "Deleted",
                    &format!("deleted {} {name}, no longer desired", kind.kind),
                )
                .await;
            }
        }
    }
    Ok(())
}

/// Add the finalizer when `wanted` (deletion policy `Delete`) and remove it otherwise. A
/// merge patch carrying the `resourceVersion` read, so a concurrent change to the list fails
/// instead of being overwritten.
async fn sync_finalizer(
    api: &Api<ChatDeployment>,
    cd: &ChatDeployment,
    wanted: bool,
) -> Result<(), Error> {
    let present = cd.finalizers().iter().any(|f| f == FINALIZER);
    if present == wanted {
        return Ok(());
    }
    let mut finalizers: Vec<String> = cd
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if wanted {
        finalizers.push(FINALIZER.into());
    }
    let mut metadata = json!({ "finalizers": finalizers });
    if let Some(version) = cd.resource_version() {
        metadata["resourceVersion"] = json!(version);
    }
    api.patch(
        &cd.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": metadata })),
    )
    .await?;
    Ok(())
}

/// The ChatDeployment is being deleted. With our finalizer (deletion policy `Delete`), delete
/// the data owner references do not reach, then let go. Without it, do nothing: owner
/// references collect the rest, and applying now would fight the garbage collector.
async fn finalize(
    ctx: &Context,
    cd: &ChatDeployment,
    api: &Api<ChatDeployment>,
    namespace: &str,
) -> Result<Action, Error> {
    if !cd.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    if cd.spec.deletion_policy == Some(DeletionPolicy::Delete) {
        delete_data(ctx, cd, namespace).await?;
    }
    sync_finalizer(api, cd, false).await?;
    Ok(Action::await_change())
}

/// Delete the managed dependencies' StatefulSets (first, so no pod claims a volume again),
/// their PersistentVolumeClaims and the generated dependency passwords.
async fn delete_data(ctx: &Context, cd: &ChatDeployment, namespace: &str) -> Result<(), Error> {
    let name = cd.name_any();
    let mut deleted = Vec::new();
    // Only the operator's own: a user's StatefulSet that happens to share a name is left alone.
    let uid = cd.uid().unwrap_or_default();
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), namespace);
    for set in sets
        .list_metadata(&ListParams::default().labels(&owned_selector(&name)))
        .await?
    {
        let ours = set.owner_references().iter().any(|o| o.uid == uid);
        let set = set.name_any();
        if ours && delete_if_present(&sets, &set).await? {
            deleted.push(format!("StatefulSet {set}"));
        }
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), namespace);
    for claim in claims
        .list_metadata(&ListParams::default().labels(&data_selector(&name)))
        .await?
    {
        let claim = claim.name_any();
        if delete_if_present(&claims, &claim).await? {
            deleted.push(format!("PersistentVolumeClaim {claim}"));
        }
    }
    // Not owned, so never garbage-collected; only the ones the operator generated.
    if let Ok(cfg) = validate(cd) {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
        for dependency in &cfg.dependencies {
            let DependencyMode::Managed(managed) = &dependency.mode else {
                continue;
            };
            let secret = &managed.credential.secret;
            let ours = secrets.get_opt(secret).await?.is_some_and(|s| {
                managed.credential.generated
                    && s.labels()
                        .get("app.kubernetes.io/managed-by")
                        .map(String::as_str)
                        == Some(FIELD_MANAGER)
            });
            if ours && delete_if_present(&secrets, secret).await? {
                deleted.push(format!("Secret {secret}"));
            }
        }
    }
    info!(?deleted, "deletion policy Delete: data deleted");
    publish(
        ctx,
        cd,
        EventType::Normal,
        "DataDeleted",
        &format!("deletionPolicy Delete: deleted {}", deleted.join(", ")),
    )
    .await;
    Ok(())
}

/// Delete `name`; `false` when it did not exist.
async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<bool, Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Write `status` when it differs from the stored one. Returns whether it wrote.
///
/// The status is the operator's alone, so it is replaced whole, with a JSON patch (`add` of
/// `/status`), not server-side applied: with `conditions` a map-list, an apply removes only
/// the entries whose keys this field manager owns, and a ChatDeployment whose conditions an
/// older operator applied as an atomic list is owned as a whole, not per entry, so a
/// `ReconciliationPaused` applied then would never go. An apply also fails (500) on an object
/// stored with two `imagePullSecrets` of one name before that list became a map-list. A
/// condition type another tool wrote is kept: the conditions are merged into the stored ones.
async fn write_status(
    api: &Api<ChatDeployment>,
    cd: &ChatDeployment,
    status: &ChatDeploymentStatus,
) -> Result<bool, Error> {
    if cd.status.as_ref() == Some(status) {
        return Ok(false);
    }
    let patch = json!([{"op": "add", "path": "/status", "value": status}]);
    let url = format!("{}/{}/status", api.resource_url(), cd.name_any());
    let request = http::Request::patch(url)
        .header(http::header::CONTENT_TYPE, "application/json-patch+json")
        .body(serde_json::to_vec(&patch).expect("a status serializes"))
        .expect("a valid request");
    api.clone()
        .into_client()
        .request::<ChatDeployment>(request)
        .await?;
    Ok(true)
}

fn condition_is(status: &ChatDeploymentStatus, type_: &str, value: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == value)
}

/// Events for the condition changes users care about: became ready, became degraded.
async fn report_transitions(ctx: &Context, cd: &ChatDeployment, new: &ChatDeploymentStatus) {
    let old = cd.status.clone().unwrap_or_default();
    let message_of = |type_: &str| {
        new.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    if condition_is(new, READY, "True") && !condition_is(&old, READY, "True") {
        publish(ctx, cd, EventType::Normal, "Ready", &message_of(READY)).await;
    }
    if condition_is(new, DEGRADED, "True") && !condition_is(&old, DEGRADED, "True") {
        publish(
            ctx,
            cd,
            EventType::Warning,
            "Degraded",
            &message_of(DEGRADED),
        )
        .await;
    }
    if !condition_is(&old, "Progressing", "True") && condition_is(new, "Progressing", "True") {
        publish(
            ctx,
            cd,
            EventType::Normal,
            "RollingOut",
            &message_of("Progressing"),
        )
        .await;
    }
}

/// Publish an event on the ChatDeployment; a failure to publish is logged, not fatal.
async fn publish(ctx: &Context, cd: &ChatDeployment, type_: EventType, reason: &str, note: &str) {
    ctx.events.publish(cd, type_, reason, note).await;
}

/// Events on ChatDeployments, one series per distinct message.
///
/// kube's [`Recorder`] folds every event with the same type, reason and action on one object
/// into one series that keeps the *first* note: five generated Secrets would show as one event
/// "generated Secret chat-jwt" with count 5. So each distinct (reason, note) gets a recorder of
/// its own: the same event repeated is still one series with a count, while different
/// messages stay different events.
pub struct EventPublisher {
    client: Client,
    reporter: Reporter,
    recorders: Mutex<HashMap<(String, String), Recorder>>,
}

impl EventPublisher {
    /// Most distinct messages remembered; past it the memory starts again (a repeat then
    /// starts a new series, which is harmless).
    const MAX_SERIES: usize = 1024;

    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            recorders: Mutex::default(),
        }
    }

    async fn publish(&self, cd: &ChatDeployment, type_: EventType, reason: &str, note: &str) {
        let recorder = {
            let mut recorders = self
                .recorders
                .lock()
                .expect("recorder lock is not poisoned");
            if recorders.len() >= Self::MAX_SERIES {
                recorders.clear();
            }
            recorders
                .entry((reason.to_owned(), note.to_owned()))
                .or_insert_with(|| Recorder::new(self.client.clone(), self.reporter.clone()))
                .clone()
        };
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(error) = recorder.publish(&event, &cd.object_ref(&())).await {
            warn!(%error, reason, "publishing event failed");
        }
    }
}

#[cfg(test)]
mod tests;
