//! `org.cabin.Feedback1` against a private dbus-daemon, cabin-feedbackd as its own process,
//! uploading to the reference collector over real HTTP: the live contract, submit → redact →
//! summary → consent → upload → fleet view, an independent client (busctl), named errors,
//! and the server fault matrix (429 + Retry-After, 503 storm, connection reset, slow server,
//! 400) through a fault-injecting HTTP proxy in front of the collector.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cabin_feedback::daemon::{BUS_NAME, INTERFACE, INTROSPECTION_XML, OBJECT_PATH};
use cabin_testbus::{TestBus, eventually, interface_members, introspect};
use futures_util::StreamExt;
use support::*;
use zbus::Variant;

fn config(url: &str, consent: bool) -> String {
    format!(
        "upload_url = {url:?}\nconsent_default = {consent}\nbatch_delay_ms = 0\nbackoff_initial_ms = 50\nbackoff_max_secs = 1\ntimeout_secs = 2\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_summarise_and_upload_with_consent_only() {
    let bus = TestBus::start().unwrap();
    let conn = bus.connect().await.unwrap();
    let collector = Collector::start().await;
    let mut daemon = Daemon::new(&config(&collector.url, false));
    daemon.spawn(&bus, &conn).await;
    let fb = proxy(&conn).await;

    // The live export is the committed contract.
    let xml = introspect(&conn, BUS_NAME, OBJECT_PATH).await.unwrap();
    assert_eq!(
        interface_members(&xml, INTERFACE),
        interface_members(INTROSPECTION_XML, INTERFACE)
    );
    assert!(!interface_members(INTROSPECTION_XML, INTERFACE).is_empty());

    // Submit: redacted before it is stored.
    let id = fb
        .submit(
            "voice",
            "导航老是卡顿，回电13912345678，车牌粤B12345",
            meta(&[
                ("rating", Variant::from(2u32)),
                ("locale", Variant::from("zh-CN")),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(id.len(), 36);
    fb.submit("hmi", "the navigation keeps freezing", meta(&[]))
        .await
        .unwrap();
    fb.submit(
        "app",
        "navigation map lags and freezes",
        meta(&[("time", Variant::from("2026-11-29T20:00:00+08:00"))]),
    )
    .await
    .unwrap();

    // An import through a file descriptor: JSON Lines and CSV.
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("reviews.jsonl");
    std::fs::write(
        &jsonl,
        "{\"text\":\"座椅加热不工作\",\"channel\":\"dealer\",\"rating\":1}\n{\"text\":\"the seat heater does not work, mail me at a.b@example.com\"}\n",
    )
    .unwrap();
    let f = std::fs::File::open(&jsonl).unwrap();
    assert_eq!(fb.import(zbus::Fd::from(&f), "jsonl").await.unwrap(), 2);
    let csv = dir.path().join("notes.csv");
    std::fs::write(
        &csv,
        "text,channel\n\"seat heating stays cold\",call-center\n",
    )
    .unwrap();
    let f = std::fs::File::open(&csv).unwrap();
    assert_eq!(fb.import(zbus::Fd::from(&f), "csv").await.unwrap(), 1);
    assert_eq!(fb.pending().await.unwrap(), 6);

    // Local summary works without consent.
    let json: serde_json::Value =
        serde_json::from_str(&fb.summary(0, 0, meta(&[])).await.unwrap()).unwrap();
    assert_eq!(json["items"], 6);
    let problems = json["problems"].as_array().unwrap();
    assert!(problems.len() >= 2, "{json}");
    assert!(
        problems.iter().all(|p| p["count"].as_u64().unwrap() >= 2),
        "{json}"
    );
    let all = json.to_string();
    assert!(!all.contains("13912345678") && !all.contains("a.b@example.com"));

    // No consent: nothing has left the car in all the time the items above took to submit,
    // import and summarise, and Flush says why rather than sending.
    let err = fb.flush().await.unwrap_err();
    assert_eq!(error_name(&err), "org.cabin.Error.PermissionDenied");
    assert!(collector.item_counts().await.is_empty());
    assert_eq!(fb.uploaded().await.unwrap(), 0);
    assert_eq!(fb.pending().await.unwrap(), 6);

    // Consent on: everything arrives, once, redacted.
    let mut uploaded = fb.receive_batch_uploaded().await.unwrap();
    fb.set_consent(true).await.unwrap();
    let signal = tokio::time::timeout(WAIT, uploaded.next())
        .await
        .expect("BatchUploaded")
        .unwrap();
    let args = signal.args().unwrap();
    assert_eq!(args.batch_id.len(), 36);
    assert!(
        eventually(WAIT, || async { fb.pending().await.unwrap() == 0 }).await,
        "pending never drained"
    );
    assert_eq!(fb.uploaded().await.unwrap(), 6);
    assert!(fb.last_upload().await.unwrap() > 0);
    assert_eq!(fb.last_error().await.unwrap(), "");
    let counts = collector.item_counts().await;
    assert_eq!(counts.len(), 6);
    assert!(counts.contains_key(&id) && counts.values().all(|&n| n == 1));
    let texts = collector.texts().await.join("\n");
    assert!(texts.contains("[PHONE]") && texts.contains("[PLATE]") && texts.contains("[EMAIL]"));
    assert!(!texts.contains("13912345678") && !texts.contains("粤B12345"));
    let fleet = collector.fleet().await;
    assert_eq!(fleet["vehicles"], 1);
    assert!(fleet["problems"].as_array().unwrap().len() >= 2, "{fleet}");

    // An independent client: busctl.
    let out = bus
        .busctl(&[
            "call",
            BUS_NAME,
            OBJECT_PATH,
            INTERFACE,
            "Submit",
            "ssa{sv}",
            "dealer",
            "brake pedal feels soft",
            "1",
            "rating",
            "u",
            "2",
        ])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("s \""));
    let out = bus
        .busctl(&["get-property", BUS_NAME, OBJECT_PATH, INTERFACE, "Consent"])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "b true");

    // Consent and counters survive a hard kill.
    assert!(eventually(WAIT, || async { fb.pending().await.unwrap() == 0 }).await);
    daemon.kill();
    daemon.spawn(&bus, &conn).await;
    let fb = proxy(&conn).await;
    assert!(fb.consent().await.unwrap());
    assert_eq!(fb.uploaded().await.unwrap(), 7);
    assert_eq!(collector.item_counts().await.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_named_errors_and_loses_nothing() {
    let bus = TestBus::start().unwrap();
    let conn = bus.connect().await.unwrap();
    let mut daemon = Daemon::new("consent_default = true\n");
    daemon.spawn(&bus, &conn).await;
    let fb = proxy(&conn).await;
    fb.submit("app", "keep me", meta(&[])).await.unwrap();

    let invalid = "org.cabin.Error.InvalidArgument";
    let huge = "慢".repeat(5000);
    type Meta = Vec<(&'static str, Variant<'static>)>;
    let cases: Vec<(&str, &str, Meta, &str)> = vec![
        ("fax", "text", vec![], "unknown channel"),
        ("app", "   ", vec![], "empty"),
        ("app", &huge, vec![], "limit"),
        ("app", "t", vec![("rating", Variant::from(9u32))], "rating"),
        (
            "app",
            "t",
            vec![("rating", Variant::from("five"))],
            "rating",
        ),
        ("app", "t", vec![("mood", Variant::from(1u32))], "mood"),
        (
            "app",
            "t",
            vec![("locale", Variant::from("not a locale!"))],
            "locale",
        ),
        (
            "app",
            "t",
            vec![("time", Variant::from("yesterday"))],
            "RFC 3339",
        ),
    ];
    for (channel, text, m, expect) in cases {
        let err = fb.submit(channel, text, meta(&m)).await.unwrap_err();
        assert_eq!(error_name(&err), invalid, "{channel} {expect}");
        assert!(
            err.to_string().contains(expect),
            "{err} should say {expect}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let bad_rows = dir.path().join("bad.jsonl");
    std::fs::write(&bad_rows, "{\"text\":\"fine\"}\nnot json at all\n").unwrap();
    let f = std::fs::File::open(&bad_rows).unwrap();
    let err = fb.import(zbus::Fd::from(&f), "jsonl").await.unwrap_err();
    assert_eq!(error_name(&err), invalid);
    assert!(err.to_string().contains("line 2"), "{err}");
    let f = std::fs::File::open(&bad_rows).unwrap();
    let err = fb.import(zbus::Fd::from(&f), "xlsx").await.unwrap_err();
    assert!(err.to_string().contains("xlsx"), "{err}");
    let binary = dir.path().join("x.bin");
    std::fs::write(&binary, [0xffu8, 0xfe, 0, 1]).unwrap();
    let f = std::fs::File::open(&binary).unwrap();
    assert_eq!(
        error_name(&fb.import(zbus::Fd::from(&f), "csv").await.unwrap_err()),
        invalid
    );
    let err = fb.summary(10, 5, meta(&[])).await.unwrap_err();
    assert_eq!(error_name(&err), invalid);
    let err = fb
        .summary(0, 0, meta(&[("channels", Variant::from(vec!["fax"]))]))
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), invalid);
    // No upload URL: Flush says so.
    let err = fb.flush().await.unwrap_err();
    assert_eq!(error_name(&err), "org.cabin.Error.Unavailable");

    // Nothing was lost or half-stored, and the service is still there.
    assert_eq!(fb.pending().await.unwrap(), 1);
    assert!(daemon.process.as_mut().unwrap().exited().is_none());
}

#[test]
fn a_bad_upload_url_is_refused_at_start() {
    let bus = TestBus::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["--bus", bus.address(), "--state-dir"])
        .arg(dir.path())
        .args(["--upload-url", "http://collector.example.com/v1/feedback"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
}

/// What the fault proxy does with the next request.
#[derive(Debug, Clone)]
enum Fault {
    Status(u16, Option<&'static str>),
    Reset,
    Slow(Duration),
    Forward,
}

/// A plain HTTP/1.1 proxy in front of the collector that plays a script of faults, then
/// forwards; it records when each request came.
struct FaultProxy {
    url: String,
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
}

/// Where the head ends and how long the body is, once the head is complete.
fn split_head(buf: &[u8]) -> Option<(usize, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    Some((end + 4, len))
}

fn read_request(stream: &mut impl Read) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some((body, len)) = split_head(&buf)
            && buf.len() >= body + len
        {
            return Some(buf);
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn forward(request: &[u8], upstream: std::net::SocketAddr) -> Vec<u8> {
    let mut up = TcpStream::connect(upstream).unwrap();
    up.write_all(request).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some((body, len)) = split_head(&buf)
            && buf.len() >= body + len
        {
            // One request per connection: tell the client so.
            let status_end = buf.windows(2).position(|w| w == b"\r\n").unwrap();
            let mut out = buf[..status_end + 2].to_vec();
            out.extend_from_slice(b"connection: close\r\n");
            out.extend_from_slice(&buf[status_end + 2..body + len]);
            return out;
        }
        let n = up.read(&mut chunk).unwrap();
        assert!(n > 0, "collector closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
}

impl FaultProxy {
    fn start(upstream: std::net::SocketAddr, script: Vec<Fault>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/feedback", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&mut stream) else {
                    continue;
                };
                let key = String::from_utf8_lossy(&request)
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("idempotency-key:")
                            .map(|v| v.trim().to_string())
                    })
                    .unwrap_or_default();
                log.lock().unwrap().push((Instant::now(), key));
                match script.next().unwrap_or(Fault::Forward) {
                    Fault::Status(code, retry_after) => {
                        let extra = retry_after
                            .map(|r| format!("retry-after: {r}\r\n"))
                            .unwrap_or_default();
                        let body = "fault injected";
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {code} Fault\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Fault::Reset => {
                        // SO_LINGER 0: close sends RST, not FIN.
                        let linger = libc::linger {
                            l_onoff: 1,
                            l_linger: 0,
                        };
                        unsafe {
                            libc::setsockopt(
                                std::os::fd::AsRawFd::as_raw_fd(&stream),
                                libc::SOL_SOCKET,
                                libc::SO_LINGER,
                                (&linger as *const libc::linger).cast(),
                                std::mem::size_of::<libc::linger>() as libc::socklen_t,
                            );
                        }
                        drop(stream);
                    }
                    Fault::Slow(delay) => {
                        std::thread::sleep(delay);
                        let _ = stream.write_all(&forward(&request, upstream));
                    }
                    Fault::Forward => {
                        let _ = stream.write_all(&forward(&request, upstream));
                    }
                }
            }
        });
        Self { url, seen }
    }

    fn requests(&self) -> Vec<(Instant, String)> {
        self.seen.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_delivers_good_batches_and_sets_bad_ones_aside() {
    let collector = Collector::start().await;
    let script = vec![
        Fault::Status(429, Some("1")),
        Fault::Status(503, None),
        Fault::Status(503, None),
        Fault::Status(503, None),
        Fault::Status(503, None),
        Fault::Reset,
        Fault::Slow(Duration::from_secs(3)), // past the 2 s timeout: retried
        Fault::Slow(Duration::from_millis(500)), // slow but in time: delivered
        Fault::Status(400, None),
        Fault::Forward,
    ];
    let faults = FaultProxy::start(collector.addr, script);
    let bus = TestBus::start().unwrap();
    let conn = bus.connect().await.unwrap();
    // Consent comes after the submits, so the batches are exactly [0 1] [2 3] [4 5].
    let mut toml = config(&faults.url, false);
    toml.push_str("[outbox]\nmax_batch_items = 2\n");
    let mut daemon = Daemon::new(&toml);
    daemon.spawn(&bus, &conn).await;
    let fb = proxy(&conn).await;
    let mut failures = fb.receive_upload_failed().await.unwrap();

    let mut ids = Vec::new();
    for k in 0..6 {
        ids.push(
            fb.submit("hmi", &format!("screen freezes, case {k}"), meta(&[]))
                .await
                .unwrap(),
        );
    }
    fb.set_consent(true).await.unwrap();
    // Three batches of two; the 400 sets one aside, the other two arrive.
    assert!(
        eventually(Duration::from_secs(60), || async {
            fb.pending().await.unwrap() == 0
        })
        .await,
        "pending never drained; last error {:?}",
        fb.last_error().await
    );
    let counts = collector.item_counts().await;
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1));
    assert_eq!(fb.uploaded().await.unwrap(), 4);

    let seen = faults.requests();
    assert_eq!(seen.len(), 10, "{seen:?}");
    // Retry-After: 1 was honoured.
    assert!(seen[1].0 - seen[0].0 >= Duration::from_millis(950));
    // Every retry of a batch reused its id (idempotency key).
    assert!(seen[..8].iter().all(|(_, k)| k == &seen[0].1));
    assert_ne!(seen[9].1, seen[8].1, "a 400 must not be retried");
    let rejected = daemon.state.join("rejected");
    let aside: Vec<_> = std::fs::read_dir(&rejected).unwrap().collect();
    assert_eq!(aside.len(), 2, "batch + reason in {}", rejected.display());
    let mut reasons = Vec::new();
    while let Ok(Some(s)) = tokio::time::timeout(Duration::from_millis(200), failures.next()).await
    {
        reasons.push(s.args().unwrap().reason.to_string());
    }
    assert!(reasons.iter().any(|r| r.contains("429")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("503")), "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("set aside") && r.contains("400")),
        "{reasons:?}"
    );
}

/// A development CA and a server certificate for localhost/127.0.0.1, made with openssl.
fn make_certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=cabin test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

/// TLS in front of the collector (rustls): what a maker's HTTPS endpoint looks like.
fn start_tls_front(dir: &std::path::Path, upstream: std::net::SocketAddr) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                if let Some(request) = read_request(&mut tls) {
                    let _ = tls.write_all(&forward(&request, upstream));
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_go_over_https_trusting_only_the_configured_ca() {
    let collector = Collector::start().await;
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let port = start_tls_front(certs.path(), collector.addr);
    let url = format!("https://localhost:{port}/v1/feedback");
    let bus = TestBus::start().unwrap();
    let conn = bus.connect().await.unwrap();

    // Without the maker's CA the certificate is not trusted: nothing is sent, it says why.
    let mut untrusting = Daemon::new(&config(&url, true));
    untrusting.spawn(&bus, &conn).await;
    let fb = proxy(&conn).await;
    fb.submit("app", "the app cannot unlock the car", meta(&[]))
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || async {
            !fb.last_error().await.unwrap().is_empty()
        })
        .await,
        "no error reported"
    );
    let error = fb.last_error().await.unwrap().to_lowercase();
    assert!(
        error.contains("certificate") || error.contains("issuer"),
        "{error}"
    );
    assert!(collector.item_counts().await.is_empty());
    untrusting.kill();

    // With it: delivered.
    let mut toml = config(&url, true);
    toml.push_str(&format!(
        "ca_file = {:?}\n",
        certs.path().join("ca.pem").display().to_string()
    ));
    let mut trusting = Daemon::new(&toml);
    trusting.spawn(&bus, &conn).await;
    let fb = proxy(&conn).await;
    let id = fb
        .submit("app", "the app cannot unlock the car", meta(&[]))
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || async { fb.pending().await.unwrap() == 0 }).await,
        "not delivered: {:?}",
        fb.last_error().await
    );
    assert_eq!(collector.item_counts().await.get(&id), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_resume_by_themselves_when_the_collector_comes_back() {
    // A port with nobody behind it yet: the car is "offline". The socket holds the port
    // (bound, not listening, so connections are refused) until the collector takes it over.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    let bus = TestBus::start().unwrap();
    let conn = bus.connect().await.unwrap();
    let mut daemon = Daemon::new(&config(
        &format!("http://127.0.0.1:{port}/v1/feedback"),
        true,
    ));
    daemon.spawn(&bus, &conn).await;
    let fb = proxy(&conn).await;
    let id = fb
        .submit("voice", "the wipers squeak", meta(&[]))
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || async {
            fb.last_error().await.unwrap().contains("cannot reach")
        })
        .await
    );
    assert_eq!(fb.pending().await.unwrap(), 1);

    // The network is back: no Flush, no restart.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let listener = socket.listen(1024).unwrap();
    tokio::spawn(cabin_collector::serve(
        listener,
        std::sync::Arc::new(
            cabin_collector::Store::open(&db.display().to_string())
                .await
                .unwrap(),
        ),
        std::future::pending(),
    ));
    assert!(
        eventually(WAIT, || async { fb.pending().await.unwrap() == 0 }).await,
        "never resumed: {:?}",
        fb.last_error().await
    );
    assert_eq!(fb.last_error().await.unwrap(), "");
    let counts = cabin_collector::Store::open(&db.display().to_string())
        .await
        .unwrap()
        .item_counts()
        .await
        .unwrap();
    assert_eq!(counts.get(&id), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_cli_submits_imports_and_summarises() {
    const CLI: &str = env!("CARGO_BIN_EXE_cabin-feedback");
    let bus = TestBus::start().unwrap();
    let conn = bus.connect().await.unwrap();
    let mut daemon = Daemon::new("consent_default = false\n");
    daemon.spawn(&bus, &conn).await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(CLI)
            .arg("--bus")
            .arg(bus.address())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, id, err) = run(&[
        "submit",
        "--channel",
        "dealer",
        "--rating",
        "2",
        "车机屏幕经常卡死",
    ]);
    assert!(ok, "{err}");
    assert_eq!(id.trim().len(), 36);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("service-notes.csv");
    std::fs::write(&csv, "text,channel,rating\n中控屏卡顿严重,dealer,1\n\"the centre screen freezes, again\",call-center,2\n").unwrap();
    let (ok, count, err) = run(&["import", csv.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(count.trim(), "2");
    let (ok, json, err) = run(&["summary", "--quotes", "2"]);
    assert!(ok, "{err}");
    let summary: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(summary["items"], 3);
    assert_eq!(summary["problems"][0]["count"], 3, "{summary}");
    let (ok, _, err) = run(&["consent", "on"]);
    assert!(ok, "{err}");
    let (ok, status, err) = run(&["status"]);
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["consent"], true);
    assert_eq!(status["pending"], 3);
    // Errors reach the operator by name, with a non-zero exit.
    let (ok, _, err) = run(&["submit", "--channel", "fax", "x"]);
    assert!(!ok);
    assert!(
        err.contains("org.cabin.Error.InvalidArgument") && err.contains("fax"),
        "{err}"
    );
    let (ok, _, err) = run(&["flush"]);
    assert!(!ok && err.contains("org.cabin.Error.Unavailable"), "{err}");
}
