//! What every request goes through to be seen by the people who run the
//! server, in one middleware: its id, its time in the metrics, a log line
//! for a server error, and its token headers marked sensitive.
//!
//! The id is on the request's log lines (`logging` puts them in a span that
//! names it, for as long as the id is in scope here), in the
//! `X-Request-Id` response header, and in every problem+json body, so that a
//! client's report and the server's log meet. An id a proxy already gave
//! (`X-Request-Id`) is kept when it is short and plain; any other is
//! replaced, since it goes into logs.
//!
//! One middleware around the whole router, not `tower_http`'s trace and
//! sensitive-headers layers on it: every relayed signal is a request, and
//! every layer on axum's router is one more boxed service cloned, and one
//! more boxed future, for every request. The layers, and a span with three
//! formatted fields, were a tenth of a signal's instructions; a span with
//! one field, another tenth, which is why `logging` opens it only for a
//! line.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::Request;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

use super::metrics::{MethodLabel, RouteTimes};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest id kept from a client.
const MAX_LEN: usize = 64;

tokio::task_local! {
    /// The id of the request being handled, for `ApiError`'s body.
    static CURRENT: RequestId;
}

/// A request's id.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

/// The id of the request being handled, if any.
pub fn current() -> Option<String> {
    with_current_id(str::to_owned)
}

/// `f` of the id of the request being handled, if any.
pub fn with_current_id<R>(f: impl FnOnce(&str) -> R) -> Option<R> {
    CURRENT.try_with(|id| f(id.as_str())).ok()
}

fn plain(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A random UUID. Drawn from the thread's generator, not `Uuid::new_v4`,
/// which asks the kernel for every id: a system call per request.
fn fresh() -> HeaderValue {
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_bytes(uuid.hyphenated().encode_lower(&mut text).as_bytes())
        .expect("a UUID is a header value")
}

/// Marks the headers that carry a token as sensitive, so that they print
/// as `Sensitive` wherever a request is debug-printed. Nothing logs
/// headers, of requests or responses (the member cookie); this is for
/// whatever might in the future.
///
/// One pass over the few headers a request has: a lookup for each of the
/// two names hashed both, 300 instructions more per request.
fn hide_secrets(headers: &mut HeaderMap) {
    for (name, value) in headers.iter_mut() {
        if name == AUTHORIZATION || name == COOKIE {
            value.set_sensitive(true);
        }
    }
}

/// What `Observe` keeps of a request while it runs.
struct Started {
    at: Instant,
    id: RequestId,
    method: MethodLabel,
    route: Arc<RouteTimes>,
}

impl Started {
    /// Gives the request its id.
    fn new(request: &mut Request, routes: &Routes) -> Self {
        let at = Instant::now();
        hide_secrets(request.headers_mut());
        let id = request
            .headers()
            .get(&HEADER)
            .filter(|value| plain(value))
            // A copy, not a clone: a clone shares the buffer the request's
            // head was read into (`http1`), which a waiting poll would keep
            // for as long as it waits.
            .and_then(|value| HeaderValue::from_bytes(value.as_bytes()).ok())
            .unwrap_or_else(fresh);
        Self {
            at,
            method: MethodLabel::of(request.method()),
            route: routes.of(request.uri().path()),
            id: RequestId(id),
        }
    }

    /// Times the request, logs a server error, and names the id in the
    /// response.
    fn finish(self, response: &mut Response) {
        let elapsed = self.at.elapsed();
        self.route.record(self.method, elapsed);
        let (method, route) = (self.method.as_str(), self.route.route());
        let status = response.status();
        let log = || {
            if status.is_server_error() {
                tracing::error!(
                    method,
                    route,
                    status = status.as_u16(),
                    ?elapsed,
                    "request failed"
                );
            } else {
                tracing::debug!(method, route, status = status.as_u16(), ?elapsed, "request");
            }
        };
        // The answer is ready, out of the id's scope; back in it for the
        // line, when there is one to write.
        if status.is_server_error() || tracing::enabled!(tracing::Level::DEBUG) {
            CURRENT.sync_scope(self.id.clone(), log);
        }
        response.headers_mut().insert(HEADER, self.id.0);
    }
}

/// The route templates (`/rooms/{room_id}/join`) that requests are timed
/// under in the metrics: a bounded set of labels, whatever the paths.
///
/// Matched here, not read from axum's `MatchedPath`: that is known only
/// inside the router, so `observe` would have to be a layer on every route,
/// and axum boxes and clones such a layer's service once more for every
/// request.
#[derive(Debug)]
struct Routes {
    templates: matchit::Router<Arc<RouteTimes>>,
    /// Whatever no template matches: the web pages, a 404.
    other: Arc<RouteTimes>,
}

impl Routes {
    fn of(&self, path: &str) -> Arc<RouteTimes> {
        let matched = self.templates.at(path).map(|matched| matched.value);
        Arc::clone(matched.unwrap_or(&self.other))
    }
}

/// The layer that observes every request of the service it wraps, the
/// whole router; `templates` are the routes it serves, in axum's syntax.
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    routes: Arc<Routes>,
}

impl ObserveLayer {
    pub fn new(templates: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let mut routes = matchit::Router::new();
        for template in templates {
            let template = template.as_ref();
            routes
                .insert(template, Arc::new(RouteTimes::new(template)))
                .expect("the router took the same templates, and both match with matchit");
        }
        Self {
            routes: Arc::new(Routes {
                templates: routes,
                other: Arc::new(RouteTimes::new("<no route>")),
            }),
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            routes: Arc::clone(&self.routes),
        }
    }
}

/// Runs the request with its id in scope; see `ObserveLayer`.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    routes: Arc<Routes>,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Started::new(&mut request, &self.routes);
        let inner = CURRENT.scope(started.id.clone(), self.inner.call(request));
        ObserveFuture {
            inner,
            started: Some(started),
        }
    }
}

pin_project! {
    /// A request's answer, observed once it is ready.
    pub struct ObserveFuture<F> {
        #[pin]
        inner: TaskLocalFuture<RequestId, F>,
        started: Option<Started>,
    }
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = ready!(this.inner.poll(cx));
        if let Some(started) = this.started.take() {
            started.finish(&mut response);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_kept() {
        assert!(plain(&HeaderValue::from_static(
            "4bf92f3577b34da6a3ce929d0e0e4736"
        )));
        assert!(plain(&HeaderValue::from_static("edge-1:req.42_a")));
        assert!(!plain(&HeaderValue::from_static("")));
        assert!(!plain(&HeaderValue::from_static("has space")));
        assert!(!plain(&HeaderValue::from_static("quote\"")));
        assert!(!plain(&HeaderValue::from_str(&"a".repeat(65)).unwrap()));
    }

    #[test]
    fn token_headers_print_as_sensitive() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer secret-1"));
        headers.append(COOKIE, HeaderValue::from_static("a=secret-2"));
        headers.append(COOKIE, HeaderValue::from_static("b=secret-3"));
        headers.insert(HEADER, HeaderValue::from_static("req-1"));
        hide_secrets(&mut headers);
        let printed = format!("{headers:?}");
        assert!(!printed.contains("secret"), "{printed}");
        assert!(
            printed.contains("req-1"),
            "other headers still print: {printed}"
        );
    }

    #[test]
    fn fresh_ids_are_distinct_v4_uuids() {
        let (a, b) = (fresh(), fresh());
        assert_ne!(a, b);
        for id in [a, b] {
            let uuid = uuid::Uuid::parse_str(id.to_str().unwrap()).unwrap();
            assert_eq!(uuid.get_version(), Some(uuid::Version::Random));
            assert!(plain(&id), "a fresh id would be kept by the next hop");
        }
    }
}
