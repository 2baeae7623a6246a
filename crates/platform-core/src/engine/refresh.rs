//! Refresh and import: reading live resources and comparing them with the recorded state.

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ResourceError};
use crate::events::Event;
use crate::plan::{ExternalOutputs, Plan, plan_with};
use crate::policy::PlanDocument;
use crate::resource::{Context, Registry};
use crate::stack::{Desired, Stack};
use crate::state::{ResourceState, StackState};

use super::report::drifted_fields;
use super::{Drift, Engine, ImportReport, RefreshReport, join_error, released};

/// What a refresh found: the plan `up` would make against the live `state`, its document, what is
/// live, and the `drift`.
fn report(
    desired: &Desired,
    state: &StackState,
    external: &ExternalOutputs,
    drift: Vec<Drift>,
) -> Result<RefreshReport, Error> {
    let mut planned = Vec::new();
    let plan = plan_with(desired, state, None, external, Some(&mut planned))?;
    Ok(RefreshReport {
        plan,
        drift,
        document: PlanDocument::new(planned),
        live: PlanDocument::recorded([state]),
    })
}

impl Engine {
    /// Reads every recorded resource live, records what it found (drift, and resources deleted outside
    /// the engine), and returns the plan `up` would now make.
    ///
    /// # Errors
    /// As [`preview`](Self::preview), plus read failures.
    pub async fn refresh<S: Stack>(&self, stack: &S) -> Result<Plan, Error> {
        Ok(self.refresh_report(stack).await?.plan)
    }

    /// [`refresh`](Self::refresh), with what differed between the recorded state and the live
    /// resources ([`RefreshReport::drift`]): what `refresh --detailed-exitcode` gates on.
    ///
    /// # Errors
    /// As [`refresh`](Self::refresh).
    pub async fn refresh_report<S: Stack>(&self, stack: &S) -> Result<RefreshReport, Error> {
        let desired = Desired::of(stack)?;
        let name = stack.name();
        let (cancel, _cancel_guard) = self.run_token(None);
        if cancel.is_cancelled() {
            return Err(Error::Cancelled {
                stack: name.to_owned(),
                completed: 0,
                remaining: desired.resources.len(),
            });
        }
        let lock = self.lock_stack(name, "refresh", &cancel).await?;
        let result = async {
            let (state, _) = self.recorded(name).await?;
            let (mut state, drift) = self.read_live(&desired.registry, state, &cancel).await?;
            state.serial += 1;
            lock.write(&state).await?;
            let external = self.external_outputs(&desired, None).await?;
            report(&desired, &state, &external, drift)
        }
        .await;
        released(lock.as_ref(), result).await
    }

    /// [`preview`](Self::preview) against the live resources: reads every recorded resource first
    /// (in parallel, within the engine's bounds) and plans against what it found. Records nothing
    /// and takes no lock.
    ///
    /// # Errors
    /// As [`refresh`](Self::refresh).
    pub async fn preview_refreshed<S: Stack>(&self, stack: &S) -> Result<RefreshReport, Error> {
        let desired = Desired::of(stack)?;
        let (cancel, _cancel_guard) = self.run_token(None);
        let (state, _) = self.recorded(stack.name()).await?;
        let (state, drift) = self.read_live(&desired.registry, state, &cancel).await?;
        let external = self.external_outputs(&desired, None).await?;
        let report = report(&desired, &state, &external, drift)?;
        self.shared.events.emit(Event::Planned {
            stack: stack.name().to_owned(),
            counts: report.plan.counts(),
        });
        Ok(report)
    }

    /// Brings an existing resource under management as `resource` of `stack`: looks it up by `id`
    /// (its id, name or ARN, as its kind says), tags it as this stack's, reads it, and records it.
    /// The next `up` makes it match the declaration, and `preview` shows only the differences.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `stack` declares no `resource` (naming those it declares) or its
    /// kind cannot be imported; [`Error::AlreadyManaged`] when the state records it already;
    /// [`Error::ImportNotFound`] when nothing has that id. In each case the state is untouched.
    pub async fn import<S: Stack>(
        &self,
        stack: &S,
        resource: &str,
        id: &str,
    ) -> Result<ImportReport, Error> {
        let desired = Desired::of(stack)?;
        let name = stack.name();
        let Some(decl) = desired.resources.iter().find(|d| d.name == resource) else {
            let declared: Vec<&str> = desired.resources.iter().map(|d| d.name.as_str()).collect();
            return Err(Error::Invalid {
                stack: name.to_owned(),
                resource: resource.to_owned(),
                source: crate::ValidationError::new(
                    "resource",
                    format!("{name}/{resource}"),
                    format!(
                        "stack {name} declares no such resource (it declares {})",
                        declared.join(", ")
                    ),
                ),
            });
        };
        let ops = *desired.ops(decl.kind).ok_or_else(|| Error::UnknownKind {
            stack: name.to_owned(),
            resource: resource.to_owned(),
            kind: decl.kind.to_owned(),
        })?;
        let (cancel, _cancel_guard) = self.run_token(None);
        let lock = self.lock_stack(name, "import", &cancel).await?;
        let result = async {
            let (mut state, provider) = self.recorded(name).await?;
            if state
                .resources
                .get(resource)
                .is_some_and(|r| r.outputs.is_some())
            {
                return Err(Error::AlreadyManaged {
                    stack: name.to_owned(),
                    resource: resource.to_owned(),
                });
            }
            let failed = |source| Error::Resource {
                stack: name.to_owned(),
                resource: resource.to_owned(),
                action: "import",
                source: Box::new(source),
            };
            let not_found = || Error::ImportNotFound {
                stack: name.to_owned(),
                resource: resource.to_owned(),
                kind: decl.kind.to_owned(),
                id: id.to_owned(),
            };
            let ctx = Context::new(self.shared.clone(), name, resource, cancel.clone());
            let inputs = decl.inputs(name)?;
            let Some(outputs) = (ops.import)(ctx.clone(), inputs.clone(), id.to_owned())
                .await
                .map_err(|e| match e {
                    ResourceError::Invalid(source) => Error::Invalid {
                        stack: name.to_owned(),
                        resource: resource.to_owned(),
                        source,
                    },
                    other => failed(other),
                })?
            else {
                return Err(not_found());
            };
            let Some((inputs, outputs)) = (ops.read)(ctx, inputs, outputs).await.map_err(failed)?
            else {
                return Err(not_found());
            };
            state.resources.insert(
                resource.to_owned(),
                ResourceState {
                    kind: decl.kind.to_owned(),
                    inputs,
                    outputs: Some(outputs.clone()),
                    dependencies: decl.dependencies.clone(),
                    uses: decl.uses(),
                    instance: None,
                    made: None,
                    pending: None,
                    deposed: Vec::new(),
                },
            );
            state.provider = Some(provider);
            state.serial += 1;
            lock.write(&state).await?;
            Ok(ImportReport {
                stack: name.to_owned(),
                resource: resource.to_owned(),
                kind: decl.kind.to_owned(),
                outputs,
            })
        }
        .await;
        released(lock.as_ref(), result).await
    }

    /// Reads every recorded resource in parallel and returns the state as found, with what
    /// differed; writes nothing. A cancellation stops the reads (they change nothing).
    pub(super) async fn read_live(
        &self,
        registry: &Registry,
        mut state: StackState,
        cancel: &CancellationToken,
    ) -> Result<(StackState, Vec<Drift>), Error> {
        let mut drift = Vec::new();
        let mut set = JoinSet::new();
        let limits = self.limits.clone();
        for (name, r) in &state.resources {
            let Some(outputs) = r.outputs.clone() else {
                continue;
            };
            let ops = *registry.get(&r.kind).ok_or_else(|| Error::UnknownKind {
                stack: state.stack.clone(),
                resource: name.clone(),
                kind: r.kind.clone(),
            })?;
            let ctx = Context::new(self.shared.clone(), &state.stack, name, cancel.clone())
                .for_instance(r.instance.as_deref());
            let inputs = r.inputs.clone();
            let name = name.clone();
            let limits = limits.clone();
            // Made within the settle window: AWS may not show it yet.
            let until = super::steps::visible_by(r.made.as_deref(), self.shared.settle_window);
            set.spawn(async move {
                let _permits = limits.acquire(ops.service).await;
                let res = super::steps::read_until_shown(&ctx, until, || {
                    (ops.read)(ctx.clone(), inputs.clone(), outputs.clone())
                })
                .await;
                (name, res)
            });
        }
        let mut first_error = None;
        let total = set.len();
        let mut read = 0;
        loop {
            let joined = tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    set.abort_all();
                    return Err(Error::Cancelled {
                        stack: state.stack.clone(),
                        completed: read,
                        remaining: total - read,
                    });
                }
                joined = set.join_next() => joined,
            };
            let Some(joined) = joined else { break };
            read += 1;
            let (name, res) = joined.map_err(join_error)?;
            match res {
                Ok(Some((inputs, outputs))) => {
                    if let Some(r) = state.resources.get_mut(&name) {
                        let fields = drifted_fields(&r.inputs, &inputs);
                        if !fields.is_empty() {
                            drift.push(Drift {
                                resource: name.clone(),
                                kind: r.kind.clone(),
                                gone: false,
                                fields,
                            });
                        }
                        r.inputs = inputs;
                        r.outputs = Some(outputs);
                    }
                }
                Ok(None) => {
                    if let Some(r) = state.resources.remove(&name) {
                        drift.push(Drift {
                            resource: name,
                            kind: r.kind,
                            gone: true,
                            fields: Vec::new(),
                        });
                    }
                }
                Err(source) => {
                    first_error.get_or_insert(Error::Resource {
                        stack: state.stack.clone(),
                        resource: name,
                        action: "read",
                        source: Box::new(source),
                    });
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        drift.sort_by(|a, b| a.resource.cmp(&b.resource));
        Ok((state, drift))
    }
}
