//! Sample-quality metrics.

pub mod features;
pub mod frechet;
pub mod sample_metric;

pub use frechet::{FeatureStats, frechet_distance};
pub use sample_metric::{LabelSummary, SampleMetric, SampleScore, default_cache_dir};
