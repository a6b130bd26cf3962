//! `cabin-sim` started as a user starts it, and a minimal Chrome DevTools Protocol client
//! over `--remote-debugging-pipe` (NUL-separated JSON on fds 3 and 4).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub struct Sim {
    pub child: Child,
    pub url: String,
    pub bus: String,
    pub state: tempfile::TempDir,
}

impl Sim {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let state = tempfile::tempdir().unwrap();
        let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../onnx/fixtures/tiny-sd");
        let mut child = Command::new(env!("CARGO_BIN_EXE_cabin-sim"))
            .args(["--port", "0", "--collector-port", "0", "--state-dir"])
            .arg(state.path())
            .arg("--model")
            .arg(&model)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut url, mut bus) = (String::new(), String::new());
        while url.is_empty() {
            let line = rx
                .recv_timeout(Duration::from_secs(120))
                .expect("cabin-sim prints its cockpit address");
            if let Some(rest) = line.strip_prefix("cabin-sim: private bus at ") {
                bus = rest.to_string();
            }
            if let Some(rest) = line.strip_prefix("cabin-sim: cockpit at ") {
                url = rest.to_string();
            }
        }
        Self {
            child,
            url,
            bus,
            state,
        }
    }

    pub fn get(&self, path: &str) -> Value {
        let mut r = ureq::get(format!("{}{path}", self.url)).call().unwrap();
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// (status, body)
    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut r = agent
            .post(format!("{}{path}", self.url))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .unwrap();
        let status = r.status().as_u16();
        (
            status,
            serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap_or(Value::Null),
        )
    }

    /// Until all four services run.
    pub fn wait_for_services(&self) {
        wait_for("all four services", Duration::from_secs(60), || {
            self.get("/api/state")["services"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["running"] == true)
                .count()
                == 4
        });
    }

    pub fn service(&self, name: &str) -> Value {
        let state = self.get("/api/state");
        state["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

pub fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Debian's chromium, or what `CABIN_CHROMIUM` names.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CABIN_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

pub struct Browser {
    child: Child,
    to_browser: std::fs::File,
    from_browser: BufReader<std::fs::File>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds we then own.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2");
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    pub fn launch(binary: &PathBuf) -> Self {
        use std::os::fd::AsRawFd;
        let profile = tempfile::tempdir().unwrap();
        let (cmd_read, cmd_write) = pipe();
        let (resp_read, resp_write) = pipe();
        let (cr, rw) = (cmd_read.as_raw_fd(), resp_write.as_raw_fd());
        let mut command = Command::new(binary);
        command
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-pipe",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // Out of the way first (the pipe may already sit on 3 or 4), then into place,
                // open across exec.
                let (a, b) = (
                    libc::fcntl(cr, libc::F_DUPFD, 10),
                    libc::fcntl(rw, libc::F_DUPFD, 10),
                );
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 || libc::fcntl(4, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("chromium starts");
        drop(cmd_read);
        drop(resp_write);
        let mut browser = Self {
            child,
            to_browser: std::fs::File::from(cmd_write),
            from_browser: BufReader::new(std::fs::File::from(resp_read)),
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser.command("Target.createTarget", json!({"url": "about:blank"}), false);
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = browser.command(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
            false,
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser.command("Page.enable", json!({}), true);
        browser
    }

    /// Sends a command and waits for its answer (events in between are skipped).
    pub fn command(&mut self, method: &str, params: Value, in_page: bool) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if in_page {
            message["sessionId"] = json!(self.session);
        }
        self.to_browser
            .write_all(message.to_string().as_bytes())
            .unwrap();
        self.to_browser.write_all(b"\0").unwrap();
        loop {
            let mut raw = Vec::new();
            self.from_browser.read_until(0, &mut raw).unwrap();
            assert!(!raw.is_empty(), "chromium closed the pipe");
            raw.pop();
            let reply: Value = serde_json::from_slice(&raw).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {}", reply["error"]);
                return reply["result"].clone();
            }
        }
    }

    pub fn goto(&mut self, url: &str) {
        self.command("Page.navigate", json!({"url": url}), true);
    }

    /// Evaluates JavaScript in the page; its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.command(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            true,
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    pub fn wait_until(&mut self, what: &str, timeout: Duration, expression: &str) {
        let start = Instant::now();
        loop {
            if self.eval(expression) == json!(true) {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what} ({expression})"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn screenshot(&mut self, path: &std::path::Path) {
        use base64_decode as decode;
        let shot = self.command("Page.captureScreenshot", json!({"format": "png"}), true);
        let bytes = decode(shot["data"].as_str().unwrap());
        std::fs::write(path, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (what CDP sends screenshots in).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter_map(value) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

pub fn read_all(mut r: impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}
