//! The website's "which skills fit my project" page (`/skills/suggest`): packages typed
//! in (a GET form, so a suggestion can be shared as a link) or a manifest pasted in (a
//! POST form, as a manifest is too long for a link; it changes nothing, so it carries no
//! CSRF token). Both are the engine call `POST /api/v1/skills/suggest` makes.

use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use quiver_engine::suggest::{ManifestUpload, SuggestRequest};
use quiver_model::Kind;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::reply::{Headed, Page};
use crate::session::Visitor;
use crate::web::{entry_href, render};
use crate::AppState;

/// The page's form: packages, a manifest, or both.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct SuggestForm {
    /// Packages by name or `ecosystem:name`, separated by commas, spaces or lines.
    #[serde(default)]
    packages: Option<String>,
    /// The ecosystem of names given without one: npm (default), pypi or cargo.
    #[serde(default)]
    ecosystem: Option<String>,
    /// The manifest's file name (package.json, requirements.txt, pyproject.toml,
    /// Cargo.toml).
    #[serde(default)]
    filename: Option<String>,
    /// The manifest's text.
    #[serde(default)]
    manifest: Option<String>,
    /// `on`: leave development-only dependencies out.
    #[serde(default)]
    no_dev: Option<String>,
}

#[derive(Serialize)]
struct MatchView {
    package: String,
    href: String,
    confidence: String,
    source: String,
    range: String,
    dev: bool,
}

#[derive(Serialize)]
struct SkillView {
    name: String,
    href: String,
    description: String,
    score: String,
    matches: Vec<MatchView>,
}

#[derive(Serialize, Default)]
struct View {
    packages: String,
    ecosystem: String,
    filename: String,
    manifest: String,
    no_dev: bool,
    ran: bool,
    problem: Option<String>,
    skills: Vec<SkillView>,
    known: usize,
    asked: usize,
    unknown: Vec<String>,
}

const FILENAMES: &[&str] = &[
    "package.json",
    "requirements.txt",
    "pyproject.toml",
    "Cargo.toml",
];

async fn page(state: &AppState, v: &Visitor, f: SuggestForm) -> Headed<Page> {
    let text = |o: &Option<String>| o.clone().unwrap_or_default();
    let mut view = View {
        packages: text(&f.packages),
        ecosystem: text(&f.ecosystem),
        filename: f.filename.clone().unwrap_or_else(|| "package.json".into()),
        manifest: text(&f.manifest),
        no_dev: f.no_dev.as_deref().is_some_and(|s| !s.is_empty()),
        ..View::default()
    };
    let packages: Vec<String> = view
        .packages
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    let manifest = Some(view.manifest.trim())
        .filter(|m| !m.is_empty())
        .map(|content| ManifestUpload {
            filename: view.filename.clone(),
            content: content.to_string(),
        });
    let mut status = StatusCode::OK;
    if !packages.is_empty() || manifest.is_some() {
        let req = SuggestRequest {
            packages,
            ecosystem: Some(view.ecosystem.trim().to_string()).filter(|e| !e.is_empty()),
            manifest,
            include_dev: Some(!view.no_dev),
            limit: Some(25),
        };
        match state.registry.suggest_skills(&v.caller, req).await {
            Ok(r) => {
                view.ran = true;
                view.asked = r.packages.len();
                view.known = r.packages.iter().filter(|p| p.entry.is_some()).count();
                view.unknown = r.unknown;
                view.skills = r
                    .skills
                    .into_iter()
                    .map(|s| SkillView {
                        href: entry_href(Kind::Skill, &s.namespace, &s.name),
                        name: format!("{}/{}", s.namespace, s.name),
                        description: s.description,
                        score: format!("{:.2}", s.score),
                        matches: s
                            .matches
                            .into_iter()
                            .map(|m| MatchView {
                                href: entry_href(Kind::Package, &m.ecosystem, &m.package),
                                package: m.package,
                                confidence: format!("{:.0}%", m.confidence * 100.0),
                                source: m.source.unwrap_or_default(),
                                range: m.range.unwrap_or_default(),
                                dev: m.dev,
                            })
                            .collect(),
                    })
                    .collect();
            }
            Err(e) => {
                status = StatusCode::UNPROCESSABLE_ENTITY;
                view.problem = Some(match &e.field {
                    Some(f) => format!("{f}: {}", e.message),
                    None => e.message,
                });
            }
        }
    }
    #[derive(Serialize)]
    struct Full<'a> {
        #[serde(flatten)]
        view: &'a View,
        filenames: &'static [&'static str],
    }
    render(
        v,
        status,
        "suggest.html",
        &Full {
            view: &view,
            filenames: FILENAMES,
        },
    )
}

/// `GET /skills/suggest?packages=react,next`: the form, and the skills for the packages.
pub async fn suggest(
    State(state): State<AppState>,
    v: Visitor,
    Query(f): Query<SuggestForm>,
) -> Headed<Page> {
    page(&state, &v, f).await
}

/// `POST /skills/suggest`: the skills for a pasted manifest (and any packages).
pub async fn suggest_manifest(
    State(state): State<AppState>,
    v: Visitor,
    Form(f): Form<SuggestForm>,
) -> Headed<Page> {
    page(&state, &v, f).await
}
