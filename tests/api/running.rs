//! Running the binary: `--help` lists every contract flag with its
//! environment twin, the twins work, and tokens never reach the log.

use serde_json::json;

use crate::helpers::{Joined, ServerProcess, json_body, send};

/// The flags docs/API.md makes part of the contract, with their environment twins.
const CONTRACT_FLAGS: [(&str, &str); 9] = [
    ("--listen", "SIGNALPOST_LISTEN"),
    ("--admin-token", "SIGNALPOST_ADMIN_TOKEN"),
    ("--member-timeout", "SIGNALPOST_MEMBER_TIMEOUT"),
    ("--keep-alive", "SIGNALPOST_KEEP_ALIVE"),
    ("--default-capacity", "SIGNALPOST_DEFAULT_CAPACITY"),
    ("--max-capacity", "SIGNALPOST_MAX_CAPACITY"),
    ("--payload-limit", "SIGNALPOST_PAYLOAD_LIMIT"),
    ("--inbox-limit", "SIGNALPOST_INBOX_LIMIT"),
    ("--inbox-bytes", "SIGNALPOST_INBOX_BYTES"),
];

#[test]
fn help_lists_every_contract_flag_with_its_environment_variable() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_signalpost"))
        .arg("--help")
        .output()
        .expect("signalpost --help runs");

    assert!(output.status.success(), "--help exits 0");
    let help = String::from_utf8_lossy(&output.stdout);
    for (flag, variable) in CONTRACT_FLAGS {
        let line = help
            .lines()
            .position(|line| line.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("--help lists {flag}:\n{help}"));
        // The flag's entry runs to the next flag; `[env: …]` is in it.
        let entry: String = help
            .lines()
            .skip(line + 1)
            .take_while(|text| !text.trim_start().starts_with('-'))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            entry.contains(variable),
            "--help names {variable} for {flag}:\n{entry}"
        );
    }
}

#[test]
fn help_is_a_manual_page_with_its_sections() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_signalpost"))
        .arg("--help")
        .output()
        .expect("signalpost --help runs");
    let help = String::from_utf8_lossy(&output.stdout);
    for section in [
        "Endpoints:",
        "Examples:",
        "Signals:",
        "Exit status:",
        "Several nodes:",
    ] {
        assert!(
            help.contains(section),
            "--help has a `{section}` section:\n{help}"
        );
    }
}

/// One flag as `--help` describes it: its environment twin and default.
#[derive(Debug, PartialEq, Eq)]
struct Setting {
    env: Option<String>,
    default: Option<String>,
}

/// Every long flag of `--help`, but `--help` and `--version`.
fn settings_of_help(help: &str) -> std::collections::BTreeMap<String, Setting> {
    let mut settings = std::collections::BTreeMap::new();
    let lines: Vec<&str> = help.lines().collect();
    for (at, line) in lines.iter().enumerate() {
        // An option's entry is indented by six; the text after the options
        // names flags too, indented by two.
        let Some(flag) = line
            .strip_prefix("      --")
            .and_then(|rest| rest.split([' ', '\n']).next())
        else {
            continue;
        };
        if flag == "help" || flag == "version" {
            continue;
        }
        // The flag's entry runs to the next line that starts a flag.
        let entry: Vec<&str> = lines[at + 1..]
            .iter()
            .take_while(|text| !text.trim_start().starts_with('-'))
            .copied()
            .collect();
        let bracketed = |key: &str| {
            entry.iter().find_map(|text| {
                let inner = text.trim().strip_prefix(&format!("[{key}: "))?;
                Some(inner.trim_end_matches(']').trim_end_matches('=').to_owned())
            })
        };
        settings.insert(
            format!("--{flag}"),
            Setting {
                env: bracketed("env"),
                default: bracketed("default"),
            },
        );
    }
    settings
}

/// The settings table of docs/running.md: flag, environment, default.
fn settings_of_docs() -> std::collections::BTreeMap<String, Setting> {
    let running = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/running.md"))
        .expect("docs/running.md is readable");
    let unquoted = |cell: &str| cell.trim().trim_matches('`').to_owned();
    running
        .lines()
        .filter(|line| line.starts_with("| `--"))
        .map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            let flag = unquoted(cells[0].trim_start_matches("| "));
            let flag = flag.split(' ').next().unwrap_or_default().to_owned();
            // `SIGNALPOST_X` (comma-separated): the variable is the first word.
            let env = unquoted(cells[1].split(' ').next().unwrap_or_default());
            let default = unquoted(cells[2]);
            let default = (default != "none" && default != "off").then_some(default);
            (
                flag,
                Setting {
                    env: Some(env),
                    default,
                },
            )
        })
        .collect()
}

#[test]
fn the_settings_table_of_the_docs_is_the_help_s_flag_for_flag() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_signalpost"))
        .arg("--help")
        .output()
        .expect("signalpost --help runs");
    let help = settings_of_help(&String::from_utf8_lossy(&output.stdout));
    let docs = settings_of_docs();
    assert!(help.len() >= 20, "{help:?}");
    let only_help: Vec<_> = help
        .keys()
        .filter(|flag| !docs.contains_key(*flag))
        .collect();
    let only_docs: Vec<_> = docs
        .keys()
        .filter(|flag| !help.contains_key(*flag))
        .collect();
    assert!(
        only_help.is_empty() && only_docs.is_empty(),
        "flags --help has and docs/running.md lacks: {only_help:?}; the other way: {only_docs:?}"
    );
    for (flag, setting) in &help {
        assert_eq!(
            Some(setting),
            docs.get(flag),
            "{flag}: --help against docs/running.md's settings table"
        );
    }
}

#[tokio::test]
async fn every_log_line_of_a_request_names_its_id_in_text_and_in_json() {
    for format in ["text", "json"] {
        let mut server = ServerProcess::start(&["--log-format", format], &[]).await;
        let client = reqwest::Client::new();
        let response = send(client.post(server.url("/rooms/lobby/join"))).await;
        let id = response.headers()["x-request-id"]
            .to_str()
            .expect("ASCII")
            .to_owned();
        Joined::from_response(response).await;
        server.kill("TERM");
        server.wait_exit().await;
        let joined = server
            .output
            .iter()
            .find(|line| line.contains("member joined"))
            .unwrap_or_else(|| panic!("a join is logged ({format}): {:?}", server.output));
        match format {
            "json" => {
                for line in &server.output {
                    serde_json::from_str::<serde_json::Value>(line)
                        .unwrap_or_else(|_| panic!("every line is JSON: {line}"));
                }
                let joined: serde_json::Value = serde_json::from_str(joined).expect("JSON");
                assert_eq!(joined["span"]["request_id"], id, "{joined}");
                assert_eq!(joined["fields"]["message"], "member joined");
            }
            _ => assert!(joined.contains(&format!("request_id={id}")), "{joined}"),
        }
    }
}

/// The span is opened for a line, not for a request (`logging`): a line
/// from the handler and the one `observe` writes after the answer both get
/// it, and a line outside any request does not.
#[tokio::test]
async fn a_request_s_lines_at_debug_name_its_id_and_other_lines_none() {
    let mut server = ServerProcess::start(&[], &[("RUST_LOG", "signalpost=debug")]).await;
    let client = reqwest::Client::new();
    let response = send(
        client
            .post(server.url("/rooms/lobby/join"))
            .header("x-request-id", "join-7"),
    )
    .await;
    Joined::from_response(response).await;
    server.kill("TERM");
    server.wait_exit().await;
    let of_request: Vec<&String> = server
        .output
        .iter()
        .filter(|line| line.contains("request_id="))
        .collect();
    assert!(
        of_request.iter().any(|line| line.contains("member joined"))
            && of_request
                .iter()
                .any(|line| line.contains("route=\"/rooms/{room_id}/join\" status=201")),
        "the join's line and observe's line are in the request's span: {:?}",
        server.output
    );
    for line in of_request {
        assert!(line.contains("request{request_id=join-7}: "), "{line}");
    }
    let outside = |text: &str| {
        server
            .output
            .iter()
            .find(|line| line.contains(text))
            .unwrap_or_else(|| panic!("`{text}` is logged: {:?}", server.output))
    };
    for text in ["listening on", "stopped"] {
        assert!(!outside(text).contains("request{"), "{}", outside(text));
    }
}

#[tokio::test]
async fn environment_variables_set_the_flags() {
    let mut server = ServerProcess::start(
        &[],
        &[
            ("SIGNALPOST_ADMIN_TOKEN", "from-the-environment"),
            ("SIGNALPOST_DEFAULT_CAPACITY", "3"),
        ],
    )
    .await;
    let client = reqwest::Client::new();

    let join = send(client.post(server.url("/rooms/lobby/join"))).await;
    let rooms = send(
        client
            .get(server.url("/rooms"))
            .bearer_auth("from-the-environment"),
    )
    .await;

    assert_eq!(json_body(join, 201).await["capacity"], json!(3));
    assert_eq!(
        json_body(rooms, 200).await["rooms"][0]["id"],
        json!("lobby")
    );
    server.kill("TERM");
    server.wait_exit().await;
}

#[tokio::test]
async fn tokens_never_reach_the_log() {
    let admin_token = "admin-secret-4f9d2c";
    let mut server =
        ServerProcess::start(&["--admin-token", admin_token], &[("RUST_LOG", "debug")]).await;
    let client = reqwest::Client::new();
    let url = |path: &str| server.url(path);
    let alice = Joined::from_response(send(client.post(url("/rooms/lobby/join"))).await).await;
    let bob = Joined::from_response(send(client.post(url("/rooms/lobby/join"))).await).await;

    // The token in the header, in the query, in the cookie, right and wrong.
    let calls = [
        client
            .post(url("/signals"))
            .bearer_auth(&alice.token)
            .json(&json!({"type": "chat"})),
        client.get(url(&format!(
            "{}?timeout=0&token={}",
            bob.poll_url, bob.token
        ))),
        client.get(url(&format!(
            "{}?timeout=0&token={}",
            bob.poll_url, alice.token
        ))),
        client.get(url("/rooms")).bearer_auth(admin_token),
        client.get(url(&format!("/rooms/lobby?token={}", alice.token))),
        client.get(url("/nowhere")).bearer_auth(&alice.token),
        client
            .get(url(&format!("{}?timeout=0", alice.poll_url)))
            .header("Cookie", format!("signalpost_token={}", alice.token)),
    ];
    for call in calls {
        send(call).await;
    }
    let mut events = crate::helpers::EventStream::from_response(
        send(client.get(url(&format!("{}?token={}", alice.events_url, alice.token)))).await,
    )
    .await;
    // Alice's poll above was handed Bob's `member-joined`.
    events.expect_ready(&alice, 1).await;
    drop(events);
    server.kill("TERM");
    server.wait_exit().await;

    for line in &server.output {
        for secret in [admin_token, alice.token.as_str(), bob.token.as_str()] {
            assert!(!line.contains(secret), "a token reached the log: {line}");
        }
    }
    assert!(
        server.output.len() > 1,
        "the server logged at debug level: {:?}",
        server.output
    );
}
