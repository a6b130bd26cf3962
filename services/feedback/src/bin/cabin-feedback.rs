//! `cabin-feedback`: the operator's view of cabin-feedbackd over the bus — submit one item,
//! import an export, print a summary, flush, show the upload status.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use cabin_common::bus::BusChoice;
use cabin_contracts::feedback::Feedback1Proxy;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Talk to cabin-feedbackd (org.cabin.Feedback1)")]
struct Cli {
    /// Bus: system, session, or a D-Bus address.
    #[arg(long, default_value = "system", value_name = "system|session|ADDRESS")]
    bus: BusChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Submit one piece of feedback; prints its id.
    Submit {
        /// voice, hmi, app, dealer or call-center.
        #[arg(long)]
        channel: String,
        #[arg(long)]
        rating: Option<u32>,
        #[arg(long)]
        locale: Option<String>,
        /// When it was said: RFC 3339 [default: now].
        #[arg(long)]
        time: Option<String>,
        text: String,
    },
    /// Import a JSON Lines or CSV export; prints the number of items.
    Import {
        /// jsonl or csv [default: from the file's extension].
        #[arg(long)]
        format: Option<String>,
        file: PathBuf,
    },
    /// Print the recurring problems as JSON.
    Summary {
        /// Only the last N days [default: everything].
        #[arg(long)]
        days: Option<u32>,
        #[arg(long, default_value_t = 3)]
        quotes: u32,
        /// Only these channels (repeatable).
        #[arg(long)]
        channel: Vec<String>,
    },
    /// Upload what is pending now.
    Flush,
    /// Pending, uploaded, last upload, last error, consent.
    Status,
    /// Offline, no bus: the recurring problems of a JSON Lines or CSV file, as JSON.
    Analyse {
        /// jsonl or csv [default: from the file's extension].
        #[arg(long)]
        format: Option<String>,
        #[arg(long, default_value_t = 3)]
        quotes: usize,
        file: PathBuf,
    },
    /// Turn consent to upload on or off.
    Consent {
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    cabin_common::cli::exit_code("cabin-feedback", run(Cli::parse()).await)
}

fn describe(e: zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(msg), _) => format!("{name}: {msg}"),
        other => other.to_string(),
    }
}

fn format_of(format: Option<String>, file: &std::path::Path) -> Result<String, String> {
    format
        .or_else(|| {
            file.extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .map(|e| if e == "json" { "jsonl".into() } else { e })
        })
        .ok_or_else(|| "give --format jsonl|csv".to_string())
}

async fn run(cli: Cli) -> Result<(), String> {
    if let Command::Analyse {
        format,
        quotes,
        file,
    } = &cli.command
    {
        let format = format_of(format.clone(), file)?;
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let report = cabin_feedback::report::analyse_export(&bytes, &format, *quotes)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        // A reader that stops early (`| head`) is not an error.
        return match writeln!(std::io::stdout(), "{text}") {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
            _ => Ok(()),
        };
    }
    let conn = cli
        .bus
        .builder()
        .build()
        .await
        .map_err(|e| format!("cannot connect to the {} bus: {e}", cli.bus))?;
    let proxy = Feedback1Proxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(describe)?;
    match cli.command {
        Command::Submit {
            channel,
            rating,
            locale,
            time,
            text,
        } => {
            let mut meta = HashMap::new();
            if let Some(r) = rating {
                meta.insert("rating", zbus::Variant::from(r));
            }
            if let Some(l) = &locale {
                meta.insert("locale", zbus::Variant::from(l.as_str()));
            }
            if let Some(t) = &time {
                meta.insert("time", zbus::Variant::from(t.as_str()));
            }
            println!(
                "{}",
                proxy
                    .submit(&channel, &text, meta)
                    .await
                    .map_err(describe)?
            );
        }
        Command::Import { format, file } => {
            let format = format_of(format, &file)?;
            let f = std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let n = proxy
                .import(zbus::Fd::from(&f), &format)
                .await
                .map_err(describe)?;
            println!("{n}");
        }
        Command::Summary {
            days,
            quotes,
            channel,
        } => {
            let since = days.map_or(0, |d| {
                chrono::Utc::now().timestamp_millis() - i64::from(d) * 86_400_000
            });
            let mut options = HashMap::new();
            options.insert("max_quotes", zbus::Variant::from(quotes));
            if !channel.is_empty() {
                options.insert("channels", zbus::Variant::from(channel));
            }
            let json = proxy.summary(since, 0, options).await.map_err(describe)?;
            let value: serde_json::Value =
                serde_json::from_str(&json).map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?
            );
        }
        Command::Flush => proxy.flush().await.map_err(describe)?,
        Command::Status => {
            let status = serde_json::json!({
                "pending": proxy.pending().await.map_err(describe)?,
                "uploaded": proxy.uploaded().await.map_err(describe)?,
                "last_upload_unix_ms": proxy.last_upload().await.map_err(describe)?,
                "last_error": proxy.last_error().await.map_err(describe)?,
                "consent": proxy.consent().await.map_err(describe)?,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&status).map_err(|e| e.to_string())?
            );
        }
        Command::Consent { state } => proxy.set_consent(state == "on").await.map_err(describe)?,
        Command::Analyse { .. } => unreachable!("answered before connecting"),
    }
    Ok(())
}
