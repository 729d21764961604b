//! The tree is the architecture: the server core and the models use nothing from the harness or
//! the labs. A `use` of either from `src/server/` or `variants/` fails this test.

use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Lines of `file` that name a module of the harness or the labs through the crate's root.
fn reaches_outside(file: &Path) -> Vec<String> {
    let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            [
                "crate::harness",
                "crate::lab",
                "server_models::harness",
                "server_models::lab",
            ]
            .iter()
            .any(|p| line.contains(p))
        })
        .map(|(i, line)| format!("{}:{}: {}", file.display(), i + 1, line.trim()))
        .collect()
}

/// No module of the server core, and no model, imports the harness or the labs.
#[test]
fn server_core_and_models_stand_alone() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files: Vec<PathBuf> = ["src/server", "variants"]
        .iter()
        .flat_map(|d| sources(&root.join(d)))
        .collect();
    assert!(
        files.len() > 20,
        "expected the server core and the models, found {} files",
        files.len()
    );
    let offending: Vec<String> = files.iter().flat_map(|f| reaches_outside(f)).collect();
    assert!(
        offending.is_empty(),
        "the server core must not depend on the harness or the labs:\n{}",
        offending.join("\n")
    );
}

/// The check itself can fail: a line that reaches into the harness is found.
#[test]
fn the_check_finds_a_dependency() {
    let dir = std::env::temp_dir().join(format!("layout-check-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bad.rs");
    fs::write(&file, "use crate::harness::load;\nfn main() {}\n").expect("write");
    let found = reaches_outside(&file);
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(found.len(), 1, "{found:?}");
}
