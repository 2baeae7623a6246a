//! Typed references between resources and the inputs that may hold them.
//!
//! A resource's inputs are plain serde types. Where an input comes from another resource's output it is
//! an [`Input::Ref`]: a typed [`Ref<T>`] naming the producing resource and its output field. In the
//! serialised inputs a reference is the object `{"$ref": {"resource": "...", "output": "..."}}`; the engine
//! replaces it with the producer's output value before any call, so resource code only ever sees
//! [`Input::Value`]. The graph's edges are read from these references: nobody declares them twice.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::ResourceError;

/// The key that marks a reference in serialised inputs.
pub(crate) const REF_KEY: &str = "$ref";

/// A typed reference to an output of another resource: in the same stack, or, made with
/// [`in_stack`](Self::in_stack), in another stack that this one [references](crate::Stack::references).
///
/// `Ref<VpcId>` can only be passed where a `VpcId` input is expected: the type checker, not a deploy,
/// catches a subnet given a security group id as its VPC.
pub struct Ref<T> {
    target: RefTarget,
    _type: PhantomData<fn() -> T>,
}

/// The untyped address of a reference: which stack, which resource, which output field.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefTarget {
    /// The producing resource's stack when it is another one; `None` for the referring stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// Logical name of the producing resource.
    pub resource: String,
    /// Name of the output field (as serialised) on the producer's outputs.
    pub output: String,
}

impl fmt::Display for RefTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.stack {
            Some(stack) => write!(f, "{stack}/{}.{}", self.resource, self.output),
            None => write!(f, "{}.{}", self.resource, self.output),
        }
    }
}

impl<T> Ref<T> {
    /// A reference to output `output` of resource `resource`. Stack code gets refs from the handles that
    /// [`Scope::add`](crate::Scope::add) returns; this constructor is for resource authors writing their
    /// outputs' ref types (see [`resource_outputs!`](crate::resource_outputs)).
    pub fn new(resource: impl Into<String>, output: impl Into<String>) -> Self {
        Self {
            target: RefTarget {
                stack: None,
                resource: resource.into(),
                output: output.into(),
            },
            _type: PhantomData,
        }
    }

    /// The same output of the same resource, in stack `stack`: a reference across stacks. The
    /// referring stack must list `stack` in its [`references`](crate::Stack::references). Applied
    /// alone, the value is read from `stack`'s recorded state; applied in a
    /// [`StackGroup`](crate::StackGroup) with `stack`, the referring resource starts as soon as this
    /// one resource exists, not when the whole of `stack` is done.
    #[must_use]
    pub fn in_stack(mut self, stack: impl Into<String>) -> Self {
        self.target.stack = Some(stack.into());
        self
    }

    /// Where this reference points.
    pub fn target(&self) -> &RefTarget {
        &self.target
    }
}

impl<T> Clone for Ref<T> {
    fn clone(&self) -> Self {
        Self {
            target: self.target.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> PartialEq for Ref<T> {
    fn eq(&self, other: &Self) -> bool {
        self.target == other.target
    }
}

impl<T> fmt::Debug for Ref<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ref({})", self.target)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefRepr {
    #[serde(rename = "$ref")]
    target: RefTarget,
}

impl<T> Serialize for Ref<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RefRepr {
            target: self.target.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Ref<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = RefRepr::deserialize(deserializer)?;
        Ok(Self {
            target: repr.target,
            _type: PhantomData,
        })
    }
}

/// An input value: known now, or the output of another resource, known once that resource exists.
#[derive(Clone, PartialEq)]
pub enum Input<T> {
    /// A value known at declaration time.
    Value(T),
    /// A value produced by another resource.
    Ref(Ref<T>),
}

impl<T> Input<T> {
    /// The value, once the engine has resolved references.
    ///
    /// # Errors
    /// [`ResourceError::Unresolved`] when called on a reference. The engine resolves every reference
    /// before it calls `create`, `update`, `read` or `delete`, so inside those methods this only fails
    /// on an engine bug; in `validate` a reference is simply not checked yet.
    pub fn get(&self) -> Result<&T, ResourceError> {
        match self {
            Self::Value(v) => Ok(v),
            Self::Ref(r) => Err(ResourceError::Unresolved {
                reference: r.target.to_string(),
            }),
        }
    }

    /// The value if it is known now (`None` for a reference).
    pub fn known(&self) -> Option<&T> {
        match self {
            Self::Value(v) => Some(v),
            Self::Ref(_) => None,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Input<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(v) => v.fmt(f),
            Self::Ref(r) => r.fmt(f),
        }
    }
}

impl<T> From<T> for Input<T> {
    fn from(value: T) -> Self {
        Self::Value(value)
    }
}

impl<T> From<Ref<T>> for Input<T> {
    fn from(value: Ref<T>) -> Self {
        Self::Ref(value)
    }
}

impl<T> From<&Ref<T>> for Input<T> {
    fn from(value: &Ref<T>) -> Self {
        Self::Ref(value.clone())
    }
}

impl<T: Serialize> Serialize for Input<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Value(v) => v.serialize(serializer),
            Self::Ref(r) => r.serialize(serializer),
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Input<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        if as_ref_target(&value).is_some() {
            let r: Ref<T> = serde_json::from_value(value).map_err(serde::de::Error::custom)?;
            return Ok(Self::Ref(r));
        }
        serde_json::from_value(value)
            .map(Self::Value)
            .map_err(serde::de::Error::custom)
    }
}

/// The reference a JSON value encodes, if it is one: an object whose one key is `$ref`, holding a
/// [`RefTarget`] (`resource` and `output` strings, an optional `stack` string or null, nothing
/// else). Checked in place: most values are not references, and none is copied to find out.
pub(crate) fn as_ref_target(value: &Value) -> Option<RefTarget> {
    let obj = value.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    target_of(obj.get(REF_KEY)?)
}

/// The target a `$ref` key holds, if it is one.
fn target_of(value: &Value) -> Option<RefTarget> {
    let target = value.as_object()?;
    let text = |key: &str| target.get(key).and_then(Value::as_str);
    let stack = match target.get("stack") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return None,
    };
    let (resource, output) = (text("resource")?, text("output")?);
    let known = usize::from(target.contains_key("stack")) + 2;
    (target.len() == known).then(|| RefTarget {
        stack,
        resource: resource.to_owned(),
        output: output.to_owned(),
    })
}

/// Whether a JSON value holds a reference anywhere.
pub(crate) fn has_refs(value: &Value) -> bool {
    as_ref_target(value).is_some()
        || match value {
            Value::Array(items) => items.iter().any(has_refs),
            Value::Object(map) => map.values().any(has_refs),
            _ => false,
        }
}

/// Every reference inside a JSON value, in document order.
pub(crate) fn collect_refs(value: &Value, out: &mut Vec<RefTarget>) {
    if let Some(t) = as_ref_target(value) {
        out.push(t);
        return;
    }
    match value {
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Every reference in JSON text, in the order the text has them, read without building the
/// document: what [`collect_refs`] finds in the text parsed, in the text's order.
///
/// # Errors
/// When `text` is not one JSON value.
pub(crate) fn refs_in(text: &str) -> Result<Vec<RefTarget>, serde_json::Error> {
    let mut refs = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text);
    Scan(&mut refs).deserialize(&mut de)?;
    de.end()?;
    Ok(refs)
}

/// Reads one JSON value, pushing the references in it and keeping nothing else.
struct Scan<'a>(&'a mut Vec<RefTarget>);

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Scan(&mut *self.0))?.is_some() {}
        Ok(())
    }

    /// An object is a reference when its one key is `$ref` and holds a target: a first key `$ref`
    /// has its value's text held, and is a reference if no key follows and the text is a target.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut first = true;
        let mut held: Option<&'de RawValue> = None;
        while let Some(is_ref) = map.next_key_seed(IsRefKey)? {
            if std::mem::take(&mut first) && is_ref {
                held = Some(map.next_value()?);
                continue;
            }
            if let Some(text) = held.take() {
                self.0
                    .extend(refs_in(text.get()).map_err(serde::de::Error::custom)?);
            }
            map.next_value_seed(Scan(&mut *self.0))?;
        }
        if let Some(text) = held {
            // A target is read as serde reads it (`RefTarget` denies unknown fields), which is
            // what `as_ref_target` checks in a tree.
            match serde_json::from_str::<RefTarget>(text.get()) {
                Ok(t) => self.0.push(t),
                Err(_) => self
                    .0
                    .extend(refs_in(text.get()).map_err(serde::de::Error::custom)?),
            }
        }
        Ok(())
    }
}

/// Reads an object's key: whether it is `$ref`.
struct IsRefKey;

impl<'de> DeserializeSeed<'de> for IsRefKey {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for IsRefKey {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == REF_KEY)
    }
}

/// Outcome of resolving the references in a value against what is known.
#[derive(Debug)]
pub(crate) enum Resolved {
    /// Every reference had a known value.
    Known(Value),
    /// At least one reference is not known yet (its producer is about to be created or replaced).
    Unknown,
}

/// Replaces each reference in `value` by `lookup(target)`; `Ok(None)` from lookup means "not known yet".
///
/// # Errors
/// Passes on lookup's error (a producer without that output).
pub(crate) fn resolve<E>(
    value: &Value,
    lookup: &mut impl FnMut(&RefTarget) -> Result<Option<Value>, E>,
) -> Result<Resolved, E> {
    if let Some(t) = as_ref_target(value) {
        return Ok(match lookup(&t)? {
            Some(v) => Resolved::Known(v),
            None => Resolved::Unknown,
        });
    }
    Ok(match value {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match resolve(item, lookup)? {
                    Resolved::Known(v) => out.push(v),
                    Resolved::Unknown => return Ok(Resolved::Unknown),
                }
            }
            Resolved::Known(Value::Array(out))
        }
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, v) in map {
                match resolve(v, lookup)? {
                    Resolved::Known(v) => {
                        out.insert(k.clone(), v);
                    }
                    Resolved::Unknown => return Ok(Resolved::Unknown),
                }
            }
            Resolved::Known(Value::Object(out))
        }
        other => Resolved::Known(other.clone()),
    })
}

/// `value` with each reference replaced by `lookup(target)`, or by `null` where it is not known yet.
///
/// # Errors
/// Passes on lookup's error.
pub(crate) fn partial<E>(
    value: &Value,
    lookup: &mut impl FnMut(&RefTarget) -> Result<Option<Value>, E>,
) -> Result<Value, E> {
    if let Some(t) = as_ref_target(value) {
        return Ok(lookup(&t)?.unwrap_or(Value::Null));
    }
    Ok(match value {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| partial(v, lookup))
                .collect::<Result<_, E>>()?,
        ),
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, v) in map {
                out.insert(k.clone(), partial(v, lookup)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_value_keeps_what_is_known_and_nulls_what_is_not() {
        let v = serde_json::json!({"a": [1, {"$ref": {"resource": "x", "output": "id"}}],
                                   "b": {"$ref": {"resource": "y", "output": "id"}}, "c": "k"});
        let got = partial(&v, &mut |t: &RefTarget| -> Result<Option<Value>, ()> {
            Ok((t.resource == "y").then(|| Value::from("y-1")))
        })
        .unwrap();
        assert_eq!(
            got,
            serde_json::json!({"a": [1, null], "b": "y-1", "c": "k"})
        );
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Subnet {
        vpc_id: Input<String>,
        cidr: String,
    }

    #[test]
    fn a_ref_round_trips_and_a_value_stays_a_value() {
        let s = Subnet {
            vpc_id: Ref::new("vpc", "vpc_id").into(),
            cidr: "10.0.1.0/24".into(),
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json["vpc_id"],
            serde_json::json!({"$ref": {"resource": "vpc", "output": "vpc_id"}})
        );
        let back: Subnet = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, s);
        let mut refs = Vec::new();
        collect_refs(&json, &mut refs);
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].to_string(), "vpc.vpc_id");

        let resolved = resolve(&json, &mut |_t: &RefTarget| {
            Ok::<_, ()>(Some(Value::from("vpc-123")))
        })
        .unwrap();
        let Resolved::Known(resolved) = resolved else {
            panic!("expected known")
        };
        let concrete: Subnet = serde_json::from_value(resolved).unwrap();
        assert_eq!(concrete.vpc_id.get().unwrap(), "vpc-123");
    }

    #[test]
    fn a_reference_is_read_in_place_as_serde_reads_it() {
        let cases = [
            serde_json::json!({"$ref": {"resource": "x", "output": "id"}}),
            serde_json::json!({"$ref": {"stack": "net", "resource": "x", "output": "id"}}),
            serde_json::json!({"$ref": {"stack": null, "resource": "x", "output": "id"}}),
            serde_json::json!({"$ref": {"stack": 1, "resource": "x", "output": "id"}}),
            serde_json::json!({"$ref": {"resource": "x", "output": "id", "extra": 1}}),
            serde_json::json!({"$ref": {"stack": "n", "resource": "x", "output": "id", "e": 1}}),
            serde_json::json!({"$ref": {"resource": "x"}}),
            serde_json::json!({"$ref": {"output": "id"}}),
            serde_json::json!({"$ref": {"resource": 1, "output": "id"}}),
            serde_json::json!({"$ref": {"resource": "x", "output": 2}}),
            serde_json::json!({"$ref": "x.id"}),
            serde_json::json!({"$ref": {"resource": "x", "output": "id"}, "other": 1}),
            serde_json::json!({"ref": {"resource": "x", "output": "id"}}),
            serde_json::json!(["x", "id"]),
        ];
        for case in cases {
            let by_serde = case
                .as_object()
                .filter(|o| o.len() == 1)
                .and_then(|o| o.get(REF_KEY))
                .and_then(|t| serde_json::from_value::<RefTarget>(t.clone()).ok());
            assert_eq!(as_ref_target(&case), by_serde, "{case}");
        }
        let stacked =
            serde_json::json!({"$ref": {"stack": "net", "resource": "x", "output": "id"}});
        assert_eq!(as_ref_target(&stacked).unwrap().to_string(), "net/x.id");
    }

    /// JSON values with references (well-formed or not) among plain values, nested.
    fn json_with_refs() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let name = prop::sample::select(vec!["a", "b", "$ref", "stack", "resource", "output"]);
        let target = (
            prop::option::of(prop::sample::select(vec!["net", "iam"])),
            prop::sample::select(vec!["vpc", "role"]),
            any::<bool>(),
        )
            .prop_map(|(stack, resource, extra)| {
                let mut t = serde_json::json!({"resource": resource, "output": "id"});
                if let Some(s) = stack {
                    t["stack"] = s.into();
                }
                if extra {
                    t["extra"] = 1.into();
                }
                serde_json::json!({ REF_KEY: t })
            });
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z$\"\\\\]{0,6}".prop_map(Value::from),
            target,
        ];
        leaf.prop_recursive(4, 48, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((name.clone(), inner), 0..4).prop_map(|kv| Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn the_scan_of_text_finds_the_references_the_tree_has(value in json_with_refs()) {
            let mut walked = Vec::new();
            collect_refs(&value, &mut walked);
            // Text written from a tree has its keys in the tree's order: the same order.
            proptest::prop_assert_eq!(refs_in(&value.to_string()).unwrap(), walked);
        }
    }

    #[test]
    fn a_reference_is_found_at_any_depth_of_objects_and_arrays() {
        let r = serde_json::json!({"$ref": {"resource": "x", "output": "id"}});
        for holds in [
            r.clone(),
            serde_json::json!([1, r.clone()]),
            serde_json::json!({"a": {"b": r.clone()}}),
            serde_json::json!({"a": [{"b": [r.clone()]}]}),
        ] {
            assert!(has_refs(&holds), "{holds}");
        }
        for plain in [
            serde_json::json!({"a": {"b": [1, "x"]}}),
            serde_json::json!([{"resource": "x", "output": "id"}]),
            serde_json::json!("{\"$ref\": 1}"),
        ] {
            assert!(!has_refs(&plain), "{plain}");
        }
    }

    #[test]
    fn the_scan_reads_text_in_its_own_order_and_refuses_what_is_not_json() {
        let found = |text: &str| -> Vec<String> {
            refs_in(text)
                .unwrap()
                .iter()
                .map(|r| r.to_string())
                .collect()
        };
        let text = r#"{"z": {"$ref": {"resource": "z", "output": "id"}},
                       "a": [{"$ref": {"resource": "a", "output": "id"}, "k": 1}]}"#;
        assert_eq!(found(text), ["z.id"]);
        let text = r#"{"$ref": {"$ref": {"resource": "x", "output": "id"}}, "k": 1}"#;
        assert_eq!(found(text), ["x.id"]);
        // A target's shape under another key, and `$ref` as a later key, are no references.
        assert!(found(r#"{"a": {"resource": "x", "output": "id"}}"#).is_empty());
        assert!(found(r#"{"k": 1, "$ref": {"resource": "x", "output": "id"}}"#).is_empty());
        assert!(refs_in("{\"a\": ").is_err());
        assert!(refs_in("1 2").is_err());
    }

    #[test]
    fn an_unknown_producer_makes_the_value_unknown() {
        let json = serde_json::json!({"a": [1, {"$ref": {"resource": "x", "output": "id"}}]});
        let r = resolve(&json, &mut |_t: &RefTarget| Ok::<_, ()>(None)).unwrap();
        assert!(matches!(r, Resolved::Unknown));
    }

    #[test]
    fn get_on_an_unresolved_ref_is_an_error_naming_it() {
        let i: Input<String> = Ref::new("vpc", "vpc_id").into();
        let err = i.get().unwrap_err();
        assert!(err.to_string().contains("vpc.vpc_id"), "{err}");
    }
}
