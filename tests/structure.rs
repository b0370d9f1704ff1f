//! The plan of `src/` as its folders state it: each area's documentation
//! (`src/AREA/mod.rs`) names, on a line `May import: ...`, the areas it may
//! use; no file imports outside them, no module imports in a circle, and
//! no file of code is over 500 lines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    files(Path::new(SRC), &mut out);
    out.sort();
    out
}

/// The file's path below `src/`, split: `["disk", "map.rs"]`.
fn parts(path: &Path) -> Vec<String> {
    path.strip_prefix(SRC)
        .unwrap()
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// The module a file belongs to, as `area::module` (a submodule's file
/// counts as its parent's: `boot/bootstrap/swap.rs` is `boot::bootstrap`).
fn node_of(path: &Path) -> Option<String> {
    let p = parts(path);
    if p.len() < 2 {
        return None;
    }
    let module = p[1].trim_end_matches(".rs");
    Some(if module == "mod" {
        p[0].clone()
    } else {
        format!("{}::{module}", p[0])
    })
}

/// Code without comments: lines starting with `//` left out, and the rest
/// of a line after ` // `.
fn code(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| l.split(" // ").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::AREA::MODULE` a text names, as (area, Some(module)); a
/// group `crate::AREA::{a, b::c}` gives each of its members.
fn references(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let area: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let after = &rest[area.len()..];
        let Some(after) = after.strip_prefix("::") else {
            out.push((area, None));
            continue;
        };
        if let Some(group) = after.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for member in inner.split(',') {
                let name: String = member
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != "self" {
                    out.push((area.clone(), Some(name)));
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push((area, (!name.is_empty()).then_some(name)));
        }
    }
    out
}

/// What each area may import, as its documentation says.
fn rules() -> BTreeMap<String, BTreeSet<String>> {
    let mut rules = BTreeMap::new();
    for entry in fs::read_dir(SRC).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let area = dir.file_name().unwrap().to_string_lossy().into_owned();
        let doc = fs::read_to_string(dir.join("mod.rs"))
            .unwrap_or_else(|_| panic!("src/{area}/ has no mod.rs saying what it is for"));
        let line = doc
            .lines()
            .find_map(|l| l.strip_prefix("//! May import: "))
            .unwrap_or_else(|| panic!("src/{area}/mod.rs has no line `//! May import: ...`"));
        let allowed: BTreeSet<String> = line
            .trim_end_matches('.')
            .split(',')
            .map(|a| a.trim().to_string())
            .filter(|a| a != "nothing of ours")
            .collect();
        rules.insert(area, allowed);
    }
    rules
}

#[test]
fn every_area_imports_only_what_its_documentation_allows() {
    let rules = rules();
    assert!(rules.len() >= 8, "the areas: {rules:?}");
    for (area, allowed) in &rules {
        for a in allowed {
            assert!(
                rules.contains_key(a),
                "src/{area}/mod.rs allows {a:?}, which is no area"
            );
        }
    }
    let mut broken = Vec::new();
    for path in all_files() {
        let p = parts(&path);
        if p.len() < 2 {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        for (target, _) in references(&code(&text)) {
            if target == p[0] || target == "testing" {
                continue;
            }
            if !rules[&p[0]].contains(&target) {
                broken.push(format!("src/{}: imports {target}", p.join("/")));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports the areas do not allow:\n{}",
        broken.join("\n")
    );
}

#[test]
fn no_module_imports_in_a_circle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in all_files() {
        let Some(from) = node_of(&path) else {
            continue;
        };
        let text = fs::read_to_string(&path).unwrap();
        let edges = graph.entry(from.clone()).or_default();
        for (area, module) in references(&code(&text)) {
            let Some(module) = module else { continue };
            if area == "testing" {
                continue;
            }
            let to = format!("{area}::{module}");
            if to != from && !from.starts_with(&format!("{to}::")) {
                edges.insert(to);
            }
        }
    }
    // Depth-first search; a node met again on the current path closes a
    // circle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut circle = path[i..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if !done.insert(node.to_string()) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        let mut path = Vec::new();
        if let Some(circle) = visit(node, &graph, &mut path, &mut done) {
            panic!("modules importing in a circle: {}", circle.join(" -> "));
        }
    }
    assert!(graph.len() > 30, "too few modules found: {}", graph.len());
}

#[test]
fn every_file_opens_with_its_job() {
    let missing: Vec<String> = all_files()
        .into_iter()
        .filter(|p| !p.ends_with("tests.rs"))
        .filter(|p| {
            !fs::read_to_string(p)
                .unwrap()
                .trim_start()
                .starts_with("//!")
        })
        .map(|p| parts(&p).join("/"))
        .collect();
    assert!(
        missing.is_empty(),
        "files without an opening comment: {missing:?}"
    );
}

#[test]
fn the_checks_see_a_broken_rule() {
    // The readers this test stands on, tried on a text that breaks them.
    let text = "use crate::boot::config;\nuse crate::kernel::{blkid, views as k};\n// crate::support::report\nlet x = crate::disk::map::run();";
    let refs = references(&code(text));
    assert_eq!(
        refs,
        vec![
            ("boot".into(), Some("config".into())),
            ("kernel".into(), Some("blkid".into())),
            ("kernel".into(), Some("views".into())),
            ("disk".into(), Some("map".into())),
        ]
    );
}

#[test]
fn no_file_of_code_is_over_the_limit() {
    // Unit tests live in their own `tests.rs`, which the limit leaves out.
    const MAX_LINES: usize = 500;
    let long: Vec<String> = all_files()
        .into_iter()
        .filter(|p| !p.ends_with("tests.rs"))
        .filter_map(|p| {
            let n = fs::read_to_string(&p).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("src/{} ({n} lines)", parts(&p).join("/")))
        })
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}
