//! The step protocol: an intent recorded before each mutating call, its result after; creates that
//! never duplicate, updates, deletes, settles.

use crate::sync::Locked;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::{Error, ResourceError};
use crate::events::Event;
use crate::plan::Action;
use crate::resource::{Context, KindOps, Published};
use crate::state::{Deposed, Pending, PendingOp, ResourceState};
use crate::types::BoxFuture;

use super::executor::RunInner;

/// Updates a settle sends, each after reading what is still different.
const SETTLE_UPDATES: u32 = 2;

/// How long finds go on after a create whose outcome is unknown, in the same run: 4 finds, at 0,
/// 0.25, 0.75 and 1.75 s. (If none finds it, the run stops; the next run looks over the whole settle
/// window before it creates.)
const SETTLE_SAME_RUN: Duration = Duration::from_millis(1750);
const SETTLE_FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between two finds.
const SETTLE_MAX_DELAY: Duration = Duration::from_secs(5);

/// How long after a create was sent the instance it made may still be invisible to AWS's list and
/// describe calls (or may still be made, by a request whose sender died): 2 minutes, the
/// propagation timeout Terraform's AWS provider waits for a new resource to be found
/// (`tfresource.RetryWhenNewResourceNotFound`, `PropagationTimeout`); EC2's `Describe*` calls are
/// eventually consistent
/// (<https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>), IAM's changes
/// propagate in seconds, "in rare cases minutes". See [`EngineBuilder::settle_window`](super::EngineBuilder::settle_window).
pub const DEFAULT_SETTLE_WINDOW: Duration = Duration::from_secs(120);

/// A new instance token: 128 random bits as 32 hex characters.
fn new_token() -> String {
    format!("{:032x}", fastrand::u128(..))
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl RunInner {
    pub(super) async fn forward(
        &self,
        decl: &crate::stack::Declaration,
        action: &Action,
    ) -> Result<(), Error> {
        let name = decl.name.as_str();
        let ops = self.ops_for(name, decl.kind)?;
        let inputs = self.resolve_inputs(decl).await?;
        let recorded = self.state.lock().await.resources.get(name).cloned();
        let outputs = match action {
            Action::Update { .. } => {
                let Some(rec) = recorded.filter(|r| r.outputs.is_some()) else {
                    return self.create(&ops, decl, inputs, None).await;
                };
                let previous_outputs = rec.outputs.clone().unwrap_or(Value::Null);
                let changed = !changed_fields(&rec.inputs, &inputs).is_empty();
                // A create that published its outputs and did not finish configuring the resource
                // (see `Context::publish`) left an update pending with the inputs it was given.
                let unfinished = rec
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.op == PendingOp::Update);
                if !changed && !unfinished {
                    previous_outputs
                } else {
                    self.intent(name, PendingOp::Update).await?;
                    let _permits = self.limits.acquire(ops.service).await;
                    let out = if !changed {
                        // What it did is not known: read it and update what differs.
                        self.converge(&ops, name, &inputs, previous_outputs, None)
                            .await?
                    } else {
                        self.update(&ops, name, &inputs, rec.inputs.clone(), previous_outputs)
                            .await?
                    };

                    let deps = decl.dependencies.clone();
                    let uses = decl.uses();
                    let (i2, o2) = (inputs, out.clone());
                    self.record(name, |s| {
                        if let Some(r) = s.resources.get_mut(name) {
                            r.inputs = i2;
                            r.outputs = Some(o2);
                            r.dependencies = deps;
                            r.uses = uses;
                            r.pending = None;
                        }
                    })
                    .await?;
                    out
                }
            }
            Action::Create { .. } | Action::Replace { .. } => {
                return self.create(&ops, decl, inputs, recorded).await;
            }
            // Kept resources are published by `apply`; deletes are steps of their own.
            Action::Same | Action::Delete | Action::DeleteDeposed => return Ok(()),
        };
        self.outputs.locked().insert(name.to_owned(), outputs);
        Ok(())
    }

    pub(super) async fn intent(&self, name: &str, op: PendingOp) -> Result<(), Error> {
        self.record(name, |s| {
            if let Some(r) = s.resources.get_mut(name) {
                r.pending = Some(Pending {
                    op,
                    since: now(),
                    instance: None,
                    answered: false,
                });
            }
        })
        .await
    }

    /// Creates `decl` (a new resource, or the new instance of a replaced one).
    ///
    /// # Guarantees
    /// - The new instance's token is recorded in the intent before the create is sent; the resource
    ///   is tagged with it and gets it as the API's idempotency token where there is one.
    /// - A create whose intent was recorded but not its result (a crash) is settled by `find`, with
    ///   the recorded token, before anything is sent.
    /// - A create whose outcome is unknown (lost response, 5xx, "already exists") is settled by
    ///   `find`, never sent again in the same run.
    pub(super) async fn create(
        &self,
        ops: &KindOps,
        decl: &crate::stack::Declaration,
        inputs: Value,
        recorded: Option<ResourceState>,
    ) -> Result<(), Error> {
        let name = decl.name.as_str();
        // A create whose intent was recorded but whose result was not: the instance may exist. It is
        // looked for with the token it was given (none in state written before tokens). (A pending
        // create never has outputs: its intent moves the current instance to `deposed`.)
        let interrupted: Option<Option<String>> = recorded
            .as_ref()
            .and_then(|r| r.pending.as_ref())
            .filter(|p| p.op == PendingOp::Create)
            .map(|p| p.instance.clone());
        // The same token again: an instance the interrupted create makes late carries it.
        let token = interrupted.clone().flatten().unwrap_or_else(new_token);
        let deps = decl.dependencies.clone();
        let uses = decl.uses();
        let kind = decl.kind.to_owned();
        let intent_inputs = inputs.clone();
        let intent_token = token.clone();
        self.record(name, |s| {
            let entry = s
                .resources
                .entry(name.to_owned())
                .or_insert_with(|| ResourceState::new(kind.clone(), Value::Null));
            // The current instance, if any, is deposed: deleted once dependents are re-pointed.
            if let Some(old) = entry.outputs.take() {
                entry.deposed.push(Deposed {
                    kind: entry.kind.clone(),
                    inputs: std::mem::take(&mut entry.inputs),
                    outputs: old,
                    instance: entry.instance.take(),
                    pending: None,
                });
            }
            entry.kind = kind;
            entry.inputs = intent_inputs;
            entry.dependencies = deps;
            entry.uses = uses;
            entry.instance = None;
            entry.made = None;
            entry.pending = Some(Pending {
                op: PendingOp::Create,
                since: now(),
                instance: Some(intent_token),
                answered: false,
            });
        })
        .await?;
        let ctx = self.ctx(name).for_instance(Some(&token));
        let _permits = self.limits.acquire(ops.service).await;
        // The inputs the interrupted create was sent with, when what it made cannot be brought to
        // the declared ones in place: recorded with the instance, so the next plan replaces it.
        let mut made_with: Option<Value> = None;
        let earlier = match (
            &interrupted,
            recorded.as_ref().and_then(|r| r.pending.as_ref()),
        ) {
            (Some(token), Some(intent)) => {
                // With the inputs the interrupted create was sent with, over the settle window
                // counted from its intent: AWS may show it late, or carry it out late.
                let sent_inputs = recorded
                    .as_ref()
                    .map(|r| &r.inputs)
                    .filter(|i| !i.is_null())
                    .unwrap_or(&inputs);
                let find_ctx = self.ctx(name).for_instance(token.as_deref());
                let until = self.settle_deadline(intent);
                if until > tokio::time::Instant::now() {
                    find_ctx.progress(format!(
                        "an earlier run was interrupted creating this: looking for what it made \
                         for up to {} before creating it",
                        humantime::format_duration(round_secs(until - tokio::time::Instant::now()))
                    ));
                }
                let found = self
                    .find_until(ops, name, &find_ctx, sent_inputs, until)
                    .await?;
                if found.is_some() {
                    let (_, forced) = changes_between(ops, sent_inputs, &inputs)
                        .map_err(|e| self.fail(name, "find", e))?;
                    if !forced.is_empty() {
                        made_with = Some(sent_inputs.clone());
                    }
                }
                found
            }
            _ => None,
        };
        // A create AWS refuses because the name exists while nothing with this create's token holds
        // it (the instance a replacement just deleted, still shown by AWS): sent again until the
        // settle window has passed.
        let started = tokio::time::Instant::now();
        let mut delay = SETTLE_FIRST_DELAY;
        let found = match earlier {
            Some(found) => found,
            None => loop {
                break match self
                    .create_publishing(ops, name, &token, &ctx, &inputs)
                    .await?
                {
                    (Ok(outputs), early) => {
                        if early.as_ref().is_some_and(|early| *early != outputs) {
                            let e = ResourceError::Failed {
                                message: format!(
                                    "the {} create published outputs other than those it returned \
                                 (a bug in the resource kind): {} then {outputs}",
                                    decl.kind,
                                    early.unwrap_or_default()
                                ),
                            };
                            return Err(self.fail(name, "create", e));
                        }
                        return self.created(name, &token, outputs).await;
                    }
                    (Err(e), _) if e.outcome_unknown() => {
                        match self.settle(ops, name, &ctx, &inputs).await? {
                            Some(found) => found,
                            None if e.is_already_exists() => {
                                let waited = started.elapsed();
                                let window = self.shared.settle_window;
                                if waited >= window {
                                    let source = Box::new(e);
                                    let waited = round_secs(waited);
                                    let e = ResourceError::NameHeld { source, waited };
                                    return Err(self.fail(name, "create", e));
                                }
                                ctx.progress(format!(
                                    "{}: the name is held by an instance this create did not make; \
                                 AWS may still show one just deleted: creating again (waited {}, \
                                 up to {})",
                                    e.aws_code().unwrap_or("already exists"),
                                    humantime::format_duration(round_secs(waited)),
                                    humantime::format_duration(window),
                                ));
                                ctx.sleep(delay.min(window - waited))
                                    .await
                                    .map_err(|e| self.fail(name, "create", e))?;
                                delay = (delay * 2).min(SETTLE_MAX_DELAY);
                                continue;
                            }
                            None => {
                                let source = Box::new(e);
                                let e = ResourceError::OutcomeUnknown { source };
                                return Err(self.fail(name, "create", e));
                            }
                        }
                    }
                    (Err(e), _) => {
                        // Answered: nothing of this create lands later.
                        self.record(name, |s| {
                            let pending =
                                s.resources.get_mut(name).and_then(|r| r.pending.as_mut());
                            if let Some(p) = pending.filter(|p| p.op == PendingOp::Create) {
                                p.answered = true;
                            }
                        })
                        .await?;
                        return Err(self.fail(name, "create", e));
                    }
                };
            },
        };
        self.shared.events.emit(Event::Adopted {
            stack: self.stack.clone(),
            resource: name.to_owned(),
        });
        // An adopted resource may be half-configured (the create failed after the first call):
        // bring what can change in place to the declared inputs. One deleted since it was found is
        // not recorded: the intent stays, and the next run looks for it (or creates it) again.
        let gone = ResourceError::Failed {
            message: format!(
                "the {} found for this create was gone when it was read (deleted meanwhile); nothing was recorded: the next run looks for it again, then creates it",
                decl.kind
            ),
        };
        let outputs = self.converge(ops, name, &inputs, found, Some(gone)).await?;
        (ops.adopted)(self.ctx(name), inputs, outputs.clone())
            .await
            .map_err(|e| self.fail(name, "create", e))?;
        if let Some(sent) = made_with {
            self.record(name, |s| {
                if let Some(r) = s.resources.get_mut(name) {
                    r.inputs = sent;
                }
            })
            .await?;
        }
        self.created(name, &token, outputs).await
    }

    /// Sends the create of `name` (instance `token`), recording the outputs it publishes early
    /// (see [`Context::publish`]) while it goes on. Returns the create's result and the outputs
    /// published, if any; an error when recording them failed (the create was told to stop).
    pub(super) async fn create_publishing(
        &self,
        ops: &KindOps,
        name: &str,
        token: &str,
        ctx: &Context,
        inputs: &Value,
    ) -> Result<(Result<Value, ResourceError>, Option<Value>), Error> {
        let (publisher, mut published) = mpsc::unbounded_channel::<Published>();
        let mut call: BoxFuture<'static, Result<Value, ResourceError>> =
            (ops.create)(ctx.clone().publishing_to(publisher), inputs.clone());
        let mut early: Option<Value> = None;
        let mut failed: Option<Error> = None;
        let result = loop {
            tokio::select! {
                result = &mut call => break result,
                Some((outputs, ack)) = published.recv() => {
                    if let Some(e) = &failed {
                        let _ = ack.send(Err(e.to_string()));
                    } else if early.is_some() {
                        // A second publish does nothing.
                        let _ = ack.send(Ok(()));
                    } else {
                        match self.published(name, token, &outputs).await {
                            Ok(()) => {
                                let _ = ack.send(Ok(()));
                                early = Some(outputs);
                            }
                            Err(e) => {
                                let _ = ack.send(Err(e.to_string()));
                                failed = Some(e);
                            }
                        }
                    }
                }
            }
        };
        match failed {
            Some(e) => Err(e),
            None => Ok((result, early)),
        }
    }

    /// Records the outputs a create of instance `token` published before it ended, with its
    /// configuration pending (an update), and starts what depends on them.
    pub(super) async fn published(
        &self,
        name: &str,
        token: &str,
        outputs: &Value,
    ) -> Result<(), Error> {
        let configuring = Pending {
            op: PendingOp::Update,
            since: now(),
            instance: None,
            answered: false,
        };
        self.made(name, token, outputs.clone(), Some(configuring))
            .await?;
        if let Some(group) = &self.links.group {
            group.applied(&self.stack, name, outputs.clone());
        }
        if let Some(early) = self.early.locked().as_ref() {
            let _ = early.send(name.to_owned());
        }
        Ok(())
    }

    /// Records the outputs of a create (or an adoption) of instance `token` and publishes them.
    pub(super) async fn created(
        &self,
        name: &str,
        token: &str,
        outputs: Value,
    ) -> Result<(), Error> {
        self.made(name, token, outputs, None).await
    }

    /// Records that instance `token` of `name` exists with `outputs` (and `pending`: what is left to
    /// do to it, if anything), and makes the outputs this run's.
    async fn made(
        &self,
        name: &str,
        token: &str,
        outputs: Value,
        pending: Option<Pending>,
    ) -> Result<(), Error> {
        let recorded = outputs.clone();
        self.record(name, |s| {
            if let Some(r) = s.resources.get_mut(name) {
                r.outputs = Some(recorded);
                r.instance = Some(token.to_owned());
                r.made = Some(now());
                r.pending = pending;
            }
        })
        .await?;
        self.outputs.locked().insert(name.to_owned(), outputs);
        Ok(())
    }

    /// After a create whose outcome is unknown: looks for the instance it may have made, a few times
    /// over about two seconds, since a just-created resource can take that long to show in AWS's
    /// list and describe calls (EC2's `Describe*` are eventually consistent:
    /// <https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>).
    pub(super) async fn settle(
        &self,
        ops: &KindOps,
        name: &str,
        ctx: &Context,
        inputs: &Value,
    ) -> Result<Option<Value>, Error> {
        let until = tokio::time::Instant::now() + SETTLE_SAME_RUN;
        self.find_until(ops, name, ctx, inputs, until).await
    }

    /// Until when the instance an unfinished create (intent `intent`) may have made is looked for:
    /// the settle window counted from the intent, or [`SETTLE_SAME_RUN`] from now when AWS answered
    /// the create (nothing of it lands later). An intent whose time cannot be read, or lies ahead
    /// (another machine's clock), gets the whole window.
    fn settle_deadline(&self, intent: &Pending) -> tokio::time::Instant {
        if intent.answered {
            return tokio::time::Instant::now() + SETTLE_SAME_RUN;
        }
        let elapsed = humantime::parse_rfc3339(&intent.since)
            .ok()
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        tokio::time::Instant::now() + self.shared.settle_window.saturating_sub(elapsed)
    }

    /// Looks for the instance `ctx` names until it is found or `until` has passed (one find at
    /// least), waiting 0.25 s after the first find, twice as long after each next one, at most
    /// [`SETTLE_MAX_DELAY`].
    ///
    /// # Errors
    /// A find's error; [`Error::Cancelled`] (through [`ResourceError::Cancelled`]) when the run is
    /// cancelled while it waits.
    async fn find_until(
        &self,
        ops: &KindOps,
        name: &str,
        ctx: &Context,
        inputs: &Value,
        until: tokio::time::Instant,
    ) -> Result<Option<Value>, Error> {
        let mut delay = SETTLE_FIRST_DELAY;
        loop {
            let found = match (ops.find)(ctx.clone(), inputs.clone()).await {
                Ok(found) => found,
                // What holds the name is not what this create made: not found (yet).
                Err(ResourceError::OtherInstance { .. }) => None,
                Err(e @ ResourceError::Ambiguous { .. }) => {
                    return self.keep_one(ops, name, ctx, inputs, e).await.map(Some);
                }
                Err(e) => return Err(self.fail(name, "find", e)),
            };
            let now = tokio::time::Instant::now();
            if found.is_some() || now >= until {
                return Ok(found);
            }
            ctx.sleep(delay.min(until - now))
                .await
                .map_err(|e| self.fail(name, "find", e))?;
            delay = (delay * 2).min(SETTLE_MAX_DELAY);
        }
    }

    /// Several instances carry this create's token (AWS carried it out twice: once late): they
    /// are all ours. Keeps the first (by id) and deletes the others, saying so; `ambiguous` is the
    /// error when the kind cannot list them ([`Resource::find_all`](crate::Resource::find_all)).
    async fn keep_one(
        &self,
        ops: &KindOps,
        name: &str,
        ctx: &Context,
        inputs: &Value,
        ambiguous: ResourceError,
    ) -> Result<Value, Error> {
        let mut all = (ops.find_all)(ctx.clone(), inputs.clone())
            .await
            .map_err(|e| self.fail(name, "find", e))?
            .into_iter();
        let (Some(kept), true) = (all.next(), all.len() > 0) else {
            return Err(self.fail(name, "find", ambiguous));
        };
        for twin in all {
            ctx.progress(format!(
                "deleting {twin}: it carries this create's instance token too (AWS carried the \
                 create out twice), keeping {kept}"
            ));
            (ops.delete)(ctx.clone(), inputs.clone(), twin)
                .await
                .map_err(|e| self.fail(name, "delete", e))?;
        }
        Ok(kept)
    }

    /// Before a destroy's deletes: deletes whatever carries the tags of one of `recorded`'s
    /// instances (the stack, the resource and an instance token this state gave out) but is not a
    /// recorded instance: a twin, made by a create AWS carried out again or late, after its run had
    /// settled. First, so that the recorded instances they sit in (a VPC) can then go; for the kinds
    /// AWS lists by tag ([`Resource::find_all`](crate::Resource::find_all)). The token keeps the
    /// sweep to this deployment's instances: another deployment of a stack of the same name in the
    /// account has tokens of its own. The lists are sent at once (within the limits: they only
    /// read), the deletes then made dependents first. Returns how many it deleted, each reported as
    /// progress.
    pub(super) async fn sweep(self: &Arc<Self>, recorded: &[Swept]) -> Result<usize, Error> {
        let order = dependents_first(recorded);
        let mut lists = tokio::task::JoinSet::new();
        for (at, r) in order.iter().enumerate() {
            for token in &r.tokens {
                let (me, name, kind) = (self.clone(), r.name.clone(), r.kind.clone());
                let (inputs, token) = (r.inputs.clone(), token.clone());
                lists.spawn(async move {
                    let ops = me.ops_for(&name, &kind)?;
                    let ctx = me.ctx(&name).for_instance(Some(&token));
                    let _permits = me.limits.acquire(ops.service).await;
                    let found = (ops.find_all)(ctx, inputs)
                        .await
                        .map_err(|e| me.fail(&name, "find", e))?;
                    Ok::<_, Error>((at, token, found))
                });
            }
        }
        let mut found: Vec<Vec<(String, Vec<Value>)>> = vec![Vec::new(); order.len()];
        while let Some(joined) = lists.join_next().await {
            let (at, token, outputs) = joined.map_err(super::join_error)??;
            found[at].push((token, outputs));
        }
        let mut swept = 0;
        for (r, mut by_token) in order.into_iter().zip(found) {
            by_token.sort_by(|a, b| a.0.cmp(&b.0));
            let ops = self.ops_for(&r.name, &r.kind)?;
            for (token, outputs) in by_token {
                let ctx = self.ctx(&r.name).for_instance(Some(&token));
                for outputs in outputs.into_iter().filter(|o| !r.recorded.contains(o)) {
                    ctx.progress(format!(
                        "deleting {outputs}: it carries this resource's tags and instance token but \
                         was in no state (a create AWS carried out again, late)"
                    ));
                    let _permits = self.limits.acquire(ops.service).await;
                    (ops.delete)(ctx.clone(), r.inputs.clone(), outputs)
                        .await
                        .map_err(|e| self.fail(&r.name, "delete", e))?;
                    swept += 1;
                }
            }
        }
        Ok(swept)
    }

    /// Updates `name` in place from `previous` to `inputs`. An update whose outcome is unknown (a
    /// lost response, a 5xx, "already exists") is settled by reading the resource and updating only
    /// what is still different, once: a sub-step AWS already carried out is not sent again.
    pub(super) async fn update(
        &self,
        ops: &KindOps,
        name: &str,
        inputs: &Value,
        previous: Value,
        outputs: Value,
    ) -> Result<Value, Error> {
        match (ops.update)(self.ctx(name), inputs.clone(), previous, outputs.clone()).await {
            Ok(out) => Ok(out),
            Err(e) if e.outcome_unknown() => {
                self.converge(ops, name, inputs, outputs, Some(e)).await
            }
            Err(e) => Err(self.fail(name, "update", e)),
        }
    }

    /// Reads `name` live and updates in place what differs from `inputs` (fields that force a
    /// replacement are left as they are), reading again after an update whose outcome is unknown:
    /// at most [`SETTLE_UPDATES`] updates. `after` is the error that made a settle necessary: it is
    /// returned when the resource turns out to be gone.
    pub(super) async fn converge(
        &self,
        ops: &KindOps,
        name: &str,
        inputs: &Value,
        mut outputs: Value,
        mut after: Option<ResourceError>,
    ) -> Result<Value, Error> {
        let mut updates = 0;
        // An instance made within the settle window may not show yet: read again until then. One
        // found for an unfinished create was made after that create's intent: read again until
        // the window from the intent has passed (AWS may show it to the find and not yet to the
        // read). One whose time is not known at all, briefly.
        let made = (self.state.lock().await.resources.get(name)).and_then(|r| {
            r.made.clone().or_else(|| {
                r.pending
                    .as_ref()
                    .filter(|p| p.op == PendingOp::Create)
                    .map(|p| p.since.clone())
            })
        });
        let shown_by = visible_by(made.as_deref(), self.shared.settle_window)
            .unwrap_or_else(|| tokio::time::Instant::now() + SETTLE_SAME_RUN);
        loop {
            let ctx = self.ctx(name);
            let live = read_until_shown(&ctx, Some(shown_by), || {
                (ops.read)(ctx.clone(), inputs.clone(), outputs.clone())
            })
            .await
            .map_err(|e| self.fail(name, "read", e))?;
            let Some((live_inputs, live_outputs)) = live else {
                return match after {
                    Some(e) => Err(self.fail(name, "update", e)),
                    None => Ok(outputs),
                };
            };
            // What cannot change in place is left as it is (the plan replaces for it).
            let (changed, forced) = changes_between(ops, &live_inputs, inputs)
                .map_err(|e| self.fail(name, "update", e))?;
            if changed.len() == forced.len() {
                return Ok(live_outputs);
            }
            if updates == SETTLE_UPDATES
                && let Some(e) = after
            {
                return Err(self.fail(name, "update", e));
            }
            updates += 1;
            let update = (ops.update)(
                self.ctx(name),
                inputs.clone(),
                live_inputs,
                live_outputs.clone(),
            );
            match update.await {
                Ok(out) => return Ok(out),
                Err(e) if e.outcome_unknown() => {
                    after = Some(e);
                    outputs = live_outputs;
                }
                Err(e) => return Err(self.fail(name, "update", e)),
            }
        }
    }

    /// Deletes the current instance of `name` and forgets it.
    pub(super) async fn delete_current(&self, name: &str) -> Result<(), Error> {
        let Some(rec) = self.state.lock().await.resources.get(name).cloned() else {
            return Ok(());
        };
        let ops = self.ops_for(name, &rec.kind)?;
        if let Some(outputs) = rec.outputs.clone() {
            self.intent(name, PendingOp::Delete).await?;
            let _permits = self.limits.acquire(ops.service).await;
            // Made within the settle window: AWS may not show it yet, and a delete that reads it
            // first must not take that for gone.
            let ctx = self
                .ctx(name)
                .unseen_until(visible_by(rec.made.as_deref(), self.shared.settle_window));
            (ops.delete)(ctx, rec.inputs.clone(), outputs)
                .await
                .map_err(|e| self.fail(name, "delete", e))?;
        } else if rec.pending.is_some() {
            // An interrupted create: delete what it may have made.
            let _permits = self.limits.acquire(ops.service).await;
            // Over the settle window: what it made may show, or be made, late.
            let pending = rec.pending.as_ref();
            let token = pending.and_then(|p| p.instance.as_deref());
            let until = pending.map_or_else(
                || tokio::time::Instant::now() + SETTLE_SAME_RUN,
                |p| self.settle_deadline(p),
            );
            let ctx = self.ctx(name).for_instance(token);
            if let Some(outputs) = self
                .find_until(&ops, name, &ctx, &rec.inputs, until)
                .await?
            {
                // Just made, perhaps: as above.
                let ctx = self.ctx(name).unseen_until(Some(until));
                (ops.delete)(ctx, rec.inputs.clone(), outputs)
                    .await
                    .map_err(|e| self.fail(name, "delete", e))?;
            }
        }
        self.record(name, |s| {
            if let Some(r) = s.resources.get_mut(name) {
                if r.deposed.is_empty() {
                    s.resources.remove(name);
                } else {
                    r.outputs = None;
                    r.pending = None;
                }
            }
        })
        .await
    }

    /// Deletes the deposed (replaced) instances of `name`.
    pub(super) async fn delete_deposed(&self, name: &str) -> Result<(), Error> {
        let deposed = self
            .state
            .lock()
            .await
            .resources
            .get(name)
            .map(|r| r.deposed.clone())
            .unwrap_or_default();
        for old in deposed {
            let ops = self.ops_for(name, &old.kind)?;
            // The intent, as for any delete: a crash now leaves a record that this delete started.
            self.record(name, |s| {
                if let Some(d) = s
                    .resources
                    .get_mut(name)
                    .and_then(|r| r.deposed.iter_mut().find(|d| d.outputs == old.outputs))
                {
                    d.pending = Some(Pending {
                        op: PendingOp::Delete,
                        since: now(),
                        instance: None,
                        answered: false,
                    });
                }
            })
            .await?;
            {
                let _permits = self.limits.acquire(ops.service).await;
                let ctx = self.ctx(name).for_instance(old.instance.as_deref());
                (ops.delete)(ctx, old.inputs.clone(), old.outputs.clone())
                    .await
                    .map_err(|e| self.fail(name, "delete", e))?;
            }
            self.record(name, |s| {
                if let Some(r) = s.resources.get_mut(name) {
                    if let Some(pos) = r.deposed.iter().position(|d| d.outputs == old.outputs) {
                        r.deposed.remove(pos);
                    }
                    if r.deposed.is_empty() && r.outputs.is_none() && r.pending.is_none() {
                        s.resources.remove(name);
                    }
                }
            })
            .await?;
        }
        Ok(())
    }
}

/// A resource a destroy deleted, as its state recorded it: what the sweep looks for.
pub(super) struct Swept {
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) inputs: Value,
    pub(super) dependencies: Vec<String>,
    /// The instance tokens the state gave out for it: its instance's, an unfinished create's, its
    /// deposed instances'.
    pub(super) tokens: Vec<String>,
    /// The outputs of the instances it records (current and deposed): those are not twins.
    pub(super) recorded: Vec<Value>,
}

impl Swept {
    /// What the sweep looks for of resource `name`, recorded as `r`.
    pub(super) fn of(name: &str, r: &ResourceState) -> Self {
        let mut tokens: Vec<String> = r
            .instance
            .iter()
            .chain(r.pending.as_ref().and_then(|p| p.instance.as_ref()))
            .chain(r.deposed.iter().filter_map(|d| d.instance.as_ref()))
            .cloned()
            .collect();
        tokens.sort();
        tokens.dedup();
        Self {
            name: name.to_owned(),
            kind: r.kind.clone(),
            inputs: r.inputs.clone(),
            dependencies: r.dependencies.clone(),
            tokens,
            recorded: r
                .outputs
                .iter()
                .chain(r.deposed.iter().map(|d| &d.outputs))
                .cloned()
                .collect(),
        }
    }
}

/// `recorded` ordered so that each resource comes before those it depends on.
fn dependents_first(recorded: &[Swept]) -> Vec<&Swept> {
    let mut left: Vec<&Swept> = recorded.iter().collect();
    let mut order = Vec::with_capacity(left.len());
    while !left.is_empty() {
        // Those no remaining resource depends on; all of them when a cycle is left (none is).
        let (free, used): (Vec<&Swept>, Vec<&Swept>) = left.iter().partition(|r| {
            !left
                .iter()
                .any(|other| other.dependencies.contains(&r.name))
        });
        if free.is_empty() {
            order.extend(used);
            break;
        }
        order.extend(free);
        left = used;
    }
    order
}

/// The top-level fields that differ from `old` to `new`, and those of them that `ops`'s replacement
/// rule says cannot change in place.
fn changes_between(
    ops: &KindOps,
    old: &Value,
    new: &Value,
) -> Result<(Vec<String>, Vec<String>), ResourceError> {
    let changed = changed_fields(old, new);
    if changed.is_empty() {
        return Ok((changed, Vec::new()));
    }
    let forced = (ops.force_new)(new, old)?.forced(changed.iter().cloned());
    Ok((changed, forced))
}

/// Until when an instance made at `made` (RFC 3339) may not show in AWS's describes yet: the end of
/// the settle window counted from then; `None` when the time is not recorded or cannot be read.
pub(super) fn visible_by(made: Option<&str>, window: Duration) -> Option<tokio::time::Instant> {
    let made = humantime::parse_rfc3339(made?).ok()?;
    let age = std::time::SystemTime::now()
        .duration_since(made)
        .unwrap_or_default();
    Some(tokio::time::Instant::now() + window.saturating_sub(age))
}

/// Reads an instance with `read`, and reads again while it reads as gone before `shown_by` (AWS may
/// not show an instance made within the settle window yet): 0.25 s after the first read, twice as
/// long after each next one, at most [`SETTLE_MAX_DELAY`], never past `shown_by`. The last answer,
/// or the first error; [`ResourceError::Cancelled`] when the run is cancelled while it waits.
pub(super) async fn read_until_shown<T, Fut>(
    ctx: &Context,
    shown_by: Option<tokio::time::Instant>,
    mut read: impl FnMut() -> Fut,
) -> Result<Option<T>, ResourceError>
where
    Fut: Future<Output = Result<Option<T>, ResourceError>>,
{
    let mut delay = SETTLE_FIRST_DELAY;
    loop {
        let live = read().await?;
        let now = tokio::time::Instant::now();
        match shown_by {
            Some(until) if live.is_none() && now < until => {
                ctx.sleep(delay.min(until - now)).await?;
                delay = (delay * 2).min(SETTLE_MAX_DELAY);
            }
            _ => return Ok(live),
        }
    }
}

/// `d` to the second (for messages).
fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// Top-level fields that differ between two input objects.
fn changed_fields(old: &Value, new: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let mut fields: Vec<String> = n
        .iter()
        // A new field that is null is no change (an optional field added to the type).
        .filter(|(k, v)| (o.contains_key(*k) || !v.is_null()) && o.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(
            o.iter()
                .filter(|(k, v)| !n.contains_key(*k) && !v.is_null())
                .map(|(k, _)| k.clone()),
        )
        .collect();
    fields.sort();
    fields
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::changed_fields;

    #[test]
    fn changed_fields_are_the_top_level_fields_whose_values_differ() {
        let old = json!({"a": 1, "b": [1, 2], "c": "x"});
        assert!(changed_fields(&old, &old).is_empty());
        let new = json!({"a": 2, "b": [1, 2], "c": "y"});
        assert_eq!(changed_fields(&old, &new), ["a", "c"]);
    }

    #[test]
    fn an_added_field_changes_unless_null_and_a_removed_one_unless_it_was_null() {
        let old = json!({"a": 1, "gone": "x", "was_null": null});
        let new = json!({"a": 1, "added": 5, "added_null": null});
        assert_eq!(changed_fields(&old, &new), ["added", "gone"]);
        assert!(changed_fields(&json!({"a": 1}), &json!({"a": 1, "n": null})).is_empty());
        assert_eq!(
            changed_fields(&json!({"a": 1, "n": 2}), &json!({"a": 1, "n": null})),
            ["n"]
        );
    }
}
