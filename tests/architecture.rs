//! The layer order of `src/lib.rs`, enforced: every dependency between top-level modules points
//! down (or sideways within a layer), and none closes a cycle.
//!
//! The checker reads source text: `crate::name` paths and `crate::{a, b::c}` groups outside
//! comments. It is deliberately simple (no macro expansion), which is enough for a codebase that
//! names what it imports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, top first, each a list of top-level module names.
type Layers = Vec<(String, Vec<String>)>;
/// Module -> modules it imports.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Reads the ```text block that follows the `layers:` marker in lib.rs's doc.
fn declared_layers(lib_rs: &str) -> Layers {
    let mut lines = lib_rs
        .lines()
        .skip_while(|l| !l.contains("<!-- layers:"))
        .skip(2); // the marker and the opening fence
    let mut layers = Vec::new();
    for line in lines.by_ref() {
        let text = line.trim_start_matches("//!").trim();
        if text.starts_with("```") {
            break;
        }
        let mut words = text.split_whitespace();
        if let Some(name) = words.next() {
            layers.push((name.to_string(), words.map(String::from).collect()));
        }
    }
    layers
}

/// Drops `//` comments (line and doc) so prose that names a module is not a dependency.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `text` refers to through `crate::`.
fn references(text: &str) -> BTreeSet<String> {
    let code = code_only(text);
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module -> the other top-level modules its files import.
fn graph_of(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let first = rel.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" || module == "cli" {
            continue; // the crate root and the binary sit above every layer
        }
        let text = std::fs::read_to_string(&file).expect("read");
        let deps = graph.entry(module.clone()).or_default();
        for r in references(&text) {
            if r != module {
                deps.insert(r);
            }
        }
    }
    graph
}

/// Every violation: undeclared modules, upward dependencies, cycles.
fn violations(layers: &Layers, graph: &Graph) -> Vec<String> {
    let rank: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, (_, mods))| mods.iter().map(move |m| (m.as_str(), layers.len() - i)))
        .collect();
    let layer_name = |m: &str| {
        layers
            .iter()
            .find(|(_, mods)| mods.iter().any(|x| x == m))
            .map_or("?", |(n, _)| n.as_str())
    };
    let mut out = Vec::new();
    for (module, deps) in graph {
        let Some(&from) = rank.get(module.as_str()) else {
            out.push(format!("module `{module}` is not in lib.rs's layer table"));
            continue;
        };
        for dep in deps {
            let Some(&to) = rank.get(dep.as_str()) else {
                continue; // not a module of ours (e.g. `crate::Error` re-exports)
            };
            if to > from {
                out.push(format!(
                    "`{module}` ({}) imports `{dep}` ({}), a layer above it",
                    layer_name(module),
                    layer_name(dep)
                ));
            }
        }
    }
    // Cycles: a depth-first search over the module graph.
    fn visit<'a>(
        node: &'a str,
        graph: &'a Graph,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        out: &mut Vec<String>,
    ) {
        if let Some(pos) = stack.iter().position(|n| *n == node) {
            let mut cycle: Vec<&str> = stack[pos..].to_vec();
            cycle.push(node);
            out.push(format!("import cycle: {}", cycle.join(" -> ")));
            return;
        }
        if !done.insert(node) {
            return;
        }
        stack.push(node);
        for dep in graph.get(node).into_iter().flatten() {
            if graph.contains_key(dep) {
                visit(dep, graph, stack, done, out);
            }
        }
        stack.pop();
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, graph, &mut Vec::new(), &mut done, &mut out);
    }
    out
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_tree_follows_the_declared_layer_order() {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).expect("lib.rs");
    let layers = declared_layers(&lib);
    assert!(
        layers.len() >= 5,
        "layer table not found in lib.rs: {layers:?}"
    );
    let graph = graph_of(&src_dir());
    assert!(graph.contains_key("routing") && graph.contains_key("proxy"));
    let problems = violations(&layers, &graph);
    assert!(
        problems.is_empty(),
        "architecture:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_declared_module_exists() {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).expect("lib.rs");
    for (_, mods) in declared_layers(&lib) {
        for m in mods {
            assert!(
                src_dir().join(format!("{m}.rs")).exists() || src_dir().join(&m).is_dir(),
                "lib.rs declares `{m}` in a layer but src/ has no such module"
            );
        }
    }
}

/// The sentence each top-level module's doc carries, so a reader of any module sees its place
/// without opening lib.rs: its layer, what it may import, what it never may.
fn layer_sentence(layers: &Layers, index: usize) -> String {
    let name = &layers[index].0;
    let below: Vec<&str> = layers[index + 1..]
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    let above: Vec<&str> = layers[..index].iter().map(|(n, _)| n.as_str()).collect();
    let mut s = format!("Layer: {name}. ");
    if below.is_empty() {
        s.push_str("May import only its own layer");
    } else {
        s.push_str(&format!(
            "May import its own layer and {}",
            below.join(", ")
        ));
    }
    if above.is_empty() {
        s.push_str("; nothing is above it.");
    } else {
        s.push_str(&format!("; never {}.", above.join(", ")));
    }
    s
}

/// The module's leading `//!` block as one line of words.
fn module_doc(text: &str) -> String {
    let words: Vec<&str> = text
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .flat_map(|l| l.trim_start_matches("//!").split_whitespace())
        .collect();
    words.join(" ")
}

#[test]
fn every_module_doc_states_its_layer() {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).expect("lib.rs");
    let layers = declared_layers(&lib);
    let mut missing = Vec::new();
    for (index, (_, mods)) in layers.iter().enumerate() {
        let want = layer_sentence(&layers, index);
        for m in mods {
            let file = src_dir().join(format!("{m}.rs"));
            let file = if file.exists() {
                file
            } else {
                src_dir().join(m).join("mod.rs")
            };
            let text = std::fs::read_to_string(&file).expect("module file");
            if !module_doc(&text).contains(&want) {
                missing.push(format!("{}: its doc must say \"{want}\"", file.display()));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn the_layer_sentence_follows_the_table() {
    let l = layers(&[("top", &["a"]), ("mid", &["b"]), ("bottom", &["c"])]);
    assert_eq!(
        layer_sentence(&l, 0),
        "Layer: top. May import its own layer and mid, bottom; nothing is above it."
    );
    assert_eq!(
        layer_sentence(&l, 1),
        "Layer: mid. May import its own layer and bottom; never top."
    );
    assert_eq!(
        layer_sentence(&l, 2),
        "Layer: bottom. May import only its own layer; never top, mid."
    );
}

fn layers(spec: &[(&str, &[&str])]) -> Layers {
    spec.iter()
        .map(|(n, m)| (n.to_string(), m.iter().map(|x| x.to_string()).collect()))
        .collect()
}

fn graph(edges: &[(&str, &[&str])]) -> Graph {
    edges
        .iter()
        .map(|(m, d)| (m.to_string(), d.iter().map(|x| x.to_string()).collect()))
        .collect()
}

#[test]
fn checker_rejects_a_back_edge() {
    let l = layers(&[
        ("request", &["proxy"]),
        ("snapshot", &["state"]),
        ("domain", &["routing"]),
    ]);
    let ok = graph(&[
        ("proxy", &["state", "routing"]),
        ("state", &["routing"]),
        ("routing", &[]),
    ]);
    assert!(violations(&l, &ok).is_empty());
    // routing -> state is the back-edge this restructuring removed.
    let bad = graph(&[
        ("proxy", &["state"]),
        ("state", &["routing"]),
        ("routing", &["state"]),
    ]);
    let found = violations(&l, &bad);
    assert!(
        found
            .iter()
            .any(|v| v.contains("`routing` (domain) imports `state` (snapshot)")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|v| v.starts_with("import cycle")),
        "{found:?}"
    );
}

#[test]
fn checker_rejects_a_cycle_within_a_layer_and_undeclared_modules() {
    let l = layers(&[("request", &["fast_path", "proxy"])]);
    let cyclic = graph(&[("fast_path", &["proxy"]), ("proxy", &["fast_path"])]);
    let found = violations(&l, &cyclic);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("fast_path -> proxy -> fast_path")
            || found[0].contains("proxy -> fast_path -> proxy")
    );
    let undeclared = graph(&[("shiny", &[])]);
    assert_eq!(
        violations(&l, &undeclared),
        vec!["module `shiny` is not in lib.rs's layer table".to_string()]
    );
}

#[test]
fn references_are_read_from_code_not_comments() {
    let text = "//! see crate::proxy\nuse crate::{routing::Table, state};\nlet x = crate::metrics::names::X; // crate::app\n";
    let got: Vec<String> = references(text).into_iter().collect();
    assert_eq!(got, ["metrics", "routing", "state"]);
}
