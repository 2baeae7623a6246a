//! The harness's own suite: each acquisition path that can run here (the `AWS_ENDPOINT_URL` variable,
//! Docker, the no-Docker fallback, and the error when nothing works), isolation between concurrent
//! tests, and the proxy's recording, latency and fault rules, all with real SDK calls.
//!
//! Paths that depend on process-wide environment variables (`AWS_ENDPOINT_URL`, `DOCKER_HOST`) re-run
//! this test binary as a child process with the variable set, so no test changes another's environment.
//! "No Docker" is made real by pointing `DOCKER_HOST` at a socket that does not exist.

use std::time::Duration;

use aws_sdk_cloudwatchlogs as logs;
use aws_types::SdkConfig;
use local_cloud::{Backend, Emulator, EmulatorOptions, Fault, Proxy, Rule};
use platform_core::{error::AwsError, error::ErrorClass};

async fn emulator() -> Emulator {
    Emulator::start()
        .await
        .expect("an AWS emulator is required for this suite")
}

async fn create_group(config: &SdkConfig, name: &str) {
    logs::Client::new(config)
        .create_log_group()
        .log_group_name(name)
        .send()
        .await
        .expect("CreateLogGroup");
}

async fn group_names(config: &SdkConfig) -> Vec<String> {
    logs::Client::new(config)
        .describe_log_groups()
        .send()
        .await
        .expect("DescribeLogGroups")
        .log_groups()
        .iter()
        .filter_map(|g| g.log_group_name().map(str::to_owned))
        .collect()
}

/// The account the credentials of `config` belong to (STS GetCallerIdentity, through the engine).
async fn account_of(config: &SdkConfig) -> String {
    platform_core::Engine::builder(platform_core::MemoryStateStore::new())
        .aws(config.clone())
        .build()
        .identity()
        .await
        .expect("GetCallerIdentity")
        .account_id
}

#[tokio::test]
async fn the_docker_path_serves_logs_and_sts() {
    let emu = Emulator::start_with(EmulatorOptions::default().only(Backend::Docker))
        .await
        .expect("Docker with the motoserver/moto image (scripts/build-emulator-image.sh)");
    assert_eq!(emu.backend(), &Backend::Docker);
    let config = emu.account("333333333333");
    create_group(&config, "/ecs/frontend").await;
    assert_eq!(group_names(&config).await, ["/ecs/frontend"]);
    assert_eq!(account_of(&config).await, "333333333333");
}

#[tokio::test]
async fn concurrent_tests_on_one_emulator_do_not_see_each_other() {
    let emu = emulator().await;
    let (a, b) = (emu.isolated(), emu.isolated());
    tokio::join!(create_group(&a, "/a"), create_group(&b, "/b"));
    let (seen_a, seen_b) = tokio::join!(group_names(&a), group_names(&b));
    assert_eq!(seen_a, ["/a"]);
    assert_eq!(seen_b, ["/b"]);
    let (id_a, id_b) = tokio::join!(account_of(&a), account_of(&b));
    assert_ne!(id_a, id_b);
    assert_eq!(id_a.len(), 12);
}

#[tokio::test]
async fn the_proxy_records_every_call_and_adds_latency() {
    let emu = emulator().await;
    let proxy = Proxy::start(emu.endpoint_url()).await.unwrap();
    proxy.set_latency(Duration::from_millis(120));
    let config = proxy.wrap(&emu.isolated());
    let started = std::time::Instant::now();
    create_group(&config, "/g").await;
    assert!(started.elapsed() >= Duration::from_millis(120));
    assert_eq!(group_names(&config).await, ["/g"]);
    account_of(&config).await;

    let calls = proxy.calls();
    let ops: Vec<(&str, &str, u16)> = calls
        .iter()
        .map(|c| (c.service.as_str(), c.operation.as_str(), c.status))
        .collect();
    assert_eq!(
        ops,
        [
            ("logs", "CreateLogGroup", 200),
            ("logs", "DescribeLogGroups", 200),
            ("sts", "GetCallerIdentity", 200)
        ]
    );
    assert!(
        calls
            .iter()
            .all(|c| c.duration >= Duration::from_millis(120))
    );
    assert!(calls[1].started >= calls[0].started + Duration::from_millis(120));
}

#[tokio::test]
async fn fault_rules_throttle_fail_and_drop_chosen_calls() {
    let emu = emulator().await;
    let proxy = Proxy::start(emu.endpoint_url()).await.unwrap();
    let config = proxy.wrap(&emu.isolated());

    // Throttled twice: the SDK's own retry absorbs it; the proxy saw three attempts.
    proxy.add_rule(
        Rule::new(Fault::Throttle)
            .service("logs")
            .operation("CreateLogGroup")
            .times(2),
    );
    create_group(&config, "/t").await;
    let statuses: Vec<u16> = proxy.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [400, 400, 200]);
    proxy.clear_calls();

    // A dropped connection, then an HTTP 500: both retried by the SDK.
    proxy.add_rule(
        Rule::new(Fault::DropConnection)
            .operation("DescribeLogGroups")
            .times(1),
    );
    proxy.add_rule(
        Rule::new(Fault::ServerError)
            .operation("DescribeLogGroups")
            .times(1),
    );
    assert_eq!(group_names(&config).await, ["/t"]);
    let statuses: Vec<u16> = proxy.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [0, 500, 200]);
    proxy.clear_calls();

    // An AWS error of our choosing reaches the caller, classified.
    proxy.add_rule(
        Rule::new(Fault::AwsError {
            status: 400,
            code: "InvalidParameterException".into(),
            message: "nope".into(),
        })
        .operation("DescribeLogGroups"),
    );
    let err = logs::Client::new(&config)
        .describe_log_groups()
        .send()
        .await
        .unwrap_err();
    let err = AwsError::from_sdk("DescribeLogGroups", err);
    assert_eq!(err.code.as_deref(), Some("InvalidParameterException"));
    assert_eq!(err.message.as_deref(), Some("nope"));
    assert_eq!(err.class, ErrorClass::Validation);
    proxy.clear_rules();

    // A query-protocol service (STS) gets its throttling error in its own XML format, retried by the
    // SDK until its attempts run out, then classified.
    proxy.add_rule(Rule::new(Fault::Throttle).service("sts"));
    let err = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    let err = AwsError::from_sdk("GetCallerIdentity", err);
    assert_eq!(err.code.as_deref(), Some("Throttling"));
    assert_eq!(err.class, ErrorClass::Throttling);
    assert_eq!(
        proxy.calls().iter().filter(|c| c.service == "sts").count(),
        3
    );
}

// ---- the AWS_ENDPOINT_URL path ----

const ENDPOINT_CHILD: &str = "LOCAL_CLOUD_ENDPOINT_CHILD";

#[tokio::test]
async fn an_endpoint_in_the_environment_is_used_as_is() {
    if std::env::var_os(ENDPOINT_CHILD).is_some() {
        return endpoint_child().await;
    }
    // Stand in for "an emulator you already run": one started by the harness.
    let running = Emulator::start()
        .await
        .expect("an AWS emulator is required for this suite");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "an_endpoint_in_the_environment_is_used_as_is",
            "--exact",
            "--nocapture",
        ])
        .env(ENDPOINT_CHILD, "1")
        .env("AWS_ENDPOINT_URL", running.endpoint_url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
    // What the child created through the endpoint is in the emulator we started.
    assert_eq!(
        group_names(&running.account("222222222222")).await,
        ["/made-by/child"]
    );
}

async fn endpoint_child() {
    let url = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let emu = Emulator::start().await.unwrap();
    assert_eq!(emu.backend(), &Backend::Endpoint);
    assert_eq!(emu.endpoint_url(), url);
    create_group(&emu.account("222222222222"), "/made-by/child").await;
    let forced = Emulator::start_with(EmulatorOptions::default().only(Backend::Endpoint))
        .await
        .unwrap();
    assert_eq!(forced.backend(), &Backend::Endpoint);
}

// ---- the no-Docker paths ----

const FALLBACK_CHILD: &str = "LOCAL_CLOUD_FALLBACK_CHILD";

fn rerun(test: &str, envs: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture"])
        .env(FALLBACK_CHILD, "1")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("AWS_ENDPOINT_URL");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && text.contains("1 passed"), text)
}

#[tokio::test]
async fn without_docker_the_harness_runs_moto_server_itself() {
    if std::env::var_os(FALLBACK_CHILD).is_some() {
        let emu = Emulator::start().await.expect("fallback emulator");
        assert_eq!(emu.backend(), &Backend::Process);
        assert!(emu.endpoint_url().starts_with("http://127.0.0.1:"));
        let config = emu.account("444444444444");
        create_group(&config, "/ecs/frontend").await;
        assert_eq!(group_names(&config).await, ["/ecs/frontend"]);
        assert_eq!(account_of(&config).await, "444444444444");
        return;
    }
    let (ok, text) = rerun("without_docker_the_harness_runs_moto_server_itself", &[]);
    assert!(ok, "child failed:\n{text}");
    assert!(
        text.contains("no Docker daemon"),
        "the fallback is announced:\n{text}"
    );
}

#[tokio::test]
async fn with_neither_docker_nor_python_the_error_says_what_to_install() {
    if std::env::var_os(FALLBACK_CHILD).is_some() {
        let err = Emulator::start()
            .await
            .expect_err("nothing can run an emulator here");
        let msg = err.to_string();
        assert!(msg.contains("no AWS emulator available"), "{msg}");
        assert!(msg.contains("Docker"), "{msg}");
        assert!(msg.contains("AWS_ENDPOINT_URL"), "{msg}");
        assert!(msg.contains("python3"), "{msg}");
        return;
    }
    let empty = tempfile::tempdir().unwrap();
    let (ok, text) = rerun(
        "with_neither_docker_nor_python_the_error_says_what_to_install",
        &[
            ("PYTHON", "/nonexistent/python3"),
            ("CARGO_TARGET_DIR", empty.path().to_str().unwrap()),
        ],
    );
    assert!(ok, "child failed:\n{text}");
}
