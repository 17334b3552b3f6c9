//! The import graph of `s1-shared` kept as `docs/design.md` (Layers) draws it: no two files
//! import each other, directly or round a loop, and no module imports one its layer may not.
//! Read from the code's own `use crate::` / `use super::` lines (and inline `crate::` paths),
//! outside test modules; a failure names the files and lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where an import is: file and line.
type At = (String, usize);

/// `from` module may not import `to` module (by module path prefix), and why.
const FORBIDDEN: &[(&str, &str, &str)] = &[
    ("s1::client", "store", "the S1 client knows no state"),
    ("s1::dto", "store", "S1's wire types know no state"),
    ("s1", "platform", "the S1 client knows no platform"),
    ("s1", "usecase", "the S1 client is below the use cases"),
    ("store", "usecase", "the store is below the use cases"),
    ("store", "lambda", "the store is below the composition root"),
    ("platform", "lambda", "the platforms are below the composition root"),
    ("platform", "usecase", "the platform port is below the use cases"),
    ("usecase", "lambda", "the use cases are below the composition root"),
    ("domain", "usecase", "the domain rules are below the use cases"),
    ("domain", "platform", "the domain rules know no platform"),
    ("domain", "store", "the model is below the store that keeps it"),
    ("domain", "tenant", "the model is below the tenant's configuration"),
    (
        "tenant",
        "store",
        "the tenant's configuration is below the store that keeps it",
    ),
    ("tenant", "usecase", "the tenant's configuration is below the use cases"),
    ("ip", "config", "the address rule is below the configuration"),
    ("net", "usecase", "outbound HTTP is below the use cases"),
];

fn src() -> PathBuf {
    // The core crate beside this one in the workspace (`shared/`, the crate `s1-shared`).
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .join("shared")
        .join("src")
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A file's module path (`usecase::poll_threats` for `usecase/poll_threats/mod.rs`).
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The file a module path (or a name inside one) lives in: its longest prefix that is a file.
fn file_of(root: &Path, path: &[String]) -> Option<PathBuf> {
    for k in (1..=path.len()).rev() {
        let base = root.join(path[..k].join("/"));
        for candidate in [base.with_extension("rs"), base.join("mod.rs")] {
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.to_owned()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut start, mut out) = (0, 0, Vec::new());
    let mut items = Vec::new();
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
        for e in expand(item) {
            out.push(if e == "self" {
                prefix.trim_end_matches("::").to_owned()
            } else {
                format!("{prefix}{e}")
            });
        }
    }
    out
}

/// The module paths a file imports, with the line of each.
fn imports(text: &str, module: &[String], is_mod_file: bool) -> Vec<(Vec<String>, usize)> {
    // Test modules at the end of a file are not part of the graph.
    let code = text.split("\n#[cfg(test)]").next().unwrap_or(text);
    let mut out = Vec::new();
    let resolve = |path: &str| -> Option<Vec<String>> {
        let path = path.split(" as ").next()?.trim();
        let mut segs: Vec<&str> = path.split("::").map(str::trim).collect();
        let mut base: Vec<String> = match segs.first()? {
            &"crate" => {
                segs.remove(0);
                Vec::new()
            }
            &"super" | &"self" => {
                let mut b = module.to_vec();
                // In `a/b.rs` (module a::b) `self` is a::b; in a mod.rs the same.
                let _ = is_mod_file;
                while let Some(&s) = segs.first() {
                    match s {
                        "super" => {
                            b.pop();
                        }
                        "self" => {}
                        _ => break,
                    }
                    segs.remove(0);
                }
                b
            }
            _ => return None,
        };
        base.extend(
            segs.iter()
                .filter(|s| !s.is_empty() && **s != "*")
                .map(|s| (*s).to_owned()),
        );
        Some(base)
    };
    let mut line_no = 0;
    let mut lines = code.lines().peekable();
    while let Some(line) = lines.next() {
        line_no += 1;
        let trimmed = line.trim_start();
        let top = !line.starts_with(' ') && !line.starts_with('\t');
        let stmt = trimmed
            .strip_prefix("pub use ")
            .or_else(|| trimmed.strip_prefix("pub(crate) use "))
            .or_else(|| trimmed.strip_prefix("pub(super) use "))
            .or_else(|| trimmed.strip_prefix("use "));
        if let (true, Some(rest)) = (top, stmt) {
            let mut tree = rest.to_owned();
            let at = line_no;
            while !tree.contains(';') {
                let Some(next) = lines.next() else { break };
                line_no += 1;
                tree.push_str(next.trim());
            }
            let tree = tree.split(';').next().unwrap_or_default();
            for path in expand(tree) {
                if let Some(p) = resolve(&path) {
                    out.push((p, at));
                }
            }
            continue;
        }
        // Inline paths: `crate::a::b::C` anywhere in the code.
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') && !trimmed.starts_with("//") {
                if let Some(p) = resolve(tail[..end].trim_end_matches(':')) {
                    out.push((p, line_no));
                }
            }
            rest = &tail[end.max(1)..];
        }
    }
    out
}

/// Whether one module is the other's ancestor (a parent and its child share a file's face).
fn related(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

struct Graph {
    edges: BTreeMap<String, BTreeMap<String, Vec<At>>>,
    modules: BTreeMap<String, Vec<String>>,
}

fn graph() -> Graph {
    let root = src();
    let mut all = Vec::new();
    files(&root, &mut all);
    let name = |p: &Path| p.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
    let mut g = Graph {
        edges: BTreeMap::new(),
        modules: BTreeMap::new(),
    };
    for file in &all {
        let module = module_of(&root, file);
        g.modules.insert(name(file), module.clone());
        let text = std::fs::read_to_string(file).unwrap();
        let is_mod = file.file_name().is_some_and(|f| f == "mod.rs");
        for (path, line) in imports(&text, &module, is_mod) {
            let Some(target) = file_of(&root, &path) else { continue };
            let target_module = module_of(&root, &target);
            if target == *file || related(&module, &target_module) {
                continue;
            }
            g.edges
                .entry(name(file))
                .or_default()
                .entry(name(&target))
                .or_default()
                .push((name(file), line));
        }
    }
    g
}

/// Strongly connected components of more than one file (Tarjan).
fn cycles(g: &Graph) -> Vec<BTreeSet<String>> {
    struct T<'g> {
        g: &'g Graph,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        next: usize,
        out: Vec<BTreeSet<String>>,
    }
    fn visit(t: &mut T<'_>, v: &str) {
        t.index.insert(v.to_owned(), t.next);
        t.low.insert(v.to_owned(), t.next);
        t.next += 1;
        t.stack.push(v.to_owned());
        t.on.insert(v.to_owned());
        let targets: Vec<String> =
            t.g.edges
                .get(v)
                .map(|e| e.keys().cloned().collect())
                .unwrap_or_default();
        for w in targets {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let l = t.low[&w].min(t.low[v]);
                t.low.insert(v.to_owned(), l);
            } else if t.on.contains(&w) {
                let l = t.index[&w].min(t.low[v]);
                t.low.insert(v.to_owned(), l);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = BTreeSet::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = w == v;
                scc.insert(w);
                if done {
                    break;
                }
            }
            if scc.len() > 1 {
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
    for v in g.modules.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_two_files_of_the_core_import_each_other() {
    let g = graph();
    assert!(
        g.edges.values().map(BTreeMap::len).sum::<usize>() > 50,
        "the graph was read"
    );
    let found = cycles(&g);
    let described: Vec<String> = found
        .iter()
        .map(|scc| {
            let mut lines = Vec::new();
            for from in scc {
                for (to, at) in g.edges.get(from).into_iter().flatten() {
                    if scc.contains(to) {
                        let (file, line) = &at[0];
                        lines.push(format!("  shared/src/{file}:{line} imports shared/src/{to}"));
                    }
                }
            }
            format!("a cycle of {} files:\n{}", scc.len(), lines.join("\n"))
        })
        .collect();
    assert!(found.is_empty(), "{}", described.join("\n"));
}

#[test]
fn no_module_imports_one_its_layer_may_not() {
    let g = graph();
    let mut broken = Vec::new();
    for (from, targets) in &g.edges {
        let from_module = g.modules[from].join("::");
        for (to, at) in targets {
            let to_module = g.modules[to].join("::");
            for (low, high, why) in FORBIDDEN {
                let under = |m: &str, p: &str| m == p || m.starts_with(&format!("{p}::"));
                if under(&from_module, low) && under(&to_module, high) {
                    let (file, line) = &at[0];
                    broken.push(format!("shared/src/{file}:{line} imports shared/src/{to}: {why}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "imports against the layers:\n{}", broken.join("\n"));
}

#[test]
fn the_reader_sees_an_import_cycle_when_there_is_one() {
    // The checks above would pass on a graph they failed to read: prove the reader and the cycle
    // search on a small tree of two files importing each other.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    std::fs::write(dir.path().join("a/mod.rs"), "mod b;\nmod c;\n").unwrap();
    std::fs::write(dir.path().join("a/b.rs"), "use super::c::{X, Y};\n").unwrap();
    std::fs::write(dir.path().join("a/c.rs"), "fn f() { crate::a::b::Z }\n").unwrap();
    let b = imports("use super::c::{X, Y};\n", &["a".into(), "b".into()], false);
    assert_eq!(b[0].0, ["a", "c", "X"]);
    assert_eq!(
        file_of(dir.path(), &b[0].0).unwrap(),
        dir.path().join("a/c.rs"),
        "a name resolves to the file that holds it"
    );
    let c = imports("fn f() { crate::a::b::Z }\n", &["a".into(), "c".into()], false);
    assert_eq!(c[0].0, ["a", "b", "Z"]);
    let mut g = Graph {
        edges: BTreeMap::new(),
        modules: BTreeMap::from([
            ("a/b.rs".to_owned(), vec!["a".into(), "b".into()]),
            ("a/c.rs".to_owned(), vec!["a".into(), "c".into()]),
        ]),
    };
    g.edges
        .entry("a/b.rs".into())
        .or_default()
        .insert("a/c.rs".into(), vec![("a/b.rs".into(), 1)]);
    g.edges
        .entry("a/c.rs".into())
        .or_default()
        .insert("a/b.rs".into(), vec![("a/c.rs".into(), 1)]);
    assert_eq!(cycles(&g).len(), 1);
    assert_eq!(expand("a::{b, c::{d, e}, self}"), ["a::b", "a::c::d", "a::c::e", "a"]);
}
