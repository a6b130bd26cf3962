//! One trait for every way of producing a reply, and the chain that tries them in order
//! with a deadline each (cars drive into tunnels).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cabin_common::error::names;
use cabin_common::vehicle::VehicleState;

use crate::care::Care;
use crate::memory::Memory;
use crate::mood::MoodReading;
use crate::persona::Card;
use crate::tools::ToolBox;

/// Everything a backend may use for one reply.
pub struct Request<'a> {
    pub card: &'a Card,
    /// `zh` or `en`.
    pub lang: &'a str,
    pub text: &'a str,
    /// The user's name, or a friendly fallback in `lang`.
    pub user: String,
    pub memory: &'a Memory,
    pub mood: MoodReading,
    pub care: Care,
    pub vehicle: &'a VehicleState,
    /// Lorebook entries that fired, in insertion order.
    pub lore: Vec<Lore>,
    pub max_chars: usize,
    pub seed: u64,
    pub tools: &'a ToolBox<'a>,
}

/// A lorebook entry that fired. Constant entries are context for an LM, not lines to say.
#[derive(Debug, Clone)]
pub struct Lore {
    pub content: String,
    pub constant: bool,
}

/// A reply before the driving policy shapes it.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    pub text: String,
    /// Corpus lines used (offline engine), so they are not repeated soon.
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum BackendError {
    #[error("{0}")]
    Unavailable(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the service refused the credentials: {0}")]
    Unauthorized(String),
    #[error("rate limited{}", .retry_after.map(|d| format!(", retry after {d:?}")).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("server error: {0}")]
    Server(String),
    #[error("broken answer: {0}")]
    Protocol(String),
    #[error("cancelled")]
    Cancelled,
}

impl BackendError {
    /// The `org.cabin.Error.*` name a `Failed` signal carries.
    pub fn bus_name(&self) -> &'static str {
        match self {
            BackendError::Unavailable(_) | BackendError::Server(_) | BackendError::Protocol(_) => {
                names::UNAVAILABLE
            }
            BackendError::Timeout(_) => "org.cabin.Error.Timeout",
            BackendError::Unauthorized(_) => names::PERMISSION_DENIED,
            BackendError::RateLimited { .. } => names::BUSY,
            BackendError::Cancelled => names::CANCELLED,
        }
    }
}

/// A way of producing replies. `respond` blocks; it streams text through `on_token`,
/// checks `cancel` between pieces and gives up by itself at `deadline` (network I/O
/// included), so a hung server cannot hold the chain.
pub trait Backend: Send + Sync {
    fn name(&self) -> &str;
    fn respond(
        &self,
        req: &Request<'_>,
        deadline: Instant,
        on_token: &mut dyn FnMut(&str),
        cancel: &AtomicBool,
    ) -> Result<Draft, BackendError>;
}

/// What a listener to the chain hears.
pub enum Stream<'a> {
    Token(&'a str),
    /// The backend that was streaming failed; the next one starts from scratch.
    Restart,
}

/// What the chain did: the answer and who gave it, and what failed on the way.
pub struct Answer {
    pub draft: Draft,
    pub backend: String,
    pub failures: Vec<(String, BackendError)>,
}

/// Backends in order, each with its own deadline; a backend that said "come back later"
/// (429 with `Retry-After`, refused credentials) is skipped until then.
pub struct Chain {
    links: Vec<Link>,
}

struct Link {
    backend: Arc<dyn Backend>,
    timeout: Duration,
    resting_until: std::sync::Mutex<Option<Instant>>,
}

impl Chain {
    pub fn new(backends: Vec<(Arc<dyn Backend>, Duration)>) -> Self {
        Self {
            links: backends
                .into_iter()
                .map(|(backend, timeout)| Link {
                    backend,
                    timeout,
                    resting_until: std::sync::Mutex::new(None),
                })
                .collect(),
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.links
            .iter()
            .map(|l| l.backend.name().to_string())
            .collect()
    }

    /// Tries each backend in turn. Tokens stream as they come; before the next backend
    /// starts, `Stream::Restart` tells the listener to drop what the failed one streamed.
    pub fn respond(
        &self,
        req: &Request<'_>,
        on_event: &mut dyn FnMut(Stream<'_>),
        cancel: &AtomicBool,
    ) -> Result<Answer, Vec<(String, BackendError)>> {
        let mut failures = Vec::new();
        for link in &self.links {
            let name = link.backend.name().to_string();
            if cancel.load(Ordering::SeqCst) {
                failures.push((name, BackendError::Cancelled));
                return Err(failures);
            }
            {
                let resting = link.resting_until.lock().unwrap_or_else(|p| p.into_inner());
                if resting.is_some_and(|t| Instant::now() < t) {
                    failures.push((
                        name,
                        BackendError::Unavailable("resting after the last refusal".into()),
                    ));
                    continue;
                }
            }
            if !failures.is_empty() {
                on_event(Stream::Restart);
            }
            let mut on_token = |t: &str| on_event(Stream::Token(t));
            match run_with_deadline(link, req, &mut on_token, cancel) {
                Ok(draft) => {
                    return Ok(Answer {
                        draft,
                        backend: name,
                        failures,
                    });
                }
                Err(e) => {
                    let rest = match &e {
                        BackendError::RateLimited { retry_after } => {
                            Some(retry_after.unwrap_or(Duration::from_secs(30)))
                        }
                        BackendError::Unauthorized(_) => Some(Duration::from_secs(600)),
                        _ => None,
                    };
                    if let Some(rest) = rest {
                        *link.resting_until.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(Instant::now() + rest.min(Duration::from_secs(3600)));
                    }
                    tracing::warn!(backend = %name, error = %e, "backend failed, trying the next");
                    failures.push((name, e));
                    if cancel.load(Ordering::SeqCst) {
                        return Err(failures);
                    }
                }
            }
        }
        Err(failures)
    }
}

/// Runs one backend on a scoped thread and gives up on it at the deadline: its tokens stop
/// being forwarded and its cancel flag is raised, so it stops at its next check.
fn run_with_deadline(
    link: &Link,
    req: &Request<'_>,
    on_token: &mut dyn FnMut(&str),
    cancel: &AtomicBool,
) -> Result<Draft, BackendError> {
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + link.timeout;
    enum Msg {
        Token(String),
        Done(Result<Draft, BackendError>),
    }
    let (tx, rx) = mpsc::channel::<Msg>();
    std::thread::scope(|scope| {
        let backend = link.backend.clone();
        let thread_stop = stop.clone();
        let done_tx = tx.clone();
        scope.spawn(move || {
            let mut forward = |t: &str| {
                let _ = tx.send(Msg::Token(t.to_string()));
            };
            let result = backend.respond(req, deadline, &mut forward, &thread_stop);
            let _ = done_tx.send(Msg::Done(result));
        });
        let result = loop {
            if cancel.load(Ordering::SeqCst) {
                break Err(BackendError::Cancelled);
            }
            let now = Instant::now();
            if now >= deadline {
                break Err(BackendError::Timeout(link.timeout));
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            match rx.recv_timeout(wait) {
                Ok(Msg::Token(t)) => on_token(&t),
                Ok(Msg::Done(result)) => break result,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(BackendError::Protocol(
                        "the backend stopped without an answer".into(),
                    ));
                }
            }
        };
        // A backend past its deadline must notice `stop` and return; the scope waits for it.
        stop.store(true, Ordering::SeqCst);
        result
    })
}
