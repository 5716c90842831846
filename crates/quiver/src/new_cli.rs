//! `quiver new KIND`: a guided creation in the terminal. Each kind has a template (the
//! questions, their defaults and checks); every answer is checked as it is typed (names
//! by the kind's rule, the description by the quality gate, a tool's estimate
//! expressions by the expression parser, with the position of an error) and asked again
//! when it does not pass. The result is a JSON file that `quiver publish` takes.
//!
//! Without a terminal, or with `--yes`, nothing is asked: flags give the values, the
//! template's defaults fill the rest, and a required value with no default fails the
//! command, naming every such value.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Args;
use quiver_model::{expr, names, Kind};
use serde_json::{json, Map, Value};

use crate::prompt;

#[derive(Args)]
pub struct NewArgs {
    /// The kind to create: tool, recipe, skill, module or package.
    pub kind: Kind,
    /// Where to write the JSON file (default: NAME.json here).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Overwrite the output file when it exists.
    #[arg(long)]
    pub force: bool,
    /// Never ask: take the flags and the defaults; fail naming every required value
    /// that has neither.
    #[arg(long, visible_alias = "no-input")]
    pub yes: bool,
    #[arg(long)]
    pub namespace: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// At least 20 characters (the description quality gate).
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long = "version", value_name = "VERSION")]
    pub version: Option<String>,
    #[arg(long)]
    pub category: Option<String>,
    /// Comma-separated tags.
    #[arg(long)]
    pub tags: Option<String>,
    /// A tool's platform (linux, windows, network, cloud, ...).
    #[arg(long)]
    pub platform: Option<String>,
    /// A tool's capability (what it can do, e.g. packet_capture).
    #[arg(long)]
    pub capability: Option<String>,
    /// A tool's pattern of the capability (one way of doing it, e.g. capture).
    #[arg(long)]
    pub pattern: Option<String>,
    /// Comma-separated names of the pattern's required inputs (a tool), the module's
    /// needs (a module) or the skill's target packages (a skill).
    #[arg(long)]
    pub inputs: Option<String>,
    /// The pattern's time estimate in ms: a number or an expression over its inputs.
    #[arg(long)]
    pub time_estimate: Option<String>,
    /// The pattern's cost estimate: a number or an expression over its inputs.
    #[arg(long)]
    pub cost_estimate: Option<String>,
    #[arg(long)]
    pub license: Option<String>,
    #[arg(long)]
    pub homepage: Option<String>,
    /// A repository: owner/repo (a skill's, a recipe's GitHub releases).
    #[arg(long)]
    pub repo: Option<String>,
}

/// The answers so far, by template key.
type Answers = BTreeMap<&'static str, String>;
type Check = Box<dyn Fn(&str, &Answers) -> Result<String, String>>;
type Default = Box<dyn Fn(&Answers) -> Option<String>>;

/// One question of a template.
struct Field {
    key: &'static str,
    label: &'static str,
    /// The default, from the answers so far (None: required, no default).
    default: Default,
    check: Check,
}

fn field(
    key: &'static str,
    label: &'static str,
    default: impl Fn(&BTreeMap<&'static str, String>) -> Option<String> + 'static,
    check: impl Fn(&str, &BTreeMap<&'static str, String>) -> Result<String, String> + 'static,
) -> Field {
    Field {
        key,
        label,
        default: Box::new(default),
        check: Box::new(check),
    }
}

fn none(_: &BTreeMap<&'static str, String>) -> Option<String> {
    None
}

fn fixed(v: &'static str) -> impl Fn(&BTreeMap<&'static str, String>) -> Option<String> {
    move |_| Some(v.to_string())
}

fn any_text(v: &str, _: &BTreeMap<&'static str, String>) -> Result<String, String> {
    Ok(v.trim().to_string())
}

/// `MAJOR.MINOR.PATCH` (with an optional pre-release or build suffix).
pub(crate) fn check_version(v: &str) -> Result<String, String> {
    semver::Version::parse(v.trim())
        .map(|_| v.trim().to_string())
        .map_err(|e| format!("`{v}` is not a semantic version like 1.0.0: {e}"))
}

/// An identifier for a capability, pattern or input name: lowercase letters, digits and
/// `_`, starting with a letter.
fn check_ident(v: &str) -> Result<String, String> {
    let ok = v.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!(
            "`{v}` must be lowercase letters, digits and '_', starting with a letter"
        ))
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// An estimate: a number or an expression over the pattern's inputs and the context
/// variables; an error shows the expression with a caret under the position.
fn check_estimate(v: &str, answers: &BTreeMap<&'static str, String>) -> Result<String, String> {
    let v = v.trim();
    let checked = expr::check(v).map_err(|e| {
        let caret = " ".repeat(e.position.min(v.chars().count()));
        format!("{e}\n      {v}\n      {caret}^")
    })?;
    if let Some(f) = checked.unknown_functions.first() {
        return Err(format!(
            "`{f}` is not a function ({})",
            expr::function_names()
        ));
    }
    let inputs = list(answers.get("inputs").map_or("", String::as_str));
    if let Some(var) = checked
        .variables
        .iter()
        .find(|x| !inputs.iter().any(|i| i == *x) && !expr::CONTEXT_VARIABLES.contains(&x.as_str()))
    {
        return Err(format!(
            "`{var}` is neither an input of the pattern ({}) nor a context variable ({})",
            if inputs.is_empty() {
                "none".to_string()
            } else {
                inputs.join(", ")
            },
            expr::CONTEXT_VARIABLES.join(", ")
        ));
    }
    Ok(v.to_string())
}

/// The questions every kind asks first.
fn common(kind: Kind) -> Vec<Field> {
    let ns_label = if kind == Kind::Package {
        "namespace (the ecosystem: npm, pypi, ...)"
    } else {
        "namespace"
    };
    vec![
        field("namespace", ns_label, none, |v, _| {
            names::validate_namespace(v)
                .map(|()| v.to_string())
                .map_err(|e| e.message)
        }),
        field("name", "name", none, move |v, a| {
            names::validate_name(kind, a.get("namespace").map_or("", String::as_str), v)
                .map(|()| v.to_string())
                .map_err(|e| e.message)
        }),
        field("description", "description", none, |v, _| {
            match quiver_model::gates::description_problem(v) {
                Some(p) => Err(p),
                None => Ok(v.trim().to_string()),
            }
        }),
        field("version", "version", fixed("1.0.0"), |v, _| {
            check_version(v)
        }),
        field("category", "category (optional)", fixed(""), any_text),
        field(
            "tags",
            "tags, comma-separated (optional)",
            fixed(""),
            any_text,
        ),
    ]
}

/// The questions of a kind's template, after the common ones.
fn template(kind: Kind) -> Vec<Field> {
    match kind {
        Kind::Tool => vec![
            field("platform", "platform", fixed("linux"), any_text),
            field("capability", "capability", fixed("run"), |v, _| {
                check_ident(v)
            }),
            field(
                "pattern",
                "pattern of the capability",
                fixed("default"),
                |v, _| check_ident(v),
            ),
            field(
                "inputs",
                "required inputs, comma-separated (optional)",
                fixed(""),
                |v, _| {
                    let names = list(v);
                    for n in &names {
                        check_ident(n)?;
                    }
                    Ok(names.join(","))
                },
            ),
            field(
                "time_estimate",
                "time_estimate_ms (number or expression)",
                fixed("1000"),
                check_estimate,
            ),
            field(
                "cost_estimate",
                "cost_estimate (number or expression)",
                fixed("1"),
                check_estimate,
            ),
        ],
        Kind::Recipe => vec![
            field("homepage", "homepage (optional)", fixed(""), any_text),
            field(
                "repo",
                "GitHub repository of the releases, owner/repo (optional)",
                fixed(""),
                check_repo,
            ),
        ],
        Kind::Skill => vec![
            field(
                "repo",
                "repository hosting the skill, owner/repo (optional)",
                fixed(""),
                check_repo,
            ),
            field(
                "inputs",
                "target packages, comma-separated (optional)",
                fixed(""),
                any_text,
            ),
        ],
        Kind::Module => vec![
            field("license", "license", fixed("CC0"), any_text),
            field(
                "inputs",
                "needs (runtimes: js, sh, py, node; comma-separated)",
                fixed(""),
                any_text,
            ),
        ],
        Kind::Package => vec![
            field("license", "license (optional)", fixed(""), any_text),
            field("homepage", "homepage (optional)", fixed(""), any_text),
        ],
    }
}

fn check_repo(v: &str, _: &BTreeMap<&'static str, String>) -> Result<String, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(String::new());
    }
    match v.split_once('/') {
        Some((o, r)) if !o.is_empty() && !r.is_empty() && !r.contains('/') => Ok(v.into()),
        _ => Err(format!("`{v}` must be written owner/repo")),
    }
}

impl NewArgs {
    /// The value a flag gives for a template key.
    fn flag(&self, key: &str) -> Option<&String> {
        match key {
            "namespace" => self.namespace.as_ref(),
            "name" => self.name.as_ref(),
            "description" => self.description.as_ref(),
            "version" => self.version.as_ref(),
            "category" => self.category.as_ref(),
            "tags" => self.tags.as_ref(),
            "platform" => self.platform.as_ref(),
            "capability" => self.capability.as_ref(),
            "pattern" => self.pattern.as_ref(),
            "inputs" => self.inputs.as_ref(),
            "time_estimate" => self.time_estimate.as_ref(),
            "cost_estimate" => self.cost_estimate.as_ref(),
            "license" => self.license.as_ref(),
            "homepage" => self.homepage.as_ref(),
            "repo" => self.repo.as_ref(),
            _ => None,
        }
    }
}

pub fn run(a: NewArgs) -> anyhow::Result<()> {
    let ask = !a.yes && prompt::interactive();
    if ask {
        eprintln!(
            "A new {} (press Enter to take the value in brackets).",
            a.kind
        );
    }
    let mut answers: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut missing = Vec::new();
    for f in common(a.kind).into_iter().chain(template(a.kind)) {
        let default = (f.default)(&answers);
        let value = if let Some(v) = a.flag(f.key) {
            (f.check)(v, &answers).map_err(|e| anyhow::anyhow!("--{}: {e}", flag_name(f.key)))?
        } else if ask {
            prompt::ask(f.label, default.as_deref(), &|v| (f.check)(v, &answers))?
        } else if let Some(d) = default {
            d
        } else {
            missing.push(format!("--{}", flag_name(f.key)));
            continue;
        };
        answers.insert(f.key, value);
    }
    if !missing.is_empty() {
        bail!(
            "a new {} needs {} (no default; nothing was written)",
            a.kind,
            missing.join(", ")
        );
    }
    let doc = document(a.kind, &answers);
    let manifest = &doc["manifest"];
    quiver_model::manifest::validate_manifest(a.kind, manifest)
        .map_err(|e| anyhow::anyhow!("the template made a bad manifest: {e}"))?;
    if a.kind == Kind::Tool {
        expr::check_tool_manifest(manifest)
            .map_err(|e| anyhow::anyhow!("the tool's estimates do not check: {e}"))?;
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.json", answers["name"])));
    if out.exists() && !a.force {
        bail!(
            "{} exists; pass --force to overwrite it, or --out for another file",
            out.display()
        );
    }
    let text = serde_json::to_string_pretty(&doc)? + "\n";
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {} {}/{} {} to {}; publish it with `quiver publish {}`",
        a.kind,
        answers["namespace"],
        answers["name"],
        answers["version"],
        out.display(),
        out.display()
    );
    Ok(())
}

fn flag_name(key: &str) -> String {
    key.replace('_', "-")
}

/// The publish file: entry fields and version fields, the manifest from the template.
fn document(kind: Kind, a: &BTreeMap<&'static str, String>) -> Value {
    let get = |k: &str| a.get(k).cloned().unwrap_or_default();
    let opt = |k: &str| Some(get(k)).filter(|v| !v.is_empty());
    let (ns, name, description) = (get("namespace"), get("name"), get("description"));
    let mut doc = Map::new();
    doc.insert("kind".into(), json!(kind));
    doc.insert("namespace".into(), json!(ns));
    doc.insert("name".into(), json!(name));
    doc.insert("description".into(), json!(description));
    if let Some(c) = opt("category") {
        doc.insert("category".into(), json!(c));
    }
    doc.insert("tags".into(), json!(list(&get("tags"))));
    doc.insert("version".into(), json!(get("version")));
    let manifest = match kind {
        Kind::Tool => {
            let (cap, pat) = (get("capability"), get("pattern"));
            let inputs = list(&get("inputs"));
            doc.insert("keywords".into(), json!([cap]));
            let number_or_text = |v: String| match v.parse::<f64>() {
                Ok(n) if v.trim().parse::<i64>().is_ok() => json!(n as i64),
                Ok(n) => json!(n),
                Err(_) => json!(v),
            };
            json!({
                "tool_name": name,
                "platform": get("platform"),
                "description": description,
                "capabilities": {
                    &cap: {
                        "description": format!("{name}: {cap}"),
                        "patterns": {
                            &pat: {
                                "description": format!("{cap} by {pat}"),
                                "time_estimate_ms": number_or_text(get("time_estimate")),
                                "cost_estimate": number_or_text(get("cost_estimate")),
                                "required_inputs": inputs.iter()
                                    .map(|i| json!({"name": i, "type": "string"}))
                                    .collect::<Vec<_>>(),
                            }
                        }
                    }
                },
                "input_schema": {
                    "type": "object",
                    "properties": inputs.iter()
                        .map(|i| (i.clone(), json!({"type": "string"})))
                        .collect::<Map<_, _>>(),
                    "required": inputs,
                },
                "examples": [{
                    "name": "typical",
                    "description": format!("{cap} with typical inputs"),
                    "input": inputs.iter()
                        .map(|i| (i.clone(), json!("...")))
                        .collect::<Map<_, _>>(),
                }],
            })
        }
        Kind::Recipe => {
            let mut m = json!({
                "metadata": {"name": name, "description": description},
                "verify": {"command": format!("{name} --version")},
            });
            if let Some(h) = opt("homepage") {
                m["metadata"]["homepage"] = json!(h);
            }
            m["steps"] = match opt("repo") {
                Some(r) => {
                    m["version"] = json!({"github_repo": r});
                    json!([{"action": "github_archive", "repo": r,
                            "binaries": [name]}])
                }
                None => json!([{"action": "homebrew", "formula": name}]),
            };
            m
        }
        Kind::Skill => {
            let mut m = json!({"target_packages": list(&get("inputs"))});
            if let Some(r) = opt("repo") {
                m["repo"] = json!(r);
            }
            m
        }
        Kind::Module => json!({
            "author": ns,
            "license": get("license"),
            "needs": list(&get("inputs")),
            "dependencies": {},
        }),
        Kind::Package => {
            let mut m = json!({"summary": description});
            if let Some(l) = opt("license") {
                m["license"] = json!(l);
            }
            if let Some(h) = opt("homepage") {
                m["homepage"] = json!(h);
            }
            m
        }
    };
    doc.insert("manifest".into(), manifest);
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(inputs: &str) -> BTreeMap<&'static str, String> {
        BTreeMap::from([("inputs", inputs.to_string())])
    }

    #[test]
    fn estimates_are_checked_with_their_position_and_inputs() {
        assert_eq!(
            check_estimate("800 + 0.3 * packet_count", &answers("packet_count")).unwrap(),
            "800 + 0.3 * packet_count"
        );
        let e = check_estimate("800 + * 2", &answers("")).unwrap_err();
        assert!(e.contains("at character 7"), "{e}");
        assert!(e.ends_with("      800 + * 2\n            ^"), "{e:?}");
        let e = check_estimate("10 * hosts", &answers("port")).unwrap_err();
        assert!(e.contains("`hosts` is neither an input"), "{e}");
    }

    #[test]
    fn every_template_makes_a_manifest_its_kind_accepts() {
        for kind in Kind::ALL.iter() {
            let mut a = BTreeMap::from([
                ("namespace", "acme".to_string()),
                ("name", "thing".to_string()),
                ("description", "A thing that does useful work".to_string()),
                ("version", "1.0.0".to_string()),
                ("capability", "run".to_string()),
                ("pattern", "default".to_string()),
                ("inputs", "count".to_string()),
                ("time_estimate", "100 * count".to_string()),
                ("cost_estimate", "1".to_string()),
                ("license", "CC0".to_string()),
                ("repo", "acme/thing".to_string()),
            ]);
            a.insert("platform", "linux".into());
            let doc = document(*kind, &a);
            quiver_model::manifest::validate_manifest(*kind, &doc["manifest"])
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
            expr::check_tool_manifest(&doc["manifest"]).unwrap();
        }
    }
}
