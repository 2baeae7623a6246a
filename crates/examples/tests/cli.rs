//! `production`, the example users run first, driven as a process: the default local target end to
//! end (up twice, outputs, graph, destroy, preview --detailed-exitcode, emulator stop), and the refusal
//! to touch real AWS without confirmation.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::production;

use serde_json::Value;

fn run(state: &Path, args: &[&str]) -> Output {
    let out = Command::new(production())
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap();
    eprintln!(
        "$ production {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "exit {:?}", out.status);
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        text.trim().lines().count(),
        1,
        "exactly one JSON object: {text}"
    );
    serde_json::from_str(text.trim()).unwrap()
}

/// Stops the emulator the test started, even when an assertion fails.
struct StopOnDrop(PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = Command::new(production())
            .arg("--state-dir")
            .arg(&self.0)
            .args(["emulator", "stop"])
            .output();
    }
}

#[test]
fn the_default_local_target_from_nothing_to_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("platform");
    let _stop = StopOnDrop(state.clone());

    // First run: everything is created on a local emulator the tool starts and keeps.
    let up = json(&run(&state, &["--json", "up"]));
    assert_eq!(up["command"], "up");
    assert_eq!(up["target"], "local");
    let names: Vec<&str> = up["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["iam", "network", "cluster"]);
    assert_eq!(up["totals"]["create"], 23, "{up}");
    // The seed's 27 creating calls, and 5 reads: the identity, the region's zones, the cluster's
    // name (CreateCluster would answer with anyone's cluster of that name), the rules AWS gave the
    // new group, the service's steady state.
    assert_eq!(
        up["api_calls"],
        serde_json::json!({"mutating": 27, "read": 5}),
        "{up}"
    );
    assert!(up["wall_ms"].as_u64().is_some());
    assert_eq!(up["outputs"]["cluster"]["cluster_name"], "my-ecs-cluster");
    assert!(state.join("emulator.json").exists());

    // Second run, a new process on the same emulator: nothing to create, nothing mutating.
    let again = json(&run(&state, &["--json", "up"]));
    assert_eq!(again["totals"]["create"], 0, "{again}");
    assert_eq!(again["totals"]["same"], 23, "{again}");
    assert_eq!(again["api_calls"]["mutating"], 0, "{again}");
    assert_eq!(again["outputs"], up["outputs"]);

    // `outputs --json` is the typed outputs, as recorded.
    let outputs = json(&run(&state, &["--json", "outputs"]));
    assert_eq!(outputs["outputs"], up["outputs"]);
    let cluster: cluster_stack::ClusterOutputs =
        serde_json::from_value(outputs["outputs"]["cluster"].clone()).unwrap();
    assert_eq!(cluster.service_name, "frontend-service");
    let net: network_stack::NetworkOutputs =
        serde_json::from_value(outputs["outputs"]["network"].clone()).unwrap();
    assert_eq!(net.vpc_cidr, "10.0.0.0/16");
    let iam: iam_stack::IamOutputs =
        serde_json::from_value(outputs["outputs"]["iam"].clone()).unwrap();
    assert!(
        iam.services["frontend"]
            .role
            .arn
            .starts_with("arn:aws:iam::")
    );

    // `graph`: a Mermaid flowchart with every stack and resource and both references.
    let graph = run(&state, &["graph"]);
    assert!(graph.status.success());
    let mermaid = String::from_utf8(graph.stdout).unwrap();
    check_mermaid(&mermaid);
    for resource in [
        "provider",
        "cluster-role",
        "frontend-policy",
        "instance-profile",
        "vpc",
        "public-subnet-0",
        "internet-gateway",
        "public-route-table",
        "service-security-group",
        "log-group",
        "task-definition",
        "service",
    ] {
        assert!(
            mermaid.contains(&format!("[\"{resource}<br/>")),
            "{resource} missing:\n{mermaid}"
        );
    }
    assert_eq!(mermaid.matches("-. StackRef .->").count(), 2, "{mermaid}");
    let dot = run(&state, &["graph", "--format", "dot"]);
    assert!(
        String::from_utf8(dot.stdout)
            .unwrap()
            .starts_with("digraph platform {")
    );

    // Destroy, then the plan is to create everything again.
    let destroyed = json(&run(&state, &["--json", "destroy"]));
    let deleted: u64 = destroyed["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["deleted"].as_u64().unwrap())
        .sum();
    assert_eq!(deleted, 23, "{destroyed}");
    let preview = run(&state, &["--json", "preview", "--detailed-exitcode"]);
    assert_eq!(preview.status.code(), Some(2));
    let plan: Value = serde_json::from_slice(&preview.stdout).unwrap();
    assert_eq!(plan["totals"]["create"], 23, "{plan}");
    assert_eq!(plan["totals"]["same"], 0, "{plan}");

    let stop = run(&state, &["emulator", "stop"]);
    assert!(stop.status.success());
    assert!(!state.join("emulator.json").exists());
}

/// A structural check of a Mermaid flowchart: a `graph` header, balanced `subgraph`/`end`, and every
/// other line a node (`id["label"]`) or an edge (`a --> b`, `a -. text .-> b`) between declared nodes.
fn check_mermaid(text: &str) {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("graph TB"), "{text}");
    let mut depth = 0i32;
    let mut nodes = std::collections::HashSet::new();
    let mut edges = Vec::new();
    let id_ok =
        |id: &str| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    for line in lines {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("subgraph ") {
            depth += 1;
            let id = rest.split('[').next().unwrap();
            assert!(id_ok(id), "bad subgraph id in {line:?}");
            nodes.insert(id.to_owned());
        } else if l == "end" {
            depth -= 1;
            assert!(depth >= 0, "unbalanced end: {text}");
        } else if let Some((from, to)) = l
            .split_once(" --> ")
            .or_else(|| l.split_once(" -. StackRef .-> "))
        {
            edges.push((from.to_owned(), to.to_owned()));
        } else {
            let (id, label) = l
                .split_once('[')
                .unwrap_or_else(|| panic!("not a node: {line:?}"));
            assert!(id_ok(id), "bad node id in {line:?}");
            assert!(
                label.starts_with('"') && label.ends_with("\"]"),
                "bad label in {line:?}"
            );
            nodes.insert(id.to_owned());
        }
    }
    assert_eq!(depth, 0, "unbalanced subgraph: {text}");
    for (from, to) in edges {
        assert!(
            nodes.contains(&from) && nodes.contains(&to),
            "edge {from} -> {to} to an undeclared node"
        );
    }
}

#[test]
fn real_aws_without_yes_and_without_a_terminal_is_refused_before_any_call() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["up", "destroy"] {
        let out = Command::new(production())
            .arg("--state-dir")
            .arg(dir.path())
            .args(["--aws", command])
            .stdin(std::process::Stdio::null())
            // No credentials and an unroutable endpoint: any AWS call would fail differently.
            .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("refusing to change real AWS"), "{stderr}");
        assert!(stderr.contains("--yes"), "{stderr}");
    }
    // Nothing was written either.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(production())
        .args(["--aws", "--endpoint", "http://x", "up"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(production()).arg("launch").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
