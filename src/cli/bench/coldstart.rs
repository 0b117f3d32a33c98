//! `bench coldstart`: from starting the program to the first merged preview of
//! the default set, as the app's merge view gets it (load base + experts,
//! merge with equal weights, sample with the fast DDIM pass).
//!
//! Each repeat is a fresh process (`bench coldstart --child`), timed from
//! spawning it to its report, so the figure includes starting the executable,
//! choosing the device and any kernel compilation. The first repeat is the
//! cold one; the rest run with whatever the first left cached (the OS file
//! cache; on wgpu, compiled pipelines).

use super::emit;
use crate::app::events::{Emitter, Event};
use crate::app::merge_worker::{Command, MergeWorker, PreviewRequest};
use crate::app::model_set::{ModelSet, default_set};
use crate::app::preview::Panel;
use crate::app::settings::PreviewSettings;
use crate::engine::device::{Backend, ComputeDevice};
use crate::engine::merge::MergeSpec;
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// Arguments of `bench coldstart`.
#[derive(Debug, Args)]
pub struct ColdstartCase {
    /// Fresh processes to time (the first is the cold start).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// A folder holding a base and its experts, as the app opens it (default: the shipped set).
    #[arg(long)]
    pub set: Option<PathBuf>,
    /// Measure inside this process and print one JSON line (used by the parent).
    #[arg(long, hide = true)]
    pub child: bool,
}

fn the_set(c: &ColdstartCase) -> Result<ModelSet> {
    match &c.set {
        Some(dir) => ModelSet::discover(dir)
            .ok_or_else(|| anyhow!("{} holds no base and experts", dir.display())),
        None => default_set().ok_or_else(|| anyhow!("the shipped model set was not found")),
    }
}

fn wait_for(events: &Receiver<Event>, what: &str, mut f: impl FnMut(&Event) -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let e = events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| anyhow!("timed out waiting for {what}"))?;
        if let Event::LoadFailed { message, .. } = &e {
            bail!("loading failed: {message}");
        }
        if f(&e) {
            return Ok(());
        }
    }
}

fn child(c: &ColdstartCase, compute: &ComputeDevice) -> Result<()> {
    let start = Instant::now();
    let set = the_set(c)?;
    let settings = PreviewSettings::default();
    let (emitter, events) = Emitter::channel(Arc::new(|| {}));
    let worker = MergeWorker::spawn(compute.device.clone(), settings, emitter);
    worker.send(Command::Load(set.clone()));
    wait_for(&events, "the models", |e| matches!(e, Event::Loaded(_)))?;
    let loaded = start.elapsed().as_secs_f64();
    let n = set.experts.len();
    let generation = worker.request(PreviewRequest {
        spec: MergeSpec::task_arithmetic(vec![1.0 / n as f32; n]),
        steps: settings.fast_steps,
        submitted: Instant::now(),
        evaluate: false,
    });
    let mut first = None;
    wait_for(&events, "the merged preview", |e| match e {
        Event::Preview(p) if p.panel == Panel::Merged && p.generation == generation => {
            first.get_or_insert(start.elapsed().as_secs_f64());
            p.done
        }
        _ => false,
    })?;
    let done = start.elapsed().as_secs_f64();
    emit(
        serde_json::json!({
            "case": "coldstart-child",
            "load_ms": loaded * 1e3,
            "first_picture_ms": first.unwrap_or(done) * 1e3,
            "fast_pass_ms": done * 1e3,
            "samples": settings.samples,
            "fast_steps": settings.fast_steps,
            "experts": n,
        }),
        compute,
    );
    Ok(())
}

/// Runs `bench coldstart`.
pub fn run(c: ColdstartCase, compute: &ComputeDevice) -> Result<()> {
    if c.child {
        return child(&c, compute);
    }
    let set = the_set(&c)?;
    let exe = std::env::current_exe().context("finding this program")?;
    let device = match compute.backend {
        Backend::Flex => "cpu",
        _ => "wgpu",
    };
    let mut runs = Vec::new();
    for _ in 0..c.repeats.max(1) {
        let spawned = Instant::now();
        let out = std::process::Command::new(&exe)
            .args(["--device", device, "bench", "coldstart", "--child", "--set"])
            .arg(set.base.parent().context("the set's folder")?)
            .stderr(std::process::Stdio::null())
            .output()
            .context("running the measuring process")?;
        let wall = spawned.elapsed().as_secs_f64() * 1e3;
        if !out.status.success() {
            bail!("the measuring process failed ({})", out.status);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .last()
            .context("the measuring process printed nothing")?;
        let mut value: serde_json::Value = serde_json::from_str(line)?;
        value["process_to_fast_pass_ms"] = serde_json::json!(wall);
        runs.push(value);
    }
    let field = |name: &str| -> Vec<f64> { runs.iter().filter_map(|r| r[name].as_f64()).collect() };
    let (wall, first) = (field("process_to_fast_pass_ms"), field("first_picture_ms"));
    let mut line = serde_json::json!({
        "case": "coldstart",
        "set": set.base.parent().map(|p| p.display().to_string()),
        "cold_process_to_fast_pass_ms": wall.first(),
        "cold_first_picture_ms": first.first(),
        "warm_process_to_fast_pass_ms": (wall.len() > 1).then(|| super::median(&wall[1..])),
        "child_peak_rss_mb": field("peak_rss_mb").into_iter().fold(0.0, f64::max),
        "runs": runs,
    });
    emit(line.take(), compute);
    Ok(())
}
