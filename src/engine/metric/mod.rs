//! Sample-quality metrics.

pub mod features;
pub mod frechet;
pub mod sample_metric;
pub mod sym_eigen;

pub use frechet::{FeatureStats, FrechetReference, frechet_distance};
pub use sample_metric::{LabelSummary, SampleMetric, SampleScore, default_cache_dir};
