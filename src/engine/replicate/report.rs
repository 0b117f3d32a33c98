//! The result of a `replicate` run: a table in the form of the paper's Tables 1 and 3
//! (before finetuning, plain finetuning and its scaled control, any extra arms, DeMe
//! before merge = timestep-wise ensemble, DeMe after merge), each figure the mean over
//! the training seeds, every comparison with its interval and verdict; rendered as
//! Markdown and JSON.

use super::measure::Measurements;
use crate::engine::metric::LabelSummary;
use crate::engine::metric::sample_metric::CONFIDENT;
use crate::engine::search::{LossObjective, Strategy};
use crate::engine::stats::{Interval, Verdict};
use serde::Serialize;
use std::fmt::Write as _;

/// The name of the row of the full method after merge, the subject of the report's
/// comparisons.
pub const MERGED_ROW: &str = "merged";

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportRow {
    /// Short name (`pretrained`, `plain-finetune`, ..., `ensemble`, `merged`).
    pub name: String,
    /// What the row is, in words.
    pub description: String,
    /// Held-out diffusion loss over all timesteps (mean over seeds).
    pub loss: f64,
    /// Held-out loss per timestep range, in range order (mean over seeds).
    pub loss_per_range: Vec<f64>,
    /// Frechet distance of generated samples to held-out images (mean over seeds).
    pub frechet: Option<f64>,
    /// The Frechet distance at the real-vs-real floor's size, comparable with the
    /// floor (mean over seeds).
    pub frechet_at_floor_size: Option<f64>,
    /// The held-out loss of each seed.
    pub loss_per_seed: Vec<f64>,
    /// The Frechet distance of each seed.
    pub frechet_per_seed: Vec<f64>,
    /// What the metric's classifier labels the generated images (pooled over seeds).
    pub labels: Option<LabelSummary>,
    /// Sample grid PNG (of the first seed), relative to the report folder.
    pub grid_png: Option<String>,
}

impl ReportRow {
    /// The row of `name` from its measurements, one per seed, over the timestep `ranges`.
    pub fn over_seeds(
        name: &str,
        description: &str,
        seeds: &[&Measurements],
        ranges: &[[usize; 2]],
    ) -> Self {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let loss_per_seed: Vec<f64> = seeds.iter().map(|m| m.losses.mean()).collect();
        let per_range: Vec<Vec<f64>> = seeds.iter().map(|m| m.losses.per_ranges(ranges)).collect();
        let frechet_per_seed: Vec<f64> = seeds.iter().filter_map(|m| m.frechet).collect();
        Self {
            name: name.into(),
            description: description.into(),
            loss: mean(&loss_per_seed),
            loss_per_range: (0..ranges.len())
                .map(|r| mean(&per_range.iter().map(|p| p[r]).collect::<Vec<_>>()))
                .collect(),
            frechet: (frechet_per_seed.len() == seeds.len() && !seeds.is_empty())
                .then(|| mean(&frechet_per_seed)),
            frechet_at_floor_size: None,
            loss_per_seed,
            frechet_per_seed,
            labels: None,
            grid_png: Some(format!("{name}.png")),
        }
    }
}

/// A difference `merged - other` of a lower-is-better measure, its interval and verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    /// Bootstrap interval of the difference.
    pub interval: Interval,
    /// What the interval says of the merged model.
    pub verdict: Verdict,
}

impl Measured {
    /// The verdict of `interval`.
    pub fn new(interval: Interval) -> Self {
        Self {
            verdict: Verdict::of_difference(&interval),
            interval,
        }
    }
}

/// One row against another: the merged model against each other row, and the pairs
/// asked for with `--compare`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The row whose difference from the other this is (`merged` but for the pairs
    /// asked for with `--compare`).
    pub subject: String,
    /// The other row's name.
    pub other: String,
    /// The other row's held-out loss (the scale of the difference).
    pub other_loss: f64,
    /// Held-out loss, paired over the evaluation samples.
    pub loss: Measured,
    /// The same within each timestep range.
    pub loss_per_range: Vec<Measured>,
    /// Frechet distance, paired over generated images (same initial noise).
    pub frechet: Option<Measured>,
}

/// What the searches of one seed chose.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedSearch {
    /// The finetuning seed.
    pub seed: u64,
    /// The main merge's weights.
    pub weights: Vec<f64>,
    /// Lattice points scored for them.
    pub points: usize,
    /// The objective at the chosen weights, on the search set.
    pub value: f64,
    /// The scale of the plain finetune's task vector chosen by the same objective.
    pub alpha: f64,
    /// Each DeMe arm's merge weights.
    pub arm_weights: Vec<(String, Vec<f64>)>,
}

/// Training images seen: each expert's finetuning against the base's pretraining.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Budget {
    /// Images in the base's pretraining (steps x batch size), when its metadata says.
    pub base_images: Option<u64>,
    /// Images in one expert's finetuning (steps x batch size).
    pub expert_images: u64,
}

impl Budget {
    /// One expert's images as a share of the base's.
    pub fn share(&self) -> Option<f64> {
        self.base_images
            .filter(|&b| b > 0)
            .map(|b| self.expert_images as f64 / b as f64)
    }
}

/// Seconds spent in each stage (summed over seeds).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StageTimes {
    /// Pretraining (0 when the base was loaded).
    pub pretrain: f64,
    /// Decoupled finetuning, the baseline and the arms.
    pub finetune: f64,
    /// Merge-weight and scale searches.
    pub search: f64,
    /// Held-out losses, sampling, the sample metric and the intervals.
    pub evaluate: f64,
}

/// Everything `replicate` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The timestep ranges `[lo, hi)`, one per expert.
    pub ranges: Vec<[usize; 2]>,
    /// The rows, in table order (the merged model last).
    pub rows: Vec<ReportRow>,
    /// The merged model against each other row, with intervals.
    pub comparisons: Vec<Comparison>,
    /// Confidence level of every interval.
    pub confidence: f64,
    /// Bootstrap resamples behind every interval.
    pub resamples: usize,
    /// What each seed's searches chose.
    pub searches: Vec<SeedSearch>,
    /// What the searches minimised.
    pub search_objective: LossObjective,
    /// How the lattice was searched.
    pub search_strategy: Strategy,
    /// Held-out images behind the Frechet distances (0 without the metric).
    pub metric_real_images: usize,
    /// Generated images per model behind the Frechet distances.
    pub metric_samples: usize,
    /// Held-out accuracy of the metric's feature network.
    pub metric_feature_accuracy: Option<f64>,
    /// The real-vs-real floor of the Frechet distance and the size of each half.
    pub metric_floor: Option<(f64, usize)>,
    /// What the metric's classifier labels the held-out real images.
    pub metric_real_labels: Option<LabelSummary>,
    /// The finetuning budget against the pretraining's.
    pub budget: Budget,
    /// Wall-clock seconds per stage.
    pub seconds: StageTimes,
    /// The settings, as run.
    pub config: serde_json::Value,
}

impl Report {
    /// The row called `name`.
    pub fn row(&self, name: &str) -> Option<&ReportRow> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// Answers, with intervals, whether the merged model (or the first row of a pair
    /// asked for) beats each other row on each measure: better / worse / within noise
    /// by the bootstrap interval of the difference, never by the bare difference.
    pub fn verdicts(&self) -> Vec<String> {
        self.comparisons
            .iter()
            .map(|c| {
                let mut line = format!(
                    "{} vs {}: held-out loss {} by {} ({:+.2}% of {:.5}); per range: {}",
                    c.subject,
                    c.other,
                    c.loss.verdict,
                    c.loss.interval,
                    100.0 * c.loss.interval.estimate / c.other_loss,
                    c.other_loss,
                    c.loss_per_range
                        .iter()
                        .zip(&self.ranges)
                        .map(|(m, r)| format!("[{}, {}) {}", r[0], r[1], m.verdict))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                if let Some(f) = &c.frechet {
                    let _ = write!(line, "; Frechet distance {} by {}", f.verdict, f.interval);
                }
                line
            })
            .collect()
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let seeds = self.searches.len();
        s.push_str("# DeMe replication report\n\n");
        let _ = write!(
            s,
            "Every figure is the mean over {seeds} finetuning seed{} ({}). Held-out diffusion \
             loss: mean squared error of the predicted noise on held-out images (never trained \
             on), with fixed noise and timesteps stratified over [0, T), on an evaluation set \
             drawn independently of the one the merge weights were searched on. Lower is \
             better.\n\n",
            if seeds == 1 { "" } else { "s" },
            self.searches
                .iter()
                .map(|s| s.seed.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if self.metric_samples > 0 {
            let _ = write!(
                s,
                "Frechet distance: between the feature statistics of {} generated images per \
                 model (DDIM from the same initial noise for every model) and of {} held-out \
                 images, features from the project's own classifier trained on the training \
                 split (held-out accuracy {}). Lower is better.{}\n\n",
                self.metric_samples,
                self.metric_real_images,
                self.metric_feature_accuracy
                    .map(|a| format!("{:.1}%", a * 100.0))
                    .unwrap_or_else(|| "n/a".into()),
                match self.metric_floor {
                    Some((f, m)) => format!(
                        " The real-vs-real floor (two disjoint halves of {m} held-out images) is \
                         {f:.3}: the Frechet distance between real digits at that size. The \
                         distance depends on the number of images, so the column \"at {m}\" gives \
                         each model's at the floor's size (the mean over chunks of {m} generated \
                         images, each against the second half), the figure to read against the \
                         floor."
                    ),
                    None => String::new(),
                }
            );
        }
        if let Some(share) = self.budget.share() {
            let _ = write!(
                s,
                "Budget: each expert finetunes on {} images (steps x batch size), {:.1}% of the \
                 {} images the base was pretrained on; plain finetuning gets the experts' sum.\n\n",
                self.budget.expert_images,
                100.0 * share,
                self.budget.base_images.unwrap_or(0)
            );
        }
        let labelled = self.rows.iter().any(|r| r.labels.is_some());
        s.push_str("| Model | held-out loss");
        for r in &self.ranges {
            let _ = write!(s, " | t in [{}, {})", r[0], r[1]);
        }
        s.push_str(" | Frechet distance |");
        let at_floor = self
            .metric_floor
            .filter(|_| self.rows.iter().any(|r| r.frechet_at_floor_size.is_some()));
        if let Some((_, m)) = at_floor {
            let _ = write!(s, " at {m} |");
        }
        if labelled {
            s.push_str(" confident |");
        }
        s.push_str("\n|---|---:");
        for _ in &self.ranges {
            s.push_str("|---:");
        }
        s.push_str("|---:|");
        if at_floor.is_some() {
            s.push_str("---:|");
        }
        s.push_str(if labelled { "---:|\n" } else { "\n" });
        for row in &self.rows {
            let _ = write!(s, "| {} | {:.5}", row.description, row.loss);
            for l in &row.loss_per_range {
                let _ = write!(s, " | {l:.5}");
            }
            match row.frechet {
                Some(f) => {
                    let _ = write!(s, " | {f:.3} |");
                }
                None => s.push_str(" | - |"),
            }
            if at_floor.is_some() {
                match row.frechet_at_floor_size {
                    Some(f) => {
                        let _ = write!(s, " {f:.3} |");
                    }
                    None => s.push_str(" - |"),
                }
            }
            if labelled {
                match &row.labels {
                    Some(l) => {
                        let _ = write!(s, " {:.1}% |", 100.0 * l.confident_share);
                    }
                    None => s.push_str(" - |"),
                }
            }
            s.push('\n');
        }
        if labelled {
            s.push_str(&self.labels_markdown());
        }
        let objective = match self.search_objective {
            LossObjective::Plain => "the held-out loss over all timesteps",
            LossObjective::Balanced => {
                "the balanced held-out loss (the mean over the timestep ranges of the loss \
                 relative to the pretrained model's in that range)"
            }
        };
        let found = match self.search_strategy {
            Strategy::Coordinate { .. } => {
                "a coordinate-wise optimum (no change of one weight alone improves it; not \
                 necessarily the best point of the lattice)"
            }
            Strategy::Refine { .. } => "the best point of a coarse-to-fine search",
            Strategy::Exhaustive => "the best point of the lattice",
            Strategy::Learned(_) => {
                "the best step, on the search set's validation half, of a gradient descent \
                 fitted on its other half"
            }
            Strategy::Cmaes(_) => "the best point sampled by CMA-ES",
        };
        let _ = writeln!(
            s,
            "\nMerge weights: {found}, chosen by {objective} on the search set; the plain \
             finetune's task vector was scaled by an alpha chosen the same way.\n"
        );
        s.push_str("| seed | merge weights w | points scored | objective there | alpha |\n|---:|---|---:|---:|---:|\n");
        for r in &self.searches {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.5} | {:.2} |",
                r.seed,
                fmt_weights(&r.weights),
                r.points,
                r.value,
                r.alpha
            );
        }
        let _ = write!(
            s,
            "\n## Verdict\n\nEach difference is {}, with its {:.0}% bootstrap interval ({} \
             resamples; seeds drawn with replacement, then within each seed the evaluation \
             samples for losses and the generated images for Frechet distances, both models \
             always drawn together). Better / worse: the whole interval lies below / above 0; \
             otherwise within noise.\n\n",
            if self.comparisons.iter().all(|c| c.subject == MERGED_ROW) {
                "merged minus the other model"
            } else {
                "the first model minus the second"
            },
            100.0 * self.confidence,
            self.resamples
        );
        for v in self.verdicts() {
            let _ = writeln!(s, "- {v}");
        }
        s.push_str("\n## Samples (same initial noise for every model; first seed)\n\n");
        for row in &self.rows {
            if let Some(png) = &row.grid_png {
                let _ = writeln!(s, "**{}**\n\n![{}]({png})\n", row.description, row.name);
            }
        }
        let t = &self.seconds;
        let _ = writeln!(
            s,
            "## Time\n\npretrain {:.0} s, finetune {:.0} s, search {:.0} s, evaluation {:.0} s.",
            t.pretrain, t.finetune, t.search, t.evaluate
        );
        s
    }
}

impl Report {
    /// The classifier's view of the samples: what "confident" means, the real
    /// digits' own share, and each row's class histogram.
    fn labels_markdown(&self) -> String {
        let mut s = format!(
            "\nConfident: the share of generated images the metric's classifier labels with \
             probability above {CONFIDENT}"
        );
        if let Some(real) = &self.metric_real_labels {
            let _ = write!(
                s,
                " (held-out real images: {:.1}%)",
                100.0 * real.confident_share
            );
        }
        s.push_str(". Images per class (arg-max label, pooled over seeds):\n\n| Model |");
        let classes = self
            .rows
            .iter()
            .filter_map(|r| r.labels.as_ref())
            .map(|l| l.histogram.len())
            .max()
            .unwrap_or(0);
        for k in 0..classes {
            let _ = write!(s, " {k} |");
        }
        s.push_str("\n|---|");
        s.push_str(&"---:|".repeat(classes));
        s.push('\n');
        let real = self
            .metric_real_labels
            .as_ref()
            .map(|l| ("Held-out real images", l));
        let rows = self
            .rows
            .iter()
            .filter_map(|r| r.labels.as_ref().map(|l| (r.description.as_str(), l)));
        for (name, l) in real.into_iter().chain(rows) {
            let _ = write!(s, "| {name} |");
            for h in &l.histogram {
                let _ = write!(s, " {h} |");
            }
            s.push('\n');
        }
        s
    }
}

fn fmt_weights(w: &[f64]) -> String {
    format!(
        "({})",
        w.iter()
            .map(|v| format!("{v:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::eval::EvalLosses;

    fn row(name: &str, loss: f64, frechet: Option<f64>) -> ReportRow {
        ReportRow {
            name: name.into(),
            description: name.to_uppercase(),
            loss,
            loss_per_range: vec![loss * 2.0, loss / 2.0],
            frechet,
            frechet_at_floor_size: None,
            loss_per_seed: vec![loss],
            frechet_per_seed: frechet.into_iter().collect(),
            labels: None,
            grid_png: Some(format!("{name}.png")),
        }
    }

    fn measured(estimate: f64, lo: f64, hi: f64) -> Measured {
        Measured::new(Interval {
            estimate,
            lo,
            hi,
            level: 0.95,
        })
    }

    fn report(merged_loss: f64) -> Report {
        let vs = |other: &str, other_loss: f64, frechet: Option<Measured>| Comparison {
            subject: MERGED_ROW.into(),
            other: other.into(),
            other_loss,
            loss: if merged_loss < other_loss {
                measured(
                    merged_loss - other_loss,
                    merged_loss - other_loss - 1e-3,
                    -1e-4,
                )
            } else {
                measured(
                    merged_loss - other_loss,
                    1e-4,
                    merged_loss - other_loss + 1e-3,
                )
            },
            loss_per_range: vec![measured(-0.01, -0.02, -0.001), measured(0.0, -0.001, 0.001)],
            frechet,
        };
        Report {
            ranges: vec![[0, 500], [500, 1000]],
            rows: vec![
                row("pretrained", 0.04, Some(3.0)),
                row("plain-finetune", 0.03, Some(2.0)),
                row("ensemble", 0.02, None),
                row("merged", merged_loss, Some(1.0)),
            ],
            comparisons: vec![
                vs("pretrained", 0.04, Some(measured(-2.0, -2.5, -1.5))),
                vs("plain-finetune", 0.03, Some(measured(-1.0, -1.5, 0.2))),
                vs("ensemble", 0.02, None),
            ],
            confidence: 0.95,
            resamples: 200,
            searches: vec![SeedSearch {
                seed: 0,
                weights: vec![0.5, 0.25],
                points: 12,
                value: 0.021,
                alpha: 1.2,
                arm_weights: Vec::new(),
            }],
            search_objective: LossObjective::Balanced,
            search_strategy: Strategy::Coordinate { sweeps: 4 },
            metric_real_images: 100,
            metric_samples: 50,
            metric_feature_accuracy: Some(0.97),
            metric_floor: Some((0.5, 50)),
            metric_real_labels: None,
            budget: Budget::default(),
            seconds: StageTimes::default(),
            config: serde_json::Value::Null,
        }
    }

    #[test]
    fn verdicts_follow_the_intervals() {
        let v = report(0.025).verdicts();
        assert_eq!(v.len(), 3);
        assert!(
            v[0].starts_with("merged vs pretrained: held-out loss better")
                && v[0].contains("(-37.50% of 0.04000)"),
            "{}",
            v[0]
        );
        assert!(
            v[0].contains("per range: [0, 500) better, [500, 1000) within noise"),
            "{}",
            v[0]
        );
        assert!(v[0].contains("Frechet distance better"), "{}", v[0]);
        // the interval of the distance to plain finetuning holds 0
        assert!(v[1].contains("Frechet distance within noise"), "{}", v[1]);
        assert!(
            v[2].starts_with("merged vs ensemble: held-out loss worse"),
            "{}",
            v[2]
        );
        assert!(
            !v[2].contains("Frechet"),
            "the ensemble row has no distance"
        );
    }

    #[test]
    fn markdown_has_one_table_row_per_model_and_every_range() {
        let md = report(0.025).to_markdown();
        assert!(md.contains(
            "| Model | held-out loss | t in [0, 500) | t in [500, 1000) | Frechet distance |"
        ));
        assert!(md.contains("| PRETRAINED | 0.04000 | 0.08000 | 0.02000 | 3.000 |"));
        assert!(md.contains("| ENSEMBLE | 0.02000 | 0.04000 | 0.01000 | - |"));
        assert!(
            md.contains("| 0 | (0.50, 0.25) | 12 | 0.02100 | 1.20 |"),
            "{md}"
        );
        assert!(md.contains("a coordinate-wise optimum"));
        assert!(md.contains("balanced held-out loss"));
        assert!(
            md.contains("real-vs-real floor (two disjoint halves of 50 held-out images) is 0.500")
        );
        assert!(md.contains("![merged](merged.png)"));
        assert!(md.contains("held-out accuracy 97.0%"));
        assert!(md.contains("mean over 1 finetuning seed (0)"));
        // no row has a distance at the floor's size: no such column
        assert!(!md.contains("| at 50 |"));
    }

    #[test]
    fn the_distance_at_the_floors_size_gets_its_own_column() {
        let mut r = report(0.025);
        r.rows[0].frechet_at_floor_size = Some(4.25);
        let md = r.to_markdown();
        assert!(
            md.contains("| t in [500, 1000) | Frechet distance | at 50 |"),
            "{md}"
        );
        assert!(
            md.contains("| PRETRAINED | 0.04000 | 0.08000 | 0.02000 | 3.000 | 4.250 |"),
            "{md}"
        );
        assert!(
            md.contains("| ENSEMBLE | 0.02000 | 0.04000 | 0.01000 | - | - |"),
            "{md}"
        );
        assert!(md.contains("the column \"at 50\""), "{md}");
    }

    #[test]
    fn labels_and_budget_are_reported_when_known() {
        let mut r = report(0.025);
        assert!(!r.to_markdown().contains("confident"));
        r.rows[3].labels = Some(LabelSummary::new(&[(0, 0.95), (1, 0.5)], 2));
        r.metric_real_labels = Some(LabelSummary::new(&[(0, 0.99), (1, 0.98)], 2));
        r.budget = Budget {
            base_images: Some(640_000),
            expert_images: 32_000,
        };
        let md = r.to_markdown();
        assert!(md.contains("| Frechet distance | confident |"), "{md}");
        assert!(
            md.contains("| MERGED | 0.02500 | 0.05000 | 0.01250 | 1.000 | 50.0% |"),
            "{md}"
        );
        assert!(
            md.contains("| PRETRAINED | 0.04000 | 0.08000 | 0.02000 | 3.000 | - |"),
            "{md}"
        );
        assert!(md.contains("(held-out real images: 100.0%)"), "{md}");
        assert!(md.contains("| Held-out real images | 1 | 1 |"), "{md}");
        assert!(md.contains("| MERGED | 1 | 1 |"), "{md}");
        assert!(
            md.contains("32000 images (steps x batch size), 5.0% of the 640000"),
            "{md}"
        );
        assert_eq!(Budget::default().share(), None);
    }

    #[test]
    fn rows_average_their_seeds() {
        let m = |loss: f64, fd: Option<f64>| Measurements {
            name: "x".into(),
            key: String::new(),
            losses: EvalLosses {
                t: vec![100, 700],
                loss: vec![loss, 2.0 * loss],
                num_train_timesteps: 1000,
            },
            features: None,
            frechet: fd,
        };
        let (a, b) = (m(1.0, Some(4.0)), m(3.0, Some(6.0)));
        let r = ReportRow::over_seeds("x", "X", &[&a, &b], &[[0, 500], [500, 1000]]);
        assert_eq!(r.loss_per_seed, vec![1.5, 4.5]);
        assert_eq!(r.loss, 3.0);
        assert_eq!(r.loss_per_range, vec![2.0, 4.0]);
        assert_eq!(r.frechet, Some(5.0));
        // a seed without a distance leaves the row without one
        let c = m(1.0, None);
        assert_eq!(
            ReportRow::over_seeds("x", "X", &[&a, &c], &[[0, 500], [500, 1000]]).frechet,
            None
        );
    }
}
