//! Policy as code: rules checked against a plan before any change is made.
//!
//! A [`PlanDocument`] is what every policy sees: one entry per resource of the plan (or of the
//! stacks of a group), with its stack, name, kind, action, full planned inputs and changed fields.
//! It serialises to a stable, versioned JSON document ([`FORMAT_VERSION`]), the `input` of a Rego
//! policy, so that a team can also feed it to `opa eval` or `conftest` unchanged.
//!
//! A [`Policy`] checks a document and returns [`Violation`]s; [`Policies`] is the set an engine
//! checks (with per-policy [`Enforcement`] overrides). A run with a mandatory violation changes
//! nothing: [`Engine::up_with`](crate::Engine::up_with) returns [`Error::PolicyViolation`] after
//! planning, before any mutating call; in a [`StackGroup`](crate::StackGroup) every member's plan is
//! checked, as one document, before any member changes anything.
//!
//! ```
//! use platform_core::policy::{Enforcement, PlanDocument, Policy, Violation};
//!
//! /// Refuses any replacement.
//! struct NoReplace;
//!
//! impl Policy for NoReplace {
//!     fn id(&self) -> &str { "no-replace" }
//!     fn description(&self) -> &str { "nothing is replaced" }
//!     fn enforcement(&self) -> Enforcement { Enforcement::Mandatory }
//!     fn check(&self, plan: &PlanDocument) -> Vec<Violation> {
//!         plan.resources
//!             .iter()
//!             .filter(|r| r.action == platform_core::policy::PlannedAction::Replace)
//!             .map(|r| Violation::on(self, r, "would be replaced", "change it in place instead"))
//!             .collect()
//!     }
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ValidationError;
use crate::resource::Resource;
use crate::state::StackState;

#[cfg(feature = "rego")]
mod rego;
#[cfg(feature = "rego")]
pub use rego::{RegoError, RegoPolicy};

/// The version of the plan document's schema. A field added keeps it; a field removed or renamed,
/// or a meaning changed, increments it.
pub const FORMAT_VERSION: u32 = 1;

/// The plan as policies see it: every resource with its planned inputs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanDocument {
    /// [`FORMAT_VERSION`] when it was made.
    pub format_version: u32,
    /// The resources, per stack in plan order.
    pub resources: Vec<PlannedResource>,
}

/// What happens to a resource, as the plan document says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PlannedAction {
    /// Created.
    Create,
    /// Changed in place.
    Update,
    /// Replaced (a new one created, the old one deleted).
    Replace,
    /// Deleted: no longer declared.
    Delete,
    /// The old instance of an earlier replacement, deleted.
    DeleteDeposed,
    /// Unchanged.
    Same,
}

impl PlannedAction {
    /// Whether the resource exists after the change (everything but the deletes).
    pub fn is_kept(self) -> bool {
        !matches!(self, Self::Delete | Self::DeleteDeposed)
    }
}

impl fmt::Display for PlannedAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Replace => "replace",
            Self::Delete => "delete",
            Self::DeleteDeposed => "delete_deposed",
            Self::Same => "same",
        })
    }
}

/// One resource of a [`PlanDocument`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedResource {
    /// The stack.
    pub stack: String,
    /// The resource's logical name.
    pub name: String,
    /// Its kind (`ecs:service`).
    pub kind: String,
    /// What happens to it.
    pub action: PlannedAction,
    /// Its inputs once the plan is applied, under the names the plan shows (`desired_count`): the
    /// declared ones, or the recorded ones of a resource deleted. A field known only after apply
    /// (it refers to a resource not created yet) is `null` here and named in `unknown`.
    pub inputs: Map<String, Value>,
    /// The fields of `inputs` known only after apply.
    pub unknown: Vec<String>,
    /// The fields that change: every input of a create, the changed ones of an update or
    /// replacement, none otherwise.
    pub changes: Vec<PlannedChange>,
    /// The declared (unresolved) values of the unknown fields, for typed access.
    #[serde(skip)]
    pub(crate) refs: Map<String, Value>,
}

/// One field's change in a [`PlanDocument`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedChange {
    /// The field.
    pub field: String,
    /// The recorded value (`null` for a create or a new field).
    pub before: Value,
    /// The planned value (`null` when it is known only after apply).
    pub after: Value,
    /// Whether the planned value is known only after apply.
    pub after_unknown: bool,
}

impl PlannedResource {
    /// Its planned inputs as resource type `R` (fields known only after apply stay references);
    /// `None` when it is of another kind or its inputs are not `R`'s.
    pub fn typed<R: Resource>(&self) -> Option<R> {
        if self.kind != R::KIND {
            return None;
        }
        let mut inputs = self.inputs.clone();
        inputs.extend(self.refs.iter().map(|(k, v)| (k.clone(), v.clone())));
        match serde_json::from_value(Value::Object(inputs)) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(
                    stack = %self.stack,
                    resource = %self.name,
                    kind = %self.kind,
                    "its planned inputs do not read as the kind's type: {e}"
                );
                None
            }
        }
    }

    /// The user tags in its inputs (the `tags` field), when its kind has them.
    pub fn tags(&self) -> Option<BTreeMap<String, String>> {
        serde_json::from_value(self.inputs.get("tags")?.clone()).ok()
    }

    /// `STACK/NAME`.
    pub fn address(&self) -> String {
        format!("{}/{}", self.stack, self.name)
    }
}

impl PlanDocument {
    /// A document of `resources`, at the current [`FORMAT_VERSION`].
    pub fn new(resources: Vec<PlannedResource>) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            resources,
        }
    }

    /// The recorded resources of `states` as they are (each `same`): what a policy sees of what is
    /// live after a refresh.
    pub fn recorded<'a>(states: impl IntoIterator<Item = &'a StackState>) -> Self {
        let resources = states
            .into_iter()
            .flat_map(|s| {
                s.resources.iter().map(|(name, r)| PlannedResource {
                    stack: s.stack.clone(),
                    name: name.clone(),
                    kind: r.kind.clone(),
                    action: PlannedAction::Same,
                    inputs: object(&r.inputs),
                    unknown: Vec::new(),
                    changes: Vec::new(),
                    refs: Map::new(),
                })
            })
            .collect();
        Self::new(resources)
    }

    /// `stack`'s declaration as a plan document, independent of any state: every resource a
    /// create, every value that comes from another resource (an id, an ARN) unknown. Two
    /// declarations compare field by field this way whatever has been applied (promotion between
    /// environments).
    ///
    /// # Errors
    /// Validation and graph errors, as [`Engine::preview`](crate::Engine::preview).
    pub fn declared<S: crate::Stack>(stack: &S) -> Result<Self, crate::Error> {
        let desired = crate::stack::Desired::of(stack)?;
        let mut resources = Vec::with_capacity(desired.resources.len());
        crate::plan::plan_with(
            &desired,
            &StackState::new(stack.name()),
            None,
            &crate::plan::ExternalOutputs::new(),
            Some(&mut resources),
        )?;
        Ok(Self::new(resources))
    }

    /// Adds another document's resources (another stack's).
    pub fn extend(&mut self, other: PlanDocument) {
        self.resources.extend(other.resources);
    }

    /// Every resource of kind `R` that exists after the change (deletes left out), with its planned
    /// inputs as `R`: a Rust policy reads the stack crates' own types, not JSON paths.
    pub fn of_kind<R: Resource>(&self) -> impl Iterator<Item = (&PlannedResource, R)> {
        self.resources
            .iter()
            .filter(|r| r.action.is_kept() && r.kind == R::KIND)
            .filter_map(|r| Some((r, r.typed::<R>()?)))
    }
}

/// Several documents (stacks) as one, in order.
impl FromIterator<PlanDocument> for PlanDocument {
    fn from_iter<I: IntoIterator<Item = PlanDocument>>(documents: I) -> Self {
        Self::new(documents.into_iter().flat_map(|d| d.resources).collect())
    }
}

/// A resource's inputs as a field map (a non-object value under the field `""`).
pub(crate) fn object(inputs: &Value) -> Map<String, Value> {
    match inputs {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        other => Map::from_iter([(String::new(), other.clone())]),
    }
}

/// What a violation does to a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Enforcement {
    /// The run changes nothing (`up` fails with [`Error::PolicyViolation`](crate::Error::PolicyViolation)).
    Mandatory,
    /// Reported; the run goes on.
    Advisory,
    /// Not checked.
    Off,
}

impl fmt::Display for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mandatory => "mandatory",
            Self::Advisory => "advisory",
            Self::Off => "off",
        })
    }
}

impl std::str::FromStr for Enforcement {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mandatory" => Ok(Self::Mandatory),
            "advisory" => Ok(Self::Advisory),
            "off" => Ok(Self::Off),
            other => Err(ValidationError::new(
                "enforcement",
                other,
                "one of mandatory, advisory, off",
            )),
        }
    }
}

/// A rule checked against a plan.
pub trait Policy: Send + Sync {
    /// A stable id (`open-admin-port`): what users name to change its enforcement.
    fn id(&self) -> &str;
    /// What it guards, in a sentence.
    fn description(&self) -> &str;
    /// What its violations do unless overridden ([`Policies::enforce`]).
    fn enforcement(&self) -> Enforcement;
    /// Its violations in `plan` (none when it passes).
    fn check(&self, plan: &PlanDocument) -> Vec<Violation>;
}

/// One thing a policy refuses or warns about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The policy's id.
    pub policy: String,
    /// What it does to the run.
    pub enforcement: Enforcement,
    /// The stack of the resource (empty when it is about no one resource).
    pub stack: String,
    /// The resource's logical name (empty when it is about no one resource).
    pub resource: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl Violation {
    /// A violation of `policy` (at its enforcement) about resource `stack`/`resource`.
    pub fn new(
        policy: &(impl Policy + ?Sized),
        stack: impl Into<String>,
        resource: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            policy: policy.id().to_owned(),
            enforcement: policy.enforcement(),
            stack: stack.into(),
            resource: resource.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// A violation of `policy` about `resource`.
    pub fn on(
        policy: &(impl Policy + ?Sized),
        resource: &PlannedResource,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(policy, &resource.stack, &resource.name, message, fix)
    }

    /// The same violation at another enforcement.
    #[must_use]
    pub fn with_enforcement(mut self, enforcement: Enforcement) -> Self {
        self.enforcement = enforcement;
        self
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.policy, self.enforcement)?;
        if !self.resource.is_empty() {
            write!(f, " {}/{}", self.stack, self.resource)?;
        }
        write!(f, ": {}", self.message)?;
        if !self.fix.is_empty() {
            write!(f, " (fix: {})", self.fix)?;
        }
        Ok(())
    }
}

/// The policies a run is checked against, with their enforcement overrides. Cheap to clone.
#[derive(Clone, Default)]
pub struct Policies {
    list: Vec<Arc<dyn Policy>>,
    overrides: BTreeMap<String, Enforcement>,
}

impl fmt::Debug for Policies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policies")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .field("overrides", &self.overrides)
            .finish()
    }
}

impl Policies {
    /// None.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `policy` too.
    #[must_use]
    pub fn with(mut self, policy: impl Policy + 'static) -> Self {
        self.add(Arc::new(policy));
        self
    }

    /// Adds `policy`.
    pub fn add(&mut self, policy: Arc<dyn Policy>) {
        self.list.push(policy);
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether `other` is these very policies (the same ones, in the same order, with the same
    /// overrides): a document checked against one is checked against the other.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        self.overrides == other.overrides
            && self.list.len() == other.list.len()
            && self
                .list
                .iter()
                .zip(&other.list)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    /// The policies' ids, in the order they were added.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|p| p.id())
    }

    /// The policies.
    pub fn iter(&self) -> impl Iterator<Item = &dyn Policy> {
        self.list.iter().map(AsRef::as_ref)
    }

    /// The enforcement of policy `id`'s violations: the override, else its own.
    pub fn enforcement(&self, id: &str) -> Option<Enforcement> {
        let policy = self.list.iter().find(|p| p.id() == id)?;
        Some(
            self.overrides
                .get(id)
                .copied()
                .unwrap_or_else(|| policy.enforcement()),
        )
    }

    /// Violations of policy `id` have `enforcement` from now on ([`Enforcement::Off`]: it is not
    /// checked).
    ///
    /// # Errors
    /// A [`ValidationError`] naming `id` and the known ids when no policy has it.
    pub fn enforce(&mut self, id: &str, enforcement: Enforcement) -> Result<(), ValidationError> {
        if !self.list.iter().any(|p| p.id() == id) {
            let known: Vec<&str> = self.ids().collect();
            return Err(ValidationError::new(
                "rules",
                id,
                format!("no such policy (the policies: {})", known.join(", ")),
            ));
        }
        self.overrides.insert(id.to_owned(), enforcement);
        Ok(())
    }

    /// Every violation of `plan`, overrides applied (those turned off left out), mandatory ones
    /// first, then by stack, resource and policy.
    pub fn check(&self, plan: &PlanDocument) -> Vec<Violation> {
        let mut out = Vec::new();
        for p in &self.list {
            let over = self.overrides.get(p.id()).copied();
            if over == Some(Enforcement::Off) {
                continue;
            }
            for v in p.check(plan) {
                let v = match over {
                    Some(e) => v.with_enforcement(e),
                    None => v,
                };
                if v.enforcement != Enforcement::Off {
                    out.push(v);
                }
            }
        }
        out.sort_by(|a, b| {
            (a.enforcement, &a.stack, &a.resource, &a.policy).cmp(&(
                b.enforcement,
                &b.stack,
                &b.resource,
                &b.policy,
            ))
        });
        out
    }
}

/// The mandatory violations among `violations`.
pub fn mandatory(violations: &[Violation]) -> impl Iterator<Item = &Violation> {
    violations
        .iter()
        .filter(|v| v.enforcement == Enforcement::Mandatory)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn resource(stack: &str, name: &str, inputs: Value) -> PlannedResource {
        PlannedResource {
            stack: stack.into(),
            name: name.into(),
            kind: "k".into(),
            action: PlannedAction::Create,
            inputs: object(&inputs),
            unknown: Vec::new(),
            changes: Vec::new(),
            refs: Map::new(),
        }
    }

    #[test]
    fn actions_print_as_the_document_spells_them_and_deletes_are_not_kept() {
        let all = [
            PlannedAction::Create,
            PlannedAction::Update,
            PlannedAction::Replace,
            PlannedAction::Delete,
            PlannedAction::DeleteDeposed,
            PlannedAction::Same,
        ];
        for a in all {
            assert_eq!(
                Value::from(a.to_string()),
                serde_json::to_value(a).unwrap(),
                "{a:?}"
            );
        }
        let kept: Vec<bool> = all.iter().map(|a| a.is_kept()).collect();
        assert_eq!(kept, [true, true, true, false, false, true]);
        assert_eq!(Enforcement::Advisory.to_string(), "advisory");
        assert_eq!(Enforcement::Mandatory.to_string(), "mandatory");
        assert_eq!(Enforcement::Off.to_string(), "off");
    }

    #[test]
    fn a_resource_has_its_address_and_its_user_tags_when_its_kind_has_them() {
        let tagged = resource("net", "vpc", json!({"tags": {"team": "a", "Name": "x"}}));
        assert_eq!(tagged.address(), "net/vpc");
        let tags = tagged.tags().unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags["team"], "a");
        assert_eq!(resource("s", "r", json!({"size": 1})).tags(), None);
        assert_eq!(resource("s", "r", json!({"tags": [1]})).tags(), None);
        assert_eq!(object(&Value::Null), Map::new());
        assert_eq!(object(&json!(3))[""], 3);
    }

    #[test]
    fn documents_extend_in_order() {
        let mut a = PlanDocument::new(vec![resource("s", "a", json!({}))]);
        a.extend(PlanDocument::new(vec![
            resource("t", "b", json!({})),
            resource("t", "c", json!({})),
        ]));
        let names: Vec<String> = a.resources.iter().map(PlannedResource::address).collect();
        assert_eq!(names, ["s/a", "t/b", "t/c"]);
        assert_eq!(a.format_version, FORMAT_VERSION);
        let collected: PlanDocument = [
            PlanDocument::new(vec![resource("s", "a", json!({}))]),
            PlanDocument::new(Vec::new()),
            PlanDocument::new(vec![
                resource("t", "b", json!({})),
                resource("t", "c", json!({})),
            ]),
        ]
        .into_iter()
        .collect();
        assert_eq!(collected, a);
    }
}
