//! `cabin-lm`: the on-device language model from a shell, for operators.
//!
//! `generate` streams a reply to stdout and prints time to first token and tokens/s to
//! stderr; `info` prints what a model folder is (manifest, sizes, quantisation) and what it
//! will take in memory.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use cabin_lm::{Conversation, Limits, LmError, LmModel, LoadOptions, Message, Role, Sampling};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "cabin's on-device language model")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer one prompt as the companion's backend would, streaming the reply.
    Generate {
        #[arg(long)]
        model: PathBuf,
        /// What the user says (rendered as a ChatML user turn).
        #[arg(long)]
        prompt: String,
        /// A system turn before it.
        #[arg(long)]
        system: Option<String>,
        #[arg(long, default_value_t = 128)]
        max_tokens: usize,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// 0 = greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Print a model folder's manifest, sizes, quantisation and memory estimate as JSON.
    Info {
        model: PathBuf,
        /// The context the memory estimate's KV cache is sized for.
        #[arg(long, default_value_t = 512)]
        context: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate {
            model,
            prompt,
            system,
            max_tokens,
            threads,
            temperature,
            seed,
        } => generate(
            model,
            &prompt,
            system.as_deref(),
            max_tokens,
            threads,
            temperature,
            seed,
        ),
        Command::Info { model, context } => info(model, context),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cabin-lm: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(
    dir: PathBuf,
    prompt: &str,
    system: Option<&str>,
    max_tokens: usize,
    threads: usize,
    temperature: f32,
    seed: u64,
) -> Result<(), LmError> {
    let started = std::time::Instant::now();
    let model = Arc::new(LmModel::load(
        &dir,
        &LoadOptions {
            threads,
            ..LoadOptions::default()
        },
    )?);
    let loaded = started.elapsed();
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(Message::new(Role::System, system));
    }
    messages.push(Message::new(Role::User, prompt));
    let rendered = cabin_lm::chat::render(&messages, model.specials());
    let sampling = Sampling {
        temperature,
        seed,
        ..Sampling::default()
    };
    let limits = Limits {
        max_new_tokens: max_tokens,
        deadline: None,
    };
    let mut stdout = std::io::stdout().lock();
    let mut conversation = Conversation::new(model);
    let done = conversation.complete(
        &rendered,
        &sampling,
        &limits,
        &mut |piece| {
            // A closed pipe (`| head`) only ends the stream; the figures still print.
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        },
        &AtomicBool::new(false),
    )?;
    let _ = writeln!(stdout);
    let decode = done.elapsed.saturating_sub(done.time_to_first_token);
    // the first token comes with the prefill; the rest are decode steps
    let steps = done.tokens.len().saturating_sub(1);
    let rate = if steps > 0 && !decode.is_zero() {
        steps as f64 / decode.as_secs_f64()
    } else {
        0.0
    };
    eprintln!(
        "{} prompt tokens, {} reply tokens ({:?}); load {:.0} ms, time to first token {:.0} ms, decode {:.1} tokens/s, {} thread(s)",
        done.prompt_tokens,
        done.tokens.len(),
        done.finish,
        loaded.as_secs_f64() * 1e3,
        done.time_to_first_token.as_secs_f64() * 1e3,
        rate,
        threads.max(1),
    );
    Ok(())
}

fn info(dir: PathBuf, context: usize) -> Result<(), LmError> {
    // Reading the manifest and config is enough; the graph is not optimised for this.
    let manifest = cabin_manifest::Manifest::read(&dir)?;
    manifest.verify(&dir)?;
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|source| LmError::Io {
        path: config_path,
        source,
    })?;
    let config = cabin_lm::LmConfig::parse(&text)?;
    let kv_per_token = 2 * config.layers * config.kv_heads * config.head_dim * 4;
    let files: u64 = manifest
        .files
        .keys()
        .filter_map(|rel| std::fs::metadata(dir.join(rel)).ok())
        .map(|m| m.len())
        .sum();
    let mib = |bytes: u64| (bytes as f64 / (1 << 20) as f64 * 10.0).round() / 10.0;
    let report = serde_json::json!({
        "dir": dir.display().to_string(),
        "name": manifest.name,
        "version": manifest.version,
        "licence": manifest.licence,
        "made_by": manifest.made_by,
        "manifest": "verified",
        "quantisation": config.quantisation,
        "layers": config.layers,
        "hidden_size": config.hidden_size,
        "heads": config.heads,
        "kv_heads": config.kv_heads,
        "vocab_size": config.vocab_size,
        "trained_context": config.trained_context,
        "languages": config.languages,
        "files_bytes": files,
        "files_mib": mib(files),
        "memory_estimate": {
            "weights_bytes": config.weight_bytes(),
            "weights_mib": mib(config.weight_bytes()),
            "kv_cache_bytes": kv_per_token * context,
            "kv_cache_mib": mib((kv_per_token * context) as u64),
            "context": context,
        },
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("JSON of plain values")
    );
    Ok(())
}
