use std::path::PathBuf;

/// The UI's TypeScript types are generated from the Rust types; the committed file must match.
#[test]
fn the_committed_typescript_bindings_match_the_rust_types() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(safehold_core::bindings::PATH);
    let generated = safehold_core::bindings::typescript();
    if std::env::var_os("SAFEHOLD_WRITE_BINDINGS").is_some() {
        std::fs::write(&path, &generated).expect("write bindings");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run `make bindings` and commit the result",
        path.display()
    );
}
