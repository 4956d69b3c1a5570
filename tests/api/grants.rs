//! Join grants (`--join-secret`, `--join-key`): a join needs a JWT the
//! application's back end signed; every way one can be wrong is refused
//! with nothing created. Keys are made for each run by `openssl`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::helpers::{
    Joined, TestApp, assert_problem, json_body, spawn_app_with, spawn_one_node_with,
};

const SECRET: &str = "a-secret-of-at-least-32-bytes-for-hs256";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs()
}

/// Claims that open `room` for a minute, with `extra` added.
fn claims(room: &str, extra: Value) -> Value {
    let mut claims = json!({"room": room, "exp": now() + 60});
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    claims
}

fn hs256(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a grant is signed")
}

async fn join_with_grant(app: &TestApp, room: &str, grant: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/rooms/{room}/join")))
        .bearer_auth(grant)
        .json(&body)
        .send()
        .await
        .expect("the join is answered")
}

async fn secret_server() -> TestApp {
    spawn_app_with(&["--join-secret", SECRET]).await
}

#[tokio::test]
async fn a_grant_lets_its_holder_in_under_the_name_and_user_id_it_gives() {
    let app = secret_server().await;
    let grant = hs256(
        &claims(
            "lobby",
            json!({"sub": "user-42", "name": "Ada", "metadata": {"role": "host"}}),
        ),
        SECRET,
    );
    let first = Joined::from_response(
        join_with_grant(
            &app,
            "lobby",
            &grant,
            json!({"name": "not this", "metadata": {"role": "x"}}),
        )
        .await,
    )
    .await;
    assert_eq!(first.member["name"], json!("Ada"), "the grant's name wins");
    assert_eq!(first.member["metadata"], json!({"role": "host"}));
    assert_eq!(first.member["user_id"], json!("user-42"));
    assert!(first.owner);

    // Claims left out leave the body to say them; the others see the user id.
    let grant = hs256(&claims("lobby", json!({"sub": "user-7"})), SECRET);
    let second =
        Joined::from_response(join_with_grant(&app, "lobby", &grant, json!({"name": "Bob"})).await)
            .await;
    assert_eq!(second.member["name"], json!("Bob"));
    assert_eq!(second.member["user_id"], json!("user-7"));
    assert_eq!(second.members[0]["user_id"], json!("user-42"));
    let mut events = app.open_events(&first, None).await;
    events.expect_ready(&first, 0).await;
    let joined = events.expect("member-joined").await;
    assert_eq!(
        joined.data["member"]["user_id"],
        json!("user-7"),
        "{joined:?}"
    );
}

#[tokio::test]
async fn a_join_without_a_grant_is_refused_401_and_creates_nothing() {
    let app = secret_server().await;
    let response = app.post_join("lobby", None).await;
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    assert_problem(response, 401, "unauthorized").await;
    // A member's own token is no grant either.
    let grant = hs256(&claims("lobby", json!({})), SECRET);
    let member =
        Joined::from_response(join_with_grant(&app, "lobby", &grant, json!({})).await).await;
    assert!(member.owner, "the refused join made no room");
    let response = join_with_grant(&app, "lobby", &member.token, json!({})).await;
    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn every_wrong_grant_is_refused_and_creates_nothing() {
    let app = secret_server().await;
    let expired = json!({"room": "lobby", "exp": now() - 60});
    let not_yet = claims("lobby", json!({"nbf": now() + 60}));
    let no_expiry = json!({"room": "lobby"});
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims("lobby", json!({})).to_string());
    let unsigned = format!("{header}.{body}.");
    let refused = [
        ("expired", hs256(&expired, SECRET), "expired"),
        ("not valid yet", hs256(&not_yet, SECRET), "not valid yet"),
        ("no exp", hs256(&no_expiry, SECRET), "expiry"),
        (
            "another secret",
            hs256(
                &claims("lobby", json!({})),
                "another-secret-of-at-least-32-bytes!!",
            ),
            "signature",
        ),
        ("alg none", unsigned, "JWT"),
        ("not a JWT", "not-a-jwt".to_owned(), "JWT"),
    ];
    for (what, grant, detail) in refused {
        let problem = assert_problem(
            join_with_grant(&app, "lobby", &grant, json!({})).await,
            401,
            "unauthorized",
        )
        .await;
        let text = problem["detail"].as_str().unwrap_or_default();
        assert!(text.contains(detail), "{what}: {problem}");
    }
    let elsewhere = hs256(&claims("another-room", json!({})), SECRET);
    assert_problem(
        join_with_grant(&app, "lobby", &elsewhere, json!({})).await,
        403,
        "forbidden",
    )
    .await;
    let roomless = hs256(&json!({"exp": now() + 60}), SECRET);
    assert_problem(
        join_with_grant(&app, "lobby", &roomless, json!({})).await,
        403,
        "forbidden",
    )
    .await;

    let grant = hs256(&claims("lobby", json!({})), SECRET);
    let member =
        Joined::from_response(join_with_grant(&app, "lobby", &grant, json!({})).await).await;
    assert!(member.owner, "no refused join made the room");
    assert!(member.members.is_empty());
}

#[tokio::test]
async fn a_grant_for_a_prefix_opens_the_rooms_it_begins_and_no_other() {
    let app = secret_server().await;
    let grant = hs256(&claims("team-*", json!({})), SECRET);
    let response = join_with_grant(&app, "team-red", &grant, json!({})).await;
    assert_eq!(response.status(), 201);
    let response = join_with_grant(&app, "other", &grant, json!({})).await;
    assert_problem(response, 403, "forbidden").await;
}

#[tokio::test]
async fn a_grant_s_capacity_sizes_the_room_it_creates() {
    let app = secret_server().await;
    let grant = hs256(&claims("small", json!({"capacity": 2})), SECRET);
    let first =
        Joined::from_response(join_with_grant(&app, "small", &grant, json!({"capacity": 8})).await)
            .await;
    assert_eq!(first.capacity, 2);
    let grant = hs256(&claims("small", json!({})), SECRET);
    assert_eq!(
        join_with_grant(&app, "small", &grant, json!({}))
            .await
            .status(),
        201
    );
    assert_problem(
        join_with_grant(&app, "small", &grant, json!({})).await,
        409,
        "room_full",
    )
    .await;
}

#[tokio::test]
async fn refused_grants_count_against_the_join_rate() {
    // The join rate is each node's own: one node, so that all four reach it.
    let app = spawn_one_node_with(&["--join-secret", SECRET, "--join-rate", "3"]).await;
    let wrong = hs256(
        &claims("lobby", json!({})),
        "another-secret-of-at-least-32-bytes!!",
    );
    for _ in 0..3 {
        assert_problem(
            join_with_grant(&app, "lobby", &wrong, json!({})).await,
            401,
            "unauthorized",
        )
        .await;
    }
    let grant = hs256(&claims("lobby", json!({})), SECRET);
    assert_problem(
        join_with_grant(&app, "lobby", &grant, json!({})).await,
        429,
        "rate_limited",
    )
    .await;
}

/// Key pairs made by `openssl` in a directory of their own.
struct Keys {
    dir: PathBuf,
}

impl Keys {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("signalpost-grants-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        Self { dir }
    }

    fn openssl(&self, args: &[&str]) -> Vec<u8> {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("openssl runs (scripts/test installs it)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// Makes `<name>.key` (PKCS #8) and `<name>.pub` for `genpkey` options.
    fn pair(&self, name: &str, options: &[&str]) -> (Vec<u8>, PathBuf) {
        let key = format!("{name}.key");
        let public = format!("{name}.pub");
        let mut args = vec!["genpkey"];
        args.extend_from_slice(options);
        args.extend_from_slice(&["-out", &key]);
        self.openssl(&args);
        self.openssl(&["pkey", "-in", &key, "-pubout", "-out", &public]);
        let private = std::fs::read(self.dir.join(&key)).expect("the key was written");
        (private, self.dir.join(public))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sign(algorithm: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).expect("a grant is signed")
}

async fn key_server(path: &Path) -> TestApp {
    spawn_app_with(&["--join-key", path.to_str().expect("a UTF-8 path")]).await
}

#[tokio::test]
async fn grants_signed_with_rsa_p256_or_ed25519_keys_verify_against_their_pem() {
    let keys = Keys::new("pem");
    let grant = claims("lobby", json!({}));
    let cases = [
        (
            "rsa",
            vec!["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Algorithm::RS256,
        ),
        (
            "p256",
            vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Algorithm::ES256,
        ),
        ("ed25519", vec!["-algorithm", "ED25519"], Algorithm::EdDSA),
    ];
    for (name, options, algorithm) in cases {
        let (private, public) = keys.pair(name, &options);
        let key = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&private),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&private),
            _ => EncodingKey::from_ed_pem(&private),
        }
        .expect("openssl's key reads");
        let app = key_server(&public).await;
        let response = join_with_grant(
            &app,
            "lobby",
            &sign(algorithm, None, &key, &grant),
            json!({}),
        )
        .await;
        assert_eq!(response.status(), 201, "{name}");

        // Key confusion: an HS256 grant whose secret is the public key's text.
        let public_text = std::fs::read(&public).expect("the public key was written");
        let confused = sign(
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(&public_text),
            &grant,
        );
        let problem = assert_problem(
            join_with_grant(&app, "lobby", &confused, json!({})).await,
            401,
            "unauthorized",
        )
        .await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("algorithm"),
            "{name}: {problem}"
        );
    }
}

#[tokio::test]
async fn a_jwks_checks_each_grant_with_the_key_its_kid_names() {
    let keys = Keys::new("jwks");
    let (rsa_private, rsa_public) = keys.pair(
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let (ed_private, ed_public) = keys.pair("ed", &["-algorithm", "ED25519"]);
    let modulus = keys.openssl(&[
        "rsa",
        "-pubin",
        "-in",
        rsa_public.to_str().expect("a UTF-8 path"),
        "-modulus",
        "-noout",
    ]);
    let modulus = String::from_utf8(modulus).expect("hex");
    let modulus = modulus.trim().trim_start_matches("Modulus=");
    let modulus: Vec<u8> = (0..modulus.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&modulus[at..at + 2], 16).expect("hex digits"))
        .collect();
    let ed_der = keys.openssl(&[
        "pkey",
        "-pubin",
        "-in",
        ed_public.to_str().expect("a UTF-8 path"),
        "-outform",
        "DER",
    ]);
    let ed_x = &ed_der[ed_der.len() - 32..];
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
         "n": URL_SAFE_NO_PAD.encode(&modulus), "e": "AQAB"},
        {"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(ed_x)},
    ]});
    std::fs::write(keys.path("jwks.json"), jwks.to_string()).expect("the JWKS is written");
    let app = key_server(&keys.path("jwks.json")).await;
    let rsa = EncodingKey::from_rsa_pem(&rsa_private).expect("openssl's key reads");
    let ed = EncodingKey::from_ed_pem(&ed_private).expect("openssl's key reads");
    let grant = claims("lobby", json!({}));

    for (kid, algorithm, key) in [
        ("rsa-1", Algorithm::RS256, &rsa),
        ("ed-1", Algorithm::EdDSA, &ed),
    ] {
        let response = join_with_grant(
            &app,
            "lobby",
            &sign(algorithm, Some(kid), key, &grant),
            json!({}),
        )
        .await;
        assert_eq!(response.status(), 201, "{kid}");
    }
    for (what, token) in [
        (
            "an unknown kid",
            sign(Algorithm::RS256, Some("rsa-2"), &rsa, &grant),
        ),
        (
            "no kid, two keys",
            sign(Algorithm::RS256, None, &rsa, &grant),
        ),
        (
            "the kid of another key",
            sign(Algorithm::RS256, Some("ed-1"), &rsa, &grant),
        ),
    ] {
        let response = join_with_grant(&app, "lobby", &token, json!({})).await;
        assert_eq!(response.status(), 401, "{what}");
    }
}

#[test]
fn the_server_does_not_start_with_a_short_secret_or_a_key_it_cannot_use() {
    let keys = Keys::new("bad");
    std::fs::write(keys.path("junk.pem"), "not a key").expect("written");
    let junk = keys.path("junk.pem");
    for args in [
        vec!["--join-secret", "short"],
        vec!["--join-key", junk.to_str().expect("a UTF-8 path")],
        vec!["--join-key", "/nonexistent/key.pem"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_signalpost"))
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .expect("signalpost runs");
        assert!(!output.status.success(), "{args:?} starts");
        // A flag's rule on stderr, a key file's problem in the log.
        let said = [output.stderr, output.stdout].concat();
        let said = String::from_utf8_lossy(&said);
        assert!(said.contains("--join-"), "{args:?}: {said}");
    }
}

#[tokio::test]
async fn a_grant_that_says_owner_false_never_owns_and_the_room_waits_for_one_that_may() {
    let app = secret_server().await;
    let guest = |user: &str| {
        hs256(
            &claims("class", json!({"sub": user, "owner": false})),
            SECRET,
        )
    };
    let first =
        Joined::from_response(join_with_grant(&app, "class", &guest("pupil-1"), json!({})).await)
            .await;
    assert!(!first.owner, "it made the room, and does not own it");
    let room: Value = app
        .get_room("class", Some(&first.token))
        .await
        .json()
        .await
        .expect("the room");
    assert_eq!(room["owner"], Value::Null);
    let response = app.patch_room("class", Some(&first.token), true).await;
    assert_problem(response, 403, "forbidden").await;

    let mut events = app.open_events(&first, None).await;
    events.expect_ready(&first, 0).await;
    let teacher = hs256(&claims("class", json!({"sub": "teacher"})), SECRET);
    let owner =
        Joined::from_response(join_with_grant(&app, "class", &teacher, json!({})).await).await;
    assert!(owner.owner, "the first member who may own the room owns it");
    events.expect("member-joined").await;
    let updated = events.expect("room-updated").await;
    assert_eq!(updated.data["owner"], json!(owner.member_id));

    // When the owner leaves, ownership passes over members who may not own.
    let second =
        Joined::from_response(join_with_grant(&app, "class", &guest("pupil-2"), json!({})).await)
            .await;
    assert!(!second.owner);
    events.expect("member-joined").await;
    assert_eq!(app.leave(&owner).await.status(), 204);
    events.expect("member-left").await;
    let updated = events.expect("room-updated").await;
    assert_eq!(updated.data["owner"], Value::Null, "nobody left may own it");
}

#[tokio::test]
async fn a_whip_encoder_s_bearer_token_is_its_join_grant() {
    let app = secret_server().await;
    let owner = json_body(
        join_with_grant(
            &app,
            "studio",
            &hs256(&claims("studio", json!({})), SECRET),
            json!({}),
        )
        .await,
        201,
    )
    .await;
    let whip = |grant: Option<String>| {
        let mut request = app
            .client
            .post(app.url("/rooms/studio/whip?name=OBS"))
            .header("content-type", "application/sdp")
            .body("v=0\r\n");
        if let Some(grant) = grant {
            request = request.bearer_auth(grant);
        }
        request.send()
    };

    assert_problem(whip(None).await.unwrap(), 401, "unauthorized").await;
    // Nothing of a room is told to a client the join refuses.
    let nowhere = app
        .client
        .post(app.url("/rooms/nowhere/whip"))
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_problem(nowhere, 401, "unauthorized").await;
    let elsewhere = hs256(&claims("other", json!({})), SECRET);
    assert_problem(whip(Some(elsewhere)).await.unwrap(), 403, "forbidden").await;
    // Let in, it finds nobody who answers in time: the grant's metadata and
    // the publisher's mark are what the others saw.
    let grant = hs256(
        &claims("studio", json!({"metadata": {"team": "red"}})),
        SECRET,
    );
    let member_id = owner["member"]["id"].clone();
    let joined = Joined::from_body(owner);
    let mut events = app.open_drained(&joined, 0).await;
    let pending = tokio::spawn(whip(Some(grant)));
    let seen = events.expect("member-joined").await;
    assert_eq!(
        seen.data["member"]["metadata"],
        json!({"team": "red", "whip": "publisher", "peer": member_id})
    );
    assert_eq!(seen.data["member"]["name"], json!("OBS"));
    pending.abort();
}
