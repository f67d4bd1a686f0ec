//! The runtime's layers, checked on its sources: `core` uses no other
//! module of the crate, and no two modules depend on each other, directly
//! or through others (each backend counts as a module of its own). A
//! dependency is a `crate::<module>` path outside comments and test code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules re-exported at the crate root under another name.
const ALIASES: &[(&str, &str)] = &[("model", "core"), ("host", "core"), ("codec", "core")];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The node a source file belongs to: its top-level module, or
/// `backend/<name>` for a backend.
fn node_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    match parts.as_slice() {
        [lib] if lib == "lib" => None,
        [backend, m] if backend == "backend" && m == "mod" => Some("backend".into()),
        [backend, name, ..] if backend == "backend" => Some(format!("backend/{name}")),
        [top, ..] => Some(top.clone()),
        [] => None,
    }
}

fn dependencies(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let nodes: BTreeSet<String> = files.iter().filter_map(|f| node_of(src, f)).collect();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(node) = node_of(src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a source file");
        let entry = deps.entry(node.clone()).or_default();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with("#[cfg(test)]") {
                break; // test modules may reach anywhere
            }
            if line.starts_with("//") {
                continue;
            }
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let mut names = rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::");
                let first = names.next().unwrap_or("");
                let first = ALIASES
                    .iter()
                    .find(|(alias, _)| *alias == first)
                    .map_or(first, |(_, real)| real);
                let dep = match (first, names.next()) {
                    ("backend", Some(name)) if nodes.contains(&format!("backend/{name}")) => {
                        format!("backend/{name}")
                    }
                    (first, _) => first.to_string(),
                };
                if dep != node && !node.starts_with(&format!("{dep}/")) && nodes.contains(&dep) {
                    entry.insert(dep);
                }
            }
        }
    }
    deps
}

/// Every module reachable from `from`.
fn reachable(deps: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(node) = todo.pop() {
        for next in deps.get(&node).into_iter().flatten() {
            if seen.insert(next.clone()) {
                todo.push(next.clone());
            }
        }
    }
    seen
}

#[test]
fn core_depends_on_nothing_and_no_module_depends_on_itself() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("otwrap-runtime/src");
    let deps = dependencies(&src);
    assert!(deps.contains_key("core") && deps.contains_key("backend/pool"));
    let core = &deps["core"];
    assert!(
        core.is_empty(),
        "core uses {core:?}: it must use no other module"
    );
    let mut cycles = Vec::new();
    for node in deps.keys() {
        if reachable(&deps, node).contains(node) {
            let back: Vec<&String> = deps[node]
                .iter()
                .filter(|d| reachable(&deps, d).contains(node))
                .collect();
            cycles.push(format!("{node} -> {back:?} -> ... -> {node}"));
        }
    }
    assert!(
        cycles.is_empty(),
        "module cycles:\n{}\n(all dependencies: {deps:#?})",
        cycles.join("\n")
    );
    // The layers the design names: the pool and the worker client know no
    // backend; backends know each other only through the pool.
    for (module, forbidden) in [
        ("worker", "backend"),
        ("backend/pool", "backend/ssh"),
        ("backend/pool", "backend/processes"),
        ("backend/processes", "backend/ssh"),
        ("backend/ssh", "backend/slurm"),
    ] {
        assert!(
            !reachable(&deps, module)
                .iter()
                .any(|d| d == forbidden || d.starts_with(&format!("{forbidden}/"))),
            "{module} must not depend on {forbidden}: {:?}",
            deps.get(module)
        );
    }
}
