//! The registry for agents over the Model Context Protocol: tools to search, read entries
//! and tool schemas, select a tool for a capability, suggest skills and resolve a
//! reference; and each entry as the resource `quiver://{kind}/{namespace}/{name}`.
//!
//! One handler serves both transports. It calls the engine directly (no HTTP to itself),
//! always as a [`Caller`], so an agent sees exactly what the same caller sees through the
//! API: a private entry it may not read is not found. Over stdio (`quiver mcp`) the caller
//! is fixed when the process starts; over Streamable HTTP (`/mcp` on `quiver serve`) it is
//! each request's bearer token, resolved by [`authenticate`] like the API's `Auth`
//! extractor (no token: anonymous; a token that does not resolve: 401).

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use quiver_engine::resolve::ResolveRef;
use quiver_engine::select::SelectRequest;
use quiver_engine::suggest::SuggestRequest;
use quiver_engine::{Caller, Registry};
use quiver_model::{Entry, EntryKey, Error, ErrorCode, Kind, Version};
use quiver_search::SearchQuery;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation,
    ListResourceTemplatesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, ResourceContents,
    ResourceTemplate, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::AppState;

/// Where the HTTP transport is mounted.
pub const PATH: &str = "/mcp";

/// The resource URI template of an entry.
pub const RESOURCE_TEMPLATE: &str = "quiver://{kind}/{namespace}/{name}";

/// Most search hits one call answers.
const MAX_SEARCH: usize = 50;

/// The MCP handler: the registry, and the caller of a transport without per-request
/// credentials (stdio).
#[derive(Clone)]
pub struct QuiverMcp {
    registry: Arc<Registry>,
    caller: Caller,
}

/// The caller of one HTTP request, put on the request by [`authenticate`]; the MCP
/// transport hands the request's parts to the handler.
#[derive(Clone)]
struct HttpCaller(Caller);

impl QuiverMcp {
    /// A handler acting as `caller` (over HTTP, each request's own caller instead).
    pub fn new(registry: Arc<Registry>, caller: Caller) -> Self {
        QuiverMcp { registry, caller }
    }

    /// Who asks: an HTTP request's authenticated caller (anonymous when the request
    /// carries none), else the handler's own.
    fn caller(&self, ctx: &RequestContext<RoleServer>) -> Caller {
        match ctx.extensions.get::<axum::http::request::Parts>() {
            Some(parts) => parts
                .extensions
                .get::<HttpCaller>()
                .map_or(Caller::Anonymous, |c| c.0.clone()),
            None => self.caller.clone(),
        }
    }

    async fn call(&self, caller: &Caller, name: &str, args: Value) -> Result<Value, Error> {
        match name {
            "search" => self.search(caller, parse(args)?),
            "get_entry" => {
                self.entry_json(caller, &parse::<EntryArgs>(args)?.key())
                    .await
            }
            "get_tool_schema" => self.tool_schema(caller, parse(args)?).await,
            "select_tool" => {
                let r: SelectRequest = parse(args)?;
                to_json(&self.registry.select(caller, r).await?)
            }
            "suggest_skills" => {
                let r: SuggestRequest = parse(args)?;
                to_json(&self.registry.suggest_skills(caller, r).await?)
            }
            "resolve" => {
                let r: ResolveRef = parse(args)?;
                to_json(&self.registry.resolve(caller, &r).await?)
            }
            other => Err(Error::invalid(
                "name",
                format!("no tool '{other}' (see tools/list)"),
            )),
        }
    }

    fn search(&self, caller: &Caller, a: SearchArgs) -> Result<Value, Error> {
        let limit = a.limit.unwrap_or(10);
        if !(1..=MAX_SEARCH).contains(&limit) {
            return Err(Error::invalid(
                "limit",
                format!("must be 1 to {MAX_SEARCH}"),
            ));
        }
        if a.query.len() > 256 {
            return Err(Error::invalid("query", "must be at most 256 bytes"));
        }
        let query = SearchQuery {
            q: a.query,
            kinds: a.kind.into_iter().collect(),
            namespaces: a.namespace.into_iter().collect(),
            tags: a.tags,
            limit,
            ..SearchQuery::default()
        };
        let results = self.registry.search(caller, query)?;
        let hits: Vec<Value> = results
            .hits
            .into_iter()
            .map(|h| {
                json!({
                    "kind": h.kind,
                    "namespace": h.namespace,
                    "name": h.name,
                    "version": h.latest_version,
                    "description": h.description,
                    "status": h.status,
                    "score": h.score,
                    "uri": uri(h.kind, &h.namespace, &h.name),
                })
            })
            .collect();
        Ok(json!({
            "total": results.total,
            "hits": hits,
            "suggestion": results.suggestion,
        }))
    }

    /// An entry and its latest version (with its manifest), as the caller may see them.
    async fn entry_and_latest(
        &self,
        caller: &Caller,
        key: &EntryKey,
    ) -> Result<(Entry, Option<Version>), Error> {
        let entry = self.registry.get_entry(caller, key).await?;
        let latest = match &entry.latest_version {
            Some(v) => Some(self.registry.get_version(caller, key, v).await?),
            None => None,
        };
        Ok((entry, latest))
    }

    async fn entry_json(&self, caller: &Caller, key: &EntryKey) -> Result<Value, Error> {
        let (entry, latest) = self.entry_and_latest(caller, key).await?;
        let uri = uri(entry.kind, &entry.namespace, &entry.name);
        Ok(json!({ "uri": uri, "entry": entry, "latest": latest }))
    }

    async fn tool_schema(&self, caller: &Caller, a: ToolSchemaArgs) -> Result<Value, Error> {
        let key = EntryKey::new(Kind::Tool, &a.namespace, &a.name);
        let (entry, version) = match a.version {
            Some(v) => {
                let entry = self.registry.get_entry(caller, &key).await?;
                let version = self.registry.get_version(caller, &key, &v).await?;
                (entry, version)
            }
            None => match self.entry_and_latest(caller, &key).await? {
                (entry, Some(latest)) => (entry, latest),
                (_, None) => {
                    return Err(Error::not_found(format!(
                        "a published version of tool {}/{}",
                        a.namespace, a.name
                    )))
                }
            },
        };
        Ok(json!({
            "namespace": entry.namespace,
            "name": entry.name,
            "version": version.version,
            "description": entry.description,
            "input_schema": schema_of(&version.manifest, "input_schema", "inputs"),
            "output_schema": schema_of(&version.manifest, "output_schema", "outputs"),
        }))
    }
}

/// A manifest's JSON Schema under `schema`; else its list of named fields under `list`
/// (`[{name, type, description, required}]`) as an object schema; else null.
fn schema_of(manifest: &Value, schema: &str, list: &str) -> Value {
    if manifest[schema].is_object() {
        return manifest[schema].clone();
    }
    let Some(items) = manifest[list].as_array() else {
        return Value::Null;
    };
    let mut properties = Map::new();
    let mut required = vec![];
    for item in items {
        let Some(name) = item["name"].as_str() else {
            continue;
        };
        let mut prop = Map::new();
        for field in ["type", "description"] {
            if let Some(v) = item.get(field).filter(|v| !v.is_null()) {
                prop.insert(field.into(), v.clone());
            }
        }
        if item["required"].as_bool() == Some(true) {
            required.push(Value::from(name));
        }
        properties.insert(name.into(), Value::Object(prop));
    }
    json!({"type": "object", "properties": properties, "required": required})
}

/// `quiver://{kind}/{namespace}/{name}`.
pub fn uri(kind: Kind, namespace: &str, name: &str) -> String {
    format!("quiver://{kind}/{namespace}/{name}")
}

/// The entry a `quiver://` URI names (a scoped npm name keeps its slash: everything after
/// the namespace is the name).
fn parse_uri(uri: &str) -> Option<EntryKey> {
    let rest = uri.strip_prefix("quiver://")?;
    let mut parts = rest.splitn(3, '/');
    let kind: Kind = parts.next()?.parse().ok()?;
    let namespace = parts.next().filter(|s| !s.is_empty())?;
    let name = parts.next().filter(|s| !s.is_empty())?;
    Some(EntryKey::new(kind, namespace, name))
}

fn parse<T: DeserializeOwned>(args: Value) -> Result<T, Error> {
    let de = serde_json::from_value::<T>(args);
    de.map_err(|e| Error::invalid("arguments", e.to_string()))
}

fn to_json(v: &impl Serialize) -> Result<Value, Error> {
    serde_json::to_value(v).map_err(|e| Error::internal("encoding the answer", e))
}

/// Arguments of `search`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    /// Free text: what the entry does or its name (`parse csv`, `ripgrep`); typos are
    /// forgiven. Empty lists entries by relevance of the filters alone.
    #[serde(default)]
    query: String,
    /// Only entries of this kind: `tool` (a callable tool with JSON-Schema input and
    /// output), `recipe` (a CLI install recipe), `skill` (an agent skill), `module` (a
    /// prompt/code module), `package` (an npm or PyPI package).
    #[serde(default)]
    kind: Option<Kind>,
    /// Only entries in this namespace (`tpmjs`, `npm`, `pypi`, ...).
    #[serde(default)]
    namespace: Option<String>,
    /// Only entries with at least one of these tags.
    #[serde(default)]
    tags: Vec<String>,
    /// Hits to answer, 1 to 50 (default 10).
    #[serde(default)]
    limit: Option<usize>,
}

/// Arguments naming one entry.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct EntryArgs {
    /// The entry's kind: tool, recipe, skill, module or package.
    kind: Kind,
    /// The entry's namespace, as search answers it.
    namespace: String,
    /// The entry's name, as search answers it (a scoped npm name keeps its slash:
    /// `@types/node`).
    name: String,
}

impl EntryArgs {
    fn key(&self) -> EntryKey {
        EntryKey::new(self.kind, &self.namespace, &self.name)
    }
}

/// Arguments of `get_tool_schema`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ToolSchemaArgs {
    /// The tool's namespace.
    namespace: String,
    /// The tool's name.
    name: String,
    /// An exact version (default: the latest).
    #[serde(default)]
    version: Option<String>,
}

/// A type's JSON Schema as an MCP tool input schema (an object).
fn input_schema<T: JsonSchema>() -> Arc<Map<String, Value>> {
    let schema = schemars::schema_for!(T);
    match serde_json::to_value(schema) {
        Ok(Value::Object(mut m)) => {
            m.remove("$schema");
            Arc::new(m)
        }
        _ => Arc::new(Map::from_iter([("type".into(), json!("object"))])),
    }
}

fn tool<T: JsonSchema>(name: &'static str, title: &str, description: &'static str) -> Tool {
    Tool::new(name, description, input_schema::<T>()).with_annotations(
        ToolAnnotations::with_title(title)
            .read_only(true)
            .destructive(false)
            .idempotent(true)
            .open_world(false),
    )
}

/// The tools, as `tools/list` answers them.
pub fn tools() -> Vec<Tool> {
    vec![
        tool::<SearchArgs>(
            "search",
            "Search the registry",
            "Search quiver's registry of developer and agent tools: tools with JSON-Schema \
             inputs and outputs, CLI recipes, agent skills, prompt/code modules and npm/PyPI \
             packages. Answers the best matches first, each with kind, namespace, name, \
             latest version, description, score and a quiver:// resource URI. Follow with \
             get_entry or get_tool_schema on a hit.",
        ),
        tool::<EntryArgs>(
            "get_entry",
            "Read an entry",
            "Read one registry entry by kind, namespace and name: its description, tags, \
             status, deprecation and popularity, with its latest version and that version's \
             full manifest (for a tool: input/output schemas and examples; for a recipe: \
             install steps; for a skill or module: its source). Not found when it does not \
             exist or the caller may not see it.",
        ),
        tool::<ToolSchemaArgs>(
            "get_tool_schema",
            "Read a tool's input and output schemas",
            "The JSON Schemas of a tool's input and output (from its latest version's \
             manifest, or the version given): what to pass when calling the tool and what \
             it returns. A manifest that lists its inputs as named fields answers them as an \
             object schema; a side it does not describe is null.",
        ),
        tool::<SelectRequest>(
            "select_tool",
            "Select a tool for a capability",
            "Rank the registry's ops patterns that provide a capability (`packet_capture`), \
             or the capability a need in words resolves to (`need`: `capture network packets \
             on an interface`), for the given context variables, hard constraints and \
             preference weights: the best candidate first, with estimates, scores and why \
             others were excluded.",
        ),
        tool::<SuggestRequest>(
            "suggest_skills",
            "Suggest skills for a project's packages",
            "Agent skills that fit a project, from the packages it uses (`react`, \
             `pypi:requests`) or its manifest (package.json, requirements.txt, ...): the best \
             first, each with the packages it was matched on.",
        ),
        tool::<ResolveRef>(
            "resolve",
            "Resolve a reference to one version",
            "Resolve kind/namespace/name and a semver range (`^1.2`, an exact version, or \
             `latest`, the default) to the version to use: its manifest hash, content hash, \
             source, yanked and deprecated flags, advisories and warnings.",
        ),
    ]
}

/// An engine error as a tool result the agent can read (not a protocol error): the
/// registry's error envelope.
fn error_result(e: &Error) -> CallToolResult {
    CallToolResult::structured_error(json!({
        "error": {"code": e.code.as_str(), "message": e.message, "field": e.field}
    }))
}

impl ServerHandler for QuiverMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(
            Implementation::new("quiver", env!("CARGO_PKG_VERSION")).with_title("quiver registry"),
        )
        .with_instructions(
            "quiver is a registry of developer and agent tools. Call `search` to find \
             entries (filter by kind: tool, recipe, skill, module, package), then \
             `get_entry` for an entry with its latest manifest, or `get_tool_schema` for a \
             tool's input/output JSON Schemas. `select_tool` ranks tools for a capability, \
             `suggest_skills` finds skills for a project's packages, `resolve` pins a \
             version. Entries are also resources: quiver://{kind}/{namespace}/{name}.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = self.caller(&context);
        let args = Value::Object(request.arguments.unwrap_or_default());
        match self.call(&caller, &request.name, args).await {
            Ok(v) => Ok(CallToolResult::structured(v).into()),
            Err(e) if e.code == ErrorCode::Internal => {
                tracing::error!(tool = %request.name, error = %e, "MCP tool call failed");
                Err(ErrorData::internal_error(e.message, None))
            }
            Err(e) => Ok(error_result(&e).into()),
        }
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(RESOURCE_TEMPLATE, "entry")
                .with_title("A registry entry")
                .with_description(
                    "An entry (kind: tool, recipe, skill, module or package) with its latest \
                     version and manifest, as JSON.",
                )
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let caller = self.caller(&context);
        let not_found = || {
            ErrorData::resource_not_found(
                Cow::Owned(format!("no entry {}", request.uri)),
                Some(json!({"uri": request.uri})),
            )
        };
        let key = parse_uri(&request.uri).ok_or_else(not_found)?;
        match self.entry_json(&caller, &key).await {
            Ok(v) => Ok(ReadResourceResult::new(vec![ResourceContents::text(
                v.to_string(),
                request.uri.clone(),
            )
            .with_mime_type("application/json")])
            .into()),
            Err(e) if e.code == ErrorCode::NotFound => Err(not_found()),
            Err(e) if e.code == ErrorCode::Internal => {
                Err(ErrorData::internal_error(e.message, None))
            }
            Err(e) => Err(ErrorData::invalid_params(e.message, None)),
        }
    }
}

/// The HTTP transport's middleware: the request's caller from its bearer token, found as
/// the API's `Auth` extractor finds it (no `Authorization`: anonymous; the admin token:
/// the bootstrap admin; else an API or session token, resolved by the engine). A header
/// that does not resolve is refused with the API's 401 envelope, never downgraded. Cookies are
/// not read, so a page in a browser cannot act with its visitor's session here.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let caller = match crate::extract::bearer_caller(req.headers(), &state).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    req.extensions_mut().insert(HttpCaller(caller));
    next.run(req).await
}

/// The Streamable HTTP service over `state`'s registry, to mount at [`PATH`] behind
/// [`authenticate`].
///
/// Stateless: no MCP session is kept between requests (the server never sends requests
/// or notifications of its own, and each request carries its own credentials), so any
/// node of a deployment answers any request, and nothing is held in memory per client.
/// Answers are plain JSON rather than event streams. Host checks are off: the server
/// answers under whatever name it is deployed, and since credentials come only from the
/// bearer header (no cookies), a rebound DNS name gains a browser nothing it could not
/// ask for directly.
pub fn http_service(
    state: &AppState,
) -> rmcp::transport::StreamableHttpService<
    QuiverMcp,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
    let registry = state.registry.clone();
    rmcp::transport::StreamableHttpService::new(
        move || Ok(QuiverMcp::new(registry.clone(), Caller::Anonymous)),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .disable_allowed_hosts(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip_with_scoped_names() {
        let k = parse_uri("quiver://package/npm/@types/node").unwrap();
        assert_eq!(k, EntryKey::new(Kind::Package, "npm", "@types/node"));
        assert_eq!(
            uri(k.kind, &k.namespace, &k.name),
            "quiver://package/npm/@types/node"
        );
        assert!(parse_uri("quiver://gadget/x/y").is_none());
        assert!(parse_uri("quiver://tool/x").is_none());
        assert!(parse_uri("https://tool/x/y").is_none());
    }

    #[test]
    fn listed_inputs_become_an_object_schema() {
        let m = json!({"inputs": [
            {"name": "url", "type": "string", "description": "where", "required": true},
            {"name": "depth", "type": "integer"}
        ]});
        let s = schema_of(&m, "input_schema", "inputs");
        assert_eq!(s["properties"]["url"]["type"], "string");
        assert_eq!(s["required"], json!(["url"]));
        assert_eq!(schema_of(&m, "output_schema", "outputs"), Value::Null);
    }

    #[test]
    fn every_tool_has_an_object_input_schema() {
        for t in tools() {
            assert_eq!(t.input_schema["type"], "object", "{}", t.name);
            assert!(t.description.as_ref().is_some_and(|d| d.len() > 80));
        }
    }
}
