//! The operator's CLI against the emulator: a config file (init, changes applied, invalid values and
//! unknown keys refused before any AWS call), and drift gates: `refresh --detailed-exitcode`,
//! `preview --refresh`, `up --refresh`.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_types::SdkConfig;
use local_cloud::{Emulator, Proxy};
use serde_json::Value;

use crate::common::{counts, inventory, production, scaling};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// An account of the test's own behind a proxy, and a working directory.
struct Operator {
    _emulator: Emulator,
    proxy: Proxy,
    config: SdkConfig,
    dir: tempfile::TempDir,
}

impl Operator {
    async fn start() -> Self {
        let emulator = Emulator::start()
            .await
            .expect("an AWS emulator is required for this suite");
        emulator.require_ecs().expect("the emulator must serve ECS");
        let n = u64::from(std::process::id()) * 1_000 + NEXT.fetch_add(1, Ordering::SeqCst);
        let account = format!("{:012}", 400_000_000_000 + n % 500_000_000_000);
        let proxy = Proxy::start(emulator.endpoint_url()).await.unwrap();
        proxy.set_account(&account);
        let config = emulator.account(&account);
        Self {
            _emulator: emulator,
            proxy,
            config,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// `production --endpoint PROXY --state-dir DIR ARGS`: exit code, stdout, stderr.
    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_in("state", args).await
    }

    /// [`run`](Self::run) with state in directory `state` of the working directory.
    async fn run_in(&self, state: &str, args: &[&str]) -> (i32, String, String) {
        let out = tokio::process::Command::new(production())
            .current_dir(self.dir.path())
            .arg("--endpoint")
            .arg(self.proxy.endpoint_url())
            .arg("--state-dir")
            .arg(self.path(state))
            .args(args)
            .env_remove("AWS_ENDPOINT_URL")
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        eprintln!("$ production {}\n{stdout}{stderr}", args.join(" "));
        (out.status.code().unwrap_or(-1), stdout, stderr)
    }

    /// A `--json` run that must exit `code`; its document.
    async fn json(&self, args: &[&str], code: i32) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (got, stdout, stderr) = self.run(&all).await;
        assert_eq!(got, code, "{args:?}: {stderr}");
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }
}

/// Each drifted resource and field of a `refresh` or `preview --refresh` document, in its order.
fn drifted_fields(doc: &Value) -> Vec<(String, String)> {
    doc["drift"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| {
            d["fields"].as_array().unwrap().iter().map(move |f| {
                (
                    d["resource"].as_str().unwrap().to_owned(),
                    f["field"].as_str().unwrap().to_owned(),
                )
            })
        })
        .collect()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

async fn service(config: &SdkConfig) -> aws_sdk_ecs::types::Service {
    let ecs = aws_sdk_ecs::Client::new(config);
    let out = ecs
        .describe_services()
        .cluster("my-ecs-cluster")
        .services("frontend-service")
        .send()
        .await
        .unwrap();
    out.services()[0].clone()
}

#[tokio::test]
async fn the_platform_runs_from_a_config_file_and_refuses_a_bad_one_before_any_call() {
    let op = Operator::start().await;
    let file = op.path("platform.toml");
    let file_arg = file.to_str().unwrap();

    // `init` writes the default file, a comment per key, and refuses to overwrite it.
    let (code, out, _) = op.run(&["--config", file_arg, "init"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("wrote"), "{out}");
    let template = std::fs::read_to_string(&file).unwrap();
    assert!(template.contains("image = \"nginx:latest\""), "{template}");
    let (code, _, err) = op.run(&["--config", file_arg, "init"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--force"), "{err}");

    // Invalid values and unknown keys: exit 2, naming key, value and reason, and no AWS call.
    for (text, expected) in [
        (
            "[cluster]\ncpu = 300\n",
            "cluster.cpu = 300: Fargate CPU is one of 256, 512, 1024",
        ),
        ("[cluster]\nreplicas = 2\n", "unknown field `replicas`"),
        (
            "[network]\npublic_subnets = [\"10.0.1.0/24\", \"10.0.1.0/25\"]\n",
            "network.public_subnets[1] = 10.0.1.0/25: overlaps",
        ),
    ] {
        write(&op.path("bad.toml"), text);
        let (code, _, err) = op.run(&["--config", "bad.toml", "up"]).await;
        assert_eq!(code, 2, "{text}: {err}");
        assert!(err.contains(expected), "{text}: {err}");
    }
    assert_eq!(op.proxy.calls().len(), 0, "{:?}", op.proxy.calls());

    // The image and the number of subnets, from the file; then the count. (The emulator never runs a
    // second task, so a service is created with one and then scaled, an update ECS does not roll.)
    let changed = template
        .replace(
            "image = \"nginx:latest\"",
            "image = \"nginx:1.27\"\nsecrets = { DB_PASSWORD = \"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf\" }\nhealth_check = { command = [\"CMD-SHELL\", \"curl -f http://localhost/ || exit 1\"], interval_secs = 10, retries = 2 }",
        )
        .replace(
            "public_subnets = [\"10.0.1.0/24\"]",
            "public_subnets = [\"10.0.1.0/24\", \"10.0.2.0/24\"]",
        );
    write(&file, &changed);
    op.json(&["--config", file_arg, "up"], 0).await;
    write(
        &file,
        &changed.replace("desired_count = 1", "desired_count = 2"),
    );
    let scaled = op.json(&["--config", file_arg, "up"], 0).await;
    assert_eq!(scaled["totals"]["update"], 1, "only the service: {scaled}");
    let live = inventory(&op.config).await;
    assert_eq!(counts(&live)["subnet"], 2, "{live:#?}");
    let svc = service(&op.config).await;
    assert_eq!(svc.desired_count(), 2);
    assert_eq!(
        svc.network_configuration()
            .unwrap()
            .awsvpc_configuration()
            .unwrap()
            .subnets()
            .len(),
        2
    );
    let ecs = aws_sdk_ecs::Client::new(&op.config);
    let def = ecs
        .describe_task_definition()
        .task_definition(svc.task_definition().unwrap())
        .send()
        .await
        .unwrap();
    let container = &def.task_definition().unwrap().container_definitions()[0];
    assert_eq!(container.image(), Some("nginx:1.27"));
    // The secret, injected by ECS from its ARN; the health check; and the execution role may read
    // exactly that secret.
    let secret = &container.secrets()[0];
    assert_eq!(
        (secret.name(), secret.value_from()),
        (
            "DB_PASSWORD",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"
        )
    );
    let check = container.health_check().unwrap();
    assert_eq!((check.interval(), check.retries()), (Some(10), Some(2)));
    assert_eq!(check.command()[0], "CMD-SHELL");
    let preview = op.json(&["--config", file_arg, "preview"], 0).await;
    let policy = preview["plan"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "frontend-policy")
        .unwrap()["inputs"]["document"]
        .to_string();
    assert!(
        policy.contains("\"secretsmanager:GetSecretValue\"],\"Effect\":\"Allow\",\"Resource\":[\"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf\"]"),
        "{policy}"
    );
    // Read back as declared: no drift.
    let clean = op
        .json(&["--config", file_arg, "refresh", "--detailed-exitcode"], 0)
        .await;
    assert_eq!(clean["drift"], serde_json::json!([]), "{clean}");

    // Without the file, the seed's values: a preview shows the way back.
    let preview = op
        .json(&["--config", file_arg, "preview", "--detailed-exitcode"], 0)
        .await;
    assert_eq!(preview["totals"]["create"], 0, "{preview}");
    let back = op.json(&["preview", "--detailed-exitcode"], 2).await;
    assert!(back["totals"]["delete"].as_u64().unwrap() >= 1, "{back}");
    op.json(&["--config", file_arg, "destroy"], 0).await;
    assert!(inventory(&op.config).await.is_empty());
}

#[tokio::test]
async fn drift_gates_ci_and_up_refresh_repairs_it_in_one_step() {
    let op = Operator::start().await;
    op.json(&["up"], 0).await;

    // Nothing changed by hand: exit 0, no drift.
    let clean = op.json(&["refresh", "--detailed-exitcode"], 0).await;
    assert_eq!(clean["drift"], serde_json::json!([]), "{clean}");
    let (code, out, _) = op.run(&["refresh", "--detailed-exitcode"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("no drift"), "{out}");

    // By hand: the log retention and the service's count.
    let logs = aws_sdk_cloudwatchlogs::Client::new(&op.config);
    logs.put_retention_policy()
        .log_group_name("/ecs/frontend")
        .retention_in_days(7)
        .send()
        .await
        .unwrap();
    let ecs = aws_sdk_ecs::Client::new(&op.config);
    ecs.update_service()
        .cluster("my-ecs-cluster")
        .service("frontend-service")
        .desired_count(3)
        .send()
        .await
        .unwrap();

    // `preview --refresh` plans against what exists, records nothing.
    let preview = op
        .json(&["preview", "--refresh", "--detailed-exitcode"], 2)
        .await;
    assert_eq!(preview["totals"]["update"], 2, "{preview}");
    assert_eq!(preview["drift"].as_array().unwrap().len(), 2, "{preview}");
    let plain = op.json(&["preview", "--detailed-exitcode"], 0).await;
    assert_eq!(plain["totals"]["update"], 0, "recorded nothing: {plain}");

    // `refresh --detailed-exitcode`: exit 2, each drifted resource and field, in JSON and in text.
    let drift = op.json(&["refresh", "--detailed-exitcode"], 2).await;
    let found: Vec<(String, String, Value, Value)> = drift["drift"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| {
            d["fields"].as_array().unwrap().iter().map(move |f| {
                (
                    format!(
                        "{}/{}",
                        d["stack"].as_str().unwrap(),
                        d["resource"].as_str().unwrap()
                    ),
                    f["field"].as_str().unwrap().to_owned(),
                    f["recorded"].clone(),
                    f["live"].clone(),
                )
            })
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "cluster/log-group".to_owned(),
                "retention_days".to_owned(),
                Value::from(30),
                Value::from(7)
            ),
            (
                "cluster/service".to_owned(),
                "desired_count".to_owned(),
                Value::from(1),
                Value::from(3)
            ),
        ],
        "{drift}"
    );
    // Recorded now, but still not as declared: the gate stays shut, and says why.
    let (code, out, _) = op.run(&["refresh", "--detailed-exitcode"]).await;
    assert_eq!(code, 2);
    assert!(out.contains("differ from the declared platform"), "{out}");
    assert!(
        out.contains("retention_days") && out.contains("desired_count"),
        "{out}"
    );
    // A fresh change shows as drift in text too.
    logs.put_retention_policy()
        .log_group_name("/ecs/frontend")
        .retention_in_days(5)
        .send()
        .await
        .unwrap();
    let (code, out, _) = op.run(&["refresh", "--detailed-exitcode"]).await;
    assert_eq!(code, 2);
    assert!(
        out.contains("cluster/log-group (logs:log-group): retention_days: recorded 7, live 5"),
        "{out}"
    );

    // `up --refresh` reads, plans against what exists and repairs, in one step.
    logs.put_retention_policy()
        .log_group_name("/ecs/frontend")
        .retention_in_days(14)
        .send()
        .await
        .unwrap();
    let up = op.json(&["up", "--refresh"], 0).await;
    assert_eq!(up["totals"]["update"], 2, "{up}");
    let groups = logs
        .describe_log_groups()
        .log_group_name_prefix("/ecs/frontend")
        .send()
        .await
        .unwrap();
    assert_eq!(groups.log_groups()[0].retention_in_days(), Some(30));
    assert_eq!(service(&op.config).await.desired_count(), 1);
    op.json(&["refresh", "--detailed-exitcode"], 0).await;
    op.json(&["destroy"], 0).await;
}

#[tokio::test]
async fn drift_on_every_kind_of_rule_route_and_profile_role_is_seen_and_repaired() {
    let op = Operator::start().await;
    let up = op.json(&["up"], 0).await;
    let net = &up["outputs"]["network"];
    let (sg, rtb, vpc) = (
        net["security_group_id"].as_str().unwrap(),
        net["route_table_id"].as_str().unwrap(),
        net["vpc_id"].as_str().unwrap(),
    );
    let ec2 = aws_sdk_ec2::Client::new(&op.config);
    use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range, UserIdGroupPair};

    // By hand: SSH from any IPv6 address, Postgres from another group, ICMP from a block.
    let other = ec2
        .create_security_group()
        .vpc_id(vpc)
        .group_name("hand-made")
        .description("made by hand")
        .send()
        .await
        .unwrap();
    let other = other.group_id().unwrap();
    ec2.authorize_security_group_ingress()
        .group_id(sg)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
                .build(),
        )
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(5432)
                .to_port(5432)
                .user_id_group_pairs(UserIdGroupPair::builder().group_id(other).build())
                .build(),
        )
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("icmp")
                .from_port(8)
                .to_port(-1)
                .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/8").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    // A route to another kind of target.
    ec2.create_route()
        .route_table_id(rtb)
        .destination_cidr_block("192.168.0.0/16")
        .nat_gateway_id("nat-0123456789abcdef0")
        .send()
        .await
        .unwrap();

    // The instance profile's role swapped for another (AWS allows one role per profile).
    let iam = aws_sdk_iam::Client::new(&op.config);
    iam.create_role()
        .role_name("intruder")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap();
    iam.remove_role_from_instance_profile()
        .instance_profile_name("ecs-instance-profile")
        .role_name("ecs-instance-role")
        .send()
        .await
        .unwrap();
    iam.add_role_to_instance_profile()
        .instance_profile_name("ecs-instance-profile")
        .role_name("intruder")
        .send()
        .await
        .unwrap();

    // SSH from any IPv6 address is a drift and, live, a mandatory policy violation: exit 3.
    let drift = op.json(&["refresh", "--detailed-exitcode"], 3).await;
    let live: Vec<(String, String)> = drift["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["enforcement"] == "mandatory")
        .map(|v| {
            (
                v["policy"].as_str().unwrap().to_owned(),
                v["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        live.contains(&(
            "open-admin-port".into(),
            "ingress tcp 22-22 from ipv6:::/0 opens port 22 to the internet".into()
        )),
        "{live:?}"
    );
    let fields = drifted_fields(&drift);
    assert_eq!(
        fields,
        [
            ("instance-profile".to_owned(), "role_name".to_owned()),
            ("public-route-table".to_owned(), "other_routes".to_owned()),
            ("service-security-group".to_owned(), "ingress".to_owned()),
            (
                "service-security-group".to_owned(),
                "other_ingress".to_owned()
            ),
        ],
        "{drift}"
    );
    assert_eq!(
        drift["drift"][0]["fields"][0]["live"], "intruder",
        "{drift}"
    );
    // Postgres from the other group is a rule the stack can declare (a group peer); the rest not.
    let declared = &drift["drift"][2]["fields"][0]["live"];
    assert_eq!(
        declared[1],
        serde_json::json!({"protocol": "tcp", "ports": {"from": 5432, "to": 5432}, "source_group": other}),
        "{declared}"
    );
    let found = &drift["drift"][2]["fields"][1]["live"];
    let peers: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["peer"].as_str().unwrap())
        .collect();
    assert_eq!(peers, ["cidr:10.0.0.0/8", "ipv6:::/0"], "{found}");

    // `up` removes what the stacks do not declare; nothing is left to see.
    op.json(&["up"], 0).await;
    op.json(&["refresh", "--detailed-exitcode"], 0).await;
    let live = ec2
        .describe_security_groups()
        .group_ids(sg)
        .send()
        .await
        .unwrap();
    let perms = live.security_groups()[0].ip_permissions();
    assert_eq!(perms.len(), 1, "{perms:?}");
    assert_eq!(perms[0].from_port(), Some(80));
    assert_eq!(
        perms[0].ipv6_ranges().len() + perms[0].user_id_group_pairs().len(),
        0
    );
    let tables = ec2
        .describe_route_tables()
        .route_table_ids(rtb)
        .send()
        .await
        .unwrap();
    let dests: Vec<&str> = tables.route_tables()[0]
        .routes()
        .iter()
        .filter_map(|r| r.destination_cidr_block())
        .collect();
    assert!(!dests.contains(&"192.168.0.0/16"), "{dests:?}");
    assert!(dests.contains(&"0.0.0.0/0"), "{dests:?}");
    ec2.delete_security_group()
        .group_id(other)
        .send()
        .await
        .unwrap();
    op.json(&["destroy"], 0).await;
}

/// Every state file under `dir`, by name.
fn state_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                found.extend(state_files(&path));
            } else if path.extension().is_some_and(|x| x == "json")
                && !path.ends_with("emulator.json")
            {
                found.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn a_vpc_made_by_hand_is_imported_and_the_platform_is_built_around_it() {
    let op = Operator::start().await;
    let ec2 = aws_sdk_ec2::Client::new(&op.config);
    let made = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc = made.vpc().unwrap().vpc_id().unwrap().to_owned();

    // Refused with exit 1, and nothing recorded: an id that does not exist, a name the platform
    // does not declare, a stack it does not have.
    for (args, expected) in [
        (
            ["import", "network/vpc", "vpc-0000000000000000a"],
            "no ec2:vpc \"vpc-0000000000000000a\" exists",
        ),
        (
            ["import", "network/nope", vpc.as_str()],
            "stack network declares no such resource (it declares vpc,",
        ),
        (
            ["import", "storage/vpc", vpc.as_str()],
            "the platform has no stack storage (its stacks: iam, network, cluster)",
        ),
    ] {
        let (code, _, err) = op.run(&args).await;
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    assert_eq!(state_files(&op.path("state")), Vec::<String>::new());

    // Imported: recorded and tagged; the plan keeps it and builds everything else around it.
    let imported = op.json(&["import", "network/vpc", &vpc], 0).await;
    assert_eq!(imported["kind"], "ec2:vpc", "{imported}");
    assert_eq!(imported["outputs"]["vpc_id"], vpc.as_str());
    let (code, _, err) = op.run(&["import", "network/vpc", &vpc]).await;
    assert_eq!(code, 1);
    assert!(err.contains("network/vpc is already managed"), "{err}");
    let preview = op.json(&["preview"], 0).await;
    let network = &preview["stacks"][1];
    let vpc_step = network["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["resource"] == "vpc")
        .unwrap();
    assert_ne!(vpc_step["action"], "create", "{vpc_step}");
    assert_ne!(vpc_step["action"], "replace", "{vpc_step}");
    assert_eq!(preview["totals"]["create"], 22, "{preview}");

    let up = op.json(&["up"], 0).await;
    assert_eq!(up["outputs"]["network"]["vpc_id"], vpc.as_str());
    let live = inventory(&op.config).await;
    assert_eq!(live["vpc"], std::slice::from_ref(&vpc), "{live:#?}");
    let subnets = ec2
        .describe_subnets()
        .subnet_ids(
            up["outputs"]["network"]["public_subnet_ids"][0]
                .as_str()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(subnets.subnets()[0].vpc_id(), Some(vpc.as_str()));
    // Managed now: destroyed with the rest.
    op.json(&["destroy"], 0).await;
    assert!(inventory(&op.config).await.is_empty());
}

#[tokio::test]
async fn every_network_and_cluster_kind_and_iam_roles_and_policies_can_be_imported() {
    let op = Operator::start().await;
    let up = op.json(&["up"], 0).await;
    let (i, n, c) = (
        &up["outputs"]["iam"],
        &up["outputs"]["network"],
        &up["outputs"]["cluster"],
    );
    let ec2 = aws_sdk_ec2::Client::new(&op.config);
    let rtb = n["route_table_id"].as_str().unwrap();
    let tables = ec2
        .describe_route_tables()
        .route_table_ids(rtb)
        .send()
        .await
        .unwrap();
    let association = tables.route_tables()[0]
        .associations()
        .iter()
        .find(|a| a.main() != Some(true))
        .and_then(|a| a.route_table_association_id())
        .unwrap()
        .to_owned();
    let s = |v: &Value| v.as_str().unwrap().to_owned();
    // The state is lost: each resource is brought back by its id, name or ARN.
    let imports = [
        ("network/vpc", s(&n["vpc_id"])),
        ("network/internet-gateway", s(&n["internet_gateway_id"])),
        (
            "network/internet-gateway-attachment",
            format!("{}:{}", s(&n["internet_gateway_id"]), s(&n["vpc_id"])),
        ),
        ("network/public-route-table", rtb.to_owned()),
        ("network/public-subnet-0", s(&n["public_subnet_ids"][0])),
        ("network/public-subnet-0-route", association),
        ("network/service-security-group", s(&n["security_group_id"])),
        ("cluster/log-group", s(&c["log_group_name"])),
        ("cluster/cluster", s(&c["cluster_name"])),
        ("cluster/task-definition", s(&c["task_definition_arn"])),
        ("cluster/service", s(&c["service_arn"])),
        ("iam/cluster-role", s(&i["cluster_role"]["name"])),
        (
            "iam/frontend-role",
            s(&i["services"]["frontend"]["role"]["arn"]),
        ),
        ("iam/cluster-policy", s(&i["cluster_policy_arn"])),
    ];
    for (address, id) in &imports {
        let (code, _, err) = op.run_in("lost", &["import", address, id]).await;
        assert_eq!(code, 0, "{address} {id}: {err}");
    }
    let (code, out, err) = op.run_in("lost", &["--json", "preview"]).await;
    assert_eq!(code, 0, "{err}");
    let preview: Value = serde_json::from_str(out.trim()).unwrap();
    for (address, _) in &imports {
        let (stack, resource) = address.split_once('/').unwrap();
        let step = preview["stacks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == stack)
            .and_then(|p| {
                p["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|st| st["resource"] == resource)
            })
            .unwrap_or_else(|| panic!("{address} in {preview}"));
        assert!(
            step["action"] == "same" || step["action"] == "update",
            "{address}: {step}"
        );
    }
    // A policy is imported by its ARN only: the error says so.
    let (code, _, err) = op
        .run_in(
            "lost",
            &["import", "iam/instance-policy", "ecs-instance-policy"],
        )
        .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("a managed policy is imported by its ARN"),
        "{err}"
    );
    op.json(&["destroy"], 0).await;
}

/// The plan document of `preview --json` (key `plan`), as README documents it: every key there,
/// none other (format version 1).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentedPlan {
    format_version: u32,
    resources: Vec<DocumentedResource>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "the shape is what is checked")]
struct DocumentedResource {
    stack: String,
    name: String,
    kind: String,
    action: DocumentedAction,
    inputs: serde_json::Map<String, Value>,
    unknown: Vec<String>,
    changes: Vec<DocumentedChange>,
}

#[derive(serde::Deserialize, PartialEq, Debug)]
#[serde(rename_all = "snake_case")]
enum DocumentedAction {
    Create,
    Update,
    Replace,
    Delete,
    DeleteDeposed,
    Same,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "the shape is what is checked")]
struct DocumentedChange {
    field: String,
    before: Value,
    after: Value,
    after_unknown: bool,
}

/// `(policy, enforcement, stack/resource)` of a JSON document's violations.
fn violations(doc: &Value) -> Vec<(String, String, String)> {
    doc["violations"]
        .as_array()
        .unwrap_or_else(|| panic!("no violations key: {doc}"))
        .iter()
        .map(|v| {
            (
                v["policy"].as_str().unwrap().to_owned(),
                v["enforcement"].as_str().unwrap().to_owned(),
                format!(
                    "{}/{}",
                    v["stack"].as_str().unwrap(),
                    v["resource"].as_str().unwrap()
                ),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_mandatory_policy_violation_changes_nothing_and_advisories_let_the_run_go_on() {
    let op = Operator::start().await;
    let sg = "network/service-security-group".to_owned();

    // SSH open to the world: `up` exits 3 having made no call that changes anything.
    write(
        &op.path("ssh.toml"),
        "[network]\ningress = [{ port = 22, cidr = \"0.0.0.0/0\" }]\n",
    );
    let (code, out, err) = op.run(&["--config", "ssh.toml", "up"]).await;
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("[open-admin-port] mandatory network/service-security-group: ingress tcp 22 from 0.0.0.0/0 opens port 22 to the internet"), "{out}");
    assert!(
        err.contains("refused by policy, nothing was changed"),
        "{err}"
    );
    let calls = op.proxy.calls();
    assert!(!calls.is_empty(), "the identity is asked");
    let changing: Vec<&str> = calls
        .iter()
        .filter(|c| !platform_core::events::is_read_operation(&c.operation))
        .map(|c| c.operation.as_str())
        .collect();
    assert!(changing.is_empty(), "{changing:?}");
    assert!(inventory(&op.config).await.is_empty());
    let refused = op.json(&["--config", "ssh.toml", "up"], 3).await;
    assert_eq!(
        violations(&refused),
        [
            (
                "ingress-from-anywhere".into(),
                "mandatory".into(),
                sg.clone()
            ),
            ("open-admin-port".into(), "mandatory".into(), sg.clone())
        ],
        "{refused}"
    );

    // `preview` says the same and exits 3 whatever --detailed-exitcode says; its JSON carries the
    // violations and the plan document, which has the documented shape.
    let preview = op.json(&["--config", "ssh.toml", "preview"], 3).await;
    let found = violations(&preview);
    assert_eq!(
        found[0],
        (
            "ingress-from-anywhere".into(),
            "mandatory".into(),
            sg.clone()
        ),
        "{found:?}"
    );
    assert!(found.contains(&("open-admin-port".into(), "mandatory".into(), sg.clone())));
    assert!(found.contains(&(
        "image-pinned".into(),
        "advisory".into(),
        "cluster/task-definition".into()
    )));
    let plan: DocumentedPlan = serde_json::from_value(preview["plan"].clone())
        .unwrap_or_else(|e| panic!("{e}: {}", preview["plan"]));
    assert_eq!(plan.format_version, 1);
    assert_eq!(
        plan.resources.len(),
        23,
        "every resource of the three stacks"
    );
    assert!(
        plan.resources
            .iter()
            .all(|r| r.action == DocumentedAction::Create)
    );
    let service = &preview["plan"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "ecs:service")
        .unwrap()
        .clone();
    assert_eq!(service["inputs"]["desired_count"], 1);
    assert!(
        service["unknown"]
            .as_array()
            .unwrap()
            .contains(&Value::from("cluster"))
    );
    assert!(service["inputs"]["cluster"].is_null());
    // A field known in part shows its known parts: a container's image, not its log group.
    let task = preview["plan"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "ecs:task-definition")
        .unwrap()
        .clone();
    assert_eq!(
        task["inputs"]["containers"][0]["image"], "nginx:latest",
        "{task}"
    );
    assert!(
        task["unknown"]
            .as_array()
            .unwrap()
            .contains(&Value::from("containers"))
    );
    op.json(
        &["--config", "ssh.toml", "preview", "--detailed-exitcode"],
        3,
    )
    .await;

    // A Rego policy in a directory of the team's: deny fewer than two tasks. The seed is refused;
    // two tasks pass. A policy that does not parse is refused before any call, naming file and line.
    let rego = op.path("policies");
    std::fs::create_dir(&rego).unwrap();
    write(
        &rego.join("min-tasks.rego"),
        r#"package main

import rego.v1

deny contains msg if {
	some r in input.resources
	r.kind == "ecs:service"
	r.inputs.desired_count < 2
	msg := sprintf("%s/%s runs %d task", [r.stack, r.name, r.inputs.desired_count])
}
"#,
    );
    op.proxy.clear_calls();
    let refused = op.json(&["--policy", "policies", "preview"], 3).await;
    let rego_found: Vec<&Value> = refused["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["policy"] == "min-tasks")
        .collect();
    assert_eq!(rego_found.len(), 1, "{refused}");
    assert_eq!(rego_found[0]["message"], "cluster/service runs 1 task");
    assert_eq!(rego_found[0]["enforcement"], "mandatory");
    write(&op.path("two.toml"), "[cluster]\ndesired_count = 2\n");
    op.json(
        &["--config", "two.toml", "--policy", "policies", "preview"],
        0,
    )
    .await;
    write(
        &rego.join("broken.rego"),
        "package main\ndeny contains msg if {\n",
    );
    let (code, _, err) = op.run(&["--policy", "policies", "preview"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("broken.rego:"), "{err}");
    std::fs::remove_file(rego.join("broken.rego")).unwrap();
    let changing = op
        .proxy
        .calls()
        .iter()
        .filter(|c| !platform_core::events::is_read_operation(&c.operation))
        .count();
    assert_eq!(changing, 0);

    // The seed: one advisory violation, printed, and the run goes on.
    let (code, out, err) = op.run(&["up"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "[image-pinned] advisory cluster/task-definition: container frontend runs nginx:latest"
        ),
        "{out}"
    );
    let again = op.json(&["up"], 0).await;
    assert_eq!(violations(&again).len(), 1, "{again}");

    // A Markdown summary for a pull request: violations first, then the changes per stack.
    let (code, md, _) = op
        .run(&["--config", "two.toml", "preview", "--format", "markdown"])
        .await;
    assert_eq!(code, 0);
    assert!(md.starts_with("## Platform plan\n"), "{md}");
    let advisory = md.find("| ⚠️ advisory | `image-pinned` |").expect(&md);
    let changes = md
        .find("| update | `service` | `ecs:service` | `desired_count`: 1 → 2 |")
        .expect(&md);
    assert!(advisory < changes, "{md}");

    // SSH opened by hand: `refresh --detailed-exitcode` reports the drift and the violation, exit 3.
    let outputs = op.json(&["outputs"], 0).await;
    let group = outputs["outputs"]["network"]["security_group_id"]
        .as_str()
        .unwrap()
        .to_owned();
    aws_sdk_ec2::Client::new(&op.config)
        .authorize_security_group_ingress()
        .group_id(&group)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(
                    aws_sdk_ec2::types::IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let drift = op.json(&["refresh", "--detailed-exitcode"], 3).await;
    assert!(!drift["drift"].as_array().unwrap().is_empty(), "{drift}");
    assert!(
        violations(&drift).contains(&("open-admin-port".into(), "mandatory".into(), sg.clone())),
        "{drift}"
    );
    // `up` closes it again (the declared rules are the group's only ones); then the live passes.
    op.json(&["up"], 0).await;
    op.json(&["refresh", "--detailed-exitcode"], 0).await;
    op.json(&["destroy"], 0).await;
    assert!(inventory(&op.config).await.is_empty());
}

#[tokio::test]
async fn staging_lives_beside_production_in_one_account_and_goes_without_touching_it() {
    let op = Operator::start().await;
    write(
        &op.path("platform.toml"),
        r#"
[cluster]
image = "nginx:1.27"
[network]
public_subnets = ["10.0.1.0/24", "10.0.2.0/24"]

[env.staging.cluster]
log_retention_days = 7
[env.staging.network]
public_subnets = ["10.0.1.0/24"]
"#,
    );
    let file = ["--config", "platform.toml"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut all = file.to_vec();
        all.extend_from_slice(extra);
        all
    };
    op.json(&with(&["up"]), 0).await;
    let production = inventory(&op.config).await;
    let production_outputs = op.json(&with(&["outputs"]), 0).await;

    let staging = op.json(&with(&["--env", "staging", "up"]), 0).await;
    assert_eq!(staging["stacks"][0]["name"], "staging-iam", "{staging}");
    let both = inventory(&op.config).await;
    // Every kind twice over (staging has one subnet of its own), every name distinct.
    for (kind, ids) in &production {
        let all = &both[kind];
        let theirs: Vec<&String> = all.iter().filter(|id| !ids.contains(id)).collect();
        assert!(
            ids.iter().all(|id| all.contains(id)),
            "{kind}: production kept"
        );
        let expected = if matches!(*kind, "subnet" | "association") {
            1
        } else {
            ids.len()
        };
        assert_eq!(theirs.len(), expected, "{kind}: {all:?}");
    }
    for (kind, name) in [
        ("cluster", "staging-my-ecs-cluster"),
        ("role", "staging-ecs-frontend-role"),
        ("log_group", "/ecs/staging-frontend"),
        ("policy", "staging-ecs-frontend-policy"),
    ] {
        assert!(
            both[kind].iter().any(|n| n.ends_with(name)),
            "{kind}: {:?}",
            both[kind]
        );
    }
    let logs = aws_sdk_cloudwatchlogs::Client::new(&op.config);
    let group = logs
        .describe_log_groups()
        .log_group_name_prefix("/ecs/staging-frontend")
        .send()
        .await
        .unwrap();
    assert_eq!(group.log_groups()[0].retention_in_days(), Some(7));

    // The store holds both environments, each stack with its serial and last apply.
    let envs = op.json(&with(&["envs"]), 0).await;
    let listed: Vec<(String, Vec<String>)> = envs["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let stacks = e["stacks"].as_array().unwrap();
            assert!(
                stacks
                    .iter()
                    .all(|s| s["applied_at"].is_string() && s["serial"].as_u64() > Some(0)),
                "{envs}"
            );
            (
                e["name"].as_str().unwrap().to_owned(),
                stacks
                    .iter()
                    .map(|s| s["stack"].as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (
                "production".to_owned(),
                vec!["cluster".to_owned(), "iam".into(), "network".into()]
            ),
            (
                "staging".to_owned(),
                vec![
                    "staging-cluster".to_owned(),
                    "staging-iam".into(),
                    "staging-network".into()
                ]
            ),
        ],
        "{envs}"
    );

    // Promotion: how staging's declaration differs from production's, names aside.
    let diff = op
        .json(
            &with(&[
                "--env",
                "staging",
                "preview",
                "--against",
                "production",
                "--detailed-exitcode",
            ]),
            2,
        )
        .await;
    let changed: Vec<String> = diff["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|st| st["action"] != "same")
                .map(move |st| {
                    format!(
                        "{}/{} {}",
                        s["name"].as_str().unwrap(),
                        st["resource"].as_str().unwrap(),
                        st["action"].as_str().unwrap()
                    )
                })
        })
        .collect();
    assert_eq!(
        changed,
        [
            "network/public-subnet-1 delete",
            "network/public-subnet-1-route delete",
            "cluster/log-group update",
            "cluster/service update",
        ],
        "{diff}"
    );
    op.json(
        &with(&["preview", "--against", "production", "--detailed-exitcode"]),
        0,
    )
    .await;

    // Staging goes; production is as it was: its resources, its outputs, nothing to change.
    op.json(&with(&["--env", "staging", "destroy"]), 0).await;
    assert_eq!(inventory(&op.config).await, production);
    assert_eq!(op.json(&with(&["outputs"]), 0).await, production_outputs);
    op.json(&with(&["preview", "--detailed-exitcode"]), 0).await;
    op.json(&with(&["destroy"]), 0).await;
    assert!(inventory(&op.config).await.is_empty());
}

/// One file for production (the seed's one `frontend`, as a `[[service]]` table) and staging, whose
/// `[[env.staging.service]]` tables replace the list: the `frontend` scaled on CPU (`target`
/// percent; no autoscaling when `None`), `api` beside it with a port, an image, a secret and a count
/// of its own; then `worker` added.
fn services_file(target: Option<u32>, api_count: i32, api: bool, worker: bool) -> String {
    let mut text =
        "[[service]]\nname = \"frontend\"\n[[env.staging.service]]\nname = \"frontend\"\n"
            .to_owned();
    if let Some(percent) = target {
        text += &format!("autoscaling = {{ min = 1, max = 3, target_cpu_percent = {percent} }}\n");
    }
    if api {
        text += &format!(
            "[[env.staging.service]]\nname = \"api\"\nimage = \"nginx:1.27\"\ncontainer_port = 8080\ndesired_count = {api_count}\nsecrets = {{ TOKEN = \"arn:aws:ssm:us-east-1:123456789012:parameter/api/token\" }}\n"
        );
    }
    if worker {
        text += "[[env.staging.service]]\nname = \"worker\"\nimage = \"nginx:1.27\"\n";
    }
    text
}

/// The changing calls the proxy saw since it was last cleared, sorted.
fn changing_calls(proxy: &Proxy) -> Vec<String> {
    let mut calls: Vec<String> = proxy
        .calls()
        .into_iter()
        .filter(|c| {
            !platform_core::events::is_read_operation(&c.operation) && c.operation != "AssumeRole"
        })
        .map(|c| c.operation)
        .collect();
    calls.sort();
    calls
}

#[tokio::test]
async fn production_and_staging_from_one_file_services_added_changed_scaled_and_removed() {
    let op = Operator::start().await;
    let file = op.path("platform.toml");
    let args = ["--config", "platform.toml", "--env", "staging"];
    let run = |command: &'static str| {
        let mut all = args.to_vec();
        all.push(command);
        all
    };
    let in_production = |command: &'static str| vec!["--config", "platform.toml", command];
    write(&file, &services_file(Some(60), 1, true, false));
    op.json(&in_production("up"), 0).await;
    let production = inventory(&op.config).await;
    let production_outputs = op.json(&in_production("outputs"), 0).await;
    assert_eq!(production["service"].len(), 1, "{production:?}");

    op.json(&run("up"), 0).await;
    let live = inventory(&op.config).await;
    // Every resource of staging is its own: production's are all there, and none is shared.
    for (kind, ids) in &production {
        let theirs: Vec<&String> = live[kind].iter().filter(|id| !ids.contains(id)).collect();
        assert!(
            ids.iter().all(|id| live[kind].contains(id)),
            "{kind}: production kept"
        );
        assert!(
            !theirs.is_empty(),
            "{kind}: staging has its own: {:?}",
            live[kind]
        );
    }
    for (kind, names) in [
        (
            "service",
            [
                "service/staging-my-ecs-cluster/staging-frontend-service",
                "service/staging-my-ecs-cluster/staging-api-service",
            ],
        ),
        (
            "task_definition",
            [
                "task-definition/staging-frontend:1",
                "task-definition/staging-api:1",
            ],
        ),
        ("log_group", ["/ecs/staging-frontend", "/ecs/staging-api"]),
        (
            "role",
            ["staging-ecs-frontend-role", "staging-ecs-api-role"],
        ),
        (
            "policy",
            ["staging-ecs-frontend-policy", "staging-ecs-api-policy"],
        ),
    ] {
        for name in names {
            assert!(
                live[kind].iter().any(|id| id.ends_with(name)),
                "{kind} {name}: {:?}",
                live[kind]
            );
        }
    }
    // The api's role may read its own log group and secret, nothing of the frontend's.
    let iam = aws_sdk_iam::Client::new(&op.config);
    let policies = iam
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
        .send()
        .await
        .unwrap();
    let policy_arn = policies
        .policies()
        .iter()
        .find(|p| p.policy_name() == Some("staging-ecs-api-policy"))
        .and_then(|p| p.arn())
        .unwrap();
    let version = iam
        .get_policy_version()
        .policy_arn(policy_arn)
        .version_id("v1")
        .send()
        .await
        .unwrap();
    let document = iam_stack::policy::PolicyDocument::parse_aws(
        version.policy_version().unwrap().document().unwrap(),
    )
    .unwrap()
    .to_json();
    assert!(
        document.contains("log-group:/ecs/staging-api:*"),
        "{document}"
    );
    assert!(document.contains("parameter/api/token"), "{document}");
    assert!(
        !document.contains("frontend") && !document.contains("s3:"),
        "{document}"
    );
    // The security group admits both services' ports.
    let ec2 = aws_sdk_ec2::Client::new(&op.config);
    let ports = || async {
        let groups = ec2
            .describe_security_groups()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:Name")
                    .values("staging-ecs-service-sg")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let mut ports: Vec<i32> = groups.security_groups()[0]
            .ip_permissions()
            .iter()
            .filter_map(|p| p.from_port())
            .collect();
        ports.sort_unstable();
        ports
    };
    assert_eq!(ports().await, [80, 8080]);

    // One service's count changed: one call, to that service.
    write(&file, &services_file(Some(60), 2, true, false));
    op.proxy.clear_calls();
    op.json(&run("up"), 0).await;
    assert_eq!(changing_calls(&op.proxy), ["UpdateService"]);
    let ecs = aws_sdk_ecs::Client::new(&op.config);
    let described = ecs
        .describe_services()
        .cluster("staging-my-ecs-cluster")
        .services("staging-api-service")
        .services("staging-frontend-service")
        .send()
        .await
        .unwrap();
    let counts: Vec<(String, i32)> = described
        .services()
        .iter()
        .map(|s| (s.service_name().unwrap().to_owned(), s.desired_count()))
        .collect();
    assert_eq!(
        counts,
        [
            ("staging-api-service".to_owned(), 2),
            ("staging-frontend-service".to_owned(), 1)
        ]
    );

    // The frontend's count is the scaler's: moved by it (as Application Auto Scaling does, with
    // UpdateService), it is not drift, and `up` leaves it.
    let targets = || scaling(&op.config);
    let frontend = "service/staging-my-ecs-cluster/staging-frontend-service".to_owned();
    assert_eq!(
        targets().await,
        (
            vec![(frontend.clone(), 1, 3)],
            vec![(frontend.clone(), 60.0)]
        )
    );
    ecs.update_service()
        .cluster("staging-my-ecs-cluster")
        .service("staging-frontend-service")
        .desired_count(3)
        .send()
        .await
        .unwrap();
    op.json(&run("refresh"), 0).await;
    let mut gate = args.to_vec();
    gate.extend(["refresh", "--detailed-exitcode"]);
    op.json(&gate, 0).await;
    op.proxy.clear_calls();
    op.json(&run("up"), 0).await;
    assert_eq!(changing_calls(&op.proxy), Vec::<String>::new());

    // A service added: its own resources, nothing else (port 80 is admitted already); the
    // frontend's CPU target changed with one call.
    write(&file, &services_file(Some(70), 2, true, true));
    op.proxy.clear_calls();
    op.json(&run("up"), 0).await;
    assert_eq!(
        changing_calls(&op.proxy),
        [
            "AttachRolePolicy",
            "CreateLogGroup",
            "CreatePolicy",
            "CreateRole",
            "CreateService",
            "PutRetentionPolicy",
            "PutScalingPolicy",
            "RegisterTaskDefinition",
        ]
    );
    assert_eq!(targets().await.1, vec![(frontend.clone(), 70.0)]);

    // A service removed: its own resources go, and the port only it used.
    write(&file, &services_file(Some(70), 2, false, true));
    op.proxy.clear_calls();
    op.json(&run("up"), 0).await;
    assert_eq!(
        changing_calls(&op.proxy),
        [
            "DeleteLogGroup",
            "DeletePolicy",
            "DeleteRole",
            "DeleteService",
            "DeregisterTaskDefinition",
            "DetachRolePolicy",
            "RevokeSecurityGroupIngress",
        ]
    );
    assert_eq!(ports().await, [80]);
    let live = inventory(&op.config).await;
    assert!(
        !live.values().flatten().any(|id| id.contains("api")),
        "{live:?}"
    );
    assert_eq!(live["service"].len(), 3, "{live:?}");

    // Autoscaling off: the target and its policy go, and the count is ours again.
    write(&file, &services_file(None, 2, false, true));
    op.proxy.clear_calls();
    op.json(&run("up"), 0).await;
    assert_eq!(
        changing_calls(&op.proxy),
        [
            "DeleteScalingPolicy",
            "DeregisterScalableTarget",
            "UpdateService"
        ]
    );
    assert_eq!(targets().await, (vec![], vec![]));

    // Staging goes; production is as it was: its resources, its outputs, nothing to change.
    op.json(&run("destroy"), 0).await;
    assert_eq!(inventory(&op.config).await, production);
    assert_eq!(
        op.json(&in_production("outputs"), 0).await,
        production_outputs
    );
    let mut gate = in_production("preview");
    gate.push("--detailed-exitcode");
    op.json(&gate, 0).await;
    op.json(&in_production("destroy"), 0).await;
    assert!(inventory(&op.config).await.is_empty());
}

const BALANCED: &str = r#"
[network]
public_subnets = ["10.0.1.0/24", "10.0.2.0/24"]

[load_balancer]
deregistration_delay_secs = 5

[[service]]
name = "frontend"
path = "/web/*"

[[service]]
name = "api"
container_port = 8080
path = "/api/*"
health_check_path = "/healthz"
"#;

/// Two services behind one balancer on two paths: the balancer over two subnets in its own group,
/// one listener, a rule and a target group per service, each service registered in its group, and
/// only the balancer's group admitted to the services' ports. A health check path changes in place;
/// without `[load_balancer]` the balancer and its groups go and the services stay.
#[tokio::test]
async fn two_services_behind_one_balancer_then_the_balancer_removed_keeps_the_services() {
    use aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum;
    let op = Operator::start().await;
    let file = op.path("platform.toml");
    write(&file, BALANCED);
    let up = op.json(&["--config", "platform.toml", "up"], 0).await;
    let cluster = &up["outputs"]["cluster"];
    let dns = cluster["load_balancer_dns_name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        cluster["services"]["api"]["url"],
        format!("http://{dns}/api/").as_str()
    );
    assert_eq!(
        cluster["services"]["frontend"]["url"],
        format!("http://{dns}/web/").as_str()
    );
    // `outputs` says where each service is reached; `graph` draws the balancer and its parts.
    let (code, out, _) = op.run(&["--config", "platform.toml", "outputs"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("url              http://{dns}/api/")),
        "{out}"
    );
    let (code, graph, _) = op.run(&["--config", "platform.toml", "graph"]).await;
    assert_eq!(code, 0);
    for node in [
        "cluster__load_balancer",
        "cluster__listener_80",
        "cluster__api_target_group",
        "cluster__api_listener_rule",
    ] {
        assert!(graph.contains(node), "{node}: {graph}");
    }
    let lb_group = up["outputs"]["network"]["balancer_security_group_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&op.config);
    let lbs = elb
        .describe_load_balancers()
        .names("my-ecs-cluster-alb")
        .send()
        .await
        .unwrap();
    let lb = &lbs.load_balancers()[0];
    assert_eq!(lb.dns_name(), Some(dns.as_str()));
    assert_eq!(lb.availability_zones().len(), 2);
    assert_eq!(lb.security_groups(), std::slice::from_ref(&lb_group));
    let lb_arn = lb.load_balancer_arn().unwrap().to_owned();
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(&lb_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(listeners.listeners().len(), 1);
    let listener = &listeners.listeners()[0];
    assert_eq!(listener.port(), Some(80));
    let groups = elb.describe_target_groups().send().await.unwrap();
    let mut by_name: Vec<(String, i32, String, String)> = groups
        .target_groups()
        .iter()
        .map(|g| {
            (
                g.target_group_name().unwrap().to_owned(),
                g.port().unwrap(),
                g.health_check_path().unwrap().to_owned(),
                g.target_group_arn().unwrap().to_owned(),
            )
        })
        .collect();
    by_name.sort();
    let names: Vec<(&str, i32, &str)> = by_name
        .iter()
        .map(|(n, p, h, _)| (n.as_str(), *p, h.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("my-ecs-cluster-api", 8080, "/healthz"),
            ("my-ecs-cluster-frontend", 80, "/"),
        ]
    );
    let (api_group, frontend_group) = (by_name[0].3.clone(), by_name[1].3.clone());
    let rules = elb
        .describe_rules()
        .listener_arn(listener.listener_arn().unwrap())
        .send()
        .await
        .unwrap();
    let mut routes: Vec<(String, String)> = rules
        .rules()
        .iter()
        .filter(|r| r.is_default() != Some(true))
        .map(|r| {
            let c = &r.conditions()[0];
            let path = c
                .path_pattern_config()
                .and_then(|p| p.values().first())
                .or(c.values().first())
                .unwrap()
                .clone();
            let a = &r.actions()[0];
            assert_eq!(a.r#type(), Some(&ActionTypeEnum::Forward));
            (path, a.target_group_arn().unwrap().to_owned())
        })
        .collect();
    routes.sort();
    assert_eq!(
        routes,
        [
            ("/api/*".to_owned(), api_group.clone()),
            ("/web/*".to_owned(), frontend_group.clone()),
        ]
    );
    // Each service registers its container in its group.
    let ecs = aws_sdk_ecs::Client::new(&op.config);
    let described = ecs
        .describe_services()
        .cluster("my-ecs-cluster")
        .services("frontend-service")
        .services("api-service")
        .send()
        .await
        .unwrap();
    let registered: Vec<(String, String, i32)> = described
        .services()
        .iter()
        .flat_map(|s| s.load_balancers())
        .map(|l| {
            (
                l.target_group_arn().unwrap().to_owned(),
                l.container_name().unwrap().to_owned(),
                l.container_port().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        registered,
        [
            (frontend_group.clone(), "frontend".into(), 80),
            (api_group.clone(), "api".into(), 8080),
        ]
    );
    let service_arns: Vec<String> = described
        .services()
        .iter()
        .map(|s| s.service_arn().unwrap().to_owned())
        .collect();
    // The services' group admits 80 and 8080 from the balancer's group, and nothing from anywhere.
    let ec2 = aws_sdk_ec2::Client::new(&op.config);
    let sg = up["outputs"]["network"]["security_group_id"]
        .as_str()
        .unwrap();
    let g = ec2
        .describe_security_groups()
        .group_ids(sg)
        .send()
        .await
        .unwrap();
    let mut ingress: Vec<(i32, String)> = g.security_groups()[0]
        .ip_permissions()
        .iter()
        .flat_map(|p| {
            let port = p.from_port().unwrap_or(-1);
            p.ip_ranges()
                .iter()
                .map(move |r| (port, r.cidr_ip().unwrap().to_owned()))
                .chain(
                    p.user_id_group_pairs()
                        .iter()
                        .map(move |u| (port, u.group_id().unwrap().to_owned())),
                )
        })
        .collect();
    ingress.sort();
    assert_eq!(ingress, [(80, lb_group.clone()), (8080, lb_group.clone())]);

    // The api's health check path changes in place: the same group, the new path.
    write(
        &file,
        &BALANCED.replace(
            "health_check_path = \"/healthz\"",
            "health_check_path = \"/ready\"",
        ),
    );
    let preview = op.json(&["--config", "platform.toml", "preview"], 0).await;
    assert!(
        preview.to_string().contains("\"update\""),
        "an update in place: {preview}"
    );
    op.json(&["--config", "platform.toml", "up"], 0).await;
    let after = elb
        .describe_target_groups()
        .target_group_arns(&api_group)
        .send()
        .await
        .unwrap();
    assert_eq!(after.target_groups()[0].health_check_path(), Some("/ready"));

    // Changed by hand: the health check path and the idle timeout are drift, and `up --refresh`
    // puts them back.
    elb.modify_target_group()
        .target_group_arn(&api_group)
        .health_check_path("/by-hand")
        .send()
        .await
        .unwrap();
    elb.modify_load_balancer_attributes()
        .load_balancer_arn(&lb_arn)
        .attributes(
            aws_sdk_elasticloadbalancingv2::types::LoadBalancerAttribute::builder()
                .key("idle_timeout.timeout_seconds")
                .value("300")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let drift = op
        .json(
            &[
                "--config",
                "platform.toml",
                "refresh",
                "--detailed-exitcode",
            ],
            2,
        )
        .await;
    let drifted = drifted_fields(&drift);
    assert_eq!(
        drifted,
        [
            ("api-target-group".to_owned(), "health_check".to_owned()),
            ("load-balancer".to_owned(), "idle_timeout_secs".to_owned()),
        ],
        "{drift}"
    );
    op.json(&["--config", "platform.toml", "up", "--refresh"], 0)
        .await;
    let repaired = elb
        .describe_target_groups()
        .target_group_arns(&api_group)
        .send()
        .await
        .unwrap();
    assert_eq!(
        repaired.target_groups()[0].health_check_path(),
        Some("/ready")
    );
    op.json(
        &[
            "--config",
            "platform.toml",
            "refresh",
            "--detailed-exitcode",
        ],
        0,
    )
    .await;

    // No balancer: it, its listener, rules and groups go; the services stay, unregistered.
    write(
        &file,
        "[network]\npublic_subnets = [\"10.0.1.0/24\", \"10.0.2.0/24\"]\n[[service]]\nname = \"frontend\"\n[[service]]\nname = \"api\"\ncontainer_port = 8080\n",
    );
    let down = op.json(&["--config", "platform.toml", "up"], 0).await;
    assert!(
        down["outputs"]["cluster"]["load_balancer_dns_name"].is_null(),
        "{down}"
    );
    let gone = elb
        .describe_load_balancers()
        .names("my-ecs-cluster-alb")
        .send()
        .await;
    assert!(gone.is_err() || gone.unwrap().load_balancers().is_empty());
    let groups = elb.describe_target_groups().send().await.unwrap();
    assert!(groups.target_groups().is_empty(), "{groups:?}");
    let kept = ecs
        .describe_services()
        .cluster("my-ecs-cluster")
        .services("frontend-service")
        .services("api-service")
        .send()
        .await
        .unwrap();
    let kept_arns: Vec<String> = kept
        .services()
        .iter()
        .filter(|s| s.status() == Some("ACTIVE"))
        .map(|s| s.service_arn().unwrap().to_owned())
        .collect();
    assert_eq!(kept_arns, service_arns);
    assert!(
        kept.services()
            .iter()
            .all(|s| s.load_balancers().is_empty())
    );
    let lb_sg = ec2
        .describe_security_groups()
        .group_ids(&lb_group)
        .send()
        .await;
    assert!(lb_sg.is_err() || lb_sg.unwrap().security_groups().is_empty());

    // A target group made by hand is imported into the frontend's place, then kept by `up`.
    let vpc = up["outputs"]["network"]["vpc_id"].as_str().unwrap();
    let made = elb
        .create_target_group()
        .name("my-ecs-cluster-frontend")
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(80)
        .vpc_id(vpc)
        .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Ip)
        .send()
        .await
        .unwrap();
    let by_hand = made.target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_owned();
    write(&file, BALANCED);
    let imported = op
        .json(
            &[
                "--config",
                "platform.toml",
                "import",
                "cluster/target-group",
                &by_hand,
            ],
            0,
        )
        .await;
    assert_eq!(imported["kind"], "elbv2:target-group", "{imported}");
    op.json(&["--config", "platform.toml", "up"], 0).await;
    let groups = elb.describe_target_groups().send().await.unwrap();
    let frontend: Vec<&str> = groups
        .target_groups()
        .iter()
        .filter(|g| g.target_group_name() == Some("my-ecs-cluster-frontend"))
        .filter_map(|g| g.target_group_arn())
        .collect();
    assert_eq!(frontend, [by_hand.as_str()]);
    op.json(&["--config", "platform.toml", "destroy", "--yes"], 0)
        .await;
    let left = inventory(&op.config).await;
    assert!(left.is_empty(), "{left:#?}");
}
