//! Replays every committed fuzz input through its target's entry point:
//! the seeds (`fuzz/seeds/<target>`), the corpus kept from fuzzing runs
//! (`fuzz/corpus/<target>`) and every crash ever found
//! (`fuzz/regressions/<target>`). A panic in any of them fails the test.
//!
//! Seeds are valid inputs, except those named `bad_*`, which must be refused.

use deme_formats::fuzzing::TARGETS;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("readable corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn every_fuzz_target_has_an_entry_point_and_seeds() {
    let on_disk: BTreeSet<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .collect();
    let listed: BTreeSet<String> = TARGETS.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(
        on_disk, listed,
        "fuzz/fuzz_targets and fuzzing::TARGETS differ"
    );
    for t in TARGETS {
        let seeds = files(&fuzz_dir().join("seeds").join(t.name));
        assert!(!seeds.is_empty(), "no seeds for fuzz target {}", t.name);
    }
}

#[test]
fn seeds_are_accepted_and_bad_seeds_refused() {
    for t in TARGETS {
        for path in files(&fuzz_dir().join("seeds").join(t.name)) {
            let data = fs::read(&path).unwrap();
            let bad = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("bad_"));
            assert_eq!(
                (t.run)(&data),
                !bad,
                "{}: seed {} was {}",
                t.name,
                path.display(),
                if bad { "accepted" } else { "refused" }
            );
        }
    }
}

#[test]
fn corpus_and_crash_regressions_replay_without_panic() {
    let mut replayed = 0;
    for t in TARGETS {
        for kind in ["corpus", "regressions"] {
            for path in files(&fuzz_dir().join(kind).join(t.name)) {
                let data = fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| (t.run)(&data));
                assert!(
                    outcome.is_ok(),
                    "{}: {} panics (replay with `cargo fuzz run {} {}`)",
                    t.name,
                    path.display(),
                    t.name,
                    path.display()
                );
                replayed += 1;
            }
        }
    }
    println!("replayed {replayed} corpus and regression inputs");
}
