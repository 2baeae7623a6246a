//! Planning: desired graph + recorded (optionally refreshed) state -> a typed [`Plan`]. Pure: no I/O.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::error::Error;
use crate::policy::{PlannedAction, PlannedChange, PlannedResource};
use crate::stack::{Declaration, Desired};
use crate::state::{PendingOp, StackState};
pub use crate::types::{ActionKind, Counts};
use crate::value::{RefTarget, Resolved, has_refs, partial, resolve};

/// The text shown for a value that only exists once an upstream resource has been created.
pub const UNKNOWN: &str = "(known after apply)";

/// A value in a plan: known now, or known after apply.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Planned {
    /// Known now.
    Known(Value),
    /// Depends on a resource that does not exist yet (or is being replaced).
    Unknown,
}

impl fmt::Display for Planned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Known(v) => write!(f, "{v}"),
            Self::Unknown => f.write_str(UNKNOWN),
        }
    }
}

/// One input field's change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    /// The field, as serialised.
    pub field: String,
    /// The recorded value (`None` for a create or a new field).
    pub old: Option<Value>,
    /// The desired value.
    pub new: Planned,
}

/// Why a resource is replaced rather than updated.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReplaceReason {
    /// These fields cannot change in place (AWS's rule for the kind).
    FieldsForceNew(Vec<String>),
    /// The logical name now holds another kind of resource.
    KindChanged {
        /// The recorded kind.
        from: String,
        /// The declared kind.
        to: String,
    },
}

impl fmt::Display for ReplaceReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FieldsForceNew(fields) => {
                write!(f, "{} cannot change in place", fields.join(", "))
            }
            Self::KindChanged { from, to } => write!(f, "kind changes from {from} to {to}"),
        }
    }
}

/// What happens to one resource.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Created: it is not recorded, or it was deleted outside the engine.
    Create {
        /// The inputs it will be created with.
        inputs: Vec<FieldChange>,
    },
    /// Changed in place. With no changed field: an earlier change or create did not finish
    /// configuring it (the process died, or a call failed, after the resource was made); it is
    /// read and what differs is updated.
    Update {
        /// The changed fields.
        changes: Vec<FieldChange>,
    },
    /// Replaced: a new one is created, dependents are re-pointed, the old one is deleted.
    Replace {
        /// Why.
        reason: ReplaceReason,
        /// The changed fields.
        changes: Vec<FieldChange>,
        /// The old instance is deleted before the new one is created (the two would collide: see
        /// [`ForceNew::delete_first`](crate::ForceNew::delete_first)); its replaced dependents go
        /// first too.
        delete_first: bool,
    },
    /// Deleted: recorded but no longer declared.
    Delete,
    /// The old instance of an earlier replacement, still to be deleted.
    DeleteDeposed,
    /// Unchanged.
    Same,
}

impl Action {
    /// The action's kind.
    pub fn kind(&self) -> ActionKind {
        match self {
            Self::Create { .. } => ActionKind::Create,
            Self::Update { .. } => ActionKind::Update,
            Self::Replace { .. } => ActionKind::Replace,
            Self::Delete | Self::DeleteDeposed => ActionKind::Delete,
            Self::Same => ActionKind::Same,
        }
    }
}

/// One resource's planned step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// The resource's logical name.
    pub resource: String,
    /// Its kind.
    pub kind: String,
    /// What happens to it.
    #[serde(flatten)]
    pub action: Action,
}

/// A stack's plan: a step per declared resource in dependency order, then the deletes, dependents first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// The stack.
    pub stack: String,
    /// The steps.
    pub steps: Vec<Step>,
}

impl Plan {
    /// How many resources each action touches.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for s in &self.steps {
            match s.action.kind() {
                ActionKind::Create => c.create += 1,
                ActionKind::Update => c.update += 1,
                ActionKind::Replace => c.replace += 1,
                ActionKind::Delete => c.delete += 1,
                ActionKind::Same => c.same += 1,
            }
        }
        c
    }

    /// Whether anything changes.
    pub fn has_changes(&self) -> bool {
        self.counts().has_changes()
    }

    /// The step for resource `name` (its forward step, not a deposed delete).
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| s.resource == name && s.action != Action::DeleteDeposed)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.counts();
        writeln!(
            f,
            "{}: {} to create, {} to update, {} to replace, {} to delete, {} unchanged",
            self.stack, c.create, c.update, c.replace, c.delete, c.same
        )?;
        for s in &self.steps {
            let show = |f: &mut fmt::Formatter<'_>, changes: &[FieldChange]| -> fmt::Result {
                for ch in changes {
                    match &ch.old {
                        Some(old) => writeln!(f, "      {}: {} -> {}", ch.field, old, ch.new)?,
                        None => writeln!(f, "      {}: {}", ch.field, ch.new)?,
                    }
                }
                Ok(())
            };
            match &s.action {
                Action::Same => {}
                Action::Create { inputs } => {
                    writeln!(f, "  + {} ({})", s.resource, s.kind)?;
                    show(f, inputs)?;
                }
                Action::Update { changes } if changes.is_empty() => writeln!(
                    f,
                    "  ~ {} ({}): finish configuring it (an earlier run was interrupted)",
                    s.resource, s.kind
                )?,
                Action::Update { changes } => {
                    writeln!(f, "  ~ {} ({})", s.resource, s.kind)?;
                    show(f, changes)?;
                }
                Action::Replace {
                    reason,
                    changes,
                    delete_first,
                } => {
                    let first = if *delete_first { " (delete first)" } else { "" };
                    writeln!(f, "-/+ {} ({}){first}: {}", s.resource, s.kind, reason)?;
                    show(f, changes)?;
                }
                Action::Delete => writeln!(f, "  - {} ({})", s.resource, s.kind)?,
                Action::DeleteDeposed => {
                    writeln!(f, "  - {} ({}, replaced instance)", s.resource, s.kind)?
                }
            }
        }
        Ok(())
    }
}

/// What a stack's references to other stacks' resources read when it is planned (see
/// [`Ref::in_stack`](crate::Ref::in_stack)): each producing resource's outputs when they are known
/// before apply, `None` when its stack is about to create or replace it (shown as "(known after
/// apply)"). A producer that is not here is unknown too.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ExternalOutputs {
    by: HashMap<(String, String), Option<Value>>,
}

impl ExternalOutputs {
    /// None known.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Resource `resource` of stack `stack` has `outputs` (`None`: not known before apply).
    pub(crate) fn insert(&mut self, stack: &str, resource: &str, outputs: Option<Value>) {
        self.by
            .insert((stack.to_owned(), resource.to_owned()), outputs);
    }

    /// What is known of resource `resource` of stack `stack`: `None` when it is not here,
    /// `Some(None)` when it is known to be not known before apply.
    pub(crate) fn get(&self, stack: &str, resource: &str) -> Option<Option<&Value>> {
        self.by
            .get(&(stack.to_owned(), resource.to_owned()))
            .map(Option::as_ref)
    }
}

/// Plans `desired` against `recorded` state. With `refreshed` (the recorded state after reading every
/// resource live), drift shows as changes and a resource deleted outside the engine is created again.
///
/// Pure and deterministic: no I/O, the same inputs give the same plan.
///
/// # Errors
/// [`Error::DanglingRef`] when a reference names an output its producer does not record.
pub fn plan(
    desired: &Desired,
    recorded: &StackState,
    refreshed: Option<&StackState>,
) -> Result<Plan, Error> {
    plan_with(desired, recorded, refreshed, &ExternalOutputs::new(), None)
}

/// [`plan()`], with what is known of other stacks' resources that `desired` refers to.
///
/// # Errors
/// With `document`, also the plan's resources as policies see them (their full planned inputs),
/// which a plan alone does not keep.
///
/// # Errors
/// As [`plan()`], and [`Error::MissingExternal`] when a producer's known outputs lack the field.
pub(crate) fn plan_with(
    desired: &Desired,
    recorded: &StackState,
    refreshed: Option<&StackState>,
    external: &ExternalOutputs,
    mut document: Option<&mut Vec<PlannedResource>>,
) -> Result<Plan, Error> {
    let base = refreshed.unwrap_or(recorded);
    let stack = desired.stack.as_str();
    // The outputs known before apply: those of resources that are kept (same or updated in place).
    let mut known: HashMap<&str, Option<&Value>> = HashMap::with_capacity(desired.resources.len());
    let mut steps = Vec::with_capacity(desired.resources.len() + 4);

    for decl in &desired.resources {
        let ops = desired.ops(decl.kind).ok_or_else(|| Error::UnknownKind {
            stack: stack.to_owned(),
            resource: decl.name.clone(),
            kind: decl.kind.to_owned(),
        })?;
        let mut lookup = |t: &RefTarget| -> Result<Option<Value>, Error> {
            if let Some(producer) = &t.stack {
                return match external.get(producer, &t.resource) {
                    Some(Some(outputs)) => match outputs.get(&t.output) {
                        Some(v) => Ok(Some(v.clone())),
                        None => Err(Error::MissingExternal {
                            stack: stack.to_owned(),
                            resource: decl.name.clone(),
                            reference: t.to_string(),
                        }),
                    },
                    _ => Ok(None),
                };
            }
            match known.get(t.resource.as_str()) {
                Some(Some(outputs)) => match outputs.get(&t.output) {
                    Some(v) => Ok(Some(v.clone())),
                    None => Err(Error::DanglingRef {
                        stack: stack.to_owned(),
                        resource: decl.name.clone(),
                        reference: t.to_string(),
                    }),
                },
                _ => Ok(None),
            }
        };
        let existing = base
            .resources
            .get(&decl.name)
            .filter(|r| r.outputs.is_some());
        // The declared inputs are kept whole where they are read again (the policies' document,
        // an update's planned inputs); a create without a document moves its fields into the plan.
        let inputs = decl.inputs(stack)?;
        let (fields, inputs) = if document.is_some() || existing.is_some() {
            (planned_fields(inputs.clone(), &mut lookup)?, inputs)
        } else {
            (planned_fields(inputs, &mut lookup)?, Value::Null)
        };
        let mut entry = match document {
            Some(_) => Some(planned_resource(
                stack,
                decl,
                &inputs,
                &fields,
                &mut lookup,
            )?),
            None => None,
        };
        let action = match existing {
            None => Action::Create {
                inputs: fields
                    .into_iter()
                    .map(|(field, new)| FieldChange {
                        field,
                        old: None,
                        new,
                    })
                    .collect(),
            },
            Some(rec) if rec.kind != decl.kind => Action::Replace {
                reason: ReplaceReason::KindChanged {
                    from: rec.kind.clone(),
                    to: decl.kind.to_owned(),
                },
                changes: Vec::new(),
                delete_first: false,
            },
            Some(rec) => {
                let old_fields = rec.inputs.as_object();
                let mut changes = Vec::new();
                let mut seen = BTreeSet::new();
                for (field, new) in fields {
                    let old = old_fields.and_then(|m| m.get(&field)).cloned();
                    let changed = match (&new, &old) {
                        (Planned::Unknown, _) => true,
                        (Planned::Known(n), Some(o)) => n != o,
                        (Planned::Known(n), None) => !n.is_null(),
                    };
                    seen.insert(field.clone());
                    if changed {
                        changes.push(FieldChange { field, old, new });
                    }
                }
                if let Some(old) = old_fields {
                    for (field, v) in old {
                        if !seen.contains(field) && !v.is_null() {
                            changes.push(FieldChange {
                                field: field.clone(),
                                old: Some(v.clone()),
                                new: Planned::Known(Value::Null),
                            });
                        }
                    }
                }
                let (forced, delete_first): (Vec<String>, bool) = if changes.is_empty() {
                    (Vec::new(), false)
                } else {
                    let planned = planned_inputs(&inputs, &rec.inputs, &changes);
                    // A field the recorded inputs lack (a kind's later version added it) is read as
                    // declared: adding a field is no reason to replace.
                    let mut previous = planned.clone();
                    if let (Value::Object(p), Some(r)) = (&mut previous, rec.inputs.as_object()) {
                        p.extend(r.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                    let rule =
                        (ops.force_new)(&planned, &previous).map_err(|e| Error::Resource {
                            stack: stack.to_owned(),
                            resource: decl.name.clone(),
                            action: "plan",
                            source: Box::new(e),
                        })?;
                    (
                        rule.forced(changes.iter().map(|c| c.field.clone())),
                        rule.deletes_first(),
                    )
                };
                let unfinished = rec
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.op == PendingOp::Update);
                if changes.is_empty() && !unfinished {
                    Action::Same
                } else if forced.is_empty() {
                    Action::Update { changes }
                } else {
                    Action::Replace {
                        reason: ReplaceReason::FieldsForceNew(forced),
                        changes,
                        delete_first,
                    }
                }
            }
        };
        let outputs_known = match &action {
            Action::Same | Action::Update { .. } => existing.and_then(|r| r.outputs.as_ref()),
            _ => None,
        };
        known.insert(decl.name.as_str(), outputs_known);
        if let (Some(doc), Some(mut entry)) = (document.as_deref_mut(), entry.take()) {
            entry.action = planned_action(&action);
            entry.changes = match &action {
                Action::Create { inputs: c }
                | Action::Update { changes: c }
                | Action::Replace { changes: c, .. } => c.iter().map(planned_change).collect(),
                _ => Vec::new(),
            };
            doc.push(entry);
        }
        steps.push(Step {
            resource: decl.name.clone(),
            kind: decl.kind.to_owned(),
            action,
        });
    }

    // Recorded resources no longer declared: deleted, dependents first.
    let removed: Vec<&str> = recorded
        .resources
        .keys()
        .map(String::as_str)
        .filter(|n| !desired.index.contains_key(*n))
        .collect();
    for name in dependents_first(recorded, &removed) {
        let kind = recorded.resources[name].kind.clone();
        if let Some(doc) = document.as_deref_mut() {
            doc.push(recorded_resource(
                stack,
                name,
                recorded,
                PlannedAction::Delete,
            ));
        }
        steps.push(Step {
            resource: name.to_owned(),
            kind,
            action: Action::Delete,
        });
    }
    for (name, r) in &recorded.resources {
        if !r.deposed.is_empty() {
            if let Some(doc) = document.as_deref_mut() {
                doc.push(recorded_resource(
                    stack,
                    name,
                    recorded,
                    PlannedAction::DeleteDeposed,
                ));
            }
            steps.push(Step {
                resource: name.clone(),
                kind: r.kind.clone(),
                action: Action::DeleteDeposed,
            });
        }
    }
    Ok(Plan {
        stack: stack.to_owned(),
        steps,
    })
}

/// Each top-level field of `inputs` (the whole of them as one field named "" when they are not an
/// object) with its references resolved: a value without references is moved into the plan as it
/// is, not copied.
fn planned_fields(
    inputs: Value,
    lookup: &mut impl FnMut(&RefTarget) -> Result<Option<Value>, Error>,
) -> Result<Vec<(String, Planned)>, Error> {
    let mut planned = |v: Value| -> Result<Planned, Error> {
        if !has_refs(&v) {
            return Ok(Planned::Known(v));
        }
        Ok(match resolve(&v, lookup)? {
            Resolved::Known(v) => Planned::Known(v),
            Resolved::Unknown => Planned::Unknown,
        })
    };
    match inputs {
        Value::Object(map) => map
            .into_iter()
            .map(|(field, v)| Ok((field, planned(v)?)))
            .collect(),
        other => Ok(vec![(String::new(), planned(other)?)]),
    }
}

/// A declared resource's entry in the plan document, its action and changes still to be set: a
/// field known only after apply shows what is known of it (the unknown parts `null`).
fn planned_resource(
    stack: &str,
    decl: &Declaration,
    declared_inputs: &Value,
    fields: &[(String, Planned)],
    lookup: &mut impl FnMut(&RefTarget) -> Result<Option<Value>, Error>,
) -> Result<PlannedResource, Error> {
    let mut inputs = serde_json::Map::with_capacity(fields.len());
    let mut unknown = Vec::new();
    let mut refs = serde_json::Map::new();
    for (field, value) in fields {
        match value {
            Planned::Known(v) => {
                inputs.insert(field.clone(), v.clone());
            }
            Planned::Unknown => {
                let declared = match declared_inputs {
                    Value::Object(m) => m.get(field).cloned().unwrap_or(Value::Null),
                    other => other.clone(),
                };
                inputs.insert(field.clone(), partial(&declared, lookup)?);
                unknown.push(field.clone());
                refs.insert(field.clone(), declared);
            }
        }
    }
    Ok(PlannedResource {
        stack: stack.to_owned(),
        name: decl.name.clone(),
        kind: decl.kind.to_owned(),
        action: PlannedAction::Same,
        inputs,
        unknown,
        changes: Vec::new(),
        refs,
    })
}

/// A recorded resource's entry in the plan document (a delete): its recorded inputs.
fn recorded_resource(
    stack: &str,
    name: &str,
    recorded: &StackState,
    action: PlannedAction,
) -> PlannedResource {
    let r = &recorded.resources[name];
    PlannedResource {
        stack: stack.to_owned(),
        name: name.to_owned(),
        kind: r.kind.clone(),
        action,
        inputs: crate::policy::object(&r.inputs),
        unknown: Vec::new(),
        changes: Vec::new(),
        refs: serde_json::Map::new(),
    }
}

fn planned_action(action: &Action) -> PlannedAction {
    match action {
        Action::Create { .. } => PlannedAction::Create,
        Action::Update { .. } => PlannedAction::Update,
        Action::Replace { .. } => PlannedAction::Replace,
        Action::Delete => PlannedAction::Delete,
        Action::DeleteDeposed => PlannedAction::DeleteDeposed,
        Action::Same => PlannedAction::Same,
    }
}

fn planned_change(c: &FieldChange) -> PlannedChange {
    let (after, after_unknown) = match &c.new {
        Planned::Known(v) => (v.clone(), false),
        Planned::Unknown => (Value::Null, true),
    };
    PlannedChange {
        field: c.field.clone(),
        before: c.old.clone().unwrap_or(Value::Null),
        after,
        after_unknown,
    }
}

/// The inputs a resource is planned with, as its type reads them: each changed field's new value
/// where it is known, its reference where it is not (so that it differs from the recorded value),
/// the recorded value of every unchanged field.
fn planned_inputs(declared: &Value, recorded: &Value, changes: &[FieldChange]) -> Value {
    let Value::Object(fields) = declared else {
        return match changes.first().map(|c| &c.new) {
            Some(Planned::Known(v)) => v.clone(),
            _ => declared.clone(),
        };
    };
    let planned = fields
        .iter()
        .map(|(field, unresolved)| {
            let value = match changes.iter().find(|c| &c.field == field) {
                Some(FieldChange {
                    new: Planned::Known(v),
                    ..
                }) => v.clone(),
                Some(_) => unresolved.clone(),
                None => recorded.get(field).cloned().unwrap_or(Value::Null),
            };
            (field.clone(), value)
        })
        .collect();
    Value::Object(planned)
}

/// Orders `names` so that every resource comes before the resources it depends on (per `state`).
pub(crate) fn dependents_first<'a>(state: &'a StackState, names: &[&'a str]) -> Vec<&'a str> {
    let set: BTreeSet<&str> = names.iter().copied().collect();
    let mut visited = BTreeSet::new();
    let mut order = Vec::with_capacity(names.len());
    // Post-order DFS over dependencies gives dependencies first; reversed, dependents first.
    fn visit<'a>(
        state: &'a StackState,
        set: &BTreeSet<&'a str>,
        n: &'a str,
        visited: &mut BTreeSet<&'a str>,
        order: &mut Vec<&'a str>,
    ) {
        if !visited.insert(n) {
            return;
        }
        if let Some(r) = state.resources.get(n) {
            for d in &r.dependencies {
                if let Some(&d) = set.get(d.as_str()) {
                    visit(state, set, d, visited, order);
                }
            }
        }
        order.push(n);
    }
    for &n in &set {
        visit(state, &set, n, &mut visited, &mut order);
    }
    order.reverse();
    order
}

#[cfg(test)]
mod counting_tests {
    use super::*;

    fn step(name: &str, action: Action) -> Step {
        Step {
            resource: name.into(),
            kind: "fake:resource".into(),
            action,
        }
    }

    fn plan(actions: Vec<Action>) -> Plan {
        Plan {
            stack: "s".into(),
            steps: actions
                .into_iter()
                .enumerate()
                .map(|(i, a)| step(&format!("r{i}"), a))
                .collect(),
        }
    }

    fn replace() -> Action {
        Action::Replace {
            reason: ReplaceReason::FieldsForceNew(vec!["fixed".into()]),
            changes: Vec::new(),
            delete_first: false,
        }
    }

    #[test]
    fn a_plan_counts_each_kind_of_step_once() {
        let p = plan(vec![
            Action::Create { inputs: Vec::new() },
            Action::Create { inputs: Vec::new() },
            Action::Update {
                changes: Vec::new(),
            },
            replace(),
            replace(),
            replace(),
            Action::Delete,
            Action::DeleteDeposed,
            Action::Same,
        ]);
        let c = p.counts();
        assert_eq!(
            (c.create, c.update, c.replace, c.delete, c.same),
            (2, 1, 3, 2, 1)
        );
        assert!(p.has_changes());
        assert!(!plan(vec![Action::Same, Action::Same]).has_changes());
        assert!(!plan(Vec::new()).has_changes());
    }

    #[test]
    fn any_one_change_is_a_change_and_unchanged_ones_are_not() {
        let one = |f: fn(&mut Counts)| {
            let mut c = Counts::default();
            f(&mut c);
            c.has_changes()
        };
        assert!(one(|c| c.create = 1));
        assert!(one(|c| c.update = 1));
        assert!(one(|c| c.replace = 1));
        assert!(one(|c| c.delete = 1));
        assert!(!one(|c| c.same = 3));
        assert!(!Counts::default().has_changes());
    }

    #[test]
    fn counts_add_field_by_field() {
        let mut a = Counts {
            create: 1,
            update: 2,
            replace: 3,
            delete: 4,
            same: 5,
        };
        a.add(&Counts {
            create: 10,
            update: 20,
            replace: 30,
            delete: 40,
            same: 50,
        });
        assert_eq!(
            a,
            Counts {
                create: 11,
                update: 22,
                replace: 33,
                delete: 44,
                same: 55,
            }
        );
    }

    #[test]
    fn action_kinds_print_as_users_read_them() {
        let all = [
            ActionKind::Create,
            ActionKind::Update,
            ActionKind::Replace,
            ActionKind::Delete,
            ActionKind::Same,
        ];
        let shown: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["create", "update", "replace", "delete", "same"]);
    }
}

#[cfg(test)]
mod force_new_tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;
    use crate::{ForceNew, Input, Ref, force_new};

    #[derive(Serialize, Deserialize, PartialEq)]
    struct Child {
        parent: Input<String>,
        name: String,
        size: u32,
    }

    fn rule(planned: &Value, recorded: &Value) -> ForceNew {
        let new: Child = serde_json::from_value(planned.clone()).unwrap();
        let old: Child = serde_json::from_value(recorded.clone()).unwrap();
        force_new!(new, old; parent, name)
    }

    fn change(field: &str, old: Value, new: Planned) -> FieldChange {
        FieldChange {
            field: field.into(),
            old: Some(old),
            new,
        }
    }

    #[test]
    fn a_reference_not_known_yet_stays_a_reference_and_so_forces_a_new_resource() {
        let parent = serde_json::to_value(Input::Ref(Ref::<String>::new("p", "id"))).unwrap();
        let declared = json!({"parent": parent, "name": "a", "size": 2});
        let recorded = json!({"parent": "p-1", "name": "a", "size": 1});
        let changes = [
            change("parent", json!("p-1"), Planned::Unknown),
            change("size", json!(1), Planned::Known(json!(2))),
        ];
        let planned = planned_inputs(&declared, &recorded, &changes);
        assert_eq!(planned["parent"], parent, "left as the reference");
        assert_eq!(planned["size"], 2, "the new value");
        assert_eq!(planned["name"], "a");
        let forced = rule(&planned, &recorded).forced(["parent".into(), "size".into()]);
        assert_eq!(forced, ["parent"]);
    }

    #[test]
    fn known_values_are_compared_and_unchanged_fields_keep_their_recorded_value() {
        let declared = json!({"parent": "p-1", "name": "b", "size": 1});
        let recorded = json!({"parent": "p-1", "name": "a", "size": 1});
        let changes = [change("name", json!("a"), Planned::Known(json!("b")))];
        let planned = planned_inputs(&declared, &recorded, &changes);
        assert_eq!(planned, declared);
        assert_eq!(rule(&planned, &recorded).forced(["name".into()]), ["name"]);
        assert!(
            rule(&recorded, &recorded)
                .forced(["size".into()])
                .is_empty()
        );
    }

    #[test]
    fn a_reference_known_now_is_planned_with_its_value() {
        let parent = serde_json::to_value(Input::Ref(Ref::<String>::new("p", "id"))).unwrap();
        let declared = json!({"parent": parent, "name": "a", "size": 1});
        let recorded = json!({"parent": "p-1", "name": "a", "size": 1});
        let changes = [change("parent", json!("p-1"), Planned::Known(json!("p-2")))];
        let planned = planned_inputs(&declared, &recorded, &changes);
        assert_eq!(planned, json!({"parent": "p-2", "name": "a", "size": 1}));
    }

    #[test]
    fn inputs_that_are_not_an_object_are_planned_whole() {
        let parent = serde_json::to_value(Input::Ref(Ref::<String>::new("p", "id"))).unwrap();
        let declared = json!([parent]);
        let known = [change("", json!(["p-1"]), Planned::Known(json!(["p-2"])))];
        assert_eq!(
            planned_inputs(&declared, &json!(["p-1"]), &known),
            json!(["p-2"])
        );
        let unknown = [change("", json!(["p-1"]), Planned::Unknown)];
        assert_eq!(
            planned_inputs(&declared, &json!(["p-1"]), &unknown),
            declared
        );
    }

    #[test]
    fn any_change_forces_every_changed_field() {
        assert_eq!(
            ForceNew::any_change().forced(["a".into(), "b".into()]),
            ["a", "b"]
        );
        assert!(ForceNew::none().forced(["a".into()]).is_empty());
    }
}
