//! `GET /openapi.json`, `GET /docs`, `GET /healthz`: served to anyone.

use serde_json::Value;

use crate::helpers::{json_body, spawn_app};

/// Every call of docs/API.md: path and method.
const CALLS: [(&str, &str); 11] = [
    ("/rooms/{room_id}/join", "post"),
    ("/rooms/{room_id}/members/{member_id}/events", "get"),
    ("/rooms/{room_id}/members/{member_id}/poll", "get"),
    ("/signals", "post"),
    ("/rooms/{room_id}/members/{member_id}", "delete"),
    ("/rooms/{room_id}", "get"),
    ("/rooms/{room_id}", "patch"),
    ("/rooms/{room_id}", "put"),
    ("/rooms/{room_id}", "delete"),
    ("/rooms/{room_id}/signals", "post"),
    ("/rooms", "get"),
];

#[tokio::test]
async fn openapi_json_is_an_openapi_3_1_document_with_every_call() {
    let app = spawn_app().await;

    let document = json_body(app.get("/openapi.json").await, 200).await;

    let version = document["openapi"].as_str().unwrap_or_default();
    assert!(
        version.starts_with("3.1."),
        "OpenAPI 3.1.x, got `{version}`"
    );
    for (path, method) in CALLS {
        assert!(
            document["paths"][path][method].is_object(),
            "the document describes `{} {path}`",
            method.to_uppercase()
        );
    }
}

#[tokio::test]
async fn openapi_json_is_the_document_the_library_generates() {
    let app = spawn_app().await;

    let served = json_body(app.get("/openapi.json").await, 200).await;

    let generated: Value =
        serde_json::to_value(signalpost::openapi()).expect("the document serializes");
    assert_eq!(served, generated);
}

#[tokio::test]
async fn openapi_json_is_served_as_json() {
    let app = spawn_app().await;

    let response = app.get("/openapi.json").await;

    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
}

#[tokio::test]
async fn docs_serves_swagger_ui_as_html() {
    let app = spawn_app().await;

    for path in ["/docs/", "/docs"] {
        let response = app.get(path).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/html"),
            "{path}: {content_type}"
        );
        let page = response.text().await.expect("the page is read");
        assert!(
            page.to_lowercase().contains("swagger"),
            "{path} is Swagger UI"
        );
    }
}

#[tokio::test]
async fn healthz_answers_200() {
    let app = spawn_app().await;

    let response = app.get("/healthz").await;

    assert_eq!(response.status().as_u16(), 200);
}
