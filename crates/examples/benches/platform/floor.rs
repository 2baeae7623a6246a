//! The floor of a safe deploy: the seed's calls ordered only by what AWS itself needs and by the
//! one check a safe tool makes first (which account the credentials are in, before anything is
//! written to it: Terraform's AWS provider makes the same call), each taking the time it took alone
//! (the sequential program's calls, through the same proxy with the same injected latency). No safe
//! tool can deploy these resources faster; the engine's own graph and recorded chain play no part in
//! it.

use std::collections::BTreeMap;
use std::time::Duration;

use platform_core::events::is_read_operation;

/// Each call the seed's resources need (`OPERATION label`), the calls whose results it needs, and
/// why. What it does not list, it does not wait for.
pub(crate) const NEEDS: &[(&str, &[&str], &str)] = &[
    (
        "GetCallerIdentity",
        &[],
        "the account id, which the least-privilege policies name",
    ),
    (
        "CreateRole cluster",
        &[],
        "a role needs only its name and trust policy",
    ),
    ("CreateRole instance", &[], "as above"),
    ("CreateRole frontend", &[], "as above"),
    (
        "CreatePolicy cluster",
        &["GetCallerIdentity"],
        "its document names the account's ARNs",
    ),
    ("CreatePolicy instance", &["GetCallerIdentity"], "as above"),
    ("CreatePolicy frontend", &["GetCallerIdentity"], "as above"),
    (
        "AttachRolePolicy cluster",
        &["CreateRole cluster", "CreatePolicy cluster"],
        "both the role and the policy must exist",
    ),
    (
        "AttachRolePolicy instance",
        &["CreateRole instance", "CreatePolicy instance"],
        "as above",
    ),
    (
        "AttachRolePolicy frontend",
        &["CreateRole frontend", "CreatePolicy frontend"],
        "as above",
    ),
    ("CreateInstanceProfile", &[], "a profile is created empty"),
    (
        "AddRoleToInstanceProfile",
        &["CreateInstanceProfile", "CreateRole instance"],
        "both must exist",
    ),
    ("CreateVpc", &[], "needs only its block"),
    (
        "ModifyVpcAttribute",
        &["CreateVpc"],
        "DNS hostnames of the VPC; nothing else waits for it",
    ),
    (
        "DescribeAvailabilityZones",
        &[],
        "the region's zones, for the subnet's zone name",
    ),
    (
        "CreateSubnet",
        &["CreateVpc", "DescribeAvailabilityZones"],
        "in the VPC, in a named zone",
    ),
    (
        "ModifySubnetAttribute",
        &["CreateSubnet"],
        "public IPs on launch; the service sets its own (assignPublicIp)",
    ),
    (
        "CreateInternetGateway",
        &[],
        "a gateway is created detached",
    ),
    (
        "AttachInternetGateway",
        &["CreateInternetGateway", "CreateVpc"],
        "both must exist",
    ),
    ("CreateRouteTable", &["CreateVpc"], "in the VPC"),
    (
        "CreateRoute",
        &["CreateRouteTable", "AttachInternetGateway"],
        "EC2 refuses a route to a gateway not attached to the table's VPC",
    ),
    (
        "AssociateRouteTable",
        &["CreateRouteTable", "CreateSubnet"],
        "the table and the subnet, not the table's routes",
    ),
    ("CreateSecurityGroup", &["CreateVpc"], "in the VPC"),
    (
        "AuthorizeSecurityGroupIngress",
        &["CreateSecurityGroup"],
        "a rule of an existing group",
    ),
    ("CreateLogGroup", &[], "needs only its name"),
    (
        "PutRetentionPolicy",
        &["CreateLogGroup"],
        "retention of an existing group",
    ),
    ("CreateCluster", &[], "needs only its name"),
    (
        "RegisterTaskDefinition",
        &["CreateRole frontend"],
        "its task and execution role ARNs",
    ),
    (
        "CreateService",
        &[
            "CreateCluster",
            "RegisterTaskDefinition",
            "CreateSubnet",
            "CreateSecurityGroup",
        ],
        "the cluster, the task definition, its subnets and group",
    ),
    (
        "DescribeServices",
        &[
            "CreateService",
            "CreateLogGroup",
            "CreateRoute",
            "AssociateRouteTable",
            "AttachRolePolicy frontend",
        ],
        "steady means its tasks run: they pull the image through the route, log to the group, \
         with the role's permissions",
    ),
];

/// The account check a safe tool makes before it writes.
const IDENTITY: &str = "GetCallerIdentity";

/// The operation of a call of [`NEEDS`] (`CreateRole` of `CreateRole cluster`).
fn operation(call: &str) -> &str {
    call.split(' ').next().unwrap_or(call)
}

/// The floor: the longest chain of [`NEEDS`] where each call takes `took[operation]`, and that
/// chain's calls. Every call that writes waits for `GetCallerIdentity` besides what it needs.
///
/// # Panics
/// When [`NEEDS`] names a call it does not list (a typo in the table), or lists one after a call
/// that needs it.
pub(crate) fn floor(took: &BTreeMap<String, Duration>) -> (Duration, Vec<&'static str>) {
    // The table lists each call after what it needs, so one pass in order finds each call's
    // earliest end.
    let mut ends: BTreeMap<&str, (Duration, Vec<&'static str>)> = BTreeMap::new();
    for (call, needs, _) in NEEDS {
        let checked: &[&str] = if is_read_operation(operation(call)) {
            &[]
        } else {
            &[IDENTITY]
        };
        let (start, mut chain) = needs
            .iter()
            .chain(checked.iter().filter(|c| **c != *call))
            .map(|n| {
                ends.get(n)
                    .cloned()
                    .unwrap_or_else(|| panic!("{call} needs {n}, which is not listed before it"))
            })
            .max_by_key(|(end, _)| *end)
            .unwrap_or_default();
        let own = took.get(operation(call)).copied().unwrap_or_default();
        chain.push(call);
        ends.insert(call, (start + own, chain));
    }
    ends.into_values()
        .max_by_key(|(end, _)| *end)
        .unwrap_or_default()
}

/// The operation of each call [`NEEDS`] lists (what the sequential program must make).
pub(crate) fn operations() -> impl Iterator<Item = &'static str> {
    NEEDS.iter().map(|(call, _, _)| operation(call))
}
