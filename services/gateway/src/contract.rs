//! The OpenAPI document as the exact contract: what the handlers' annotations generate, plus
//! every rule the services check that a schema can say (lengths, ranges, patterns, "one of these
//! fields"), and every status an operation can answer with. The rules come from the constants
//! the services check against, so the document cannot drift from them; a schema-driven fuzzer
//! (schemathesis, run by `tests/tests/contract.rs`) holds the server to it.

use chat_domain::assets::{AssetLimits, MAX_FILENAME_CHARS, MAX_URL_CHARS};
use chat_domain::contracts::groups::{MAX_GROUP_NAME_CHARS, MAX_MEMBERS_PER_REQUEST};
use chat_domain::contracts::messages::MAX_HISTORY_PAGE;
use chat_domain::contracts::patterns;
use chat_domain::values::{
    MAX_NAME_CHARS, MAX_PAGE_NUMBER, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS,
};
use serde_json::{json, Value};

/// Longest email address (RFC 5321's path limit).
const MAX_EMAIL_CHARS: usize = 254;
/// Longest text search, in characters (users and messages alike).
const MAX_SEARCH_CHARS: usize = 100;

/// The document served at `/openapi.json`.
pub fn document(generated: utoipa::openapi::OpenApi, limits: &AssetLimits) -> Value {
    let mut doc = serde_json::to_value(generated).expect("the OpenAPI document serialises");
    constrain_bodies(&mut doc, limits);
    constrain_parameters(&mut doc);
    add_common_responses(&mut doc);
    add_links(&mut doc);
    doc
}

/// Which later calls a response's values feed (OpenAPI links): what a client does next, and what
/// a stateful fuzzer follows instead of guessing (a group's id is not a member's).
fn add_links(doc: &mut Value) {
    // The member the request added (the first in the response is the creator: removing them
    // from a group of one deletes it).
    let member = |operation: &str| json!({"operationId": operation, "parameters": {"id": "$response.body#/id", "userId": "$request.body#/memberIds/0"}});
    let group = |operation: &str| json!({"operationId": operation, "parameters": {"id": "$response.body#/id"}});
    let created_group = json!({
        "GetGroup": group("get_group"),
        "UpdateGroup": group("update_group"),
        "AddMembers": group("add_members"),
        "History": group("history"),
        "Receipts": group("receipts"),
        "ChangeRole": member("change_role"),
        "RemoveMember": member("remove_member"),
    });
    for status in ["200", "201"] {
        doc["paths"]["/groups"]["post"]["responses"][status]["links"] = created_group.clone();
    }
    doc["paths"]["/assets/complete-upload"]["post"]["responses"]["201"]["links"] =
        json!({"Download": group("download")});
}

fn name() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS, "pattern": patterns::NAME})
}

fn picture_url(nullable: bool) -> Value {
    let kind = if nullable {
        json!(["string", "null"])
    } else {
        json!("string")
    };
    json!({"type": kind, "maxLength": MAX_URL_CHARS, "pattern": patterns::PICTURE_URL})
}

fn filename() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": MAX_FILENAME_CHARS, "pattern": patterns::FILENAME})
}

/// At least one of `fields` is present.
fn any_of_present(fields: &[&str]) -> Value {
    Value::Array(fields.iter().map(|f| json!({"required": [f]})).collect())
}

/// Merges `rules` into the property `property` of the component schema `schema`.
fn property(doc: &mut Value, schema: &str, property: &str, rules: Value) {
    let target = doc
        .pointer_mut(&format!(
            "/components/schemas/{schema}/properties/{property}"
        ))
        .unwrap_or_else(|| panic!("no property {property} in the schema {schema}"));
    merge(target, rules);
}

fn schema_rule(doc: &mut Value, schema: &str, key: &str, rule: Value) {
    let target = doc
        .pointer_mut(&format!("/components/schemas/{schema}"))
        .unwrap_or_else(|| panic!("no schema {schema}"));
    target[key] = rule;
}

fn merge(target: &mut Value, rules: Value) {
    if let (Value::Object(target), Value::Object(rules)) = (target, rules) {
        // A rule's type replaces the generated one (and its format, which belongs to it).
        if rules.contains_key("type") {
            target.remove("format");
        }
        target.extend(rules);
    }
}

fn constrain_bodies(doc: &mut Value, limits: &AssetLimits) {
    for schema in ["RegisterBody", "UpdateMeBody"] {
        property(doc, schema, "firstName", name());
        property(doc, schema, "lastName", name());
    }
    property(
        doc,
        "RegisterBody",
        "email",
        json!({"format": "email", "maxLength": MAX_EMAIL_CHARS}),
    );
    property(
        doc,
        "RegisterBody",
        "password",
        json!({"minLength": PASSWORD_MIN_CHARS, "maxLength": PASSWORD_MAX_CHARS, "pattern": patterns::NOT_BLANK}),
    );
    property(doc, "UpdateMeBody", "profileUrl", picture_url(true));
    schema_rule(
        doc,
        "UpdateMeBody",
        "anyOf",
        any_of_present(&["firstName", "lastName", "profileUrl"]),
    );

    // A group needs a name or another member; without a name and with one other member it is
    // a direct conversation.
    property(
        doc,
        "CreateGroupBody",
        "name",
        json!({"type": ["string", "null"], "maxLength": MAX_GROUP_NAME_CHARS, "pattern": patterns::NO_CONTROL}),
    );
    property(
        doc,
        "CreateGroupBody",
        "memberIds",
        json!({"maxItems": MAX_MEMBERS_PER_REQUEST}),
    );
    schema_rule(
        doc,
        "CreateGroupBody",
        "anyOf",
        json!([
            {"required": ["name"], "properties": {"name": {"type": "string", "pattern": patterns::NOT_BLANK}}},
            {"properties": {"memberIds": {"minItems": 1}}},
        ]),
    );
    property(
        doc,
        "UpdateGroupBody",
        "name",
        json!({"type": "string", "minLength": 1, "maxLength": MAX_GROUP_NAME_CHARS, "pattern": patterns::NAME}),
    );
    property(doc, "UpdateGroupBody", "imageUrl", picture_url(true));
    schema_rule(
        doc,
        "UpdateGroupBody",
        "anyOf",
        any_of_present(&["name", "imageUrl"]),
    );
    property(
        doc,
        "AddMembersBody",
        "memberIds",
        json!({"minItems": 1, "maxItems": MAX_MEMBERS_PER_REQUEST}),
    );

    let chunks = limits.max_chunks;
    for schema in ["CompleteUploadBody", "UploadChunkForm"] {
        property(doc, schema, "filename", filename());
        property(
            doc,
            schema,
            "totalChunks",
            json!({"minimum": 1, "maximum": chunks}),
        );
    }
    property(
        doc,
        "UploadChunkForm",
        "chunkIndex",
        json!({"minimum": 0, "maximum": chunks.saturating_sub(1)}),
    );
}

/// Merges `rules` into the schema of the query parameter `name` of `method path`.
fn parameter(doc: &mut Value, method: &str, path: &str, name: &str, rules: Value) {
    let parameters = doc["paths"][path][method]["parameters"]
        .as_array_mut()
        .unwrap_or_else(|| panic!("no parameters on {method} {path}"));
    let schema = parameters
        .iter_mut()
        .find(|p| p["name"] == name)
        .map(|p| &mut p["schema"])
        .unwrap_or_else(|| panic!("no parameter {name} on {method} {path}"));
    merge(schema, rules);
}

fn constrain_parameters(doc: &mut Value) {
    parameter(
        doc,
        "get",
        "/users",
        "page",
        json!({"minimum": 1, "maximum": MAX_PAGE_NUMBER}),
    );
    // Larger pages are served capped, not refused.
    parameter(
        doc,
        "get",
        "/users",
        "limit",
        json!({"type": "integer", "minimum": 1, "maximum": u32::MAX}),
    );
    parameter(
        doc,
        "get",
        "/users",
        "search",
        json!({"maxLength": MAX_SEARCH_CHARS}),
    );
    parameter(
        doc,
        "get",
        "/messages/search",
        "q",
        json!({"minLength": 1, "maxLength": MAX_SEARCH_CHARS, "pattern": patterns::NOT_BLANK}),
    );
    for path in ["/messages/search", "/groups/{id}/messages"] {
        parameter(
            doc,
            "get",
            path,
            "limit",
            json!({"minimum": 1, "maximum": MAX_HISTORY_PAGE}),
        );
    }
    for method in ["get", "delete"] {
        parameter(doc, method, "/assets/upload", "filename", filename());
    }
}

/// What every operation may answer besides its own outcomes.
fn add_common_responses(doc: &mut Value) {
    let error = json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
    let response = |description: &str| json!({"description": description, "content": error});
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for operations in paths.values_mut() {
        let Some(operations) = operations.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            let has_body = operation.get("requestBody").is_some();
            let has_parameters = operation
                .get("parameters")
                .and_then(Value::as_array)
                .is_some_and(|p| !p.is_empty());
            let path_parameters = operation
                .get("parameters")
                .and_then(Value::as_array)
                .is_some_and(|p| p.iter().any(|p| p["in"] == "path"));
            let secured = operation.get("security").is_some();
            let json_body = operation
                .pointer("/requestBody/content/application~1json")
                .is_some();
            let responses = operation["responses"]
                .as_object_mut()
                .expect("every operation has responses");
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status)
                    .or_insert_with(|| response(description));
            };
            if has_body || has_parameters {
                add("400", "A malformed body or parameter, or a value outside the rules this document gives; `error.reason` says which");
            }
            if secured {
                add(
                    "401",
                    "Missing, malformed, invalid, expired or revoked access token",
                );
            }
            if path_parameters {
                add("404", "No such resource, or not one the caller may see");
            }
            if has_body {
                add("413", "The body is larger than the server accepts");
            }
            if json_body {
                add("415", "The body is not `application/json`");
            }
            add(
                "429",
                "Too many requests from this client address or user (`rate_limited`); see `Retry-After`",
            );
            add(
                "503",
                "`overloaded`: too many requests in flight, retry after `Retry-After`; `unavailable`: a service this request needs is down",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::OpenApi;

    #[test]
    fn every_rule_finds_its_schema_and_every_operation_documents_the_common_answers() {
        // Panics if a rule names a schema, property or parameter the document does not have.
        let doc = document(crate::ApiDoc::openapi(), &AssetLimits::default());
        for (path, operations) in doc["paths"].as_object().unwrap() {
            for (method, operation) in operations.as_object().unwrap() {
                for status in ["429", "503"] {
                    assert!(
                        operation["responses"].get(status).is_some(),
                        "{method} {path} lacks {status}"
                    );
                }
            }
        }
        assert_eq!(
            doc["components"]["schemas"]["UploadChunkForm"]["required"],
            json!(["chunk", "chunkIndex", "totalChunks"])
        );
    }
}
