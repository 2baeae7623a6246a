//! Checks every stack makes before any AWS call: names and user tags. Each error names the field
//! and the value.

use std::collections::BTreeMap;

use crate::error::ValidationError;

/// A name of 1 to `max` characters, each an ASCII letter, a digit or one of `punctuation`.
///
/// Each AWS service allows its own punctuation: ECS names `-_`, log groups `.-_/#`, IAM `+=,.@_-`.
///
/// ```
/// use platform_core::resource::validate_name;
/// validate_name("cluster_name", "my-ecs-cluster", 255, "-_").unwrap();
/// assert_eq!(
///     validate_name("cluster_name", "my cluster", 255, "-_").unwrap_err().to_string(),
///     "invalid cluster_name = \"my cluster\": ' ' is not allowed (letters, digits and -_ are)"
/// );
/// ```
///
/// # Errors
/// When the name is empty, longer than `max`, or has another character (the first one is named).
pub fn validate_name(
    field: &str,
    value: &str,
    max: usize,
    punctuation: &str,
) -> Result<(), ValidationError> {
    if value.is_empty() || value.chars().count() > max {
        return Err(ValidationError::new(
            field,
            format!("{value:?}"),
            format!("must be 1 to {max} characters"),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || punctuation.contains(*c)))
    {
        return Err(ValidationError::new(
            field,
            format!("{value:?}"),
            format!("{c:?} is not allowed (letters, digits and {punctuation} are)"),
        ));
    }
    Ok(())
}

/// Whether `value` is 1 to `max` lowercase ASCII letters, digits and `-`, not starting with `-`: a
/// name that becomes part of other names (an environment's prefix, a service's role name).
///
/// ```
/// use platform_core::resource::is_lowercase_name;
/// assert!(is_lowercase_name("order-api-2", 20));
/// assert!(!is_lowercase_name("-api", 20) && !is_lowercase_name("Api", 20));
/// assert!(!is_lowercase_name("", 20) && !is_lowercase_name("api", 2));
/// ```
pub fn is_lowercase_name(value: &str, max: usize) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
}

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
