//! Auto-focus: turns the workers' `suggested_roi` into the crop for the next frames.
//!
//! Fed by the camera's result handler, read by the frame consumer (through
//! [`super::RoiAttention`]). Pure state, no I/O: every strategy is a small function
//! of the previous state and the new suggestion.

use std::collections::{BTreeMap, VecDeque};

use orion_protocol::NormRect;
use serde::Serialize;

use crate::config::{AutoFocusConfig, AutoFocusStrategy};

/// Suggestions kept for `get_auto_focus_stats` and the velocity strategy.
const HISTORY: usize = 32;

#[derive(Debug, Clone, Default, Serialize)]
pub struct AutoFocusStats {
    /// Results observed while enabled.
    pub observations: u64,
    /// Results that carried a suggestion.
    pub hits: u64,
    /// Results without one.
    pub misses: u64,
    /// Results whose people touched the edge of the crop they were found in
    /// (cut off by it): the next frame went back to the full frame.
    pub cut: u64,
    /// Frames cropped by auto-focus, per strategy in force.
    pub applied: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone)]
pub struct AutoFocus {
    config: AutoFocusConfig,
    current: Option<NormRect>,
    misses_in_row: u32,
    history: VecDeque<NormRect>,
    stats: AutoFocusStats,
}

impl AutoFocus {
    pub fn new(config: AutoFocusConfig) -> Self {
        Self {
            config,
            current: None,
            misses_in_row: 0,
            history: VecDeque::with_capacity(HISTORY),
            stats: AutoFocusStats::default(),
        }
    }

    pub fn config(&self) -> &AutoFocusConfig {
        &self.config
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub fn set_enabled(&mut self, enabled: bool) {
        self.config.enabled = enabled;
        if !enabled {
            self.current = None;
            self.misses_in_row = 0;
        }
    }

    /// Switches strategy and parameters (validated by the caller); keeps the
    /// enabled flag and the history, restarts the current suggestion.
    pub fn set_strategy(&mut self, config: AutoFocusConfig) {
        let enabled = self.config.enabled;
        self.config = AutoFocusConfig { enabled, ..config };
        self.current = None;
        self.misses_in_row = 0;
    }

    pub fn clear_history(&mut self) {
        self.history.clear();
        self.current = None;
        self.misses_in_row = 0;
        self.stats = AutoFocusStats::default();
    }

    /// The crop auto-focus proposes now, if enabled and it has one.
    pub fn current(&self) -> Option<NormRect> {
        self.config.enabled.then_some(self.current).flatten()
    }

    /// Counts a frame cropped by auto-focus.
    pub fn record_applied(&mut self) {
        *self
            .stats
            .applied
            .entry(self.config.strategy.name())
            .or_default() += 1;
    }

    /// Feeds one result's suggestion (`None`: nothing was detected).
    pub fn observe(&mut self, suggestion: Option<NormRect>) {
        self.observe_result(suggestion, false);
    }

    /// Feeds one result: its suggestion, and whether a person touched an edge of
    /// the crop the frame was cut to (inside the frame). A cut-off person is only
    /// partly seen, and a crop fitted to the part seen would cut them more on the
    /// next frame, until they vanish: the next frame goes back to the full frame
    /// instead, where they are seen whole.
    pub fn observe_result(&mut self, suggestion: Option<NormRect>, cut: bool) {
        if !self.config.enabled {
            return;
        }
        self.stats.observations += 1;
        if cut && suggestion.is_some() {
            self.stats.hits += 1;
            self.stats.cut += 1;
            self.misses_in_row = 0;
            self.current = None;
            return;
        }
        let Some(s) = suggestion.filter(valid) else {
            self.stats.misses += 1;
            self.misses_in_row += 1;
            if self.misses_in_row >= self.config.miss_limit {
                // Nobody where we looked: back to the full frame.
                self.current = None;
            }
            return;
        };
        self.stats.hits += 1;
        self.misses_in_row = 0;
        let previous = self.history.back().copied();
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(s);
        let next = match self.config.strategy {
            AutoFocusStrategy::Simple => s,
            AutoFocusStrategy::Smoothing => match self.current {
                Some(c) => blend(c, s, self.config.alpha),
                None => s,
            },
            AutoFocusStrategy::Velocity => match previous {
                Some(p) => expand_along_motion(p, s, &self.config),
                None => s,
            },
        };
        self.current = Some(clip(next));
    }

    pub fn stats(&self) -> serde_json::Value {
        serde_json::json!({
            "enabled": self.config.enabled,
            "strategy": self.config.strategy.name(),
            "observations": self.stats.observations,
            "hits": self.stats.hits,
            "misses": self.stats.misses,
            "cut": self.stats.cut,
            "applied": self.stats.applied,
            "current": self.current(),
            "history_len": self.history.len(),
        })
    }
}

fn valid(r: &NormRect) -> bool {
    [r.x, r.y, r.width, r.height].iter().all(|v| v.is_finite()) && r.width > 0.0 && r.height > 0.0
}

fn blend(old: NormRect, new: NormRect, alpha: f64) -> NormRect {
    let mix = |o: f64, n: f64| alpha * n + (1.0 - alpha) * o;
    NormRect {
        x: mix(old.x, new.x),
        y: mix(old.y, new.y),
        width: mix(old.width, new.width),
        height: mix(old.height, new.height),
    }
}

/// Grows `now` on the side it is moving to, by up to `max_expansion`.
fn expand_along_motion(prev: NormRect, now: NormRect, c: &AutoFocusConfig) -> NormRect {
    let dx = (now.x + now.width / 2.0) - (prev.x + prev.width / 2.0);
    let dy = (now.y + now.height / 2.0) - (prev.y + prev.height / 2.0);
    let speed = dx.hypot(dy);
    if speed <= c.velocity_threshold || speed == 0.0 {
        return now;
    }
    let grow = (speed * c.velocity_factor).min(c.max_expansion);
    let (gx, gy) = (grow * dx.abs() / speed, grow * dy.abs() / speed);
    let mut r = now;
    r.width += gx;
    r.height += gy;
    if dx < 0.0 {
        r.x -= gx;
    }
    if dy < 0.0 {
        r.y -= gy;
    }
    r
}

/// Clips a rectangle to the unit square.
pub fn clip(r: NormRect) -> NormRect {
    let x0 = r.x.clamp(0.0, 1.0);
    let y0 = r.y.clamp(0.0, 1.0);
    let x1 = (r.x + r.width).clamp(0.0, 1.0);
    let y1 = (r.y + r.height).clamp(0.0, 1.0);
    NormRect {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(x: f64, y: f64, w: f64, h: f64) -> NormRect {
        NormRect {
            x,
            y,
            width: w,
            height: h,
        }
    }

    fn af(strategy: AutoFocusStrategy) -> AutoFocus {
        AutoFocus::new(AutoFocusConfig {
            enabled: true,
            strategy,
            ..AutoFocusConfig::default()
        })
    }

    fn close(a: NormRect, b: NormRect) -> bool {
        [
            (a.x, b.x),
            (a.y, b.y),
            (a.width, b.width),
            (a.height, b.height),
        ]
        .iter()
        .all(|(p, q)| (p - q).abs() < 1e-9)
    }

    #[test]
    fn disabled_ignores_suggestions() {
        let mut a = AutoFocus::new(AutoFocusConfig::default());
        a.observe(Some(r(0.1, 0.1, 0.2, 0.2)));
        assert_eq!(a.current(), None);
        assert_eq!(a.stats()["observations"], 0);
    }

    #[test]
    fn simple_uses_the_latest_and_falls_back_after_misses() {
        let mut a = af(AutoFocusStrategy::Simple);
        a.observe(Some(r(0.1, 0.1, 0.2, 0.2)));
        a.observe(Some(r(0.5, 0.5, 0.2, 0.2)));
        assert!(close(a.current().unwrap(), r(0.5, 0.5, 0.2, 0.2)));
        a.observe(None);
        a.observe(None);
        assert!(
            a.current().is_some(),
            "two misses keep the crop (miss_limit 3)"
        );
        a.observe(None);
        assert_eq!(a.current(), None, "third miss: back to the full frame");
        let s = a.stats();
        assert_eq!(
            (s["hits"].as_u64(), s["misses"].as_u64()),
            (Some(2), Some(3))
        );
    }

    #[test]
    fn smoothing_blends_with_alpha() {
        let mut a = af(AutoFocusStrategy::Smoothing);
        a.observe(Some(r(0.0, 0.0, 0.5, 0.5)));
        a.observe(Some(r(0.5, 0.5, 0.5, 0.5)));
        // 0.3 * new + 0.7 * old
        assert!(close(a.current().unwrap(), r(0.15, 0.15, 0.5, 0.5)));
    }

    #[test]
    fn velocity_expands_towards_the_motion() {
        let mut a = af(AutoFocusStrategy::Velocity);
        a.observe(Some(r(0.2, 0.4, 0.2, 0.2)));
        a.observe(Some(r(0.3, 0.4, 0.2, 0.2))); // moving right by 0.1
        let c = a.current().unwrap();
        // grow = min(0.1 * 2.0, 0.2) = 0.2, all of it along +x
        assert!(close(c, r(0.3, 0.4, 0.4, 0.2)), "{c:?}");
        // Slow motion below the threshold: no expansion.
        a.observe(Some(r(0.31, 0.4, 0.2, 0.2)));
        assert!(close(a.current().unwrap(), r(0.31, 0.4, 0.2, 0.2)));
    }

    #[test]
    fn results_stay_inside_the_frame_and_history_is_bounded() {
        let mut a = af(AutoFocusStrategy::Velocity);
        for i in 0..100 {
            let x = 0.9 - (i % 10) as f64 * 0.1;
            a.observe(Some(r(x, 0.0, 0.3, 1.0)));
            let c = a.current().unwrap();
            assert!(
                c.x >= 0.0
                    && c.y >= 0.0
                    && c.x + c.width <= 1.0 + 1e-9
                    && c.y + c.height <= 1.0 + 1e-9
            );
        }
        assert_eq!(a.stats()["history_len"], HISTORY);
        a.record_applied();
        assert_eq!(a.stats()["applied"]["velocity"], 1);
        a.clear_history();
        assert_eq!(a.stats()["history_len"], 0);
        assert_eq!(a.current(), None);
    }

    #[test]
    fn a_person_cut_by_the_crop_sends_the_next_frame_to_the_full_frame() {
        let mut a = AutoFocus::new(AutoFocusConfig {
            enabled: true,
            ..AutoFocusConfig::default()
        });
        a.observe(Some(r(0.1, 0.1, 0.3, 0.6)));
        assert!(a.current().is_some());
        a.observe_result(Some(r(0.2, 0.1, 0.1, 0.6)), true);
        assert_eq!(a.current(), None, "no crop fitted to a cut-off part");
        a.observe(Some(r(0.2, 0.1, 0.3, 0.6)));
        assert!(a.current().is_some(), "seen whole again: cropped again");
        assert_eq!(a.stats()["cut"], 1);
    }
}
