//! The house rules, checked on every test run (`docs/ARCHITECTURE.md`): in
//! each crate no top-level module imports (`crate::x`, tests left out) one
//! that imports it; no product file is over 800 lines; the core crate
//! depends on no actix crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: [&str; 3] = ["src", "actors/src", "core/src"];
const MAX_LINES: usize = 800;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Product `.rs` files under `dir` (test files and `tests/` folders left out).
fn product_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            if name != "tests" {
                product_files(&p, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs") {
            out.push(p);
        }
    }
}

/// `text` without its `#[cfg(test)] mod … { … }` blocks.
fn strip_tests(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("#[cfg(test)]") {
        let after = &rest[i + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_mod = trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ");
        let open = trimmed.find('{');
        let semi = trimmed.find(';');
        match (is_mod, open) {
            (true, Some(o)) if semi.is_none_or(|s| s > o) => {
                out.push_str(&rest[..i]);
                let body = &trimmed[o + 1..];
                let mut depth = 1;
                let mut end = body.len();
                for (j, c) in body.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                rest = &body[end..];
            }
            _ => {
                out.push_str(&rest[..i + "#[cfg(test)]".len()]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The top-level module a file belongs to.
fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// `crate::x` references in `text`.
fn uses(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        let tail = &rest[i + "crate::".len()..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') && !name.is_empty() {
            out.insert(name);
        }
        rest = tail;
    }
    out
}

/// The module graph of the crate whose sources are in `src`.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    product_files(src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mods: BTreeSet<String> = files.iter().map(|f| top_module(src, f)).collect();
    for f in &files {
        let m = top_module(src, f);
        if m == "lib" || m == "main" {
            continue;
        }
        let text = strip_tests(&std::fs::read_to_string(f).unwrap());
        let deps = g.entry(m.clone()).or_default();
        for u in uses(&text) {
            if u != m && mods.contains(&u) {
                deps.insert(u);
            }
        }
    }
    g
}

/// A cycle through `start`, if any (a path of modules back to it).
fn cycle(g: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((m, path)) = stack.pop() {
        for d in g.get(&m).into_iter().flatten() {
            if d == start {
                let mut p = path.clone();
                p.push(d.clone());
                return Some(p);
            }
            if seen.insert(d.clone()) {
                let mut p = path.clone();
                p.push(d.clone());
                stack.push((d.clone(), p));
            }
        }
    }
    None
}

#[test]
fn no_crate_has_an_import_cycle_between_its_top_level_modules() {
    let mut found = Vec::new();
    for c in CRATES {
        let g = graph(&root().join(c));
        assert!(g.len() > 3, "{c}: the modules were found");
        for m in g.keys() {
            if let Some(p) = cycle(&g, m) {
                found.push(format!("{c}: {}", p.join(" -> ")));
            }
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn no_product_file_is_over_800_lines() {
    let mut long = Vec::new();
    for c in CRATES {
        let mut files = Vec::new();
        product_files(&root().join(c), &mut files);
        for f in files {
            let n = std::fs::read_to_string(&f).unwrap().lines().count();
            if n > MAX_LINES {
                long.push(format!("{} ({n} lines)", f.display()));
            }
        }
    }
    assert!(long.is_empty(), "split along their concerns: {long:?}");
}

#[test]
fn the_core_crate_depends_on_no_actix_crate() {
    let manifest = std::fs::read_to_string(root().join("core/Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("core has dependencies")
        .split("\n[")
        .next()
        .unwrap();
    let actix: Vec<&str> = deps
        .lines()
        .filter(|l| l.trim_start().starts_with("actix"))
        .collect();
    assert!(actix.is_empty(), "core must stay actix-free: {actix:?}");
}

#[test]
fn the_checks_see_a_cycle_and_test_modules_are_left_out() {
    let text = "use crate::a::X;\n#[cfg(test)]\nmod tests {\n use crate::b::Y; fn f() { { } }\n}\nuse crate::c;";
    let stripped = strip_tests(text);
    assert_eq!(
        uses(&stripped),
        BTreeSet::from(["a".to_string(), "c".to_string()])
    );
    let g = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(
        cycle(&g, "a"),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    assert_eq!(cycle(&g, "c"), None);
}
