//! ROI attention: the crop each frame is processed on and the model size for it.
//!
//! This slice always processes the full frame; the crop -> model size rule (area
//! below the threshold -> 320, else 640) is already the real one so that external
//! and auto-focus ROIs only add sources of crops.

use orion_protocol::{NormRect, PixelRect, RoiProcessing};

#[derive(Debug, Clone)]
pub struct RoiAttention {
    width: u32,
    height: u32,
    small_roi_threshold_px: u64,
}

impl RoiAttention {
    pub fn new(width: u32, height: u32, small_roi_threshold_px: u64) -> Self {
        Self {
            width,
            height,
            small_roi_threshold_px,
        }
    }

    /// The crop for the next frame.
    pub fn process(&self) -> RoiProcessing {
        let crop = PixelRect {
            x: 0,
            y: 0,
            width: self.width,
            height: self.height,
        };
        RoiProcessing {
            source: "full_frame".into(),
            crop,
            crop_normalized: NormRect {
                x: 0.0,
                y: 0.0,
                width: 1.0,
                height: 1.0,
            },
            target_size: self.target_size(&crop),
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

    #[test]
    fn full_frame_covers_the_frame_and_picks_size_by_area() {
        let roi = RoiAttention::new(640, 480, 320 * 320);
        let p = roi.process();
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
        let small = RoiAttention::new(320, 240, 320 * 320);
        assert_eq!(small.process().target_size, 320);
        let edge = PixelRect {
            x: 0,
            y: 0,
            width: 320,
            height: 320,
        };
        assert_eq!(roi.target_size(&edge), 640, "threshold itself goes to 640");
    }
}
