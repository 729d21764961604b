//! The report as a reader gets it: `server-models report DIR` renders index.md, index.html and
//! the plots again from a folder's results.json and run.json (here the committed results page,
//! copied), and the HTML is a page a browser can parse without an error, holding every row,
//! defining every column, sortable, and needing nothing from outside the file.

use std::path::{Path, PathBuf};
use std::process::Command;

use scraper::{Html, Selector};
use server_models::harness::report::row::Row;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("server-models-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("make a scratch folder");
    dir
}

/// A scratch copy of the committed results page's data (no pages, no plots).
fn committed_results(name: &str) -> PathBuf {
    let dir = scratch(name);
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("notes/results");
    for file in ["results.json", "run.json"] {
        std::fs::copy(from.join(file), dir.join(file)).expect("copy the committed results");
    }
    dir
}

fn server_models(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_server-models"))
        .args(args)
        .arg(dir)
        .output()
        .expect("run server-models")
}

fn select(s: &str) -> Selector {
    Selector::parse(s).expect("a valid selector")
}

/// `report DIR` writes both pages and the plots from the data alone, and leaves the data as it
/// was; the HTML parses without a single error, every row of results.json is a table row
/// (`data-row`) whose first cell names it, every header carries its definition, every plot is
/// inline, and nothing is fetched from anywhere.
#[test]
fn report_renders_a_self_contained_page_with_every_row() {
    let dir = committed_results("report");
    let json_before = std::fs::read(dir.join("results.json")).expect("read results.json");
    let out = server_models(&["report"], &dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "index.md",
        "index.html",
        "throughput_echo_64.svg",
        "p99_echo_64.svg",
    ] {
        assert!(dir.join(file).is_file(), "{file} is missing");
    }
    assert_eq!(
        std::fs::read(dir.join("results.json")).expect("read results.json"),
        json_before,
        "report must not rewrite the data"
    );

    let rows: Vec<Row> =
        serde_json::from_slice(&json_before).expect("the committed results.json parses");
    let text = std::fs::read_to_string(dir.join("index.html")).expect("read index.html");
    let page = Html::parse_document(&text);
    assert!(
        page.errors.is_empty(),
        "HTML parse errors: {:?}",
        page.errors
    );

    for (i, row) in rows.iter().enumerate() {
        let tr = select(&format!("tr[data-row=\"{i}\"]"));
        let found: Vec<_> = page.select(&tr).collect();
        assert!(
            !found.is_empty(),
            "row {i} ({}) is not in the page",
            row.label()
        );
        for tr in found {
            let first = tr
                .select(&select("td"))
                .next()
                .map(|td| td.text().collect::<String>())
                .unwrap_or_default();
            assert_eq!(first, row.label(), "row {i}");
        }
    }
    let headers: Vec<_> = page.select(&select("table.sortable th")).collect();
    assert!(!headers.is_empty());
    for th in headers {
        assert!(
            th.value().attr("title").is_some_and(|t| !t.is_empty()),
            "column '{}' has no definition",
            th.text().collect::<String>()
        );
    }
    // The plots are in the page itself, as many as index.md links to.
    let md = std::fs::read_to_string(dir.join("index.md")).expect("read index.md");
    let linked = md.matches("](").count();
    let inline = page.select(&select("figure > svg")).count();
    assert!(
        inline >= 4 && inline == linked,
        "{inline} inline plots, {linked} in index.md"
    );
    // Nothing from outside: no linked style sheet, no script or image fetched, no URL at all.
    assert_eq!(
        page.select(&select("link, script[src], img, iframe"))
            .count(),
        0
    );
    assert!(only_svg_namespace(&text), "a URL in the page");
    // The machine and the settings are at the top.
    let facts: String = page
        .select(&select(".facts"))
        .flat_map(|e| e.text())
        .collect();
    assert!(
        facts.contains("kernel") && facts.contains("Linux"),
        "{facts}"
    );
    assert!(facts.contains("duration s"), "{facts}");
    assert_eq!(
        page.select(&select("script")).count(),
        1,
        "one inline script"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The only URL an inline SVG may carry is its XML namespace, which is a name, not a fetch.
fn only_svg_namespace(text: &str) -> bool {
    text.replace("xmlns=\"http://www.w3.org/2000/svg\"", "")
        .replace("xmlns:xlink=\"http://www.w3.org/1999/xlink\"", "")
        .matches("http")
        .count()
        == 0
}

/// Without run.json the pages still render and say that the machine is unknown; without
/// results.json `report` fails with exit 1, naming the file, and writes nothing.
#[test]
fn report_needs_results_json_and_says_when_run_json_is_missing() {
    let dir = committed_results("report-partial");
    std::fs::remove_file(dir.join("run.json")).expect("remove run.json");
    let out = server_models(&["report"], &dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(dir.join("index.md")).expect("read index.md");
    assert!(md.contains("run.json is missing"), "{md}");

    let empty = scratch("report-empty");
    let out = server_models(&["report"], &empty);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("results.json"), "{err}");
    assert!(!empty.join("index.html").exists());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&empty);
}

/// `diff` of a run with itself finds nothing changed; of a copy with one figure doubled (the
/// CPU per request of one model at one point) it finds exactly that change, for the worse,
/// and writes diff.md, diff.html (parsing without error, the change coloured) and diff.json.
#[test]
fn diff_finds_the_change_and_only_it() {
    let old = committed_results("diff-old");
    let out = server_models(&["diff"], &old);
    // `diff OLD` alone is a usage error: two folders are needed.
    assert_eq!(out.status.code(), Some(2));

    let same = Command::new(env!("CARGO_BIN_EXE_server-models"))
        .arg("diff")
        .args([&old, &old])
        .output()
        .expect("run diff");
    assert!(
        same.status.success(),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    let text = String::from_utf8_lossy(&same.stdout);
    assert!(text.contains(" 0 changed past the noise"), "{text}");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(old.join("diff.json")).expect("read diff.json"),
    )
    .expect("diff.json parses");
    let changes = json["changes"].as_array().expect("changes");
    assert!(
        changes.len() > 100,
        "every figure compared: {}",
        changes.len()
    );
    assert!(changes.iter().all(|c| c["verdict"] == "unchanged"));

    let new = committed_results("diff-new");
    let path = new.join("results.json");
    let mut rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("parse");
    let target = rows
        .as_array_mut()
        .expect("an array")
        .iter_mut()
        .find(|r| r["model"] == "epoll-et" && r["mode"] == "closed" && r["connections"] == 100)
        .expect("an epoll-et row at 100 connections");
    let cpu = target["cpu_us_per_request"].as_f64().expect("its CPU");
    target["cpu_us_per_request"] = serde_json::json!(cpu * 2.0);
    std::fs::write(&path, serde_json::to_string(&rows).expect("json")).expect("write");

    let changed = Command::new(env!("CARGO_BIN_EXE_server-models"))
        .arg("diff")
        .args([&old, &new])
        .output()
        .expect("run diff");
    assert!(
        changed.status.success(),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    let text = String::from_utf8_lossy(&changed.stdout);
    assert!(
        text.contains(" 1 changed past the noise (0 better, 1 worse)"),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.contains("cpu_us_per_request"))
        .unwrap_or_else(|| panic!("no line for the change: {text}"));
    assert!(
        line.starts_with("epoll-et echo closed ×100")
            && line.contains("×2.000")
            && line.contains("worse"),
        "{line}"
    );
    let html = std::fs::read_to_string(new.join("diff.html")).expect("read diff.html");
    let page = Html::parse_document(&html);
    assert!(
        page.errors.is_empty(),
        "HTML parse errors: {:?}",
        page.errors
    );
    let red: Vec<String> = page
        .select(&select("td.down"))
        .map(|td| td.text().collect())
        .collect();
    assert_eq!(red, ["×2.000"]);
    // The point is named with its server CPUs when the run recorded them ("on 1 CPU").
    let md = std::fs::read_to_string(new.join("diff.md")).expect("diff.md");
    assert!(
        md.lines()
            .any(|l| l.starts_with("| epoll-et echo closed ×100 64 B")
                && l.contains("| cpu_us_per_request | ")
                && l.ends_with("| worse |")),
        "{md}"
    );
    let _ = std::fs::remove_dir_all(&old);
    let _ = std::fs::remove_dir_all(&new);
}
