//! The colours of series that stand for one model each (experts, runs), the
//! same in every view: expert 1 is the same blue in the Task-vectors view,
//! the Train view and the Teaching view.

use egui::Color32;

const SERIES: [[u8; 3]; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];

/// The colour of series `i` (0-based; the palette repeats after 8).
pub fn series_color(i: usize) -> Color32 {
    let [r, g, b] = SERIES[i % SERIES.len()];
    Color32::from_rgb(r, g, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_distinct_colours_then_again() {
        let all: std::collections::HashSet<_> = (0..8).map(series_color).collect();
        assert_eq!(all.len(), 8);
        assert_eq!(series_color(9), series_color(1));
    }
}
