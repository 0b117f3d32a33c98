//! What a user-supplied path is: a diffusers model folder, a bare
//! safetensors file, or something refused with a message saying why.
//!
//! PyTorch pickle checkpoints (`.bin`, `.pt`, `.pth`, `.ckpt`, `.pkl`) are
//! never opened: unpickling can run arbitrary code. The refusal says how to
//! convert them to safetensors.

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

/// Weights file of a diffusers model folder.
pub const WEIGHTS_NAME: &str = "diffusion_pytorch_model.safetensors";
/// The fp16 variant, used when [`WEIGHTS_NAME`] is missing.
pub const WEIGHTS_FP16_NAME: &str = "diffusion_pytorch_model.fp16.safetensors";
/// Config file of a diffusers model folder.
pub const CONFIG_NAME: &str = "config.json";
/// File extensions of pickle-based checkpoints, refused (compared
/// case-insensitively).
pub const PICKLE_EXTENSIONS: [&str; 6] = ["bin", "pt", "pth", "ckpt", "pkl", "pickle"];

/// Pickle weights a diffusers folder may hold instead of safetensors.
const PICKLE_WEIGHTS: [&str; 2] = [
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.bin",
];

/// A loadable weights location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsPath {
    /// A diffusers model folder (possibly the `unet/` of a pipeline folder).
    Folder {
        /// The model folder (holding `config.json`).
        dir: PathBuf,
        /// Its `config.json`.
        config: PathBuf,
        /// Its weights (`diffusion_pytorch_model[.fp16].safetensors`).
        weights: PathBuf,
    },
    /// A bare `.safetensors` file with no config beside it.
    File(PathBuf),
}

impl WeightsPath {
    /// The safetensors file to read.
    pub fn weights(&self) -> &Path {
        match self {
            WeightsPath::Folder { weights, .. } => weights,
            WeightsPath::File(p) => p,
        }
    }

    /// The `config.json`, for a folder.
    pub fn config(&self) -> Option<&Path> {
        match self {
            WeightsPath::Folder { config, .. } => Some(config),
            WeightsPath::File(_) => None,
        }
    }

    /// The model folder, for a folder.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            WeightsPath::Folder { dir, .. } => Some(dir),
            WeightsPath::File(_) => None,
        }
    }
}

/// Quotes a path as a Python string literal (good enough for messages).
fn py(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// The refusal message for a pickle checkpoint at `path`. `model_dir` is
/// the diffusers folder holding it, when there is one.
pub fn pickle_refusal(path: &Path, model_dir: Option<&Path>) -> String {
    let how = match model_dir {
        Some(dir) => {
            let out = PathBuf::from(format!("{}-safetensors", dir.display()));
            format!(
                "`from diffusers import UNet2DModel; UNet2DModel.from_pretrained({}).save_pretrained({}, safe_serialization=True)`",
                py(dir),
                py(&out)
            )
        }
        None => {
            let out = path.with_extension("safetensors");
            format!(
                "`import torch; from safetensors.torch import save_file; save_file(torch.load({}, map_location=\"cpu\", weights_only=True), {})` (for a diffusers folder: `from diffusers import UNet2DModel; UNet2DModel.from_pretrained(DIR).save_pretrained(OUT, safe_serialization=True)`)",
                py(path),
                py(&out)
            )
        }
    };
    format!(
        "{}: PyTorch pickle checkpoints are not loaded (loading a pickle can run arbitrary code). Convert it to safetensors first, e.g. in Python: {how}",
        path.display()
    )
}

/// Whether `path` has a pickle checkpoint extension.
fn is_pickle_ext(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| PICKLE_EXTENSIONS.iter().any(|p| p.eq_ignore_ascii_case(e)))
}

/// A diffusers model folder at exactly `dir`, if it is one. Any entry with the
/// right name counts (a FIFO or folder named `config.json` is then refused, named,
/// when it is opened, rather than passed over as missing).
fn model_folder(dir: &Path) -> Option<WeightsPath> {
    let config = dir.join(CONFIG_NAME);
    if !config.exists() {
        return None;
    }
    [WEIGHTS_NAME, WEIGHTS_FP16_NAME]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|w| w.exists())
        .map(|weights| WeightsPath::Folder {
            dir: dir.to_path_buf(),
            config,
            weights,
        })
}

/// Explains why a folder holds nothing loadable.
fn folder_refusal(dir: &Path) -> String {
    let candidates = [dir.to_path_buf(), dir.join("unet")];
    for d in &candidates {
        for name in PICKLE_WEIGHTS {
            let p = d.join(name);
            if p.is_file() {
                return pickle_refusal(&p, Some(d));
            }
        }
    }
    for d in &candidates {
        if d.join(format!("{WEIGHTS_NAME}.index.json")).is_file() {
            return format!(
                "{}: sharded checkpoints ({WEIGHTS_NAME}.index.json) are not supported; save the model as one file",
                d.display()
            );
        }
        for name in [WEIGHTS_NAME, WEIGHTS_FP16_NAME] {
            let w = d.join(name);
            if w.is_file() {
                return format!(
                    "{}: has {name} but no {CONFIG_NAME}; point at {} itself to load the weights without a config",
                    d.display(),
                    w.display()
                );
            }
        }
    }
    if dir.join("model_index.json").is_file() {
        return format!(
            "{}: a diffusers pipeline folder, but it has no unet/ folder with {CONFIG_NAME} and {WEIGHTS_NAME}",
            dir.display()
        );
    }
    let mut others: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.to_ascii_lowercase().ends_with(".safetensors"))
        .collect();
    others.sort();
    if !others.is_empty() {
        others.truncate(5);
        return format!(
            "{}: not a diffusers model folder (no {CONFIG_NAME} + {WEIGHTS_NAME}); it holds {}; point at one of those files to load it as bare weights",
            dir.display(),
            others.join(", ")
        );
    }
    format!(
        "{}: no model weights found: a diffusers model folder holds {CONFIG_NAME} and {WEIGHTS_NAME} (or a unet/ subfolder with them)",
        dir.display()
    )
}

/// Decides what `path` is: a diffusers model folder (also a pipeline
/// folder's `unet/`, and the fp16 weights variant when the plain one is
/// missing), a bare `.safetensors` file, or an error: missing path, folder
/// without weights, unknown file type, or a refused pickle checkpoint.
/// A path to a folder's `config.json` means that folder.
pub fn check_loadable_path(path: impl AsRef<Path>) -> Result<WeightsPath> {
    let path = path.as_ref();
    if !path.exists() {
        bail!("{}: no such file or folder", path.display());
    }
    if path.is_dir() {
        if let Some(w) = model_folder(path) {
            return Ok(w);
        }
        let unet = path.join("unet");
        if unet.is_dir()
            && let Some(w) = model_folder(&unet)
        {
            return Ok(w);
        }
        bail!("{}", folder_refusal(path));
    }
    if is_pickle_ext(path) {
        bail!("{}", pickle_refusal(path, None));
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext.eq_ignore_ascii_case("safetensors") {
        return Ok(WeightsPath::File(path.to_path_buf()));
    }
    if path.file_name().and_then(|n| n.to_str()) == Some(CONFIG_NAME) {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        return model_folder(&dir).ok_or_else(|| anyhow::anyhow!("{}", folder_refusal(&dir)));
    }
    bail!(
        "{}: not a loadable checkpoint: expected a .safetensors file or a diffusers model folder ({CONFIG_NAME} + {WEIGHTS_NAME})",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(p, b"x").unwrap();
    }

    fn err(p: &Path) -> String {
        format!("{:#}", check_loadable_path(p).unwrap_err())
    }

    #[test]
    fn pickle_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for ext in ["bin", "pt", "pth", "ckpt", "pkl", "PT", "Ckpt"] {
            let p = dir.path().join(format!("model.{ext}"));
            touch(&p);
            let msg = err(&p);
            assert!(
                msg.contains("pickle") && msg.contains("arbitrary code"),
                "{msg}"
            );
            assert!(msg.contains("safetensors"), "{msg}");
            assert!(msg.contains(&format!("model.{ext}")), "{msg}");
        }
    }

    #[test]
    fn folder_with_only_pickle_weights_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join(CONFIG_NAME));
        touch(&dir.path().join("diffusion_pytorch_model.bin"));
        let msg = err(dir.path());
        assert!(
            msg.contains("arbitrary code") && msg.contains("safe_serialization=True"),
            "{msg}"
        );
        assert!(msg.contains("from_pretrained"), "{msg}");
        // A pipeline whose unet holds only pickle weights, too.
        let pipe = tempfile::tempdir().unwrap();
        touch(&pipe.path().join("model_index.json"));
        touch(&pipe.path().join("unet").join(CONFIG_NAME));
        touch(&pipe.path().join("unet").join("diffusion_pytorch_model.bin"));
        assert!(err(pipe.path()).contains("pickle"));
    }

    #[test]
    fn diffusers_folders_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(&d.join(CONFIG_NAME));
        touch(&d.join(WEIGHTS_FP16_NAME));
        let w = check_loadable_path(d).unwrap();
        assert_eq!(w.weights(), d.join(WEIGHTS_FP16_NAME));
        assert_eq!(w.config(), Some(d.join(CONFIG_NAME).as_path()));
        // The plain weights win over the fp16 variant, and over pickles.
        touch(&d.join(WEIGHTS_NAME));
        touch(&d.join("diffusion_pytorch_model.bin"));
        assert_eq!(
            check_loadable_path(d).unwrap().weights(),
            d.join(WEIGHTS_NAME)
        );
        // Pointing at config.json means its folder.
        assert_eq!(
            check_loadable_path(d.join(CONFIG_NAME)).unwrap().dir(),
            Some(d)
        );

        let pipe = tempfile::tempdir().unwrap();
        let p = pipe.path();
        touch(&p.join("model_index.json"));
        touch(&p.join("unet").join(CONFIG_NAME));
        touch(&p.join("unet").join(WEIGHTS_NAME));
        let w = check_loadable_path(p).unwrap();
        assert_eq!(w.dir(), Some(p.join("unet").as_path()));
    }

    #[test]
    fn bare_files_and_other_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let st = d.join("weights.SafeTensors");
        touch(&st);
        assert_eq!(
            check_loadable_path(&st).unwrap(),
            WeightsPath::File(st.clone())
        );
        assert_eq!(check_loadable_path(&st).unwrap().config(), None);

        assert!(err(&d.join("missing")).contains("no such file"));
        let empty = d.join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(err(&empty).contains("no model weights found"));
        // Other safetensors files in the folder are pointed out.
        assert!(err(d).contains("weights.SafeTensors"));
        let txt = d.join("notes.txt");
        touch(&txt);
        assert!(err(&txt).contains("not a loadable checkpoint"));

        let no_config = d.join("noconf");
        touch(&no_config.join(WEIGHTS_NAME));
        assert!(err(&no_config).contains("no config.json"));
        let sharded = d.join("sharded");
        touch(&sharded.join(CONFIG_NAME));
        touch(&sharded.join(format!("{WEIGHTS_NAME}.index.json")));
        assert!(err(&sharded).contains("sharded"));
        let pipe = d.join("pipe");
        touch(&pipe.join("model_index.json"));
        assert!(err(&pipe).contains("pipeline"));
    }
}
