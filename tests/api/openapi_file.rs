//! `openapi/openapi.json` is the document the handlers generate. When this
//! fails, regenerate it with
//! `SIGNALPOST_UPDATE_OPENAPI=1 cargo test --test api openapi_file`.

use std::path::Path;

#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    let generated = signalpost::openapi()
        .to_pretty_json()
        .expect("the document serializes")
        + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    if std::env::var_os("SIGNALPOST_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("openapi/openapi.json is writable");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `SIGNALPOST_UPDATE_OPENAPI=1 cargo test --test api openapi_file` and commit it"
    );
}
