//! One parser per kind of count a user types on the command line, each with the
//! limit it enforces before any work: a count outside its range is a usage error
//! (exit 2) naming the limit, never an allocation that aborts or a loop without end.
//! What a file declares (a config's image size, a data file's dimensions) is
//! checked where the file is parsed, in `deme-formats`.

/// Largest batch of images or points in one forward or training step (the
/// engine's own limit for runs, whatever the settings come from).
pub const MAX_BATCH: usize = crate::engine::train::step_settings::MAX_BATCH_SIZE;
/// Most images one command generates or scores.
pub const MAX_IMAGES: usize = 100_000;
/// Most held-out samples an evaluation set holds.
pub const MAX_EVAL_SAMPLES: usize = 1_000_000;
/// Most sampler steps (the number of diffusion timesteps).
pub const MAX_SAMPLER_STEPS: usize = 1000;
/// Most points drawn from a 2D toy distribution.
pub const MAX_TOY_POINTS: usize = 10_000_000;
/// Most timestep ranges (experts) a job splits `[0, T)` into.
pub const MAX_RANGES: usize = 100;
/// Most timesteps in a gradient-similarity heatmap (K x K cells).
pub const MAX_HEATMAP_K: usize = 1000;
/// Most points along one side of a landscape lattice.
pub const MAX_GRID_SIDE: usize = 513;
/// Most optimisation steps of one run.
pub const MAX_STEPS: u64 = 100_000_000;

fn bounded(text: &str, lo: u64, hi: u64, what: &str) -> Result<u64, String> {
    let v: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number ({what}: {lo} to {hi})"))?;
    if !(lo..=hi).contains(&v) {
        return Err(format!("{what} must be between {lo} and {hi}, not {v}"));
    }
    Ok(v)
}

fn bounded_usize(text: &str, lo: usize, hi: usize, what: &str) -> Result<usize, String> {
    bounded(text, lo as u64, hi as u64, what).map(|v| v as usize)
}

/// A batch size: 1 to [`MAX_BATCH`].
pub fn batch_size(text: &str) -> Result<usize, String> {
    bounded_usize(text, 1, MAX_BATCH, "a batch size")
}

/// A number of images to generate or score: 1 to [`MAX_IMAGES`].
pub fn images(text: &str) -> Result<usize, String> {
    bounded_usize(text, 1, MAX_IMAGES, "the number of images")
}

/// A number of images where 0 turns the measurement off: 0 to [`MAX_IMAGES`].
pub fn images_or_none(text: &str) -> Result<usize, String> {
    bounded_usize(text, 0, MAX_IMAGES, "the number of images")
}

/// Held-out samples of an evaluation set: 1 to [`MAX_EVAL_SAMPLES`].
pub fn eval_samples(text: &str) -> Result<usize, String> {
    bounded_usize(text, 1, MAX_EVAL_SAMPLES, "the number of held-out samples")
}

/// Sampler steps: 1 to [`MAX_SAMPLER_STEPS`].
pub fn sampler_steps(text: &str) -> Result<usize, String> {
    bounded_usize(text, 1, MAX_SAMPLER_STEPS, "the number of sampler steps")
}

/// Points drawn from a toy distribution: 2 to [`MAX_TOY_POINTS`].
pub fn toy_points(text: &str) -> Result<usize, String> {
    bounded_usize(text, 2, MAX_TOY_POINTS, "the number of toy points")
}

/// Timestep ranges (experts): 1 to [`MAX_RANGES`].
pub fn ranges(text: &str) -> Result<usize, String> {
    bounded_usize(text, 1, MAX_RANGES, "the number of timestep ranges")
}

/// Timesteps of a gradient-similarity heatmap: 2 to [`MAX_HEATMAP_K`].
pub fn heatmap_k(text: &str) -> Result<usize, String> {
    bounded_usize(text, 2, MAX_HEATMAP_K, "the number of heatmap timesteps")
}

/// Points along one side of a lattice: 2 to [`MAX_GRID_SIDE`].
pub fn grid_side(text: &str) -> Result<usize, String> {
    bounded_usize(
        text,
        2,
        MAX_GRID_SIDE,
        "the number of lattice points per side",
    )
}

/// Size of a random gradient sketch per parameter group: 1 to 2^20.
pub fn sketch_dim(text: &str) -> Result<usize, String> {
    bounded_usize(text, 1, 1 << 20, "the sketch size")
}

/// Optimisation steps of a run: 1 to [`MAX_STEPS`].
pub fn steps(text: &str) -> Result<u64, String> {
    bounded(text, 1, MAX_STEPS, "the number of steps")
}

/// Optimisation steps of a helper network (a count in memory): 1 to [`MAX_STEPS`].
pub fn step_count(text: &str) -> Result<usize, String> {
    bounded_usize(text, 1, MAX_STEPS as usize, "the number of steps")
}

/// Steps where 0 turns the feature off (warm-up, decay, evaluation interval).
pub fn steps_or_none(text: &str) -> Result<u64, String> {
    bounded(text, 0, MAX_STEPS, "the number of steps")
}

/// Batches or other repeat counts of a measurement: 1 to 100,000.
pub fn repeats(text: &str) -> Result<usize, String> {
    bounded_usize(text, 1, 100_000, "the number of repeats")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_inside_their_range_parse_and_others_name_the_limit() {
        assert_eq!(batch_size("64"), Ok(64));
        assert_eq!(batch_size(" 4096 "), Ok(4096));
        let e = batch_size("100000000").unwrap_err();
        assert!(
            e.contains("between 1 and 4096") && e.contains("100000000"),
            "{e}"
        );
        assert!(batch_size("0").unwrap_err().contains("between 1 and 4096"));
        for bad in ["-1", "1e9", "x", "", "18446744073709551616"] {
            let e = images(bad).unwrap_err();
            assert!(e.contains("1 to 100000"), "{bad}: {e}");
        }
        assert_eq!(images_or_none("0"), Ok(0));
        assert!(images("0").is_err());
        assert!(sampler_steps("1001").unwrap_err().contains("1 and 1000"));
        assert_eq!(sampler_steps("1000"), Ok(1000));
        assert!(toy_points("18446744073709551615").is_err());
        assert!(ranges("1000000000").is_err());
        assert!(heatmap_k("1000000").is_err());
        assert!(grid_side("1").is_err());
        assert_eq!(steps_or_none("0"), Ok(0));
        assert!(steps("0").is_err());
    }
}
