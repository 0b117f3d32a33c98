//! The application's start page, driven through egui_kittest.

use deme_studio::app::StudioApp;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

#[test]
fn start_page_shows_the_default_and_the_device() {
    let mut app = StudioApp::with_reason("cpu (flex): test".into());
    let mut harness = Harness::new_ui(move |ui| app.page_ui(ui));
    harness.run();
    harness.get_by_label_contains("embedded MNIST: 10000 digits");
    harness.get_by_label_contains("mnist-small");
    harness.get_by_label_contains("compute: cpu (flex): test");
}
