//! An in-memory fake cloud and a fake resource, for testing the engine (and code built on it) without
//! AWS: calls are counted, concurrency is measured, failures and latency can be injected. Built with the
//! `testing` feature (`platform-core = { ..., features = ["testing"] }` in dev-dependencies).
//!
//! ```
//! use platform_core::testing::{FakeCloud, FakeResource, FakeStack};
//! use platform_core::{Engine, MemoryStateStore, ProviderInfo};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let cloud = FakeCloud::new();
//! let engine = Engine::builder(MemoryStateStore::new())
//!     .provider(ProviderInfo { account_id: "000000000000".into(), region: "local".into() })
//!     .extension(cloud.clone())
//!     .build();
//! let stack = FakeStack::chain("demo", 3);
//! let outputs = engine.up(&stack).await.unwrap();
//! assert_eq!(outputs.len(), 3);
//! assert_eq!(cloud.live().len(), 3);
//! # });
//! ```

use crate::resource::Idempotent;
use crate::sync::Locked;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::ErrorMetadata;
use serde::{Deserialize, Serialize};

use crate::error::{Error, GoneExt, ResourceError, ValidationError};
use crate::resource::{Context, Observed, Registry, Resource};
use crate::stack::{Declared, Scope, Stack};
use crate::value::Input;

/// One object in the fake cloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeObject {
    /// Its id.
    pub id: String,
    /// The value it holds (updatable in place).
    pub value: String,
    /// The fixed part (a change replaces).
    pub fixed: String,
    /// Ids of the objects it uses (a delete of one of those is refused while this one exists).
    pub deps: Vec<String>,
    /// Its tags: stack and logical name.
    pub tags: BTreeMap<String, String>,
}

/// Counts of the fake cloud's calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FakeCalls {
    /// Creates.
    pub create: u64,
    /// Updates.
    pub update: u64,
    /// Deletes.
    pub delete: u64,
    /// Reads and finds.
    pub read: u64,
}

impl FakeCalls {
    /// Mutating calls.
    pub fn mutating(&self) -> u64 {
        self.create + self.update + self.delete
    }
}

#[derive(Debug, Default)]
struct Inner {
    objects: Mutex<HashMap<String, FakeObject>>,
    /// Per object id, how many live objects use it (taken after `objects` when both are held).
    users: Mutex<HashMap<String, usize>>,
    next_id: AtomicU64,
    calls: Mutex<FakeCalls>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    latency: Mutex<Duration>,
    fail_create: Mutex<HashSet<String>>,
    lose_create_result: Mutex<HashSet<String>>,
    lose_response: Mutex<HashSet<String>>,
    time_out_create: Mutex<HashSet<String>>,
    /// Per logical name, faults for its next updates, in order.
    update_faults: Mutex<HashMap<String, Vec<UpdateFault>>>,
    /// Finds still to answer "nothing" (a just-made object not visible yet).
    hidden_finds: AtomicUsize,
    /// Reads still to answer "gone" (a just-made object not visible yet).
    hidden_reads: AtomicUsize,
    /// Per logical name, how long its creates wait (cancellably) before acting.
    slow_create: Mutex<HashMap<String, Duration>>,
    order: Mutex<Vec<(String, &'static str)>>,
    /// Creates make the object unconfigured, publish its id, then configure it (set its value).
    configure_after_publish: std::sync::atomic::AtomicBool,
    /// Per logical name, how long its configuration (after the publish) takes.
    slow_configure: Mutex<HashMap<String, Duration>>,
    /// Logical names whose next configuration fails.
    fail_configure: Mutex<HashSet<String>>,
    /// Logical names whose next create publishes an id other than the one it returns.
    publish_other_id: Mutex<HashSet<String>>,
    /// Per logical name, how long after its next create is sent the cloud carries it out (the
    /// sender having been told nothing).
    create_late: Mutex<HashMap<String, Duration>>,
    /// Logical names whose object is deleted right after the next find that returns it.
    vanish_after_find: Mutex<HashSet<String>>,
    /// How long a deleted [`FakeUnique`] still holds its name.
    name_hold: Mutex<Duration>,
    /// Per logical name, a deleted [`FakeUnique`]'s tags, shown until the instant given.
    ghosts: Mutex<Ghosts>,
}

/// Per logical name, a deleted [`FakeUnique`]'s tags and until when they show.
type Ghosts = HashMap<String, (tokio::time::Instant, BTreeMap<String, String>)>;

/// Waits (cancellably) as long as `delays` says for the context's resource, if at all.
async fn wait_if_slow(
    delays: &Mutex<HashMap<String, Duration>>,
    ctx: &Context,
) -> Result<(), ResourceError> {
    let delay = delays.locked().get(ctx.resource()).copied();
    match delay {
        Some(d) => ctx.sleep(d).await,
        None => Ok(()),
    }
}

/// Arms a one-shot fault for logical name `name` (taken by the next call it applies to).
fn arm(faults: &Mutex<HashSet<String>>, name: &str) {
    faults.locked().insert(name.to_owned());
}

/// What goes wrong with an update (see [`FakeCloud::fail_updates_of`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateFault {
    /// Carried out, its response lost (a transient error after acting).
    LoseResponse,
    /// Timed out before acting (a transient error, nothing changed).
    TimeOut,
    /// Refused (a plain failure, nothing changed).
    Fail,
}

/// The fake cloud: a shared, cloneable handle.
#[derive(Clone, Debug, Default)]
pub struct FakeCloud {
    inner: Arc<Inner>,
}

impl FakeCloud {
    /// An empty cloud.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call waits `latency` (to observe parallelism).
    pub fn set_latency(&self, latency: Duration) {
        *self.inner.latency.locked() = latency;
    }

    /// The next create of logical name `name` fails (once).
    pub fn fail_create_of(&self, name: &str) {
        arm(&self.inner.fail_create, name);
    }

    /// The next create of `name` succeeds in the cloud but its answer is lost (a crash between the
    /// call and recording its result).
    pub fn lose_create_result_of(&self, name: &str) {
        arm(&self.inner.lose_create_result, name);
    }

    /// The next create of `name` is carried out but its response never arrives: the call fails as a
    /// closed connection would (a transient AWS error, outcome unknown).
    pub fn lose_response_of(&self, name: &str) {
        arm(&self.inner.lose_response, name);
    }

    /// The next create of `name` times out before the cloud acted: a transient error, nothing made.
    pub fn time_out_create_of(&self, name: &str) {
        arm(&self.inner.time_out_create, name);
    }

    /// The next updates of `name` go wrong as `faults` says, one fault per update, in order.
    pub fn fail_updates_of(&self, name: &str, faults: &[UpdateFault]) {
        self.inner
            .update_faults
            .locked()
            .insert(name.to_owned(), faults.to_vec());
    }

    /// The next `n` finds see nothing, as a describe right after a create may not (AWS's eventual
    /// consistency).
    pub fn hide_from_next_finds(&self, n: usize) {
        self.inner.hidden_finds.store(n, Ordering::SeqCst);
    }

    /// The next `n` reads answer "gone", as a describe right after a create may.
    pub fn hide_from_next_reads(&self, n: usize) {
        self.inner.hidden_reads.store(n, Ordering::SeqCst);
    }

    /// Creates of `name` wait `d` (cancellably, through [`Context::sleep`]) before acting, as a
    /// create that waits for a rollout.
    pub fn slow_create_of(&self, name: &str, d: Duration) {
        self.inner.slow_create.locked().insert(name.to_owned(), d);
    }

    /// Creates work in two steps, as a VPC's does (the VPC, then its DNS attributes): the object
    /// is made without its value, its id is published ([`Context::publish`]), then its value is
    /// set (logged as `"configure"` in [`order`](Self::order)).
    pub fn configure_after_publish(&self) {
        self.inner
            .configure_after_publish
            .store(true, Ordering::SeqCst);
    }

    /// The configuration of `name` (see [`configure_after_publish`](Self::configure_after_publish))
    /// takes `d`.
    pub fn slow_configure_of(&self, name: &str, d: Duration) {
        self.inner
            .slow_configure
            .locked()
            .insert(name.to_owned(), d);
    }

    /// The next configuration of `name` fails, after its id was published.
    pub fn fail_configure_of(&self, name: &str) {
        arm(&self.inner.fail_configure, name);
    }

    /// The next create of `name` publishes an id other than the one it returns (a resource kind's
    /// bug).
    pub fn publish_other_id_of(&self, name: &str) {
        arm(&self.inner.publish_other_id, name);
    }

    /// The next create of `name` is carried out `d` after it is sent, while its sender hears only
    /// a closed connection at once (a transient error: the outcome is unknown). As AWS may carry out
    /// a request whose sender died: the next run may look before the instance exists.
    pub fn create_late_of(&self, name: &str, d: Duration) {
        self.inner.create_late.locked().insert(name.to_owned(), d);
    }

    /// The object of `name` is deleted (by someone else) right after the next find that returns it.
    pub fn vanish_after_find_of(&self, name: &str) {
        arm(&self.inner.vanish_after_find, name);
    }

    /// A deleted [`FakeUnique`] holds its name for `d`, as IAM may keep a just-deleted role's name
    /// (eventual consistency): its create answers `EntityAlreadyExists` and its find still shows it.
    pub fn hold_names_after_delete(&self, d: Duration) {
        *self.inner.name_hold.locked() = d;
    }

    /// The tags of the deleted instance of `name` that still holds the name, if one does.
    fn ghost_of(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let ghosts = self.inner.ghosts.locked();
        ghosts
            .get(name)
            .filter(|(until, _)| tokio::time::Instant::now() < *until)
            .map(|(_, tags)| tags.clone())
    }

    /// The live objects that carry logical name `name`'s resource tag.
    pub fn instances_of(&self, name: &str) -> Vec<FakeObject> {
        let mut found: Vec<FakeObject> = self
            .live()
            .into_values()
            .filter(|o| {
                o.tags
                    .get(crate::resource::RESOURCE_TAG)
                    .map(String::as_str)
                    == Some(name)
            })
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found
    }

    /// The objects that exist now, by id.
    pub fn live(&self) -> HashMap<String, FakeObject> {
        self.objects().clone()
    }

    /// The objects, held (the fake's own calls look at them without copying them, so that a
    /// call's cost does not grow with the cloud's size).
    fn objects(&self) -> std::sync::MutexGuard<'_, HashMap<String, FakeObject>> {
        self.inner.objects.locked()
    }

    /// Counts `deps` as used by one more object (`by` +1) or one less (`by` -1).
    fn count_uses(&self, deps: &[String], by: isize) {
        let mut users = self.inner.users.locked();
        for d in deps {
            let n = users.entry(d.clone()).or_default();
            *n = n.saturating_add_signed(by);
        }
    }

    /// Makes an object by hand (outside any stack), for imports; returns its id.
    pub fn make_by_hand(&self, value: &str) -> String {
        let id = format!("fake-{}", self.inner.next_id.fetch_add(1, Ordering::SeqCst));
        self.inner.objects.locked().insert(
            id.clone(),
            FakeObject {
                id: id.clone(),
                value: value.to_owned(),
                fixed: String::new(),
                deps: Vec::new(),
                tags: BTreeMap::new(),
            },
        );
        id
    }

    /// Makes a copy of object `id` under a new id, its tags included (a create carried out twice);
    /// returns the copy's id.
    pub fn copy_object(&self, id: &str) -> String {
        let copy = format!("fake-{}", self.inner.next_id.fetch_add(1, Ordering::SeqCst));
        let mut objects = self.objects();
        if let Some(mut o) = objects.get(id).cloned() {
            o.id = copy.clone();
            self.count_uses(&o.deps, 1);
            objects.insert(copy.clone(), o);
        }
        copy
    }

    /// Deletes an object behind the engine's back (drift: deleted by hand).
    pub fn remove(&self, id: &str) {
        let mut objects = self.objects();
        if let Some(gone) = objects.remove(id) {
            self.count_uses(&gone.deps, -1);
        }
    }

    /// Changes an object's value behind the engine's back (drift).
    pub fn tamper(&self, id: &str, value: &str) {
        if let Some(o) = self.inner.objects.locked().get_mut(id) {
            o.value = value.to_owned();
        }
    }

    /// The calls made so far.
    pub fn calls(&self) -> FakeCalls {
        *self.inner.calls.locked()
    }

    /// The most calls that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every completed mutating call in order: (logical name, "create" | "update" | "delete").
    pub fn order(&self) -> Vec<(String, &'static str)> {
        self.inner.order.locked().clone()
    }

    async fn enter(&self) -> FlightGuard {
        let now = self.inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let latency = *self.inner.latency.locked();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        FlightGuard(self.inner.clone())
    }

    fn count(&self, f: impl FnOnce(&mut FakeCalls)) {
        f(&mut self.inner.calls.locked());
    }

    fn log(&self, name: &str, what: &'static str) {
        self.inner.order.locked().push((name.to_owned(), what));
    }
}

struct FlightGuard(Arc<Inner>);

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A fake resource: a value updatable in place, a fixed part whose change replaces it, and
/// dependencies on other fake resources' ids.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FakeResource {
    /// Updatable in place.
    pub value: String,
    /// Forces a replacement when changed.
    pub fixed: String,
    /// Ids of the resources this one uses.
    pub deps: Vec<Input<String>>,
}

crate::resource_outputs! {
    /// A fake resource's outputs.
    pub struct FakeOutputs / FakeRefs {
        /// Its id.
        pub id: String,
    }
}

/// A transient AWS error (no response: the outcome is unknown to the caller).
fn transient(message: &str) -> ResourceError {
    ResourceError::Aws(crate::error::AwsError {
        operation: "FakeCreate".into(),
        code: None,
        message: Some(message.into()),
        status: None,
        class: crate::error::ErrorClass::Transient,
        source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
    })
}

/// Takes one from `count` if it is not zero: whether this answer is one of those to hide.
fn take_one(count: &AtomicUsize) -> bool {
    count
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// What an SDK call of the fake cloud fails with.
type FakeSdkError = SdkError<ErrorMetadata, aws_smithy_runtime_api::http::Response>;

/// A describe call of the fake cloud: not-found (as EC2 answers `InvalidVpcID.NotFound`) while
/// reads are hidden ([`FakeCloud::hide_from_next_reads`]).
async fn describe_fake(cloud: &FakeCloud) -> Result<(), FakeSdkError> {
    let hidden = take_one(&cloud.inner.hidden_reads);
    if !hidden {
        return Ok(());
    }
    let meta = ErrorMetadata::builder()
        .code("InvalidFakeID.NotFound")
        .message("the fake object does not exist")
        .build();
    let raw = aws_smithy_runtime_api::http::Response::new(
        aws_smithy_runtime_api::http::StatusCode::try_from(400).expect("a valid status"),
        aws_smithy_types::body::SdkBody::empty(),
    );
    Err(SdkError::service_error(meta, raw))
}

fn fake_err(msg: String) -> ResourceError {
    ResourceError::Failed { message: msg }
}

impl FakeResource {
    /// The second step of a two-step create: publishes the id, then sets the value.
    async fn configure(
        &self,
        cloud: &FakeCloud,
        ctx: &Context,
        id: &str,
    ) -> Result<(), ResourceError> {
        let take = |set: &Mutex<HashSet<String>>| set.locked().remove(ctx.resource());
        let published = if take(&cloud.inner.publish_other_id) {
            format!("{id}-other")
        } else {
            id.to_owned()
        };
        ctx.publish(&FakeOutputs { id: published }).await?;
        wait_if_slow(&cloud.inner.slow_configure, ctx).await?;
        if take(&cloud.inner.fail_configure) {
            return Err(fake_err(format!(
                "injected failure configuring {}",
                ctx.resource()
            )));
        }
        if let Some(o) = cloud.objects().get_mut(id) {
            o.value = self.value.clone();
        }
        cloud.log(ctx.resource(), "configure");
        Ok(())
    }

    /// Makes the object in `cloud`, tagged by `ctx`, without its value when `unconfigured`.
    fn make(
        &self,
        cloud: &FakeCloud,
        ctx: &Context,
        deps: Vec<String>,
        unconfigured: bool,
    ) -> String {
        let id = format!(
            "fake-{}",
            cloud.inner.next_id.fetch_add(1, Ordering::SeqCst)
        );
        let tags = ctx
            .tags()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let mut objects = cloud.objects();
        cloud.count_uses(&deps, 1);
        objects.insert(
            id.clone(),
            FakeObject {
                id: id.clone(),
                value: if unconfigured {
                    String::new()
                } else {
                    self.value.clone()
                },
                fixed: self.fixed.clone(),
                deps,
                tags,
            },
        );
        id
    }

    /// The resolved dependency ids, each of which must exist (as AWS refuses a missing VPC id).
    fn dep_ids(&self, cloud: &FakeCloud) -> Result<Vec<String>, ResourceError> {
        let live = cloud.objects();
        let mut ids = Vec::with_capacity(self.deps.len());
        for d in &self.deps {
            let id = d.get()?;
            if !live.contains_key(id) {
                return Err(fake_err(format!("dependency {id} does not exist")));
            }
            ids.push(id.clone());
        }
        Ok(ids)
    }
}

impl Resource for FakeResource {
    type Outputs = FakeOutputs;
    const KIND: &'static str = "fake:resource";
    const SERVICE: &'static str = "fake";
    const UPDATES_IN_PLACE: bool = true;

    /// A new `fixed` replaces; one that ends in `!` collides with the old instance (as a security
    /// group that keeps its name), so the replacement deletes first.
    fn force_new(&self, previous: &Self) -> crate::ForceNew {
        crate::force_new!(self, previous; fixed).delete_first(self.fixed.ends_with('!'))
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.value.len() > 64 {
            return Err(ValidationError::new(
                "value",
                &self.value,
                "at most 64 characters",
            ));
        }
        Ok(())
    }

    async fn create(&self, ctx: &Context) -> Result<FakeOutputs, ResourceError> {
        let cloud = ctx.extension::<FakeCloud>()?;
        wait_if_slow(&cloud.inner.slow_create, ctx).await?;
        let _g = cloud.enter().await;
        cloud.count(|c| c.create += 1);
        let deps = self.dep_ids(&cloud)?;
        if cloud.inner.time_out_create.locked().remove(ctx.resource()) {
            return Err(transient("timed out before the cloud acted"));
        }
        if cloud.inner.fail_create.locked().remove(ctx.resource()) {
            return Err(fake_err(format!(
                "injected failure creating {}",
                ctx.resource()
            )));
        }
        let late = cloud.inner.create_late.locked().remove(ctx.resource());
        if let Some(d) = late {
            let (cloud, ctx, inputs) = ((*cloud).clone(), ctx.clone(), self.clone());
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                inputs.make(&cloud, &ctx, deps, false);
                cloud.log(ctx.resource(), "create");
            });
            return Err(transient("connection closed; the cloud acts on it later"));
        }
        let two_steps = cloud.inner.configure_after_publish.load(Ordering::SeqCst);
        let id = self.make(&cloud, ctx, deps, two_steps);
        cloud.log(ctx.resource(), "create");
        if two_steps {
            self.configure(&cloud, ctx, &id).await?;
        }
        if cloud
            .inner
            .lose_create_result
            .locked()
            .remove(ctx.resource())
        {
            return Err(fake_err(format!(
                "connection lost after creating {}",
                ctx.resource()
            )));
        }
        if cloud.inner.lose_response.locked().remove(ctx.resource()) {
            return Err(transient("connection closed before the response"));
        }
        Ok(FakeOutputs { id })
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &FakeOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let cloud = ctx.extension::<FakeCloud>()?;
        let _g = cloud.enter().await;
        cloud.count(|c| c.read += 1);
        let hidden = take_one(&cloud.inner.hidden_reads);
        if hidden {
            return Ok(None);
        }
        Ok(cloud.objects().get(&outputs.id).map(|o| Observed {
            inputs: FakeResource {
                value: o.value.clone(),
                fixed: o.fixed.clone(),
                deps: self.deps.clone(),
            },
            outputs: outputs.clone(),
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &FakeOutputs,
    ) -> Result<FakeOutputs, ResourceError> {
        let cloud = ctx.extension::<FakeCloud>()?;
        let _g = cloud.enter().await;
        cloud.count(|c| c.update += 1);
        if self.fixed != previous.fixed {
            return Err(fake_err("engine asked to update a force-new field".into()));
        }
        let fault = {
            let mut faults = cloud.inner.update_faults.locked();
            faults
                .get_mut(ctx.resource())
                .filter(|f| !f.is_empty())
                .map(|f| f.remove(0))
        };
        match fault {
            Some(UpdateFault::TimeOut) => return Err(transient("update timed out")),
            Some(UpdateFault::Fail) => return Err(fake_err("injected update failure".into())),
            _ => {}
        }
        let deps = self.dep_ids(&cloud)?;
        let mut objects = cloud.inner.objects.locked();
        let o = objects
            .get_mut(&outputs.id)
            .ok_or_else(|| fake_err(format!("{} does not exist", outputs.id)))?;
        o.value = self.value.clone();
        cloud.count_uses(&o.deps, -1);
        cloud.count_uses(&deps, 1);
        o.deps = deps;
        drop(objects);
        cloud.log(ctx.resource(), "update");
        if fault == Some(UpdateFault::LoseResponse) {
            return Err(transient("connection closed after the update"));
        }
        Ok(outputs.clone())
    }

    async fn delete(&self, ctx: &Context, outputs: &FakeOutputs) -> Result<(), ResourceError> {
        let cloud = ctx.extension::<FakeCloud>()?;
        let _g = cloud.enter().await;
        cloud.count(|c| c.delete += 1);
        // Read first, as an internet gateway's delete does (for its attachments): what the read
        // does not see is taken for gone. A hidden read answers not-found, as EC2's describe of an
        // id it does not show yet does.
        if ctx
            .call("DescribeFake", Idempotent, || describe_fake(&cloud))
            .await
            .gone_is_none()?
            .is_none()
        {
            return Ok(());
        }
        // Like AWS: refuse to delete what a live object still uses.
        {
            let mut objects = cloud.objects();
            let used = cloud
                .inner
                .users
                .locked()
                .get(&outputs.id)
                .is_some_and(|n| *n > 0);
            if used {
                let user = objects
                    .values()
                    .find(|o| o.deps.contains(&outputs.id))
                    .map(|o| o.id.clone())
                    .unwrap_or_default();
                return Err(fake_err(format!(
                    "{} is still in use by {user}",
                    outputs.id
                )));
            }
            if let Some(gone) = objects.remove(&outputs.id) {
                cloud.count_uses(&gone.deps, -1);
            }
        }
        cloud.log(ctx.resource(), "delete");
        Ok(())
    }

    /// By the object's id; tags it as the importing stack's.
    async fn import(&self, ctx: &Context, id: &str) -> Result<Option<FakeOutputs>, ResourceError> {
        let cloud = ctx.extension::<FakeCloud>()?;
        let _g = cloud.enter().await;
        cloud.count(|c| c.read += 1);
        let mut objects = cloud.inner.objects.locked();
        let Some(o) = objects.get_mut(id) else {
            return Ok(None);
        };
        o.tags
            .extend(ctx.tags().into_iter().map(|(k, v)| (k.to_owned(), v)));
        Ok(Some(FakeOutputs { id: id.to_owned() }))
    }

    /// Every object with the context's tags, by id.
    async fn find_all(&self, ctx: &Context) -> Result<Vec<FakeOutputs>, ResourceError> {
        let cloud = ctx.extension::<FakeCloud>()?;
        let _g = cloud.enter().await;
        cloud.count(|c| c.read += 1);
        let wanted = ctx.tags();
        let mut found: Vec<FakeOutputs> = cloud
            .objects()
            .values()
            .filter(|o| wanted.iter().all(|(k, v)| o.tags.get(*k) == Some(v)))
            .map(|o| FakeOutputs { id: o.id.clone() })
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    async fn find(&self, ctx: &Context) -> Result<Option<FakeOutputs>, ResourceError> {
        let cloud = ctx.extension::<FakeCloud>()?;
        let _g = cloud.enter().await;
        cloud.count(|c| c.read += 1);
        let hidden = take_one(&cloud.inner.hidden_finds);
        if hidden {
            return Ok(None);
        }
        let wanted = ctx.tags();
        let found = crate::resource::found_one(
            ctx.resource(),
            cloud
                .objects()
                .values()
                // Made with these inputs: an instance is looked for with the inputs its create
                // was sent with (as a task definition is found only when it is the same).
                .filter(|o| o.fixed == self.fixed)
                .filter(|o| wanted.iter().all(|(k, v)| o.tags.get(*k) == Some(v)))
                .map(|o| (o.id.clone(), FakeOutputs { id: o.id.clone() })),
        )?;
        if let Some(f) = &found
            && cloud
                .inner
                .vanish_after_find
                .locked()
                .remove(ctx.resource())
        {
            cloud.remove(&f.id);
        }
        Ok(found)
    }
}

/// A fake resource whose logical name is unique in the cloud, as an IAM role's name is: a second live
/// instance is refused, so a replacement deletes the old one first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FakeUnique(pub FakeResource);

impl Resource for FakeUnique {
    type Outputs = FakeOutputs;
    const KIND: &'static str = "fake:unique";
    const SERVICE: &'static str = "fake";
    const UPDATES_IN_PLACE: bool = true;
    const DELETE_BEFORE_REPLACE: bool = true;

    fn force_new(&self, previous: &Self) -> crate::ForceNew {
        self.0.force_new(&previous.0)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        self.0.validate()
    }

    async fn create(&self, ctx: &Context) -> Result<FakeOutputs, ResourceError> {
        let cloud = ctx.extension::<FakeCloud>()?;
        if cloud.ghost_of(ctx.resource()).is_some() {
            cloud.count(|c| c.create += 1);
            return Err(ResourceError::Aws(crate::error::AwsError {
                operation: "FakeCreate".into(),
                code: Some("EntityAlreadyExists".into()),
                message: Some(format!("{} already exists", ctx.resource())),
                status: Some(409),
                class: crate::error::ErrorClass::Conflict,
                source: Box::new(std::io::Error::other("name held")),
            }));
        }
        let taken = cloud.objects().values().any(|o| {
            o.tags.get(crate::resource::STACK_TAG).map(String::as_str) == Some(ctx.stack())
                && o.tags
                    .get(crate::resource::RESOURCE_TAG)
                    .map(String::as_str)
                    == Some(ctx.resource())
        });
        if taken {
            return Err(fake_err(format!("{} already exists", ctx.resource())));
        }
        self.0.create(ctx).await
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &FakeOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        Ok(self.0.read(ctx, outputs).await?.map(|o| Observed {
            inputs: FakeUnique(o.inputs),
            outputs: o.outputs,
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &FakeOutputs,
    ) -> Result<FakeOutputs, ResourceError> {
        self.0.update(ctx, &previous.0, outputs).await
    }

    async fn delete(&self, ctx: &Context, outputs: &FakeOutputs) -> Result<(), ResourceError> {
        let cloud = ctx.extension::<FakeCloud>()?;
        let tags = cloud.objects().get(&outputs.id).map(|o| o.tags.clone());
        self.0.delete(ctx, outputs).await?;
        let hold = *cloud.inner.name_hold.locked();
        if let Some(tags) = tags.filter(|_| !hold.is_zero()) {
            let until = tokio::time::Instant::now() + hold;
            cloud
                .inner
                .ghosts
                .locked()
                .insert(ctx.resource().to_owned(), (until, tags));
        }
        Ok(())
    }

    /// By its name first, as IAM's `GetRole` (a deleted instance that still holds the name is
    /// claimed, and refused as another instance); then by its tags.
    async fn find(&self, ctx: &Context) -> Result<Option<FakeOutputs>, ResourceError> {
        let cloud = ctx.extension::<FakeCloud>()?;
        if let Some(tags) = cloud.ghost_of(ctx.resource()) {
            cloud.count(|c| c.read += 1);
            ctx.claim(
                ctx.resource(),
                tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )?;
        }
        self.0.find(ctx).await
    }

    async fn find_all(&self, ctx: &Context) -> Result<Vec<FakeOutputs>, ResourceError> {
        self.0.find_all(ctx).await
    }
}

/// The account and region a fake cloud lives in.
pub fn local_provider() -> crate::ProviderInfo {
    crate::ProviderInfo {
        account_id: "000000000000".into(),
        region: "local".into(),
    }
}

/// An engine over `store` that applies to `cloud` (in [`local_provider`]'s account). The fake cloud
/// shows what it makes at once, unless told otherwise ([`FakeCloud::create_late_of`],
/// [`FakeCloud::hide_from_next_finds`]): the engine's settle window is zero, so an interrupted
/// create is looked for once.
pub fn fake_engine(store: impl crate::StateStore + 'static, cloud: &FakeCloud) -> crate::Engine {
    crate::Engine::builder(store)
        .provider(local_provider())
        .extension(cloud.clone())
        .settle_window(Duration::ZERO)
        .build()
}

/// A context for resource `resource` of stack `stack`, with no AWS configuration: for unit tests of
/// code that takes a [`Context`] (tags, [`Context::claim`]).
pub fn context(stack: &str, resource: &str) -> Context {
    let shared = crate::resource::Shared {
        sdk_config: None,
        interceptors: Vec::new(),
        extensions: HashMap::new(),
        clients: Mutex::default(),
        events: crate::events::EventSink::new(Vec::new()),
        retry: crate::resource::RetryPolicy::default(),
        settle_window: Duration::ZERO,
        identity: tokio::sync::OnceCell::new(),
    };
    Context::new(
        Arc::new(shared),
        stack,
        resource,
        crate::resource::CancellationToken::new(),
    )
}

/// One node of a [`FakeStack`]: its name, value, fixed part, and the nodes it depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeNode {
    /// Logical name.
    pub name: String,
    /// Updatable value.
    pub value: String,
    /// Force-new part.
    pub fixed: String,
    /// Indexes of earlier nodes it depends on.
    pub deps: Vec<usize>,
    /// Resources of other stacks it depends on: (stack, logical name).
    pub uses: Vec<(String, String)>,
    /// A [`FakeUnique`] (one live instance per name: replaced by deleting first) rather than a
    /// [`FakeResource`].
    pub unique: bool,
}

/// A stack of fake resources shaped by a list of nodes (a DAG: deps point to earlier nodes).
#[derive(Clone, Debug)]
pub struct FakeStack {
    /// The stack's name.
    pub name: String,
    /// The nodes.
    pub nodes: Vec<FakeNode>,
    /// Stacks it references.
    pub references: Vec<String>,
}

impl FakeStack {
    /// A chain of `n` resources, each depending on the one before.
    pub fn chain(name: &str, n: usize) -> Self {
        Self::from_deps(
            name,
            (0..n)
                .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
                .collect(),
        )
    }

    /// A stack with one node per entry of `deps` (each entry the earlier nodes it depends on).
    pub fn from_deps(name: &str, deps: Vec<Vec<usize>>) -> Self {
        Self {
            name: name.to_owned(),
            nodes: deps
                .into_iter()
                .enumerate()
                .map(|(i, deps)| FakeNode {
                    name: format!("r{i}"),
                    value: "v1".into(),
                    fixed: String::new(),
                    deps,
                    uses: Vec::new(),
                    unique: false,
                })
                .collect(),
            references: Vec::new(),
        }
    }

    /// Node `node` also depends on resource `resource` of stack `stack` (which this stack then
    /// references).
    #[must_use]
    pub fn using(mut self, node: usize, stack: &str, resource: &str) -> Self {
        self.nodes[node]
            .uses
            .push((stack.to_owned(), resource.to_owned()));
        if !self.references.iter().any(|r| r == stack) {
            self.references.push(stack.to_owned());
        }
        self
    }
}

impl Stack for FakeStack {
    type Outputs = BTreeMap<String, String>;

    fn name(&self) -> &str {
        &self.name
    }

    fn register(registry: &mut Registry) {
        registry.add::<FakeResource>();
        registry.add::<FakeUnique>();
    }

    fn declare(&self, s: &mut Scope) -> Result<Declared<Self::Outputs>, Error> {
        // Each node's name and the reference to its id.
        let mut ids: Vec<(String, crate::Ref<String>)> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let deps = node
                .deps
                .iter()
                .filter_map(|&d| ids.get(d))
                .map(|(_, id)| Input::from(id))
                .chain(node.uses.iter().map(|(stack, resource)| {
                    Input::from(crate::Ref::<String>::new(resource, "id").in_stack(stack))
                }))
                .collect();
            let r = FakeResource {
                value: node.value.clone(),
                fixed: node.fixed.clone(),
                deps,
            };
            let id = if node.unique {
                s.add(node.name.clone(), FakeUnique(r)).id.clone()
            } else {
                s.add(node.name.clone(), r).id.clone()
            };
            ids.push((node.name.clone(), id));
        }
        Ok(s.outputs(move |o| {
            ids.iter()
                .map(|(name, id)| Ok((name.clone(), o.get(id)?)))
                .collect()
        }))
    }

    fn references(&self) -> Vec<String> {
        self.references.clone()
    }
}

/// A resource kind's inputs from JSON (as recorded in state): a sample for a unit test.
///
/// # Panics
/// When `inputs` is not a valid `R`.
pub fn inputs<R: serde::de::DeserializeOwned>(inputs: serde_json::Value) -> R {
    serde_json::from_value(inputs).expect("the sample inputs are of the kind")
}

/// What changing input `field` of `base` to `value` forces ([`Resource::force_new`]): for unit
/// tests of a kind's replacement rule.
///
/// ```
/// use platform_core::testing::{FakeResource, forced_by, replaces};
/// let base = FakeResource { value: "v".into(), fixed: "f".into(), deps: vec![] };
/// assert_eq!(forced_by(&base, "fixed", "g".into()), replaces("fixed"));
/// assert_eq!(forced_by(&base, "value", "w".into()), platform_core::ForceNew::none());
/// ```
///
/// # Panics
/// When `base` with that field changed is not a valid `R`.
pub fn forced_by<R: Resource>(base: &R, field: &str, value: serde_json::Value) -> crate::ForceNew {
    let mut changed = serde_json::to_value(base).expect("inputs serialise");
    changed[field] = value;
    inputs::<R>(changed).force_new(base)
}

/// The [`ForceNew`](crate::ForceNew) of a change to `field` alone, when it cannot change in place.
pub fn replaces(field: &'static str) -> crate::ForceNew {
    crate::ForceNew::none().field(field, true)
}
