//! The REST endpoints: request pipeline (faults, authentication, spec checks, query parameters,
//! consistency level) and the handlers.
//!
//! Query parameters fail closed: one outside Weaviate's spec for the operation, or in the spec
//! but not implemented here (e.g. `tenant`, `sort`), is refused with a 422 naming it. Weaviate
//! itself ignores unknown query parameters; a stand-in that did the same would let a test pass
//! for a client that sends a misspelt or unsupported parameter and relies on it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::classes::{normalize_class, upper_first, validate_properties};
use crate::faults::{Action, ReadOnly};
use crate::filter::Filter;
use crate::query;
use crate::spec::spec;
use crate::store::{ClassData, Store, StoredObject, object_json};
use crate::{ConnectionKill, Received, Shared, lock};

/// Largest request body accepted (Weaviate has no fixed limit; this bounds test memory).
const MAX_BODY: usize = 512 * 1024 * 1024;

/// An answer before it is serialized: status and optional JSON body.
pub(crate) struct Reply {
    status: u16,
    body: Option<Value>,
    /// The test server's own answer (something it refuses or does not implement), not one
    /// Weaviate would give: not checked against the spec.
    own: bool,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            body: Some(body),
            own: false,
        }
    }

    fn empty(status: u16) -> Self {
        Reply {
            status,
            body: None,
            own: false,
        }
    }

    /// An answer of the test server itself, in Weaviate's error shape.
    fn own(status: u16, message: impl Into<String>) -> Self {
        Reply {
            own: true,
            ..Reply::error(status, message)
        }
    }

    /// Weaviate's handler error shape.
    fn error(status: u16, message: impl Into<String>) -> Self {
        Reply::json(status, json!({ "error": [{ "message": message.into() }] }))
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The whole request pipeline.
pub(crate) async fn handle(shared: Arc<Shared>, request: Request) -> Response {
    if request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/grpc"))
    {
        return refuse_grpc(&shared, &request);
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let kill = request.extensions().get::<ConnectionKill>().cloned();
    let body = match to_bytes(request.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return respond(&method, Reply::error(413, "request body too large")),
    };
    lock(&shared.requests).push(Received {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        authorization: authorization.clone(),
        body: body.clone(),
    });

    let mut rewrites = Vec::new();
    for action in shared.faults.take(&method, &path) {
        match action {
            Action::Delay(d) => tokio::time::sleep(d).await,
            Action::Status(status, message) => {
                return respond(&method, Reply::error(status, message));
            }
            Action::Drop => {
                if let Some(kill) = &kill {
                    kill.kill();
                }
                // The connection task drops this future; nothing is ever sent.
                std::future::pending::<()>().await;
            }
            Action::Rewrite(f) => rewrites.push(f),
        }
    }

    if path == "/v1/.well-known/live" {
        return respond(&method, Reply::empty(200));
    }
    if path == "/v1/.well-known/ready" {
        let status = if shared.ready.load(Ordering::SeqCst) {
            200
        } else {
            503
        };
        return respond(&method, Reply::empty(status));
    }

    if let Some(reply) = authenticate(&shared, authorization.as_deref()) {
        return respond(&method, reply);
    }

    let Some(route) = path.strip_prefix("/v1") else {
        return respond(
            &method,
            Reply::json(
                404,
                json!({"code": 404, "message": format!("path {path} was not found")}),
            ),
        );
    };
    let Some((operation, params)) = spec().find(&method, route) else {
        let reply = if spec().path_exists(route) {
            Reply::json(
                405,
                json!({"code": 405, "message": format!("method {method} is not allowed")}),
            )
        } else {
            Reply::json(
                404,
                json!({"code": 404, "message": format!("path {path} was not found")}),
            )
        };
        return respond(&method, reply);
    };

    if let Some(refusal) = refuse_query_parameters(operation, &query) {
        return respond(&method, refusal);
    }

    // go-swagger's checks run before Weaviate's handler and answer in go-openapi's shape.
    let parsed = match operation.check_request(&params, &query, &body) {
        Ok(parsed) => parsed,
        Err(rejection) => return respond(&method, Reply::json(rejection.status, rejection.body)),
    };

    let consistency = query
        .iter()
        .find(|(k, _)| k == "consistency_level")
        .map(|(_, v)| v.as_str());
    let mut reply = match consistency {
        Some(level) if !["ONE", "QUORUM", "ALL"].contains(&level) => Reply::error(
            400,
            format!(
                "unrecognized consistency level '{level}', try one of the following: ['ONE', 'QUORUM', 'ALL']"
            ),
        ),
        _ => dispatch(&shared, &operation.id, &params, &query, parsed),
    };

    for rewrite in rewrites {
        // An empty answer is offered as `null`, so a fault can also add a body.
        let mut body = reply.body.take().unwrap_or(Value::Null);
        rewrite(&mut body);
        reply.body = (!body.is_null()).then_some(body);
    }

    if reply.own {
        return respond(&method, reply);
    }
    let mut problem = operation
        .check_response(reply.status, reply.body.as_mut())
        .err();
    if reply.status == 404 && reply.body.is_some() {
        problem = Some(format!("{}: a 404 must have an empty body", operation.id));
    }
    if let Some(problem) = problem {
        eprintln!("weaviate-test-server: response breaks Weaviate's OpenAPI spec: {problem}");
        lock(&shared.violations).push(problem.clone());
        reply = Reply::error(
            500,
            format!("weaviate-test-server: response breaks Weaviate's OpenAPI spec: {problem}"),
        );
    }
    respond(&method, reply)
}

/// Weaviate serves gRPC on its own port (50051); the test server speaks only REST and GraphQL.
/// A gRPC call (on any port it listens on) gets a trailers-only answer with status
/// UNIMPLEMENTED (12), so a gRPC client fails at once with a message that says why.
fn refuse_grpc(shared: &Shared, request: &Request) -> Response {
    lock(&shared.requests).push(Received {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
        query: Vec::new(),
        authorization: None,
        body: bytes::Bytes::new(),
    });
    let message = format!(
        "weaviate-test-server does not speak gRPC ({} is not served): use REST and GraphQL",
        request.uri().path()
    );
    // grpc-message is percent-encoded (gRPC over HTTP/2 spec).
    let encoded: String = message
        .bytes()
        .map(|b| {
            if b.is_ascii_graphic() && b != b'%' || b == b' ' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from_static("12"));
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        headers.insert("grpc-message", value);
    }
    response
}

fn respond(method: &Method, reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match reply.body {
        Some(body) if *method != Method::HEAD && status != StatusCode::NO_CONTENT => {
            let bytes = crate::json::to_vec(&body);
            let mut r = Response::new(Body::from(bytes));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        _ => Response::new(Body::empty()),
    };
    *response.status_mut() = status;
    response
}

fn authenticate(shared: &Shared, authorization: Option<&str>) -> Option<Reply> {
    let keys = &shared.config.api_keys;
    let token = authorization.and_then(|h| h.strip_prefix("Bearer "));
    match token {
        None if keys.is_empty() => None,
        None => Some(Reply::json(
            401,
            json!({"code": 401, "message": "anonymous access not enabled. Please authenticate through one of the available methods: [API-keys]"}),
        )),
        Some(_) if keys.is_empty() => Some(Reply::json(
            401,
            json!({"code": 401, "message": "no authentication scheme is configured (API Key or OIDC), but an 'Authorization' header was provided. Please configure an auth scheme or remove the header for anonymous access"}),
        )),
        Some(t) if keys.iter().any(|k| k == t) => None,
        Some(_) => Some(Reply::json(
            401,
            json!({"code": 401, "message": "unauthorized: invalid api key"}),
        )),
    }
}

/// The query parameters each implemented operation understands (the rest of the spec's are
/// refused, see the module docs).
fn implemented_query_parameters(operation: &str) -> &'static [&'static str] {
    match operation {
        "objects.list" => &["class", "limit", "offset", "after", "include"],
        "objects.class.get" => &["include", "consistency_level"],
        "objects.class.head"
        | "objects.create"
        | "objects.class.put"
        | "objects.class.patch"
        | "objects.class.delete"
        | "batch.objects.create"
        | "batch.objects.delete" => &["consistency_level"],
        "nodes.get" | "nodes.get.class" => &["output"],
        "aliases.get" => &["class"],
        _ => &[],
    }
}

fn refuse_query_parameters(
    operation: &crate::spec::Operation,
    query: &[(String, String)],
) -> Option<Reply> {
    let in_spec = operation.query_parameters();
    let implemented = implemented_query_parameters(&operation.id);
    for (name, _) in query {
        if !in_spec.contains(&name.as_str()) {
            return Some(Reply::own(
                422,
                format!(
                    "weaviate-test-server refuses the query parameter '{name}': Weaviate's spec has \
                     no such parameter for {} (Weaviate would silently ignore it)",
                    operation.id
                ),
            ));
        }
        if !implemented.contains(&name.as_str()) {
            return Some(Reply::own(
                422,
                format!(
                    "weaviate-test-server does not implement the query parameter '{name}' of {}",
                    operation.id
                ),
            ));
        }
    }
    None
}

fn dispatch(
    shared: &Shared,
    operation: &str,
    params: &HashMap<String, String>,
    query: &[(String, String)],
    body: Option<Value>,
) -> Reply {
    let q = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut store = lock(&shared.store);
    let raw_class = params.get("className").map_or("", String::as_str);
    // Schema calls take class names only; object calls take aliases too.
    let schema_class = upper_first(raw_class);
    let object_class = store
        .resolve(raw_class)
        .unwrap_or_else(|| schema_class.clone());
    let id_param = params.get("id").and_then(|s| Uuid::parse_str(s).ok());
    let read_only = shared.faults.read_only_state();
    match operation {
        "meta.get" => Reply::json(
            200,
            json!({"hostname": "http://[::]:8080", "modules": {}, "version": shared.config.version,
                   "grpcMaxMessageSize": 104_858_000}),
        ),
        "schema.dump" => {
            let classes: Vec<&Value> = store.classes.values().map(|c| &c.definition).collect();
            Reply::json(200, json!({ "classes": classes }))
        }
        "schema.objects.get" => match store.class(&schema_class) {
            Some(c) => Reply::json(200, c.clone()),
            None => Reply::empty(404),
        },
        "schema.objects.create" => create_class(shared, &mut store, body.unwrap_or(Value::Null)),
        "schema.objects.update" => update_class(
            shared,
            &mut store,
            &schema_class,
            body.unwrap_or(Value::Null),
        ),
        "schema.objects.delete" => {
            // Deleting a class leaves its aliases (CONTRACT.md).
            store.classes.remove(&schema_class);
            Reply::empty(200)
        }
        "batch.objects.create" => batch_create(shared, &mut store, body.unwrap_or(Value::Null)),
        "batch.objects.delete" => batch_delete(shared, &mut store, body.unwrap_or(Value::Null)),
        "objects.list" => list_objects(shared, &store, &q),
        "objects.class.get" => {
            let vector = match parse_include(q("include")) {
                Ok(v) => v,
                Err(r) => return r,
            };
            match id_param.and_then(|id| store.object_json(&object_class, &id, vector)) {
                Some(o) => Reply::json(200, o),
                None => Reply::empty(404),
            }
        }
        "objects.class.head" => {
            let exists = id_param.is_some_and(|id| {
                store
                    .classes
                    .get(&object_class)
                    .is_some_and(|c| c.objects.contains_key(&id))
            });
            Reply::empty(if exists { 204 } else { 404 })
        }
        "objects.class.delete" => {
            let class = object_class;
            match (store.classes.get_mut(&class), id_param) {
                (Some(_), Some(_)) if read_only.is_some() => {
                    read_only_reply("delete object", read_only.as_ref())
                }
                (Some(c), Some(id)) => {
                    c.objects.remove(&id);
                    Reply::empty(204)
                }
                (None, _) => Reply::error(
                    500,
                    format!(
                        "could not delete object from vector repo: delete from non-existing index for {class}"
                    ),
                ),
                (Some(_), None) => Reply::empty(404),
            }
        }
        "objects.create" => create_object(shared, &mut store, body.unwrap_or(Value::Null)),
        "objects.class.put" => put_object(
            shared,
            &mut store,
            &object_class,
            id_param,
            body.unwrap_or(Value::Null),
        ),
        "objects.class.patch" => match body {
            None => Reply::empty(400),
            Some(body) => patch_object(shared, &mut store, &object_class, id_param, body),
        },
        "graphql.post" => graphql_post(shared, &store, body.unwrap_or(Value::Null)),
        "nodes.get" => nodes(shared, &store, None, q("output")),
        "nodes.get.class" => nodes(shared, &store, Some(&schema_class), q("output")),
        "aliases.get" => {
            let class = q("class").map(upper_first);
            let aliases: Vec<Value> = store
                .aliases
                .iter()
                .filter(|(_, c)| class.as_ref().is_none_or(|want| want == *c))
                .map(|(alias, class)| json!({"alias": alias, "class": class}))
                .collect();
            Reply::json(200, json!({ "aliases": aliases }))
        }
        "aliases.create" => create_alias(&mut store, body.unwrap_or(Value::Null)),
        "aliases.get.alias" => {
            let alias = upper_first(params.get("aliasName").map_or("", String::as_str));
            match store.aliases.get(&alias) {
                Some(class) => Reply::json(200, json!({"alias": alias, "class": class})),
                None => Reply::empty(404),
            }
        }
        "aliases.update" => {
            let alias = upper_first(params.get("aliasName").map_or("", String::as_str));
            let class = upper_first(
                body.as_ref()
                    .and_then(|b| b["class"].as_str())
                    .unwrap_or_default(),
            );
            if !store.aliases.contains_key(&alias) {
                return Reply::empty(404);
            }
            if !store.classes.contains_key(&class) {
                return Reply::error(422, format!("target class \"{class}\" does not exist"));
            }
            // One assignment: the switch is atomic, as Weaviate's single Raft command.
            store.aliases.insert(alias.clone(), class.clone());
            Reply::json(200, json!({"alias": alias, "class": class}))
        }
        "aliases.delete" => {
            let alias = upper_first(params.get("aliasName").map_or("", String::as_str));
            match store.aliases.remove(&alias) {
                Some(_) => Reply::empty(204),
                None => Reply::empty(404),
            }
        }
        other => Reply::own(
            501,
            format!("weaviate-test-server does not implement {other}"),
        ),
    }
}

fn read_only_reply(what: &str, read_only: Option<&ReadOnly>) -> Reply {
    let message = read_only.map(ReadOnly::message).unwrap_or_default();
    Reply::error(500, format!("{what}: {message}"))
}

fn create_alias(store: &mut Store, body: Value) -> Reply {
    let alias = upper_first(body["alias"].as_str().unwrap_or_default());
    let class = upper_first(body["class"].as_str().unwrap_or_default());
    if alias.is_empty() || !crate::classes::valid_class_name(&alias) {
        return Reply::error(
            422,
            format!("create alias: '{alias}' is not a valid alias name"),
        );
    }
    if store.aliases.contains_key(&alias) {
        return Reply::error(422, format!("create alias: {alias}, alias already exists"));
    }
    if store.find_class_insensitive(&alias).is_some() {
        return Reply::error(422, format!("create alias: class {alias} already exists"));
    }
    if !store.classes.contains_key(&class) {
        return Reply::error(
            422,
            format!("create alias: target class \"{class}\" does not exist"),
        );
    }
    store.aliases.insert(alias.clone(), class.clone());
    Reply::json(200, json!({"alias": alias, "class": class}))
}

/// `GET /v1/nodes[/{class}]`: one node holding one shard per class
/// (`adapters/repos/db/nodes.go`: shards and stats only with `output=verbose`).
fn nodes(shared: &Shared, store: &Store, class: Option<&str>, output: Option<&str>) -> Reply {
    let output = output.unwrap_or("minimal");
    if output != "minimal" && output != "verbose" {
        return Reply::error(
            422,
            format!(
                "output: invalid output: \"{output}\", possible values are: \"minimal\", \"verbose\""
            ),
        );
    }
    if let Some(class) = class
        && !store.classes.contains_key(class)
    {
        // Weaviate answers an empty node status for a class it does not know.
        return Reply::json(200, json!({"nodes": [{}]}));
    }
    let read_only = shared.faults.read_only_state().is_some();
    let mut node = json!({
        "name": "weaviate-test-server",
        "status": "HEALTHY",
        "version": shared.config.version,
        "gitHash": "",
        "batchStats": {"queueLength": 0, "ratePerSecond": 0},
        "operationalMode": "ReadWrite",
    });
    if output == "verbose" {
        let shards: Vec<Value> = store
            .classes
            .iter()
            .filter(|(name, _)| class.is_none_or(|c| c == name.as_str()))
            .map(|(name, data)| {
                json!({
                    "name": data.shard,
                    "class": name,
                    "objectCount": data.objects.len(),
                    "vectorIndexingStatus": if read_only { "READONLY" } else { "READY" },
                    "compressed": false,
                    "vectorQueueLength": 0,
                    "loaded": true,
                    "numberOfReplicas": 1,
                    "replicationFactor": 1,
                })
            })
            .collect();
        let objects: usize = shards
            .iter()
            .filter_map(|s| s["objectCount"].as_u64())
            .sum::<u64>() as usize;
        node["stats"] = json!({"shardCount": shards.len(), "objectCount": objects});
        node["shards"] = Value::Array(shards);
    }
    Reply::json(200, json!({ "nodes": [node] }))
}

/// `PUT /v1/schema/{class}`: the whole class replaces the stored one; what Weaviate keeps
/// immutable is refused (`usecases/schema/class.go`, `parse_*_config.go`).
fn update_class(shared: &Shared, store: &mut Store, name: &str, body: Value) -> Reply {
    let Some(data) = store.classes.get_mut(name) else {
        return Reply::empty(404);
    };
    let new = match normalize_class(body, &shared.config.default_vectorizer) {
        Ok(c) => c,
        Err(message) => return Reply::error(422, message),
    };
    let old = &data.definition;
    if new["class"] != old["class"] {
        return Reply::error(
            422,
            format!(
                "class name is immutable: attempted change from \"{}\" to \"{}\"",
                old["class"].as_str().unwrap_or_default(),
                new["class"].as_str().unwrap_or_default()
            ),
        );
    }
    let strip = |props: &Value| -> Vec<Value> {
        props
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        let mut p = p.clone();
                        if let Some(m) = p.as_object_mut() {
                            m.remove("description");
                        }
                        p
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    if strip(&new["properties"]) != strip(&old["properties"]) {
        return Reply::error(
            422,
            "properties cannot be updated through updating the class. Use the add property \
             feature (e.g. \"POST /v1/schema/{className}/properties\") to add additional \
             properties",
        );
    }
    for (key, what) in [
        ("vectorizer", "vectorizer"),
        ("vectorIndexType", "vector index type"),
    ] {
        if new[key] != old[key] {
            return Reply::error(
                422,
                format!(
                    "{what} is immutable: attempted change from {} to {}",
                    old[key], new[key]
                ),
            );
        }
    }
    for key in ["distance", "efConstruction", "maxConnections"] {
        let (a, b) = (
            &old["vectorIndexConfig"][key],
            &new["vectorIndexConfig"][key],
        );
        if a != b {
            return Reply::error(
                422,
                format!(
                    "vector index config: {key} is immutable: attempted change from {a} to {b}"
                ),
            );
        }
    }
    if new["shardingConfig"]["desiredCount"] != old["shardingConfig"]["desiredCount"] {
        return Reply::error(
            422,
            "re-sharding not supported yet: shard count is immutable",
        );
    }
    data.definition = new.clone();
    Reply::json(200, new)
}

fn graphql_post(shared: &Shared, store: &Store, body: Value) -> Reply {
    let query = body
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if query.is_empty() {
        return Reply::error(422, "query cannot be empty");
    }
    if body.get("operationName").is_some_and(|o| !o.is_null()) {
        return Reply::own(422, "weaviate-test-server does not implement operationName");
    }
    let variables = match body.get("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(v)) => v.clone(),
        Some(_) => return Reply::error(422, "variables must be a JSON object"),
    };
    Reply::json(
        200,
        query::execute(&shared.config, store, query, &variables),
    )
}

fn parse_include(include: Option<&str>) -> Result<bool, Reply> {
    let mut vector = false;
    for part in include.into_iter().flat_map(|s| s.split(',')) {
        match part {
            "vector" => vector = true,
            "classification" | "" => {}
            other => {
                return Err(Reply::error(
                    400,
                    format!("unrecognized property '{other}' in ?include list"),
                ));
            }
        }
    }
    Ok(vector)
}

fn create_class(shared: &Shared, store: &mut Store, body: Value) -> Reply {
    let class = match normalize_class(body, &shared.config.default_vectorizer) {
        Ok(c) => c,
        Err(message) => return Reply::error(422, message),
    };
    let name = class["class"].as_str().unwrap_or_default().to_owned();
    if let Some(existing) = store.find_class_insensitive(&name) {
        return Reply::error(422, format!("class name {existing} already exists"));
    }
    if store.aliases.contains_key(&name) {
        return Reply::error(422, format!("class name {name} already exists"));
    }
    store.classes.insert(name, ClassData::new(class.clone()));
    Reply::json(200, class)
}

/// The object vector in a write, `None` when absent, null or empty.
fn vector_of(object: &Value) -> Result<Option<Vec<f32>>, String> {
    match object.get("vector") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if items.is_empty() => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::Null => Some(0.0),
                v => v.as_f64().map(|f| f as f32),
            })
            .collect::<Option<Vec<f32>>>()
            .map(Some)
            .ok_or_else(|| "vector must be a list of numbers".to_owned()),
        Some(_) => Err("vector must be a list of numbers".into()),
    }
}

fn check_dims(dims: Option<usize>, vector: &Option<Vec<f32>>) -> Result<(), String> {
    match (dims, vector) {
        (Some(d), Some(v)) if v.len() != d => Err(format!(
            "new node has a vector with length {}. Existing nodes have vectors with length {d}",
            v.len()
        )),
        _ => Ok(()),
    }
}

fn batch_create(shared: &Shared, store: &mut Store, body: Value) -> Reply {
    let objects = match body {
        Value::Object(mut map) => match map.remove("objects") {
            Some(Value::Array(objects)) => objects,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    if objects.is_empty() {
        return Reply::error(
            422,
            "invalid param 'objects': cannot be empty, need at least one object for batching",
        );
    }
    let now = now_ms();
    let batch_failure = shared.faults.batch_failure();
    let read_only = shared.faults.read_only_state();
    // Classes (shards) whose first object the read-only bug has already reported.
    let mut reported: Vec<String> = Vec::new();
    let mut results = Vec::with_capacity(objects.len());
    for mut object in objects {
        let outcome = batch_put_one(shared, store, &mut object, now).and_then(|pending| {
            if let Some(message) = &batch_failure {
                return Err(message.clone());
            }
            if let Some(read_only) = &read_only {
                // With the bug, only the shard's first object is reported; none is written.
                if read_only.reporting_bug && reported.contains(&pending.class) {
                    return Ok(());
                }
                reported.push(pending.class);
                return Err(read_only.message());
            }
            pending.write(store);
            Ok(())
        });
        if let Some(map) = object.as_object_mut() {
            map.insert("creationTimeUnix".into(), json!(now));
            map.insert("lastUpdateTimeUnix".into(), json!(now));
            map.insert(
                "result".into(),
                match outcome {
                    Ok(()) => json!({"status": "SUCCESS"}),
                    Err(message) => json!({
                        "errors": {"error": [{"message": message}]},
                        "status": "FAILED"
                    }),
                },
            );
        }
        results.push(object);
    }
    Reply::json(200, Value::Array(results))
}

/// A validated batch object, ready to be stored.
struct PendingWrite {
    class: String,
    id: Uuid,
    object: StoredObject,
}

impl PendingWrite {
    fn write(self, store: &mut Store) {
        if let Some(data) = store.classes.get_mut(&self.class) {
            if let Some(v) = &self.object.vector {
                data.dims = Some(v.len());
            }
            // The batch is Weaviate's upsert: an existing object is replaced whole.
            data.objects.insert(self.id, self.object);
        }
    }
}

fn batch_put_one(
    shared: &Shared,
    store: &mut Store,
    object: &mut Value,
    now: i64,
) -> Result<PendingWrite, String> {
    let named = object
        .get("class")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if named.is_empty() {
        return Err("object has an empty class".into());
    }
    let class = store.resolve(&named).unwrap_or_else(|| upper_first(&named));
    object["class"] = json!(class);
    let id = match object.get("id").and_then(Value::as_str) {
        None => {
            let id = Uuid::new_v4();
            object["id"] = json!(id);
            id
        }
        Some(s) => Uuid::parse_str(s).map_err(|e| e.to_string())?,
    };
    if !store.classes.contains_key(&class) {
        if !shared.config.auto_schema {
            return Err(format!("class '{class}' not present in schema"));
        }
        let definition =
            normalize_class(json!({"class": class}), &shared.config.default_vectorizer)?;
        store
            .classes
            .insert(class.clone(), ClassData::new(definition));
    }
    if let Some(message) = shared.faults.object_failure(&id) {
        return Err(message);
    }
    let Some(data) = store.classes.get_mut(&class) else {
        return Err(format!("class '{class}' not present in schema"));
    };
    let properties = validate_properties(
        &mut data.definition,
        object.get("properties"),
        shared.config.auto_schema,
    )?;
    let vector = vector_of(object)?;
    check_dims(data.dims, &vector)?;
    Ok(PendingWrite {
        class,
        id,
        object: StoredObject {
            properties,
            vector,
            created: now,
            updated: now,
        },
    })
}

fn batch_delete(shared: &Shared, store: &mut Store, body: Value) -> Reply {
    let Some(matcher) = body.get("match").filter(|m| !m.is_null()) else {
        return Reply::error(422, "validate: empty match clause");
    };
    let named = matcher
        .get("class")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if named.is_empty() {
        return Reply::error(422, "validate: empty match.class clause");
    }
    let class = store.resolve(named).unwrap_or_else(|| upper_first(named));
    let Some(where_) = matcher.get("where").filter(|w| !w.is_null()) else {
        return Reply::error(422, "validate: empty match.where clause");
    };
    let output = body
        .get("output")
        .and_then(Value::as_str)
        .unwrap_or("minimal")
        .to_owned();
    if output != "minimal" && output != "verbose" {
        return Reply::error(
            422,
            format!(
                "validate: invalid output: \"{output}\", possible values are: \"minimal\", \"verbose\""
            ),
        );
    }
    let dry_run = body.get("dryRun").and_then(Value::as_bool).unwrap_or(false);
    let Some(data) = store.classes.get_mut(&class) else {
        return Reply::error(422, format!("validate: failed to get class: {class}"));
    };
    let matched: Vec<Uuid> = {
        let filter = match Filter::parse(where_, &data.definition) {
            Ok(f) => f,
            Err(message) => return Reply::error(422, format!("validate: {message}")),
        };
        // Deleting many objects by id (`id` ContainsAny) looks them up instead of scanning.
        match filter.id_candidates() {
            Some(pinned) => pinned
                .ids
                .into_iter()
                .filter(|id| {
                    data.objects
                        .get(id)
                        .is_some_and(|o| pinned.exact || filter.matches(id, &o.properties))
                })
                .collect(),
            None => data
                .objects
                .iter()
                .filter(|(id, o)| filter.matches(id, &o.properties))
                .map(|(id, _)| *id)
                .collect(),
        }
    };
    let limit = shared.config.query_maximum_results;
    let chosen = &matched[..matched.len().min(limit)];
    let read_only = shared.faults.read_only_state();
    let (mut successful, mut failed) = (0u64, 0u64);
    let mut objects = Vec::new();
    for id in chosen {
        let status = if dry_run {
            json!({"id": id, "status": "DRYRUN"})
        } else if let Some(read_only) = &read_only {
            failed += 1;
            json!({"id": id, "status": "FAILED", "errors": {"error": [{"message": read_only.message()}]}})
        } else {
            data.objects.remove(id);
            successful += 1;
            json!({"id": id, "status": "SUCCESS"})
        };
        if output == "verbose" {
            objects.push(status);
        }
    }
    Reply::json(
        200,
        json!({
            "match": matcher,
            "output": output,
            "deletionTimeUnixMilli": now_ms(),
            "dryRun": dry_run,
            "results": {
                "matches": matched.len(),
                "limit": limit,
                "successful": successful,
                "failed": failed,
                "objects": if output == "verbose" { json!(objects) } else { Value::Null },
            }
        }),
    )
}

fn list_objects<'q>(shared: &Shared, store: &Store, q: &dyn Fn(&str) -> Option<&'q str>) -> Reply {
    let vector = match parse_include(q("include")) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let limit = q("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(shared.config.query_defaults_limit);
    let offset = q("offset")
        .and_then(|o| o.parse::<usize>().ok())
        .unwrap_or(0);
    let after = q("after").filter(|a| !a.is_empty());
    if offset + limit > shared.config.query_maximum_results {
        return Reply::error(
            422,
            format!(
                "msg:offset or limit code:400 err:query maximum results exceeded: offset+limit ({}) > {}",
                offset + limit,
                shared.config.query_maximum_results
            ),
        );
    }
    let class = q("class").filter(|c| !c.is_empty()).map(upper_first);
    let mut objects = Vec::new();
    match class {
        Some(class) => {
            let Some(data) = store.classes.get(&class) else {
                return Reply::empty(404);
            };
            let start = match after {
                Some(a) => match Uuid::parse_str(a) {
                    Ok(a) => std::ops::Bound::Excluded(a),
                    Err(e) => {
                        return Reply::error(
                            422,
                            format!("cursor api: invalid 'after' parameter: {e}"),
                        );
                    }
                },
                None => std::ops::Bound::Unbounded,
            };
            if after.is_some() && offset > 0 {
                return Reply::error(
                    422,
                    "cursor api: invalid 'after' parameter: offset cannot be set with after and limit parameters",
                );
            }
            for (id, o) in data
                .objects
                .range((start, std::ops::Bound::Unbounded))
                .skip(offset)
                .take(limit)
            {
                objects.push(object_json(&class, id, o, vector));
            }
        }
        None if after.is_some() => {
            return Reply::error(
                422,
                "cursor api: invalid 'after' parameter: class parameter cannot be empty",
            );
        }
        None => {
            for (class, data) in &store.classes {
                for (id, o) in &data.objects {
                    objects.push(object_json(class, id, o, vector));
                }
            }
            objects = objects.into_iter().skip(offset).take(limit).collect();
        }
    }
    let total = objects.len();
    // Moved into the answer: `json!` would copy every object (and vector) through serde.
    let mut answer = Map::new();
    answer.insert("objects".into(), Value::Array(objects));
    answer.insert("totalResults".into(), json!(total));
    Reply::json(200, Value::Object(answer))
}

/// `POST /v1/objects`: create one object; an existing id is refused (it is no upsert).
fn create_object(shared: &Shared, store: &mut Store, mut body: Value) -> Reply {
    if let Some(existing) = body
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
    {
        let class = body
            .get("class")
            .and_then(Value::as_str)
            .and_then(|c| store.resolve(c));
        if class.is_some_and(|c| store.classes[&c].objects.contains_key(&existing)) {
            return Reply::error(422, format!("id '{existing}' already exists"));
        }
    }
    let now = now_ms();
    let pending = match batch_put_one(shared, store, &mut body, now) {
        Ok(p) => p,
        Err(message) => return Reply::error(422, format!("invalid object: {message}")),
    };
    if let Some(read_only) = shared.faults.read_only_state() {
        return read_only_reply("put object", Some(&read_only));
    }
    let echoed = object_json(&pending.class, &pending.id, &pending.object, true);
    pending.write(store);
    Reply::json(200, echoed)
}

fn put_object(
    shared: &Shared,
    store: &mut Store,
    path_class: &str,
    id: Option<Uuid>,
    body: Value,
) -> Reply {
    let Some(id) = id else {
        return Reply::empty(404);
    };
    let body_id = body
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok());
    if body_id != Some(id) {
        return Reply::error(422, "invalid update: field 'id' is immutable");
    }
    // Weaviate replaces the object of the class named in the body.
    let class = match body.get("class").and_then(Value::as_str) {
        Some(named) => store.resolve(named).unwrap_or_else(|| upper_first(named)),
        None => path_class.to_owned(),
    };
    let Some(data) = store.classes.get_mut(&class) else {
        return Reply::empty(404);
    };
    let Some(created) = data.objects.get(&id).map(|o| o.created) else {
        return Reply::empty(404);
    };
    let properties = match validate_properties(
        &mut data.definition,
        body.get("properties"),
        shared.config.auto_schema,
    ) {
        Ok(p) => p,
        Err(message) => return Reply::error(422, format!("invalid object: {message}")),
    };
    let vector = match vector_of(&body) {
        Ok(v) => v,
        Err(message) => return Reply::error(422, format!("invalid object: {message}")),
    };
    if let Err(message) = check_dims(data.dims, &vector) {
        return Reply::error(500, format!("update object: put object: {message}"));
    }
    if let Some(read_only) = shared.faults.read_only_state() {
        return read_only_reply("update object: put object", Some(&read_only));
    }
    if let Some(v) = &vector {
        data.dims = Some(v.len());
    }
    let object = StoredObject {
        properties,
        vector,
        created,
        updated: now_ms(),
    };
    let echoed = object_json(&class, &id, &object, true);
    data.objects.insert(id, object);
    Reply::json(200, echoed)
}

fn patch_object(
    shared: &Shared,
    store: &mut Store,
    class: &str,
    id: Option<Uuid>,
    body: Value,
) -> Reply {
    let Some(id) = id else {
        return Reply::empty(404);
    };
    let Some(data) = store.classes.get_mut(class) else {
        return Reply::empty(404);
    };
    if !data.objects.contains_key(&id) {
        return Reply::empty(404);
    }
    let bad = |m: String| Reply::error(422, format!("msg:bad request code:400 err:{m}"));
    let updates = match validate_properties(
        &mut data.definition,
        body.get("properties"),
        shared.config.auto_schema,
    ) {
        Ok(p) => p,
        Err(message) => return bad(message),
    };
    let vector = match vector_of(&body) {
        Ok(v) => v,
        Err(message) => return bad(message),
    };
    if let Err(message) = check_dims(data.dims, &vector) {
        return bad(message);
    }
    if let Some(read_only) = shared.faults.read_only_state() {
        return read_only_reply(
            "msg:merge and vectorize code:500 err:repo.merge",
            Some(&read_only),
        );
    }
    let removed: Vec<String> = body
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| {
            p.iter()
                .filter(|(_, v)| v.is_null())
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    if let Some(v) = &vector {
        data.dims = Some(v.len());
    }
    let Some(object) = data.objects.get_mut(&id) else {
        return Reply::empty(404);
    };
    for key in removed {
        object.properties.remove(&key);
    }
    object.properties.extend(updates);
    // No vector in the patch: the stored one stays (vectorizer "none").
    if vector.is_some() {
        object.vector = vector;
    }
    object.updated = now_ms();
    Reply::empty(204)
}
