//! Every file in `tests/tests/` is built and run: a module of the suite binary or a `[[test]]`
//! of its own. (`autotests` is off, so a new file nobody listed would otherwise never run.)

use std::path::Path;

#[test]
fn every_test_file_is_in_the_suite_or_its_own_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite = std::fs::read_to_string(root.join("suite/main.rs")).unwrap();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let mut missing = Vec::new();
    let mut both = Vec::new();
    for entry in std::fs::read_dir(root.join("tests")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".rs") {
            continue;
        }
        let in_suite = suite.contains(&format!("#[path = \"../tests/{name}\"]"));
        let own = manifest.contains(&format!("path = \"tests/{name}\""));
        match (in_suite, own) {
            (false, false) => missing.push(name),
            (true, true) => both.push(name),
            _ => {}
        }
    }
    assert!(
        missing.is_empty(),
        "tests/tests/ files that no binary builds (add each to tests/suite/main.rs, or as a [[test]] in tests/Cargo.toml): {missing:?}"
    );
    assert!(
        both.is_empty(),
        "tests/tests/ files built twice (suite and own binary): {both:?}"
    );
}
