//! Stacks: a named set of resources declared into a graph, with typed outputs; and typed references
//! from one stack to another's recorded outputs.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, ResourceError};
use crate::resource::{Handle, KindOps, Registry, Resource};
use crate::state::{Producer, StackResource, StateStore, validate_stack_name};
use crate::types::ProviderInfo;
pub use crate::value::RefTarget;
use crate::value::{Ref, collect_refs, refs_in};

/// A stack: a name, its typed outputs, its resource kinds, and how it declares its resources.
///
/// The stack value holds its typed config. See the crate docs for a complete example.
pub trait Stack: Send + Sync {
    /// What the stack gives other stacks once applied; recorded in state.
    type Outputs: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The version of [`Outputs`](Self::Outputs)' schema, recorded with them.
    ///
    /// # Compatibility rule
    /// - A field added to `Outputs` has a default (`Option<T>`, or `#[serde(default)]`): a consumer
    ///   built with the new struct reads an older producer's outputs (the field takes its default),
    ///   and an older consumer ignores the field. No bump.
    /// - Removing, renaming or retyping a field changes what older consumers read: bump this
    ///   version. A consumer refuses outputs of a newer version than its own
    ///   ([`Error::NewerOutputs`]) rather than misread them.
    const OUTPUTS_SCHEMA: u32 = 1;

    /// The stack's name: its key in the state store and the `platform:stack` tag on its resources.
    fn name(&self) -> &str;

    /// Registers every resource kind the stack may have recorded, so that destroy and the deletion of
    /// removed resources work from state alone.
    fn register(registry: &mut Registry)
    where
        Self: Sized;

    /// Declares the resources into `scope` and says how the outputs are built from theirs.
    ///
    /// # Errors
    /// A validation error for the stack's config ([`Error::Invalid`]), before any AWS call.
    fn declare(&self, scope: &mut Scope) -> Result<Declared<Self::Outputs>, Error>;

    /// The stacks whose outputs this stack consumes. Recorded in its state; while it exists, those
    /// stacks refuse to be destroyed.
    fn references(&self) -> Vec<String> {
        Vec::new()
    }

    /// The producers whose outputs this stack was built from ([`Produced`] values read with
    /// [`StackRef::read`]). The engine refuses one applied to another account or region than the
    /// consumer's, and records them in the consumer's state. Default: none.
    fn producers(&self) -> Vec<Producer> {
        Vec::new()
    }
}

/// A stack's outputs with who produced them: the stack, its account and region, the write of its
/// state they were read from, and their schema version. Dereferences to the outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Produced<O> {
    /// Who produced them.
    pub producer: Producer,
    /// The outputs.
    pub outputs: O,
}

impl<O> Produced<O> {
    /// `outputs`, produced by `producer`.
    pub fn new(producer: Producer, outputs: O) -> Self {
        Self { producer, outputs }
    }

    /// The outputs alone.
    pub fn into_outputs(self) -> O {
        self.outputs
    }
}

impl<O> std::ops::Deref for Produced<O> {
    type Target = O;

    fn deref(&self) -> &O {
        &self.outputs
    }
}

/// One declared resource, type-erased: its inputs as JSON (references as `{"$ref": ..}`).
#[derive(Clone, Debug)]
pub(crate) struct Declaration {
    /// The logical name.
    pub(crate) name: String,
    /// The resource kind.
    pub(crate) kind: &'static str,
    /// The inputs as compact JSON text, references unresolved, parsed where they are planned or
    /// applied: a parsed tree takes about ten times the memory of its text, and a stack of 100,000
    /// resources is held whole.
    inputs: Box<str>,
    /// The resources of this stack that this one refers to, without repeats, in order of first
    /// reference (references to other stacks' resources are not among them).
    pub(crate) dependencies: Vec<String>,
    /// The references to other stacks' resources, in document order.
    pub(crate) external: Vec<RefTarget>,
}

impl Declaration {
    /// Resource `name` of kind `kind` with inputs `inputs` (compact JSON, as serde_json writes a
    /// resource): its references are read from them once, here.
    ///
    /// # Errors
    /// When `inputs` is not JSON serde_json can read back (nested deeper than its limit).
    pub(crate) fn new(
        name: String,
        kind: &'static str,
        inputs: String,
    ) -> Result<Self, serde_json::Error> {
        // A reference is written `{"$ref":..}`: text without the key has none, and is not read.
        let refs = if inputs.contains(REF_MARK) {
            refs_in(&inputs)?
        } else {
            Vec::new()
        };
        let mut dependencies: Vec<String> = Vec::new();
        let mut external = Vec::new();
        for r in refs {
            if r.stack.is_some() {
                external.push(r);
            } else if !dependencies.contains(&r.resource) {
                dependencies.push(r.resource);
            }
        }
        Ok(Self {
            name,
            kind,
            inputs: inputs.into_boxed_str(),
            dependencies,
            external,
        })
    }

    /// The inputs, parsed, references unresolved.
    ///
    /// # Errors
    /// [`Error::Serialize`] naming the resource when serde_json cannot read back what it wrote
    /// (inputs nested deeper than its limit).
    pub(crate) fn inputs(&self, stack: &str) -> Result<Value, Error> {
        serde_json::from_str(&self.inputs).map_err(|source| Error::Serialize {
            stack: stack.to_owned(),
            resource: self.name.clone(),
            source,
        })
    }

    /// The other stacks' resources this one's inputs refer to, without repeats.
    pub(crate) fn uses(&self) -> Vec<StackResource> {
        let mut uses: Vec<StackResource> = self
            .external
            .iter()
            .filter_map(|r| {
                Some(StackResource {
                    stack: r.stack.clone()?,
                    resource: r.resource.clone(),
                })
            })
            .collect();
        uses.sort();
        uses.dedup();
        uses
    }
}

/// How a reference starts in serialised inputs.
const REF_MARK: &str = "\"$ref\"";

/// Where a stack declares its resources.
pub struct Scope {
    stack: String,
    declarations: Vec<Declaration>,
    /// Each declared name and its declaration's position.
    positions: HashMap<String, usize>,
    registry: Registry,
    errors: Vec<Error>,
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("stack", &self.stack)
            .field("resources", &self.declarations.len())
            .finish()
    }
}

impl Scope {
    /// An empty scope for stack `stack`.
    pub fn new(stack: impl Into<String>) -> Self {
        Self {
            stack: stack.into(),
            declarations: Vec::new(),
            positions: HashMap::new(),
            registry: Registry::new(),
            errors: Vec::new(),
        }
    }

    /// The stack being declared.
    pub fn stack(&self) -> &str {
        &self.stack
    }

    /// Declares resource `resource` under logical name `name`, validating its known inputs, and returns
    /// its handle. Errors (a duplicate name, invalid inputs) are collected and reported when the stack
    /// is planned, before any AWS call.
    pub fn add<R: Resource>(&mut self, name: impl Into<String>, resource: R) -> Handle<R> {
        let name = name.into();
        self.registry.add::<R>();
        if self
            .positions
            .insert(name.clone(), self.declarations.len())
            .is_some()
        {
            self.errors.push(Error::DuplicateResource {
                stack: self.stack.clone(),
                resource: name.clone(),
            });
        }
        if let Err(source) = resource.validate() {
            self.errors.push(Error::Invalid {
                stack: self.stack.clone(),
                resource: name.clone(),
                source,
            });
        }
        match serde_json::to_string(&resource)
            .and_then(|inputs| Declaration::new(name.clone(), R::KIND, inputs))
        {
            Ok(declaration) => self.declarations.push(declaration),
            Err(source) => self.errors.push(Error::Serialize {
                stack: self.stack.clone(),
                resource: name.clone(),
                source,
            }),
        }
        Handle::new(name)
    }

    /// Says how the stack's outputs are built from its resources' outputs, once applied.
    pub fn outputs<O, F>(&mut self, build: F) -> Declared<O>
    where
        F: Fn(&OutputValues<'_>) -> Result<O, ResourceError> + Send + Sync + 'static,
    {
        Declared {
            build: Box::new(build),
        }
    }

    /// Validates the graph (no errors collected, no dangling reference, no cycle) and orders it.
    pub(crate) fn finish(self) -> Result<Desired, Error> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        Desired::ordered(self.stack, self.declarations, self.positions, self.registry)
    }
}

/// Builds a stack's outputs from its resources' outputs.
type BuildOutputs<O> = dyn Fn(&OutputValues<'_>) -> Result<O, ResourceError> + Send + Sync;

/// How a stack's outputs are built; returned by [`Scope::outputs`].
pub struct Declared<O> {
    build: Box<BuildOutputs<O>>,
}

impl<O> fmt::Debug for Declared<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Declared<..>")
    }
}

impl<O> Declared<O> {
    pub(crate) fn build(&self, values: &OutputValues<'_>) -> Result<O, ResourceError> {
        (self.build)(values)
    }
}

/// The applied resources' outputs, read through typed refs when building a stack's outputs.
#[derive(Debug)]
pub struct OutputValues<'a> {
    pub(crate) outputs: &'a HashMap<String, Value>,
}

impl OutputValues<'_> {
    /// The value behind `r`.
    ///
    /// # Errors
    /// [`ResourceError::Unresolved`] when the resource or its output is not there;
    /// [`ResourceError::Decode`] when the value is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, r: &Ref<T>) -> Result<T, ResourceError> {
        let t = r.target();
        let v = self
            .outputs
            .get(&t.resource)
            .and_then(|o| o.get(&t.output))
            .ok_or_else(|| ResourceError::Unresolved {
                reference: t.to_string(),
            })?;
        serde_json::from_value(v.clone()).map_err(|source| ResourceError::Decode {
            what: t.to_string(),
            source,
        })
    }
}

/// A stack's declared resources, validated and in dependency order.
#[derive(Debug)]
pub struct Desired {
    pub(crate) stack: String,
    pub(crate) resources: Vec<Declaration>,
    pub(crate) index: HashMap<String, usize>,
    pub(crate) registry: Registry,
}

impl Desired {
    /// Validates and orders declarations whose names are distinct, each at its position in
    /// `positions`: every reference names a declared resource, and there is no cycle. The order is
    /// topological, stable with respect to declaration order.
    ///
    /// # Errors
    /// [`Error::DanglingRef`], [`Error::Cycle`], [`Error::UnknownKind`].
    fn ordered(
        stack: String,
        declarations: Vec<Declaration>,
        mut positions: HashMap<String, usize>,
        registry: Registry,
    ) -> Result<Self, Error> {
        let n = declarations.len();
        if let Some(d) = declarations.iter().find(|d| registry.get(d.kind).is_none()) {
            return Err(Error::UnknownKind {
                stack,
                resource: d.name.clone(),
                kind: d.kind.to_owned(),
            });
        }
        // Kahn's algorithm; ready nodes are taken in declaration order.
        let mut indegree = vec![0usize; n];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, d) in declarations.iter().enumerate() {
            for dep in &d.dependencies {
                let Some(&j) = positions.get(dep.as_str()) else {
                    let mut refs = Vec::new();
                    collect_refs(&d.inputs(&stack)?, &mut refs);
                    let reference = refs
                        .into_iter()
                        .find(|r| r.stack.is_none() && &r.resource == dep)
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| dep.clone());
                    return Err(Error::DanglingRef {
                        stack,
                        resource: d.name.clone(),
                        reference,
                    });
                };
                indegree[i] += 1;
                dependents[j].push(i);
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for &k in &dependents[i] {
                indegree[k] -= 1;
                if indegree[k] == 0 {
                    ready.push(Reverse(k));
                }
            }
        }
        if order.len() < n {
            let mut resources: Vec<String> = (0..n)
                .filter(|&i| indegree[i] > 0)
                .map(|i| declarations[i].name.clone())
                .collect();
            resources.sort();
            return Err(Error::Cycle { stack, resources });
        }
        let mut moved_to = vec![0; n];
        for (to, &from) in order.iter().enumerate() {
            moved_to[from] = to;
        }
        positions.values_mut().for_each(|p| *p = moved_to[*p]);
        let mut slots: Vec<Option<Declaration>> = declarations.into_iter().map(Some).collect();
        let resources: Vec<Declaration> =
            order.into_iter().filter_map(|i| slots[i].take()).collect();
        let index = positions;
        Ok(Self {
            stack,
            resources,
            index,
            registry,
        })
    }

    /// Declares `stack` and validates its graph, with no I/O: what the engine plans and applies.
    /// Tools that inspect a stack's graph (diagrams, benchmarks) start here.
    ///
    /// ```
    /// use platform_core::stack::Desired;
    /// use platform_core::testing::FakeStack;
    /// let desired = Desired::of(&FakeStack::chain("demo", 3)).unwrap();
    /// assert_eq!(desired.names().collect::<Vec<_>>(), ["r0", "r1", "r2"]);
    /// assert_eq!(desired.dependencies("r2"), Some(&["r1".to_owned()][..]));
    /// ```
    ///
    /// # Errors
    /// What [`Stack::declare`] returns; [`Error::DanglingRef`], [`Error::Cycle`],
    /// [`Error::DuplicateResource`], [`Error::UnknownKind`]; [`Error::UnregisteredKind`] when it
    /// declares a kind its [`Stack::register`] leaves out.
    pub fn of<S: Stack>(stack: &S) -> Result<Self, Error> {
        Self::declare(stack).map(|(desired, _)| desired)
    }

    pub(crate) fn declare<S: Stack>(stack: &S) -> Result<(Self, Declared<S::Outputs>), Error> {
        let mut scope = Scope::new(stack.name());
        let declared = stack.declare(&mut scope)?;
        let mut desired = scope.finish()?;
        // A reference to another stack must be to one the stack declares it references: that is
        // what keeps the producer from being destroyed under it.
        let references = stack.references();
        for (decl, r) in desired.external_refs() {
            let producer = r.stack.as_deref().unwrap_or_default();
            if producer == desired.stack || !references.iter().any(|s| s == producer) {
                return Err(Error::UndeclaredReference {
                    stack: desired.stack.clone(),
                    resource: decl.name.clone(),
                    reference: r.to_string(),
                });
            }
        }
        let mut registry = Registry::new();
        S::register(&mut registry);
        if let Some(kind) = desired.registry.kinds().find(|k| registry.get(k).is_none()) {
            return Err(Error::UnregisteredKind {
                stack: desired.stack.clone(),
                kind: kind.to_owned(),
            });
        }
        desired.registry = registry;
        Ok((desired, declared))
    }

    /// The stack's name.
    pub fn stack(&self) -> &str {
        &self.stack
    }

    /// Every reference to another stack's resource, with the declaration that holds it.
    pub(crate) fn external_refs(&self) -> impl Iterator<Item = (&Declaration, &RefTarget)> {
        self.resources
            .iter()
            .flat_map(|decl| decl.external.iter().map(move |r| (decl, r)))
    }

    /// The declared resources' logical names, in dependency order (each after what it refers to).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.resources.iter().map(|d| d.name.as_str())
    }

    /// The resources of this stack that resource `name` refers to, or `None` when it is not declared.
    pub fn dependencies(&self, name: &str) -> Option<&[String]> {
        let i = *self.index.get(name)?;
        Some(&self.resources[i].dependencies)
    }

    pub(crate) fn ops(&self, kind: &str) -> Option<&KindOps> {
        self.registry.get(kind)
    }
}

/// A typed reference to another stack's recorded outputs.
///
/// ```no_run
/// # use platform_core::{StackRef, Stack, LocalStateStore};
/// # async fn f<NetworkStack: Stack>() -> Result<(), platform_core::Error> {
/// let store = LocalStateStore::open(".platform/state")?;
/// # let me = platform_core::ProviderInfo { account_id: "123456789012".into(), region: "us-east-1".into() };
/// let net = StackRef::<NetworkStack>::new("network").read(&store, &me).await?;
/// println!("read serial {:?} of {}", net.producer.serial, net.producer.stack);
/// # Ok(()) }
/// ```
pub struct StackRef<S: Stack> {
    name: String,
    _stack: PhantomData<fn() -> S>,
}

impl<S: Stack> fmt::Debug for StackRef<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StackRef({})", self.name)
    }
}

impl<S: Stack> StackRef<S> {
    /// A reference to the stack recorded under `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            _stack: PhantomData,
        }
    }

    /// The referenced stack's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads the stack's recorded outputs as `S::Outputs`, for a consumer running in `consumer`
    /// (its account and region), with who produced them.
    ///
    /// # Errors
    /// [`Error::StackNotFound`] when the stack has no state or no outputs yet;
    /// [`Error::ForeignOutputs`] when it was applied to another account or region than `consumer`;
    /// [`Error::NewerOutputs`] when its outputs' schema is newer than `S::OUTPUTS_SCHEMA`;
    /// [`Error::IncompatibleOutputs`] when its outputs are not an `S::Outputs`;
    /// [`Error::State`] when the store fails.
    pub async fn read(
        &self,
        store: &dyn StateStore,
        consumer: &ProviderInfo,
    ) -> Result<Produced<S::Outputs>, Error> {
        validate_stack_name(&self.name).map_err(|source| Error::Invalid {
            stack: self.name.clone(),
            resource: "stack".into(),
            source,
        })?;
        let state = store.read(&self.name).await?;
        let Some((state, outputs)) = state.and_then(|mut s| s.outputs.take().map(|o| (s, o)))
        else {
            return Err(Error::StackNotFound {
                stack: self.name.clone(),
            });
        };
        if let Some(producer) = &state.provider
            && producer != consumer
        {
            return Err(Error::ForeignOutputs {
                stack: self.name.clone(),
                producer: producer.clone(),
                consumer: consumer.clone(),
            });
        }
        let schema = state.outputs_schema.unwrap_or(1);
        if schema > S::OUTPUTS_SCHEMA {
            return Err(Error::NewerOutputs {
                stack: self.name.clone(),
                found: schema,
                supported: S::OUTPUTS_SCHEMA,
            });
        }
        let outputs =
            serde_json::from_value(outputs).map_err(|source| Error::IncompatibleOutputs {
                stack: self.name.clone(),
                expected: std::any::type_name::<S::Outputs>(),
                source,
            })?;
        Ok(Produced {
            producer: Producer {
                stack: state.stack,
                provider: state.provider,
                serial: Some(state.serial),
                schema: Some(schema),
            },
            outputs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangling_refs_and_cycles_name_the_resources() {
        use crate::testing::FakeResource;
        use crate::{Input, Ref};
        // Each resource refers to the `id` of those it names.
        let declared = |resources: &[(&str, &[&str])]| {
            let mut scope = Scope::new("s");
            for (name, deps) in resources {
                scope.add(
                    *name,
                    FakeResource {
                        value: "v".into(),
                        fixed: String::new(),
                        deps: deps
                            .iter()
                            .map(|d| Input::Ref(Ref::new(*d, "id")))
                            .collect(),
                    },
                );
            }
            scope.finish().unwrap_err()
        };
        let err = declared(&[("a", &["ghost"])]);
        assert_eq!(
            err.to_string(),
            "s/a: refers to ghost.id, which is not declared in this stack"
        );
        let err = declared(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("d", &[])]);
        assert_eq!(err.to_string(), "s: dependency cycle among a, b, c");
    }

    /// A stack that declares a kind its `register` leaves out.
    struct Forgetful;

    impl Stack for Forgetful {
        type Outputs = ();

        fn name(&self) -> &str {
            "forgetful"
        }

        fn register(registry: &mut Registry) {
            registry.add::<crate::testing::FakeUnique>();
        }

        fn declare(&self, s: &mut Scope) -> Result<Declared<()>, Error> {
            let value = "v".to_owned();
            let (fixed, deps) = (String::new(), Vec::new());
            s.add("a", crate::testing::FakeResource { value, fixed, deps });
            Ok(s.outputs(|_| Ok(())))
        }
    }

    #[test]
    fn a_declared_kind_that_register_leaves_out_is_refused_at_declare() {
        let err = Desired::of(&Forgetful).unwrap_err();
        assert!(
            matches!(&err, Error::UnregisteredKind { stack, kind } if stack == "forgetful" && kind == "fake:resource"),
            "{err}"
        );
        assert!(err.to_string().contains("add it to register"), "{err}");
    }
}
