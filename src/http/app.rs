//! The whole HTTP application: the shared `AppState`, the API modules merged
//! into one router, `/openapi.json`, `/docs`, `/metrics`, the problem+json
//! fallbacks for unknown routes and methods, and the layers every request
//! goes through.

use std::sync::Arc;

use axum::Router;
use axum::http::header::{
    AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, LINK, LOCATION, RETRY_AFTER,
};
use axum::http::{HeaderName, HeaderValue, Method};
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::Config;
use crate::domain::inbox::Limits;
use crate::http::api::ice::IceConfig;
use crate::http::auth::AdminToken;
use crate::http::error::{ApiError, Problem};
use crate::http::grant::Grants;
use crate::http::password::Passwords;
use crate::http::{api, web};
use crate::hub::{Hub, RedisPrimary, Settings};
use crate::model::{
    GapData, LeaveReason, MemberJoinedData, MemberLeftData, MemberUpdatedData, ReadyData,
    RoomUpdatedData, SignalData,
};
use crate::observe;
use crate::rate::Limiters;
use crate::webhook::{self, Posters, Webhooks};

/// What every handler gets: one reference-counted pointer, since every
/// extractor of every request clones it (a `CancellationToken` clone alone
/// takes a lock).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The state behind `AppState`.
pub struct Shared {
    pub hub: Hub,
    pub limiters: Arc<Limiters>,
    pub config: Arc<Config>,
    /// STUN and TURN servers for `GET /ice-servers`.
    pub ice: Arc<IceConfig>,
    /// Kept apart from `config` so that it is compared, never printed.
    pub admin_token: Option<AdminToken>,
    /// The keys join grants are checked with, when joins need one.
    pub grants: Option<Grants>,
    /// Where room passwords are hashed and checked.
    pub passwords: Passwords,
    /// Cancelled when the server starts shutting down: streams, polls and
    /// the reaper end on it.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// The state for `config`: in memory, or shared through Redis when
    /// `--redis-url` is given (which fails if Redis cannot be reached).
    pub async fn new(config: Config, shutdown: CancellationToken) -> std::io::Result<Self> {
        let settings = Settings {
            default_capacity: config.default_capacity,
            max_capacity: config.max_capacity,
            limits: Limits {
                events: config.inbox_limit as usize,
                bytes: config.inbox_bytes,
                // A full room's worth of joins and leaves, and room updates.
                headroom: 2 * config.max_capacity as usize + 2,
            },
            member_timeout: config.member_timeout,
            max_members: config.max_members,
            max_kept_rooms: config.max_kept_rooms,
            max_readers: config.max_streams,
            notices: !config.webhook_url.is_empty(),
        };
        let primary = match (&config.redis_url, config.redis_sentinel.is_empty()) {
            (Some(urls), _) if config.redis_cluster => Some(RedisPrimary::Cluster(
                urls.split(',')
                    .map(str::trim)
                    .filter(|url| !url.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
            (Some(url), _) => Some(RedisPrimary::Url(url.clone())),
            (None, false) => Some(RedisPrimary::Sentinel {
                sentinels: config.redis_sentinel.clone(),
                name: config.redis_master_name.clone(),
            }),
            (None, true) => None,
        };
        let posters = Posters::from_config(&config)
            .map_err(|problem| std::io::Error::new(std::io::ErrorKind::InvalidInput, problem))?;
        let hub = match (primary, posters) {
            (None, Some(posters)) => {
                Hub::memory_heard(settings, Webhooks::start(posters, shutdown.clone()))
            }
            (None, None) => Hub::memory(settings),
            (Some(primary), posters) => {
                let hub = Hub::redis(primary, config.redis_prefix.clone(), settings).await?;
                if let (Some(posters), Hub::Redis(redis)) = (posters, &hub) {
                    tokio::spawn(webhook::serve_kept(
                        redis.clone(),
                        posters,
                        shutdown.clone(),
                    ));
                }
                hub
            }
        };
        let grants = Grants::from_config(&config)
            .map_err(|problem| std::io::Error::new(std::io::ErrorKind::InvalidInput, problem))?;
        let ice = IceConfig {
            stun_urls: config.stun_url.clone(),
            turn_urls: config.turn_uri.clone(),
            turn_secret: config.turn_secret.clone(),
            turn_ttl: config.turn_ttl,
        };
        Ok(Self(Arc::new(Shared {
            hub,
            ice: Arc::new(ice),
            limiters: Arc::new(Limiters::new(config.join_rate, config.signal_rate)),
            admin_token: config.admin_token.as_deref().map(AdminToken::new),
            grants,
            passwords: Passwords::default(),
            config: Arc::new(config),
            shutdown,
        })))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "signalpost",
        description = "WebRTC signaling over plain HTTP. Join a room with `POST /rooms/{room_id}/join`, \
                       keep the returned token, open your inbox as a Server-Sent-Events stream (or long-poll it), \
                       and send offers, answers and ICE candidates with `POST /signals`. \
                       Every error is `application/problem+json` with a stable `code`. \
                       The rules behind each call, event and code are written out in \
                       [docs/API.md](docs/API.md) of signalpost's source.",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    modifiers(&SecuritySchemes),
    components(schemas(Problem, ReadyData, GapData, MemberJoinedData, MemberLeftData, MemberUpdatedData, LeaveReason, SignalData, RoomUpdatedData)),
    tags(
        (name = "rooms", description = "Join, leave, look at and lock rooms"),
        (name = "inbox", description = "A member's events: SSE stream or long-poll"),
        (name = "signals", description = "Relay a message to one member or the whole room"),
        (name = "admin", description = "Calls for the admin token"),
        (name = "server", description = "Health"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The member token from join, or the admin token"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "grant",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A join grant: a JWT the application's back end signed, which a server started \
                         with --join-secret or --join-key asks every join for",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The same token in the query, for clients that cannot set headers (EventSource)",
            ))),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::http::auth::TOKEN_COOKIE,
                "The same token as the HttpOnly cookie join sets, scoped to the member's own path",
            ))),
        );
    }
}

/// The API routes and the OpenAPI document generated from them.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(api::join::router())
        .merge(api::inbox::router())
        .merge(api::signals::router())
        .merge(api::whip::router())
        .merge(api::rooms::router())
        .merge(api::admin::router())
        .merge(api::ice::router())
        .merge(api::health::router())
        .split_for_parts();
    // After the routes: it rewrites the poll's answer, which they bring.
    api::events::TypedEvents.modify(&mut doc);
    (router, doc)
}

/// The OpenAPI document, as `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// The whole application, ready to serve.
pub fn router(state: AppState) -> App {
    let (mut api, doc) = api();
    // Every route the router has, for the metrics' route labels; anything
    // else (the web pages, a 404) is counted as `<no route>`. Swagger UI's
    // are the ones `SwaggerUi` makes of its path.
    let mut templates: Vec<String> = doc.paths.paths.keys().cloned().collect();
    templates.extend([
        OPENAPI_PATH.to_owned(),
        DOCS_PATH.to_owned(),
        format!("{DOCS_PATH}/"),
        format!("{DOCS_PATH}/{{*rest}}"),
    ]);
    if state.config.metrics_listen.is_none() {
        api = api.route("/metrics", axum::routing::get(api::metrics::render_metrics));
        templates.push("/metrics".to_owned());
    }
    let observe = observe::ObserveLayer::new(templates);
    let router = api
        .merge(SwaggerUi::new(DOCS_PATH).url(OPENAPI_PATH, doc))
        .fallback(web::serve)
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    // Off unless origins are named: a browser then calls only its own origin.
    let router = match cors(&state.config.cors_origin) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    observe.layer(router.with_state(state))
}

/// The application as it is served: the router inside `observe`, which
/// wraps it whole rather than each route (see `observe::ObserveLayer`).
pub type App = observe::Observe<Router>;

/// Where Swagger UI is, and the OpenAPI document it reads.
const DOCS_PATH: &str = "/docs";
const OPENAPI_PATH: &str = "/openapi.json";

/// `/metrics` alone, for `--metrics-listen`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(api::metrics::render_metrics))
        .with_state(state)
}

/// The CORS answer for the `--cors-origin`s, preflight included: the API
/// and the streams, with the headers a client sends (`Authorization`,
/// `Content-Type`, `Last-Event-ID`) and reads (`Retry-After`). No
/// credentials: another origin presents its token in `Authorization` or
/// `?token=`, never the member cookie.
fn cors(origins: &[HeaderValue]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                AUTHORIZATION,
                CONTENT_TYPE,
                IF_MATCH,
                HeaderName::from_static("last-event-id"),
            ])
            // Location, ETag and Link: what WHIP and WHEP clients read.
            .expose_headers([RETRY_AFTER, observe::request::HEADER, LOCATION, ETAG, LINK])
            .max_age(std::time::Duration::from_secs(600)),
    )
}
