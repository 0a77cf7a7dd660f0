fn main() {
    // The config lives at the repository root (see PLATFORM-NOTES.md).
    let attrs = tauri_build::Attributes::new().config_path("../tauri.conf.json");
    tauri_build::try_build(attrs).expect("failed to run tauri-build");
}
