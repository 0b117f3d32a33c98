//! Statistics behind every comparison the reports make: bootstrap intervals and the
//! verdicts they support.

pub mod bootstrap;

pub use bootstrap::{
    Interval, Verdict, grouped_bootstrap, grouped_mean_difference, paired_bootstrap,
    paired_mean_difference,
};
