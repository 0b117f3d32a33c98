//! Which folders the merge view works on: a base model and its N experts, and
//! where the shipped default set lives.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Environment variable naming the `assets/` folder to use.
pub const ASSETS_ENV: &str = "DEME_STUDIO_ASSETS";
/// The shipped default set inside `assets/`.
pub const DEFAULT_SET: &str = "mnist-tiny";

/// A base model folder and its experts, in timestep-range order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSet {
    /// The pretrained model theta.
    pub base: PathBuf,
    /// The experts theta_1..theta_N.
    pub experts: Vec<PathBuf>,
}

impl ModelSet {
    /// Whether every folder still exists.
    pub fn exists(&self) -> bool {
        self.base.is_dir() && !self.experts.is_empty() && self.experts.iter().all(|e| e.is_dir())
    }

    /// Finds a set inside `dir`: the base at `dir/base` (or `dir` itself when
    /// it holds a `config.json`), the experts at `expert_1..expert_N` inside
    /// `dir/deme`, `dir/FT`, `dir/ft` or `dir`.
    pub fn discover(dir: &Path) -> Option<Self> {
        let base = [dir.join("base"), dir.to_path_buf()]
            .into_iter()
            .find(|p| p.join("config.json").is_file())?;
        let experts = ["deme", "FT", "ft", "."]
            .iter()
            .map(|sub| expert_folders(&dir.join(sub)))
            .find(|e| !e.is_empty())?;
        Some(Self { base, experts })
    }

    /// A short name for the set: the folder holding `base/`, else the base's folder name.
    pub fn name(&self) -> String {
        let base = folder_name(&self.base);
        match self.base.parent() {
            Some(parent) if base == "base" && parent.file_name().is_some() => folder_name(parent),
            _ => base,
        }
    }

    /// A short name for each model: `base`, then each expert's folder name.
    pub fn labels(&self) -> Vec<String> {
        std::iter::once(folder_name(&self.base))
            .chain(self.experts.iter().map(|e| folder_name(e)))
            .collect()
    }
}

/// The last path component (or the whole path).
pub fn folder_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// `dir/expert_1`, `dir/expert_2`, ... for as long as they exist.
pub fn expert_folders(dir: &Path) -> Vec<PathBuf> {
    (1..)
        .map(|i| dir.join(format!("expert_{i}")))
        .take_while(|p| p.is_dir())
        .collect()
}

/// The `assets/` folder: `$DEME_STUDIO_ASSETS`, else an `assets/` next to the
/// executable or in one of its ancestors, else the source tree's.
pub fn assets_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(ASSETS_ENV) {
        return Some(PathBuf::from(p));
    }
    let beside_exe = std::env::current_exe().ok().and_then(|exe| {
        exe.parent()?
            .ancestors()
            .map(|a| a.join("assets"))
            .find(|a| a.join(DEFAULT_SET).is_dir())
    });
    beside_exe.or_else(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        p.is_dir().then_some(p)
    })
}

/// The shipped default set (`assets/mnist-tiny/base` + `deme/expert_*`), when present.
pub fn default_set() -> Option<ModelSet> {
    default_set_in(&assets_dir()?)
}

/// The default set inside a given `assets/` folder.
pub fn default_set_in(assets: &Path) -> Option<ModelSet> {
    let dir = assets.join(DEFAULT_SET);
    let base = dir.join("base");
    let experts = expert_folders(&dir.join("deme"));
    (base.join("config.json").is_file() && !experts.is_empty())
        .then_some(ModelSet { base, experts })
}

/// The commands that make a set like the shipped one.
pub const MAKE_SET_HELP: &str = "deme-studio train --data mnist --model mnist-tiny --batch-size 64 \\\n    --steps 37500 --lr-decay-steps 4000 --warmup 500 --out runs/mnist/base\n\
deme-studio finetune --base runs/mnist/base --data mnist --experts 4 \\\n    --batch-size 64 --steps-per-expert 938 --out runs/mnist/deme";

#[cfg(test)]
mod tests {
    use super::*;

    fn touch_model(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
    }

    #[test]
    fn sets_are_found_in_the_layouts_the_cli_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join(DEFAULT_SET);
        assert_eq!(default_set_in(tmp.path()), None);
        touch_model(&root.join("base"));
        for i in 1..=3 {
            touch_model(&root.join(format!("deme/expert_{i}")));
        }
        touch_model(&root.join("deme/expert_5")); // a gap ends the list
        let set = default_set_in(tmp.path()).unwrap();
        assert_eq!(set.experts.len(), 3);
        assert!(set.exists());
        assert_eq!(ModelSet::discover(&root), Some(set.clone()));
        assert_eq!(set.name(), DEFAULT_SET);
        assert_eq!(
            set.labels(),
            vec!["base", "expert_1", "expert_2", "expert_3"]
        );
        // FT/ layout
        let other = tmp.path().join("other");
        touch_model(&other.join("base"));
        touch_model(&other.join("FT/expert_1"));
        let found = ModelSet::discover(&other).unwrap();
        assert_eq!(found.experts, vec![other.join("FT/expert_1")]);
        assert_eq!(ModelSet::discover(&tmp.path().join("none")), None);
    }
}
