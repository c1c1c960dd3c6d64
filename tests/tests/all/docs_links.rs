//! Every relative link in the repository's Markdown (`README.md`, `BENCHMARKS.md`, `docs/`,
//! and the READMEs and notes under `plugins/`, `guest-sdk/` and `deploy/`) points at a file
//! or folder that exists, and every `#anchor` at a heading of its target, by GitHub's rule:
//! the heading's text in lowercase, spaces to `-`, punctuation other than `-` and `_`
//! dropped, `-1`, `-2`, ... added to repeats.
//!
//! The failure lists every broken link with its file and line, the target's headings when an
//! anchor is wrong, and where a file of the same name now lives when a path is wrong (files
//! move; the link should follow).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// Folders never searched for Markdown or for moved files.
const SKIPPED_DIRS: &[&str] = &["target", "node_modules", ".git"];

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let root = repo_root();
    let files = markdown_files(&root);
    assert!(
        files.iter().any(|f| f.ends_with("docs/design.md")),
        "found no docs under {}",
        root.display()
    );
    let mut headings: HashMap<PathBuf, Vec<String>> = HashMap::new();
    let mut broken = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        for link in links(&text) {
            if let Some(problem) = check(&root, file, &link.target, &mut headings) {
                broken.push(format!(
                    "{}:{}: ({}) {problem}",
                    relative(&root, file),
                    link.line,
                    link.target
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "{} broken relative link(s) in the Markdown docs:\n{}\n",
        broken.len(),
        broken.join("\n")
    );
}

/// The workspace root: the parent of this crate's folder.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace root")
        .to_path_buf()
}

/// The Markdown files whose links are checked.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    for dir in ["docs", "plugins", "guest-sdk", "deploy"] {
        walk(&root.join(dir), &mut |path| {
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path.to_path_buf());
            }
        });
    }
    files.retain(|f| f.is_file());
    files.sort();
    files
}

/// Calls `visit` on every file under `dir`, skipping [`SKIPPED_DIRS`].
fn walk(dir: &Path, visit: &mut dyn FnMut(&Path)) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy();
            if !SKIPPED_DIRS.contains(&name.as_ref()) {
                walk(&path, visit);
            }
        } else {
            visit(&path);
        }
    }
}

/// One link of a Markdown file.
#[derive(Debug, PartialEq)]
struct Link {
    line: usize,
    target: String,
}

/// The links outside fenced code blocks and code spans: inline `[text](target)`,
/// `![alt](target)`, and reference definitions `[label]: target`.
fn links(markdown: &str) -> Vec<Link> {
    let mut found = Vec::new();
    for (index, line) in prose_lines(markdown) {
        let line_text = without_code_spans(line);
        let trimmed = line_text.trim_start();
        if trimmed.starts_with('[')
            && let Some(end) = trimmed.find("]: ")
        {
            let target = trimmed[end + 3..].split_whitespace().next().unwrap_or("");
            found.push(Link {
                line: index + 1,
                target: target.to_owned(),
            });
            continue;
        }
        let mut rest = line_text.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(close) = after.find(')') else { break };
            let target = after[..close].split_whitespace().next().unwrap_or("");
            let target = target.trim_start_matches('<').trim_end_matches('>');
            found.push(Link {
                line: index + 1,
                target: target.to_owned(),
            });
            rest = &after[close..];
        }
    }
    found
}

/// The lines outside fenced code blocks (```` ``` ```` or `~~~`), with their 0-based index.
fn prose_lines(markdown: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut fence: Option<&str> = None;
    markdown.lines().enumerate().filter(move |(_, line)| {
        let trimmed = line.trim_start();
        for marker in ["```", "~~~"] {
            if trimmed.starts_with(marker) {
                match fence {
                    None => fence = Some(marker),
                    Some(open) if open == marker => fence = None,
                    Some(_) => {}
                }
                return false;
            }
        }
        fence.is_none()
    })
}

/// `line` with the contents of its code spans (`` `...` ``) blanked out.
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
            out.push(c);
        } else if in_code {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// What is wrong with `target`, a link in `file`, if anything.
fn check(
    root: &Path,
    file: &Path,
    target: &str,
    headings: &mut HashMap<PathBuf, Vec<String>>,
) -> Option<String> {
    if target.is_empty() {
        return Some("empty link".to_owned());
    }
    if target.contains("://") || target.starts_with("mailto:") || target.starts_with("//") {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let path = path.split('?').next().unwrap_or("");
    let resolved = if path.is_empty() {
        file.to_path_buf()
    } else if let Some(from_root) = path.strip_prefix('/') {
        root.join(from_root)
    } else {
        file.parent().unwrap().join(path)
    };
    if !resolved.exists() {
        return Some(format!(
            "no such file or folder: {}{}",
            normalise(root, &resolved),
            moved_hint(root, &resolved)
        ));
    }
    let anchor = anchor.filter(|a| !a.is_empty())?;
    if resolved.extension().is_none_or(|e| e != "md") {
        // Line anchors into code (`#L10`) are GitHub's, not checked.
        return None;
    }
    let known = headings.entry(resolved.clone()).or_insert_with(|| {
        let text = fs::read_to_string(&resolved).unwrap_or_default();
        anchors(&text)
    });
    if known.iter().any(|a| a == anchor) {
        return None;
    }
    Some(format!(
        "no heading with anchor #{anchor} in {}; its anchors: {}",
        normalise(root, &resolved),
        known.join(", ")
    ))
}

/// The anchors GitHub gives the headings of `markdown`, in order.
fn anchors(markdown: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (_, line) in prose_lines(markdown) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug = slug(line[hashes..].trim().trim_end_matches('#').trim());
        let repeats = seen.entry(slug.clone()).or_insert(0);
        out.push(if *repeats == 0 {
            slug
        } else {
            format!("{slug}-{repeats}")
        });
        *repeats += 1;
    }
    out
}

/// GitHub's anchor of a heading: the rendered text (a link's text, not its target), in
/// lowercase, spaces to `-`, every character other than letters, digits, `-` and `_` dropped.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](") else {
            break;
        };
        let Some(close) = rest[open + mid..].find(')') else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..open + mid]);
        rest = &rest[open + mid + close + 1..];
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// `path` relative to the repository root, with `.` and `..` resolved, for messages.
fn normalise(root: &Path, path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for part in path.strip_prefix(root).unwrap_or(path).components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                parts.pop();
            }
            other => parts.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    parts.join("/")
}

/// Where files named like `missing` are now, if anywhere in the repository.
fn moved_hint(root: &Path, missing: &Path) -> String {
    let Some(name) = missing.file_name() else {
        return String::new();
    };
    let mut found = BTreeMap::new();
    walk(root, &mut |path| {
        if path.file_name() == Some(name) {
            found.insert(relative(root, path), ());
        }
    });
    if found.is_empty() {
        String::new()
    } else {
        let places: Vec<_> = found.into_keys().collect();
        format!(" (a file of that name is at: {})", places.join(", "))
    }
}

/// `path` relative to the repository root, for messages.
fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn slugs_follow_githubs_rule() {
    assert_eq!(slug("Stream semantics"), "stream-semantics");
    assert_eq!(
        slug("`[writer.redis]` and `[reader.redis]`"),
        "writerredis-and-readerredis"
    );
    assert_eq!(
        slug("Manifest and grants: deny by default"),
        "manifest-and-grants-deny-by-default"
    );
    assert_eq!(slug("Synapse's streams"), "synapses-streams");
    assert_eq!(
        slug("1. Start from the template"),
        "1-start-from-the-template"
    );
    assert_eq!(
        slug("See [the writer](writer.md) now"),
        "see-the-writer-now"
    );
    assert_eq!(slug("snake_case and a-b"), "snake_case-and-a-b");
}

#[test]
fn repeated_headings_and_code_blocks() {
    let markdown = "# A\n## A\n```\n# not a heading [x](nowhere.md)\n```\n## A\n";
    assert_eq!(anchors(markdown), ["a", "a-1", "a-2"]);
    assert!(links(markdown).is_empty());
}

#[test]
fn links_outside_code_are_found() {
    let markdown = "See [a](a.md#x) and `[b](b.md)`, ![c](img/c.png \"title\").\n\
                    [ref]: ../d.md\n";
    let targets: Vec<_> = links(markdown).into_iter().map(|l| l.target).collect();
    assert_eq!(targets, ["a.md#x", "img/c.png", "../d.md"]);
}
