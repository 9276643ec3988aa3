//! The shape of the code, checked: which room may import which (docs/architecture.md), no
//! import circle between files, no file over 800 lines, and no source named outside its
//! folder and the registry.
//!
//! The import graph is read from the source text: every `crate::a::b` path and every
//! `super::` path outside a file's `#[cfg(test)]` module, resolved to the file that defines
//! the module it names (the longest known prefix). Macros and glob re-exports are not followed:
//! ecogate has none that cross a room.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lines a source file may have (the developers' guide).
const MAX_LINES: usize = 800;

struct Module {
    file: PathBuf,
    /// `["sources", "mqtt", "client"]` for src/sources/mqtt/client.rs; `[]` for lib.rs.
    path: Vec<String>,
    /// The text before its `#[cfg(test)]` module, comments removed.
    code: String,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let code = match line.find("//") {
            // A `//` inside a string literal ("http://...") is rare enough in a path line to
            // keep: what follows it is not an import.
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

fn modules() -> Vec<Module> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let rel = file.strip_prefix(&src).unwrap();
            let mut path: Vec<String> = rel
                .iter()
                .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            if matches!(
                path.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                path.pop();
            }
            let code = strip_comments(&std::fs::read_to_string(&file).unwrap());
            Module { file, path, code }
        })
        .collect()
}

/// The module paths `code` names: `crate::a::b::Item` and `super::x::Item`.
fn references(m: &Module) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = m.code.as_bytes();
    for (start, anchor) in [("crate::", None), ("super::", Some(()))] {
        let mut from = 0;
        while let Some(i) = m.code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            // A word boundary before it (not `foo_crate::`).
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let mut parts: Vec<String> = Vec::new();
            let mut rest = &m.code[from..];
            let mut supers = 1;
            if anchor.is_some() {
                while let Some(r) = rest.strip_prefix("super::") {
                    supers += 1;
                    rest = r;
                }
            }
            loop {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                if end == 0 {
                    break;
                }
                parts.push(rest[..end].to_string());
                match rest[end..].strip_prefix("::") {
                    Some(r) => rest = r,
                    None => break,
                }
            }
            let mut full = if anchor.is_some() {
                // `super` of src/a/b.rs and of src/a/b/mod.rs alike is `a`.
                let mut base = m.path.clone();
                for _ in 0..supers {
                    base.pop();
                }
                base
            } else {
                Vec::new()
            };
            full.extend(parts);
            out.push(full);
        }
    }
    out
}

/// The file-level import graph: module path -> the module paths it names.
fn graph(mods: &[Module]) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let known: BTreeSet<Vec<String>> = mods.iter().map(|m| m.path.clone()).collect();
    let mut g = BTreeMap::new();
    for m in mods {
        let mut to = BTreeSet::new();
        for r in references(m) {
            let mut p = r;
            while !p.is_empty() && !known.contains(&p) {
                p.pop();
            }
            // Its own module and its ancestors' mod.rs (a `pub mod` declaration) are no import.
            if p.is_empty() || p == m.path {
                continue;
            }
            to.insert(p);
        }
        g.insert(m.path.clone(), to);
    }
    g
}

fn name(p: &[String]) -> String {
    if p.is_empty() {
        "crate".into()
    } else {
        p.join("::")
    }
}

/// The room a module lives in, as docs/architecture.md names them.
fn room(p: &[String]) -> &str {
    p.first().map_or("crate", String::as_str)
}

/// What a room may import, besides itself (docs/architecture.md, "Rooms").
fn may_import(from: &[String], to: &[String]) -> bool {
    const CORE: &[&str] = &[
        "config",
        "accounting",
        "evaluation",
        "reading",
        "units",
        "util",
    ];
    let (a, b) = (room(from), room(to));
    if a == b {
        // Within sources/ and sinks/: a component imports the folder's shared parts, never
        // another component.
        if matches!(a, "sources" | "sinks") && from.len() > 1 && to.len() > 1 {
            // A sink that commits with the store implements the store's `CommitHook`.
            let shared = matches!(to[1].as_str(), "health" | "outbox" | "lock" | "store");
            // The registry lists every source; a source uses only the shared parts.
            return from[1] == to[1] || from[1] == "registry" || shared;
        }
        return true;
    }
    let core = CORE.contains(&b);
    match a {
        "units" | "reading" | "util" => matches!(b, "units" | "reading" | "util"),
        "config" => matches!(b, "units" | "util" | "reading"),
        "accounting" | "evaluation" => core,
        "statistics" => core,
        "pipeline" => core || matches!(b, "sinks" | "metrics" | "component"),
        "sources" => {
            core || matches!(b, "pipeline" | "metrics" | "component")
                || (b == "status" && to.get(1).is_some_and(|s| s == "model"))
        }
        "sinks" => core || matches!(b, "metrics" | "component"),
        "figures" => core || b == "sinks" && to.len() == 2,
        // Metrics watch every stage but read no store: the figures a scrape reads from the store
        // are wired by the application (app/scraped.rs).
        "metrics" => core || b == "component",
        "alerting" | "report" => {
            core || matches!(b, "sinks" | "figures" | "metrics" | "report" | "component")
        }
        "replay" => core || matches!(b, "sinks" | "pipeline" | "metrics"),
        // The status pages: their model names the meter status type; their HTML uses the
        // report's words and number forms.
        "status" => {
            core || matches!(b, "report" | "figures")
                || b == "sources" && to.get(1).is_some_and(|s| s == "health")
        }
        // The application, the demo and the command line know every part.
        "app" | "demo" | "main" | "crate" | "lib" | "sys" => true,
        "component" => false,
        _ => false,
    }
}

#[test]
fn no_import_runs_back_up() {
    let mods = modules();
    let g = graph(&mods);
    let mut wrong = Vec::new();
    for (from, tos) in &g {
        for to in tos {
            if !may_import(from, to) {
                wrong.push(format!("{} -> {}", name(from), name(to)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that run back up (docs/architecture.md, \"Rooms\"):\n{}",
        wrong.join("\n")
    );
}

/// Tarjan's strongly connected components; every one of more than one file is a circle.
fn circles(g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on: BTreeSet<&'a Vec<String>>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a Vec<String>) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.get(v).into_iter().flatten() {
            let Some((w, _)) = g.get_key_value(w) else {
                continue;
            };
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                scc.push(name(w));
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_import_circle() {
    let mods = modules();
    let found = circles(&graph(&mods));
    let text: Vec<String> = found.iter().map(|c| c.join(" <-> ")).collect();
    assert!(
        found.is_empty(),
        "files that import each other, directly or round a circle:\n{}",
        text.join("\n")
    );
}

#[test]
fn no_file_over_800_lines() {
    let long: Vec<String> = modules()
        .iter()
        .filter_map(|m| {
            let n = std::fs::read_to_string(&m.file).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", m.file.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}

/// A source kind is named only in its own folder and the registry: the daemon, health, status
/// page, probe and `check` go through the registry.
#[test]
fn no_source_is_named_outside_its_folder_and_the_registry() {
    let mods = modules();
    let kinds: Vec<String> = mods
        .iter()
        .filter(|m| m.path.len() == 2 && m.path[0] == "sources")
        .filter(|m| m.file.file_name().is_some_and(|n| n == "mod.rs"))
        .map(|m| m.path[1].clone())
        .collect();
    assert!(kinds.len() >= 2, "sources found: {kinds:?}");
    let mut named = Vec::new();
    for m in &mods {
        let inside = |k: &str| {
            m.path.len() >= 2
                && m.path[0] == "sources"
                && (m.path[1] == k || m.path[1] == "registry")
        };
        // The demo builds a park of simulated meters of each kind: an application of its own.
        if matches!(room(&m.path), "demo") {
            continue;
        }
        for k in &kinds {
            if !inside(k) && m.code.contains(&format!("sources::{k}")) {
                named.push(format!("{} names sources::{k}", m.file.display()));
            }
        }
    }
    assert!(named.is_empty(), "{}", named.join("\n"));
}
