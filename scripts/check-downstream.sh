#!/usr/bin/env bash
# What a project that embeds the platform gets: a scratch crate outside this workspace that depends on
# cluster-stack and on the Platform library (`examples`) by path, as a deploy bot would. Its normal
# dependencies must carry no test harness (testcontainers, the emulator proxy) and must use the pruned
# AWS clients (`platform-aws-sdk-ec2`, -iam, -ecs, -cloudwatchlogs, -s3,
# -applicationautoscaling, -elasticloadbalancingv2), never the registry's full ones
# (aws-sdk-ec2 alone is 1.2 million lines).
# Resolved offline against this workspace's lock: run after a build has fetched the dependencies.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/src"
cat >"$scratch/Cargo.toml" <<TOML
[package]
name = "deploy-bot"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
cluster-stack = { path = "$root/crates/cluster-stack" }
examples = { path = "$root/crates/examples" }
TOML
echo 'fn main() {}' >"$scratch/src/main.rs"
cp "$root/Cargo.lock" "$scratch/Cargo.lock"
tree="$(cd "$scratch" && cargo tree --offline -e normal --prefix none)"
if grep -E '^(testcontainers|testcontainers-modules|local-cloud|bollard) ' <<<"$tree"; then
  echo "check-downstream: a project using the platform would build the test harness (above)" >&2
  exit 1
fi
services="ec2 iam ecs cloudwatchlogs s3 applicationautoscaling elasticloadbalancingv2"
for service in $services; do
  if grep -E "^aws-sdk-$service " <<<"$tree"; then
    echo "check-downstream: a project using the platform would build the registry's full aws-sdk-$service" >&2
    exit 1
  fi
  if ! grep -E "^platform-aws-sdk-$service v[0-9.]+ \(" <<<"$tree" | head -n 1; then
    echo "check-downstream: the pruned platform-aws-sdk-$service is not in the project's tree" >&2
    exit 1
  fi
done
echo "check-downstream: no test harness, the pruned AWS clients ($services)"
