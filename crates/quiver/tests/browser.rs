//! The website in a real browser: headless Chromium (Debian's `chromium`, which
//! `.ci/run` installs) against `quiver serve --demo` on loopback. The site has no script
//! (every page must work without JavaScript): the DOMs the browser builds hold none, and
//! the pages' policy runs none. (Headless Chromium's `--dump-dom` and `--screenshot`
//! need its own script, so they cannot run with JavaScript switched off.) Search from the home page
//! as its form does, open a result, see each kind's own section on its entry page, and
//! write screenshots at 1280 and 375 px wide to `target/tmp/screenshots/`. Prints
//! SKIPPED when no Chromium is installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;

/// The browser: `QUIVER_TEST_CHROMIUM`, else `chromium` on the path.
fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("QUIVER_TEST_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    })
}

/// One headless run with a fresh profile, no network beyond loopback, no script.
fn browser(bin: &Path, profile: &Path, args: &[&str], url: &str) -> std::process::Output {
    Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium")
}

/// The page's DOM as the browser built it.
fn dom(bin: &Path, profile: &Path, url: &str) -> String {
    let out = browser(bin, profile, &["--dump-dom"], url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = String::from_utf8(out.stdout).unwrap();
    assert!(!html.contains("<script"), "{url} has no script");
    html
}

/// A screenshot of the page at `width` px.
fn screenshot(bin: &Path, profile: &Path, url: &str, width: u32, file: &Path) {
    let out = browser(
        bin,
        profile,
        &[
            &format!("--window-size={width},1400"),
            &format!("--screenshot={}", file.display()),
            "--hide-scrollbars",
        ],
        url,
    );
    assert!(
        out.status.success() && file.metadata().map(|m| m.len() > 5_000).unwrap_or(false),
        "a screenshot of {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first link in `html` whose target starts with `prefix`.
fn link(html: &str, prefix: &str) -> Option<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .find(|h| h.starts_with(prefix))
        .map(str::to_string)
}

#[test]
fn the_site_in_a_real_browser() {
    let Some(bin) = chromium() else {
        eprintln!("SKIPPED: no chromium (install Debian's chromium, or set QUIVER_TEST_CHROMIUM)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile");
    let server = Server::start(&dir.path().join("data"), &["--demo"]);
    let url = |p: &str| server.url(p);

    // The home page: a search form that submits `q` to /search, counts per kind.
    let home = dom(&bin, &profile, &url("/"));
    assert!(home.contains(r#"action="/search""#) && home.contains(r#"name="q""#));
    assert!(home.contains("Recently published"), "{home}");

    // Searching as the form does, then opening the first result.
    let results = dom(&bin, &profile, &url("/search?q=ripgrep"));
    let first = link(&results, "/recipe/").expect("a recipe among the results");
    assert_eq!(first, "/recipe/tsuku/ripgrep");
    let page = dom(&bin, &profile, &url(&first));
    assert!(page.contains("tsuku install ripgrep") && page.contains("darwin/arm64"));

    // Each kind's own section, rendered by the browser.
    for (path, wants) in [
        ("/tool/tpmjs/web.fetchText", "Absolute http(s) URL to fetch"),
        ("/module/mlld/env", "from @mlld/env"),
        (
            "/skill/upskill/react-best-practices",
            "Suggested for projects using",
        ),
        ("/package/npm/@types/node", "npm install @types/node"),
    ] {
        let html = dom(&bin, &profile, &url(path));
        assert!(html.contains(wants), "{path} shows {wants}");
    }

    // Screenshots for a reviewer, at a desktop and a phone width.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for (name, path) in [
        ("home", "/"),
        ("search", "/search?q=csv"),
        ("tool", "/tool/tpmjs/web.fetchText"),
        ("recipe", "/recipe/tsuku/ripgrep"),
        (
            "select",
            "/select?capability=packet_capture&vars=packet_count%3D5000",
        ),
    ] {
        for width in [1280, 375] {
            let file = shots.join(format!("{name}-{width}.png"));
            screenshot(&bin, &profile, &url(path), width, &file);
        }
    }
    eprintln!("screenshots in {}", shots.display());
}
