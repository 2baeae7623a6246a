//! Per-test AWS accounts on moto: an HTTP client that adds `x-moto-account-id` to every request.
//!
//! It wraps the SDK's default HTTPS client and sits in the `SdkConfig`, so every client built from that
//! config (the engine's, a test's own) lands in the same account, with no interceptor to remember.

use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// The header moto reads the account from.
pub const ACCOUNT_HEADER: &str = "x-moto-account-id";

/// An `HttpClient` that sends every request in one moto account.
#[derive(Debug, Clone)]
pub struct AccountHeaderClient {
    inner: SharedHttpClient,
    account: String,
}

impl AccountHeaderClient {
    /// A client for account `account` (12 digits) over the default HTTPS client.
    pub fn new(account: impl Into<String>) -> Self {
        Self::over(http_client(true), account)
    }

    /// A client for account `account` over `inner`.
    pub(crate) fn over(inner: SharedHttpClient, account: impl Into<String>) -> Self {
        Self {
            inner,
            account: account.into(),
        }
    }

    /// The account id.
    pub fn account(&self) -> &str {
        &self.account
    }
}

impl HttpClient for AccountHeaderClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(AccountHeaderConnector {
            inner: self.inner.http_connector(settings, components),
            account: self.account.clone(),
        })
    }
}

/// The SDK's HTTPS client (rustls), trusting the system's root certificates when `tls`; without
/// them otherwise, for an emulator's plain `http://` endpoint: reading and parsing the system's
/// roots takes a process tens of milliseconds (a debug build) before its first call, for
/// connections that never use TLS.
pub(crate) fn http_client(tls: bool) -> SharedHttpClient {
    let builder = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::AwsLc,
    ));
    if !tls
        && let Ok(untrusting) = tls::TlsContext::builder()
            .with_trust_store(tls::TrustStore::empty())
            .build()
    {
        return builder.tls_context(untrusting).build_https();
    }
    builder.build_https()
}

#[derive(Debug)]
struct AccountHeaderConnector {
    inner: SharedHttpConnector,
    account: String,
}

impl HttpConnector for AccountHeaderConnector {
    fn call(&self, mut request: HttpRequest) -> HttpConnectorFuture {
        request
            .headers_mut()
            .insert(ACCOUNT_HEADER, self.account.clone());
        self.inner.call(request)
    }
}
