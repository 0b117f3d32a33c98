//! Faults during a checkpoint save, in real child processes: `kill -9` part
//! way through a save, and a write that runs out of room (the file-size
//! limit `ulimit -f`, which fails writes with EFBIG as a full disk fails
//! them with ENOSPC). Either way the folder on disk stays a complete,
//! loadable checkpoint.
//!
//! The child is this test binary itself, re-run on the `child_*` entry with
//! an environment variable naming its job; run directly, those entries
//! return at once.

use deme_formats::checkpoint::{CheckpointFolder, CheckpointMeta, HostTensor, preset};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const JOB_ENV: &str = "DEME_SAVE_FAULT_JOB";
const DIR_ENV: &str = "DEME_SAVE_FAULT_DIR";
/// Values per tensor: 4 tensors of 2M f32 = 32 MB per checkpoint, so a save
/// lasts long enough for a kill to land inside it.
const VALUES: usize = 2 << 20;

/// A checkpoint whose every weight and whose step is `v`.
fn checkpoint(v: u64, values: usize) -> CheckpointFolder {
    let mut tensors = deme_formats::checkpoint::TensorMap::new();
    for k in 0..4 {
        let data = vec![v as f32; values];
        tensors.insert(
            format!("block_{k}.weight"),
            HostTensor::from_f32(vec![values], &data).unwrap(),
        );
    }
    CheckpointFolder {
        tensors,
        config: Some(preset("mnist-tiny").unwrap()),
        meta: Some(CheckpointMeta::new("pretrain", v)),
        key_style: Default::default(),
    }
}

/// Loads `dir` and checks it is one whole checkpoint; returns its step.
fn check_whole(dir: &Path) -> u64 {
    let loaded = CheckpointFolder::load(dir).expect("the checkpoint loads");
    let step = loaded.meta.as_ref().expect("metadata present").step;
    for (k, t) in &loaded.tensors {
        let v = t.to_f32().unwrap();
        assert!(
            v.iter().all(|&x| x == step as f32),
            "{k} holds weights of another save than its metadata (step {step})"
        );
    }
    assert_eq!(loaded.tensors.len(), 4);
    step
}

fn child(job: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        &format!("child_{job}"),
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(JOB_ENV, job);
    c
}

fn staging_dirs(parent: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .contains(".saving-")
        })
        .collect()
}

/// Child: saves checkpoints step after step into `$DIR_ENV`, forever,
/// printing `saved N` after each.
#[test]
fn child_save_loop() {
    if std::env::var(JOB_ENV).as_deref() != Ok("save_loop") {
        return;
    }
    let dir = PathBuf::from(std::env::var(DIR_ENV).unwrap());
    let mut step = CheckpointFolder::load(&dir)
        .ok()
        .and_then(|c| c.meta.map(|m| m.step))
        .unwrap_or(0);
    loop {
        step += 1;
        checkpoint(step, VALUES).save(&dir).unwrap();
        println!("saved {step}");
    }
}

#[test]
fn kill_9_during_saves_leaves_a_whole_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("ckpt");
    let mut landed_mid_save = 0;
    let mut last_step = 0;
    for round in 0..10u64 {
        let mut proc = child("save_loop")
            .env(DIR_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
        // Wait for one finished save of this child, then for the next save to
        // begin (its staging folder appears), and kill at a varying moment of it:
        // a fixed delay alone misses the saves on a busy machine.
        let first = loop {
            let line = lines.next().expect("child saves").unwrap();
            if let Some(n) = line.strip_prefix("saved ") {
                break n.parse::<u64>().unwrap();
            }
        };
        let waiting = std::time::Instant::now();
        while staging_dirs(root.path()).is_empty() && waiting.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_millis(3 * round));
        proc.kill().unwrap();
        proc.wait().unwrap();
        if !staging_dirs(root.path()).is_empty() {
            landed_mid_save += 1;
        }
        let step = check_whole(&dir);
        assert!(step >= first && step >= last_step, "step went back: {step}");
        last_step = step;
    }
    // The test means something only if kills hit saves in progress.
    assert!(
        landed_mid_save >= 3,
        "only {landed_mid_save} of 10 kills landed inside a save"
    );
    // The next save clears what the killed ones left behind.
    checkpoint(last_step + 1, 16).save(&dir).unwrap();
    assert!(staging_dirs(root.path()).is_empty());
    assert_eq!(check_whole(&dir), last_step + 1);
}

/// Child: one save of a 32 MB checkpoint into `$DIR_ENV`; prints the error.
#[test]
fn child_save_once() {
    if std::env::var(JOB_ENV).as_deref() != Ok("save_once") {
        return;
    }
    let dir = PathBuf::from(std::env::var(DIR_ENV).unwrap());
    match checkpoint(2, VALUES).save(&dir) {
        Ok(()) => println!("saved"),
        Err(e) => {
            println!("error: {e:#}");
            std::process::exit(3);
        }
    }
}

#[cfg(unix)]
#[test]
fn a_save_that_runs_out_of_room_errors_and_keeps_the_old_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("ckpt");
    checkpoint(1, 1024).save(&dir).unwrap();
    // bash: ignore SIGXFSZ so the write fails with EFBIG instead of killing,
    // and cap files at 4 MiB (blocks of 1024 bytes).
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("bash")
        .args([
            "-c",
            "trap '' XFSZ; ulimit -f 4096; exec \"$0\" child_save_once --exact --nocapture --test-threads=1",
        ])
        .arg(&exe)
        .env(JOB_ENV, "save_once")
        .env(DIR_ENV, &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "the save must fail: {stdout}");
    assert!(
        stdout.contains("File too large") && stdout.contains("diffusion_pytorch_model.safetensors"),
        "the error names the OS error and the file: {stdout}"
    );
    assert!(stdout.contains("untouched"), "{stdout}");
    assert_eq!(check_whole(&dir), 1, "the old checkpoint is intact");
    assert!(staging_dirs(root.path()).is_empty(), "nothing left behind");
}
