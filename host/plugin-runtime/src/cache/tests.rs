#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::*;

/// The smallest component: the preamble of the component binary format.
const EMPTY_COMPONENT: &[u8] = &[0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// Loads `sha` through `cache`, counting compilations in `compiled`.
fn load(cache: &CompileCache, engine: &Engine, compiled: &AtomicUsize) {
    cache
        .load_or_compile(engine, "abc", || {
            compiled.fetch_add(1, Ordering::SeqCst);
            Ok(Component::new(engine, EMPTY_COMPONENT)?)
        })
        .unwrap();
}

/// The one artifact in `dir`.
fn artifact(dir: &Path) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

/// A cache with one stored artifact; returns the folder, the engine and its compile count.
fn cache_with_artifact() -> (tempfile::TempDir, Engine, CompileCache, AtomicUsize) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default();
    let cache = CompileCache::new(&dir.path().join("compiled"), &engine).unwrap();
    let compiled = AtomicUsize::new(0);
    load(&cache, &engine, &compiled);
    load(&cache, &engine, &compiled);
    assert_eq!(compiled.load(Ordering::SeqCst), 1, "the second load hits");
    (dir, engine, cache, compiled)
}

#[test]
fn concurrent_loads_compile_once_and_later_ones_hit_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default();
    let compiled = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (engine, compiled, barrier) = (engine.clone(), compiled.clone(), barrier.clone());
            let cache = CompileCache::new(dir.path(), &engine).unwrap();
            std::thread::spawn(move || {
                barrier.wait();
                cache
                    .load_or_compile(&engine, "abc", || {
                        compiled.fetch_add(1, Ordering::SeqCst);
                        // Long enough for every other thread to find the lock taken.
                        std::thread::sleep(Duration::from_millis(200));
                        Ok(Component::new(&engine, EMPTY_COMPONENT)?)
                    })
                    .unwrap();
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(compiled.load(Ordering::SeqCst), 1);
    let cache = CompileCache::new(dir.path(), &engine).unwrap();
    cache
        .load_or_compile(&engine, "abc", || panic!("compiled although cached"))
        .unwrap();
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "the artifact and the key remain: {names:?}");
    assert!(names[0].ends_with(".cwasm"), "{names:?}");
    assert_eq!(names[1], "cache.key");
}

#[test]
fn a_tampered_artifact_is_deleted_and_compiled_again() {
    let (dir, engine, cache, compiled) = cache_with_artifact();
    let path = artifact(&dir.path().join("compiled"));
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    // A byte of the artifact itself (after the MAC), which wasmtime would not notice.
    let n = MAC_LEN + (bad.len() - MAC_LEN) / 2;
    bad[n] ^= 0x01;
    std::fs::write(&path, &bad).unwrap();
    load(&cache, &engine, &compiled);
    assert_eq!(compiled.load(Ordering::SeqCst), 2, "recompiled, not loaded");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        good,
        "replaced by a good one"
    );
    load(&cache, &engine, &compiled);
    assert_eq!(compiled.load(Ordering::SeqCst), 2, "the new one is used");
}

#[test]
fn a_truncated_or_foreign_artifact_is_compiled_again() {
    let (dir, engine, cache, compiled) = cache_with_artifact();
    let path = artifact(&dir.path().join("compiled"));
    let good = std::fs::read(&path).unwrap();
    for (what, bytes) in [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("shorter than a MAC", good[..10].to_vec()),
        ("empty", Vec::new()),
        (
            "unsigned (wasmtime's bytes alone)",
            good[MAC_LEN..].to_vec(),
        ),
    ] {
        let before = compiled.load(Ordering::SeqCst);
        std::fs::write(&path, &bytes).unwrap();
        load(&cache, &engine, &compiled);
        assert_eq!(compiled.load(Ordering::SeqCst), before + 1, "{what}");
        assert_eq!(std::fs::read(&path).unwrap(), good, "{what}");
    }
    // Another installation's key signs differently: its artifacts are not loaded either.
    std::fs::write(&path, &good).unwrap();
    let other = tempfile::tempdir().unwrap();
    let foreign = CompileCache::new(other.path(), &engine).unwrap();
    let before = compiled.load(Ordering::SeqCst);
    std::fs::copy(&path, other.path().join(path.file_name().unwrap())).unwrap();
    load(&foreign, &engine, &compiled);
    assert_eq!(compiled.load(Ordering::SeqCst), before + 1, "foreign key");
}

#[test]
fn a_folder_others_can_write_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default();
    for mode in [0o777, 0o770, 0o1777] {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        let error = format!("{:#}", CompileCache::new(dir.path(), &engine).unwrap_err());
        assert!(error.contains(&dir.path().display().to_string()), "{error}");
        assert!(
            error.contains(&format!("chmod 700 {}", dir.path().display())),
            "{error}"
        );
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    CompileCache::new(dir.path(), &engine).unwrap();
}

#[test]
fn the_folder_is_created_owner_only_and_the_key_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("a").join("compiled");
    let engine = Engine::default();
    let cache = CompileCache::new(&folder, &engine).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&folder), 0o700);
    assert_eq!(mode(&folder.join("cache.key")), 0o600);
    assert_eq!(std::fs::read(folder.join("cache.key")).unwrap().len(), 32);
    load(&cache, &engine, &AtomicUsize::new(0));
    assert_eq!(mode(&artifact(&folder)), 0o600);
    // A key others could read may be known: refused, naming the file.
    std::fs::set_permissions(
        folder.join("cache.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let error = format!("{:#}", CompileCache::new(&folder, &engine).unwrap_err());
    assert!(error.contains("cache.key"), "{error}");
    // The same key is used across restarts, so artifacts survive them.
    std::fs::set_permissions(
        folder.join("cache.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let again = CompileCache::new(&folder, &engine).unwrap();
    again
        .load_or_compile(&engine, "abc", || panic!("compiled although cached"))
        .unwrap();
}
