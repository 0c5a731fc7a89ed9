//! One JSON POST over HTTP(S), blocking, for the Alertmanager and webhook
//! senders: the answer's status, or why there was none. Which statuses are
//! worth a retry is decided here once ([`Outcome`]).

use std::sync::Arc;
use std::time::Duration;

/// What became of one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Accepted,
    /// No answer (connection, timeout), or 408, 429 or 5xx: try again later.
    Retry(String),
    /// Any other status: the receiver refuses this body for good.
    Refused(String),
}

/// A reusable client (keeps connections alive between POSTs).
#[derive(Clone)]
pub struct Poster {
    agent: ureq::Agent,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for HTTP: {0}")]
pub struct PosterError(#[from] native_tls::Error);

impl Poster {
    /// A client whose requests time out after `timeout`.
    pub fn new(timeout: Duration) -> Result<Poster, PosterError> {
        let tls = native_tls::TlsConnector::new()?;
        let agent = ureq::AgentBuilder::new()
            .timeout(timeout)
            .tls_connector(Arc::new(tls))
            .user_agent(concat!("overdued/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Poster { agent })
    }

    /// POSTs `body` as `application/json` with extra `headers`.
    pub fn post_json(&self, url: &str, body: &[u8], headers: &[(&str, &str)]) -> Outcome {
        let mut req = self.agent.post(url).set("Content-Type", "application/json");
        for (k, v) in headers {
            req = req.set(k, v);
        }
        match req.send_bytes(body) {
            Ok(_) => Outcome::Accepted,
            Err(ureq::Error::Status(code, resp)) => {
                // a short excerpt of the answer, for the log (never the body we sent)
                let text: String = resp
                    .into_string()
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect();
                let why = format!("HTTP {code}: {}", text.trim());
                if code == 408 || code == 429 || code >= 500 {
                    Outcome::Retry(why)
                } else {
                    Outcome::Refused(why)
                }
            }
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}

/// The delay before attempt `n + 1` after `n` failures: 1 s doubling, at most
/// `max`.
pub fn backoff(failures: u32, max: Duration) -> Duration {
    Duration::from_secs(1u64 << failures.min(20)).min(max)
}

/// A duration setting from 1 s to `max_s` (`default` when absent).
pub(super) fn bounded_duration(
    src: &crate::config::common::Src<'_>,
    v: &Option<toml::Spanned<String>>,
    field: &str,
    default: Duration,
    max_s: i64,
) -> Result<Duration, crate::config::common::ConfigError> {
    match v {
        None => Ok(default),
        Some(t) => match crate::config::common::parse_duration(t.get_ref()) {
            Some(d) if d >= crate::time::SECOND && d <= max_s * crate::time::SECOND => {
                Ok(Duration::from_micros(d as u64))
            }
            _ => src.err(
                t.span(),
                field,
                format!("must be a duration from 1s to {max_s}s, e.g. \"30s\" or \"1m\""),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_up_to_the_cap() {
        let max = Duration::from_secs(300);
        let got: Vec<u64> = (0..11).map(|n| backoff(n, max).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(u32::MAX, max), max);
    }

    #[test]
    fn statuses_split_into_accepted_retry_and_refused() {
        // a server that answers each connection with the next status
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let statuses = [200u16, 204, 500, 503, 429, 408, 400, 404];
        let h = std::thread::spawn(move || {
            use std::io::{Read, Write};
            for code in statuses {
                let (mut s, _) = l.accept().unwrap();
                // the whole request (headers and the 2-byte body) before the
                // answer: closing on an unread body would reset the connection
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.ends_with(b"\r\n\r\n{}") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"
                );
            }
        });
        let p = Poster::new(Duration::from_secs(5)).unwrap();
        let url = format!("http://127.0.0.1:{port}/x");
        let got: Vec<&str> = statuses
            .iter()
            .map(|_| match p.post_json(&url, b"{}", &[]) {
                Outcome::Accepted => "ok",
                Outcome::Retry(_) => "retry",
                Outcome::Refused(_) => "refused",
            })
            .collect();
        h.join().unwrap();
        assert_eq!(
            got,
            ["ok", "ok", "retry", "retry", "retry", "retry", "refused", "refused"]
        );
        // nobody listening: retry
        drop(std::net::TcpListener::bind(("127.0.0.1", port)));
        assert!(matches!(p.post_json(&url, b"{}", &[]), Outcome::Retry(_)));
    }
}
