//! The display stage: a learned upscaler a model folder may carry in `upscaler/`, the role of
//! diffusers' SD x4 upscaler as one feed-forward network.
//!
//! ```text
//! upscaler/model.onnx   input `image` [1,3,H,W] f32 in -1..1 (the VAE decoder's range, H and W
//!                       free) → output `upscaled` [1,3,s*H,s*W], about -1..1
//! upscaler/config.json  {"_class_name": "CabinUpscaler", "scale": s, "in_channels": 3,
//!                        "out_channels": 3, "input": "image", "output": "upscaled",
//!                        "value_range": [-1.0, 1.0]}
//! ```
//!
//! The model draws at a small native size; lifting its picture with a network trained for it
//! leaves the display fit only a crop or a small resize, where plain resizing would stretch
//! the picture ~6x and blur it.
//!
//! Memory: tract runs each transposed convolution as a product into a column buffer (432
//! floats per input pixel for the x6 network's 12x12 kernels) that is then summed into place.
//! At 128x320 one run of the real-size network peaks at ~100 MiB of live heap, its output
//! included (`examples/display_stage.rs`). A larger picture runs in side-by-side tiles of at
//! most [`TILE_INPUT_PIXELS`] that overlap by more than the network sees ([`TILE_OVERLAP`]),
//! so the result is the same as one run and the intermediates stay under ~150 MB. Tiling the
//! native size too would save ~40 MiB for ~10 % more time (the overlap is computed twice).

use std::path::{Path, PathBuf};

use serde_json::Value;
use tract_onnx::prelude::*;

use super::EngineError;
use super::net::Net;

/// The folder inside a model folder, and its two files.
pub const FOLDER: &str = "upscaler";
pub const WEIGHTS: &str = "upscaler/model.onnx";
pub const CONFIG: &str = "upscaler/config.json";
/// The largest scale accepted: 16x of a 128-pixel side is already past any head-unit display.
pub const MAX_SCALE: usize = 16;
/// Input pixels per tile at most (128 rows x 448 columns, ~140 MiB of intermediates for the
/// x6 network): the native 128x320 runs in one piece. See the module's doc.
pub const TILE_INPUT_PIXELS: usize = 128 * 448;
/// Input columns a tile runs beyond the part it keeps, on each inner side. cabin's upscaler
/// sees ±14 input pixels (a 2x2 stride-2 convolution, six 3x3 convolutions at half size, two
/// transposed convolutions); even, so every tile keeps the stride-2 grid of the whole picture.
/// `config.json` may set `"tile_overlap"` for a network that sees further.
pub const TILE_OVERLAP: usize = 16;

/// What `upscaler/config.json` says.
#[derive(Debug, Clone, PartialEq)]
pub struct UpscalerConfig {
    pub scale: usize,
    pub input: String,
    pub output: String,
    /// Input columns of context each tile gets ([`TILE_OVERLAP`] unless the config says).
    pub tile_overlap: usize,
}

impl UpscalerConfig {
    /// Checks the config's text; `file` names it in every message.
    pub fn parse(text: &str, file: &str) -> Result<Self, EngineError> {
        let bad = |what: String| EngineError::Model(format!("{file}: {what}"));
        let json: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if !json.is_object() {
            return Err(bad("not a JSON object".into()));
        }
        let scale = match &json["scale"] {
            Value::Null => return Err(bad("`scale` is missing".into())),
            v => v
                .as_u64()
                .and_then(|s| usize::try_from(s).ok())
                .filter(|s| (1..=MAX_SCALE).contains(s))
                .ok_or_else(|| {
                    bad(format!(
                        "`scale` must be an integer in 1..={MAX_SCALE}, got {v}"
                    ))
                })?,
        };
        let name = |key: &str| -> Result<String, EngineError> {
            match &json[key] {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                Value::Null => Err(bad(format!("`{key}` (the tensor's name) is missing"))),
                v => Err(bad(format!("`{key}` must be a tensor name, got {v}"))),
            }
        };
        let (input, output) = (name("input")?, name("output")?);
        // The pipeline hands over and reads back RGB in -1..1: anything else would be a
        // network trained for another picture, so it is refused rather than run.
        for key in ["in_channels", "out_channels"] {
            match &json[key] {
                Value::Null => {}
                v if v.as_u64() == Some(3) => {}
                v => return Err(bad(format!("`{key}` must be 3 (RGB), got {v}"))),
            }
        }
        match &json["value_range"] {
            Value::Null => {}
            Value::Array(range)
                if range.len() == 2
                    && range[0].as_f64() == Some(-1.0)
                    && range[1].as_f64() == Some(1.0) => {}
            v => return Err(bad(format!("`value_range` must be [-1.0, 1.0], got {v}"))),
        }
        let tile_overlap = match &json["tile_overlap"] {
            Value::Null => TILE_OVERLAP,
            v => v
                .as_u64()
                .and_then(|o| usize::try_from(o).ok())
                .filter(|o| o % 2 == 0 && *o <= 256)
                .ok_or_else(|| {
                    bad(format!(
                        "`tile_overlap` must be an even number of pixels up to 256, got {v}"
                    ))
                })?,
        };
        Ok(Self {
            scale,
            input,
            output,
            tile_overlap,
        })
    }
}

/// A loaded display stage.
pub struct Upscaler {
    pub config: UpscalerConfig,
    net: Net,
    tile_input_pixels: usize,
}

impl Upscaler {
    /// Loads `model.onnx` and `config.json` (full paths, already checked against the model's
    /// manifest by the caller); `config_name` is how messages name the config.
    pub(crate) fn load(
        weights: &Path,
        config: &Path,
        config_name: &str,
        threads: usize,
    ) -> Result<Self, EngineError> {
        if !config.exists() {
            return Err(EngineError::Model(format!("{config_name} is missing")));
        }
        let text = std::fs::read_to_string(config).map_err(|e| EngineError::io(config, e))?;
        let config = UpscalerConfig::parse(&text, config_name)?;
        let net = Net::load(weights, "upscaler", threads)?;
        let mismatch = |what: &str, name: &str, have: Vec<&str>| {
            EngineError::Model(format!(
                "{config_name} names the {what} `{name}`, but {} has {}",
                weights.display(),
                have.join(", ")
            ))
        };
        let inputs: Vec<&str> = net.inputs.iter().map(|i| i.name.as_str()).collect();
        if !net.has_input(&config.input) {
            return Err(mismatch("input", &config.input, inputs));
        }
        if inputs.len() != 1 {
            return Err(EngineError::Model(format!(
                "{} must take the picture alone, but it takes {}",
                weights.display(),
                inputs.join(", ")
            )));
        }
        if !net.output_names().contains(&config.output) {
            let have = net.output_names().iter().map(String::as_str).collect();
            return Err(mismatch("output", &config.output, have));
        }
        Ok(Self {
            config,
            net,
            tile_input_pixels: TILE_INPUT_PIXELS,
        })
    }

    /// An `upscaler/`-style folder on its own, unverified (benchmarks and tests).
    pub fn load_folder(folder: &Path, threads: usize) -> Result<Self, EngineError> {
        super::net::heap::keep_freed_memory();
        let [weights, config]: [PathBuf; 2] =
            ["model.onnx", "config.json"].map(|file| folder.join(file));
        let name = config.display().to_string();
        Self::load(&weights, &config, &name, threads.max(1))
    }

    pub fn scale(&self) -> usize {
        self.config.scale
    }

    /// Input pixels per tile at most (for measurements; `usize::MAX` runs in one piece).
    pub fn with_tile_input_pixels(mut self, pixels: usize) -> Self {
        self.tile_input_pixels = pixels.max(1);
        self
    }

    /// Runs the network on a planar RGB picture (`[3, height, width]`, -1..1) and returns its
    /// output `[1, 3, scale*height, scale*width]` as the network wrote it (not clamped).
    pub fn upscale(
        &self,
        planes: Vec<f32>,
        height: usize,
        width: usize,
    ) -> Result<Tensor, EngineError> {
        if height == 0
            || width == 0
            || Some(planes.len()) != height.checked_mul(width).and_then(|p| p.checked_mul(3))
        {
            return Err(fail(format!(
                "{} values are not a 3x{height}x{width} picture",
                planes.len()
            )));
        }
        let tiles = tiles(
            width,
            height,
            self.config.tile_overlap,
            self.tile_input_pixels,
        );
        if tiles.len() <= 1 {
            return self.run(planes, height, width);
        }
        let s = self.config.scale;
        let (out_h, out_w) = (s * height, s * width);
        let mut upscaled = Tensor::zero::<f32>(&[1, 3, out_h, out_w]).map_err(fail)?;
        let mut view = upscaled.try_as_plain_ram_mut().map_err(fail)?;
        let out = view.as_slice_mut::<f32>().map_err(fail)?;
        for tile in &tiles {
            let mut part = Vec::with_capacity(3 * height * tile.width);
            for row in planes.chunks_exact(width) {
                part.extend_from_slice(&row[tile.start..tile.start + tile.width]);
            }
            let piece = self.run(part, height, tile.width)?;
            let piece = piece.try_as_plain_ram().map_err(fail)?;
            let piece = piece.as_slice::<f32>().map_err(fail)?;
            // Keep the tile's own columns; its overlap only gave them their context.
            let (from, len) = (s * (tile.keep.start - tile.start), s * tile.keep.len());
            for (dst, src) in out
                .chunks_exact_mut(out_w)
                .zip(piece.chunks_exact(s * tile.width))
            {
                dst[s * tile.keep.start..][..len].copy_from_slice(&src[from..][..len]);
            }
        }
        Ok(upscaled)
    }

    /// One run of the network on the whole of `planes`.
    fn run(&self, planes: Vec<f32>, height: usize, width: usize) -> Result<Tensor, EngineError> {
        let input = tract_ndarray::Array4::from_shape_vec((1, 3, height, width), planes)
            .map_err(fail)?
            .into_tensor();
        let mut outputs = self.net.run(vec![(self.config.input.as_str(), input)])?;
        let upscaled = outputs
            .remove(&self.config.output)
            .ok_or_else(|| fail(format!("no output `{}`", self.config.output)))?;
        let s = self.config.scale;
        let want = [1, 3, s * height, s * width];
        if upscaled.shape() != want || upscaled.datum_type() != f32::datum_type() {
            return Err(EngineError::Model(format!(
                "the upscaler turned a {width}x{height} picture into {:?} {:?}; its config says \
                 scale {s}, so {want:?} f32 was expected",
                upscaled.datum_type(),
                upscaled.shape(),
            )));
        }
        Ok(upscaled)
    }
}

fn fail(e: impl std::fmt::Display) -> EngineError {
    EngineError::Inference {
        stage: "upscaler",
        message: e.to_string(),
    }
}

/// Input columns `start..start + width` run through the network; `keep` of them are used.
#[derive(Debug, Clone, PartialEq)]
struct Tile {
    start: usize,
    width: usize,
    keep: std::ops::Range<usize>,
}

/// Side-by-side tiles of one width (so one tract plan serves them all), each with `overlap`
/// columns of context beyond what it keeps, no more than `max_pixels` input pixels each where
/// that allows. One tile when the picture fits, is too narrow to gain, or cannot keep the
/// stride-2 grid (odd widths).
fn tiles(width: usize, height: usize, overlap: usize, max_pixels: usize) -> Vec<Tile> {
    let whole = vec![Tile {
        start: 0,
        width,
        keep: 0..width,
    }];
    let max_width = max_pixels / height.max(1);
    if width.saturating_mul(height) <= max_pixels || width % 2 == 1 || max_width < 2 * overlap + 2 {
        return whole;
    }
    let count = width.div_ceil(max_width - 2 * overlap);
    let keep = width.div_ceil(count).next_multiple_of(2);
    let tile_width = keep + 2 * overlap;
    if tile_width >= width {
        return whole;
    }
    (0..count)
        .map(|i| {
            let keep = i * keep..((i + 1) * keep).min(width);
            let start = keep.start.saturating_sub(overlap).min(width - tile_width);
            Tile {
                start,
                width: tile_width,
                keep,
            }
        })
        .filter(|t| !t.keep.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../onnx/fixtures/tiny-upscaler")
    }

    fn read_f32(name: &str) -> Vec<f32> {
        let bytes = std::fs::read(fixture().join("reference").join(name)).unwrap();
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    #[test]
    fn tract_matches_onnxruntime_on_the_fixture() {
        let input = read_f32("input.f32");
        let want = read_f32("output.f32");
        assert_eq!((input.len(), want.len()), (3 * 16 * 40, 3 * 32 * 80));
        for threads in [1, 2] {
            let upscaler = Upscaler::load_folder(&fixture(), threads).unwrap();
            assert_eq!(upscaler.scale(), 2);
            let got = upscaler.upscale(input.clone(), 16, 40).unwrap();
            assert_eq!(got.shape(), [1, 3, 32, 80]);
            let got = got.try_as_plain_ram().unwrap();
            let got = got.as_slice::<f32>().unwrap();
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst <= 1e-4, "{threads} thread(s): max |diff| {worst}");
        }
    }

    #[test]
    fn configs_are_checked_and_named() {
        let file = "upscaler/config.json";
        let good = r#"{"_class_name": "CabinUpscaler", "scale": 6, "in_channels": 3,
            "out_channels": 3, "input": "image", "output": "upscaled", "value_range": [-1.0, 1.0]}"#;
        assert_eq!(
            UpscalerConfig::parse(good, file).unwrap(),
            UpscalerConfig {
                scale: 6,
                input: "image".into(),
                output: "upscaled".into(),
                tile_overlap: TILE_OVERLAP,
            }
        );
        let cases = [
            (
                r#"{"scale": 0, "input": "image", "output": "upscaled"}"#,
                "`scale` must be",
            ),
            (
                r#"{"scale": 17, "input": "image", "output": "upscaled"}"#,
                "`scale` must be",
            ),
            (
                r#"{"scale": 2.5, "input": "image", "output": "upscaled"}"#,
                "`scale` must be",
            ),
            (
                r#"{"scale": "6", "input": "image", "output": "upscaled"}"#,
                "`scale` must be",
            ),
            (
                r#"{"input": "image", "output": "upscaled"}"#,
                "`scale` is missing",
            ),
            (r#"{"scale": 2, "output": "upscaled"}"#, "`input`"),
            (
                r#"{"scale": 2, "input": "", "output": "upscaled"}"#,
                "`input`",
            ),
            (r#"{"scale": 2, "input": "image"}"#, "`output`"),
            (
                r#"{"scale": 2, "input": "image", "output": "o", "in_channels": 4}"#,
                "in_channels",
            ),
            (
                r#"{"scale": 2, "input": "i", "output": "o", "value_range": [0, 1]}"#,
                "value_range",
            ),
            (
                r#"{"scale": 2, "input": "i", "output": "o", "tile_overlap": 3}"#,
                "tile_overlap",
            ),
            ("[2]", "not a JSON object"),
            ("{", "EOF"),
        ];
        for (text, needle) in cases {
            match UpscalerConfig::parse(text, file) {
                Err(EngineError::Model(msg)) => {
                    assert!(
                        msg.starts_with(file) && msg.contains(needle),
                        "{text}: {msg}"
                    )
                }
                other => panic!("{text}: expected a model error, got {other:?}"),
            }
        }
    }

    #[test]
    fn tiles_cover_every_column_once_with_context_on_inner_sides() {
        // 320x128 in three tiles of 140 columns.
        let got = tiles(320, 128, 16, 128 * 144);
        let want = [(0, 0..108), (92, 108..216), (180, 216..320)];
        assert_eq!(got.len(), 3);
        for (tile, (start, keep)) in got.iter().zip(want) {
            assert_eq!(
                (tile.start, tile.width, tile.keep.clone()),
                (start, 140, keep)
            );
        }
        for (width, height, overlap, max) in
            [(320, 128, 16, 5000), (1000, 64, 8, 4096), (96, 8, 4, 200)]
        {
            let got = tiles(width, height, overlap, max);
            assert!(got.len() > 1, "{width}x{height}");
            let mut next = 0;
            for tile in &got {
                assert_eq!(tile.keep.start, next);
                assert_eq!(tile.start % 2, 0);
                assert!(tile.start + tile.width <= width);
                // Context on both sides, unless the picture itself ends there.
                assert!(tile.start == 0 || tile.keep.start - tile.start >= overlap);
                let right = tile.start + tile.width;
                assert!(right == width || right - tile.keep.end >= overlap);
                next = tile.keep.end;
            }
            assert_eq!(next, width);
        }
        // Small, odd or too narrow to gain: one piece. The native size needs no tiles.
        assert_eq!(tiles(320, 128, 16, TILE_INPUT_PIXELS).len(), 1);
        assert_eq!(tiles(640, 256, 16, TILE_INPUT_PIXELS).len(), 4);
        assert_eq!(tiles(321, 128, 16, 5000).len(), 1);
        assert_eq!(tiles(40, 16, 16, 100).len(), 1);
    }

    #[test]
    fn tiles_give_what_one_run_gives() {
        let upscaler = Upscaler::load_folder(&fixture(), 1).unwrap();
        let (h, w) = (16, 120);
        let mut rng = crate::rng::NoiseRng::new(5);
        let picture: Vec<f32> = (0..3 * h * w)
            .map(|_| (rng.normal() as f32 * 0.5).clamp(-1.0, 1.0))
            .collect();
        let whole = upscaler.upscale(picture.clone(), h, w).unwrap();
        // 16 rows x 72 columns: three tiles keeping 40 columns each.
        let tiled = upscaler.with_tile_input_pixels(16 * 72);
        assert_eq!(tiles(w, h, TILE_OVERLAP, 16 * 72).len(), 3);
        let max_diff = |a: &Tensor, b: &Tensor| {
            assert_eq!(a.shape(), b.shape());
            let (a, b) = (a.try_as_plain_ram().unwrap(), b.try_as_plain_ram().unwrap());
            let (a, b) = (a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max)
        };
        let pieces = tiled.upscale(picture.clone(), h, w).unwrap();
        let worst = max_diff(&whole, &pieces);
        assert!(worst <= 1e-5, "max |diff| {worst}");
        // Without the overlap the seams show: the comparison can see them.
        let mut seamed = tiled;
        seamed.config.tile_overlap = 0;
        let worst = max_diff(&whole, &seamed.upscale(picture, h, w).unwrap());
        assert!(worst > 1e-2, "max |diff| {worst} without overlap");
    }
}
