//! `cabinctl`: the cabin bundle from a shell — and the exec hook a voice assistant calls.
//!
//!   cabinctl intent "换一张雪山的壁纸"        parse only: intent and slots as JSON, no service called
//!   cabinctl voice "make it a starry night"  what org.cabin.Voice1.Handle does, in this process
//!   cabinctl generate "snowy mountains at dusk" [--wait]
//!   cabinctl say "I'm tired" [--persona ID]
//!   cabinctl submit "the seat heater doesn't work" [--channel voice]
//!
//! Exit status: 0 done, 1 error, 2 understood nothing / not handled.

use std::collections::HashMap;
use std::process::ExitCode;

use cabin_common::bus::BusChoice;
use cabin_contracts::wallpaper::{JobProxy, Wallpaper1Proxy};
use cabin_voice::bus::BusServices;
use cabin_voice::daemon::service::locale_lang;
use cabin_voice::intent::parse;
use cabin_voice::router::{Context, Services, route};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;

#[derive(Parser)]
#[command(
    version,
    about = "Drive the cabin services from a shell; the voice assistant's exec hook"
)]
struct Cli {
    /// The bus the services are on: `system`, `session`, or a D-Bus address.
    #[arg(
        long,
        global = true,
        default_value = "system",
        value_name = "system|session|ADDRESS"
    )]
    bus: BusChoice,
    /// Answer in this language (zh-*, en-*) [default: the utterance's].
    #[arg(long, global = true, default_value = "")]
    locale: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse an utterance; print intent and slots as JSON. Calls no service.
    Intent { utterance: String },
    /// Handle an utterance as org.cabin.Voice1 would; print the reply.
    Voice {
        utterance: String,
        /// Print {"handled", "reply", "intent"} as JSON.
        #[arg(long)]
        json: bool,
        /// The companion persona for chat.
        #[arg(long)]
        persona: Option<String>,
    },
    /// Generate a wallpaper; with --wait, until it is on show.
    Generate {
        prompt: String,
        #[arg(long)]
        wait: bool,
    },
    /// Say something to the companion; print its reply.
    Say {
        text: String,
        #[arg(long)]
        persona: Option<String>,
    },
    /// File feedback; print its id.
    Submit {
        text: String,
        #[arg(long, default_value = "voice")]
        channel: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cabinctl: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    let lang = locale_lang(&cli.locale).map_err(|e| format!("{e:?}"))?;
    if let Command::Intent { utterance } = &cli.command {
        let parsed = parse(utterance, lang);
        println!(
            "{}",
            serde_json::to_string(&parsed).map_err(|e| e.to_string())?
        );
        return Ok(
            if matches!(
                parsed.intent,
                cabin_voice::intent::Intent::Unknown { .. }
                    | cabin_voice::intent::Intent::CarCommand { .. }
            ) {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            },
        );
    }
    let conn = cli
        .bus
        .connect()
        .await
        .map_err(|e| format!("cannot connect to the {} bus: {e}", cli.bus))?;
    let services = BusServices::new(conn.clone(), "");
    let lang_or = |text: &str| lang.unwrap_or_else(|| cabin_text::language_of(text));
    let failed = |f: cabin_voice::router::Failure| format!("{}: {}", f.name, f.message);
    match cli.command {
        Command::Intent { .. } => unreachable!("handled above"),
        Command::Voice {
            utterance,
            json,
            persona,
        } => {
            let parsed = parse(&utterance, lang);
            let vehicle = cabin_common::vehicle::dbus::DbusVehicle::follow(&conn)
                .await
                .map_err(|e| format!("cannot follow the vehicle context: {e}"))?;
            let clock = cabin_common::vehicle::VehicleSource::clock(&vehicle);
            let context = Context {
                persona,
                hour: cabin_voice::daemon::service::local_hour(&clock),
            };
            let handled = route(&services, &parsed, &context).await;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"handled": handled.handled, "reply": handled.reply, "intent": handled.intent})
                );
            } else {
                println!("{}", handled.reply);
            }
            Ok(if handled.handled {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Generate { prompt, wait } => {
            let wallpaper = Wallpaper1Proxy::new(&conn)
                .await
                .map_err(|e| e.to_string())?;
            let path = wallpaper
                .generate(&prompt, HashMap::new())
                .await
                .map_err(|e| e.to_string())?;
            println!("{}", path.as_str());
            if wait {
                let job = JobProxy::builder(&conn)
                    .path(path)
                    .build()
                    .await
                    .map_err(|e| e.to_string())?;
                let (mut done, mut failed_jobs, mut progress) = (
                    job.receive_done().await.map_err(|e| e.to_string())?,
                    job.receive_failed().await.map_err(|e| e.to_string())?,
                    job.receive_progress_step()
                        .await
                        .map_err(|e| e.to_string())?,
                );
                loop {
                    tokio::select! {
                        Some(p) = progress.next() => if let Ok(a) = p.args() { eprintln!("step {}/{}", a.step, a.total) },
                        Some(d) = done.next() => { if let Ok(a) = d.args() { println!("{}", a.image_id) } return Ok(ExitCode::SUCCESS) }
                        Some(f) = failed_jobs.next() => { let a = f.args().map_err(|e| e.to_string())?; return Err(format!("{}: {}", a.error_name, a.message)) }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Say { text, persona } => {
            let reply = services
                .chat(&text, persona.as_deref(), lang_or(&text))
                .await
                .map_err(failed)?;
            println!("{reply}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Submit { text, channel } => {
            let feedback = cabin_contracts::feedback::Feedback1Proxy::new(&conn)
                .await
                .map_err(|e| e.to_string())?;
            let locale = if lang_or(&text) == "zh" {
                "zh-CN"
            } else {
                "en-US"
            };
            let meta = HashMap::from([("locale", zbus::Variant::from(locale))]);
            let id = feedback
                .submit(&channel, &text, meta)
                .await
                .map_err(|e| e.to_string())?;
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
