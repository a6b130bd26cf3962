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
    pub intermediate_size: usize,
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
    /// How the weights are stored in `model.onnx`: `f32`, `q8_0` (8-bit blocks of 32, kept a
    /// byte a weight by cabin's ops), `q4_0` (4-bit blocks of 32 that tract keeps 4-bit in
    /// memory) or `q4_1` (a GGUF's Q4_1 layers kept as they are, see `onnx/lm/build_lm.py`).
    /// Folders from before the field are `f32`.
    #[serde(default = "f32_weights")]
    pub quantisation: String,
}

/// The weight formats `build_lm.py --quant` writes.
pub const QUANTISATIONS: [&str; 4] = ["f32", "q8_0", "q4_0", "q4_1"];

fn f32_weights() -> String {
    "f32".into()
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
        if !QUANTISATIONS.contains(&self.quantisation.as_str()) {
            return bad(format!(
                "quantisation {:?}; known: {}",
                self.quantisation,
                QUANTISATIONS.join(", ")
            ));
        }
        let sizes = [
            self.vocab_size,
            self.hidden_size,
            self.layers,
            self.heads,
            self.kv_heads,
            self.head_dim,
            self.intermediate_size,
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

    /// Bytes the weights take in memory once loaded (tract keeps 4-bit blocks as they are:
    /// 18 bytes per 32 weights; `q4_1` adds a 4-byte offset per block of the layers and a
    /// second level for the head). A planning figure for `cabin-lm info`, not a measurement.
    pub fn weight_bytes(&self) -> u64 {
        let (h, f, v) = (
            self.hidden_size as u64,
            self.intermediate_size as u64,
            self.vocab_size as u64,
        );
        let kv = (self.kv_heads * self.head_dim) as u64;
        let q = (self.heads * self.head_dim) as u64;
        let per_layer = h * q + 2 * h * kv + q * h + 3 * h * f;
        let layers = self.layers as u64 * per_layer;
        // the embedding table, and the head (a second copy when tied, see build_lm.py)
        let table = v * h;
        let norms = (2 * self.layers as u64 + 1) * h * 4;
        let blocks = |weights: u64, bytes_per_block: u64| weights / 32 * bytes_per_block;
        norms
            + match self.quantisation.as_str() {
                // codes and an f16 scale a block (the 8-bit gather keeps f32 scales), a Q4_1
                // layer's f16 minimum besides
                "q4_0" => blocks(layers + 2 * table, 18),
                "q8_0" => blocks(layers + table, 32 + 2) + blocks(table, 32 + 4),
                "q4_1" => blocks(layers, 18 + 2) + blocks(table, 18) + blocks(table, 2 * 18),
                _ => (layers + 2 * table) * 4,
            }
    }

    pub fn speaks(&self, lang: &str) -> bool {
        self.languages.iter().any(|l| l == lang)
    }
}
