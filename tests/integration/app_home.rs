//! The application's About view and status bar, driven through egui_kittest.

use deme_studio::app::{StudioApp, View};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

#[test]
fn about_view_shows_the_default_and_the_device() {
    let mut app = StudioApp::with_reason("cpu (flex): test".into());
    app.set_view(View::About);
    let mut harness = Harness::builder()
        .with_size([1280.0, 800.0])
        .build_ui_state(|ui, app: &mut StudioApp| app.page_ui(ui), app);
    harness.run_ok();
    harness.get_by_label_contains("embedded MNIST: 10000 digits");
    harness.get_by_label_contains(
        "default model: UNet2DModel `mnist-tiny`, 3 levels [16, 32, 64], 28 px",
    );
    harness.get_by_label_contains("compute: cpu (flex): test");
}
