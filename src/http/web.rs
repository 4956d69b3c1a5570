//! The web pages and the client library of `web/`, built into the binary so
//! it is self-contained, or served from a folder with `--web-dir` while they
//! are being worked on. Reached through the router's fallback, so every API
//! route keeps precedence and an unknown path is still a problem+json 404.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::http::AppState;
use crate::http::error::ApiError;

#[derive(RustEmbed)]
#[folder = "web/"]
struct Assets;

/// Answers every request no route matched: a page or file of `web/` for
/// GET and HEAD, else the problem+json 404.
pub async fn serve(State(state): State<AppState>, request: Request) -> Response {
    let path = request.uri().path();
    // `/rooms//join` has an empty room id, which the router cannot match.
    if path == "/rooms/" || path.starts_with("/rooms//") {
        return ApiError::InvalidRoomId("the room id is empty".into()).into_response();
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return ApiError::NotFound.into_response();
    }
    match &state.config.web_dir {
        Some(dir) => from_folder(dir, request).await,
        None => embedded(&request),
    }
}

async fn from_folder(dir: &std::path::Path, request: Request) -> Response {
    // ServeDir refuses `..` and other escapes from the folder.
    let served = ServeDir::new(dir)
        .append_index_html_on_directories(true)
        .oneshot(request)
        .await;
    match served {
        Ok(response) if response.status() != StatusCode::NOT_FOUND => {
            let mut response = response.map(Body::new);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        _ => ApiError::NotFound.into_response(),
    }
}

fn embedded(request: &Request) -> Response {
    let name = request.uri().path().trim_start_matches('/');
    let name = if name.is_empty() || name.ends_with('/') {
        format!("{name}index.html")
    } else {
        name.to_owned()
    };
    // `/chat` finds `chat.html`.
    let Some((name, file)) = Assets::get(&name)
        .map(|file| (name.clone(), file))
        .or_else(|| {
            Assets::get(&format!("{name}.html")).map(|file| (format!("{name}.html"), file))
        })
    else {
        return ApiError::NotFound.into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let fresh = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let content_type = mime_type(&name, file.metadata.mimetype());
    let headers = [
        (header::CONTENT_TYPE, content_type),
        // Revalidate every time: the pages change with the binary.
        (header::CACHE_CONTROL, "no-cache".to_owned()),
        (header::ETAG, etag),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let body = if request.method() == Method::HEAD {
        Body::empty()
    } else {
        Body::from(file.data.into_owned())
    };
    (headers, body).into_response()
}

fn mime_type(name: &str, guessed: &str) -> String {
    // ES modules must be served as JavaScript, whatever the guess table says.
    if name.ends_with(".js") || name.ends_with(".mjs") {
        return "text/javascript; charset=utf-8".into();
    }
    if guessed.starts_with("text/") && !guessed.contains("charset") {
        return format!("{guessed}; charset=utf-8");
    }
    guessed.to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
