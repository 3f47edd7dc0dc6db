//! Attachments end to end: chunked, resumable uploads into GridFS on the real MongoDB-compatible
//! server, ranged downloads, the limits, and who may read a file. Roles run as processes.

use std::time::Duration;

use chat_tests::{within, Api, ChatClient, RealtimeStack, Response, Stack, User};
use mongodb::bson::doc;
use rand::{Rng, SeedableRng};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const KIB: usize = 1024;

/// `len` bytes that sniff as PNG (the signature, then noise).
fn png(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes[..]);
    bytes[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    bytes
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn form(filename: &str, index: i64, total: i64, chunk: &[u8]) -> Form {
    Form::new()
        .text("filename", filename.to_string())
        .text("chunkIndex", index.to_string())
        .text("totalChunks", total.to_string())
        .part("chunk", Part::bytes(chunk.to_vec()).file_name("blob"))
}

async fn put(api: &Api, user: &User, form: Form) -> Response {
    api.send(
        api.authed(Method::POST, "/assets/upload", user)
            .multipart(form),
    )
    .await
}

async fn put_chunk(api: &Api, user: &User, name: &str, index: usize, chunks: &[&[u8]]) -> Response {
    put(
        api,
        user,
        form(name, index as i64, chunks.len() as i64, chunks[index]),
    )
    .await
}

async fn complete(api: &Api, user: &User, name: &str, total: usize) -> Response {
    api.send(
        api.authed(Method::POST, "/assets/complete-upload", user)
            .json(&json!({"filename": name, "totalChunks": total})),
    )
    .await
}

async fn status(api: &Api, user: &User, name: &str) -> Response {
    api.send(
        api.authed(Method::GET, "/assets/upload", user)
            .query(&[("filename", name)]),
    )
    .await
}

/// Uploads `bytes` in `chunk`-sized pieces, in order, and completes: the stored file.
async fn upload(api: &Api, user: &User, name: &str, bytes: &[u8], chunk: usize) -> Value {
    let chunks: Vec<&[u8]> = bytes.chunks(chunk).collect();
    for i in 0..chunks.len() {
        let r = put_chunk(api, user, name, i, &chunks).await;
        assert_eq!(r.status, StatusCode::OK, "chunk {i}: {}", r.text);
    }
    let r = complete(api, user, name, chunks.len()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body
}

/// A raw download (the response body is bytes, not JSON).
async fn download(
    api: &Api,
    user: &User,
    url: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = api.authed(Method::GET, url, user);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.send().await.expect("download")
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_file_sent_out_of_order_with_a_retried_chunk_downloads_identically() {
    let stack = Stack::start(&[]).await;
    let api = &stack.api;
    let [ada, bob] = api.users(["ada", "bob"]).await;
    let file = png(3 * 1024 * KIB + 123, 1);
    let chunks: Vec<&[u8]> = file.chunks(256 * KIB).collect();
    let total = chunks.len();

    // Bob uploads another photo.png at the same time: uploads are per user.
    let bobs = png(300 * KIB, 2);
    let bob_chunks: Vec<&[u8]> = bobs.chunks(200 * KIB).collect();
    assert_eq!(
        put_chunk(api, &bob, "photo.png", 1, &bob_chunks)
            .await
            .status,
        200
    );

    let mut order: Vec<usize> = (0..total).rev().collect();
    order.swap(2, 7);
    for (n, &i) in order.iter().enumerate() {
        let r = put_chunk(api, &ada, "photo.png", i, &chunks).await;
        assert_eq!(r.status, StatusCode::OK, "chunk {i}: {}", r.text);
        assert_eq!(r.body["receivedChunks"], n as u64 + 1);
        if n == 4 {
            // The same chunk again is fine; other bytes for it are not.
            let again = put_chunk(api, &ada, "photo.png", i, &chunks).await;
            assert_eq!(again.status, StatusCode::OK, "{}", again.text);
            assert_eq!(again.body["receivedChunks"], 5);
            let other = png(chunks[i].len(), 99);
            let r = put(api, &ada, form("photo.png", i as i64, total as i64, &other)).await;
            assert_eq!(r.assert_error(409), "conflict");
            assert_eq!(r.reason(), "chunk_conflict");
            let s = status(api, &ada, "photo.png").await;
            assert_eq!(s.body["receivedChunks"].as_array().unwrap().len(), 5);
            assert_eq!(s.body["missingChunks"].as_array().unwrap().len(), total - 5);
        }
    }
    let r = complete(api, &ada, "photo.png", total).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let asset = r.body.clone();
    assert_eq!(asset["type"], "image/png");
    assert_eq!(asset["size"], file.len() as u64);
    assert_eq!(asset["filename"], "photo.png");
    assert_eq!(asset["sha256"], sha(&file));
    let url = asset["url"].as_str().unwrap().to_string();
    assert_eq!(url, format!("/assets/{}", asset["id"].as_str().unwrap()));
    // Completing again (a lost response) answers with the same file.
    let again = complete(api, &ada, "photo.png", total).await;
    assert_eq!(again.body["id"], asset["id"], "{}", again.text);

    let whole = download(api, &ada, &url, &[]).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(header(&whole, "content-type"), "image/png");
    assert_eq!(header(&whole, "content-length"), file.len().to_string());
    assert_eq!(header(&whole, "accept-ranges"), "bytes");
    assert_eq!(header(&whole, "x-content-type-options"), "nosniff");
    let etag = header(&whole, "etag").to_string();
    assert_eq!(sha(&whole.bytes().await.unwrap()), sha(&file));

    // Ranges: inside one GridFS chunk, across chunks, the suffix, and outside the file.
    for (range, start, end) in [
        ("bytes=1000-1999", 1000, 1999),
        ("bytes=261000-800000", 261_000, 800_000),
        ("bytes=-100", file.len() - 100, file.len() - 1),
        (
            &format!("bytes={}-", file.len() - 5),
            file.len() - 5,
            file.len() - 1,
        ),
    ] {
        let r = download(api, &ada, &url, &[("range", range)]).await;
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header(&r, "content-range"),
            format!("bytes {start}-{end}/{}", file.len())
        );
        assert_eq!(&r.bytes().await.unwrap()[..], &file[start..=end], "{range}");
    }
    let outside = download(api, &ada, &url, &[("range", "bytes=99999999-")]).await;
    assert_eq!(outside.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        header(&outside, "content-range"),
        format!("bytes */{}", file.len())
    );
    let body: Value = outside.json().await.unwrap();
    assert_eq!(body["error"]["code"], "range_not_satisfiable");
    let cached = download(api, &ada, &url, &[("if-none-match", &etag)]).await;
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);

    // Bob finishes his own photo.png: a different file.
    assert_eq!(
        put_chunk(api, &bob, "photo.png", 0, &bob_chunks)
            .await
            .status,
        200
    );
    let r = complete(api, &bob, "photo.png", bob_chunks.len()).await;
    assert_eq!(r.body["sha256"], sha(&bobs), "{}", r.text);
    assert_ne!(r.body["id"], asset["id"]);
    // Nobody else reads Ada's file: 404, as for a file that does not exist.
    assert_eq!(download(api, &bob, &url, &[]).await.status(), 404);
    let none = download(api, &ada, "/assets/665f1f77bcf86cd799439011", &[]).await;
    assert_eq!(none.status(), 404);
}

#[tokio::test]
async fn an_abandoned_upload_resumes_from_what_the_server_holds() {
    let stack = Stack::start(&[]).await;
    let api = &stack.api;
    let ada = api.user("ada").await;
    let mut file = b"%PDF-1.7\n".to_vec();
    file.extend(png(900 * KIB, 3));
    let chunks: Vec<&[u8]> = file.chunks(100 * KIB).collect();
    for i in 0..chunks.len() / 2 {
        assert_eq!(
            put_chunk(api, &ada, "report.pdf", i, &chunks).await.status,
            200
        );
    }
    // A new client (after a crash) asks what is there and sends only the rest.
    let s = status(api, &ada, "report.pdf").await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.text);
    assert_eq!(s.body["totalChunks"], chunks.len());
    let missing: Vec<usize> = s.body["missingChunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(
        missing,
        (chunks.len() / 2..chunks.len()).collect::<Vec<_>>()
    );
    for i in missing {
        assert_eq!(
            put_chunk(api, &ada, "report.pdf", i, &chunks).await.status,
            200
        );
    }
    let r = complete(api, &ada, "report.pdf", chunks.len()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["type"], "application/pdf");
    let url = r.body["url"].as_str().unwrap();
    let got = download(api, &ada, url, &[]).await;
    assert!(header(&got, "content-disposition").starts_with("attachment; filename=\"report.pdf\""));
    assert_eq!(sha(&got.bytes().await.unwrap()), sha(&file));

    // Abandoning drops an upload and its chunks.
    assert_eq!(
        put_chunk(api, &ada, "draft.pdf", 0, &chunks).await.status,
        200
    );
    let gone = api
        .send(
            api.authed(Method::DELETE, "/assets/upload", &ada)
                .query(&[("filename", "draft.pdf")]),
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.text);
    status(api, &ada, "draft.pdf").await.assert_error(404);
}

#[tokio::test]
async fn bad_uploads_get_clear_errors_and_leave_nothing_behind() {
    let stack = Stack::start(&[
        ("ASSET_MAX_CHUNK_BYTES", "65536"),
        ("ASSET_MAX_FILE_BYTES", "200000"),
        ("ASSET_MAX_CHUNKS", "8"),
    ])
    .await;
    let api = &stack.api;
    let ada = api.user("ada").await;
    let small = png(1000, 4);
    let cases: Vec<(&str, Form, u16)> = vec![
        ("index = total", form("a.png", 2, 2, &small), 400),
        ("negative index", form("a.png", -1, 2, &small), 400),
        ("too many chunks", form("a.png", 0, 9, &small), 400),
        ("zero chunks", form("a.png", 0, 0, &small), 400),
        ("a path as name", form("../etc/passwd", 0, 2, &small), 400),
        ("a nested path", form("x/../../y.png", 0, 2, &small), 400),
        ("oversize chunk", form("a.png", 0, 2, &png(70_000, 5)), 413),
        (
            "executable",
            form("a.bin", 0, 1, b"\x7fELF\x02\x01\x01\0\0\0"),
            415,
        ),
        (
            "no chunk",
            Form::new()
                .text("filename", "a.png")
                .text("chunkIndex", "0")
                .text("totalChunks", "1"),
            400,
        ),
        (
            "no index",
            Form::new()
                .text("filename", "a.png")
                .text("totalChunks", "1")
                .part("chunk", Part::bytes(small.clone())),
            400,
        ),
        (
            "index not a number",
            Form::new()
                .text("filename", "a.png")
                .text("chunkIndex", "one")
                .text("totalChunks", "1")
                .part("chunk", Part::bytes(small.clone())),
            400,
        ),
    ];
    for (what, form, code) in cases {
        let r = put(api, &ada, form).await;
        r.assert_error(code);
        assert!(!r.text.contains("panicked"), "{what}");
    }
    // Not multipart at all, and no token.
    let json_body = api
        .send(
            api.authed(Method::POST, "/assets/upload", &ada)
                .json(&json!({"chunk": "x"})),
        )
        .await;
    json_body.assert_error(415);
    let anonymous = api
        .send(
            api.http
                .post(format!("{}/assets/upload", api.base))
                .multipart(form("a.png", 0, 1, &small)),
        )
        .await;
    anonymous.assert_error(401);

    // A file that outgrows the limit is refused on the chunk that crosses it, and dropped.
    let big = png(4 * 60_000, 6);
    let chunks: Vec<&[u8]> = big.chunks(60_000).collect();
    for i in 0..3 {
        assert_eq!(
            put_chunk(api, &ada, "big.png", i, &chunks).await.status,
            200
        );
    }
    put_chunk(api, &ada, "big.png", 3, &chunks)
        .await
        .assert_error(413);
    status(api, &ada, "big.png").await.assert_error(404);

    // Completing with chunks missing names them; an unknown upload is 404; a bad name 400.
    let parts: Vec<&[u8]> = small.chunks(300).collect();
    assert_eq!(
        put_chunk(api, &ada, "half.png", 0, &parts).await.status,
        200
    );
    assert_eq!(
        put_chunk(api, &ada, "half.png", 2, &parts).await.status,
        200
    );
    let r = complete(api, &ada, "half.png", parts.len()).await;
    r.assert_error(400);
    assert!(r.text.contains("1, 3"), "{}", r.text);
    complete(api, &ada, "half.png", 3).await.assert_error(409);
    complete(api, &ada, "nothing.png", 1)
        .await
        .assert_error(404);
    complete(api, &ada, "../x", 1).await.assert_error(400);
    // Another totalChunks for an upload in progress is a conflict.
    put(api, &ada, form("half.png", 0, 9, &small))
        .await
        .assert_error(400);
    put(api, &ada, form("half.png", 0, 3, &small))
        .await
        .assert_error(409);

    // Under the API (MongoDB): only the one upload in progress and its two chunks exist.
    if stack.deployment.embedded {
        return;
    }
    let db = stack.deployment.database().await;
    let sessions = db.collection::<mongodb::bson::Document>("upload_sessions");
    let chunk_docs = db.collection::<mongodb::bson::Document>("upload_chunks");
    assert_eq!(sessions.count_documents(doc! {}).await.unwrap(), 1);
    assert_eq!(chunk_docs.count_documents(doc! {}).await.unwrap(), 2);
    let files = db.collection::<mongodb::bson::Document>("assets.files");
    assert_eq!(files.count_documents(doc! {}).await.unwrap(), 0);
}

#[tokio::test]
async fn idle_uploads_expire_with_their_chunks() {
    let stack = Stack::start(&[("UPLOAD_SESSION_TTL_SECONDS", "1")]).await;
    let api = &stack.api;
    let ada = api.user("ada").await;
    let file = png(2000, 7);
    let chunks: Vec<&[u8]> = file.chunks(1000).collect();
    assert_eq!(
        put_chunk(api, &ada, "late.png", 0, &chunks).await.status,
        200
    );
    if stack.deployment.embedded {
        // The API view of the same: the upload disappears.
        within(Duration::from_secs(15), "the upload expiring", async {
            while status(api, &ada, "late.png").await.status == StatusCode::OK {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        return;
    }
    let chunk_docs = stack
        .deployment
        .database()
        .await
        .collection::<mongodb::bson::Document>("upload_chunks");
    assert_eq!(chunk_docs.count_documents(doc! {}).await.unwrap(), 1);
    // The sweeper deletes a session's chunks, then the session (orphaned chunks are never left
    // behind by a crash in between): wait for both.
    within(
        Duration::from_secs(15),
        "the chunks and the session being swept",
        async {
            while chunk_docs.count_documents(doc! {}).await.unwrap() > 0
                || status(api, &ada, "late.png").await.status == StatusCode::OK
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        },
    )
    .await;
    status(api, &ada, "late.png").await.assert_error(404);
    complete(api, &ada, "late.png", 2).await.assert_error(404);
}

#[tokio::test]
async fn profile_and_group_pictures_come_from_uploaded_images() {
    let stack = Stack::start(&[]).await;
    let api = &stack.api;
    let [ada, bob, eve] = api.users(["ada", "bob", "eve"]).await;
    let face = upload(api, &ada, "face.png", &png(5000, 8), 4096).await;
    let face_url = face["url"].as_str().unwrap();
    let patch_me = |user: &User, body: Value| {
        api.send(api.authed(Method::PATCH, "/users/me", user).json(&body))
    };
    // Before it is a profile picture, only Ada reads it.
    assert_eq!(download(api, &bob, face_url, &[]).await.status(), 404);
    let r = patch_me(&ada, json!({"profileUrl": face_url, "firstName": "Ada"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["profileUrl"], face_url);
    // Everyone signed in sees profile pictures; an <img> may pass the token in the query.
    let via_query = api
        .http
        .get(format!("{}{face_url}?access_token={}", api.base, bob.token))
        .send()
        .await
        .unwrap();
    assert_eq!(via_query.status(), StatusCode::OK);
    assert!(header(&via_query, "content-disposition").starts_with("inline"));
    assert_eq!(
        api.get(face_url, None).await.assert_error(401),
        "unauthorized"
    );

    // Not an image, not yours, not an asset: refused.
    let mut pdf = b"%PDF-1.4\n".to_vec();
    pdf.extend(png(100, 9));
    let doc_url = upload(api, &ada, "cv.pdf", &pdf, 4096).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    patch_me(&ada, json!({"profileUrl": doc_url}))
        .await
        .assert_error(400);
    patch_me(&bob, json!({"profileUrl": face_url}))
        .await
        .assert_error(400);
    patch_me(
        &ada,
        json!({"profileUrl": "/assets/665f1f77bcf86cd799439011"}),
    )
    .await
    .assert_error(400);
    patch_me(&ada, json!({})).await.assert_error(400);
    let cleared = patch_me(&ada, json!({"profileUrl": null})).await;
    assert!(cleared.body.get("profileUrl").is_none(), "{}", cleared.text);

    // A group picture is readable by the group's members, not by others.
    let logo = upload(api, &ada, "logo.png", &png(3000, 10), 4096).await;
    let logo_url = logo["url"].as_str().unwrap();
    let group_id = &api.group(&ada, "Team", &[&bob]).await;
    let r = api
        .send(
            api.authed(Method::PATCH, &format!("/groups/{group_id}"), &ada)
                .json(&json!({"imageUrl": logo_url})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(download(api, &bob, logo_url, &[]).await.status(), 200);
    assert_eq!(download(api, &eve, logo_url, &[]).await.status(), 404);
}

#[tokio::test]
async fn attachments_reach_members_and_only_members_download_them() {
    let stack = RealtimeStack::start(&[]).await;
    let api = stack.api();
    let [ada, bob, eve] = api.users(["ada", "bob", "eve"]).await;
    let bytes = png(600 * KIB, 11);
    let asset = upload(api, &ada, "holiday.png", &bytes, 256 * KIB).await;
    let url = asset["url"].as_str().unwrap();
    let group_id = api.group(&ada, "Trip", &[&bob]).await;
    assert_eq!(download(api, &bob, url, &[]).await.status(), 404);

    let a = ChatClient::connect(stack.chat_a.port, json!({"token": ada.token})).await;
    let mut b = ChatClient::connect(stack.chat_b.port, json!({"token": bob.token})).await;
    // The client's claims about the file are replaced by what was stored.
    let ack = a
        .request(
            "chat.message.send",
            json!({"groupId": group_id, "clientMessageId": "att-1", "attachment":
                {"filename": "x.exe", "url": url, "type": "application/x-msdownload", "size": 1}}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let incoming = b
        .next("chat.message.incoming", Duration::from_secs(15))
        .await;
    // As the README documents it: the url alone.
    let ack = a
        .request(
            "chat.message.send",
            json!({"groupId": group_id, "clientMessageId": "att-2", "attachment": {"url": url}}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let second = b
        .next("chat.message.incoming", Duration::from_secs(15))
        .await;
    for incoming in [&incoming, &second] {
        let attachment = &incoming["attachment"];
        assert_eq!(attachment["filename"], "holiday.png");
        assert_eq!(attachment["type"], "image/png");
        assert_eq!(attachment["size"], bytes.len() as u64);
        assert_eq!(attachment["url"], url);
    }
    // No url: the payload is refused, naming what is wrong.
    let ack = a
        .request(
            "chat.message.send",
            json!({"groupId": group_id, "clientMessageId": "att-3", "attachment": {"filename": "x"}}),
        )
        .await;
    assert_eq!(ack["ok"], false, "{ack}");
    assert_eq!(ack["error"]["code"], "bad_request", "{ack}");

    let got = download(api, &bob, url, &[]).await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(sha(&got.bytes().await.unwrap()), sha(&bytes));
    assert_eq!(download(api, &eve, url, &[]).await.status(), 404);

    // Bob cannot pass Ada's file off as his own, nor attach something that does not exist.
    let bob_socket = ChatClient::connect(stack.chat_a.port, json!({"token": bob.token})).await;
    for (id, bad_url) in [("b-1", url), ("b-2", "/assets/665f1f77bcf86cd799439011")] {
        let ack = bob_socket
            .request(
                "chat.message.send",
                json!({"groupId": group_id, "clientMessageId": id, "attachment": {"url": bad_url}}),
            )
            .await;
        assert_eq!(ack["ok"], false, "{ack}");
        assert_eq!(ack["error"]["code"], "validation", "{ack}");
    }
    let page = api
        .send(api.authed(Method::GET, &format!("/groups/{group_id}/messages"), &bob))
        .await;
    assert_eq!(
        page.body["data"][0]["attachment"]["url"], url,
        "{}",
        page.text
    );
}
