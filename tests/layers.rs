//! The layers of `src/`, held to what `src/lib.rs` says of them: each
//! top-level module imports only the modules below it, so that `src/` has
//! no import circle, and the domain and its backends know nothing of HTTP.
//!
//! Read from the source, as a reader would: every `crate::…` path outside
//! comments names the module it reaches into.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and the modules it may import, from the top of
/// the stack down. `lib.rs` and `main.rs` wire them all together and are
/// not in it.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "http",
        &[
            "server", "rate", "hub", "webhook", "domain", "model", "observe", "config",
        ],
    ),
    ("upkeep", &["hub", "rate", "observe"]),
    ("webhook", &["hub", "domain", "model", "observe", "config"]),
    ("server", &[]),
    ("hub", &["domain", "model", "observe"]),
    ("domain", &["model", "observe"]),
    ("rate", &[]),
    ("model", &[]),
    ("observe", &["config"]),
    ("config", &[]),
];

/// Words that only code that speaks HTTP has any use for.
const HTTP_WORDS: &[&str] = &[
    "axum",
    "hyper",
    "StatusCode",
    "problem+json",
    "ApiError",
    "IntoResponse",
    "HeaderValue",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The top-level module a file belongs to: `hub` for `src/hub/redis/mod.rs`,
/// `model` for `src/model.rs`.
fn module_of(file: &Path) -> String {
    let relative = file.strip_prefix(src()).expect("a file under src/");
    let first = relative
        .components()
        .next()
        .expect("a path")
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// The code of a file without its comments (line comments only: the
/// codebase writes no block comments), so that a doc comment that names a
/// module is no import.
fn code_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("a source file is text");
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") { "" } else { line }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a file's code names through `crate::`, including
/// the grouped form `crate::{a, b::c}`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |text: &str| -> String {
        text.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for part in group.split(',') {
                let name = ident(part.trim());
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// Which top-level module imports which, over all of `src/`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src()) {
        let module = module_of(&file);
        if module == "lib" || module == "main" {
            continue;
        }
        let names = imports(&code_of(&file));
        let edges = graph.entry(module.clone()).or_default();
        edges.extend(names.into_iter().filter(|name| *name != module));
    }
    graph
}

#[test]
fn every_top_level_module_is_in_the_layer_table() {
    let layered: BTreeSet<&str> = LAYERS.iter().map(|(name, _)| *name).collect();
    for module in graph().keys() {
        assert!(
            layered.contains(module.as_str()),
            "src/{module} is in no layer of tests/layers.rs: say what it may import"
        );
    }
}

#[test]
fn each_module_imports_only_the_layers_below_it() {
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut wrong = Vec::new();
    for (module, imported) in graph() {
        let may = allowed.get(module.as_str()).copied().unwrap_or_default();
        for name in imported {
            if !may.contains(&name.as_str()) {
                wrong.push(format!("{module} imports crate::{name}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers: {wrong:#?}");
}

#[test]
fn the_layer_table_itself_only_points_down() {
    let position: BTreeMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .map(|(at, (name, _))| (*name, at))
        .collect();
    for (at, (module, may)) in LAYERS.iter().enumerate() {
        for name in *may {
            assert!(
                position.get(name).is_some_and(|below| *below > at),
                "{module} may import {name}, which is not below it"
            );
        }
    }
}

#[test]
fn src_has_no_import_circle_between_its_top_level_modules() {
    let graph = graph();
    // Depth-first, with the path kept to name a circle when there is one.
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|seen| seen == module) {
            let mut circle = path[start..].to_vec();
            circle.push(module.to_owned());
            return Some(circle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(circle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("an import circle: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn the_domain_its_backends_and_the_wire_types_know_nothing_of_http() {
    let root = src();
    let mut files = rust_files(&root.join("domain"));
    files.extend(rust_files(&root.join("hub")));
    files.push(root.join("model.rs"));
    let mut found = Vec::new();
    for file in files {
        let code = code_of(&file);
        for word in HTTP_WORDS {
            if code.contains(word) {
                found.push(format!("{} says {word}", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "HTTP in the domain: {found:#?}");
}

#[test]
fn the_reader_finds_imports_in_every_form_the_code_writes() {
    let code =
        "use crate::hub::Hub;\nuse crate::{model, observe::metrics};\nlet x = crate::rate::f();\n";
    let names: Vec<String> = imports(code).into_iter().collect();
    assert_eq!(names, ["hub", "model", "observe", "rate"]);
}
