//! The integration tests, gathered into one test binary so that the whole crate and its
//! dependencies are linked once: one module per area, named for what it checks.
//! Run one area with `cargo test --test integration AREA::` (for example `merge::`).

mod common;

mod app_frame_time;
mod app_gradsim;
mod app_home;
mod app_landscape;
mod app_merge;
mod app_taskvec;
mod app_teaching;
mod app_toy_views;
mod app_train;
mod app_train_gradsim;
mod bench_smoke;
mod cli;
mod diffusers_parity;
mod faults;
mod finetune;
mod gradsim;
mod grid_search;
mod hostile_input;
mod landscape;
mod merge;
mod metric;
mod replicate;
mod snapshots;
mod toy_quality;
mod train;
mod tv_stats;
mod wgpu_reductions;
