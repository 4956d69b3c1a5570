//! The pages and client library of `web/`, served by the binary itself.

use crate::helpers::{assert_problem, assert_raw_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn the_call_page_is_served_at_the_root() {
    let app = spawn_app().await;

    let response = app.get("/").await;

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let page = response.text().await.unwrap();
    assert!(
        page.to_lowercase().contains("<html"),
        "not a page: {page:.200}"
    );
    assert!(page.contains("call.js"), "the call page loads call.js");
}

#[tokio::test]
async fn the_client_library_is_served_as_javascript() {
    let app = spawn_app().await;

    let response = app.get("/signalpost.js").await;

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert!(response.text().await.unwrap().contains("export"));
}

#[tokio::test]
async fn the_chat_page_is_found_with_and_without_its_extension() {
    let app = spawn_app().await;

    for path in ["/chat.html", "/chat"] {
        let response = app.get(path).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert!(response.text().await.unwrap().contains("chat.js"), "{path}");
    }
}

#[tokio::test]
async fn an_unchanged_file_answers_304_to_its_etag() {
    let app = spawn_app().await;
    let first = app.get("/signalpost.js").await;
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();

    let again = app
        .client
        .get(app.url("/signalpost.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();

    assert_eq!(again.status().as_u16(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unknown_file_is_a_problem_json_404() {
    let app = spawn_app().await;

    assert_problem(app.get("/no-such-page.html").await, 404, "not_found").await;
}

#[tokio::test]
async fn a_post_to_a_page_is_a_problem_json_404() {
    let app = spawn_app().await;

    let response = app.client.post(app.url("/")).send().await.unwrap();

    assert_problem(response, 404, "not_found").await;
}

#[tokio::test]
async fn web_dir_serves_pages_from_disk_and_nothing_outside_it() {
    let dir = std::env::temp_dir().join(format!("signalpost-web-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("site")).unwrap();
    std::fs::write(dir.join("site/index.html"), "<html>from disk</html>").unwrap();
    std::fs::write(dir.join("secret.txt"), "outside").unwrap();
    let site = dir.join("site");
    let app = spawn_app_with(&["--web-dir", site.to_str().unwrap()]).await;

    let page = app.get("/").await;
    assert_eq!(page.status().as_u16(), 200);
    assert_eq!(page.text().await.unwrap(), "<html>from disk</html>");
    let escape = app.raw_request("GET", "/../secret.txt", None).await;
    assert_raw_problem(&escape, 404, "not_found");
    let encoded = app.raw_request("GET", "/%2e%2e/secret.txt", None).await;
    assert_raw_problem(&encoded, 404, "not_found");

    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn api_routes_win_over_files() {
    let app = spawn_app().await;

    let response = app.get("/healthz").await;

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
}
