//! Checks made before any AWS call: names, paths, ARN patterns, actions, trust principals, tags.
//! Each error names the field and the value.

use platform_core::ValidationError;

use crate::policy::{Effect, PolicyDocument};

/// The service principals a trust policy may name. A typo here (`ecs-task.amazonaws.com`) would make a
/// role nobody can assume, which AWS only reports when a task fails to start; so unknown ones are
/// refused up front. Extend the list when a stack needs another service.
pub const KNOWN_SERVICE_PRINCIPALS: &[&str] = &[
    "application-autoscaling.amazonaws.com",
    "autoscaling.amazonaws.com",
    "batch.amazonaws.com",
    "codebuild.amazonaws.com",
    "codedeploy.amazonaws.com",
    "ec2.amazonaws.com",
    "ecs-tasks.amazonaws.com",
    "ecs.amazonaws.com",
    "eks.amazonaws.com",
    "elasticloadbalancing.amazonaws.com",
    "events.amazonaws.com",
    "lambda.amazonaws.com",
    "scheduler.amazonaws.com",
    "spotfleet.amazonaws.com",
    "states.amazonaws.com",
];

const PARTITIONS: &[&str] = &["aws", "aws-cn", "aws-us-gov"];

/// An IAM name (role, policy, instance profile): 1 to `max` characters of `[A-Za-z0-9+=,.@_-]`.
///
/// # Errors
/// When it is empty, too long, or has another character.
pub fn name(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    platform_core::resource::validate_name(field, value, max, "+=,.@_-")
}

/// An IAM path: `/`, or `/` + segments + `/`, at most 512 characters of printable ASCII.
///
/// # Errors
/// When it does not start and end with `/` or has other characters.
pub fn path(field: &str, value: &str) -> Result<(), ValidationError> {
    let ok = value.len() <= 512
        && value.starts_with('/')
        && value.ends_with('/')
        && value.chars().all(|c| ('!'..='~').contains(&c))
        && !value.contains("//");
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!("{value:?}"),
            "an IAM path starts and ends with '/' (e.g. \"/\" or \"/ecs/\")",
        ))
    }
}

/// A role's or policy's description: at most 1000 characters.
///
/// # Errors
/// When it is longer.
pub fn description(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.chars().count() > 1000 {
        return Err(ValidationError::new(
            field,
            value,
            "at most 1000 characters",
        ));
    }
    Ok(())
}

/// A resource in a policy: `*`, or an ARN pattern `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
///
/// # Errors
/// When it is neither.
pub fn arn_pattern(field: &str, value: &str) -> Result<(), ValidationError> {
    if value == "*" {
        return Ok(());
    }
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    let reason = if parts.len() < 6 || parts[0] != "arn" {
        Some("an ARN has six ':'-separated parts: arn:partition:service:region:account:resource")
    } else if !PARTITIONS.contains(&parts[1]) && parts[1] != "*" {
        Some("the partition must be aws, aws-cn or aws-us-gov")
    } else if parts[2].is_empty() {
        Some("the service part is empty")
    } else if !(parts[4].is_empty()
        || parts[4] == "*"
        || (parts[4].len() == 12 && parts[4].chars().all(|c| c.is_ascii_digit())))
    {
        Some("the account part must be empty, '*' or 12 digits")
    } else if parts[5].is_empty() {
        Some("the resource part is empty")
    } else {
        None
    };
    match reason {
        Some(r) => Err(ValidationError::new(field, value, r)),
        None => Ok(()),
    }
}

/// An action: `service:Action`, `*` wildcards allowed in the action part.
///
/// # Errors
/// When it has no `service:` prefix or has characters IAM does not allow.
pub fn action(field: &str, value: &str) -> Result<(), ValidationError> {
    let ok = match value.split_once(':') {
        Some((service, action)) => {
            !service.is_empty()
                && service
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !action.is_empty()
                && action
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
        }
        None => value == "*",
    };
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            value,
            "an action is service:Action, e.g. logs:PutLogEvents",
        ))
    }
}

/// A permissions policy: statements with at least one action and one resource, each well formed.
///
/// # Errors
/// The first bad field, as `field.Statement[i].Action[j]`.
pub fn permissions_policy(field: &str, doc: &PolicyDocument) -> Result<(), ValidationError> {
    version(field, doc)?;
    for (i, s) in doc.statement.iter().enumerate() {
        let at = format!("{field}.Statement[{i}]");
        if s.principal.is_some() {
            return Err(ValidationError::new(
                format!("{at}.Principal"),
                "set",
                "a permissions policy has no Principal (that is a trust policy)",
            ));
        }
        if s.action.is_empty() {
            return Err(ValidationError::new(
                format!("{at}.Action"),
                "[]",
                "a statement needs at least one action",
            ));
        }
        for (j, a) in s.action.0.iter().enumerate() {
            action(&format!("{at}.Action[{j}]"), a)?;
        }
        if s.resource.is_empty() {
            return Err(ValidationError::new(
                format!("{at}.Resource"),
                "[]",
                "a statement needs at least one resource",
            ));
        }
        for (j, r) in s.resource.0.iter().enumerate() {
            arn_pattern(&format!("{at}.Resource[{j}]"), r)?;
        }
    }
    Ok(())
}

/// A trust policy: every statement allows `sts:AssumeRole` to exactly one known service principal.
///
/// # Errors
/// The first bad field.
pub fn trust_policy(field: &str, doc: &PolicyDocument) -> Result<(), ValidationError> {
    version(field, doc)?;
    for (i, s) in doc.statement.iter().enumerate() {
        let at = format!("{field}.Statement[{i}]");
        if s.action.0 != ["sts:AssumeRole"] {
            return Err(ValidationError::new(
                format!("{at}.Action"),
                format!("{:?}", s.action.0),
                "a trust statement allows exactly sts:AssumeRole",
            ));
        }
        let services = s
            .principal
            .as_ref()
            .and_then(|p| (p.len() == 1).then(|| p.get("Service")).flatten())
            .map(|svc| svc.0.as_slice())
            .unwrap_or_default();
        if services.len() != 1 {
            return Err(ValidationError::new(
                format!("{at}.Principal"),
                format!("{:?}", s.principal),
                "a trust statement names exactly one service principal",
            ));
        }
        if s.effect == Effect::Allow && !KNOWN_SERVICE_PRINCIPALS.contains(&services[0].as_str()) {
            return Err(ValidationError::new(
                format!("{at}.Principal.Service"),
                &services[0],
                "unknown service principal (see iam_stack::validate::KNOWN_SERVICE_PRINCIPALS)",
            ));
        }
    }
    Ok(())
}

fn version(field: &str, doc: &PolicyDocument) -> Result<(), ValidationError> {
    if doc.version != crate::policy::POLICY_VERSION {
        return Err(ValidationError::new(
            format!("{field}.Version"),
            &doc.version,
            "must be 2012-10-17",
        ));
    }
    if doc.statement.is_empty() {
        return Err(ValidationError::new(
            format!("{field}.Statement"),
            "[]",
            "a policy needs at least one statement",
        ));
    }
    Ok(())
}

pub use platform_core::resource::validate_tags as tags;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_patterns() {
        for ok in [
            "*",
            "arn:aws:s3:::bucket/prefix/*",
            "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/frontend:*",
            "arn:aws:ecr:*:*:repository/*",
        ] {
            arn_pattern("r", ok).unwrap();
        }
        for bad in [
            "s3:::bucket",
            "arn:aws:s3",
            "arn:aws::us-east-1:1:x",
            "arn:amazon:s3:::b",
            "arn:aws:logs:us-east-1:12:log-group:x",
            "arn:aws:s3:::",
        ] {
            let e = arn_pattern("r", bad).unwrap_err();
            assert_eq!(e.value, bad);
        }
    }

    #[test]
    fn names_and_paths() {
        name("name", "ecs-cluster-role", 64).unwrap();
        assert!(name("name", "", 64).is_err());
        assert!(name("name", &"x".repeat(65), 64).is_err());
        assert!(
            name("name", "a b", 64)
                .unwrap_err()
                .to_string()
                .contains("' '")
        );
        path("path", "/").unwrap();
        path("path", "/ecs/").unwrap();
        assert!(path("path", "ecs").is_err());
        assert!(path("path", "/ecs").is_err());
    }

    #[test]
    fn actions() {
        action("a", "logs:PutLogEvents").unwrap();
        action("a", "ec2:Describe*").unwrap();
        assert!(action("a", "PutLogEvents").is_err());
        assert!(action("a", "logs:").is_err());
        assert!(action("a", "logs:Put Log").is_err());
    }
}
