//! From a generated picture to what a display shows: resize with a Lanczos filter, fill the
//! screen's aspect by cropping or extending (never stretching), then quantise to 8 bits with
//! ordered dithering so skies and night gradients show no banding.
//!
//! A model with a display stage (`super::upscaler`) hands over a picture already near the
//! display's size (128x320 x6 = 768x1920 for 720x1920): the fit is then a crop, or a resize
//! by a small factor, and no longer a 6x stretch. The dither only decides how values between
//! two 8-bit levels round (grading and resizing make those); a picture already on 8-bit
//! levels comes through it unchanged.

use image::imageops::{self, FilterType};
use image::{Rgb, Rgb32FImage, RgbImage};

/// How a picture of another aspect ratio fills the display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fit {
    /// Scale to cover the display and cut the overflow evenly (the default).
    #[default]
    Crop,
    /// Scale to fit inside and extend the short side with mirrored edges.
    Extend,
}

impl std::str::FromStr for Fit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "crop" => Ok(Self::Crop),
            "extend" => Ok(Self::Extend),
            other => Err(format!("unknown fit `{other}`; expected crop or extend")),
        }
    }
}

/// The largest display we render for.
pub const MAX_DISPLAY_SIDE: u32 = 8192;

/// Parses `WxH`, e.g. `1920x720`.
pub fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("size `{text}` is not WIDTHxHEIGHT"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("size `{text}` is not WIDTHxHEIGHT"))
    };
    let (w, h) = (parse(w)?, parse(h)?);
    if w == 0 || h == 0 || w > MAX_DISPLAY_SIDE || h > MAX_DISPLAY_SIDE {
        return Err(format!(
            "size {w}x{h} must be 1..={MAX_DISPLAY_SIDE} on each side"
        ));
    }
    Ok((w, h))
}

/// Fits `image` to a `width`×`height` display as 8-bit RGB.
pub fn to_display(image: &Rgb32FImage, width: u32, height: u32, fit: Fit) -> RgbImage {
    let fitted = match fit {
        Fit::Crop => cover_f32(image, width, height),
        Fit::Extend => extend_f32(image, width, height),
    };
    dither(&fitted)
}

fn scaled(w: u32, h: u32, scale: f64) -> (u32, u32) {
    (
        ((f64::from(w) * scale).round() as u32).max(1),
        ((f64::from(h) * scale).round() as u32).max(1),
    )
}

fn cover_f32(image: &Rgb32FImage, width: u32, height: u32) -> Rgb32FImage {
    let (w, h) = image.dimensions();
    let scale = (f64::from(width) / f64::from(w)).max(f64::from(height) / f64::from(h));
    let (sw, sh) = scaled(w, h, scale);
    let (sw, sh) = (sw.max(width), sh.max(height));
    let (x, y) = ((sw - width) / 2, (sh - height) / 2);
    // Already the size (an upscaled picture): crop without a full-size copy first.
    if (sw, sh) == (w, h) {
        return imageops::crop_imm(image, x, y, width, height).to_image();
    }
    let resized = imageops::resize(image, sw, sh, FilterType::Lanczos3);
    imageops::crop_imm(&resized, x, y, width, height).to_image()
}

fn extend_f32(image: &Rgb32FImage, width: u32, height: u32) -> Rgb32FImage {
    let (w, h) = image.dimensions();
    let scale = (f64::from(width) / f64::from(w)).min(f64::from(height) / f64::from(h));
    let (sw, sh) = scaled(w, h, scale);
    let (sw, sh) = (sw.min(width), sh.min(height));
    let resized = imageops::resize(image, sw, sh, FilterType::Lanczos3);
    let (ox, oy) = ((width - sw) / 2, (height - sh) / 2);
    // Mirror the picture into the margins: continues the scene's colours without a seam.
    let mirror = |v: i64, len: i64| -> u32 {
        let period = 2 * len;
        let m = v.rem_euclid(period);
        (if m < len { m } else { period - 1 - m }) as u32
    };
    Rgb32FImage::from_fn(width, height, |x, y| {
        let sx = mirror(i64::from(x) - i64::from(ox), i64::from(sw));
        let sy = mirror(i64::from(y) - i64::from(oy), i64::from(sh));
        *resized.get_pixel(sx, sy)
    })
}

/// 8×8 Bayer matrix, values 0..64.
const BAYER8: [[u8; 8]; 8] = [
    [0, 32, 8, 40, 2, 34, 10, 42],
    [48, 16, 56, 24, 50, 18, 58, 26],
    [12, 44, 4, 36, 14, 46, 6, 38],
    [60, 28, 52, 20, 62, 30, 54, 22],
    [3, 35, 11, 43, 1, 33, 9, 41],
    [51, 19, 59, 27, 49, 17, 57, 25],
    [15, 47, 7, 39, 13, 45, 5, 37],
    [63, 31, 55, 23, 61, 29, 53, 21],
];

/// Ordered dithering to 8 bits: the threshold varies per pixel, so a gradient that falls
/// between two levels becomes a fine pattern whose average is the true value.
pub fn dither(image: &Rgb32FImage) -> RgbImage {
    RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let threshold = (f32::from(BAYER8[(y % 8) as usize][(x % 8) as usize]) + 0.5) / 64.0;
        let Rgb(p) = *image.get_pixel(x, y);
        Rgb(p.map(|v| (v.clamp(0.0, 1.0) * 255.0 + threshold).floor().min(255.0) as u8))
    })
}

/// Scales and centre-crops an 8-bit picture to cover `width`×`height` (img2img input).
pub fn cover(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    if (w, h) == (width, height) {
        return image.clone();
    }
    let scale = (f64::from(width) / f64::from(w)).max(f64::from(height) / f64::from(h));
    let (sw, sh) = scaled(w, h, scale);
    let (sw, sh) = (sw.max(width), sh.max(height));
    let resized = imageops::resize(image, sw, sh, FilterType::Lanczos3);
    imageops::crop_imm(&resized, (sw - width) / 2, (sh - height) / 2, width, height).to_image()
}

/// PNG bytes of `image`.
pub fn encode_png(image: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encoding a PNG into memory cannot fail");
    out.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> Rgb32FImage {
        // A dark night-sky ramp spanning only ~6 levels of 8-bit: the worst case for banding.
        Rgb32FImage::from_fn(w, h, |x, _| {
            let v = 0.05 + 0.025 * x as f32 / (w - 1) as f32;
            Rgb([v, v, v * 1.2])
        })
    }

    #[test]
    fn sizes_and_aspect_are_kept_without_stretch() {
        let src = Rgb32FImage::from_fn(320, 128, |x, y| {
            Rgb([x as f32 / 320.0, y as f32 / 128.0, 0.5])
        });
        for fit in [Fit::Crop, Fit::Extend] {
            let out = to_display(&src, 1920, 720, fit);
            assert_eq!(out.dimensions(), (1920, 720));
        }
        // Crop: scale 6 → 1920x768, 24 rows cut at each edge; the middle row maps to y≈64.
        let out = to_display(&src, 1920, 720, Fit::Crop);
        let mid = out.get_pixel(960, 360)[1] as f32 / 255.0;
        assert!((mid - 0.5).abs() < 0.02, "{mid}");
        // The left edge keeps x≈0 (no horizontal crop at this aspect).
        assert!(out.get_pixel(0, 360)[0] < 6);
    }

    #[test]
    fn an_upscaled_picture_is_only_cropped_and_keeps_its_8_bit_values() {
        // 1/20 of 1920x768 onto 1/20 of 1920x720: two rows cut at top and bottom, no resize,
        // and values already on 8-bit levels come through the dither unchanged.
        let level = |x: u32, y: u32| [(x * 7 + y * 3) % 256, y * 6, 128].map(|v| v as u8);
        let src = Rgb32FImage::from_fn(96, 40, |x, y| Rgb(level(x, y).map(|v| v as f32 / 255.0)));
        let out = to_display(&src, 96, 36, Fit::Crop);
        for (x, y, p) in out.enumerate_pixels() {
            assert_eq!(p.0, level(x, y + 2), "at {x},{y}");
        }
    }

    #[test]
    fn dithering_keeps_the_average_of_a_shallow_gradient() {
        let src = gradient(256, 64);
        let out = dither(&src);
        // Average 8x8 blocks: a dithered ramp tracks the true value within a fraction of a
        // level, where plain rounding is off by up to half a level in steps (bands).
        let mut worst: f32 = 0.0;
        for bx in 0..32 {
            let (mut sum, mut truth) = (0.0, 0.0);
            for y in 0..8 {
                for x in bx * 8..bx * 8 + 8 {
                    sum += f32::from(out.get_pixel(x, y)[0]);
                    truth += src.get_pixel(x, y)[0] * 255.0;
                }
            }
            worst = worst.max(((sum - truth) / 64.0).abs());
        }
        assert!(worst < 0.1, "dithered block mean is off by {worst} levels");
        let rounded_worst = (0..256)
            .map(|x| {
                let v = src.get_pixel(x, 0)[0] * 255.0;
                (v.round() - v).abs()
            })
            .fold(0.0f32, f32::max);
        assert!(
            rounded_worst > 0.4,
            "the test ramp must be one that bands when rounded"
        );
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("1920x720"), Ok((1920, 720)));
        for bad in ["0x720", "100000x720", "1920", "axb", "1920x"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
