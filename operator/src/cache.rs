//! The operator's copy of the objects it owns, kept current by the same watches that trigger
//! reconciles (client-go's informer caches). A reconcile reads them here instead of listing
//! every owned kind from the API server each time; only writes, the Secrets and what is not
//! cached go to the API server.
//!
//! A watch event updates the cache before it triggers the reconcile it causes, so a
//! reconcile never acts on an older copy of the object that woke it. A copy can still lag a
//! change made meanwhile by someone else; the event of that change triggers another
//! reconcile, which sees it.

use std::collections::HashMap;

use futures_util::Stream;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use crate::build::has_owned_labels;

/// One store per owned kind and watched namespace (or one for all namespaces).
#[derive(Clone, Default)]
pub struct OwnedCache {
    stores: HashMap<String, Vec<Store<DynamicObject>>>,
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
        let mut objects = Vec::new();
        for store in stores {
            store.wait_until_ready().await.ok()?;
            objects.extend(
                store
                    .state()
                    .into_iter()
                    .filter(|o| {
                        o.namespace().as_deref() == Some(namespace)
                            && has_owned_labels(o.labels(), instance)
                    })
                    .map(|o| (*o).clone()),
            );
        }
        Some(objects)
    }
}
