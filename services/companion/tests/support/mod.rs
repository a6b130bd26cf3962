//! Test doubles that speak real protocols: an OpenAI-compatible chat server (HTTP/1.1,
//! chunked `text/event-stream`, the chunk JSON of `/v1/chat/completions`).

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the server answers the next request.
#[derive(Clone, Debug)]
pub enum Script {
    /// Streams these content pieces, then `finish_reason: stop` and `[DONE]`.
    Text(Vec<&'static str>),
    /// Streams one tool call (its arguments in two fragments), `finish_reason: tool_calls`.
    ToolCall {
        name: &'static str,
        arguments: &'static str,
    },
    /// A plain status with headers and a JSON error body.
    Status(u16, Vec<(&'static str, &'static str)>),
    /// Streams these pieces, then an `error` event (what compatible servers send when the
    /// model fails midway).
    ErrorEvent(Vec<&'static str>),
    /// Streams these pieces, then closes the connection without `[DONE]`.
    Drop(Vec<&'static str>),
    /// Accepts and reads the request, never answers.
    Hang,
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub authorization: String,
    pub body: Value,
}

pub struct ChatServer {
    pub base_url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<Script>>>,
}

impl ChatServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let (s, q) = (seen.clone(), script.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let next = q
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or(Script::Text(vec!["(unscripted)"]));
                tokio::spawn(serve(stream, next, s.clone()));
            }
        });
        Self {
            base_url,
            seen,
            script,
        }
    }

    pub fn then(&self, step: Script) -> &Self {
        self.script.lock().unwrap().push_back(step);
        self
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<(String, Value)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        })
    };
    let length: usize = header("content-length")?.parse().ok()?;
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[header_end..header_end + length]).ok()?;
    Some((header("authorization").unwrap_or_default(), body))
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let event = json!({
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1_764_000_000, "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    format!("data: {event}\n\n")
}

async fn send_chunked(stream: &mut TcpStream, data: &str) -> std::io::Result<()> {
    stream
        .write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes())
        .await?;
    stream.flush().await
}

async fn serve(mut stream: TcpStream, script: Script, seen: Arc<Mutex<Vec<Seen>>>) {
    let Some((authorization, body)) = read_request(&mut stream).await else {
        return;
    };
    seen.lock().unwrap().push(Seen {
        authorization,
        body,
    });
    let sse_head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let pieces = |pieces: &[&str]| -> Vec<String> {
        let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
        events.extend(pieces.iter().map(|p| chunk(json!({"content": p}), None)));
        events
    };
    let _ = async {
        match script {
            Script::Text(texts) => {
                stream.write_all(sse_head.as_bytes()).await?;
                for event in pieces(&texts) {
                    send_chunked(&mut stream, &event).await?;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                send_chunked(&mut stream, &chunk(json!({}), Some("stop"))).await?;
                send_chunked(&mut stream, "data: [DONE]\n\n").await?;
                stream.write_all(b"0\r\n\r\n").await?;
            }
            Script::ToolCall { name, arguments } => {
                stream.write_all(sse_head.as_bytes()).await?;
                let (a, b) = arguments.split_at(arguments.len() / 2);
                let events = [
                    chunk(json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": "call_abc", "type": "function", "function": {"name": name, "arguments": ""}}]}), None),
                    chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}), None),
                    chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": b}}]}), None),
                    chunk(json!({}), Some("tool_calls")),
                    "data: [DONE]\n\n".to_string(),
                ];
                for event in events {
                    send_chunked(&mut stream, &event).await?;
                }
                stream.write_all(b"0\r\n\r\n").await?;
            }
            Script::Status(code, headers) => {
                let body = json!({"error": {"message": format!("status {code} from the test server"), "type": "test", "code": code}}).to_string();
                let mut head = format!("HTTP/1.1 {code} Test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(body.as_bytes()).await?;
            }
            Script::ErrorEvent(texts) => {
                stream.write_all(sse_head.as_bytes()).await?;
                for event in pieces(&texts) {
                    send_chunked(&mut stream, &event).await?;
                }
                let error = json!({"error": {"message": "the model crashed", "type": "server_error", "code": 500}});
                send_chunked(&mut stream, &format!("data: {error}\n\n")).await?;
                send_chunked(&mut stream, "data: [DONE]\n\n").await?;
                stream.write_all(b"0\r\n\r\n").await?;
            }
            Script::Drop(texts) => {
                stream.write_all(sse_head.as_bytes()).await?;
                for event in pieces(&texts) {
                    send_chunked(&mut stream, &event).await?;
                }
                // Connection lost: no terminating chunk, no [DONE].
            }
            Script::Hang => {
                tokio::time::sleep(Duration::from_secs(120)).await;
            }
        }
        stream.flush().await?;
        stream.shutdown().await
    }
    .await;
}
