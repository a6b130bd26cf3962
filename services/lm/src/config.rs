//! `config.json`: the sizes and conventions the graph was built with.

use serde::Deserialize;

use crate::LmError;

pub const FORMAT: &str = "cabin-lm/1";

#[derive(Debug, Clone, Deserialize)]
pub struct LmConfig {
    pub format: String,
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// The context the model was trained for; the engine may cap it lower.
    pub trained_context: usize,
    /// Languages the model answers in (ISO 639-1).
    #[serde(default)]
    pub languages: Vec<String>,
    pub stop_token_ids: Vec<u32>,
    pub chat_template: String,
    #[serde(default)]
    pub licence: String,
    #[serde(default)]
    pub source_name: String,
}

impl LmConfig {
    pub fn parse(text: &str) -> Result<Self, LmError> {
        let config: LmConfig =
            serde_json::from_str(text).map_err(|e| LmError::Model(format!("config.json: {e}")))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), LmError> {
        let bad = |m: String| Err(LmError::Model(format!("config.json: {m}")));
        if self.format != FORMAT {
            return bad(format!("format {:?}, expected {FORMAT:?}", self.format));
        }
        if self.architecture != "llama" {
            return bad(format!("architecture {:?} is not llama", self.architecture));
        }
        if self.chat_template != "chatml" {
            return bad(format!(
                "chat template {:?}; only chatml is known",
                self.chat_template
            ));
        }
        let sizes = [
            self.vocab_size,
            self.hidden_size,
            self.layers,
            self.heads,
            self.kv_heads,
            self.head_dim,
            self.trained_context,
        ];
        if sizes.contains(&0) || !self.heads.is_multiple_of(self.kv_heads) || self.layers > 1024 {
            return bad("sizes must be positive, heads a multiple of kv_heads".into());
        }
        if self.stop_token_ids.is_empty()
            || self
                .stop_token_ids
                .iter()
                .any(|&t| t as usize >= self.vocab_size)
        {
            return bad("stop_token_ids must be non-empty ids inside the vocabulary".into());
        }
        Ok(())
    }

    pub fn speaks(&self, lang: &str) -> bool {
        self.languages.iter().any(|l| l == lang)
    }
}
