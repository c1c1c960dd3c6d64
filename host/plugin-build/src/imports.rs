//! The warning `streamhost plugin build` gives when a built component imports a host interface
//! its `plugin.toml` does not ask for: a reader links only what is granted and asked for, so
//! such a component would be refused at load (`kv` needs `kv = true`, `rows` needs
//! `read_rows`, `push` needs `push = [...]`, `wasi:http` needs `http`).
//!
//! The component's imports are read with `wasmparser` (the top level only: nested core
//! modules and components import from their parent, not from the host).

use crate::world::ManifestImports;

/// The `streamhost:plugin` interfaces a manifest must ask for, and the key that asks.
const ASKED_FOR: [(&str, &str); 3] = [
    ("kv", "`kv = true`"),
    ("rows", "`read_rows = [...]`"),
    ("push", "`push = [...]`"),
];

/// One warning sentence per interface `component` imports that `manifest` does not ask for,
/// in the component's import order. Fails only when `component` is not a readable component.
pub fn undeclared_imports(
    component: &[u8],
    manifest: &ManifestImports,
) -> anyhow::Result<Vec<String>> {
    let mut warnings = Vec::new();
    for import in component_imports(component)? {
        if let Some(key) = missing_key(&import, manifest) {
            warnings.push(format!(
                "the component imports {import}, which plugin.toml does not ask for \
                 (add {key}, and a grant for it): a reader refuses to load it as it is"
            ));
        }
    }
    Ok(warnings)
}

/// The manifest key that would ask for `import`, when `manifest` does not.
fn missing_key(import: &str, manifest: &ManifestImports) -> Option<&'static str> {
    if import.starts_with("wasi:http/") {
        return (!manifest.has_http()).then_some("`http = [...]`");
    }
    let interface = import.strip_prefix("streamhost:plugin/")?;
    let interface = interface.split('@').next().unwrap_or(interface);
    ASKED_FOR
        .iter()
        .find(|(name, _)| *name == interface)
        .filter(|(name, _)| !manifest.imports.iter().any(|i| i == name))
        .map(|(_, key)| *key)
}

/// The names the top level of `component` imports (`streamhost:plugin/kv@0.2.0`, ...).
fn component_imports(component: &[u8]) -> anyhow::Result<Vec<String>> {
    use wasmparser::{Parser, Payload};
    if !Parser::is_component(component) {
        anyhow::bail!("not a WebAssembly component");
    }
    let mut names = Vec::new();
    // Every module or component, the outer one included, starts with `Version` and ends with
    // `End`; the outer component's sections are those at depth 1.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(component) {
        match payload.map_err(|e| anyhow::anyhow!("reading the component: {e}"))? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import =
                        import.map_err(|e| anyhow::anyhow!("reading the component: {e}"))?;
                    names.push(import.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_interfaces_the_manifest_does_not_ask_for_are_named() {
        let plain = ManifestImports::parse("name = \"p\"\n").unwrap();
        let kv = ManifestImports::parse("name = \"p\"\nkv = true\n").unwrap();
        assert_eq!(
            missing_key("streamhost:plugin/kv@0.2.0", &plain),
            Some("`kv = true`")
        );
        assert_eq!(missing_key("streamhost:plugin/kv@0.2.0", &kv), None);
        assert_eq!(missing_key("streamhost:plugin/log@0.2.0", &plain), None);
        assert_eq!(missing_key("wasi:cli/stdout@0.2.6", &plain), None);
        assert_eq!(
            missing_key("wasi:http/types@0.2.12", &plain),
            Some("`http = [...]`")
        );
        assert_eq!(
            missing_key("streamhost:plugin/push@0.2.0", &plain),
            Some("`push = [...]`")
        );
    }

    #[test]
    fn a_component_importing_kv_without_asking_gets_one_warning() {
        let component = wat::parse_str(
            r#"(component
                (import "streamhost:plugin/log@0.2.0" (instance))
                (import "streamhost:plugin/kv@0.2.0" (instance))
                (component (import "streamhost:plugin/push@0.2.0" (instance))))"#,
        )
        .unwrap();
        let plain = ManifestImports::parse("name = \"p\"\n").unwrap();
        let warnings = undeclared_imports(&component, &plain).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("streamhost:plugin/kv@0.2.0"));
        assert!(warnings[0].contains("`kv = true`"));
        let kv = ManifestImports::parse("name = \"p\"\nkv = true\n").unwrap();
        assert_eq!(
            undeclared_imports(&component, &kv).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn bytes_that_are_not_a_component_are_an_error() {
        let plain = ManifestImports::parse("name = \"p\"\n").unwrap();
        let err = undeclared_imports(b"not wasm", &plain).unwrap_err();
        assert!(err.to_string().contains("not a WebAssembly component"));
    }
}
