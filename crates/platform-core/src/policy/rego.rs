//! Policies written in Rego, with conftest's conventions, evaluated in-process by `regorus`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Enforcement, PlanDocument, Policy, Violation};

/// A Rego file that cannot be used: unreadable, or not valid Rego.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {reason}", file.display())]
#[non_exhaustive]
pub struct RegoError {
    /// The file.
    pub file: PathBuf,
    /// The line (1-based; 0 when the error is not about one line).
    pub line: u32,
    /// Why.
    pub reason: String,
}

/// One Rego file as a [`Policy`]: its `deny` rules are mandatory, its `warn` rules advisory
/// (conftest's conventions), in `package main`, in OPA 1.0's syntax (`deny contains msg if { ... }`).
/// Its `input` is the [`PlanDocument`] (`input.resources`). A rule's value is a message, or an
/// object `{"msg": ..., "stack": ..., "resource": ..., "fix": ...}` naming the resource. Its id is
/// the file's name without `.rego` (`min-tasks.rego`: `min-tasks`).
///
/// ```
/// use platform_core::policy::{PlanDocument, Policy, RegoPolicy};
///
/// let policy = RegoPolicy::from_source(
///     "min-tasks.rego",
///     r#"package main
/// import rego.v1
/// deny contains msg if {
///     some r in input.resources
///     r.kind == "ecs:service"
///     r.inputs.desired_count < 2
///     msg := {"msg": sprintf("%s runs %d task", [r.name, r.inputs.desired_count]), "resource": r.name}
/// }
/// "#,
/// )
/// .unwrap();
/// assert_eq!(policy.id(), "min-tasks");
/// assert!(policy.check(&PlanDocument::default()).is_empty());
/// ```
pub struct RegoPolicy {
    id: String,
    file: PathBuf,
    engine: regorus::Engine,
}

impl std::fmt::Debug for RegoPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoPolicy")
            .field("id", &self.id)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl RegoPolicy {
    /// The policy in `file`.
    ///
    /// # Errors
    /// [`RegoError`] naming the file, the line and the reason when it cannot be read or parsed.
    pub fn from_file(file: &Path) -> Result<Self, RegoError> {
        let text = std::fs::read_to_string(file).map_err(|e| RegoError {
            file: file.to_owned(),
            line: 0,
            reason: e.to_string(),
        })?;
        Self::from_source(file, &text)
    }

    /// The policy `text`, read from `file`.
    ///
    /// # Errors
    /// [`RegoError`] naming the file, the line and the reason when it does not parse.
    pub fn from_source(file: impl AsRef<Path>, text: &str) -> Result<Self, RegoError> {
        let file = file.as_ref().to_owned();
        let mut engine = regorus::Engine::new();
        engine
            .add_policy(file.display().to_string(), text.to_owned())
            .map_err(|e| parse_error(&file, &e.to_string()))?;
        let id = file.file_stem().map_or_else(
            || file.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        Ok(Self { id, file, engine })
    }

    /// Every policy in `paths`: files as they are, directories' `*.rego` files (not their
    /// `*_test.rego` files, which are OPA's tests), in name order.
    ///
    /// # Errors
    /// The first file that cannot be read or parsed; a path that does not exist.
    pub fn load(paths: &[PathBuf]) -> Result<Vec<Self>, RegoError> {
        let mut out = Vec::new();
        for path in paths {
            if path.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| RegoError {
                        file: path.clone(),
                        line: 0,
                        reason: e.to_string(),
                    })?
                    .filter_map(|e| Some(e.ok()?.path()))
                    .filter(|p| {
                        p.extension().is_some_and(|x| x == "rego")
                            && !p.to_string_lossy().ends_with("_test.rego")
                    })
                    .collect();
                files.sort();
                for f in files {
                    out.push(Self::from_file(&f)?);
                }
            } else {
                out.push(Self::from_file(path)?);
            }
        }
        Ok(out)
    }

    /// The file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The values of rule `data.main.RULE` for `input`: empty when the rule is not defined.
    fn eval(engine: &mut regorus::Engine, rule: &str) -> Result<Vec<Value>, String> {
        let results = engine
            .eval_query(format!("data.main.{rule}"), false)
            .map_err(|e| e.to_string())?;
        let Some(value) = results
            .result
            .into_iter()
            .next()
            .and_then(|r| r.expressions.into_iter().next())
            .map(|e| e.value)
        else {
            return Ok(Vec::new());
        };
        match serde_json::to_value(&value).map_err(|e| e.to_string())? {
            Value::Array(items) => Ok(items),
            Value::Null => Ok(Vec::new()),
            other => Err(format!(
                "rule {rule} is {other}, not a set of messages (write `{rule} contains msg if {{ ... }}`)"
            )),
        }
    }

    fn violation(&self, enforcement: Enforcement, value: &Value) -> Violation {
        let text = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let message = match value {
            Value::String(s) => s.clone(),
            Value::Object(_) => text("msg"),
            other => other.to_string(),
        };
        Violation::new(self, text("stack"), text("resource"), message, text("fix"))
            .with_enforcement(enforcement)
    }
}

impl Policy for RegoPolicy {
    fn id(&self) -> &str {
        &self.id
    }

    fn description(&self) -> &str {
        "a Rego policy: deny (mandatory) and warn (advisory) rules in package main"
    }

    fn enforcement(&self) -> Enforcement {
        Enforcement::Mandatory
    }

    /// `deny` and `warn` over `plan`. A policy that fails to evaluate refuses the run (a mandatory
    /// violation saying why): a broken guardrail does not let everything through.
    fn check(&self, plan: &PlanDocument) -> Vec<Violation> {
        let mut engine = self.engine.clone();
        let input = match serde_json::to_string(plan)
            .map_err(|e| e.to_string())
            .and_then(|json| regorus::Value::from_json_str(&json).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => return vec![self.broken(&e)],
        };
        engine.set_input(input);
        let mut out = Vec::new();
        for (rule, enforcement) in [
            ("deny", Enforcement::Mandatory),
            ("warn", Enforcement::Advisory),
        ] {
            match Self::eval(&mut engine, rule) {
                Ok(values) => out.extend(values.iter().map(|v| self.violation(enforcement, v))),
                Err(e) => out.push(self.broken(&e)),
            }
        }
        out
    }
}

impl RegoPolicy {
    fn broken(&self, why: &str) -> Violation {
        Violation::new(
            self,
            "",
            "",
            format!("{} could not be evaluated: {why}", self.file.display()),
            "fix the policy (opa eval or conftest show the same input: `production preview --json`'s plan)",
        )
    }
}

/// regorus's parse error (`--> FILE:LINE:COL`, the source line, `error: REASON`) as file, line
/// and reason.
fn parse_error(file: &Path, message: &str) -> RegoError {
    let line = message
        .lines()
        .find_map(|l| l.trim().strip_prefix("-->"))
        .and_then(|loc| loc.trim().rsplit(':').nth(1)?.parse().ok())
        .unwrap_or(0);
    let reason = message
        .lines()
        .find_map(|l| l.trim().strip_prefix("error:"))
        .map_or_else(|| message.trim().to_owned(), |r| r.trim().to_owned());
    RegoError {
        file: file.to_owned(),
        line,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parse_error_names_the_file_the_line_and_the_reason() {
        let err = RegoPolicy::from_source(
            "p.rego",
            "package main\nimport rego.v1\ndeny contains msg if {\n  input.x ==\n}\n",
        )
        .unwrap_err();
        assert_eq!(err.file, Path::new("p.rego"));
        assert_eq!(err.line, 5, "{err}");
        assert!(err.to_string().starts_with("p.rego:5: "), "{err}");
        assert!(
            !err.reason.is_empty() && !err.reason.contains("-->"),
            "{err}"
        );
    }

    #[test]
    fn deny_is_mandatory_warn_advisory_and_objects_name_the_resource() {
        let p = RegoPolicy::from_source(
            "dir/two.rego",
            r#"package main
deny contains "plain" if { count(input.resources) > 0 }
warn contains {"msg": "m", "stack": "s", "resource": "r", "fix": "f"} if { true }
"#,
        )
        .unwrap();
        assert_eq!(p.id(), "two");
        assert_eq!(p.file(), Path::new("dir/two.rego"));
        assert!(
            p.description()
                .contains("deny (mandatory) and warn (advisory)")
        );
        assert_eq!(p.enforcement(), Enforcement::Mandatory);
        let doc: PlanDocument = serde_json::from_value(serde_json::json!({
            "format_version": 1,
            "resources": [{"stack": "s", "name": "r", "kind": "k", "action": "create",
                           "inputs": {}, "unknown": [], "changes": []}]
        }))
        .unwrap();
        let v = p.check(&doc);
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(
            (
                v[0].enforcement,
                v[0].message.as_str(),
                v[0].resource.as_str()
            ),
            (Enforcement::Mandatory, "plain", "")
        );
        assert_eq!(
            (
                v[1].enforcement,
                v[1].stack.as_str(),
                v[1].resource.as_str(),
                v[1].message.as_str(),
                v[1].fix.as_str()
            ),
            (Enforcement::Advisory, "s", "r", "m", "f")
        );
        assert_eq!(v[1].policy, "two");
        // Without resources, the deny rule is not met; warn always is.
        let v = p.check(&PlanDocument::default());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].enforcement, Enforcement::Advisory);
    }

    #[test]
    fn a_policy_that_fails_to_evaluate_refuses_the_run() {
        let p = RegoPolicy::from_source("bad.rego", "package main\ndeny := 3\n").unwrap();
        let v = p.check(&PlanDocument::default());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].enforcement, Enforcement::Mandatory);
        assert!(v[0].message.contains("not a set of messages"), "{v:?}");
    }

    #[test]
    fn a_directory_loads_its_policies_in_name_order_without_tests() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("b.rego", "package main\n"),
            ("a.rego", "package main\n"),
            ("a_test.rego", "not rego at all"),
            ("notes.txt", "not rego at all"),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let loaded = RegoPolicy::load(&[dir.path().to_owned()]).unwrap();
        let ids: Vec<&str> = loaded.iter().map(|p| p.id()).collect();
        assert_eq!(ids, ["a", "b"]);
        let missing = RegoPolicy::load(&[dir.path().join("nope.rego")]).unwrap_err();
        assert!(missing.to_string().contains("nope.rego"), "{missing}");
    }
}
