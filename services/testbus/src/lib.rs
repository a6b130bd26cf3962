//! A private `dbus-daemon` for one test.
//!
//! Each [`TestBus`] gets its own temp dir, config and socket, so tests run in parallel
//! without seeing each other; the daemon is killed and the dir removed on drop.
//!
//! Architecture invariant: for tests and the desktop simulator only; no service that runs
//! on a head unit links it (they get their bus from `cabin_common::bus`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestBus {
    daemon: Child,
    address: String,
    dir: tempfile::TempDir,
}

/// What to put into the daemon's config besides the permissive defaults.
#[derive(Default)]
pub struct TestBusOptions {
    /// Directories of `.service` files for bus activation.
    pub service_dirs: Vec<PathBuf>,
    /// Replaces the allow-everything policy (e.g. to test shipped policy files).
    pub policy_xml: Option<String>,
}

impl TestBus {
    /// Starts a daemon that allows everything.
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(TestBusOptions::default())
    }

    pub fn start_with(options: TestBusOptions) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("cabin-bus-").tempdir()?;
        let socket = dir.path().join("bus");
        let service_dirs: String = options
            .service_dirs
            .iter()
            .map(|d| {
                format!(
                    "  <servicedir>{}</servicedir>\n",
                    xml_escape(&d.display().to_string())
                )
            })
            .collect();
        let policy = options.policy_xml.unwrap_or_else(|| {
            "  <policy context=\"default\">\n    <allow send_destination=\"*\" eavesdrop=\"true\"/>\n    \
             <allow eavesdrop=\"true\"/>\n    <allow own=\"*\"/>\n  </policy>\n"
                .to_string()
        });
        let config = format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
             \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig>\n  \
             <type>session</type>\n  <listen>unix:path={}</listen>\n  <auth>EXTERNAL</auth>\n{service_dirs}{policy}</busconfig>\n",
            xml_escape(&socket.display().to_string()),
        );
        let config_path = dir.path().join("bus.conf");
        std::fs::write(&config_path, config)?;

        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config_path.display()))
            .args(["--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Its warnings (e.g. that it cannot raise the fd limit) go to a log beside the bus.
            .stderr(std::fs::File::create(dir.path().join("daemon.log"))?)
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start dbus-daemon: {e}")))?;
        let stdout = daemon.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let address = line.trim().to_string();
        if address.is_empty() {
            let _ = daemon.kill();
            let _ = daemon.wait();
            return Err(std::io::Error::other("dbus-daemon printed no address"));
        }
        wait_for(&socket, Duration::from_secs(10))?;
        Ok(Self {
            daemon,
            address,
            dir,
        })
    }

    /// The address to hand to services (`--bus ADDRESS`) and clients.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A scratch dir that lives as long as the bus (state dirs, configs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh client connection.
    /// Runs `busctl --address=<this bus> ARGS...`, an independent client, to completion.
    pub fn busctl(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args(args)
            .output()
    }

    pub async fn connect(&self) -> zbus::Result<zbus::Connection> {
        zbus::connection::Builder::address(self.address.as_str())
            .build()
            .await
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

fn wait_for(path: &Path, timeout: Duration) -> std::io::Result<()> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > timeout {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("bus socket {} did not appear", path.display()),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Polls `check` until it is true or `timeout` passes; for waiting on bus side effects.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_buses_are_independent_and_cleaned_up() {
        let a = TestBus::start().unwrap();
        let b = TestBus::start().unwrap();
        assert_ne!(a.address(), b.address());
        let dir = a.dir().to_path_buf();
        let pid = a.daemon.id();
        drop(a);
        assert!(!dir.exists());
        assert!(!Path::new(&format!("/proc/{pid}")).exists() || is_zombie_free(pid));
        drop(b);
    }

    fn is_zombie_free(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| !s.contains(" Z "))
    }
}

/// The members of interface `name` in introspection `xml`, one canonical line each
/// (`method Update(in changes a{sv})`, `property Speed d readwrite`, ...), sorted.
/// Comments, order and whitespace do not matter, so a committed contract file can carry
/// documentation and still be compared with what a live object exports.
pub fn interface_members(xml: &str, name: &str) -> Vec<String> {
    let xml = strip_comments(xml);
    let open = format!("<interface name=\"{name}\"");
    let Some(start) = xml.find(&open) else {
        return Vec::new();
    };
    let body = &xml[start..];
    let body = &body[..body.find("</interface>").unwrap_or(body.len())];

    let mut members = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for tag in body.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or("").trim();
        let closing = tag.starts_with('/');
        let self_closing = tag.ends_with('/');
        let kind = tag
            .trim_start_matches('/')
            .split_whitespace()
            .next()
            .unwrap_or("");
        let attr = |key: &str| attribute(tag, key).unwrap_or_default();
        match (kind, closing) {
            ("method" | "signal", false) => {
                let head = format!("{kind} {}", attr("name"));
                if self_closing {
                    members.push(format!("{head}()"));
                } else {
                    current = Some((head, Vec::new()));
                }
            }
            ("method" | "signal", true) => {
                if let Some((head, args)) = current.take() {
                    members.push(format!("{head}({})", args.join(", ")));
                }
            }
            ("arg", false) => {
                if let Some((head, args)) = current.as_mut() {
                    let default_dir = if head.starts_with("signal") {
                        "out"
                    } else {
                        "in"
                    };
                    let dir = attribute(tag, "direction").unwrap_or_else(|| default_dir.into());
                    args.push(
                        format!("{dir} {} {}", attr("name"), attr("type")).replace("  ", " "),
                    );
                }
            }
            ("property", false) => members.push(format!(
                "property {} {} {}",
                attr("name"),
                attr("type"),
                attr("access")
            )),
            ("annotation", false) => {
                let owner = current.as_ref().map(|(h, _)| h.clone()).unwrap_or_default();
                members.push(format!(
                    "annotation {owner} {}={}",
                    attr("name"),
                    attr("value")
                ))
            }
            _ => {}
        }
    }
    members.sort();
    members
}

fn strip_comments(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .find("-->")
            .map_or("", |end| &rest[start + end + 3..]);
    }
    out.push_str(rest);
    out
}

fn attribute(tag: &str, key: &str) -> Option<String> {
    let needle = format!("{key}=\"");
    let start = tag.find(&needle)? + needle.len();
    let len = tag[start..].find('"')?;
    Some(tag[start..start + len].to_string())
}

/// Introspects `path` on `service` over `conn`.
pub async fn introspect(
    conn: &zbus::Connection,
    service: &str,
    path: &str,
) -> zbus::Result<String> {
    let proxy = zbus::fdo::IntrospectableProxy::builder(conn)
        .destination(service.to_string())
        .path(path.to_string())
        .build()
        .await?;
    Ok(proxy.introspect().await?)
}

#[cfg(test)]
mod xml_tests {
    use super::interface_members;

    #[test]
    fn members_ignore_comments_order_and_spacing() {
        let a = r#"<node><interface name="x.Y"><!-- hi <method name="Fake"/> -->
            <property name="B" type="s" access="read"/>
            <method name="M"><arg name="a" type="s" direction="in"/><arg type="u" direction="out"/></method>
            <signal name="S"><arg name="v" type="d"/></signal></interface>
            <interface name="x.Other"><method name="Z"/></interface></node>"#;
        let b = r#"<node><interface name="x.Y"><signal name="S"><arg name="v" type="d"/></signal>
            <method name="M"><arg type="s" name="a"/><arg type="u" direction="out"/></method>
            <property access="read" name="B" type="s"/></interface></node>"#;
        assert_eq!(interface_members(a, "x.Y"), interface_members(b, "x.Y"));
        assert_eq!(
            interface_members(a, "x.Y"),
            [
                "method M(in a s, out u)",
                "property B s read",
                "signal S(out v d)"
            ]
        );
        assert!(interface_members(a, "x.Missing").is_empty());
    }
}

/// A service binary started by a test; killed on drop.
pub struct ServiceProcess {
    child: std::process::Child,
}

impl ServiceProcess {
    /// Starts `binary` with `args` (typically `--bus ADDRESS ...`), output to the test log.
    pub fn spawn(binary: &str, args: &[&str]) -> std::io::Result<Self> {
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start {binary}: {e}")))?;
        Ok(Self { child })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it exited already (crashed, refused to start).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `name` has an owner on the bus of `conn`.
pub async fn wait_for_name(conn: &zbus::Connection, name: &str, timeout: Duration) -> bool {
    let Ok(dbus) = zbus::fdo::DBusProxy::new(conn).await else {
        return false;
    };
    let Ok(name) = zbus::names::BusName::try_from(name.to_string()) else {
        return false;
    };
    eventually(timeout, || {
        let dbus = dbus.clone();
        let name = name.clone();
        async move { dbus.name_has_owner(name).await.unwrap_or(false) }
    })
    .await
}
