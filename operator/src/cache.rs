//! The operator's copy of the objects it owns, kept current by the same watches that trigger
//! reconciles (client-go's informer caches). A reconcile reads them here instead of listing
//! every owned kind from the API server each time; only writes, the Secrets and what is not
//! cached go to the API server.
//!
//! A watch event updates the cache before it triggers the reconcile it causes, so a
//! reconcile never acts on an older copy of the object that woke it. The operator's own
//! writes are read back at once: what the API server answered is kept until the watch has
//! delivered it (or something newer), so a reconcile never plans from a copy older than its
//! own last apply. A copy can still lag a change made meanwhile by someone else; the event of
//! that change triggers another reconcile, which sees it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::Stream;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use crate::build::has_owned_labels;

/// Kind, namespace and name of one object.
type ObjectKey = (String, String, String);
/// When we wrote an object, and what the API server answered (`None`: deleted).
type Written = (Instant, Option<DynamicObject>);

/// One store per owned kind and watched namespace (or one for all namespaces).
#[derive(Clone, Default)]
pub struct OwnedCache {
    stores: HashMap<String, Vec<Store<DynamicObject>>>,
    /// What this operator wrote, by (kind, namespace, name), until the stores catch up;
    /// `None` for an object it deleted. Kept at most [`READ_YOUR_WRITES`].
    written: Arc<Mutex<HashMap<ObjectKey, Written>>>,
}

/// How long a write of ours is preferred to the cache: far longer than a watch event takes
/// to arrive, short enough that a later change by someone else (a deletion the stores saw
/// before any read) is never hidden for long.
const READ_YOUR_WRITES: Duration = Duration::from_secs(10);

/// A resourceVersion as a number, to tell the newer of two copies of one object (etcd's
/// revisions; an unparsable one counts as oldest).
fn revision(object: &DynamicObject) -> u64 {
    object
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl OwnedCache {
    /// Starts caching `kind` in `namespace` (every namespace when `None`): the returned stream
    /// keeps the store current while it is polled, and yields each changed or deleted object
    /// (hand it to the controller as the trigger of its owner: a deleted object is put back).
    pub fn watch(
        &mut self,
        client: &Client,
        kind: &ApiResource,
        namespace: Option<&str>,
        config: watcher::Config,
    ) -> impl Stream<Item = Result<DynamicObject, watcher::Error>> + Send + 'static {
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, kind),
            None => Api::all_with(client.clone(), kind),
        };
        let writer = Writer::new(kind.clone());
        self.stores
            .entry(kind.kind.clone())
            .or_default()
            .push(writer.as_reader());
        watcher(api, config)
            .default_backoff()
            .reflect(writer)
            .touched_objects()
    }

    /// Records an object as the API server answered a write of it (`None`: deleted), so
    /// reads see it before the watch delivers it.
    pub fn wrote(
        &self,
        kind: &ApiResource,
        namespace: &str,
        name: &str,
        object: Option<DynamicObject>,
    ) {
        let key = (kind.kind.clone(), namespace.to_string(), name.to_string());
        self.written
            .lock()
            .expect("cache poisoned")
            .insert(key, (Instant::now(), object));
    }

    /// The cached objects of `kind` in `namespace` that carry `instance`'s owned labels;
    /// `None` when this kind is not cached (the caller lists it from the API server). Waits
    /// for the first complete list after a start.
    pub async fn owned(
        &self,
        kind: &ApiResource,
        namespace: &str,
        instance: &str,
    ) -> Option<Vec<DynamicObject>> {
        let stores = self.stores.get(&kind.kind)?;
        let mut objects: HashMap<String, DynamicObject> = HashMap::new();
        for store in stores {
            store.wait_until_ready().await.ok()?;
            for object in store.state() {
                if object.namespace().as_deref() == Some(namespace) {
                    objects.insert(object.name_any(), (*object).clone());
                }
            }
        }
        // Our own writes the watch has not delivered yet win over the older copies.
        let mut written = self.written.lock().expect("cache poisoned");
        written.retain(|(k, ns, name), (at, ours)| {
            if at.elapsed() > READ_YOUR_WRITES {
                return false;
            }
            if *k != kind.kind || ns != namespace {
                return true;
            }
            match (ours, objects.get(name)) {
                // Deleted: hidden until the watch drops it too.
                (None, Some(_)) => {
                    objects.remove(name);
                    true
                }
                (None, None) => false,
                (Some(ours), Some(cached)) if revision(cached) >= revision(ours) => false,
                (Some(ours), _) => {
                    objects.insert(name.clone(), ours.clone());
                    true
                }
            }
        });
        Some(
            objects
                .into_values()
                .filter(|o| has_owned_labels(o.labels(), instance))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use kube::runtime::watcher::Event;

    fn service(name: &str, revision: u64) -> DynamicObject {
        let mut object = DynamicObject::new(name, &ApiResource::erase::<Service>(&()));
        object.metadata.namespace = Some("ns".into());
        object.metadata.resource_version = Some(revision.to_string());
        object.metadata.labels = Some(
            [
                ("app.kubernetes.io/name", "scalable-chat"),
                ("app.kubernetes.io/instance", "chat"),
                ("app.kubernetes.io/managed-by", "chat-operator"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        object
    }

    fn revisions(objects: Option<Vec<DynamicObject>>) -> Vec<(String, u64)> {
        let mut seen: Vec<(String, u64)> = objects
            .unwrap()
            .iter()
            .map(|o| (o.name_any(), revision(o)))
            .collect();
        seen.sort();
        seen
    }

    #[tokio::test]
    async fn reads_see_our_own_writes_until_the_watch_catches_up() {
        let kind = ApiResource::erase::<Service>(&());
        let mut writer = Writer::new(kind.clone());
        let mut cache = OwnedCache::default();
        cache
            .stores
            .insert(kind.kind.clone(), vec![writer.as_reader()]);
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(service("chat-gateway", 5)));
        writer.apply_watcher_event(&Event::InitApply(service("chat-chat", 5)));
        writer.apply_watcher_event(&Event::InitDone);

        // Applied (revision 7) and deleted, before the watch said so.
        cache.wrote(
            &kind,
            "ns",
            "chat-gateway",
            Some(service("chat-gateway", 7)),
        );
        cache.wrote(&kind, "ns", "chat-chat", None);
        let owned = cache.owned(&kind, "ns", "chat").await;
        assert_eq!(revisions(owned), [("chat-gateway".to_string(), 7)]);

        // The watch catches up (and goes further): its copies win again.
        writer.apply_watcher_event(&Event::Apply(service("chat-gateway", 8)));
        writer.apply_watcher_event(&Event::Delete(service("chat-chat", 9)));
        let owned = cache.owned(&kind, "ns", "chat").await;
        assert_eq!(revisions(owned), [("chat-gateway".to_string(), 8)]);
        assert!(cache.written.lock().unwrap().is_empty());
        // Another instance's objects are not ours.
        assert_eq!(revisions(cache.owned(&kind, "ns", "other").await), []);
    }
}
