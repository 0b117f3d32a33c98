//! Progress bars for long jobs (hidden when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar with a position, rate, ETA and a message slot.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>8} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb
}
