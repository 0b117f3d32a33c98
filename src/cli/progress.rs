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

/// Whether a plain progress line is due at `step` of `total`: only when stderr is
/// not a terminal (so the bars are hidden, e.g. in a log file), about 20 lines per job.
pub fn log_line_due(step: u64, total: u64) -> bool {
    use std::io::IsTerminal;
    let every = (total / 20).max(1);
    !std::io::stderr().is_terminal() && (step.is_multiple_of(every) || step == total)
}
