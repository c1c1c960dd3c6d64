//! The TOML configuration (`host/server/src/config`): parsed, both halves validated, and
//! printed as `config check` does (secrets masked). The printed text must be TOML again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamhost_server::config::ConfigFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = ConfigFile::parse(text) else {
        return;
    };
    let _ = config.writer.validate();
    let _ = config.reader.validate();
    let masked = config
        .to_masked_toml()
        .expect("config check prints every parsed configuration");
    let _: toml::Table = toml::from_str(&masked).expect("config check printed invalid TOML");
});
