//! CORS: off by default; `--cors-origin` opens the API and the streams to
//! the named origins, preflight included, and to no other.

use crate::helpers::{TestApp, send, spawn_app, spawn_app_with};

const APP: &str = "https://app.example.com";

/// The preflight a page on `origin` sends before a `POST /signals`.
async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    send(
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/signals"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            ),
    )
    .await
}

#[tokio::test]
async fn without_cors_origins_no_origin_is_allowed() {
    let app = spawn_app().await;
    let preflight = preflight(&app, APP).await;
    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let join = send(
        app.client
            .post(app.url("/rooms/lobby/join"))
            .header("origin", APP),
    )
    .await;
    assert_eq!(
        join.status(),
        201,
        "the server serves; the browser hides the answer"
    );
    assert!(join.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_named_origin_passes_the_preflight_and_reads_answers_and_streams() {
    let app = spawn_app_with(&[
        "--cors-origin",
        APP,
        "--cors-origin",
        "http://localhost:3000",
    ])
    .await;
    let preflight = preflight(&app, APP).await;
    assert_eq!(preflight.status(), 200);
    let header = |name: &str| {
        preflight.headers()[name]
            .to_str()
            .expect("ASCII")
            .to_ascii_lowercase()
    };
    assert_eq!(header("access-control-allow-origin"), APP);
    assert!(header("access-control-allow-methods").contains("post"));
    assert!(header("access-control-allow-headers").contains("authorization"));
    assert!(header("access-control-allow-headers").contains("content-type"));

    let join = send(
        app.client
            .post(app.url("/rooms/lobby/join"))
            .header("origin", APP),
    )
    .await;
    assert_eq!(join.headers()["access-control-allow-origin"], APP);
    assert!(
        join.headers()["access-control-expose-headers"]
            .to_str()
            .expect("ASCII")
            .to_ascii_lowercase()
            .contains("retry-after"),
        "a page can read Retry-After on a 429"
    );
    let alice = crate::helpers::Joined::from_response(join).await;

    // A stream on a new connection: the server's own stream path.
    let stream = app
        .events_request(&alice, None)
        .header("origin", APP)
        .send()
        .await
        .expect("the stream answers");
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["access-control-allow-origin"], APP);
}

#[tokio::test]
async fn an_origin_not_named_is_not_allowed() {
    let app = spawn_app_with(&["--cors-origin", APP]).await;
    let preflight = preflight(&app, "https://evil.example").await;
    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[test]
fn a_cors_origin_with_a_path_is_refused_at_start() {
    for bad in [
        "app.example.com",
        "https://app.example.com/",
        "https://app.example.com/x",
    ] {
        assert!(
            signalpost::Config::from_args(["--cors-origin", bad]).is_err(),
            "{bad} is no origin"
        );
    }
    assert!(signalpost::Config::from_args(["--cors-origin", APP]).is_ok());
}

#[tokio::test]
async fn a_browser_whip_client_may_patch_with_if_match_and_read_location_etag_and_link() {
    let app = spawn_app_with(&["--cors-origin", APP]).await;
    let preflight = send(
        app.client
            .request(
                reqwest::Method::OPTIONS,
                app.url("/rooms/studio/sessions/abc"),
            )
            .header("origin", APP)
            .header("access-control-request-method", "PATCH")
            .header("access-control-request-headers", "content-type, if-match"),
    )
    .await;
    assert_eq!(preflight.status(), 200);
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("if-match"), "{allowed}");

    let answer = send(
        app.client
            .post(app.url("/rooms/studio/whip"))
            .header("origin", APP)
            .header("content-type", "application/sdp")
            .body("v=0\r\n"),
    )
    .await;
    let exposed = answer.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in ["location", "etag", "link"] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
}
