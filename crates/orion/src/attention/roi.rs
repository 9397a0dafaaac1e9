//! ROI attention: the crop each accepted frame is processed on and the model input
//! size for it.
//!
//! Priority: external ROIs (from `set_attention_rois`, merged into their bounding
//! box) > the auto-focus suggestion (if enabled) > the full frame. The crop's area in
//! pixels picks the model input: below `small_roi_threshold_px` -> 320, else 640.
//! Shared behind a mutex by the frame consumer (once per accepted frame), the
//! result handler (auto-focus feedback) and the control plane; every call is short.

use orion_protocol::{NormRect, PixelRect, RoiProcessing};
use serde::{Deserialize, Serialize};

use super::autofocus::{AutoFocus, clip};
use crate::config::RoisConfig;

/// Most external ROIs accepted at once.
pub const MAX_EXTERNAL_ROIS: usize = 16;
/// Tolerance for `x + width <= 1` on values that went through decimal JSON.
const EPS: f64 = 1e-9;

/// An external ROI as the `set_attention_rois` command gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalRoi {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ExternalRoi {
    fn rect(&self) -> NormRect {
        NormRect {
            x: self.x,
            y: self.y,
            width: self.width,
            height: self.height,
        }
    }

    /// Checks the normalized-coordinate rules; the message names the broken one.
    pub fn validate(&self) -> Result<(), String> {
        let vals = [
            ("x", self.x),
            ("y", self.y),
            ("width", self.width),
            ("height", self.height),
        ];
        if let Some((k, v)) = vals.iter().find(|(_, v)| !v.is_finite()) {
            return Err(format!("{k} = {v} is not a number"));
        }
        if self.x < 0.0 || self.y < 0.0 {
            return Err(format!(
                "x and y must be >= 0 (got x = {}, y = {})",
                self.x, self.y
            ));
        }
        if self.width <= 0.0 || self.height <= 0.0 {
            return Err(format!(
                "width and height must be > 0 (got width = {}, height = {})",
                self.width, self.height
            ));
        }
        if self.x + self.width > 1.0 + EPS {
            return Err(format!(
                "x + width must be <= 1 (got {})",
                self.x + self.width
            ));
        }
        if self.y + self.height > 1.0 + EPS {
            return Err(format!(
                "y + height must be <= 1 (got {})",
                self.y + self.height
            ));
        }
        if self.name.as_ref().is_some_and(|n| n.len() > 64) {
            return Err("name must be at most 64 characters".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct RoiAttention {
    width: u32,
    height: u32,
    small_roi_threshold_px: u64,
    min_crop_px: u32,
    external: Vec<ExternalRoi>,
    pub auto_focus: AutoFocus,
}

impl RoiAttention {
    /// The ROI attention of one camera's config (its frame size and `rois`).
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self::new(config.stream.width, config.stream.height, &config.rois)
    }

    pub fn new(width: u32, height: u32, config: &RoisConfig) -> Self {
        Self {
            width,
            height,
            small_roi_threshold_px: config.small_roi_threshold_px,
            min_crop_px: config.min_crop_px,
            external: Vec::new(),
            auto_focus: AutoFocus::new(config.auto_focus.clone()),
        }
    }

    /// Replaces the external ROIs; all or nothing: on any invalid ROI nothing
    /// changes and the error names it.
    pub fn set_external(&mut self, rois: Vec<ExternalRoi>) -> Result<(), String> {
        if rois.is_empty() {
            return Err(
                "rois must hold at least one ROI (use clear_attention_rois to remove them)".into(),
            );
        }
        if rois.len() > MAX_EXTERNAL_ROIS {
            return Err(format!(
                "{} ROIs given; at most {MAX_EXTERNAL_ROIS} allowed",
                rois.len()
            ));
        }
        for (i, r) in rois.iter().enumerate() {
            r.validate().map_err(|e| format!("rois[{i}]: {e}"))?;
        }
        self.external = rois;
        Ok(())
    }

    pub fn clear_external(&mut self) {
        self.external.clear();
    }

    pub fn external(&self) -> &[ExternalRoi] {
        &self.external
    }

    /// Bounding box of the external ROIs.
    pub fn merged_external(&self) -> Option<NormRect> {
        let mut it = self.external.iter().map(ExternalRoi::rect);
        let first = it.next()?;
        Some(it.fold(first, |a, b| {
            let x0 = a.x.min(b.x);
            let y0 = a.y.min(b.y);
            let x1 = (a.x + a.width).max(b.x + b.width);
            let y1 = (a.y + a.height).max(b.y + b.height);
            NormRect {
                x: x0,
                y: y0,
                width: x1 - x0,
                height: y1 - y0,
            }
        }))
    }

    /// The crop for the next frame.
    pub fn process(&mut self) -> RoiProcessing {
        if let Some(r) = self.merged_external() {
            return self.processing(r, "external");
        }
        if let Some(r) = self.auto_focus.current() {
            self.auto_focus.record_applied();
            return self.processing(r, "auto_focus");
        }
        self.processing(
            NormRect {
                x: 0.0,
                y: 0.0,
                width: 1.0,
                height: 1.0,
            },
            "full_frame",
        )
    }

    fn processing(&self, r: NormRect, source: &str) -> RoiProcessing {
        let crop = self.pixel_crop(clip(r));
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        RoiProcessing {
            source: source.into(),
            crop,
            crop_normalized: NormRect {
                x: f64::from(crop.x) / w,
                y: f64::from(crop.y) / h,
                width: f64::from(crop.width) / w,
                height: f64::from(crop.height) / h,
            },
            target_size: self.target_size(&crop),
        }
    }

    /// Normalized -> pixels, rounded outwards, at least `min_crop_px` on a side
    /// (grown around the center), inside the frame.
    fn pixel_crop(&self, r: NormRect) -> PixelRect {
        let (fw, fh) = (f64::from(self.width), f64::from(self.height));
        let axis = |start: f64, len: f64, full: u32| -> (u32, u32) {
            let total = f64::from(full);
            let mut a = (start * total).floor().clamp(0.0, total);
            let mut b = ((start + len) * total).ceil().clamp(0.0, total);
            let min = f64::from(self.min_crop_px.min(full));
            if b - a < min {
                let center = (a + b) / 2.0;
                a = (center - min / 2.0).floor().clamp(0.0, total - min);
                b = a + min;
            }
            (a as u32, (b - a) as u32)
        };
        let (x, width) = axis(r.x, r.width, self.width);
        let (y, height) = axis(r.y, r.height, self.height);
        debug_assert!(f64::from(x + width) <= fw && f64::from(y + height) <= fh);
        PixelRect {
            x,
            y,
            width,
            height,
        }
    }

    /// 320 for crops smaller than the threshold, 640 otherwise.
    pub fn target_size(&self, crop: &PixelRect) -> u32 {
        let area = u64::from(crop.width) * u64::from(crop.height);
        if area < self.small_roi_threshold_px {
            320
        } else {
            640
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AutoFocusConfig;

    fn roi(x: f64, y: f64, w: f64, h: f64) -> ExternalRoi {
        ExternalRoi {
            x,
            y,
            width: w,
            height: h,
            name: None,
        }
    }

    fn attention() -> RoiAttention {
        RoiAttention::new(640, 480, &RoisConfig::default())
    }

    #[test]
    fn full_frame_by_default_with_the_640_model() {
        let p = attention().process();
        assert_eq!(p.source, "full_frame");
        assert_eq!(
            p.crop,
            PixelRect {
                x: 0,
                y: 0,
                width: 640,
                height: 480
            }
        );
        assert_eq!(p.target_size, 640);
    }

    #[test]
    fn external_rois_merge_and_pick_the_model_by_area() {
        let mut a = attention();
        a.set_external(vec![roi(0.1, 0.1, 0.1, 0.1), roi(0.3, 0.2, 0.1, 0.2)])
            .unwrap();
        let p = a.process();
        assert_eq!(p.source, "external");
        // merged: x 0.1..0.4, y 0.1..0.4 -> 64..256 x 48..192 = 192 x 144 px < 320*320
        assert_eq!(
            p.crop,
            PixelRect {
                x: 64,
                y: 48,
                width: 192,
                height: 144
            }
        );
        assert_eq!(p.target_size, 320);
        a.set_external(vec![roi(0.0, 0.0, 0.8, 0.9)]).unwrap();
        assert_eq!(a.process().target_size, 640);
        let edge = PixelRect {
            x: 0,
            y: 0,
            width: 320,
            height: 320,
        };
        assert_eq!(
            a.target_size(&edge),
            640,
            "the threshold itself goes to 640"
        );
    }

    #[test]
    fn invalid_rois_are_refused_and_change_nothing() {
        let mut a = attention();
        a.set_external(vec![roi(0.1, 0.1, 0.2, 0.2)]).unwrap();
        for (bad, msg) in [
            (roi(-0.1, 0.0, 0.2, 0.2), "x and y must be >= 0"),
            (roi(0.0, 0.0, 0.0, 0.2), "width and height must be > 0"),
            (roi(0.9, 0.0, 0.2, 0.2), "x + width must be <= 1"),
            (roi(0.0, 0.5, 0.2, 0.6), "y + height must be <= 1"),
            (roi(f64::NAN, 0.0, 0.2, 0.2), "not a number"),
        ] {
            let e = a
                .set_external(vec![roi(0.0, 0.0, 0.5, 0.5), bad])
                .unwrap_err();
            assert!(e.starts_with("rois[1]: ") && e.contains(msg), "{e}");
        }
        assert!(a.set_external(vec![]).is_err());
        assert!(a.set_external(vec![roi(0.0, 0.0, 0.1, 0.1); 17]).is_err());
        assert_eq!(a.external(), &[roi(0.1, 0.1, 0.2, 0.2)], "unchanged");
    }

    #[test]
    fn tiny_rois_get_a_minimum_crop_inside_the_frame() {
        let mut a = attention();
        a.set_external(vec![roi(0.999, 0.999, 0.001, 0.001)])
            .unwrap();
        let c = a.process().crop;
        assert_eq!((c.width, c.height), (32, 32));
        assert!(c.x + c.width <= 640 && c.y + c.height <= 480, "{c:?}");
    }

    #[test]
    fn priority_external_then_auto_focus_then_full_frame() {
        let mut a = RoiAttention::new(
            640,
            480,
            &RoisConfig {
                auto_focus: AutoFocusConfig {
                    enabled: true,
                    ..AutoFocusConfig::default()
                },
                ..RoisConfig::default()
            },
        );
        a.auto_focus.observe(Some(NormRect {
            x: 0.5,
            y: 0.5,
            width: 0.25,
            height: 0.25,
        }));
        let p = a.process();
        assert_eq!(p.source, "auto_focus");
        assert_eq!(
            p.crop,
            PixelRect {
                x: 320,
                y: 240,
                width: 160,
                height: 120
            }
        );
        a.set_external(vec![roi(0.0, 0.0, 0.5, 0.5)]).unwrap();
        assert_eq!(a.process().source, "external");
        a.clear_external();
        assert_eq!(a.process().source, "auto_focus");
        a.auto_focus.set_enabled(false);
        assert_eq!(a.process().source, "full_frame");
    }
}
