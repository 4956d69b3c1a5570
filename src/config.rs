//! The server's settings: one clap `Config`, every flag with its
//! `SIGNALPOST_*` environment twin.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::Parser;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The rest of a manual page, after the options of `--help`.
const AFTER_LONG_HELP: &str = "\
Endpoints:
  POST   /rooms/{room}/join                      join (creating the room); answers the member token
  GET    /rooms/{room}/members/{member}/events   the member's inbox as Server-Sent Events
  GET    /rooms/{room}/members/{member}/poll     the same inbox by long-poll
  POST   /signals                                send to one member or to the whole room
  DELETE /rooms/{room}/members/{member}          leave, or remove (owner, admin)
  GET    /rooms/{room}, PATCH /rooms/{room}      look at, lock and unlock a room
  GET    /ice-servers                            STUN and TURN servers for RTCPeerConnection
  GET    /rooms                                  every room (admin)
  GET    /healthz, /readyz                       alive; able to serve now
  GET    /openapi.json, /docs                    the OpenAPI document; Swagger UI
  GET    /                                       a video call page, and /chat.html

Examples:
  signalpost
      Serve on 127.0.0.1:8080, state in memory.
  signalpost --listen 0.0.0.0:8080 --admin-token \"$ADMIN_TOKEN\"
      Serve every interface; the admin token opens GET /rooms.
  signalpost --redis-url redis://10.0.0.5:6379
      One node of several sharing one Redis, behind any load balancer.
  signalpost --redis-sentinel 10.0.0.7:26379,10.0.0.8:26379,10.0.0.9:26379
      The same, on the primary that Redis Sentinel names, through failovers.
  signalpost --stun-url stun:turn.example.com:3478 --turn-uri turn:turn.example.com:3478 \\
             --turn-secret \"$TURN_SECRET\"
      Hand out STUN and per-member TURN credentials (coturn use-auth-secret).
  SIGNALPOST_MEMBER_TIMEOUT=60 signalpost
      Any option from the environment.

Logs:
  One line per join, leave and timeout on standard output, each with its
  request id, never a token. RUST_LOG filters them (RUST_LOG=signalpost=debug);
  --log-format json writes one JSON object per line.

Signals:
  SIGTERM or Ctrl-C stops accepting, ends open streams and polls, lets
  requests in flight finish for --shutdown-grace seconds, then exits.

Exit status:
  0 after a clean stop; 1 when the address cannot be bound or Redis cannot
  be reached at start; 2 for invalid options.

See also: docs/running.md for every setting, docs/API.md for the API, and
the OpenAPI document at /openapi.json.";

/// Everything an operator can set. Defaults follow docs/API.md.
#[derive(Clone, Parser)]
#[command(
    name = "signalpost",
    version,
    about = "WebRTC signaling over plain HTTP: REST commands in, Server-Sent Events or long-poll out.",
    long_about = "signalpost relays WebRTC signaling (SDP offers and answers, ICE candidates, any \
                  application message) between the members of a room. Clients send commands with \
                  ordinary HTTP requests and read their inbox as a Server-Sent-Events stream or by \
                  long-polling. The OpenAPI document is served at /openapi.json and Swagger UI at /docs.",
    after_long_help = AFTER_LONG_HELP
)]
pub struct Config {
    /// Address to serve on (0.0.0.0:8080 for all interfaces).
    #[arg(
        long,
        env = "SIGNALPOST_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    #[arg(help_heading = "Serving")]
    pub listen: SocketAddr,

    /// Bearer token that opens the admin calls. Without one, admin calls answer 401/403.
    #[arg(
        long,
        env = "SIGNALPOST_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    #[arg(help_heading = "Serving")]
    pub admin_token: Option<String>,

    /// Joins need a grant: a JWT (HS256) signed with this secret, at least 32 bytes, sent as `Authorization: Bearer`.
    #[arg(
        long,
        env = "SIGNALPOST_JOIN_SECRET",
        value_name = "SECRET",
        hide_env_values = true,
        conflicts_with = "join_key"
    )]
    #[arg(help_heading = "Serving")]
    pub join_secret: Option<String>,

    /// Tell the application's back end of rooms made and closed and members in and out: POST each to this URL, signed as Standard Webhooks says; repeatable.
    #[arg(
        long,
        env = "SIGNALPOST_WEBHOOK_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    #[arg(help_heading = "Serving")]
    pub webhook_url: Vec<String>,

    /// The webhooks' signing secret, `whsec_` and a base64 key of 24 to 64 bytes.
    #[arg(
        long,
        env = "SIGNALPOST_WEBHOOK_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    #[arg(help_heading = "Serving")]
    pub webhook_secret: Option<String>,

    /// Joins need a grant: a JWT signed with the private half of this public key, a PEM file (RSA: RS256, P-256: ES256, Ed25519: EdDSA) or a JWKS file.
    #[arg(long, env = "SIGNALPOST_JOIN_KEY", value_name = "FILE")]
    #[arg(help_heading = "Serving")]
    pub join_key: Option<std::path::PathBuf>,

    /// Seconds an inbox may go unread (no stream, no poll) before its member is removed.
    #[arg(long, env = "SIGNALPOST_MEMBER_TIMEOUT", value_name = "SECS", default_value = "30", value_parser = parse_seconds)]
    #[arg(help_heading = "Rooms and inboxes")]
    pub member_timeout: Duration,

    /// Seconds between `: keep-alive` comment lines on an idle SSE stream.
    #[arg(long, env = "SIGNALPOST_KEEP_ALIVE", value_name = "SECS", default_value = "15", value_parser = parse_seconds)]
    #[arg(help_heading = "Rooms and inboxes")]
    pub keep_alive: Duration,

    /// Capacity of a new room when the join names none.
    #[arg(long, env = "SIGNALPOST_DEFAULT_CAPACITY", value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(2..))]
    #[arg(help_heading = "Rooms and inboxes")]
    pub default_capacity: u32,

    /// Largest capacity a join may ask for.
    #[arg(long, env = "SIGNALPOST_MAX_CAPACITY", value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(2..))]
    #[arg(help_heading = "Rooms and inboxes")]
    pub max_capacity: u32,

    /// Largest `POST /signals` body, in bytes.
    #[arg(
        long,
        env = "SIGNALPOST_PAYLOAD_LIMIT",
        value_name = "BYTES",
        default_value_t = 65536
    )]
    #[arg(help_heading = "Rooms and inboxes")]
    pub payload_limit: usize,

    /// Undelivered events one inbox may hold.
    #[arg(long, env = "SIGNALPOST_INBOX_LIMIT", value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    #[arg(help_heading = "Rooms and inboxes")]
    pub inbox_limit: u32,

    /// Undelivered bytes of event data one inbox may hold.
    #[arg(
        long,
        env = "SIGNALPOST_INBOX_BYTES",
        value_name = "BYTES",
        default_value_t = 1_048_576
    )]
    #[arg(help_heading = "Rooms and inboxes")]
    pub inbox_bytes: usize,

    /// Joins per minute one client address may make (bursts of as many); an IPv6 /64 is one address.
    #[arg(long, env = "SIGNALPOST_JOIN_RATE", value_name = "N", default_value_t = NonZeroU32::new(120).expect("120 > 0"))]
    #[arg(help_heading = "Abuse limits")]
    pub join_rate: NonZeroU32,

    /// Signals per second one member may send (bursts of as many).
    #[arg(long, env = "SIGNALPOST_SIGNAL_RATE", value_name = "N", default_value_t = NonZeroU32::new(100).expect("100 > 0"))]
    #[arg(help_heading = "Abuse limits")]
    pub signal_rate: NonZeroU32,

    /// Members the whole server may hold; a join past it answers 503 `server_busy`.
    #[arg(
        long,
        env = "SIGNALPOST_MAX_MEMBERS",
        value_name = "N",
        default_value_t = 100_000
    )]
    #[arg(help_heading = "Abuse limits")]
    pub max_members: usize,

    /// Rooms the service made in advance (`POST /rooms`) that it may keep at once, with members or without; one more answers 503 `server_busy`.
    #[arg(
        long,
        env = "SIGNALPOST_MAX_KEPT_ROOMS",
        value_name = "N",
        default_value_t = 10_000
    )]
    #[arg(help_heading = "Abuse limits")]
    pub max_kept_rooms: usize,

    /// Open SSE streams and waiting polls the whole server may hold; one more answers 503 `server_busy`.
    #[arg(
        long,
        env = "SIGNALPOST_MAX_STREAMS",
        value_name = "N",
        default_value_t = 100_000
    )]
    #[arg(help_heading = "Abuse limits")]
    pub max_streams: usize,

    /// Seconds a client gets to send a request's headers (slow-loris guard).
    #[arg(long, env = "SIGNALPOST_HEADER_TIMEOUT", value_name = "SECS", default_value = "10", value_parser = parse_seconds)]
    #[arg(help_heading = "Abuse limits")]
    pub header_timeout: Duration,

    /// Largest request head (request line and headers), in bytes; at least 8192.
    #[arg(long, env = "SIGNALPOST_MAX_HEADER_BYTES", value_name = "BYTES", default_value_t = 16384,
          value_parser = clap::value_parser!(u32).range(8192..))]
    #[arg(help_heading = "Abuse limits")]
    pub max_header_bytes: u32,

    /// Seconds a write to a client may stay blocked (the client reads nothing)
    /// before the connection is dropped. The inbox keeps the events for a resume.
    #[arg(long, env = "SIGNALPOST_WRITE_TIMEOUT", value_name = "SECS", default_value = "30", value_parser = parse_seconds)]
    #[arg(help_heading = "Abuse limits")]
    pub write_timeout: Duration,

    /// Serve `/metrics` (Prometheus) on this address instead of on the API's
    /// (`127.0.0.1:9100`), to keep it off the public listener.
    #[arg(long, env = "SIGNALPOST_METRICS_LISTEN", value_name = "ADDR")]
    #[arg(help_heading = "Logs and metrics")]
    pub metrics_listen: Option<SocketAddr>,

    /// How log lines are written: `text` for people, `json` (one object per
    /// line, with the request's span) for log collectors. `RUST_LOG` filters
    /// them either way.
    #[arg(long, env = "SIGNALPOST_LOG_FORMAT", value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    #[arg(help_heading = "Logs and metrics")]
    pub log_format: LogFormat,

    /// Serve the web pages from this folder instead of the copy built into the
    /// binary (for working on them without rebuilding).
    #[arg(long, env = "SIGNALPOST_WEB_DIR", value_name = "DIR")]
    #[arg(help_heading = "Browsers")]
    pub web_dir: Option<std::path::PathBuf>,

    /// Serve HTTPS with this certificate chain (PEM), HTTP/2 negotiated by
    /// ALPN; needs `--tls-key`. Without it, plain HTTP (HTTP/1.1 and h2c).
    #[arg(
        long,
        env = "SIGNALPOST_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    #[arg(help_heading = "Serving")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key of `--tls-cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "SIGNALPOST_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    #[arg(help_heading = "Serving")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Let pages of this origin (`https://app.example.com`) call the API and
    /// open streams from the browser; repeat the flag for more. Without it,
    /// only pages served by signalpost itself can.
    #[arg(long, env = "SIGNALPOST_CORS_ORIGIN", value_name = "ORIGIN", value_delimiter = ',', value_parser = parse_origin)]
    #[arg(help_heading = "Browsers")]
    pub cors_origin: Vec<axum::http::HeaderValue>,

    /// A STUN server for `GET /ice-servers` (`stun:stun.example.com:3478`);
    /// repeat the flag for more. None by default: peers on one network
    /// connect without one.
    #[arg(
        long,
        env = "SIGNALPOST_STUN_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    #[arg(help_heading = "ICE servers")]
    pub stun_url: Vec<String>,

    /// A TURN server for `GET /ice-servers`
    /// (`turn:turn.example.com:3478?transport=udp`, `turns:…`); repeat for
    /// more. Served only with `--turn-secret`.
    #[arg(
        long,
        env = "SIGNALPOST_TURN_URI",
        value_name = "URI",
        value_delimiter = ','
    )]
    #[arg(help_heading = "ICE servers")]
    pub turn_uri: Vec<String>,

    /// The secret shared with the TURN server (coturn's `static-auth-secret`
    /// with `use-auth-secret`): members get credentials minted from it.
    #[arg(
        long,
        env = "SIGNALPOST_TURN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    #[arg(help_heading = "ICE servers")]
    pub turn_secret: Option<String>,

    /// Seconds a member's TURN credentials stay valid.
    #[arg(long, env = "SIGNALPOST_TURN_TTL", value_name = "SECS", default_value = "86400", value_parser = parse_seconds)]
    #[arg(help_heading = "ICE servers")]
    pub turn_ttl: Duration,

    /// Seconds a WHIP or WHEP offer waits for the member's answer before it
    /// is refused 504 `no_answer` and its member leaves; OBS gives up on
    /// its request after 8.
    #[arg(long, env = "SIGNALPOST_ANSWER_TIMEOUT", value_name = "SECS", default_value = "6", value_parser = parse_seconds)]
    #[arg(help_heading = "Rooms and inboxes")]
    pub answer_timeout: Duration,

    /// Share the state with every node pointed at this Redis
    /// (`redis://host:6379`, `rediss://` for TLS), so that several nodes
    /// serve one service behind any load balancer. Without it, the state
    /// lives in this process's memory.
    #[arg(
        long,
        env = "SIGNALPOST_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    #[arg(help_heading = "Several nodes")]
    pub redis_url: Option<String>,

    /// The --redis-url is a Redis Cluster: a comma-separated list of some
    /// of its nodes (`redis://a:6379,redis://b:6379`), from which the
    /// others are found. Each room lives on the primary of its slot.
    #[arg(
        long,
        env = "SIGNALPOST_REDIS_CLUSTER",
        requires = "redis_url",
        conflicts_with = "redis_sentinel"
    )]
    #[arg(help_heading = "Several nodes")]
    pub redis_cluster: bool,

    /// Instead of one fixed --redis-url, follow the primary these Redis
    /// Sentinels name (`host:port`, repeatable): when they fail it over to a
    /// replica, every node moves to the new primary within a second,
    /// without a restart.
    #[arg(
        long,
        env = "SIGNALPOST_REDIS_SENTINEL",
        value_name = "ADDR",
        value_delimiter = ',',
        conflicts_with = "redis_url"
    )]
    #[arg(help_heading = "Several nodes")]
    pub redis_sentinel: Vec<String>,

    /// The name the Sentinels monitor the primary under.
    #[arg(
        long,
        env = "SIGNALPOST_REDIS_MASTER_NAME",
        value_name = "NAME",
        default_value = "mymaster"
    )]
    #[arg(help_heading = "Several nodes")]
    pub redis_master_name: String,

    /// Prefix of every key and channel in Redis, so that several services
    /// can share one Redis. A node refuses to start beside nodes of a
    /// version that writes another format under the same prefix.
    #[arg(
        long,
        env = "SIGNALPOST_REDIS_PREFIX",
        value_name = "PREFIX",
        default_value = "signalpost"
    )]
    #[arg(help_heading = "Several nodes")]
    pub redis_prefix: String,

    /// Seconds that open streams and polls get to finish after SIGTERM before the server exits anyway.
    #[arg(long, env = "SIGNALPOST_SHUTDOWN_GRACE", value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    #[arg(help_heading = "Stopping")]
    pub shutdown_grace: Duration,
}

/// The least length of `--join-secret`: an HS256 key shorter than its
/// 256-bit hash is weaker than the algorithm (RFC 7518 §3.2).
pub const JOIN_SECRET_MIN: usize = 32;

impl Config {
    /// Rules between flags that clap cannot express.
    pub fn check(&self) -> Result<(), String> {
        if self.default_capacity > self.max_capacity {
            return Err(format!(
                "--default-capacity ({}) is larger than --max-capacity ({})",
                self.default_capacity, self.max_capacity
            ));
        }
        if self
            .join_secret
            .as_ref()
            .is_some_and(|secret| secret.len() < JOIN_SECRET_MIN)
        {
            return Err(format!(
                "--join-secret must be at least {} bytes long",
                JOIN_SECRET_MIN
            ));
        }
        Ok(())
    }

    /// The configuration with every default and the given flags, as the command line would give it.
    ///
    /// Tests use it to start servers with short timeouts.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let config = Self::try_parse_from(
            std::iter::once("signalpost".into()).chain(args.into_iter().map(Into::into)),
        )?;
        config.check().map_err(|problem| {
            clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, problem)
        })?;
        Ok(config)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::from_args(std::iter::empty::<String>()).expect("the defaults are valid flags")
    }
}

// Hand-written rather than derived so the admin token can never reach a log.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "join_secret",
                &self.join_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("webhook_url", &self.webhook_url)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("join_key", &self.join_key)
            .field("member_timeout", &self.member_timeout)
            .field("keep_alive", &self.keep_alive)
            .field("default_capacity", &self.default_capacity)
            .field("max_capacity", &self.max_capacity)
            .field("payload_limit", &self.payload_limit)
            .field("inbox_limit", &self.inbox_limit)
            .field("inbox_bytes", &self.inbox_bytes)
            .field("join_rate", &self.join_rate)
            .field("signal_rate", &self.signal_rate)
            .field("max_members", &self.max_members)
            .field("max_kept_rooms", &self.max_kept_rooms)
            .field("max_streams", &self.max_streams)
            .field("header_timeout", &self.header_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("web_dir", &self.web_dir)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("metrics_listen", &self.metrics_listen)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("log_format", &self.log_format)
            .field("cors_origin", &self.cors_origin)
            .field("stun_url", &self.stun_url)
            .field("turn_uri", &self.turn_uri)
            .field(
                "turn_secret",
                &self.turn_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("turn_ttl", &self.turn_ttl)
            .field("answer_timeout", &self.answer_timeout)
            // A Redis URL may carry a password.
            .field("redis_url", &self.redis_url.as_ref().map(|_| "[redacted]"))
            .field("redis_cluster", &self.redis_cluster)
            .field("redis_sentinel", &self.redis_sentinel)
            .field("redis_master_name", &self.redis_master_name)
            .field("redis_prefix", &self.redis_prefix)
            .finish()
    }
}

/// An origin as browsers send it: `scheme://host[:port]`, no path.
fn parse_origin(text: &str) -> Result<axum::http::HeaderValue, String> {
    let uri: axum::http::Uri = text
        .parse()
        .map_err(|_| format!("`{text}` is not an origin like https://app.example.com"))?;
    let plain = uri.scheme().is_some()
        && uri.authority().is_some()
        && matches!(uri.path(), "" | "/")
        && uri.query().is_none()
        && !text.ends_with('/');
    if !plain {
        return Err(format!(
            "`{text}` is not an origin like https://app.example.com (no path, no trailing slash)"
        ));
    }
    axum::http::HeaderValue::from_str(text).map_err(|_| format!("`{text}` is not a header value"))
}

/// Seconds as a positive decimal number (`30`, `0.5`), so tests can use short durations.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(format!(
            "`{text}` must be more than 0 and at most 86400 seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_api_contract() {
        let config = Config::default();
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.member_timeout, Duration::from_secs(30));
        assert_eq!(config.keep_alive, Duration::from_secs(15));
        assert_eq!(config.default_capacity, 10);
        assert_eq!(config.max_capacity, 50);
        assert_eq!(config.payload_limit, 65536);
        assert_eq!(config.inbox_limit, 256);
        assert_eq!(config.inbox_bytes, 1_048_576);
        assert!(config.admin_token.is_none());
    }

    #[test]
    fn seconds_accept_fractions_and_refuse_nonsense() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn the_admin_token_is_redacted_from_debug_output() {
        let config = Config::from_args(["--admin-token", "hunter2"]).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn the_join_secret_is_redacted_from_debug_output() {
        let secret = "a-join-secret-of-at-least-32-bytes";
        let config = Config::from_args(["--join-secret", secret]).unwrap();
        assert!(!format!("{config:?}").contains(secret));
    }

    #[test]
    fn a_join_secret_shorter_than_32_bytes_is_refused() {
        assert!(Config::from_args(["--join-secret", "only-31-bytes-long-secret-text!"]).is_err());
        assert!(Config::from_args(["--join-secret", "exactly-32-bytes-long-secret-txt"]).is_ok());
    }
}
