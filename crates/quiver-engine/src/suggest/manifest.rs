//! A project's dependencies from its manifest, as uploaded text: `package.json`,
//! `requirements.txt`, `pyproject.toml` (PEP 621 and Poetry) and `Cargo.toml`.
//!
//! Written here rather than taken from a crate: the dependency lists are all these
//! readers need (names, version ranges, dev or not), the formats' own crates
//! (cargo_toml, pep508 parsers) would pull in whole project models, and every reader
//! must refuse bad input with a field and reason rather than guess.

use quiver_model::{names::pep503, Error, Result};
use serde::Serialize;
use serde_json::Value;

/// Largest manifest accepted (bytes): a lock file is not a manifest.
pub const MAX_MANIFEST: usize = 512 * 1024;
/// Most dependencies read from one manifest.
pub const MAX_DEPENDENCIES: usize = 2_000;

/// One dependency a manifest declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Dependency {
    /// `npm`, `pypi` or `cargo`.
    pub ecosystem: String,
    /// As the manifest spells it.
    pub name: String,
    /// The version range the manifest gives, when it gives one.
    pub range: Option<String>,
    /// A development-, test- or build-only dependency.
    pub dev: bool,
}

/// Which manifest a file name is: its format, or an error naming what is understood.
fn format_of(filename: &str) -> Result<&'static str> {
    let base = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    let lower = base.to_ascii_lowercase();
    match lower.as_str() {
        "package.json" => Ok("package.json"),
        "pyproject.toml" => Ok("pyproject.toml"),
        "cargo.toml" => Ok("Cargo.toml"),
        l if l.ends_with(".txt") && l.contains("requirements") => Ok("requirements.txt"),
        _ => Err(Error::invalid(
            "manifest.filename",
            format!(
                "`{base}` is not a manifest quiver reads (package.json, requirements.txt or \
                 requirements-*.txt, pyproject.toml, Cargo.toml)"
            ),
        )),
    }
}

/// The dependencies of a manifest, section by section (runtime ones first; names in
/// byte order within a table, in the file's order within a list), each once (a name
/// listed as both a dependency and a dev-dependency counts as a dependency).
pub fn parse(filename: &str, content: &str) -> Result<Vec<Dependency>> {
    if content.len() > MAX_MANIFEST {
        return Err(Error::invalid(
            "manifest.content",
            format!("larger than {} KiB", MAX_MANIFEST / 1024),
        ));
    }
    let deps = match format_of(filename)? {
        "package.json" => package_json(content)?,
        "pyproject.toml" => pyproject(content)?,
        "Cargo.toml" => cargo_toml(content)?,
        _ => requirements(content)?,
    };
    let mut out: Vec<Dependency> = Vec::with_capacity(deps.len());
    for d in deps {
        let key = |x: &Dependency| (x.ecosystem.clone(), package_key(&x.ecosystem, &x.name));
        match out.iter_mut().find(|o| key(o) == key(&d)) {
            Some(o) => {
                if o.dev && !d.dev {
                    *o = d;
                }
            }
            None => out.push(d),
        }
    }
    if out.len() > MAX_DEPENDENCIES {
        return Err(Error::invalid(
            "manifest.content",
            format!("more than {MAX_DEPENDENCIES} dependencies"),
        ));
    }
    Ok(out)
}

/// How an ecosystem compares package names: PyPI after PEP 503 normalization, npm in
/// lower case (new npm names are lower case; a scope stays part of the name), crates
/// with `-` and `_` the same.
pub fn package_key(ecosystem: &str, name: &str) -> String {
    match ecosystem {
        "pypi" => pep503(name),
        "npm" => name.to_ascii_lowercase(),
        "cargo" => name.to_ascii_lowercase().replace('_', "-"),
        _ => name.to_string(),
    }
}

fn package_json(content: &str) -> Result<Vec<Dependency>> {
    let v: Value = serde_json::from_str(content).map_err(|e| {
        Error::invalid("manifest.content", format!("package.json is not JSON: {e}"))
    })?;
    let Some(obj) = v.as_object() else {
        return Err(Error::invalid(
            "manifest.content",
            "package.json must be an object",
        ));
    };
    let mut out = Vec::new();
    for (section, dev) in [
        ("dependencies", false),
        ("peerDependencies", false),
        ("optionalDependencies", false),
        ("devDependencies", true),
    ] {
        let Some(deps) = obj.get(section) else {
            continue;
        };
        let Some(deps) = deps.as_object() else {
            return Err(Error::invalid(
                "manifest.content",
                format!("package.json `{section}` must be an object of name to range"),
            ));
        };
        for (name, range) in deps {
            out.push(Dependency {
                ecosystem: "npm".into(),
                name: name.clone(),
                range: range.as_str().map(str::to_string).filter(|r| !r.is_empty()),
                dev,
            });
        }
    }
    Ok(out)
}

/// A PEP 508 requirement's name and version specifier (extras and markers dropped);
/// `None` for a line that names no package (an option, a URL, a path).
fn pep508(line: &str) -> Option<(String, Option<String>)> {
    let line = line.trim();
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(line.len());
    let name = &line[..end];
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return None;
    }
    let mut rest = line[end..].trim_start();
    if rest.starts_with('[') {
        rest = rest.find(']').map_or("", |i| &rest[i + 1..]).trim_start();
    }
    if rest.starts_with('@') {
        // A direct reference (`name @ https://…`): the package, with no range.
        return Some((name.to_string(), None));
    }
    let spec = rest.split(';').next().unwrap_or("").trim();
    let spec = spec
        .trim_start_matches('(')
        .trim_end_matches(')')
        .trim()
        .to_string();
    Some((name.to_string(), Some(spec).filter(|s| !s.is_empty())))
}

fn requirements(content: &str) -> Result<Vec<Dependency>> {
    let mut out = Vec::new();
    for raw in content.lines() {
        // A comment starts at `#` at the line's start or after a space.
        let line = match raw.find(" #") {
            Some(i) => &raw[..i],
            None => raw,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('-') {
            continue;
        }
        if line.contains("://") && !line.contains('@') {
            continue;
        }
        if let Some((name, range)) = pep508(line) {
            out.push(Dependency {
                ecosystem: "pypi".into(),
                name,
                range,
                dev: false,
            });
        }
    }
    Ok(out)
}

fn toml_of(content: &str, what: &str) -> Result<toml::Table> {
    content.parse::<toml::Table>().map_err(|e| {
        Error::invalid(
            "manifest.content",
            format!("{what} is not TOML: {}", e.message()),
        )
    })
}

fn pyproject(content: &str) -> Result<Vec<Dependency>> {
    let t = toml_of(content, "pyproject.toml")?;
    let mut out = Vec::new();
    let mut add_pep508 = |list: Option<&toml::Value>, dev: bool| {
        for s in list
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
        {
            if let Some((name, range)) = pep508(s) {
                out.push(Dependency {
                    ecosystem: "pypi".into(),
                    name,
                    range,
                    dev,
                });
            }
        }
    };
    let project = t.get("project");
    add_pep508(project.and_then(|p| p.get("dependencies")), false);
    if let Some(extras) = project
        .and_then(|p| p.get("optional-dependencies"))
        .and_then(|v| v.as_table())
    {
        for (_, list) in extras {
            add_pep508(Some(list), false);
        }
    }
    // PEP 735 dependency groups are development dependencies.
    if let Some(groups) = t.get("dependency-groups").and_then(|v| v.as_table()) {
        for (_, list) in groups {
            add_pep508(Some(list), true);
        }
    }
    // Poetry: tables of name to a version string or a table with `version`.
    let poetry = t.get("tool").and_then(|v| v.get("poetry"));
    let mut tables: Vec<(&toml::Table, bool)> = Vec::new();
    if let Some(d) = poetry
        .and_then(|p| p.get("dependencies"))
        .and_then(|v| v.as_table())
    {
        tables.push((d, false));
    }
    if let Some(d) = poetry
        .and_then(|p| p.get("dev-dependencies"))
        .and_then(|v| v.as_table())
    {
        tables.push((d, true));
    }
    if let Some(groups) = poetry
        .and_then(|p| p.get("group"))
        .and_then(|v| v.as_table())
    {
        for (_, g) in groups {
            if let Some(d) = g.get("dependencies").and_then(|v| v.as_table()) {
                tables.push((d, true));
            }
        }
    }
    for (table, dev) in tables {
        for (name, spec) in table {
            if name == "python" {
                continue;
            }
            out.push(Dependency {
                ecosystem: "pypi".into(),
                name: name.clone(),
                range: version_of(spec),
                dev,
            });
        }
    }
    Ok(out)
}

/// A dependency table's version: a string, or a table's `version`.
fn version_of(spec: &toml::Value) -> Option<String> {
    match spec {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Table(t) => t.get("version").and_then(|v| v.as_str()).map(String::from),
        _ => None,
    }
    .filter(|s| !s.is_empty() && s != "*")
}

fn cargo_toml(content: &str) -> Result<Vec<Dependency>> {
    let t = toml_of(content, "Cargo.toml")?;
    let mut out = Vec::new();
    let mut read = |table: Option<&toml::Value>, dev: bool| {
        for (name, spec) in table.and_then(|v| v.as_table()).into_iter().flatten() {
            // `package = "…"` renames: the crate is the package named there.
            let crate_name = spec.get("package").and_then(|v| v.as_str()).unwrap_or(name);
            out.push(Dependency {
                ecosystem: "cargo".into(),
                name: crate_name.to_string(),
                range: version_of(spec),
                dev,
            });
        }
    };
    read(t.get("dependencies"), false);
    read(t.get("dev-dependencies"), true);
    read(t.get("build-dependencies"), true);
    read(
        t.get("workspace").and_then(|w| w.get("dependencies")),
        false,
    );
    if let Some(targets) = t.get("target").and_then(|v| v.as_table()) {
        for (_, tt) in targets {
            read(tt.get("dependencies"), false);
            read(tt.get("dev-dependencies"), true);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(d: &[Dependency]) -> Vec<(&str, Option<&str>, bool)> {
        d.iter()
            .map(|d| (d.name.as_str(), d.range.as_deref(), d.dev))
            .collect()
    }

    #[test]
    fn package_json_sections_and_scopes() {
        let d = parse(
            "web/package.json",
            r#"{"name":"app","dependencies":{"react":"^18.2.0","@tanstack/react-query":"5"},
                "devDependencies":{"typescript":"~5.4","react":"^18"},
                "peerDependencies":{"next":""}}"#,
        )
        .unwrap();
        assert_eq!(
            names(&d),
            [
                ("@tanstack/react-query", Some("5"), false),
                ("react", Some("^18.2.0"), false),
                ("next", None, false),
                ("typescript", Some("~5.4"), true),
            ]
        );
        assert!(d.iter().all(|d| d.ecosystem == "npm"));
        let e = parse("package.json", "{").unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
        let e = parse("package.json", r#"{"dependencies":["react"]}"#).unwrap_err();
        assert!(e.to_string().contains("`dependencies`"), "{e}");
    }

    #[test]
    fn requirements_lines() {
        let d = parse(
            "requirements-dev.txt",
            "# tools\nDjango_REST.framework>=3.14 # api\nrequests[socks] >= 2.31 ; python_version>'3.8'\n\
             -r base.txt\n--index-url https://example.invalid/simple\n./local/pkg\n\
             git+https://example.invalid/x.git\nnumpy\ntorch @ https://example.invalid/t.whl\n",
        )
        .unwrap();
        assert_eq!(
            names(&d),
            [
                ("Django_REST.framework", Some(">=3.14"), false),
                ("requests", Some(">= 2.31"), false),
                ("numpy", None, false),
                ("torch", None, false),
            ]
        );
        assert_eq!(
            package_key("pypi", "Django_REST.framework"),
            "django-rest-framework"
        );
    }

    #[test]
    fn pyproject_pep621_and_poetry() {
        let d = parse(
            "pyproject.toml",
            r#"
[project]
dependencies = ["httpx>=0.27", "pydantic[email]~=2.6"]
[project.optional-dependencies]
cli = ["rich"]
[dependency-groups]
test = ["pytest>=8"]
[tool.poetry.dependencies]
python = "^3.11"
fastapi = {version = "^0.110", extras = ["all"]}
[tool.poetry.group.dev.dependencies]
ruff = "*"
"#,
        )
        .unwrap();
        assert_eq!(
            names(&d),
            [
                ("httpx", Some(">=0.27"), false),
                ("pydantic", Some("~=2.6"), false),
                ("rich", None, false),
                ("pytest", Some(">=8"), true),
                ("fastapi", Some("^0.110"), false),
                ("ruff", None, true),
            ]
        );
    }

    #[test]
    fn cargo_toml_tables_and_renames() {
        let d = parse(
            "Cargo.toml",
            r#"
[dependencies]
serde = { version = "1", features = ["derive"] }
tokio = "1.37"
json = { package = "serde_json", version = "1" }
[dev-dependencies]
insta = "1"
[target.'cfg(unix)'.dependencies]
nix = "0.29"
"#,
        )
        .unwrap();
        assert_eq!(
            names(&d),
            [
                ("serde_json", Some("1"), false),
                ("serde", Some("1"), false),
                ("tokio", Some("1.37"), false),
                ("insta", Some("1"), true),
                ("nix", Some("0.29"), false),
            ]
        );
    }

    #[test]
    fn unknown_files_and_oversized_content_are_refused() {
        let e = parse("Gemfile", "gem 'rails'").unwrap_err();
        assert!(e.to_string().contains("Gemfile"), "{e}");
        let big = "a\n".repeat(MAX_MANIFEST);
        assert!(parse("requirements.txt", &big).is_err());
    }
}
