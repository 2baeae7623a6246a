//! The type-erased form of the resource kinds a stack uses ([`Registry`]): each kind's operations
//! on JSON inputs and outputs, so that state can be read and destroyed without the program.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Context, ForceNew, Resource};
use crate::error::ResourceError;
use crate::types::BoxFuture;

type Fut<T> = BoxFuture<'static, Result<T, ResourceError>>;
/// `update(ctx, inputs, previous inputs, outputs)`, erased.
type UpdateFn = fn(Context, Value, Value, Value) -> Fut<Value>;
/// `force_new(inputs, previous inputs)`, erased.
type ForceNewFn = fn(&Value, &Value) -> Result<ForceNew, ResourceError>;
/// `read(ctx, inputs, outputs)`, erased: live (inputs, outputs) or gone.
type ReadFn = fn(Context, Value, Value) -> Fut<Option<(Value, Value)>>;

/// The type-erased operations of one resource kind, on JSON inputs and outputs.
#[derive(Clone, Copy)]
pub(crate) struct KindOps {
    pub(crate) service: &'static str,
    pub(crate) force_new: ForceNewFn,
    pub(crate) delete_before_replace: bool,
    pub(crate) create: fn(Context, Value) -> Fut<Value>,
    pub(crate) find: fn(Context, Value) -> Fut<Option<Value>>,
    pub(crate) find_all: fn(Context, Value) -> Fut<Vec<Value>>,
    pub(crate) import: fn(Context, Value, String) -> Fut<Option<Value>>,
    pub(crate) adopted: fn(Context, Value, Value) -> Fut<()>,
    pub(crate) read: ReadFn,
    pub(crate) update: UpdateFn,
    pub(crate) delete: fn(Context, Value, Value) -> Fut<()>,
}

fn decode<T: DeserializeOwned>(what: &str, v: Value) -> Result<T, ResourceError> {
    serde_json::from_value(v).map_err(|source| ResourceError::Decode {
        what: what.to_owned(),
        source,
    })
}

fn encode<T: Serialize>(what: &str, v: &T) -> Result<Value, ResourceError> {
    serde_json::to_value(v).map_err(|source| ResourceError::Decode {
        what: what.to_owned(),
        source,
    })
}

impl KindOps {
    pub(crate) fn of<R: Resource>() -> Self {
        Self {
            service: R::SERVICE,
            force_new: |inputs, previous| {
                let r: R = decode("inputs", inputs.clone())?;
                let p: R = decode("previous inputs", previous.clone())?;
                let rule = r.force_new(&p);
                // A kind with no in-place update replaces on any change.
                Ok(if R::UPDATES_IN_PLACE {
                    rule
                } else {
                    rule.or_any_change()
                })
            },
            delete_before_replace: R::DELETE_BEFORE_REPLACE,
            create: |ctx, inputs| {
                Box::pin(async move {
                    let r: R = decode("inputs", inputs)?;
                    let out = r.create(&ctx).await?;
                    encode("outputs", &out)
                })
            },
            find: |ctx, inputs| {
                Box::pin(async move {
                    let r: R = decode("inputs", inputs)?;
                    match r.find(&ctx).await? {
                        Some(out) => Ok(Some(encode("outputs", &out)?)),
                        None => Ok(None),
                    }
                })
            },
            find_all: |ctx, inputs| {
                Box::pin(async move {
                    let r: R = decode("inputs", inputs)?;
                    r.find_all(&ctx)
                        .await?
                        .iter()
                        .map(|out| encode("outputs", out))
                        .collect()
                })
            },
            import: |ctx, inputs, id| {
                Box::pin(async move {
                    let r: R = decode("inputs", inputs)?;
                    match r.import(&ctx, &id).await? {
                        Some(out) => Ok(Some(encode("outputs", &out)?)),
                        None => Ok(None),
                    }
                })
            },
            adopted: |ctx, inputs, outputs| {
                Box::pin(async move {
                    let r: R = decode("inputs", inputs)?;
                    let o: R::Outputs = decode("outputs", outputs)?;
                    r.adopted(&ctx, &o).await
                })
            },
            read: |ctx, inputs, outputs| {
                Box::pin(async move {
                    let r: R = decode("inputs", inputs)?;
                    let o: R::Outputs = decode("outputs", outputs)?;
                    match r.read(&ctx, &o).await? {
                        Some(obs) => Ok(Some((
                            encode("inputs", &obs.inputs)?,
                            encode("outputs", &obs.outputs)?,
                        ))),
                        None => Ok(None),
                    }
                })
            },
            update: |ctx, inputs, previous, outputs| {
                Box::pin(async move {
                    let r: R = decode("inputs", inputs)?;
                    let p: R = decode("previous inputs", previous)?;
                    let o: R::Outputs = decode("outputs", outputs)?;
                    let out = r.update(&ctx, &p, &o).await?;
                    encode("outputs", &out)
                })
            },
            delete: |ctx, inputs, outputs| {
                Box::pin(async move {
                    let r: R = decode("inputs", inputs)?;
                    let o: R::Outputs = decode("outputs", outputs)?;
                    r.delete(&ctx, &o).await
                })
            },
        }
    }
}

/// The resource kinds a stack uses, so that state can be read and destroyed without the program.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: HashMap<&'static str, KindOps>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<_> = self.kinds.keys().collect();
        kinds.sort();
        f.debug_struct("Registry").field("kinds", &kinds).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers resource type `R`.
    pub fn add<R: Resource>(&mut self) -> &mut Self {
        self.kinds.entry(R::KIND).or_insert_with(KindOps::of::<R>);
        self
    }

    pub(crate) fn get(&self, kind: &str) -> Option<&KindOps> {
        self.kinds.get(kind)
    }

    /// The kinds registered.
    pub(crate) fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;
    use crate::resource::Observed;

    /// A kind whose `fixed` field cannot change in place; `UPDATES` says whether the rest can.
    #[derive(Clone, Serialize, Deserialize)]
    struct Kind<const UPDATES: bool> {
        fixed: String,
        size: u32,
    }

    type KindOutputs = crate::testing::FakeOutputs;

    impl<const UPDATES: bool> Resource for Kind<UPDATES> {
        type Outputs = KindOutputs;
        const KIND: &'static str = "test:kind";
        const SERVICE: &'static str = "test";
        const UPDATES_IN_PLACE: bool = UPDATES;

        fn force_new(&self, previous: &Self) -> ForceNew {
            crate::force_new!(self, previous; fixed)
        }

        async fn create(&self, _: &Context) -> Result<KindOutputs, ResourceError> {
            Ok(KindOutputs::new(String::new()))
        }

        async fn read(
            &self,
            _: &Context,
            _: &KindOutputs,
        ) -> Result<Option<Observed<Self>>, ResourceError> {
            Ok(None)
        }

        async fn delete(&self, _: &Context, _: &KindOutputs) -> Result<(), ResourceError> {
            Ok(())
        }

        async fn find(&self, _: &Context) -> Result<Option<KindOutputs>, ResourceError> {
            Ok(None)
        }
    }

    fn forced<R: Resource>(changed: &str) -> Vec<String> {
        let old = json!({"fixed": "a", "size": 1});
        let mut new = old.clone();
        new[changed] = if changed == "fixed" {
            json!("b")
        } else {
            json!(2)
        };
        let rule = (KindOps::of::<R>().force_new)(&new, &old).unwrap();
        rule.forced([changed.to_owned()])
    }

    #[test]
    fn a_kind_without_an_in_place_update_is_replaced_on_any_change() {
        assert_eq!(forced::<Kind<true>>("size"), Vec::<String>::new());
        assert_eq!(forced::<Kind<true>>("fixed"), ["fixed"]);
        assert_eq!(forced::<Kind<false>>("size"), ["size"]);
        assert_eq!(forced::<Kind<false>>("fixed"), ["fixed"]);
    }
}
