//! How a search visits the merge weights ([`Strategy`]), and the settings of
//! the strategies without a lattice, each checked against the spec before any
//! work.

use super::lattice::GridSpec;
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// How the lattice is visited.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Strategy {
    /// Every point, coarse sub-lattices first.
    Exhaustive,
    /// Coarse lattice, then refine around the `keep` best points at each level.
    Refine {
        /// How many of the best points each refinement looks around.
        keep: usize,
    },
    /// One weight at a time over all its values, from the lattice centre,
    /// for at most `sweeps` sweeps (see [`super::coordinate`]).
    Coordinate {
        /// Most sweeps over all weights.
        sweeps: usize,
    },
    /// No lattice: gradient descent on the weights themselves, which the
    /// held-out loss is differentiable in (see [`super::learned`]).
    Learned(LearnSettings),
    /// No lattice: the CMA evolution strategy, derivative-free, for any
    /// objective (see [`super::cmaes`]).
    Cmaes(CmaesSettings),
}

/// Settings of the descent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LearnSettings {
    /// Most optimizer steps.
    pub steps: usize,
    /// Adam's initial step size, in weight units (decays linearly to zero).
    pub lr: f64,
    /// Stop after this many steps in a row without a better validation score.
    pub patience: usize,
    /// One weight per expert and block (see [`super::LearnedBlocks`]) instead of one
    /// per expert.
    #[serde(default)]
    pub per_block: bool,
}

impl Default for LearnSettings {
    fn default() -> Self {
        Self {
            steps: 60,
            lr: 0.1,
            patience: 10,
            per_block: false,
        }
    }
}

impl LearnSettings {
    /// Checks the settings can run.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            bail!("learning merge weights needs at least one step");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!(
                "the step size of learned weights must be positive, got {}",
                self.lr
            );
        }
        if self.patience == 0 {
            bail!("the patience of learned weights must be at least one step");
        }
        Ok(())
    }
}

/// Settings of the evolution strategy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CmaesSettings {
    /// Most objective evaluations.
    pub evaluations: usize,
    /// Initial step, as a fraction of `hi - lo`.
    pub sigma: f64,
    /// Samples per generation; 0 = the usual `4 + floor(3 ln N)`.
    pub population: usize,
    /// Seed of the samples.
    pub seed: u64,
}

impl Default for CmaesSettings {
    fn default() -> Self {
        Self {
            evaluations: 60,
            sigma: 0.3,
            population: 0,
            seed: 0,
        }
    }
}

impl GridSpec {
    /// Checks the spec is searchable with `strategy`.
    pub fn validate_for(&self, strategy: Strategy) -> Result<()> {
        match strategy {
            Strategy::Coordinate { .. } => {
                self.validate_bounds()?;
                if self.sum_to_one {
                    bail!(
                        "the coordinate search moves one weight at a time, so it cannot keep the weights summing to 1: use the refine or exhaustive strategy with --sum-to-one"
                    );
                }
                Ok(())
            }
            Strategy::Learned(settings) => validate_learned(self, &settings),
            Strategy::Cmaes(settings) => validate_cmaes(self, &settings),
            _ => self.validate(),
        }
    }
}

/// Checks `spec`'s bounds and `settings` can be learned over.
pub fn validate_learned(spec: &GridSpec, settings: &LearnSettings) -> Result<()> {
    settings.validate()?;
    if spec.n == 0 {
        bail!("learning merge weights needs at least one weight");
    }
    if !(spec.lo.is_finite() && spec.hi.is_finite() && spec.lo < spec.hi) {
        bail!(
            "learned weights need finite bounds with lo < hi, got [{}, {}]",
            spec.lo,
            spec.hi
        );
    }
    if spec.sum_to_one {
        bail!(
            "learned weights move freely inside their bounds, so they cannot keep the weights summing to 1: use the refine or exhaustive strategy with --sum-to-one"
        );
    }
    Ok(())
}

/// Checks that `spec` and `settings` can be searched by CMA-ES.
pub fn validate_cmaes(spec: &GridSpec, settings: &CmaesSettings) -> Result<()> {
    spec.validate_bounds()?;
    if spec.sum_to_one {
        bail!(
            "CMA-ES samples the weights freely, so it cannot keep them summing to 1: use the refine or exhaustive strategy with --sum-to-one"
        );
    }
    if !(spec.hi > spec.lo) {
        bail!("CMA-ES needs a range of weights: hi must exceed lo");
    }
    if settings.evaluations < 2 {
        bail!(
            "CMA-ES needs at least 2 evaluations, not {}",
            settings.evaluations
        );
    }
    if !(settings.sigma > 0.0 && settings.sigma <= 1.0) {
        bail!(
            "the initial CMA-ES step is a fraction of hi - lo in (0, 1], not {}",
            settings.sigma
        );
    }
    if settings.population == 1 {
        bail!("a CMA-ES generation needs at least 2 samples");
    }
    Ok(())
}
