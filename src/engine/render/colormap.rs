//! Colour maps for heatmaps and landscapes, as piecewise-linear ramps through
//! anchor colours. `shaders/field.wgsl` holds the same ramps for the GPU; this
//! file is its reference.

/// A named colour map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ColorMap {
    /// Perceptually uniform dark-blue to yellow (matplotlib's viridis, 9 anchors).
    Viridis,
    /// Diverging blue - white - red (ColorBrewer RdBu reversed), for values in
    /// `[-1, 1]` such as cosine similarities: negative blue, zero white, positive red.
    Diverging,
}

const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [71, 44, 122],
    [59, 81, 139],
    [44, 113, 142],
    [33, 144, 141],
    [39, 173, 129],
    [92, 200, 99],
    [170, 220, 50],
    [253, 231, 37],
];

const DIVERGING: [[u8; 3]; 5] = [
    [33, 102, 172],
    [146, 197, 222],
    [247, 247, 247],
    [244, 165, 130],
    [178, 24, 43],
];

impl ColorMap {
    /// The anchors, evenly spaced over `[0, 1]`.
    pub fn anchors(self) -> &'static [[u8; 3]] {
        match self {
            Self::Viridis => &VIRIDIS,
            Self::Diverging => &DIVERGING,
        }
    }

    /// Index used by the shader's `map_id` uniform.
    pub fn shader_id(self) -> u32 {
        match self {
            Self::Viridis => 0,
            Self::Diverging => 1,
        }
    }

    /// The colour at `u` in `[0, 1]` (clamped; NaN maps to mid-grey).
    pub fn at(self, u: f32) -> [u8; 3] {
        if u.is_nan() {
            return [128, 128, 128];
        }
        let a = self.anchors();
        let x = u.clamp(0.0, 1.0) * (a.len() - 1) as f32;
        let i = (x.floor() as usize).min(a.len() - 2);
        let f = x - i as f32;
        let mut out = [0u8; 3];
        for c in 0..3 {
            let v = a[i][c] as f32 * (1.0 - f) + a[i + 1][c] as f32 * f;
            out[c] = (v + 0.5).floor().clamp(0.0, 255.0) as u8;
        }
        out
    }

    /// The colour of `value` on the scale `[lo, hi]`.
    pub fn map(self, value: f32, lo: f32, hi: f32) -> [u8; 3] {
        let span = hi - lo;
        let u = if span > 0.0 { (value - lo) / span } else { 0.5 };
        self.at(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_and_middle_hit_the_anchors() {
        assert_eq!(ColorMap::Viridis.at(0.0), VIRIDIS[0]);
        assert_eq!(ColorMap::Viridis.at(1.0), VIRIDIS[8]);
        assert_eq!(ColorMap::Viridis.at(0.5), VIRIDIS[4]);
        assert_eq!(ColorMap::Diverging.map(0.0, -1.0, 1.0), [247, 247, 247]);
        assert_eq!(ColorMap::Diverging.map(-1.0, -1.0, 1.0), DIVERGING[0]);
        assert_eq!(ColorMap::Diverging.map(3.0, -1.0, 1.0), DIVERGING[4]);
        assert_eq!(ColorMap::Viridis.at(f32::NAN), [128, 128, 128]);
    }

    #[test]
    fn interpolates_between_anchors() {
        // halfway between the first two diverging anchors
        assert_eq!(ColorMap::Diverging.at(0.125), [90, 150, 197]);
    }
}
