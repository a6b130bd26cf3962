//! Shared by the collector's integration tests; not every test uses every part.
#![allow(dead_code)]

pub mod postgres;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The collector binary, serving until dropped (or killed).
pub struct Collector {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Collector {
    /// Starts `cabin-collector --db DB --listen LISTEN` and waits for its first line.
    pub fn start(db: &str, listen: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cabin-collector"))
            .args(["--listen", listen, "--db", db])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Self { child, base }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}
