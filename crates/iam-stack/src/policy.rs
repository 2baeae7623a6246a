//! Typed IAM policy documents, compared semantically.
//!
//! AWS hands documents back URL-encoded, with statements and lists reordered and single values where
//! one-element lists were sent. [`PolicyDocument::parse_aws`] decodes that; [`PolicyDocument::normalized`]
//! puts a document in one canonical form (lists sorted and without repeats, one-element lists as
//! lists), so two documents that mean the same compare equal and a re-apply plans no change.
//!
//! A [`PolicyDocument`] always serialises in that canonical form and compares (`==`) by it, so the
//! engine's plan, which compares serialised inputs, sees only changes of meaning.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The only policy language version in use.
pub const POLICY_VERSION: &str = "2012-10-17";

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Effect {
    /// Allow.
    Allow,
    /// Deny.
    Deny,
}

/// A list that AWS may write as a single string.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OneOrMany(pub Vec<String>);

impl Serialize for OneOrMany {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Repr::deserialize(d)? {
            Repr::One(s) => Self(vec![s]),
            Repr::Many(v) => Self(v),
        })
    }
}

impl<S: Into<String>, I: IntoIterator<Item = S>> From<I> for OneOrMany {
    fn from(items: I) -> Self {
        Self(items.into_iter().map(Into::into).collect())
    }
}

/// Who a trust policy lets assume a role: principals by type (`Service`, `AWS`, `Federated`).
pub type Principal = BTreeMap<String, OneOrMany>;

/// One statement.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Statement {
    /// An id for people reading the policy: what the statement is for.
    #[serde(rename = "Sid", default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Allow or deny.
    #[serde(rename = "Effect")]
    pub effect: Effect,
    /// For trust policies: who may assume the role.
    #[serde(rename = "Principal", default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    /// The actions (`logs:PutLogEvents`).
    #[serde(
        rename = "Action",
        default,
        skip_serializing_if = "OneOrMany::is_empty"
    )]
    pub action: OneOrMany,
    /// The resources (ARN patterns); empty in trust policies.
    #[serde(
        rename = "Resource",
        default,
        skip_serializing_if = "OneOrMany::is_empty"
    )]
    pub resource: OneOrMany,
    /// Conditions, as AWS writes them.
    #[serde(rename = "Condition", default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<BTreeMap<String, BTreeMap<String, OneOrMany>>>,
}

impl Statement {
    /// An `Allow` statement: `sid` says why, for people reading the policy.
    pub fn allow<A, R>(sid: &str, actions: A, resources: R) -> Self
    where
        A: IntoIterator,
        A::Item: Into<String>,
        R: IntoIterator,
        R::Item: Into<String>,
    {
        Self {
            sid: Some(sid.to_owned()),
            effect: Effect::Allow,
            principal: None,
            action: actions
                .into_iter()
                .map(Into::into)
                .collect::<Vec<String>>()
                .into(),
            resource: resources
                .into_iter()
                .map(Into::into)
                .collect::<Vec<String>>()
                .into(),
            condition: None,
        }
    }

    /// With a condition `operator` (`StringLike`) on `key` (`s3:prefix`) matching `values`.
    #[must_use]
    pub fn when(mut self, operator: &str, key: &str, values: &[&str]) -> Self {
        self.condition
            .get_or_insert_with(BTreeMap::new)
            .entry(operator.to_owned())
            .or_default()
            .insert(key.to_owned(), values.iter().copied().into());
        self
    }
}

impl OneOrMany {
    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn normalize(&mut self) {
        self.0.sort();
        self.0.dedup();
    }
}

/// A policy document. Serialises in canonical form; `==` compares meaning (see the module docs).
#[derive(Clone, Debug, Deserialize)]
pub struct PolicyDocument {
    /// The language version ([`POLICY_VERSION`]).
    #[serde(rename = "Version")]
    pub version: String,
    /// The statements.
    #[serde(rename = "Statement", deserialize_with = "one_or_many_statements")]
    pub statement: Vec<Statement>,
}

fn one_or_many_statements<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Statement>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        One(Box<Statement>),
        Many(Vec<Statement>),
    }
    Ok(match Repr::deserialize(d)? {
        Repr::One(s) => vec![*s],
        Repr::Many(v) => v,
    })
}

/// Why a document AWS returned could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// Not valid percent-encoding.
    #[error("policy document is not valid URL-encoded UTF-8")]
    Encoding(#[source] std::str::Utf8Error),
    /// Not a policy document.
    #[error("not a policy document: {0}")]
    Json(#[source] serde_json::Error),
}

impl Serialize for PolicyDocument {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Canonical<'a> {
            #[serde(rename = "Version")]
            version: &'a str,
            #[serde(rename = "Statement")]
            statement: &'a [Statement],
        }
        let n = self.clone().normalized();
        Canonical {
            version: &n.version,
            statement: &n.statement,
        }
        .serialize(s)
    }
}

impl PartialEq for PolicyDocument {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.clone().normalized(), other.clone().normalized());
        a.version == b.version && a.statement == b.statement
    }
}

impl Eq for PolicyDocument {}

impl PolicyDocument {
    /// A trust policy letting AWS service `service` (e.g. `ecs-tasks.amazonaws.com`) assume the role.
    pub fn trust(service: &str) -> Self {
        Self::new(vec![Statement {
            sid: None,
            effect: Effect::Allow,
            principal: Some(Principal::from([(
                "Service".to_owned(),
                OneOrMany(vec![service.to_owned()]),
            )])),
            action: OneOrMany(vec!["sts:AssumeRole".into()]),
            resource: OneOrMany::default(),
            condition: None,
        }])
    }

    /// A document with `statements`.
    pub fn new(statements: Vec<Statement>) -> Self {
        Self {
            version: POLICY_VERSION.into(),
            statement: statements,
        }
    }

    /// The canonical form: every list sorted and without repeats, statements sorted.
    #[must_use]
    pub fn normalized(mut self) -> Self {
        for s in &mut self.statement {
            s.action.normalize();
            s.resource.normalize();
            if let Some(p) = &mut s.principal {
                p.values_mut().for_each(OneOrMany::normalize);
            }
            if let Some(c) = &mut s.condition {
                c.values_mut()
                    .flat_map(|m| m.values_mut())
                    .for_each(OneOrMany::normalize);
            }
        }
        self.statement.sort();
        self.statement.dedup();
        self
    }

    /// Reads a document as AWS returns it (URL-encoded or not), normalised.
    ///
    /// # Errors
    /// [`DocumentError`] when it is not a policy document.
    pub fn parse_aws(text: &str) -> Result<Self, DocumentError> {
        let decoded = if text.trim_start().starts_with('{') {
            std::borrow::Cow::Borrowed(text)
        } else {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map_err(DocumentError::Encoding)?
        };
        let doc: PolicyDocument = serde_json::from_str(&decoded).map_err(DocumentError::Json)?;
        Ok(doc.normalized())
    }

    /// The JSON AWS takes.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// The JSON value of the document.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_empty_list_is_left_out_of_the_json_as_aws_writes_a_trust_policy() {
        assert!(OneOrMany::from(Vec::<String>::new()).is_empty());
        assert!(!OneOrMany::from(["s3:GetObject"]).is_empty());
        let trust = PolicyDocument::trust("ecs-tasks.amazonaws.com").to_value();
        let statement = &trust["Statement"][0];
        assert!(statement.get("Resource").is_none(), "{trust}");
        assert_eq!(statement["Action"], serde_json::json!(["sts:AssumeRole"]));
    }

    fn stmt(actions: &[&str], resources: &[&str]) -> Statement {
        Statement {
            sid: None,
            effect: Effect::Allow,
            principal: None,
            action: actions.iter().copied().into(),
            resource: resources.iter().copied().into(),
            condition: None,
        }
    }

    #[test]
    fn aws_encoding_and_single_values_compare_equal() {
        let ours = PolicyDocument::new(vec![stmt(
            &["logs:PutLogEvents", "logs:CreateLogStream"],
            &["arn:aws:logs:*:*:log-group:/ecs/frontend:*"],
        )])
        .normalized();
        let aws = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%7B%22Effect%22%3A%22Allow%22%2C\
%22Resource%22%3A%22arn%3Aaws%3Alogs%3A%2A%3A%2A%3Alog-group%3A%2Fecs%2Ffrontend%3A%2A%22%2C\
%22Action%22%3A%5B%22logs%3ACreateLogStream%22%2C%22logs%3APutLogEvents%22%5D%7D%7D";
        assert_eq!(PolicyDocument::parse_aws(aws).unwrap(), ours);
    }

    fn arb_statement() -> impl Strategy<Value = Statement> {
        let action = prop::sample::select(vec![
            "s3:GetObject",
            "s3:ListBucket",
            "logs:PutLogEvents",
            "ecr:GetAuthorizationToken",
        ]);
        let resource = prop::sample::select(vec!["*", "arn:aws:s3:::b/*", "arn:aws:s3:::b"]);
        (
            prop::collection::vec(action, 1..4),
            prop::collection::vec(resource, 1..3),
            any::<bool>(),
        )
            .prop_map(|(a, r, deny)| Statement {
                sid: None,
                effect: if deny { Effect::Deny } else { Effect::Allow },
                principal: None,
                action: a.into(),
                resource: r.into(),
                condition: None,
            })
    }

    proptest! {
        #[test]
        fn equal_documents_in_any_order_and_encoding_compare_equal(
            statements in prop::collection::vec(arb_statement(), 1..4),
            seed in any::<u64>(),
        ) {
            let doc = PolicyDocument::new(statements.clone());
            // Shuffle statements and every list deterministically from the seed.
            let mut shuffled = statements;
            let n = shuffled.len();
            shuffled.rotate_left((seed as usize) % n);
            for s in &mut shuffled {
                if seed % 2 == 0 { s.action.0.reverse(); }
                if seed % 3 == 0 { s.resource.0.reverse(); }
            }
            let json = PolicyDocument::new(shuffled).to_json();
            let encoded: String = percent_encoding::utf8_percent_encode(&json, percent_encoding::NON_ALPHANUMERIC).to_string();
            prop_assert_eq!(PolicyDocument::parse_aws(&encoded).unwrap(), doc.clone().normalized());
            prop_assert_eq!(PolicyDocument::parse_aws(&json).unwrap(), doc.normalized());
        }

        #[test]
        fn a_document_granting_more_or_other_does_not_compare_equal(
            statements in prop::collection::vec(arb_statement(), 1..4),
            which in any::<prop::sample::Index>(),
            change in 0u8..3,
        ) {
            let doc = PolicyDocument::new(statements.clone()).normalized();
            let mut other = statements;
            let i = which.index(other.len());
            match change {
                0 => other[i].action.0.push("iam:PassRole".into()),
                1 => other[i].resource.0.push("arn:aws:s3:::other/*".into()),
                _ => other.push(Statement { sid: None, effect: Effect::Allow, principal: None,
                        action: ["sts:AssumeRole"].into(), resource: ["*"].into(), condition: None }),
            }
            prop_assert_ne!(PolicyDocument::new(other).normalized(), doc);
        }
    }
}
