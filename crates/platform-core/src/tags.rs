//! User tags shared by every AWS resource kind: their validation and their changes.

use std::collections::BTreeMap;

use crate::error::ValidationError;

/// Checks user tags against AWS's limits before any call: at most 45 (AWS allows 50; the engine adds
/// its own), keys of 1 to 128 characters, values of at most 256, and the `aws:` and `platform:`
/// prefixes reserved.
///
/// # Errors
/// The first bad tag, named as `field["key"]` with its key or value.
pub fn validate_tags(field: &str, tags: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    if tags.len() > 45 {
        return Err(ValidationError::new(
            field,
            tags.len(),
            "at most 45 user tags (AWS allows 50; the engine adds its own)",
        ));
    }
    for (k, v) in tags {
        let f = format!("{field}[{k:?}]");
        if k.is_empty() || k.chars().count() > 128 {
            return Err(ValidationError::new(
                f,
                k,
                "tag keys have 1 to 128 characters",
            ));
        }
        if k.to_ascii_lowercase().starts_with("aws:") || k.starts_with("platform:") {
            return Err(ValidationError::new(
                f,
                k,
                "the aws: and platform: prefixes are reserved",
            ));
        }
        if v.chars().count() > 256 {
            return Err(ValidationError::new(
                f,
                v,
                "tag values have at most 256 characters",
            ));
        }
    }
    Ok(())
}

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
