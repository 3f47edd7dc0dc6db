//! The Socket.IO contract in machine-readable form: an AsyncAPI 3.0 document, served at
//! `GET /asyncapi.json` beside `/openapi.json`, with every client → server event and its
//! acknowledgement, every server → client event, and the handshake. Shared shapes (a message, a
//! group) are the same schemas the OpenAPI document uses, generated from the same types; the
//! realtime suite validates every event and acknowledgement the chat role sends against it.

use chat_domain::contracts::groups::GroupView;
use chat_domain::contracts::messages::{MessageView, MAX_CLIENT_ID_CHARS, MAX_MESSAGE_CHARS};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// A client → server event: its payload, and what the acknowledgement carries when `ok`.
struct Command {
    event: &'static str,
    summary: &'static str,
    payload: Value,
    ack: Value,
}

/// A server → client event.
struct Event {
    event: &'static str,
    summary: &'static str,
    payload: Value,
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

fn text() -> Value {
    json!({"type": "string"})
}

fn seq() -> Value {
    json!({"type": "integer", "minimum": 0})
}

fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

fn commands() -> Vec<Command> {
    let group_and_message = |extra: Value| {
        let mut properties = json!({"groupId": text(), "messageId": text()});
        if let (Value::Object(p), Value::Object(e)) = (&mut properties, extra) {
            p.extend(e);
        }
        properties
    };
    vec![
        Command {
            event: "chat.message.send",
            summary:
                "Send a message; retrying with the same clientMessageId returns the stored one",
            payload: json!({
                "type": "object",
                "required": ["groupId", "clientMessageId"],
                "properties": {
                    "groupId": text(),
                    "content": {"type": "string", "maxLength": MAX_MESSAGE_CHARS},
                    "attachment": object(&["url"], json!({"url": {"type": "string", "description": "From POST /assets/complete-upload"}})),
                    "clientMessageId": {"type": "string", "minLength": 1, "maxLength": MAX_CLIENT_ID_CHARS},
                },
                "anyOf": [{"required": ["content"]}, {"required": ["attachment"]}],
            }),
            ack: object(&["message"], json!({"message": schema("MessageView")})),
        },
        Command {
            event: "chat.message.seen",
            summary:
                "Seen up to seq, or up to the message (the seed's form); exactly one of the two",
            payload: json!({
                "type": "object",
                "required": ["groupId"],
                "properties": {"groupId": text(), "seq": seq(), "messageId": text()},
                "oneOf": [{"required": ["seq"]}, {"required": ["messageId"]}],
            }),
            ack: object(&["seq"], json!({"seq": seq()})),
        },
        Command {
            event: "chat.message.delivered",
            summary: "This device has received the group's messages up to seq",
            payload: object(
                &["groupId", "seq"],
                json!({"groupId": text(), "seq": seq()}),
            ),
            ack: object(&["seq"], json!({"seq": seq()})),
        },
        Command {
            event: "chat.message.delete",
            summary: "Delete a message (its sender or a group admin)",
            payload: object(&["groupId", "messageId"], group_and_message(json!({}))),
            ack: object(&["messageId"], json!({"messageId": text()})),
        },
        Command {
            event: "chat.message.edit",
            summary: "Replace a message's text (its sender, within MESSAGE_EDIT_WINDOW_SECONDS)",
            payload: object(
                &["groupId", "messageId", "content"],
                group_and_message(
                    json!({"content": {"type": "string", "maxLength": MAX_MESSAGE_CHARS}}),
                ),
            ),
            ack: object(&["message"], json!({"message": schema("MessageView")})),
        },
        Command {
            event: "chat.typing",
            summary:
                "Typing started (default) or stopped; never stored; starts within 2 s are throttled",
            payload: object(
                &["groupId"],
                json!({"groupId": text(), "typing": {"type": "boolean", "default": true}}),
            ),
            ack: object(
                &["typing", "throttled"],
                json!({"typing": {"type": "boolean"}, "throttled": {"type": "boolean"}}),
            ),
        },
        Command {
            event: "user.heartbeat",
            summary: "Keeps the user online; send at least every minute",
            payload: json!({}),
            ack: object(
                &["online", "ttlSeconds"],
                json!({"online": {"const": true}, "ttlSeconds": {"type": "integer"}}),
            ),
        },
        Command {
            event: "user.presence",
            summary: "Which co-members are online now, and when each was last seen",
            payload: json!({}),
            ack: presence(),
        },
    ]
}

fn presence() -> Value {
    object(
        &["users"],
        json!({"users": {"type": "array", "items": object(
            &["userId", "isOnline", "lastSeenAt"],
            json!({"userId": text(), "isOnline": {"type": "boolean"}, "lastSeenAt": {"type": ["string", "null"], "format": "date-time"}}),
        )}}),
    )
}

fn events() -> Vec<Event> {
    let by_user = |at: &str| {
        let mut properties = json!({"groupId": text(), "userId": text(), "seq": seq()});
        properties[at] = time();
        object(&["groupId", "userId", "seq", at], properties)
    };
    vec![
        Event {
            event: "chat.message.incoming",
            summary: "A message stored in one of the user's groups (live, or replayed after lastSeq)",
            payload: schema("MessageView"),
        },
        Event {
            event: "chat.message.edited",
            summary: "A message as edited: same id and seq, new content, editedAt",
            payload: schema("MessageView"),
        },
        Event {
            event: "chat.message.seen",
            summary: "A member has seen the group up to seq (to every member, their own devices included)",
            payload: by_user("seenAt"),
        },
        Event {
            event: "chat.message.delivered",
            summary: "A device of a member received the group up to seq (to every member but that user's devices)",
            payload: by_user("deliveredAt"),
        },
        Event {
            event: "chat.message.deleted",
            summary: "A message was deleted; it stays as a tombstone",
            payload: object(
                &["groupId", "messageId", "seq", "deletedBy"],
                json!({"groupId": text(), "messageId": text(), "seq": seq(), "deletedBy": text()}),
            ),
        },
        Event {
            event: "chat.typing",
            summary: "A member started or stopped typing (to the group's other members)",
            payload: object(
                &["groupId", "userId", "typing"],
                json!({"groupId": text(), "userId": text(), "typing": {"type": "boolean"}}),
            ),
        },
        Event {
            event: "chat.resync",
            summary: "Too much was missed (a long replay, or facts a replica may have missed): refetch history after fromSeq, and receipts",
            payload: object(&["groupId", "fromSeq"], json!({"groupId": text(), "fromSeq": seq()})),
        },
        Event {
            event: "group.created",
            summary: "A group the user is now in (its room is joined at once)",
            payload: schema("GroupView"),
        },
        Event {
            event: "group.members.added",
            summary: "Members were added to a group",
            payload: object(
                &["groupId", "userIds", "group"],
                json!({"groupId": text(), "userIds": {"type": "array", "items": text()}, "group": schema("GroupView")}),
            ),
        },
        Event {
            event: "group.member.removed",
            summary: "A member left or was removed (the removed member hears it too, then leaves the room)",
            payload: object(&["groupId", "userId"], json!({"groupId": text(), "userId": text()})),
        },
        Event {
            event: "group.member.role_changed",
            summary: "An admin made a member an admin, or an admin a member",
            payload: object(
                &["groupId", "userId", "role", "changedBy"],
                json!({"groupId": text(), "userId": text(), "role": schema("MemberRole"), "changedBy": text()}),
            ),
        },
        Event {
            event: "user.presence",
            summary: "On connect, and again after a replica's resync: the co-members and whether each is online",
            payload: presence(),
        },
        Event {
            event: "user.online",
            summary: "A co-member's first socket connected",
            payload: object(&["userId"], json!({"userId": text()})),
        },
        Event {
            event: "user.offline",
            summary: "A co-member's last socket closed",
            payload: object(&["userId", "lastSeenAt"], json!({"userId": text(), "lastSeenAt": time()})),
        },
        Event {
            event: "server.restarting",
            summary: "This replica is shutting down; the connection closes next and the client reconnects",
            payload: object(&["reconnect"], json!({"reconnect": {"const": true}})),
        },
    ]
}

/// The names of the server → client events, as the document lists them.
pub fn server_events() -> Vec<&'static str> {
    events().iter().map(|e| e.event).collect()
}

/// Component schemas generated from `T` and every type it refers to.
fn add_schemas<T: ToSchema>(schemas: &mut Map<String, Value>) {
    let mut found = vec![(T::name().into_owned(), T::schema())];
    T::schemas(&mut found);
    for (name, schema) in found {
        let value = serde_json::to_value(schema).expect("a schema serialises");
        schemas.insert(name, value);
    }
}

/// The AsyncAPI document.
pub fn document() -> Value {
    let mut schemas = Map::new();
    add_schemas::<MessageView>(&mut schemas);
    add_schemas::<GroupView>(&mut schemas);
    schemas.insert(
        "Error".into(),
        object(
            &["code", "reason", "message"],
            json!({
                "code": {"type": "string", "enum": chat_domain::ErrorCode::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>()},
                "reason": {"type": "string", "enum": chat_domain::error::reason_names()},
                "message": text(),
                "retryAfter": {"type": "integer", "minimum": 0, "description": "Seconds to wait before resending (rate_limited, overloaded)"},
            }),
        ),
    );

    let mut messages = Map::new();
    let mut channel_messages = Map::new();
    let mut operations = Map::new();
    let mut reference = |name: String, message: Value, messages: &mut Map<String, Value>| {
        channel_messages.insert(
            name.clone(),
            json!({"$ref": format!("#/components/messages/{name}")}),
        );
        messages.insert(name.clone(), message);
        json!({"$ref": format!("#/channels/socket/messages/{name}")})
    };
    for c in commands() {
        let ack_name = format!("{}.ack", c.event);
        let request_name = format!("{}.request", c.event);
        let mut ok = c.ack;
        ok["required"]
            .as_array_mut()
            .expect("an ack is an object with required members")
            .push(json!("ok"));
        ok["properties"]["ok"] = json!({"const": true});
        let ack = json!({
            "name": ack_name,
            "summary": format!("The acknowledgement of {}", c.event),
            "payload": {"oneOf": [
                ok,
                object(&["ok", "error"], json!({"ok": {"const": false}, "error": schema("Error")})),
            ]},
        });
        let request = json!({"name": c.event, "summary": c.summary, "payload": c.payload});
        let request = reference(request_name, request, &mut messages);
        let reply = reference(ack_name, ack, &mut messages);
        operations.insert(
            format!("receive.{}", c.event),
            json!({
                "action": "receive",
                "channel": {"$ref": "#/channels/socket"},
                "summary": c.summary,
                "messages": [request],
                "reply": {"channel": {"$ref": "#/channels/socket"}, "messages": [reply]},
            }),
        );
    }
    for e in events() {
        // A server event may share its name with a client event (chat.typing, user.presence).
        let name = format!("{}.event", e.event);
        let message = json!({"name": e.event, "summary": e.summary, "payload": e.payload});
        let message = reference(name, message, &mut messages);
        operations.insert(
            format!("send.{}", e.event),
            json!({
                "action": "send",
                "channel": {"$ref": "#/channels/socket"},
                "summary": e.summary,
                "messages": [message],
            }),
        );
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "scalable-chat real-time API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Socket.IO 4 events of the chat role, for a stock socket.io-client. Every client event is acknowledged with {ok: true, ...} or {ok: false, error: {code, reason, message}}. Connect with auth {token, lastSeq?: {<groupId>: <seq>}}: a refused handshake fails with connect_error and a message saying why.",
        },
        "defaultContentType": "application/json",
        "channels": {
            "socket": {
                "address": "/socket.io",
                "title": "One Socket.IO connection (namespace /)",
                "messages": channel_messages,
            },
        },
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "x-handshake-auth": object(&["token"], json!({
                "token": {"type": "string", "description": "The access token (JWT) from /auth/login"},
                "lastSeq": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "The last seq held per group id: what was missed is replayed"},
            })),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"#/").skip(1) {
            let path = &part[..part.find('"').unwrap()];
            assert!(
                doc.pointer(&format!("/{path}")).is_some(),
                "{path} does not resolve"
            );
        }
    }
}
