//! Task-vector statistics from the UI: a named thread that copies the open
//! set's models to the host, lines up `tau_i = theta_i - theta` and computes
//! [`tv_stats`], reporting each stage and checking for Cancel between them;
//! and the files an export of a result writes (the `tv-stats` command's files
//! plus the per-group cosines).

use crate::app::job_slot::{Outcome, Sink};
use crate::app::session::Session;
use crate::engine::analysis::Granularity;
use crate::engine::analysis::tv_stats::{TvStats, tv_stats};
use crate::engine::analysis::tv_stats_files::write_tv_stats_files;
use crate::engine::checkpoint::write_atomic_bytes;
use crate::engine::merge::{HostTaskVectors, LabeledParams};
use crate::engine::store::AnyModel;
use crate::engine::train::CancelToken;
use anyhow::{Result, bail};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Files an export writes, in the order written.
pub const EXPORT_FILES: [&str; 6] = [
    "tv_stats.json",
    "tv_stats.csv",
    "cosine.csv",
    "cosine.npy",
    "cosine.png",
    "group_cosine.csv",
];

/// Where a computation reports: each stage, then the statistics.
pub type TaskVecSink = Sink<TaskVecProgress, TaskVecResult>;

/// A task-vector computation to run.
#[derive(Debug, Clone)]
pub struct TaskVecJob {
    /// Per block or per layer.
    pub granularity: Granularity,
    /// Cancelled by the UI's Cancel button (checked between stages).
    pub cancel: CancelToken,
    /// Where it reports.
    pub sink: TaskVecSink,
}

/// Progress of a running computation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskVecProgress {
    /// Stages done.
    pub done: usize,
    /// Stages in all (N + 3 for N experts).
    pub total: usize,
    /// What runs now.
    pub stage: String,
}

/// A finished computation.
#[derive(Debug, Clone)]
pub struct TaskVecResult {
    /// The statistics.
    pub stats: Arc<TvStats>,
    /// Wall time of the whole computation.
    pub elapsed: Duration,
}

/// What the computation needs: the models (sharing device memory with the
/// session's) and the experts' labels.
#[derive(Clone)]
pub struct TaskVecInputs {
    /// The base.
    pub base: AnyModel,
    /// The experts, in range order.
    pub experts: Vec<AnyModel>,
    /// Labels of the experts.
    pub labels: Vec<String>,
}

impl TaskVecInputs {
    /// The open session's models, labelled by folder name.
    pub fn of(session: &Session) -> Self {
        let (base, experts) = session.base_and_experts();
        let labels = session.info().set.labels().into_iter().skip(1).collect();
        Self {
            base,
            experts,
            labels,
        }
    }
}

/// Runs `job` on `inputs`, reporting each stage through `on_progress`; fails
/// with `cancelled` when cancelled between stages.
pub fn run_taskvec(
    job: &TaskVecJob,
    inputs: &TaskVecInputs,
    on_progress: &mut dyn FnMut(TaskVecProgress),
) -> Result<TvStats> {
    let n = inputs.experts.len();
    if n == 0 {
        bail!("task vectors need at least one expert");
    }
    let total = n + 3;
    let mut stage = |done: usize, what: String| -> Result<()> {
        if job.cancel.is_cancelled() {
            bail!("cancelled");
        }
        on_progress(TaskVecProgress {
            done,
            total,
            stage: what,
        });
        Ok(())
    };
    stage(0, "copying the base to the host".into())?;
    let base = LabeledParams::new("base", inputs.base.export());
    let mut experts = Vec::with_capacity(n);
    for (i, e) in inputs.experts.iter().enumerate() {
        stage(i + 1, format!("copying expert {}/{n} to the host", i + 1))?;
        let label = inputs
            .labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("expert {}", i + 1));
        experts.push(LabeledParams::new(label, e.export()));
    }
    stage(n + 1, "task vectors theta_i - theta".into())?;
    let tv = HostTaskVectors::new(base, experts)?;
    stage(n + 2, "norms, quartiles and cosines".into())?;
    let stats = tv_stats(&tv, job.granularity);
    drop(tv);
    if job.cancel.is_cancelled() {
        bail!("cancelled");
    }
    Ok(stats)
}

/// Runs `job` on a thread named `taskvec`, reporting through its sink.
pub fn spawn_taskvec(job: TaskVecJob, inputs: TaskVecInputs) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("taskvec".into())
        .spawn(move || {
            let start = Instant::now();
            let sink = job.sink.clone();
            let result =
                run_taskvec(&job, &inputs, &mut |p| sink.update(p)).map(|stats| TaskVecResult {
                    stats: Arc::new(stats),
                    elapsed: start.elapsed(),
                });
            sink.finish(Outcome::of(result, &job.cancel));
        })
        .expect("spawning the taskvec thread")
}

/// Starts `job` on the open session's models (reports an error without one).
pub fn start_taskvec(job: TaskVecJob, session: Option<&Session>) {
    match session {
        Some(s) => {
            spawn_taskvec(job, TaskVecInputs::of(s));
        }
        None => job
            .sink
            .finish(Outcome::Failed("open a model set first".into())),
    }
}

/// `group_cosine.csv`: the N x N cosine of every group, one row per pair.
pub fn group_cosine_csv(stats: &TvStats) -> String {
    let n = stats.num_experts();
    let mut csv = String::from("group,i,j,cosine\n");
    for g in &stats.groups {
        for i in 0..n {
            for j in 0..n {
                let _ = writeln!(
                    csv,
                    "{},{},{},{}",
                    g.name,
                    i + 1,
                    j + 1,
                    g.cosine[i * n + j]
                );
            }
        }
    }
    csv
}

/// Writes [`EXPORT_FILES`] into `dir` (created if missing; each file atomically).
pub fn export_taskvec(stats: &TvStats, dir: &Path) -> Result<()> {
    write_tv_stats_files(stats, dir)?;
    write_atomic_bytes(
        dir.join("group_cosine.csv"),
        group_cosine_csv(stats).as_bytes(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::analysis::tv_stats::{BoxStats, ExpertGroupStats, GroupStats};

    fn stats() -> TvStats {
        let e = ExpertGroupStats {
            abs: BoxStats::of(&mut [1.0, 2.0]),
            norm: 1.0,
        };
        TvStats {
            granularity: Granularity::Block,
            labels: vec!["a".into(), "b".into()],
            params: 2,
            overall: vec![e.clone(), e.clone()],
            cosine: vec![1.0, 0.5, 0.5, 1.0],
            groups: vec![GroupStats {
                name: "mid_block".into(),
                params: 2,
                experts: vec![e.clone(), e],
                cosine: vec![1.0, -0.25, -0.25, 1.0],
            }],
        }
    }

    #[test]
    fn group_cosines_are_one_row_per_pair() {
        let csv = group_cosine_csv(&stats());
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows[0], "group,i,j,cosine");
        assert_eq!(rows.len(), 1 + 4);
        assert_eq!(rows[2], "mid_block,1,2,-0.25");
        assert_eq!(rows[4], "mid_block,2,2,1");
    }

    #[test]
    fn export_writes_every_file() {
        let dir = std::env::temp_dir().join(format!("taskvec-export-{}", std::process::id()));
        export_taskvec(&stats(), &dir).unwrap();
        for f in EXPORT_FILES {
            assert!(dir.join(f).is_file(), "{f} missing");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
