//! Prompt → token ids, with the `tokenizer/` folder of a diffusers model
//! (`tokenizer.json` through the `tokenizers` crate, `tokenizer_config.json` for the length
//! and padding). Prompts are truncated and padded exactly as diffusers does for CLIP.

use std::path::Path;

use serde_json::Value;

use super::EngineError;

/// The longest prompt accepted, in characters. A spoken request is far shorter; this only
/// keeps a runaway client from making us tokenize megabytes.
pub const MAX_PROMPT_CHARS: usize = 1000;

pub struct PromptTokenizer {
    inner: tokenizers::Tokenizer,
    max_len: usize,
    pad_id: u32,
    eos_id: Option<u32>,
    unk_id: Option<u32>,
}

impl PromptTokenizer {
    /// Loads `dir/tokenizer.json` and `dir/tokenizer_config.json`.
    pub fn load(dir: &Path, default_max_len: usize) -> Result<Self, EngineError> {
        let json = dir.join("tokenizer.json");
        let bytes = std::fs::read(&json).map_err(|e| EngineError::io(&json, e))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| EngineError::Model(format!("{}: {e}", json.display())))?;
        let config_path = dir.join("tokenizer_config.json");
        let config: Value = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| EngineError::Model(format!("{}: {e}", config_path.display())))?,
            Err(_) => Value::Null,
        };
        let token_id = |key: &str| -> Option<u32> {
            let token = match &config[key] {
                Value::String(s) => s.as_str(),
                Value::Object(o) => o.get("content")?.as_str()?,
                _ => return None,
            };
            inner.token_to_id(token)
        };
        let max_len = config["model_max_length"]
            .as_f64()
            .filter(|&m| m >= 2.0 && m <= default_max_len as f64)
            .map_or(default_max_len, |m| m as usize);
        let eos_id = token_id("eos_token");
        let pad_id = token_id("pad_token").or(eos_id).ok_or_else(|| {
            EngineError::Model("tokenizer has neither a pad nor an eos token".into())
        })?;
        Ok(Self {
            max_len,
            pad_id,
            eos_id,
            unk_id: token_id("unk_token"),
            inner,
        })
    }

    /// The padded sequence length the text encoder takes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Checks a prompt a user typed or said; `what` names it in errors ("prompt", "negative").
    pub fn check(what: &str, text: &str, allow_empty: bool) -> Result<(), EngineError> {
        let chars = text.chars().count();
        if chars > MAX_PROMPT_CHARS {
            return Err(EngineError::InvalidArgument(format!(
                "{what} is too long: {chars} characters (at most {MAX_PROMPT_CHARS})"
            )));
        }
        if !allow_empty && text.trim().is_empty() {
            return Err(EngineError::InvalidArgument(format!("{what} is empty")));
        }
        if let Some(c) = text.chars().find(|c| c.is_control() && !c.is_whitespace()) {
            return Err(EngineError::InvalidArgument(format!(
                "{what} contains a control character U+{:04X}",
                c as u32
            )));
        }
        Ok(())
    }

    /// Token ids, truncated and padded to [`Self::max_len`].
    pub fn encode(&self, what: &str, text: &str) -> Result<Vec<i64>, EngineError> {
        let encoding = self.inner.encode(text, true).map_err(|e| {
            EngineError::InvalidArgument(format!("{what} cannot be tokenized: {e}"))
        })?;
        if let Some(unk) = self.unk_id {
            let unknown: Vec<String> = encoding
                .get_ids()
                .iter()
                .zip(encoding.get_special_tokens_mask())
                .zip(encoding.get_offsets())
                .filter(|((id, special), _)| **id == unk && **special == 0)
                .filter_map(|(_, (start, end))| text.get(*start..*end).map(str::to_string))
                .collect();
            if !unknown.is_empty() {
                return Err(EngineError::InvalidArgument(format!(
                    "{what} has characters the model's tokenizer does not know: {}",
                    unknown.join(" ")
                )));
            }
        }
        let mut ids: Vec<i64> = encoding.get_ids().iter().map(|&i| i64::from(i)).collect();
        if ids.len() > self.max_len {
            tracing::warn!("{what} truncated to {} tokens", self.max_len);
            ids.truncate(self.max_len);
            if let Some(eos) = self.eos_id {
                ids[self.max_len - 1] = i64::from(eos);
            }
        }
        ids.resize(self.max_len, i64::from(self.pad_id));
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_checks() {
        assert!(PromptTokenizer::check("prompt", "snowy mountains", false).is_ok());
        assert!(PromptTokenizer::check("negative", "", true).is_ok());
        for bad in ["", "   ", "bad\u{7}bell", &"x".repeat(10_000)] {
            let err = PromptTokenizer::check("prompt", bad, false).unwrap_err();
            assert!(matches!(err, EngineError::InvalidArgument(_)), "{bad:?}");
        }
        assert!(PromptTokenizer::check("prompt", &"雪".repeat(MAX_PROMPT_CHARS), false).is_ok());
    }
}
