//! `plugin.toml` (`host/plugin-runtime/src/manifest.rs`) as a reader loads it: parsed, granted
//! everything it asks for (what `plugin run` and the demo do), its capabilities resolved. A
//! parsed manifest serialises to TOML that parses to a manifest serialising the same.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use streamhost_plugin_runtime::{Capabilities, Grant, Manifest};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = Path::new("plugin.toml");
    let Ok(manifest) = Manifest::parse(text, origin) else {
        return;
    };
    if let Ok(grant) = Grant::everything_asked(&manifest) {
        let _ = Capabilities::resolve(&manifest, &grant);
    }
    let written = toml::to_string(&manifest).expect("a parsed manifest serialises");
    let again = Manifest::parse(&written, origin).expect("a serialised manifest parses");
    let rewritten = toml::to_string(&again).expect("a parsed manifest serialises");
    assert_eq!(
        rewritten, written,
        "parse -> write -> parse changed the manifest"
    );
});
