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
