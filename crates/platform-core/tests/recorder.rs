//! The engine's own AWS call as the SDK runs it, against a tiny local HTTP server: the call
//! recorder (a real STS client answered once with success and once with an AWS error), and the
//! account's identity asked while a run takes its lock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};
use platform_core::testing::{FakeCloud, FakeStack, fake_engine};
use platform_core::{
    Engine, Error, Event, MemoryStateStore, StateStore, UpOptions, events::AwsCall,
    events::CallRecorder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const OK: &str = r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/t</Arn><UserId>AID</UserId><Account>123456789012</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"#;
const DENIED: &str = r#"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>no</Message></Error><RequestId>2</RequestId></ErrorResponse>"#;

/// Answers each connection's one request with the next of `answers`, then closes it.
async fn server(answers: Vec<(u16, &'static str)>) -> String {
    slow_server(answers, Duration::ZERO).await
}

/// [`server`], each answer sent `delay` after its request arrived.
async fn slow_server(answers: Vec<(u16, &'static str)>, delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        for (status, body) in answers {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // The whole request: headers, then as many body bytes as Content-Length says.
            loop {
                let n = stream.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length || n == 0 {
                        break;
                    }
                }
            }
            tokio::time::sleep(delay).await;
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).await.unwrap();
            stream.shutdown().await.unwrap();
        }
    });
    url
}

#[tokio::test]
async fn every_sdk_call_is_counted_with_its_service_operation_status_and_error() {
    let url = server(vec![(200, OK), (403, DENIED)]).await;
    let seen: Arc<Mutex<Vec<AwsCall>>> = Arc::default();
    let sink = seen.clone();
    let engine = Engine::builder(MemoryStateStore::new())
        .on_event(move |e| {
            if let Event::AwsCall(c) = e {
                sink.lock().unwrap().push(c.clone());
            }
        })
        .build();
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("a", "b", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .interceptor(CallRecorder::new(engine.events().clone()))
        .build();
    let sts = aws_sdk_sts::Client::from_conf(config);
    sts.get_caller_identity().send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    sts.get_caller_identity().send().await.unwrap_err();

    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].operation, "GetCallerIdentity");
    assert!(
        calls[0].service.to_ascii_lowercase().contains("sts"),
        "{}",
        calls[0].service
    );
    assert!(!calls[0].mutating);
    assert_eq!(calls[0].status, Some(200));
    assert_eq!(calls[0].error, None);
    assert!(calls[0].duration > Duration::ZERO);
    assert_eq!(calls[1].status, Some(403));
    assert!(
        calls[1]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("AccessDenied"),
        "{:?}",
        calls[1].error
    );
    assert_eq!(calls[0].step, None, "made outside any engine step");
    let stats = engine.calls();
    assert_eq!((stats.read, stats.mutating), (2, 0));
}

/// An `SdkConfig` for the local server at `url`, retries off.
fn local_aws(url: &str) -> aws_types::SdkConfig {
    aws_types::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(aws_types::sdk_config::SharedCredentialsProvider::new(
            Credentials::new("a", "b", None, None, "test"),
        ))
        .retry_config(RetryConfig::disabled())
        .build()
}

#[tokio::test]
async fn the_account_is_asked_while_the_lock_is_taken() {
    const IDENTITY: Duration = Duration::from_millis(600);
    let url = slow_server(vec![(200, OK)], IDENTITY).await;
    let store = MemoryStateStore::new();
    // Another run holds the lock: this one waits for it (the engine tries again after a second).
    let other = store.lock("s", "up").await.unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        other.release().await.unwrap();
    });
    let engine = Engine::builder(store)
        .aws(local_aws(&url))
        .lock_timeout(Duration::from_secs(10))
        .build();
    let report = engine
        .up_with(&FakeStack::chain("s", 0), UpOptions::default())
        .await
        .unwrap();
    let p = report.phases;
    assert!(p.identity >= IDENTITY, "{p:?}");
    assert!(p.lock >= Duration::from_millis(300), "{p:?}");
    // Asked one after the other, the run would take both; at once, the longer.
    assert!(report.elapsed < p.lock + p.identity, "{report:?}");
    assert_eq!(report.producer.provider.unwrap().account_id, "123456789012");
}

#[tokio::test]
async fn an_account_that_cannot_be_asked_fails_the_run_records_nothing_and_gives_the_lock_back() {
    let url = server(vec![(403, DENIED)]).await;
    let store = MemoryStateStore::new();
    let engine = Engine::builder(store.clone()).aws(local_aws(&url)).build();
    let err = engine
        .up_with(&FakeStack::chain("s", 2), UpOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Identity(_)), "{err}");
    assert!(err.to_string().contains("AccessDenied"), "{err}");
    assert_eq!(store.read("s").await.unwrap(), None);
    store
        .lock("s", "up")
        .await
        .expect("the lock was given back");
}

#[tokio::test]
async fn a_run_reports_where_its_time_went() {
    let store = MemoryStateStore::new();
    let cloud = FakeCloud::new();
    let engine = fake_engine(store, &cloud);
    let stack = FakeStack::chain("s", 20);
    let report = engine.up_with(&stack, UpOptions::default()).await.unwrap();
    let p = report.phases;
    for (phase, took) in [
        ("declare", p.declare),
        ("lock", p.lock),
        ("read", p.read),
        ("plan", p.plan),
        ("apply", p.apply),
        ("outputs", p.outputs),
        ("unlock", p.unlock),
    ] {
        assert!(took > Duration::ZERO, "{phase} was not measured: {p:?}");
    }
    let one_after_another =
        p.declare + p.lock.max(p.identity) + p.read + p.plan + p.apply + p.outputs + p.unlock;
    assert!(
        one_after_another <= report.elapsed,
        "{p:?} in {:?}",
        report.elapsed
    );
    // Applying twenty resources is most of a run that makes them.
    assert!(
        p.apply > report.elapsed / 2,
        "{p:?} in {:?}",
        report.elapsed
    );
}
