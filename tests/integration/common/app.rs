//! Driving the app headless with egui_kittest.

use deme_studio::app::StudioApp;
use egui_kittest::Harness;
use std::time::{Duration, Instant};

/// A harness of `size` pixels around `app`'s whole page.
pub fn harness_sized(app: StudioApp, size: [f32; 2]) -> Harness<'static, StudioApp> {
    Harness::builder()
        .with_size(size)
        .with_max_steps(10_000)
        .build_ui_state(|ui, app: &mut StudioApp| app.page_ui(ui), app)
}

/// A harness of `size` pixels around `app`'s whole page, rendered by a wgpu
/// renderer that has the field pipeline, as the window's has (build `app` with
/// `gpu_maps: true` so that its maps use it).
pub fn gpu_harness_sized(app: StudioApp, size: [f32; 2]) -> Harness<'static, StudioApp> {
    let render_state = egui_kittest::wgpu::create_render_state(
        egui_kittest::wgpu::default_wgpu_setup(),
        eframe::egui_wgpu::RendererOptions::PREDICTABLE,
    );
    deme_studio::app::field_paint::register(&render_state);
    Harness::builder()
        .with_size(size)
        .with_max_steps(10_000)
        .renderer(egui_kittest::wgpu::WgpuTestRenderer::from_render_state(
            render_state,
        ))
        .build_ui_state(|ui, app: &mut StudioApp| app.page_ui(ui), app)
}

/// Steps the app until `cond` holds (failing after `limit`), then once more.
pub fn wait_until_within(
    h: &mut Harness<'_, StudioApp>,
    what: &str,
    limit: Duration,
    cond: impl Fn(&StudioApp) -> bool,
) {
    let start = Instant::now();
    loop {
        h.step();
        if cond(h.state()) {
            break;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
}

/// Few preview samples and steps, so that the merge worker leaves the CPU to
/// the job under test.
pub fn quick_previews() -> deme_studio::app::settings::PreviewSettings {
    deme_studio::app::settings::PreviewSettings {
        samples: 1,
        seed: 0,
        fast_steps: 1,
        fine_steps: 1,
        eval_samples: 8,
    }
}

/// The app on `view` with quick previews and `models` open, in a 1280 x 800 harness.
pub fn app_on(
    view: deme_studio::app::View,
    models: Option<deme_studio::engine::model_set::ModelSet>,
) -> Harness<'static, StudioApp> {
    let app = StudioApp::headless(deme_studio::app::StartOptions {
        models,
        settings: deme_studio::app::Settings {
            view,
            preview: quick_previews(),
            ..deme_studio::app::Settings::default()
        },
        ..deme_studio::app::StartOptions::cpu("cpu (flex): test")
    });
    harness_sized(app, [1280.0, 800.0])
}

/// A press and release of the primary button at `pos`.
pub fn click_at(h: &mut Harness<'_, StudioApp>, pos: egui::Pos2) {
    h.hover_at(pos);
    h.step();
    h.drag_at(pos);
    h.step();
    h.drop_at(pos);
    h.step();
    h.step();
}

/// The app on the Train view with the default settings and no models open.
pub fn train_app() -> Harness<'static, StudioApp> {
    let app = StudioApp::headless(deme_studio::app::StartOptions {
        settings: deme_studio::app::Settings {
            view: deme_studio::app::View::Train,
            ..deme_studio::app::Settings::default()
        },
        ..deme_studio::app::StartOptions::cpu("cpu (flex): test")
    });
    harness_sized(app, [1280.0, 800.0])
}

/// Steps the app until `cond` holds (failing after five minutes), then once more.
pub fn wait_until(h: &mut Harness<'_, StudioApp>, what: &str, cond: impl Fn(&StudioApp) -> bool) {
    wait_until_within(h, what, Duration::from_secs(300), cond);
}

/// Clicks the widget labelled `label` and steps once.
pub fn click(h: &mut Harness<'_, StudioApp>, label: &str) {
    use egui_kittest::kittest::Queryable;
    h.get_by_label(label).click();
    h.step();
}
