//! Statistics behind every comparison the reports make: bootstrap intervals and the
//! verdicts they support.

pub mod bootstrap;

pub use bootstrap::{Interval, Verdict, paired_bootstrap, paired_mean_difference};
