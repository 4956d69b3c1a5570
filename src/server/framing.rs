//! What RFC 9112 asks of an HTTP/1.x request's head before anything reads
//! its body: one valid `Host` (§3.2), and one way to tell where the body
//! ends (§6.1, §6.3). Both connection paths hold requests to it: `http1`
//! before it serves a head or hands it to hyper, and `hyper_conn` for the
//! requests hyper parsed itself. A request that breaks it is refused and
//! its connection closed: a client and a proxy in front of the server may
//! have read the body's end elsewhere (request smuggling), so nothing
//! after it can be trusted.
//!
//! docs/RFC9112.md lists each rule with the test that holds the server to it.

use axum::http::header::{CONTENT_LENGTH, HOST, HeaderMap, TRANSFER_ENCODING};
use axum::http::{HeaderValue, Version};

use super::Unreadable;

/// How a head that passed says its body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// No body, or HTTP/2's frames tell.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Refuses a head that breaks §3.2 or §6, or says how its body ends;
/// HTTP/2 and later carry neither rule (`:authority`, frames), and pass.
pub fn check(version: Version, headers: &HeaderMap) -> Result<BodyLength, Unreadable> {
    if version > Version::HTTP_11 {
        return Ok(BodyLength::None);
    }
    check_host(version, headers)?;
    check_body_length(version, headers)
}

/// §3.2: an HTTP/1.1 request has exactly one `Host`; any request with two,
/// or with one that is not `uri-host [":" port]`, is refused.
fn check_host(version: Version, headers: &HeaderMap) -> Result<(), Unreadable> {
    let mut hosts = headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::HTTP_11 => Err(Unreadable::BadHost("no `Host` header")),
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err(Unreadable::BadHost("more than one `Host` header")),
        (Some(host), None) if valid_host(host.as_bytes()) => Ok(()),
        (Some(_), None) => Err(Unreadable::BadHost("a `Host` that is no host name")),
    }
}

/// RFC 3986's `host [":" port]`, or empty (a target without an authority).
fn valid_host(value: &[u8]) -> bool {
    let (host, port) = if let Some(literal) = value.strip_prefix(b"[") {
        // An IPv6 address (or an IPvFuture): hex digits, colons and dots.
        let Some(end) = literal.iter().position(|&byte| byte == b']') else {
            return false;
        };
        let (address, rest) = literal.split_at(end);
        let address_ok = !address.is_empty()
            && address
                .iter()
                .all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b':' | b'.'));
        if !address_ok {
            return false;
        }
        match &rest[1..] {
            [] => (&b""[..], None),
            [b':', port @ ..] => (&b""[..], Some(port)),
            _ => return false,
        }
    } else {
        // A reg-name has no colon; an IPv4 address is a reg-name's
        // characters too.
        match value.iter().rposition(|&byte| byte == b':') {
            Some(at) => (&value[..at], Some(&value[at + 1..])),
            None => (value, None),
        }
    };
    let name_ok = host.iter().all(|&byte| {
        byte.is_ascii_alphanumeric()
            // unreserved, sub-delims, and the `%` of pct-encoded
            || b"-._~!$&'()*+,;=%".contains(&byte)
    });
    name_ok && port.is_none_or(|port| port.iter().all(u8::is_ascii_digit))
}

/// §6.1 and §6.3: a body's length is one `Content-Length`, or a
/// `Transfer-Encoding` that ends with `chunked` (once), never both.
fn check_body_length(version: Version, headers: &HeaderMap) -> Result<BodyLength, Unreadable> {
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let length = match (lengths.next(), lengths.next()) {
        (Some(_), Some(_)) => {
            return Err(Unreadable::BadFraming("more than one `Content-Length`"));
        }
        (Some(length), None) => Some(decimal(length).ok_or(Unreadable::BadFraming(
            "a `Content-Length` that is not one decimal number",
        ))?),
        (None, _) => None,
    };
    if !headers.contains_key(TRANSFER_ENCODING) {
        return Ok(length.map_or(BodyLength::None, BodyLength::Length));
    }
    if version == Version::HTTP_10 {
        return Err(Unreadable::BadFraming(
            "`Transfer-Encoding` in an HTTP/1.0 request",
        ));
    }
    if length.is_some() {
        return Err(Unreadable::BadFraming(
            "both `Content-Length` and `Transfer-Encoding`",
        ));
    }
    let codings: Vec<&[u8]> = headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&byte| byte == b','))
        // A coding's parameters do not change which coding it is.
        .map(|element| {
            element
                .split(|&byte| byte == b';')
                .next()
                .unwrap_or(element)
        })
        .map(<[u8]>::trim_ascii)
        // §5.6.1: empty list elements are allowed, and count for nothing.
        .filter(|coding| !coding.is_empty())
        .collect();
    let chunked = |coding: &[u8]| coding.eq_ignore_ascii_case(b"chunked");
    match codings.last() {
        None => Err(Unreadable::BadFraming("an empty `Transfer-Encoding`")),
        Some(last) if !chunked(last) => Err(Unreadable::BadFraming(
            "a `Transfer-Encoding` whose last coding is not `chunked`",
        )),
        Some(_) if codings.iter().filter(|coding| chunked(coding)).count() > 1 => Err(
            Unreadable::BadFraming("a `Transfer-Encoding` that lists `chunked` more than once"),
        ),
        // gzip, deflate, compress: none is undone here.
        Some(_) if codings.len() > 1 => Err(Unreadable::UnknownCoding),
        Some(_) => Ok(BodyLength::Chunked),
    }
}

/// One decimal number that fits a `u64`; `1, 1` and `+1` are not.
fn decimal(value: &HeaderValue) -> Option<u64> {
    let digits = value.as_bytes();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    fn checked(
        version: Version,
        lines: &[(&'static str, &'static str)],
    ) -> Result<BodyLength, Unreadable> {
        check(version, &head(lines))
    }

    #[test]
    fn host_names_addresses_and_ports_are_hosts() {
        for host in [
            "signalpost.test",
            "signalpost.test:8080",
            "127.0.0.1:1",
            "[::1]:8080",
            "[fe80::1]",
            "xn--bcher-kva.example",
            "a%20b",
            "h:",
            "",
        ] {
            assert!(valid_host(host.as_bytes()), "{host:?}");
        }
    }

    #[test]
    fn what_is_no_host_is_refused() {
        for host in [
            "a b", "user@h", "h:80x", "h:8:8", "[::1", "[]", "[::1]x", "h/path", "h?q",
        ] {
            assert!(!valid_host(host.as_bytes()), "{host:?}");
        }
    }

    #[test]
    fn http_1_1_needs_one_host_http_1_0_at_most_one() {
        assert!(matches!(
            checked(Version::HTTP_11, &[]),
            Err(Unreadable::BadHost(_))
        ));
        assert!(checked(Version::HTTP_10, &[]).is_ok());
        for version in [Version::HTTP_10, Version::HTTP_11] {
            assert!(matches!(
                checked(version, &[("host", "a"), ("host", "a")]),
                Err(Unreadable::BadHost(_))
            ));
        }
        assert!(checked(Version::HTTP_2, &[]).is_ok());
    }

    #[test]
    fn chunked_last_and_once_is_the_one_transfer_encoding_served() {
        let host = ("host", "h");
        for te in ["chunked", "Chunked", " chunked ", "chunked;", ", chunked,"] {
            assert_eq!(
                checked(Version::HTTP_11, &[host, ("transfer-encoding", te)]),
                Ok(BodyLength::Chunked),
                "{te:?}"
            );
        }
        for te in [
            "chunked, chunked",
            "gzip, chunked, chunked",
            "chunked, gzip",
            "identity",
            "xchunked",
            "chunked-false",
            "",
            " , ",
        ] {
            assert!(
                matches!(
                    checked(Version::HTTP_11, &[host, ("transfer-encoding", te)]),
                    Err(Unreadable::BadFraming(_))
                ),
                "{te:?}"
            );
        }
        assert!(matches!(
            checked(
                Version::HTTP_11,
                &[
                    host,
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked")
                ]
            ),
            Err(Unreadable::BadFraming(_))
        ));
        assert_eq!(
            checked(
                Version::HTTP_11,
                &[host, ("transfer-encoding", "gzip, chunked")]
            ),
            Err(Unreadable::UnknownCoding)
        );
    }

    #[test]
    fn two_ways_to_end_a_body_are_refused() {
        let host = ("host", "h");
        for lines in [
            [
                host,
                ("content-length", "2"),
                ("transfer-encoding", "chunked"),
            ],
            [host, ("content-length", "2"), ("content-length", "2")],
            [host, ("content-length", "1, 1"), ("x", "")],
            [host, ("content-length", "+1"), ("x", "")],
            [
                host,
                ("content-length", "99999999999999999999999"),
                ("x", ""),
            ],
        ] {
            assert!(
                matches!(
                    checked(Version::HTTP_11, &lines),
                    Err(Unreadable::BadFraming(_))
                ),
                "{lines:?}"
            );
        }
        assert!(matches!(
            checked(Version::HTTP_10, &[("transfer-encoding", "chunked")]),
            Err(Unreadable::BadFraming(_))
        ));
    }
}
