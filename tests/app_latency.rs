//! Slider-to-preview latency of the merge worker on the shipped default set
//! (or `$DEME_STUDIO_ASSETS`): a benchmark, not a test, so it is ignored by
//! default. Run it with
//! `cargo test --release --test app_latency -- --ignored --nocapture`.

use burn::tensor::Device;
use deme_studio::app::events::{Emitter, Event};
use deme_studio::app::merge_worker::{Command, MergeWorker, PreviewRequest};
use deme_studio::app::model_set::default_set;
use deme_studio::app::preview::Panel;
use deme_studio::app::settings::PreviewSettings;
use deme_studio::engine::merge::MergeSpec;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

fn wait_for(events: &Receiver<Event>, what: &str, mut f: impl FnMut(&Event) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let e = events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
        if let Event::LoadFailed { message, .. } = &e {
            panic!("loading failed: {message}");
        }
        if f(&e) {
            return;
        }
    }
}

/// One request: time to the first merged picture and to the finished one.
fn measure(
    worker: &MergeWorker,
    events: &Receiver<Event>,
    weights: Vec<f32>,
    steps: usize,
) -> (f64, f64) {
    let submitted = Instant::now();
    let generation = worker.request(PreviewRequest {
        spec: MergeSpec::task_arithmetic(weights),
        steps,
        submitted,
        evaluate: false,
    });
    let mut first = None;
    wait_for(events, "the merged preview", |e| match e {
        Event::Preview(p) if p.panel == Panel::Merged && p.generation == generation => {
            let ms = submitted.elapsed().as_secs_f64() * 1e3;
            first.get_or_insert(ms);
            p.done
        }
        _ => false,
    });
    (first.unwrap(), submitted.elapsed().as_secs_f64() * 1e3)
}

#[test]
#[ignore = "benchmark: needs the default model set; run with --ignored --nocapture"]
fn slider_to_preview_latency() {
    let set =
        default_set().expect("no default set: build assets/mnist-tiny or set DEME_STUDIO_ASSETS");
    let n = set.experts.len();
    let settings = PreviewSettings::default();
    let (emit, events) = Emitter::channel(Arc::new(|| {}));
    let worker = MergeWorker::spawn(Device::flex(), settings, emit);
    let t0 = Instant::now();
    worker.send(Command::Load(set.clone()));
    wait_for(&events, "the models", |e| matches!(e, Event::Loaded(_)));
    eprintln!(
        "loaded {} + {n} experts in {:.0} ms",
        set.base.display(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    // let base and ensemble finish, as they would while the user looks at the window
    let mut refs = 0;
    wait_for(&events, "the reference panels", |e| {
        if matches!(e, Event::Loss(l) if l.panel != Panel::Merged) {
            refs += 1;
        }
        refs == 2
    });
    eprintln!(
        "{} samples per panel, DDIM {} steps dragging / {} released",
        settings.samples, settings.fast_steps, settings.fine_steps
    );
    for (k, w) in [0.1f32, 0.4, 0.7].iter().enumerate() {
        let mut weights = vec![1.0 / n as f32; n];
        weights[k % n] = *w;
        let (first, done) = measure(&worker, &events, weights.clone(), settings.fast_steps);
        eprintln!("drag  w = {weights:?}: first picture {first:.0} ms, finished {done:.0} ms");
        let (first, done) = measure(&worker, &events, weights, settings.fine_steps);
        eprintln!("release: first picture {first:.0} ms, finished {done:.0} ms");
    }
}
