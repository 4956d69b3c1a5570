//! The request id: one per request, on the request's log lines (through its
//! span), in the `X-Request-Id` response header, and in every problem+json
//! body, so that a client's report and the server's log meet.
//!
//! An id a proxy already gave (`X-Request-Id`) is kept when it is short and
//! plain; any other is replaced, since it goes into logs.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest id kept from a client.
const MAX_LEN: usize = 64;

tokio::task_local! {
    /// The id of the request being handled, for `ApiError`'s body.
    static CURRENT: RequestId;
}

/// A request's id, also kept in the request's extensions for its span.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

/// The id of the request being handled, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(|id| id.as_str().to_owned()).ok()
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

/// Gives the request its id, runs it with the id in scope, and names the
/// id in the response.
pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&HEADER)
        .filter(|value| plain(value))
        .cloned()
        .unwrap_or_else(fresh);
    let id = RequestId(id);
    request.extensions_mut().insert(id.clone());
    let mut response = CURRENT.scope(id.clone(), next.run(request)).await;
    response.headers_mut().insert(HEADER, id.0);
    response
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
