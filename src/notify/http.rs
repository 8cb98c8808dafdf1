//! One bounded HTTP POST (ureq: blocking, no async runtime). Errors are reduced to what went
//! wrong (refused, timed out, HTTP 500): ureq's own messages may quote the URL, and a URL may
//! hold a key.

use std::time::Duration;

/// What a failed request says; never contains the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SendError(pub String);

pub struct Http {
    agent: ureq::Agent,
    timeout: Duration,
}

impl Http {
    /// `timeout` bounds each request as a whole: resolving, connecting, sending, reading.
    /// Certificates are checked against the system's trust store (a self-hosted ntfy or
    /// healthchecks with a private CA installed there works).
    pub fn new(timeout: Duration) -> Self {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .tls_config(tls)
            .user_agent(concat!("backupctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Http { agent, timeout }
    }

    /// POSTs `body`; success is any 2xx answer.
    pub fn post(
        &self,
        url: &str,
        content_type: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<(), SendError> {
        let mut request = self.agent.post(url).header("Content-Type", content_type);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.send(body) {
            Ok(_) => Ok(()),
            Err(error) => Err(SendError(self.describe(&error))),
        }
    }

    fn describe(&self, error: &ureq::Error) -> String {
        use ureq::Error as E;
        match error {
            E::StatusCode(code) => format!("the server answered HTTP {code}"),
            E::Timeout(_) => format!("no answer within {}s", self.timeout.as_secs_f64()),
            E::HostNotFound => "host not found".into(),
            E::ConnectionFailed => "connection failed".into(),
            E::Io(io) => match io.kind() {
                std::io::ErrorKind::TimedOut => {
                    format!("no answer within {}s", self.timeout.as_secs_f64())
                }
                // rustls hands its errors through as InvalidData; their text may name the
                // host, so only the gist is kept.
                std::io::ErrorKind::InvalidData => match io.get_ref() {
                    Some(inner) if inner.to_string().starts_with("invalid peer certificate") => {
                        "TLS failed: the server's certificate is not trusted".into()
                    }
                    _ => "the answer was not valid TLS or HTTP".into(),
                },
                kind => kind.to_string(),
            },
            // A token or tag with a control character (a line break inside a token file)
            // cannot be a header value; the value itself is not repeated.
            E::Http(http) if http.is::<ureq::http::header::InvalidHeaderValue>() => {
                "a header value is not valid: check the token file (one line) and the tags \
                 for control characters"
                    .into()
            }
            E::BadUri(_) | E::Http(_) => "the URL is not valid".into(),
            E::Tls(_) | E::Rustls(_) | E::Pem(_) => "TLS failed".into(),
            E::TooManyRedirects | E::RedirectFailed => "redirects failed".into(),
            _ => "the request failed".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a token with a line break in it was reported as "the URL is not valid".
    #[test]
    fn a_bad_header_value_is_not_called_a_bad_url() {
        let http = Http::new(Duration::from_secs(1));
        let error = http
            .post(
                "http://127.0.0.1:9/hook",
                "text/plain",
                &[("Authorization", "Bearer sekrit\nvalue".to_string())],
                b"",
            )
            .unwrap_err();
        assert!(
            error.0.starts_with("a header value is not valid"),
            "{error}"
        );
        assert!(!error.0.contains("sekrit"), "{error}");
    }
}
