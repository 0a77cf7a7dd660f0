//! The engine's shape, kept by a test (docs/architecture.md): the imports between the top-level
//! modules of `crates/core/src` (a `crate::x` reference outside `#[cfg(test)]` counts as an import
//! of `x`) form no circle — each module builds only on modules below it — and the archive format
//! imports nothing of the engine but its errors. A change that brings a circle back fails here,
//! naming the modules in it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What the archive format may import: the errors, nothing else of the engine.
const ARCHIVE_MAY_IMPORT: &[&str] = &["error"];

/// Every `.rs` file below `root`.
fn sources(root: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("read src").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().and_then(|x| x.to_str()) == Some("rs") {
                files.push(p);
            }
        }
    }
    files
}

/// Top-level module → the top-level modules it imports.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = sources(&root);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&root).expect("under src");
        let top = rel.components().next().expect("a component").as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if top == "lib" {
            continue;
        }
        let mut text = std::fs::read_to_string(f).expect("read");
        if let Some(i) = text.find("#[cfg(test)]") {
            text.truncate(i);
        }
        // Comments name modules without importing them.
        let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        let refs = graph.entry(top.clone()).or_default();
        let mut rest = code.as_str();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + 7..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for part in group[..end].split(',') {
                    let name: String = part.trim().chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                    if !name.is_empty() {
                        refs.insert(name);
                    }
                }
            } else {
                let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                if !name.is_empty() {
                    refs.insert(name);
                }
            }
        }
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for (m, refs) in graph.iter_mut() {
        refs.retain(|r| r != m && modules.contains(r));
    }
    graph
}

/// The strongly connected components with more than one module (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g[v].iter() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut c = BTreeSet::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                c.insert(w.to_string());
                if w == v {
                    break;
                }
            }
            if c.len() > 1 {
                t.out.push(c);
            }
        }
    }
    let mut t = T { g: graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), next: 0, out: Vec::new() };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_module_imports_in_a_circle_and_the_archive_format_reaches_no_further() {
    let graph = imports();
    assert!(graph.len() > 20 && graph.contains_key("archive") && graph["backup"].contains("archive"), "the import graph was read: {graph:?}");
    let found = circles(&graph);
    let described: Vec<String> = found
        .iter()
        .map(|c| {
            let edges: Vec<String> = c.iter().flat_map(|m| graph[m].iter().filter(|r| c.contains(*r)).map(move |r| format!("{m} -> {r}"))).collect();
            format!("{c:?} through {}", edges.join(", "))
        })
        .collect();
    assert!(found.is_empty(), "modules import each other in a circle: {}; move what the lower one needs below it (docs/architecture.md)", described.join("; "));
    let archive: Vec<&String> = graph["archive"].iter().filter(|m| !ARCHIVE_MAY_IMPORT.contains(&m.as_str())).collect();
    assert!(archive.is_empty(), "archive/ imports {archive:?}: the format must not reach further into the engine");
}

#[test]
fn the_circle_finder_finds_a_circle_it_is_given() {
    let g: BTreeMap<String, BTreeSet<String>> = [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec!["a"])]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
    assert_eq!(circles(&g), vec![["a", "b", "c"].into_iter().map(String::from).collect::<BTreeSet<_>>()]);
}

/// Each job's catalog table has one writer, its record module: whatever else records something
/// about a backup, a restore or a migration goes through it.
#[test]
fn each_job_table_is_written_by_its_record_module_alone() {
    let owners = [("backup_executions", "backup/records.rs"), ("restore_operations", "restore/records.rs"), ("migration_jobs", "migrate/records.rs")];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = sources(&root);
    let mut strays = Vec::new();
    let mut seen = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(&root).expect("under src").to_string_lossy().replace('\\', "/");
        let mut text = std::fs::read_to_string(f).expect("read");
        if let Some(i) = text.find("#[cfg(test)]") {
            text.truncate(i);
        }
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for (table, owner) in owners {
            for verb in ["INSERT INTO", "UPDATE", "DELETE FROM"] {
                if flat.contains(&format!("{verb} {table}")) {
                    seen.insert(table);
                    if rel != owner {
                        strays.push(format!("{rel}: {verb} {table}"));
                    }
                }
            }
            if flat.contains(&format!("interrupt_dead( ctx, \"{table}\"")) || flat.contains(&format!("interrupt_dead(ctx, \"{table}\"")) {
                seen.insert(table);
                if rel != owner {
                    strays.push(format!("{rel}: interrupt_dead on {table}"));
                }
            }
        }
    }
    assert_eq!(seen.len(), owners.len(), "every job table's writes were found: {seen:?}");
    assert!(strays.is_empty(), "job tables written outside their record module: {strays:?}; add a function to the owner and call it");
}
