//! The engine on the tiny random-weight LLaMA (`onnx/lm/build_lm.py tiny`), checked against
//! what onnxruntime computed on the same file (`onnx/fixtures/tiny-lm-reference.json`), in
//! float32, with 4-bit weights (`build_lm.py --quant q4_1 tiny`, `tiny-lm-q4`) and with 8-bit
//! weights (`--quant q8_0 tiny`, `tiny-lm-q8`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use cabin_lm::{
    Conversation, FinishReason, Limits, LmError, LmModel, LoadOptions, Message, Role, Sampling,
    chat,
};

const FLOAT32: &str = "tiny-lm";
const QUANTISED: &str = "tiny-lm-q4";
const EIGHT_BIT: &str = "tiny-lm-q8";

fn fixture_named(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../onnx/fixtures/{name}"))
}

fn fixture() -> PathBuf {
    fixture_named(FLOAT32)
}

fn reference(name: &str) -> serde_json::Value {
    let path = fixture_named(&format!("{name}-reference.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn load_named(name: &str) -> Arc<LmModel> {
    Arc::new(LmModel::load(&fixture_named(name), &LoadOptions::default()).unwrap())
}

fn load() -> Arc<LmModel> {
    load_named(FLOAT32)
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn max_gap(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn greedy() -> Sampling {
    Sampling {
        temperature: 0.0,
        repetition_penalty: 1.0,
        ..Sampling::default()
    }
}

fn no_cancel() -> AtomicBool {
    AtomicBool::new(false)
}

#[test]
fn prefill_and_cached_decode_match_onnxruntime() {
    matches_onnxruntime(FLOAT32);
}

#[test]
fn four_bit_weights_match_onnxruntime_on_the_same_file() {
    let model = load_named(QUANTISED);
    assert_eq!(model.config().quantisation, "q4_1");
    matches_onnxruntime(QUANTISED);
}

#[test]
fn eight_bit_weights_match_onnxruntime_on_the_same_file() {
    // tract-onnx does not read MatMulNBits or GatherBlockQuantized with bits=8: cabin's parser
    // builds its own ops for them, which must compute what onnxruntime does
    let model = load_named(EIGHT_BIT);
    assert_eq!(model.config().quantisation, "q8_0");
    matches_onnxruntime(EIGHT_BIT);
}

#[test]
fn eight_bit_weights_are_nearly_float32() {
    let (float, quant) = (load_named(FLOAT32), load_named(EIGHT_BIT));
    let ids = float.encode("hello 你好").unwrap();
    let a = float.forward(&ids, 0, float.empty_cache()).unwrap().logits;
    let b = quant.forward(&ids, 0, quant.empty_cache()).unwrap().logits;
    assert!(
        correlation(&a, &b) > 0.999,
        "correlation {}",
        correlation(&a, &b)
    );
}

#[test]
fn four_bit_weights_stay_close_to_float32() {
    // the same random weights, quantised: a wrong nibble order or block layout would make
    // the logits unrelated, while Q4_0's rounding moves them only a little
    let (float, quant) = (load_named(FLOAT32), load_named(QUANTISED));
    let ids = float.encode("hello 你好").unwrap();
    let a = float.forward(&ids, 0, float.empty_cache()).unwrap().logits;
    let b = quant.forward(&ids, 0, quant.empty_cache()).unwrap().logits;
    assert!(
        correlation(&a, &b) > 0.95,
        "correlation {}",
        correlation(&a, &b)
    );
}

fn correlation(a: &[f32], b: &[f32]) -> f32 {
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let (ma, mb) = (mean(a), mean(b));
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma) * (x - ma);
        bb += (y - mb) * (y - mb);
    }
    ab / (aa * bb).sqrt()
}

/// How far the engine's logits may be from onnxruntime's: float rounding for float weights;
/// with 4- or 8-bit weights a decode token is multiplied in 8-bit integers (as llama.cpp
/// does), so within 2 % of the largest logit, and the greedy tokens still the same.
fn allowed_gap(model: &LmModel, reference: &[f32]) -> f32 {
    if model.config().quantisation == "f32" {
        1e-3
    } else {
        0.02 * reference.iter().fold(0f32, |m, v| m.max(v.abs()))
    }
}

fn matches_onnxruntime(name: &str) {
    let model = load_named(name);
    let r = reference(name);
    let prompt = r["prompt"].as_str().unwrap();
    let ids = model.encode(prompt).unwrap();
    let expected_ids: Vec<u32> = r["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(
        ids, expected_ids,
        "token ids differ from the Python tokenizer"
    );

    let step = model.forward(&ids, 0, model.empty_cache()).unwrap();
    let want = floats(&r["prefill_logits"]);
    let gap = max_gap(&step.logits, &want);
    assert!(
        gap < allowed_gap(&model, &want),
        "prefill logits differ by {gap}"
    );

    // token by token on the cache, as onnxruntime did
    let mut cache = step.present;
    let greedy_ref = r["greedy"].as_array().unwrap();
    let mut logits = step.logits;
    for (i, expected) in greedy_ref.iter().enumerate() {
        let next = argmax(&logits);
        assert_eq!(next as u64, expected.as_u64().unwrap(), "greedy token {i}");
        let step = model.forward(&[next], ids.len() + i, cache).unwrap();
        let want = floats(&r["step_logits"][i]);
        let gap = max_gap(&step.logits, &want);
        assert!(
            gap < allowed_gap(&model, &want),
            "step {i} logits differ by {gap}"
        );
        cache = step.present;
        logits = step.logits;
    }
}

fn argmax(v: &[f32]) -> u32 {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0 as u32
}

#[test]
fn one_call_prefill_equals_token_by_token() {
    let model = load();
    let ids = model.encode("the quick brown fox").unwrap();
    let whole = model.forward(&ids, 0, model.empty_cache()).unwrap();
    let mut cache = model.empty_cache();
    let mut last = Vec::new();
    for (pos, id) in ids.iter().enumerate() {
        let step = model.forward(&[*id], pos, cache).unwrap();
        cache = step.present;
        last = step.logits;
    }
    assert!(max_gap(&whole.logits, &last) < 1e-4);
}

#[test]
fn a_reply_streams_and_the_cache_serves_the_next_turn() {
    let model = load();
    let specials = model.specials().to_vec();
    let mut turn = vec![
        Message::new(Role::System, "You are kind."),
        Message::new(Role::User, "你好, how are you?"),
    ];
    let limits = Limits {
        max_new_tokens: 24,
        deadline: None,
    };
    let mut conv = Conversation::new(model.clone());
    let mut streamed = String::new();
    let first = conv
        .complete(
            &chat::render(&turn, &specials),
            &greedy(),
            &limits,
            &mut |t| streamed.push_str(t),
            &no_cancel(),
        )
        .unwrap();
    assert_eq!(streamed, first.text, "the stream adds up to the reply");
    assert!(!streamed.contains('\u{FFFD}') || first.text.contains('\u{FFFD}'));
    assert_eq!(first.reused_tokens, 0);
    assert_eq!(first.tokens.len(), 24);
    assert_eq!(first.finish, FinishReason::Length);

    turn.push(Message::new(Role::Assistant, first.text.clone()));
    turn.push(Message::new(Role::User, "tell me more"));
    let prompt = chat::render(&turn, &specials);
    let second = conv
        .complete(&prompt, &greedy(), &limits, &mut |_| {}, &no_cancel())
        .unwrap();
    assert!(
        second.reused_tokens >= first.prompt_tokens,
        "the second turn reran its history: reused {} of {} (first prompt {})",
        second.reused_tokens,
        second.prompt_tokens,
        first.prompt_tokens
    );
    // the cached path gives exactly what a fresh conversation gives
    let fresh = Conversation::new(model)
        .complete(&prompt, &greedy(), &limits, &mut |_| {}, &no_cancel())
        .unwrap();
    assert_eq!(second.tokens, fresh.tokens);
}

#[test]
fn a_seed_gives_the_same_reply_and_another_seed_another() {
    let model = load();
    let prompt = chat::render(&[Message::new(Role::User, "hello")], model.specials());
    let limits = Limits {
        max_new_tokens: 16,
        deadline: None,
    };
    let run = |seed| {
        let sampling = Sampling {
            seed,
            temperature: 1.0,
            ..Sampling::default()
        };
        Conversation::new(model.clone())
            .complete(&prompt, &sampling, &limits, &mut |_| {}, &no_cancel())
            .unwrap()
            .tokens
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
}

/// A copy of the fixture whose config says `stop` is a stop token, with its manifest redone.
fn fixture_with_stop(stop: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "model.onnx",
        "tokenizer.json",
        "manifest.json",
        "config.json",
    ] {
        std::fs::copy(fixture().join(f), dir.path().join(f)).unwrap();
    }
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["stop_token_ids"] = serde_json::json!([0, 2, stop]);
    std::fs::write(&path, config.to_string()).unwrap();
    let old = cabin_manifest::Manifest::read(&fixture()).unwrap();
    let manifest =
        cabin_manifest::Manifest::build(dir.path(), &old.name, "test", &old.licence, "test")
            .unwrap();
    std::fs::write(
        dir.path().join("manifest.json"),
        serde_json::to_string(&manifest).unwrap(),
    )
    .unwrap();
    dir
}

#[test]
fn generation_ends_at_a_stop_token() {
    let r = reference(FLOAT32);
    let greedy_ref: Vec<u32> = r["greedy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let stop = greedy_ref[4];
    let first_stop = greedy_ref.iter().position(|&t| t == stop).unwrap();
    let dir = fixture_with_stop(stop);
    let model = Arc::new(LmModel::load(dir.path(), &LoadOptions::default()).unwrap());
    let done = Conversation::new(model)
        .complete(
            r["prompt"].as_str().unwrap(),
            &greedy(),
            &Limits::default(),
            &mut |_| {},
            &no_cancel(),
        )
        .unwrap();
    assert_eq!(done.finish, FinishReason::Stop);
    assert_eq!(done.tokens, greedy_ref[..first_stop]);
}

#[test]
fn cancel_deadline_and_context_are_named_errors() {
    let model = load();
    let prompt = chat::render(&[Message::new(Role::User, "hi")], model.specials());
    let mut conv = Conversation::new(model.clone());
    let err = conv
        .complete(
            &prompt,
            &greedy(),
            &Limits::default(),
            &mut |_| {},
            &AtomicBool::new(true),
        )
        .unwrap_err();
    assert!(matches!(err, LmError::Cancelled { .. }), "{err}");

    let err = conv
        .complete(
            &prompt,
            &greedy(),
            &Limits {
                max_new_tokens: 100,
                deadline: Some(Instant::now() - Duration::from_millis(1)),
            },
            &mut |_| {},
            &no_cancel(),
        )
        .unwrap_err();
    assert!(
        matches!(err, LmError::DeadlinePassed { tokens: 1 }),
        "{err}"
    );

    let long = "word ".repeat(model.context());
    let err = conv
        .complete(
            &long,
            &greedy(),
            &Limits::default(),
            &mut |_| {},
            &no_cancel(),
        )
        .unwrap_err();
    assert!(matches!(err, LmError::ContextFull { .. }), "{err}");
    assert!(err.to_string().contains("context"), "{err}");

    for empty in ["", "  \n"] {
        let err = conv
            .complete(
                empty,
                &greedy(),
                &Limits::default(),
                &mut |_| {},
                &no_cancel(),
            )
            .unwrap_err();
        assert!(matches!(err, LmError::InvalidArgument(_)), "{err}");
    }
    // after all that the conversation still works
    conv.complete(
        &prompt,
        &greedy(),
        &Limits {
            max_new_tokens: 4,
            deadline: None,
        },
        &mut |_| {},
        &no_cancel(),
    )
    .unwrap();
}

#[test]
fn damaged_or_unverified_folders_are_refused() {
    let err = LmModel::load(Path::new("/nonexistent/model"), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a model folder"), "{err}");

    let dir = fixture_with_stop(5);
    // one changed byte in the graph
    let path = dir.path().join("model.onnx");
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = LmModel::load(dir.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.onnx") && err.contains("does not match"),
        "{err}"
    );

    // truncated, and no manifest: tract's parser refuses it, naming the file
    bytes.truncate(bytes.len() / 3);
    std::fs::write(&path, &bytes).unwrap();
    std::fs::remove_file(dir.path().join("manifest.json")).unwrap();
    let err = LmModel::load(dir.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("unverified"), "{err}");
    let err = LmModel::load(
        dir.path(),
        &LoadOptions {
            require_manifest: false,
            ..LoadOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("model.onnx"), "{err}");
}
