//! The REST endpoints: request pipeline (faults, authentication, spec checks, consistency level),
//! the handlers, and the in-memory store they share.

use std::collections::BTreeMap;
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
use crate::faults::Action;
use crate::filter::Filter;
use crate::graphql;
use crate::spec::spec;
use crate::{ConnectionKill, RecordedRequest, Shared, lock};

/// Largest request body accepted (Weaviate has no fixed limit; this bounds test memory).
const MAX_BODY: usize = 512 * 1024 * 1024;

/// An answer before it is serialized: status and optional JSON body.
pub(crate) struct Reply {
    status: u16,
    body: Option<Value>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            body: Some(body),
        }
    }

    fn empty(status: u16) -> Self {
        Reply { status, body: None }
    }

    /// Weaviate's handler error shape.
    fn error(status: u16, message: impl Into<String>) -> Self {
        Reply::json(status, json!({ "error": [{ "message": message.into() }] }))
    }
}

#[derive(Default)]
pub(crate) struct Store {
    classes: BTreeMap<String, ClassData>,
}

struct ClassData {
    definition: Value,
    objects: BTreeMap<Uuid, StoredObject>,
    /// Set by the first vector stored, as the HNSW index does.
    dims: Option<usize>,
}

struct StoredObject {
    properties: Map<String, Value>,
    vector: Option<Vec<f32>>,
    created: i64,
    updated: i64,
}

impl Store {
    pub(crate) fn class(&self, name: &str) -> Option<&Value> {
        self.classes.get(name).map(|c| &c.definition)
    }

    pub(crate) fn count(&self, name: &str) -> usize {
        self.classes.get(name).map_or(0, |c| c.objects.len())
    }

    pub(crate) fn object_json(&self, class: &str, id: &Uuid, vector: bool) -> Option<Value> {
        let o = self.classes.get(class)?.objects.get(id)?;
        Some(object_json(class, id, o, vector))
    }

    fn find_class_insensitive(&self, name: &str) -> Option<&String> {
        self.classes.keys().find(|k| k.eq_ignore_ascii_case(name))
    }
}

fn object_json(class: &str, id: &Uuid, o: &StoredObject, include_vector: bool) -> Value {
    let mut v = json!({
        "class": class,
        "creationTimeUnix": o.created,
        "id": id,
        "lastUpdateTimeUnix": o.updated,
        "properties": o.properties,
    });
    if include_vector && let Some(vector) = &o.vector {
        v["vector"] = json!(vector);
    }
    v
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The whole request pipeline.
pub(crate) async fn handle(shared: Arc<Shared>, request: Request) -> Response {
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
    lock(&shared.requests).push(RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        authorization: authorization.clone(),
        body: serde_json::from_slice(&body).ok(),
    });

    let mut rewrites = Vec::new();
    for action in shared.faults.take(&method, &path) {
        match action {
            Action::Delay(d) => tokio::time::sleep(d).await,
            Action::Status(status) => {
                return respond(
                    &method,
                    Reply::error(status, "weaviate-test-server: injected fault"),
                );
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

    let mut problem = operation
        .check_response(reply.status, reply.body.as_ref())
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

fn respond(method: &Method, reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match reply.body {
        Some(body) if *method != Method::HEAD && status != StatusCode::NO_CONTENT => {
            let mut r = Response::new(Body::from(body.to_string()));
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

fn dispatch(
    shared: &Shared,
    operation: &str,
    params: &std::collections::HashMap<String, String>,
    query: &[(String, String)],
    body: Option<Value>,
) -> Reply {
    let q = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let class_param = || upper_first(params.get("className").map_or("", String::as_str));
    let id_param = || params.get("id").and_then(|s| Uuid::parse_str(s).ok());
    let mut store = lock(&shared.store);
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
        "schema.objects.get" => match store.class(&class_param()) {
            Some(c) => Reply::json(200, c.clone()),
            None => Reply::empty(404),
        },
        "schema.objects.create" => create_class(shared, &mut store, body.unwrap_or(Value::Null)),
        "schema.objects.delete" => {
            store.classes.remove(&class_param());
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
            match id_param().and_then(|id| store.object_json(&class_param(), &id, vector)) {
                Some(o) => Reply::json(200, o),
                None => Reply::empty(404),
            }
        }
        "objects.class.head" => {
            let exists = id_param().is_some_and(|id| {
                store
                    .classes
                    .get(&class_param())
                    .is_some_and(|c| c.objects.contains_key(&id))
            });
            Reply::empty(if exists { 204 } else { 404 })
        }
        "objects.class.delete" => {
            let class = class_param();
            match (store.classes.get_mut(&class), id_param()) {
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
        "objects.class.put" => put_object(
            shared,
            &mut store,
            &class_param(),
            id_param(),
            body.unwrap_or(Value::Null),
        ),
        "objects.class.patch" => match body {
            None => Reply::empty(400),
            Some(body) => patch_object(shared, &mut store, &class_param(), id_param(), body),
        },
        "graphql.post" => graphql_post(&store, body.unwrap_or(Value::Null)),
        other => Reply::error(
            501,
            format!("weaviate-test-server does not implement {other}"),
        ),
    }
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
    store.classes.insert(
        name,
        ClassData {
            definition: class.clone(),
            objects: BTreeMap::new(),
            dims: None,
        },
    );
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
    let objects = body
        .get("objects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if objects.is_empty() {
        return Reply::error(
            422,
            "invalid param 'objects': cannot be empty, need at least one object for batching",
        );
    }
    let now = now_ms();
    let mut results = Vec::with_capacity(objects.len());
    for mut object in objects {
        let outcome = batch_put_one(shared, store, &mut object, now);
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

fn batch_put_one(
    shared: &Shared,
    store: &mut Store,
    object: &mut Value,
    now: i64,
) -> Result<(), String> {
    let class = upper_first(
        object
            .get("class")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    if class.is_empty() {
        return Err("object has an empty class".into());
    }
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
        store.classes.insert(
            class.clone(),
            ClassData {
                definition,
                objects: BTreeMap::new(),
                dims: None,
            },
        );
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
    if let Some(v) = &vector {
        data.dims = Some(v.len());
    }
    // The batch is Weaviate's upsert: an existing object is replaced whole.
    data.objects.insert(
        id,
        StoredObject {
            properties,
            vector,
            created: now,
            updated: now,
        },
    );
    Ok(())
}

fn batch_delete(shared: &Shared, store: &mut Store, body: Value) -> Reply {
    let Some(matcher) = body.get("match").filter(|m| !m.is_null()) else {
        return Reply::error(422, "validate: empty match clause");
    };
    let class = upper_first(
        matcher
            .get("class")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    if class.is_empty() {
        return Reply::error(422, "validate: empty match.class clause");
    }
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
        data.objects
            .iter()
            .filter(|(id, o)| filter.matches(id, &o.properties))
            .map(|(id, _)| *id)
            .collect()
    };
    let limit = shared.config.query_maximum_results;
    let chosen = &matched[..matched.len().min(limit)];
    let mut successful = 0u64;
    let mut objects = Vec::new();
    for id in chosen {
        if !dry_run {
            data.objects.remove(id);
            successful += 1;
        }
        if output == "verbose" {
            objects.push(json!({"id": id, "status": if dry_run { "DRYRUN" } else { "SUCCESS" }}));
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
                "failed": 0,
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
    Reply::json(200, json!({"objects": objects, "totalResults": total}))
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
    let class = upper_first(
        body.get("class")
            .and_then(Value::as_str)
            .unwrap_or(path_class),
    );
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

fn graphql_post(store: &Store, body: Value) -> Reply {
    let query = body
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if query.is_empty() {
        return Reply::error(422, "query cannot be empty");
    }
    let variables = match body.get("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(v)) => v.clone(),
        Some(_) => return Reply::error(422, "variables must be a JSON object"),
    };
    let fields = match graphql::parse(query, &variables) {
        Ok(f) => f,
        Err(errors) => return Reply::json(200, errors),
    };
    let mut data = Map::new();
    for root in &fields {
        if root.name != "Get" {
            return Reply::json(
                200,
                graphql::error(
                    &format!(
                        "Cannot query field \"{}\" on type \"WeaviateObj\".",
                        root.name
                    ),
                    root.line,
                    root.column,
                    &[],
                ),
            );
        }
        let mut get = Map::new();
        for selection in &root.children {
            match graphql_get_class(store, selection) {
                Ok(items) => {
                    get.insert(selection.key().to_owned(), Value::Array(items));
                }
                Err(errors) => return Reply::json(200, errors),
            }
        }
        data.insert(root.key().to_owned(), Value::Object(get));
    }
    Reply::json(200, json!({ "data": data }))
}

fn graphql_get_class(store: &Store, selection: &graphql::Field) -> Result<Vec<Value>, Value> {
    let class = &selection.name;
    let Some(data) = store.classes.get(class) else {
        return Err(graphql::error(
            &format!("Cannot query field \"{class}\" on type \"GetObjectsObj\"."),
            selection.line,
            selection.column,
            &[],
        ));
    };
    for field in &selection.children {
        let known = field.name == "_additional"
            || data.definition["properties"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["name"] == field.name.as_str()));
        if !known {
            return Err(graphql::error(
                &format!("Cannot query field \"{}\" on type \"{class}\".", field.name),
                field.line,
                field.column,
                &[],
            ));
        }
    }
    let limit = selection
        .arg("limit")
        .and_then(Value::as_u64)
        .map_or(100, |l| l as usize);
    let distance_metric = data.definition["vectorIndexConfig"]["distance"]
        .as_str()
        .unwrap_or("cosine")
        .to_owned();
    let mut hits: Vec<(Option<f32>, &Uuid, &StoredObject)> = match selection.arg("nearVector") {
        Some(near) => {
            let query: Vec<f32> = near["vector"]
                .as_array()
                .map(|v| {
                    v.iter()
                        .filter_map(Value::as_f64)
                        .map(|f| f as f32)
                        .collect()
                })
                .unwrap_or_default();
            if let Some(d) = data.dims
                && d != query.len()
            {
                return Err(graphql::error(
                    &format!(
                        "explorer: get class: vector search: object vector search at index {}: \
                         vector search: knn search: distance between entrypoint and query node: \
                         vector lengths don't match: {} vs {d}",
                        class.to_ascii_lowercase(),
                        query.len()
                    ),
                    selection.line,
                    selection.column,
                    &["Get", class],
                ));
            }
            let max_distance = near.get("distance").and_then(Value::as_f64);
            let mut hits: Vec<_> = data
                .objects
                .iter()
                .filter_map(|(id, o)| {
                    let v = o.vector.as_ref()?;
                    Some((Some(distance(&distance_metric, &query, v)), id, o))
                })
                .filter(|(d, _, _)| max_distance.is_none_or(|m| f64::from(d.unwrap_or(0.0)) <= m))
                .collect();
            hits.sort_by(|a, b| {
                a.0.partial_cmp(&b.0)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(a.1.cmp(b.1))
            });
            hits
        }
        None => data.objects.iter().map(|(id, o)| (None, id, o)).collect(),
    };
    hits.truncate(limit);
    Ok(hits
        .into_iter()
        .map(|(d, id, o)| {
            let mut item = Map::new();
            for field in &selection.children {
                if field.name == "_additional" {
                    let mut additional = Map::new();
                    for a in &field.children {
                        let value = match a.name.as_str() {
                            "id" => json!(id),
                            "distance" => d.map_or(Value::Null, |d| json!(d)),
                            "certainty" => d.map_or(Value::Null, |d| json!(1.0 - d / 2.0)),
                            "vector" => json!(o.vector),
                            "creationTimeUnix" => json!(o.created.to_string()),
                            "lastUpdateTimeUnix" => json!(o.updated.to_string()),
                            _ => Value::Null,
                        };
                        additional.insert(a.key().to_owned(), value);
                    }
                    item.insert(field.key().to_owned(), Value::Object(additional));
                } else {
                    item.insert(
                        field.key().to_owned(),
                        o.properties
                            .get(&field.name)
                            .cloned()
                            .unwrap_or(Value::Null),
                    );
                }
            }
            Value::Object(item)
        })
        .collect())
}

fn distance(metric: &str, a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    match metric {
        "dot" => -dot,
        "l2-squared" => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
        "manhattan" => a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum(),
        _ => {
            let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
            let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
            if na == 0.0 || nb == 0.0 {
                1.0
            } else {
                1.0 - dot / (na * nb)
            }
        }
    }
}
