//! The reconciler: one `reconcile()` entry (controller-rs shape) running the pipeline
//! validate → dereference → create missing secrets → build → apply → prune → status.
//!
//! A steady-state reconcile changes nothing. Generated Secrets are only ever created; the
//! status is written only when it differs from the stored one (condition transition times
//! are kept while a condition's status stays the same); and the owned objects are sent with
//! server-side apply, which for an unchanged intent is a no-op on the API server: no new
//! `resourceVersion`, nothing written to etcd and no watch event, so it cannot feed a
//! reconcile loop. Comparing before applying would need a cached copy of every object and a
//! model of every server-side default; SSA gives the same result with one field manager and
//! also repairs drift when someone edits an owned field by hand.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource as _, ResourceExt};
use serde_json::json;
use tracing::{debug, info, instrument, warn};

use crate::build::{build, owned_selector, prunable_kinds, Resource, FIELD_MANAGER};
use crate::config::{validate, Component, DependencyKind, ValidatedConfig};
use crate::crd::{ChatDeployment, ChatDeploymentStatus};
use crate::metrics::Metrics;
use crate::secrets::{generated_secrets, SecretDigests, SecretGenerator, SystemGenerator};
use crate::status::{self, Workloads, DEGRADED, READY};

/// Requeue while a rollout is under way (watches on Deployments and StatefulSets usually
/// trigger earlier).
const REQUEUE_PROGRESSING: Duration = Duration::from_secs(30);
/// Requeue when everything is ready: re-reads user Secrets, whose changes are not watched.
const REQUEUE_READY: Duration = Duration::from_secs(300);
/// Requeue after an error or while a referenced Secret is missing.
const REQUEUE_ERROR: Duration = Duration::from_secs(30);

/// Why a reconciliation failed. Messages never contain secret values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// The API server's own message is left out: it could echo the Secret's content.
    #[error("creating Secret {name} failed with HTTP {code} ({reason})")]
    CreateSecret {
        name: String,
        code: u16,
        reason: String,
    },
    #[error("the ChatDeployment has no namespace")]
    MissingNamespace,
}

impl Error {
    /// Label of the failure metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::CreateSecret { .. } => "create_secret",
            Self::MissingNamespace => "missing_namespace",
        }
    }
}

/// What every reconciliation shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Source of generated secret values; tests pass a deterministic one.
    pub generator: Mutex<Box<dyn SecretGenerator + Send>>,
    /// The current time, truncated to seconds as the API server stores it.
    pub clock: fn() -> DateTime<Utc>,
}

impl Context {
    /// A context for the real cluster.
    pub fn new(client: Client, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            generator: Mutex::new(Box::new(SystemGenerator::default())),
            clock: || Utc::now().trunc_subsecs(0),
        }
    }
}

/// Reconcile one ChatDeployment.
#[instrument(skip(cd, ctx), fields(name = %cd.name_any(), namespace = cd.namespace().unwrap_or_default()))]
pub async fn reconcile(cd: Arc<ChatDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    let namespace = cd.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<ChatDeployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let now = (ctx.clock)();

    if cd.spec.paused {
        let status = status::paused(&cd, now);
        if write_status(&api, &cd, &status).await? {
            publish(
                &ctx,
                &cd,
                EventType::Normal,
                "Paused",
                "reconciliation paused; no object is written",
            )
            .await;
        }
        return Ok(Action::await_change());
    }

    let cfg = match validate(&cd) {
        Ok(cfg) => cfg,
        Err(invalid) => {
            warn!(error = %invalid, "invalid spec");
            let message = invalid.to_string();
            let status = status::blocked(&cd, "InvalidSpec", message.clone(), now);
            if write_status(&api, &cd, &status).await? {
                publish(&ctx, &cd, EventType::Warning, "InvalidSpec", &message).await;
            }
            return Ok(Action::await_change());
        }
    };

    let secrets_api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let (mut digests, missing) = dereference(&secrets_api, &cfg).await?;
    if !missing.is_empty() {
        let message = format!("waiting for Secret {}", missing.join(", "));
        warn!(%message, "referenced Secret missing");
        let status = status::blocked(&cd, "SecretMissing", message.clone(), now);
        if write_status(&api, &cd, &status).await? {
            publish(&ctx, &cd, EventType::Warning, "SecretMissing", &message).await;
        }
        return Ok(Action::requeue(REQUEUE_ERROR));
    }
    create_missing_secrets(&ctx, &cd, &secrets_api, &cfg, &mut digests).await?;

    let objects = build(&cfg, &digests);
    let applied = match apply_all(&ctx.client, &namespace, &objects).await {
        Ok(applied) => applied,
        Err(error) => {
            let status = status::blocked(&cd, "ApplyFailed", error.to_string(), now);
            if write_status(&api, &cd, &status).await.unwrap_or(false) {
                publish(
                    &ctx,
                    &cd,
                    EventType::Warning,
                    "ApplyFailed",
                    &error.to_string(),
                )
                .await;
            }
            return Err(error);
        }
    };
    prune(&ctx, &cd, &namespace, &objects).await?;

    let status = status::rolled_out(&cd, &cfg, &applied, now);
    let ready = condition_is(&status, READY, "True");
    if write_status(&api, &cd, &status).await? {
        report_transitions(&ctx, &cd, &status).await;
    }
    Ok(Action::requeue(if ready {
        REQUEUE_READY
    } else {
        REQUEUE_PROGRESSING
    }))
}

/// Count the failure and retry later.
pub fn error_policy(cd: Arc<ChatDeployment>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(name = %cd.name_any(), %error, "reconcile failed");
    ctx.metrics.reconcile_failed(error.kind());
    Action::requeue(REQUEUE_ERROR)
}

/// Read every Secret the stack uses: digests of their values, and the user-supplied ones
/// (or keys) that do not exist. Generated Secrets that do not exist yet are simply absent.
async fn dereference(
    secrets: &Api<Secret>,
    cfg: &ValidatedConfig,
) -> Result<(SecretDigests, Vec<String>), Error> {
    let mut digests = SecretDigests::default();
    let mut missing = Vec::new();
    let keys = cfg.secret_keys();
    let names: BTreeSet<&str> = keys.iter().map(|k| k.secret.as_str()).collect();
    for name in names {
        if let Some(secret) = secrets.get_opt(name).await? {
            digests.insert_secret(&secret);
        }
    }
    for key in keys.iter().filter(|k| !k.generated) {
        if digests.get(&key.secret, &key.key).is_none() {
            missing.push(format!("{} (key {})", key.secret, key.key));
        }
    }
    Ok((digests, missing))
}

/// Create the generated Secrets that do not exist. Existing ones are never patched.
async fn create_missing_secrets(
    ctx: &Context,
    cd: &ChatDeployment,
    secrets: &Api<Secret>,
    cfg: &ValidatedConfig,
    digests: &mut SecretDigests,
) -> Result<(), Error> {
    let absent: Vec<String> = cfg
        .generated_secret_names()
        .into_iter()
        .filter(|name| !digests.has_secret(name))
        .collect();
    if absent.is_empty() {
        return Ok(());
    }
    let generated = {
        let mut generator = ctx
            .generator
            .lock()
            .expect("generator lock is not poisoned");
        generated_secrets(cfg, generator.as_mut())
    };
    for secret in generated {
        let name = secret.name_any();
        if !absent.contains(&name) {
            continue;
        }
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                digests.insert_secret(&secret);
                info!(secret = %name, "generated Secret created");
                publish(
                    ctx,
                    cd,
                    EventType::Normal,
                    "SecretCreated",
                    &format!("generated Secret {name}"),
                )
                .await;
            }
            // Another writer created it since we looked: use theirs, never overwrite.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                digests.insert_secret(&secrets.get(&name).await?);
            }
            Err(kube::Error::Api(e)) => {
                return Err(Error::CreateSecret {
                    name,
                    code: e.code,
                    reason: e.reason,
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Server-side apply every object in order; returns the workloads as the server has them.
async fn apply_all(
    client: &Client,
    namespace: &str,
    objects: &[Resource],
) -> Result<Workloads, Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut workloads = Workloads::default();
    for object in objects {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &object.api_resource());
        if let Resource::Deployment(deployment) = object {
            hand_replicas_over(client, namespace, deployment).await?;
        }
        let applied = api
            .patch(object.name(), &params, &Patch::Apply(object.to_json()))
            .await?;
        debug!(kind = %object.api_resource().kind, name = object.name(), "applied");
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
    Ok(workloads)
}

/// Field manager that takes `spec.replicas` off our hands when an autoscaler takes over.
const HANDOVER_MANAGER: &str = "chat-operator-replicas-handover";

/// When a component switches to autoscaling, its Deployment is applied without `replicas`.
/// If this field manager still owned the field, SSA would remove it and Kubernetes would
/// default it to 1, scaling the component down before the HPA acts. So first apply the live
/// value under a separate manager that never applies again (the handover recipe of the
/// server-side-apply docs); the HPA then changes it freely.
async fn hand_replicas_over(
    client: &Client,
    namespace: &str,
    desired: &Deployment,
) -> Result<(), Error> {
    if desired.spec.as_ref().is_some_and(|s| s.replicas.is_some()) {
        return Ok(());
    }
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let name = desired.name_any();
    let Some(live) = api.get_opt(&name).await? else {
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
    let Some(replicas) = live.spec.as_ref().and_then(|s| s.replicas) else {
        return Ok(());
    };
    if we_own_replicas {
        let patch = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"replicas": replicas},
        });
        api.patch(
            &name,
            &PatchParams::apply(HANDOVER_MANAGER),
            &Patch::Apply(patch),
        )
        .await?;
        info!(deployment = %name, replicas, "handed replicas over to the autoscaler");
    }
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
    let selector = ListParams::default().labels(&owned_selector(&cd.name_any()));
    for kind in prunable_kinds() {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, &kind);
        for existing in api.list_metadata(&selector).await? {
            let name = existing.name_any();
            let wanted = desired
                .iter()
                .any(|d| d.api_resource().kind == kind.kind && d.name() == name);
            let ours = existing.owner_references().iter().any(|o| o.uid == uid);
            if !wanted && ours {
                api.delete(&name, &DeleteParams::background()).await?;
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

/// Write `status` when it differs from the stored one. Returns whether it wrote.
async fn write_status(
    api: &Api<ChatDeployment>,
    cd: &ChatDeployment,
    status: &ChatDeploymentStatus,
) -> Result<bool, Error> {
    if cd.status.as_ref() == Some(status) {
        return Ok(false);
    }
    let patch = json!({
        "apiVersion": ChatDeployment::api_version(&()),
        "kind": ChatDeployment::kind(&()),
        "status": status,
    });
    api.patch_status(
        &cd.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
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
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &cd.object_ref(&())).await {
        warn!(%error, reason, "publishing event failed");
    }
}

#[cfg(test)]
mod tests;
