//! Checkpoints: safetensors files and diffusers folders on the host side.
//!
//! This layer moves named host tensors ([`HostTensor`]) between disk and
//! memory; it knows nothing of burn tensors or the model (another module
//! binds the tensors to the network).
//!
//! - [`host_tensor`]: dtype, shape and bytes; f32 conversion.
//! - [`safetensors_io`]: validated reads, atomic deterministic writes.
//! - [`atomic`]: atomic file writes.
//! - [`folder_swap`]: whole-folder saves that appear at once.
//! - [`unet_config`]: diffusers `UNet2DModel` `config.json`, presets.
//! - [`keys`]: legacy/modern attention key names.
//! - [`refuse`]: what a user path is; pickle checkpoints refused.
//! - [`metadata`]: deme-studio's `deme.json`.
//! - [`folder`]: load/save a whole checkpoint, content hash.

pub mod atomic;
pub mod folder;
pub mod folder_swap;
pub mod host_tensor;
pub mod keys;
pub mod metadata;
pub mod refuse;
pub mod safetensors_io;
pub mod unet_config;

pub use atomic::{write_atomic, write_atomic_bytes};
pub use folder::{CheckpointFolder, content_hash};
pub use folder_swap::{FolderSave, SwapMode, write_folder_atomic};
pub use host_tensor::{DType, HostTensor, TensorMap};
pub use keys::{KeyStyle, normalize_key, normalize_keys, to_style};
pub use metadata::{CheckpointMeta, META_FILE_NAME, read_meta, write_meta};
pub use refuse::{WeightsPath, check_loadable_path};
pub use safetensors_io::{
    read_safetensors, read_safetensors_bytes, safetensors_metadata, serialize_safetensors,
    write_safetensors,
};
pub use unet_config::{DEFAULT_IMAGE_PRESET, PRESET_NAMES, UNet2DConfig, load_config, preset};
