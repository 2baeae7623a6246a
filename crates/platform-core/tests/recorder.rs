//! The call recorder as the SDK runs it: a real STS client against a tiny local HTTP server that
//! answers once with success and once with an AWS error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};
use platform_core::{Engine, Event, MemoryStateStore, events::AwsCall, events::CallRecorder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const OK: &str = r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/t</Arn><UserId>AID</UserId><Account>123456789012</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"#;
const DENIED: &str = r#"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>no</Message></Error><RequestId>2</RequestId></ErrorResponse>"#;

/// Answers each connection's one request with the next of `answers`, then closes it.
async fn server(answers: Vec<(u16, &'static str)>) -> String {
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
