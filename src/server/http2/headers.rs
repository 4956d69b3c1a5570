//! A stream's header block to a request (RFC 9113 §8.3, HPACK decoded by
//! `hpack`), and an answer's head to a header block (HPACK encoded here:
//! literals only, which any decoder reads and which keep no state).

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::header::{CONTENT_LENGTH, COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};
use bytes::{BufMut, BytesMut};

use super::hpack::{self, Decoder};

/// What a header block that decoded is not.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a request (§8.1.1): the stream is reset.
    Malformed(&'static str),
    /// Larger than `--max-header-bytes`, counted as §6.5.2 counts: answered
    /// 431, as HTTP/1.1 answers it.
    TooLarge,
}

pub use super::hpack::Undecodable;

/// A request's head, its body still to come.
pub struct Head {
    pub request: Request<()>,
    /// What `content-length` said, to hold the body to (§8.1.1).
    pub length: Option<u64>,
}

/// The request that `block` (the whole header block, CONTINUATIONs
/// joined) carries. The block is decoded whatever it holds, so that the
/// decoder's table stays the client's.
pub fn request(
    decoder: &mut Decoder,
    block: &[u8],
    max_list: usize,
    peer: SocketAddr,
) -> Result<Result<Head, Refused>, Undecodable> {
    let mut fields = Fields::default();
    decoder.decode(block, |name, value| fields.add(name, value, max_list))?;
    Ok(fields.into_request(peer))
}

#[derive(Default)]
struct Fields {
    method: Option<Method>,
    scheme: Option<Vec<u8>>,
    authority: Option<Vec<u8>>,
    path: Option<Vec<u8>>,
    headers: HeaderMap,
    cookies: Vec<u8>,
    /// The list's size as §6.5.2 counts it.
    size: usize,
    refused: Option<Refused>,
    regular_seen: bool,
}

impl Fields {
    fn add(&mut self, name: &[u8], value: &[u8], max_list: usize) {
        self.size += name.len() + value.len() + 32;
        if self.size > max_list {
            self.refused.get_or_insert(Refused::TooLarge);
        }
        if self.refused.is_some() {
            return;
        }
        if let Err(why) = self.take(name, value) {
            self.refused = Some(Refused::Malformed(why));
        }
    }

    fn take(&mut self, name: &[u8], value: &[u8]) -> Result<(), &'static str> {
        if let Some(pseudo) = name.strip_prefix(b":") {
            if self.regular_seen {
                return Err("a pseudo-header after a regular one");
            }
            let slot = match pseudo {
                b"method" => {
                    if self.method.is_some() {
                        return Err("`:method` twice");
                    }
                    let method =
                        Method::from_bytes(value).map_err(|_| "a `:method` that is no method")?;
                    self.method = Some(method);
                    return Ok(());
                }
                b"scheme" => &mut self.scheme,
                b"authority" => &mut self.authority,
                b"path" => &mut self.path,
                _ => return Err("an unknown pseudo-header"),
            };
            if slot.is_some() {
                return Err("a pseudo-header twice");
            }
            *slot = Some(value.to_vec());
            return Ok(());
        }
        self.regular_seen = true;
        if name.iter().any(u8::is_ascii_uppercase) {
            return Err("an upper-case header name");
        }
        // §8.2.2: what only a hop of HTTP/1.1 means has no place here.
        match name {
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
            | b"upgrade" => return Err("a connection-specific header"),
            b"te" if value != b"trailers" => return Err("a `te` other than `trailers`"),
            // §8.2.3: cookies may come split; an HTTP/1.1 application
            // reads one line.
            b"cookie" => {
                if !self.cookies.is_empty() {
                    self.cookies.extend_from_slice(b"; ");
                }
                self.cookies.extend_from_slice(value);
                return Ok(());
            }
            _ => {}
        }
        let name = HeaderName::from_bytes(name).map_err(|_| "a header name that is no token")?;
        let value =
            HeaderValue::from_bytes(value).map_err(|_| "a header value with a control byte")?;
        if value
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_whitespace)
            || value.as_bytes().last().is_some_and(u8::is_ascii_whitespace)
        {
            return Err("a header value with white space around it");
        }
        self.headers.append(name, value);
        Ok(())
    }

    fn into_request(mut self, peer: SocketAddr) -> Result<Head, Refused> {
        if let Some(refused) = self.refused {
            return Err(refused);
        }
        let method = self.method.ok_or(Refused::Malformed("no `:method`"))?;
        if method == Method::CONNECT {
            return Err(Refused::Malformed("CONNECT, which nothing here serves"));
        }
        let (Some(scheme), Some(path)) = (self.scheme, self.path) else {
            return Err(Refused::Malformed("no `:scheme` or no `:path`"));
        };
        if path.is_empty() {
            return Err(Refused::Malformed("an empty `:path`"));
        }
        let mut uri = Uri::builder().scheme(&scheme[..]);
        if let Some(authority) = &self.authority {
            uri = uri.authority(&authority[..]);
        }
        let uri = uri
            .path_and_query(&path[..])
            .build()
            .or_else(|_| Uri::try_from(&path[..]))
            .map_err(|_| Refused::Malformed("a `:path` that is no path"))?;
        if !self.cookies.is_empty() {
            let cookies = HeaderValue::from_bytes(&self.cookies)
                .map_err(|_| Refused::Malformed("a cookie with a control byte"))?;
            self.headers.insert(COOKIE, cookies);
        }
        let length = content_length(&self.headers)?;
        let mut request = Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_2;
        *request.headers_mut() = self.headers;
        request.extensions_mut().insert(ConnectInfo(peer));
        Ok(Head { request, length })
    }
}

fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Refused> {
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let value = std::str::from_utf8(value.as_bytes())
            .ok()
            .filter(|text| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or(Refused::Malformed("a `content-length` that is no length"))?;
        if length.is_some_and(|said| said != value) {
            return Err(Refused::Malformed("two different `content-length`s"));
        }
        length = Some(value);
    }
    Ok(length)
}

/// Writes the header block of an answer: `:status`, the router's headers
/// but those HTTP/2 has no place for, `content-length` when the body's is
/// known, and `date`.
pub fn answer(out: &mut BytesMut, status: StatusCode, headers: &HeaderMap, length: Option<u64>) {
    // The static table's `:status` entries (RFC 7541 Appendix A).
    let indexed = match status.as_u16() {
        200 => Some(8),
        204 => Some(9),
        206 => Some(10),
        304 => Some(11),
        400 => Some(12),
        404 => Some(13),
        500 => Some(14),
        _ => None,
    };
    match indexed {
        Some(index) => out.put_u8(0x80 | index),
        None => {
            // A literal not indexed, with the name of entry 8 (`:status`).
            integer(out, 0x00, 4, 8);
            string(out, status.as_str().as_bytes());
        }
    }
    for (name, value) in headers {
        if matches!(
            name.as_str(),
            "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade"
        ) {
            continue;
        }
        literal(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(length) = length.filter(|_| !headers.contains_key(CONTENT_LENGTH)) {
        literal(
            out,
            b"content-length",
            itoa::Buffer::new().format(length).as_bytes(),
        );
    }
    crate::server::http1::date(|date| literal(out, b"date", date));
}

/// A field as a literal not indexed (RFC 7541 §6.2.2), its name the static
/// table's where it has it: a byte instead of the name, and a name the
/// client need not parse.
fn literal(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    match hpack::static_name(name) {
        Some(index) => integer(out, 0x00, 4, index),
        None => {
            out.put_u8(0x00);
            string(out, name);
        }
    }
    string(out, value);
}

/// A string literal without Huffman coding (RFC 7541 §5.2).
fn string(out: &mut BytesMut, bytes: &[u8]) {
    integer(out, 0x00, 7, bytes.len());
    out.put_slice(bytes);
}

/// An integer with an `prefix`-bit prefix after the bits `first` (RFC 7541 §5.1).
fn integer(out: &mut BytesMut, first: u8, prefix: u32, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.put_u8(first | value as u8);
        return;
    }
    out.put_u8(first | max as u8);
    value -= max;
    while value >= 0x80 {
        out.put_u8((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9))
    }

    fn block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for (name, value) in fields {
            literal(&mut out, name, value);
        }
        out.to_vec()
    }

    fn decode(fields: &[(&[u8], &[u8])]) -> Result<Head, Refused> {
        request(&mut Decoder::default(), &block(fields), 16_384, peer()).expect("decodes")
    }

    const GET: [(&[u8], &[u8]); 4] = [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"example.com"),
        (b":path", b"/rooms/a/members?x=1"),
    ];

    #[test]
    fn a_request_reads_whole() {
        let mut fields = GET.to_vec();
        fields.extend([
            (&b"cookie"[..], &b"a=1"[..]),
            (b"accept", b"text/event-stream"),
            (b"cookie", b"b=2"),
        ]);
        let head = decode(&fields).expect("a request");
        let request = head.request;
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri().path(), "/rooms/a/members");
        assert_eq!(request.uri().query(), Some("x=1"));
        assert_eq!(request.uri().host(), Some("example.com"));
        assert_eq!(request.version(), Version::HTTP_2);
        assert_eq!(request.headers()[COOKIE], "a=1; b=2");
        assert_eq!(request.headers()["accept"], "text/event-stream");
        assert!(
            request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .is_some()
        );
    }

    #[test]
    fn what_is_no_request_is_refused() {
        let with = |extra: (&'static [u8], &'static [u8])| {
            let mut fields = GET.to_vec();
            fields.push(extra);
            decode(&fields).err()
        };
        assert!(matches!(
            with((b"Accept", b"x")),
            Some(Refused::Malformed(_))
        ));
        assert!(matches!(
            with((b"connection", b"close")),
            Some(Refused::Malformed(_))
        ));
        assert!(matches!(
            with((b"te", b"gzip")),
            Some(Refused::Malformed(_))
        ));
        assert_eq!(with((b"te", b"trailers")), None);
        assert!(matches!(
            with((b":method", b"GET")),
            Some(Refused::Malformed(_))
        ));
        assert!(matches!(
            with((b"x", b" padded")),
            Some(Refused::Malformed(_))
        ));
        assert!(matches!(
            with((b"content-length", b"1x")),
            Some(Refused::Malformed(_))
        ));
        let mut late = GET.to_vec();
        late.insert(1, (b"accept", b"*/*"));
        assert!(matches!(decode(&late), Err(Refused::Malformed(_))));
        assert!(matches!(decode(&GET[..3]), Err(Refused::Malformed(_))));
    }

    #[test]
    fn a_list_past_the_limit_is_too_large_and_still_decoded() {
        let mut decoder = Decoder::default();
        let mut fields = GET.to_vec();
        let big = vec![b'v'; 200];
        fields.push((b"x-big", &big));
        let refused = request(&mut decoder, &block(&fields), 200, peer()).expect("decodes");
        assert!(matches!(refused, Err(Refused::TooLarge)));
        assert!(
            request(
                &mut decoder,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                200,
                peer()
            )
            .is_err()
        );
    }

    #[test]
    fn an_answer_reads_back() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("connection", HeaderValue::from_static("close"));
        let long = "x".repeat(300);
        headers.insert("x-long", HeaderValue::from_str(&long).expect("a value"));
        let mut out = BytesMut::new();
        answer(&mut out, StatusCode::ACCEPTED, &headers, Some(17));
        let mut fields: Vec<(String, String)> = Vec::new();
        Decoder::default()
            .decode(&out, |name, value| {
                let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
                fields.push((text(name), text(value)));
            })
            .expect("decodes");
        assert_eq!(fields[0], (":status".into(), "202".into()));
        assert!(fields.contains(&("content-type".into(), "application/json".into())));
        assert!(fields.contains(&("content-length".into(), "17".into())));
        assert!(fields.contains(&("x-long".into(), long)));
        assert!(
            fields
                .iter()
                .any(|(name, value)| name == "date" && value.ends_with("GMT"))
        );
        assert!(!fields.iter().any(|(name, _)| name == "connection"));

        let mut out = BytesMut::new();
        answer(&mut out, StatusCode::OK, &HeaderMap::new(), None);
        assert_eq!(out[0], 0x88);
    }
}
