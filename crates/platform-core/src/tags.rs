//! How user tags change between two runs, shared by every AWS resource kind.

use std::collections::BTreeMap;

/// What changes between two sets of user tags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagChanges {
    /// Tags to add or overwrite.
    pub set: BTreeMap<String, String>,
    /// Keys to remove.
    pub removed: Vec<String>,
}

impl TagChanges {
    /// The changes that bring `old` to `new`.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// let old = BTreeMap::from([("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())]);
    /// let new = BTreeMap::from([("a".to_owned(), "9".to_owned())]);
    /// let c = platform_core::TagChanges::between(&old, &new);
    /// assert_eq!(c.set, BTreeMap::from([("a".to_owned(), "9".to_owned())]));
    /// assert_eq!(c.removed, ["b"]);
    /// ```
    pub fn between(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Self {
        Self {
            set: new
                .iter()
                .filter(|(k, v)| old.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            removed: old
                .keys()
                .filter(|k| !new.contains_key(*k))
                .cloned()
                .collect(),
        }
    }
}
