//! The roles' permissions (the cluster's, the instances', one per service), each statement with the reason it exists, and the least-privilege
//! audit every document here passes (and that callers can run on their own documents).

use crate::ServiceAccess;
use crate::policy::{PolicyDocument, Statement};

/// Where the policies' ARNs point: the partition, region and account (each `*` when not pinned), and
/// the names of what the roles may touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// `aws`, `aws-cn` or `aws-us-gov`.
    pub partition: String,
    /// The region, or `*`.
    pub region: String,
    /// The account, or `*`.
    pub account: String,
    /// The ECS cluster the instances join.
    pub cluster_name: String,
    /// The ECR repositories the roles may pull from (a name or pattern: `frontend`, `team/*`, `*`).
    pub ecr_repositories: String,
    /// Prefix of the load balancers and target groups the cluster role may register targets in.
    pub load_balancer_prefix: String,
}

impl Scope {
    fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{}:{resource}",
            self.partition, self.region, self.account
        )
    }

    fn ecr_pull(&self) -> [Statement; 2] {
        [
            // GetAuthorizationToken has no resource-level permissions: AWS only accepts "*" here.
            Statement::allow("EcrLogin", ["ecr:GetAuthorizationToken"], ["*"]),
            // Pull image layers and manifests, from the named repositories only.
            Statement::allow(
                "EcrPull",
                [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                ],
                [self.arn("ecr", &format!("repository/{}", self.ecr_repositories))],
            ),
        ]
    }

    /// The ECS cluster role (trusted by `ecs.amazonaws.com`): what ECS does for the cluster's
    /// services, registering tasks as load balancer targets.
    pub fn cluster_policy(&self) -> PolicyDocument {
        let lb = &self.load_balancer_prefix;
        PolicyDocument::new(vec![
            // Put tasks into and take them out of the platform's target groups and classic LBs.
            Statement::allow(
                "RegisterTargets",
                [
                    "elasticloadbalancing:DeregisterInstancesFromLoadBalancer",
                    "elasticloadbalancing:DeregisterTargets",
                    "elasticloadbalancing:RegisterInstancesWithLoadBalancer",
                    "elasticloadbalancing:RegisterTargets",
                ],
                [
                    self.arn("elasticloadbalancing", &format!("targetgroup/{lb}-*/*")),
                    self.arn("elasticloadbalancing", &format!("loadbalancer/{lb}-*")),
                ],
            ),
            // Describe calls have no resource-level permissions: AWS only accepts "*". Read-only.
            Statement::allow(
                "DescribeForTargets",
                [
                    "ec2:DescribeInstances",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSubnets",
                    "elasticloadbalancing:DescribeLoadBalancers",
                    "elasticloadbalancing:DescribeTargetGroups",
                    "elasticloadbalancing:DescribeTargetHealth",
                ],
                ["*"],
            ),
        ])
    }

    /// The ECS instance role (trusted by `ec2.amazonaws.com`, carried by the instance profile): what
    /// the ECS agent on a container instance needs to join the cluster and pull images.
    pub fn instance_policy(&self) -> PolicyDocument {
        let cluster = &self.cluster_name;
        let [login, pull] = self.ecr_pull();
        PolicyDocument::new(vec![
            // Register the instance in this cluster, report its state, take it out again.
            Statement::allow(
                "JoinCluster",
                [
                    "ecs:DeregisterContainerInstance",
                    "ecs:RegisterContainerInstance",
                    "ecs:SubmitAttachmentStateChanges",
                    "ecs:SubmitContainerStateChange",
                    "ecs:SubmitTaskStateChange",
                    "ecs:UpdateContainerInstancesState",
                ],
                [self.arn("ecs", &format!("cluster/{cluster}"))],
            ),
            // The agent's long poll and telemetry, for this cluster's container instances only.
            Statement::allow(
                "AgentSession",
                ["ecs:Poll", "ecs:StartTelemetrySession"],
                [self.arn("ecs", &format!("container-instance/{cluster}/*"))],
            ),
            // Where to poll: a read-only lookup with no resource-level permissions ("*" only).
            Statement::allow("DiscoverEndpoint", ["ecs:DiscoverPollEndpoint"], ["*"]),
            login,
            pull,
        ])
    }

    /// A service's role (trusted by `ecs-tasks.amazonaws.com`): the task role and the execution
    /// role of its tasks.
    pub fn service_policy(&self, service: &ServiceAccess) -> PolicyDocument {
        let [login, pull] = self.ecr_pull();
        // `frontend` -> `FrontendLogs`, `order-api` -> `OrderApiLogs` (a Sid is alphanumeric).
        let sid: String = service
            .name
            .split('-')
            .flat_map(|word| {
                let mut c = word.chars();
                c.next()
                    .map(|first| first.to_ascii_uppercase())
                    .into_iter()
                    .chain(c)
            })
            .collect();
        let mut statements = vec![
            // Write the service's container logs, to its own log group only.
            Statement::allow(
                &format!("{sid}Logs"),
                ["logs:CreateLogStream", "logs:PutLogEvents"],
                [self.arn("logs", &format!("log-group:{}:*", service.log_group))],
            ),
            login,
            pull,
        ];
        // Read its own secrets when ECS starts the task, and no other.
        let of = |aws_service: &str| -> Vec<&str> {
            service
                .secrets
                .iter()
                .filter(|a| a.split(':').nth(2) == Some(aws_service))
                .map(String::as_str)
                .collect()
        };
        let (secrets, parameters) = (of("secretsmanager"), of("ssm"));
        if !secrets.is_empty() {
            statements.push(Statement::allow(
                "ReadSecrets",
                ["secretsmanager:GetSecretValue"],
                secrets,
            ));
        }
        if !parameters.is_empty() {
            statements.push(Statement::allow(
                "ReadParameters",
                ["ssm:GetParameters"],
                parameters,
            ));
        }
        if let Some(crate::AssetsLocation { bucket, prefix }) = &service.assets {
            // Read the service's assets under its prefix...
            statements.push(Statement::allow(
                "ReadAssets",
                ["s3:GetObject"],
                [format!("arn:{}:s3:::{bucket}/{prefix}*", self.partition)],
            ));
            // ...and list only that prefix of the bucket.
            statements.push(
                Statement::allow(
                    "ListAssets",
                    ["s3:ListBucket"],
                    [format!("arn:{}:s3:::{bucket}", self.partition)],
                )
                .when("StringLike", "s3:prefix", &[format!("{prefix}*").as_str()]),
            );
        }
        PolicyDocument::new(statements)
    }
}

/// A least-privilege problem in a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The statement (its `Sid`, or its index).
    pub statement: String,
    /// What is wrong.
    pub problem: String,
}

/// Whether `action` only reads (`Describe*`, `Get*`, `List*`, `BatchGet*`, `BatchCheck*`,
/// `DiscoverPollEndpoint`).
pub fn is_read_only(action: &str) -> bool {
    let verb = action.split_once(':').map_or(action, |(_, a)| a);
    [
        "Describe",
        "Get",
        "List",
        "BatchGet",
        "BatchCheck",
        "DiscoverPollEndpoint",
    ]
    .iter()
    .any(|p| verb.starts_with(p))
}

/// Audits an allow-list document for least privilege:
/// - no statement pairs a `*` action (or `service:*`) with a `*` resource;
/// - every write action (anything not read-only, see [`is_read_only`]) names a resource pattern
///   rather than `*`;
/// - no action is a bare `*`.
pub fn audit(doc: &PolicyDocument) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (i, s) in doc.statement.iter().enumerate() {
        let name = s.sid.clone().unwrap_or_else(|| format!("#{i}"));
        let any_resource = s.resource.0.iter().any(|r| r == "*");
        for a in &s.action.0 {
            let wildcard = a == "*" || a.ends_with(":*");
            if a == "*" {
                findings.push(Finding {
                    statement: name.clone(),
                    problem: "grants every action (\"*\")".into(),
                });
            }
            if any_resource && wildcard {
                findings.push(Finding {
                    statement: name.clone(),
                    problem: format!("pairs action {a} with resource \"*\""),
                });
            } else if any_resource && !is_read_only(a) {
                findings.push(Finding {
                    statement: name.clone(),
                    problem: format!("write action {a} is not scoped to a named resource"),
                });
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            partition: "aws".into(),
            region: "us-east-1".into(),
            account: "123456789012".into(),
            cluster_name: "my-ecs-cluster".into(),
            ecr_repositories: "*".into(),
            load_balancer_prefix: "ecs".into(),
        }
    }

    fn frontend() -> ServiceAccess {
        ServiceAccess::new("frontend", "/ecs/frontend")
            .with_assets(Some(crate::AssetsLocation::new("my-assets", "frontend/")))
            .with_secrets([
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf".into(),
                "arn:aws:ssm:us-east-1:123456789012:parameter/app/key".into(),
            ])
    }

    #[test]
    fn the_three_policies_are_least_privilege() {
        let s = scope();
        let api = ServiceAccess::new("order-api", "/ecs/order-api");
        for doc in [
            s.cluster_policy(),
            s.instance_policy(),
            s.service_policy(&frontend()),
            s.service_policy(&api),
        ] {
            assert_eq!(audit(&doc), vec![], "{}", doc.to_json());
            crate::validate::permissions_policy("document", &doc).unwrap();
        }
    }

    #[test]
    fn the_audit_catches_what_it_promises() {
        let doc = PolicyDocument::new(vec![
            Statement::allow("All", ["*"], ["*"]),
            Statement::allow("S3Any", ["s3:*"], ["*"]),
            Statement::allow("Write", ["logs:PutLogEvents"], ["*"]),
            Statement::allow(
                "Fine",
                ["logs:PutLogEvents"],
                ["arn:aws:logs:*:*:log-group:x:*"],
            ),
            Statement::allow("Read", ["ec2:DescribeSubnets"], ["*"]),
            Statement::allow("ReadWildcard", ["ec2:Describe*"], ["*"]),
        ]);
        let statements: Vec<String> = audit(&doc).into_iter().map(|f| f.statement).collect();
        assert_eq!(statements, ["All", "All", "S3Any", "Write"]);
    }

    #[test]
    fn the_frontend_reads_only_its_prefix_and_writes_only_its_log_group() {
        let doc = scope().service_policy(&frontend());
        let json = doc.to_json();
        assert!(json.contains("arn:aws:s3:::my-assets/frontend/*"), "{json}");
        assert!(json.contains("\"s3:prefix\":[\"frontend/*\"]"), "{json}");
        assert!(
            json.contains("arn:aws:logs:us-east-1:123456789012:log-group:/ecs/frontend:*"),
            "{json}"
        );
        let secrets: Vec<(String, Vec<String>, Vec<String>)> = doc
            .statement
            .iter()
            .filter(|s| {
                s.sid
                    .as_deref()
                    .is_some_and(|id| id.starts_with("Read") && id != "ReadAssets")
            })
            .map(|s| {
                (
                    s.sid.clone().unwrap(),
                    s.action.0.clone(),
                    s.resource.0.clone(),
                )
            })
            .collect();
        assert_eq!(
            secrets,
            [
                (
                    "ReadSecrets".into(),
                    vec!["secretsmanager:GetSecretValue".into()],
                    vec!["arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf".into()]
                ),
                (
                    "ReadParameters".into(),
                    vec!["ssm:GetParameters".into()],
                    vec!["arn:aws:ssm:us-east-1:123456789012:parameter/app/key".into()]
                ),
            ]
        );
        let without = scope()
            .service_policy(&ServiceAccess::new("order-api", "/ecs/order-api"))
            .to_json();
        assert!(without.contains("\"Sid\":\"OrderApiLogs\""), "{without}");
        assert!(
            without.contains("log-group:/ecs/order-api:*") && !without.contains("frontend"),
            "{without}"
        );
        assert!(!without.contains("s3:"), "{without}");
        assert!(
            !without.contains("secretsmanager") && !without.contains("ssm:"),
            "{without}"
        );
    }
}
