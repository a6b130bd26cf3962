//! The cloud backend: any OpenAI-compatible `/v1/chat/completions` server (DashScope's
//! compatible mode, DeepSeek, a local llama.cpp server ...), streamed over SSE, with tool
//! calls. Every failure has a name: refused credentials, rate limits (with `Retry-After`),
//! server errors, a stream that breaks or stops midway, and no answer by the deadline.

use std::io::Read;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::backend::{Backend, BackendError, Draft, Request};
use crate::tools::ToolCall;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudConfig {
    /// e.g. `https://dashscope.aliyuncs.com/compatible-mode/v1` or `https://api.deepseek.com/v1`;
    /// `/chat/completions` is appended. Plain `http` only to a loopback address.
    pub base_url: String,
    pub model: String,
    /// File holding the API key (first line); wins over `api_key_env`.
    pub api_key_file: Option<PathBuf>,
    /// Environment variable holding the API key.
    pub api_key_env: String,
    pub temperature: f64,
}

impl Default for CloudConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            model: "qwen-plus".into(),
            api_key_file: None,
            api_key_env: "CABIN_COMPANION_API_KEY".into(),
            temperature: 0.8,
        }
    }
}

impl CloudConfig {
    pub fn validate(&self) -> Result<(), String> {
        let url = self.base_url.trim();
        let rest = if let Some(rest) = url.strip_prefix("https://") {
            rest
        } else if let Some(rest) = url.strip_prefix("http://") {
            let host = rest.split(['/', '?']).next().unwrap_or("");
            let host = host.rsplit_once(':').map_or(host, |(h, port)| {
                if port.chars().all(|c| c.is_ascii_digit()) {
                    h
                } else {
                    host
                }
            });
            if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
                return Err(format!(
                    "cloud.base_url {url:?}: plain http is only allowed to a loopback address; use https"
                ));
            }
            rest
        } else {
            return Err(format!("cloud.base_url {url:?} must start with https://"));
        };
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("cloud.base_url {url:?} has no host"));
        }
        if self.model.trim().is_empty() {
            return Err("cloud.model is empty".into());
        }
        Ok(())
    }
}

pub struct CloudBackend {
    config: CloudConfig,
    url: String,
    agent: ureq::Agent,
}

impl CloudBackend {
    pub fn new(config: CloudConfig) -> Result<Self, String> {
        config.validate()?;
        let url = format!(
            "{}/chat/completions",
            config.base_url.trim().trim_end_matches('/')
        );
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        Ok(Self { config, url, agent })
    }

    fn api_key(&self) -> Result<String, BackendError> {
        let key = match &self.config.api_key_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    BackendError::Unavailable(format!(
                        "cannot read the API key file {}: {e}",
                        path.display()
                    ))
                })?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
            None => std::env::var(&self.config.api_key_env)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        if key.is_empty() {
            return Err(BackendError::Unavailable(
                "no API key configured for the cloud backend".into(),
            ));
        }
        Ok(key)
    }

    fn stream(
        &self,
        key: &str,
        body: &Value,
        deadline: Instant,
        on_token: &mut dyn FnMut(&str),
        cancel: &AtomicBool,
    ) -> Result<Streamed, BackendError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(BackendError::Timeout(Duration::ZERO));
        }
        let response = self
            .agent
            .post(&self.url)
            .config()
            .timeout_global(Some(remaining))
            .build()
            .header("Authorization", &format!("Bearer {key}"))
            .header("Content-Type", "application/json")
            .header("Accept", "text/event-stream")
            .send(body.to_string().as_bytes());
        let mut response = match response {
            Ok(r) => r,
            Err(ureq::Error::Timeout(_)) => return Err(BackendError::Timeout(remaining)),
            Err(e) => {
                return Err(BackendError::Unavailable(format!(
                    "cannot reach the cloud service: {e}"
                )));
            }
        };
        let status = response.status().as_u16();
        if status != 200 {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = response
                .body_mut()
                .with_config()
                .limit(16 * 1024)
                .read_to_string()
                .unwrap_or_default();
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| {
                    v.pointer("/error/message")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| text.chars().take(200).collect());
            return Err(match status {
                401 | 403 => BackendError::Unauthorized(format!("HTTP {status}: {message}")),
                429 => BackendError::RateLimited { retry_after },
                500..=599 => BackendError::Server(format!("HTTP {status}: {message}")),
                _ => BackendError::Protocol(format!("HTTP {status}: {message}")),
            });
        }
        let mut out = Streamed::default();
        let mut finished = false;
        for event in server_sent_events(response.into_body().into_reader()) {
            if cancel.load(Ordering::SeqCst) {
                return Err(BackendError::Cancelled);
            }
            let event = match event {
                Ok(event) => event,
                Err(EventStreamError::Transport(e))
                    if Instant::now() >= deadline || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return Err(BackendError::Timeout(remaining));
                }
                Err(e) => return Err(BackendError::Protocol(format!("the stream broke off: {e}"))),
            };
            // One event's `data:` lines arrive joined with newlines, as the SSE spec says.
            let data = event.data.trim();
            if data.is_empty() {
                continue;
            }
            if data == "[DONE]" {
                finished = true;
                break;
            }
            let chunk: Value = serde_json::from_str(data)
                .map_err(|e| BackendError::Protocol(format!("a stream event is not JSON: {e}")))?;
            if let Some(error) = chunk.get("error") {
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                return Err(BackendError::Server(format!(
                    "error in the stream: {message}"
                )));
            }
            let Some(choice) = chunk.pointer("/choices/0") else {
                continue;
            };
            if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str)
                && !text.is_empty()
            {
                out.text.push_str(text);
                on_token(text);
            }
            if let Some(calls) = choice
                .pointer("/delta/tool_calls")
                .and_then(Value::as_array)
            {
                for call in calls {
                    let index = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                    if index >= 8 {
                        continue;
                    }
                    while out.calls.len() <= index {
                        out.calls.push(PartialCall::default());
                    }
                    let slot = &mut out.calls[index];
                    if let Some(id) = call.get("id").and_then(Value::as_str) {
                        slot.id = id.to_string();
                    }
                    if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                        slot.name.push_str(name);
                    }
                    if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str)
                    {
                        slot.arguments.push_str(args);
                    }
                }
            }
            if choice
                .get("finish_reason")
                .and_then(Value::as_str)
                .is_some()
            {
                finished = true;
            }
        }
        if !finished {
            return Err(BackendError::Protocol(
                "the stream ended before the answer was complete".into(),
            ));
        }
        Ok(out)
    }
}

#[derive(Default)]
struct Streamed {
    text: String,
    calls: Vec<PartialCall>,
}

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

impl Backend for CloudBackend {
    fn name(&self) -> &str {
        "cloud"
    }

    fn respond(
        &self,
        req: &Request<'_>,
        deadline: Instant,
        on_token: &mut dyn FnMut(&str),
        cancel: &AtomicBool,
    ) -> Result<Draft, BackendError> {
        let key = self.api_key()?;
        let mut messages: Vec<Value> = crate::prompt::messages(req)
            .into_iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        let schemas = req.tools.schemas();
        let mut body = json!({
            "model": self.config.model,
            "messages": messages,
            "stream": true,
            "temperature": self.config.temperature,
            "max_tokens": (req.max_chars * 2).clamp(64, 2048),
        });
        if !schemas.is_empty() {
            body["tools"] = Value::Array(schemas);
        }
        let first = self.stream(&key, &body, deadline, on_token, cancel)?;
        if first.calls.is_empty() {
            return Ok(Draft {
                text: first.text,
                lines: Vec::new(),
            });
        }
        // One round of tools, then the answer that uses their results.
        let mut assistant_calls = Vec::new();
        let mut results = Vec::new();
        for (i, call) in first.calls.iter().enumerate() {
            let id = if call.id.is_empty() {
                format!("call_{i}")
            } else {
                call.id.clone()
            };
            let arguments: Value = serde_json::from_str(if call.arguments.trim().is_empty() {
                "{}"
            } else {
                &call.arguments
            })
            .unwrap_or(json!({}));
            let action = req.tools.run(&ToolCall {
                name: call.name.clone(),
                arguments,
            });
            assistant_calls.push(json!({"id": id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}));
            results
                .push(json!({"role": "tool", "tool_call_id": id, "content": action.result_json()}));
        }
        messages.push(
            json!({"role": "assistant", "content": first.text, "tool_calls": assistant_calls}),
        );
        messages.extend(results);
        body["messages"] = Value::Array(messages);
        if let Some(map) = body.as_object_mut() {
            map.remove("tools");
        }
        let second = self.stream(&key, &body, deadline, on_token, cancel)?;
        Ok(Draft {
            text: format!("{}{}", first.text, second.text),
            lines: Vec::new(),
        })
    }
}

/// The server-sent events of a response body, parsed by `eventsource-stream` (multi-line
/// `data:`, comments, `event:`/`id:` fields, CRLF) and read as it arrives, on this thread.
fn server_sent_events(
    mut body: impl Read,
) -> impl Iterator<Item = Result<Event, EventStreamError<std::io::Error>>> {
    let mut done = false;
    let chunks = std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut buf = vec![0u8; 4096];
        match body.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some(Ok(buf))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Some(Ok(Vec::new())),
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    });
    futures_executor::block_on_stream(futures_util::stream::iter(chunks).eventsource())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_spanning_lines_and_reads_arrive_whole() {
        // One event's data over two lines (joined with a newline), a comment, CRLF endings,
        // an event name, and the body split mid-line across reads.
        let body: &[u8] =
            b": keep-alive\r\ndata: {\"choices\":\r\ndata: [{\"delta\":{\"content\":\"hi\"}}]}\r\n\r\nevent: done\ndata: [DONE]\n\n";
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(7).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let events: Vec<Event> = server_sent_events(Trickle(body))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(
            events[0].data,
            "{\"choices\":\n[{\"delta\":{\"content\":\"hi\"}}]}"
        );
        let chunk: Value = serde_json::from_str(&events[0].data).unwrap();
        assert_eq!(
            chunk.pointer("/choices/0/delta/content"),
            Some(&Value::from("hi"))
        );
        assert_eq!(
            (events[1].event.as_str(), events[1].data.as_str()),
            ("done", "[DONE]")
        );
    }

    #[test]
    fn a_broken_body_is_an_error_not_an_end() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
            }
        }
        let mut events = server_sent_events(Broken);
        assert!(matches!(
            events.next(),
            Some(Err(EventStreamError::Transport(_)))
        ));
    }

    #[test]
    fn urls_are_checked() {
        let ok = |u: &str| {
            CloudConfig {
                base_url: u.into(),
                ..CloudConfig::default()
            }
            .validate()
        };
        assert!(ok("https://dashscope.aliyuncs.com/compatible-mode/v1").is_ok());
        assert!(ok("http://127.0.0.1:8080/v1").is_ok());
        assert!(
            ok("http://api.deepseek.com/v1")
                .unwrap_err()
                .contains("loopback")
        );
        assert!(ok("ftp://x").unwrap_err().contains("https://"));
        assert!(ok("https://").unwrap_err().contains("no host"));
    }
}
