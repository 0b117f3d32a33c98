//! The result of a `replicate` run: a table in the form of the paper's Table 1
//! (before finetuning, plain finetuning, DeMe before merge = timestep-wise
//! ensemble, DeMe after merge), rendered as Markdown and JSON.

use serde::Serialize;
use std::fmt::Write as _;

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportRow {
    /// Short name (`pretrained`, `plain-finetune`, `ensemble`, `merged`).
    pub name: String,
    /// What the row is, in words.
    pub description: String,
    /// Held-out diffusion loss over all timesteps.
    pub loss: f64,
    /// Held-out loss per timestep range, in range order.
    pub loss_per_range: Vec<f64>,
    /// Frechet distance of generated samples to held-out images (lower is better).
    pub frechet: Option<f64>,
    /// Sample grid PNG, relative to the report folder.
    pub grid_png: Option<String>,
}

/// Seconds spent in each stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StageTimes {
    /// Pretraining (0 when the base was loaded).
    pub pretrain: f64,
    /// Decoupled finetuning and the baseline.
    pub finetune: f64,
    /// Merge-weight search.
    pub search: f64,
    /// Held-out losses, sampling and the sample metric.
    pub evaluate: f64,
}

/// Everything `replicate` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The timestep ranges `[lo, hi)`, one per expert.
    pub ranges: Vec<[usize; 2]>,
    /// The four rows, in table order.
    pub rows: Vec<ReportRow>,
    /// Merge weights chosen by the search.
    pub weights: Vec<f64>,
    /// Points the search scored.
    pub search_points: usize,
    /// Search objective (held-out loss on the search set) at the chosen weights.
    pub search_loss: f64,
    /// Held-out images behind the Frechet distances (0 without the metric).
    pub metric_real_images: usize,
    /// Generated images per model behind the Frechet distances.
    pub metric_samples: usize,
    /// Held-out accuracy of the metric's feature network.
    pub metric_feature_accuracy: Option<f64>,
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

    /// Answers, in words and numbers, whether the merged model beats the
    /// pretrained one and the plain-finetune baseline on each measure.
    pub fn verdicts(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(merged) = self.row("merged") else {
            return out;
        };
        for other in ["pretrained", "plain-finetune", "ensemble"] {
            let Some(o) = self.row(other) else { continue };
            let rel = (merged.loss - o.loss) / o.loss * 100.0;
            let mut line = format!(
                "merged vs {other}: held-out loss {:.5} vs {:.5} ({rel:+.2}%, {})",
                merged.loss,
                o.loss,
                if merged.loss < o.loss {
                    "merged better"
                } else {
                    "merged not better"
                }
            );
            if let (Some(a), Some(b)) = (merged.frechet, o.frechet) {
                let _ = write!(
                    line,
                    "; Frechet distance {a:.3} vs {b:.3} ({})",
                    if a < b {
                        "merged better"
                    } else {
                        "merged not better"
                    }
                );
            }
            out.push(line);
        }
        out
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("# DeMe replication report\n\n");
        s.push_str(
            "Held-out diffusion loss: mean squared error of the predicted noise on held-out \
             images (never trained on), with fixed noise and timesteps stratified over [0, T), \
             on an evaluation set drawn independently of the one the merge weights were \
             searched on. Lower is better.\n\n",
        );
        if self.metric_samples > 0 {
            let _ = write!(
                s,
                "Frechet distance: between the feature statistics of {} generated images per \
                 model (DDIM from the same initial noise for every model) and of {} held-out \
                 images, features from the project's own classifier trained on the training \
                 split (held-out accuracy {}). Lower is better.\n\n",
                self.metric_samples,
                self.metric_real_images,
                self.metric_feature_accuracy
                    .map(|a| format!("{:.1}%", a * 100.0))
                    .unwrap_or_else(|| "n/a".into())
            );
        }
        s.push_str("| Model | held-out loss");
        for r in &self.ranges {
            let _ = write!(s, " | t in [{}, {})", r[0], r[1]);
        }
        s.push_str(" | Frechet distance |\n|---|---:");
        for _ in &self.ranges {
            s.push_str("|---:");
        }
        s.push_str("|---:|\n");
        for row in &self.rows {
            let _ = write!(s, "| {} | {:.5}", row.description, row.loss);
            for l in &row.loss_per_range {
                let _ = write!(s, " | {l:.5}");
            }
            match row.frechet {
                Some(f) => {
                    let _ = writeln!(s, " | {f:.3} |");
                }
                None => s.push_str(" | - |\n"),
            }
        }
        let _ = write!(
            s,
            "\nMerge weights w = ({}), chosen among {} lattice points by the held-out loss \
             on the search set ({:.5} there).\n\n",
            self.weights
                .iter()
                .map(|w| format!("{w:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.search_points,
            self.search_loss
        );
        s.push_str("## Verdict\n\n");
        for v in self.verdicts() {
            let _ = writeln!(s, "- {v}");
        }
        s.push_str("\n## Samples (same initial noise for every model)\n\n");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, loss: f64, frechet: Option<f64>) -> ReportRow {
        ReportRow {
            name: name.into(),
            description: name.to_uppercase(),
            loss,
            loss_per_range: vec![loss * 2.0, loss / 2.0],
            frechet,
            grid_png: Some(format!("{name}.png")),
        }
    }

    fn report(merged_loss: f64) -> Report {
        Report {
            ranges: vec![[0, 500], [500, 1000]],
            rows: vec![
                row("pretrained", 0.04, Some(3.0)),
                row("plain-finetune", 0.03, Some(2.0)),
                row("ensemble", 0.02, None),
                row("merged", merged_loss, Some(1.0)),
            ],
            weights: vec![0.5, 0.25],
            search_points: 12,
            search_loss: 0.021,
            metric_real_images: 100,
            metric_samples: 50,
            metric_feature_accuracy: Some(0.97),
            seconds: StageTimes::default(),
            config: serde_json::Value::Null,
        }
    }

    #[test]
    fn verdicts_compare_the_merge_with_each_row() {
        let v = report(0.025).verdicts();
        assert_eq!(v.len(), 3);
        assert!(
            v[0].starts_with("merged vs pretrained") && v[0].contains("(-37.50%, merged better")
        );
        assert!(v[0].contains("Frechet distance 1.000 vs 3.000 (merged better)"));
        assert!(v[2].starts_with("merged vs ensemble") && v[2].contains("merged not better"));
        assert!(
            !v[2].contains("Frechet"),
            "the ensemble row has no distance"
        );
        let worse = report(0.05).verdicts();
        assert!(worse[0].contains("merged not better"));
    }

    #[test]
    fn markdown_has_one_table_row_per_model_and_every_range() {
        let md = report(0.025).to_markdown();
        assert!(md.contains(
            "| Model | held-out loss | t in [0, 500) | t in [500, 1000) | Frechet distance |"
        ));
        assert!(md.contains("| PRETRAINED | 0.04000 | 0.08000 | 0.02000 | 3.000 |"));
        assert!(md.contains("| ENSEMBLE | 0.02000 | 0.04000 | 0.01000 | - |"));
        assert!(md.contains("w = (0.50, 0.25)"));
        assert!(md.contains("![merged](merged.png)"));
        assert!(md.contains("held-out accuracy 97.0%"));
    }
}
