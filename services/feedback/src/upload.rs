//! Sending a batch to the maker's collector: `POST` of the `FeedbackBatch` protobuf, gzip,
//! `Idempotency-Key: <batch id>`, over HTTPS (rustls; plain HTTP only to a loopback address).
//!
//! What to do with an answer is decided in [`classify`], as OTLP/HTTP does: delivered (2xx,
//! also a duplicate), retried (connection errors, timeouts, 429, 502, 503, 504) after
//! [`Backoff`] (exponential with jitter, or exactly what `Retry-After` asks for), or set aside
//! for good (every other status: the same bytes would fail again).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use cabin_proto::feedback::v1::{CollectorResponse, UploadStatus};
use prost::Message;

use crate::outbox::Outgoing;

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The collector has the batch (`duplicate`: it had it already).
    Delivered { duplicate: bool },
    /// The collector refused these bytes; retrying cannot help.
    Rejected { reason: String },
    /// Try again later (`after`: what the server asked for).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

/// Longest `Retry-After` honoured; a server asking for more gets asked again after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = (when.with_timezone(&chrono::Utc) - now)
        .to_std()
        .unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The decision for an HTTP answer.
pub fn classify(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Outcome {
    let answer = CollectorResponse::decode(body).ok();
    let message = answer
        .as_ref()
        .map(|a| a.message.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_string()
        });
    let with = |what: String| {
        if message.is_empty() {
            what
        } else {
            format!("{what}: {message}")
        }
    };
    match status {
        200..=299 => match answer.map(|a| a.status()) {
            Some(UploadStatus::Rejected) => Outcome::Rejected {
                reason: with(format!("HTTP {status}, rejected")),
            },
            Some(UploadStatus::Duplicate) => Outcome::Delivered { duplicate: true },
            _ => Outcome::Delivered { duplicate: false },
        },
        // What OTLP/HTTP calls retryable; any other answer would come back the same.
        429 | 502 | 503 | 504 => Outcome::Retry {
            reason: with(format!("HTTP {status}")),
            after: retry_after,
        },
        _ => Outcome::Rejected {
            reason: with(format!("HTTP {status}")),
        },
    }
}

/// Exponential backoff with jitter: attempt n waits a random time in [d/2, d], d = initial·2ⁿ
/// capped at `max`, so a fleet coming out of a tunnel does not retry in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    failures: u32,
    seed: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        Self {
            initial,
            max,
            failures: 0,
            seed,
        }
    }

    /// The wait after one more failure; `asked` (Retry-After) wins when given.
    pub fn next(&mut self, asked: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        if let Some(asked) = asked {
            return asked;
        }
        let full = self
            .initial
            .saturating_mul(1u32 << (self.failures - 1).min(20))
            .min(self.max);
        // xorshift: jitter needs no cryptography.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let frac = 0.5 + (self.seed % 1000) as f64 / 2000.0;
        full.mul_f64(frac)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Where batches go: `https://…`, or `http://` to a loopback address (tests, the simulator).
pub fn check_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("upload URL {url:?} has no scheme"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("").to_string()
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .to_string()
    };
    if host.is_empty() {
        return Err(format!("upload URL {url:?} has no host"));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" => {
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "upload URL {url:?}: plain HTTP is allowed only to a loopback address; use https"
                ))
            }
        }
        other => Err(format!("upload URL {url:?}: unsupported scheme {other:?}")),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Url(String),
    #[error("CA file {path}: {reason}")]
    Ca { path: String, reason: String },
}

/// An HTTP client for one collector URL.
pub struct Uploader {
    agent: ureq::Agent,
    url: String,
}

impl Uploader {
    /// `ca_file`: PEM certificates to trust instead of the public web roots (a maker's own CA).
    pub fn new(url: &str, ca_file: Option<&Path>, timeout: Duration) -> Result<Self, ClientError> {
        check_url(url).map_err(ClientError::Url)?;
        let mut config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("cabin-feedbackd/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_file {
            let ca_error = |reason: String| ClientError::Ca {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let mut certs = Vec::new();
            for item in ureq::tls::parse_pem(&pem) {
                if let ureq::tls::PemItem::Certificate(cert) =
                    item.map_err(|e| ca_error(e.to_string()))?
                {
                    certs.push(cert);
                }
            }
            if certs.is_empty() {
                return Err(ca_error("no certificate in it".into()));
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        Ok(Self {
            agent: config.build().into(),
            url: url.to_string(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One attempt (blocking: run it off the async runtime).
    pub fn send(&self, batch: &Outgoing) -> Outcome {
        let body = gzip(&batch.bytes);
        let response = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "gzip")
            .header("Idempotency-Key", &batch.batch_id)
            .send(&body[..]);
        let mut response = match response {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    reason: format!("cannot reach the collector: {e}"),
                    after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_vec()
            .unwrap_or_default();
        classify(status, retry_after, &body)
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: UploadStatus, message: &str) -> Vec<u8> {
        CollectorResponse {
            batch_id: "b".into(),
            status: status as i32,
            message: message.into(),
            acknowledged_sequence: 1,
        }
        .encode_to_vec()
    }

    #[test]
    fn answers_are_classified_by_what_a_retry_could_change() {
        assert_eq!(
            classify(200, None, &answer(UploadStatus::Accepted, "")),
            Outcome::Delivered { duplicate: false }
        );
        assert_eq!(
            classify(200, None, &answer(UploadStatus::Duplicate, "")),
            Outcome::Delivered { duplicate: true }
        );
        for status in [429, 502, 503, 504] {
            assert!(
                matches!(classify(status, None, b""), Outcome::Retry { .. }),
                "{status}"
            );
        }
        for status in [400, 401, 403, 413, 404, 422, 500, 501, 408] {
            let Outcome::Rejected { reason } =
                classify(status, None, &answer(UploadStatus::Rejected, "bad schema"))
            else {
                panic!("{status} must not be retried");
            };
            assert!(reason.contains(&status.to_string()) && reason.contains("bad schema"));
        }
        let after = Some(Duration::from_secs(7));
        assert_eq!(
            classify(429, after, b"slow down"),
            Outcome::Retry {
                reason: "HTTP 429: slow down".into(),
                after
            }
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Mon, 30 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Mon, 30 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("99999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_obeys_the_server() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let waits: Vec<Duration> = (0..8).map(|_| b.next(None)).collect();
        for (n, w) in waits.iter().enumerate() {
            let full = Duration::from_millis(100 * (1u64 << n)).min(Duration::from_secs(2));
            assert!(
                *w >= full / 2 && *w <= full,
                "attempt {n}: {w:?} vs {full:?}"
            );
        }
        assert_eq!(b.next(Some(Duration::from_secs(9))), Duration::from_secs(9));
        b.reset();
        assert!(b.next(None) <= Duration::from_millis(100));
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(check_url("https://collector.example.com/v1/feedback").is_ok());
        assert!(check_url("http://127.0.0.1:8080/v1/feedback").is_ok());
        assert!(check_url("http://[::1]:8080/v1/feedback").is_ok());
        assert!(check_url("http://localhost/v1/feedback").is_ok());
        assert!(check_url("http://collector.example.com/v1/feedback").is_err());
        assert!(check_url("http://10.0.0.1/v1/feedback").is_err());
        assert!(check_url("ftp://127.0.0.1/x").is_err());
        assert!(check_url("no-scheme").is_err());
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let data = b"feedback ".repeat(100);
        let packed = gzip(&data);
        assert!(packed.len() < data.len());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }
}
