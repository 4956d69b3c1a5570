//! The docs hold: every relative link of the README and of `docs/`
//! resolves, anchors included; every test that docs/RFC9112.md names
//! exists; and every command of their `sh` blocks runs in the tests.
//!
//! A command runs here when it can on a test machine: a server command
//! line is started as written (its `--listen` moved to a free loopback
//! port, its certificate files made for the test), or, where it names
//! machines that are not there (Redis at 10.0.0.5), parsed by the server's
//! own flag parser; the `curl` lines beside it are run against it. The
//! README's walkthrough runs in `readme.rs`. Any other command must be one
//! that another part of the test command runs, named in `RUN_ELSEWHERE`
//! with where: a command added to the docs that nothing runs fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::helpers::{DEADLINE, Joined, ServerProcess};
use crate::tls::TestCertificate;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Commands the docs show that other parts of `scripts/test` run, by the
/// words they start with.
const RUN_ELSEWHERE: [(&str, &str); 7] = [
    ("scripts/test", "the test command itself, which CI runs"),
    (
        "SIGNALPOST_UPDATE_OPENAPI=1 cargo test --test api openapi_file",
        "`openapi_file`, which checks what this writes",
    ),
    (
        "pipx run openapi-python-client generate",
        "tests/python_client/run, with the generator's version pinned",
    ),
    (
        "npx openapi-typescript",
        "tests/typescript_client/run, with the generator's version pinned",
    ),
    (
        "bench/run",
        "`bench/run --smoke`, the test command's last step",
    ),
    (
        "SIGNALPOST_SOAK_SECS=300 SIGNALPOST_SOAK_WORKERS=64 cargo test --release --test api soak",
        "`soak`, which the test command runs for 3 seconds",
    ),
    (
        "ffmpeg -re -f lavfi",
        "tests/browser/whip.test.mjs, which takes this line from docs/whip.md",
    ),
];

/// The Markdown files a reader of the repository meets.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![
        Path::new(ROOT).join("README.md"),
        Path::new(ROOT).join("web/README.md"),
        Path::new(ROOT).join("bench/README.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/ is readable")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|_| panic!("{} is readable", path.display()))
}

/// The page's text outside fenced blocks, and its fenced blocks with
/// their language.
fn split_fences(text: &str) -> (String, Vec<(String, String)>) {
    let (mut prose, mut blocks) = (String::new(), Vec::new());
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```") {
            let body: Vec<&str> = lines.by_ref().take_while(|line| *line != "```").collect();
            blocks.push((lang.to_owned(), body.join("\n")));
        } else {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    (prose, blocks)
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces
/// to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(page: &str) -> BTreeSet<String> {
    split_fences(page)
        .0
        .lines()
        .filter_map(|line| line.strip_prefix('#'))
        .map(|heading| anchor(heading.trim_start_matches('#')))
        .collect()
}

/// The targets of the page's Markdown links, `[text](target)`.
fn link_targets(prose: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = prose;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            targets.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    targets
}

#[test]
fn every_link_of_the_docs_resolves() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = read(&page);
        let (prose, _) = split_fences(&text);
        for target in link_targets(&prose) {
            // The web is not reachable from the tests.
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let file = if file.is_empty() {
                page.clone()
            } else {
                page.parent().expect("a page is in a folder").join(file)
            };
            if !file.exists() {
                broken.push(format!("{}: {target}: no such file", page.display()));
                continue;
            }
            if !fragment.is_empty() && !anchors(&read(&file)).contains(fragment) {
                broken.push(format!("{}: {target}: no such heading", page.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_test_the_rfc_9112_list_names_exists() {
    let list = read(&Path::new(ROOT).join("docs/RFC9112.md"));
    let mut named = 0;
    for span in list.split('`').skip(1).step_by(2) {
        let Some((file, function)) = span.split_once("::") else {
            continue;
        };
        if !(file.starts_with("tests/") || file.starts_with("src/")) {
            continue;
        }
        named += 1;
        let source = read(&Path::new(ROOT).join(file));
        assert!(
            source.contains(&format!("fn {function}(")),
            "docs/RFC9112.md names `{file}::{function}`, which is not there"
        );
    }
    assert!(named >= 30, "the list names its tests: {named}");
}

/// The commands of a block: continuation lines joined, comments dropped.
fn commands(block: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

/// The `sh` blocks of the README and of `docs/`, by page; the README's
/// walkthrough is `readme.rs`'s. (bench/README.md's commands profile the
/// server with perf and valgrind, by hand.)
fn sh_blocks() -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    for page in pages() {
        if page.ends_with("bench/README.md") || page.ends_with("web/README.md") {
            continue;
        }
        let name = page
            .strip_prefix(ROOT)
            .expect("a page of the repository")
            .display()
            .to_string();
        let mut text = read(&page);
        if name == "README.md" {
            text = without_walkthrough(&text);
        }
        for (lang, body) in split_fences(&text).1 {
            if lang == "sh" {
                blocks.push((name.clone(), body));
            }
        }
    }
    blocks
}

/// The README without its curl walkthrough, which `readme.rs` runs.
fn without_walkthrough(readme: &str) -> String {
    let start = readme
        .find("## A call from curl")
        .expect("the README has its walkthrough");
    let rest = &readme[start..];
    let end = rest.find("\n## ").map_or(readme.len(), |end| start + end);
    format!("{}{}", &readme[..start], &readme[end..])
}

/// The words of a server command line after the program, as bash splits
/// and expands them.
fn words(line: &str, env: &[(&str, &str)]) -> Vec<String> {
    let mut command = std::process::Command::new("bash");
    command
        .arg("-c")
        .arg(format!("printf '%s\\0' {line}"))
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    let output = command.output().expect("bash runs");
    assert!(output.status.success(), "bash splits `{line}`");
    String::from_utf8(output.stdout)
        .expect("UTF-8 words")
        .split('\0')
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What the docs' commands may use of the environment.
const ENV: [(&str, &str); 2] = [
    ("TURN_SECRET", "a-turn-secret"),
    ("ADMIN", "an-admin-token-for-the-docs"),
];

/// A server command of the docs, with its `--listen` taken out (the test
/// server listens on a free loopback port).
fn server_args(command: &str) -> Option<Vec<String>> {
    let rest = command
        .strip_prefix("signalpost")
        .or_else(|| command.strip_prefix("cargo run --release --"))
        .or_else(|| (command == "cargo run --release").then_some(""))?;
    let rest = rest.split(" #").next().unwrap_or(rest);
    let mut args = words(rest, &ENV);
    if let Some(at) = args.iter().position(|word| word == "--listen") {
        args.drain(at..(at + 2).min(args.len()));
    }
    Some(args)
}

/// Runs `script` with bash against `server`, its URLs pointed at it.
async fn run_against(server: &ServerProcess, script: &str, env: &[(&str, &str)]) -> String {
    let base = server.addr.to_string();
    let script = script
        .replace("http://127.0.0.1:8080", &format!("http://{base}"))
        .replace("localhost:8080", &base);
    let mut command = tokio::process::Command::new("bash");
    command
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    let output = tokio::time::timeout(DEADLINE, command.output())
        .await
        .expect("the commands end within the deadline")
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the docs' commands run:\n{script}\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn server_commands_start_as_written_and_their_curl_lines_run() {
    // Certificate files under the names the docs give them.
    let folder = std::env::temp_dir().join(format!("signalpost-guide-{}", std::process::id()));
    std::fs::create_dir_all(&folder).expect("a scratch folder");
    let certificate = TestCertificate::new();
    std::fs::copy(&certificate.cert, folder.join("fullchain.pem")).expect("copied");
    std::fs::copy(&certificate.key, folder.join("privkey.pem")).expect("copied");

    let mut started = 0;
    for (page, block) in sh_blocks() {
        let commands = commands(&block);
        let Some(args) = commands.iter().find_map(|command| server_args(command)) else {
            continue;
        };
        let curls: Vec<&String> = commands
            .iter()
            .filter(|command| command.starts_with("curl "))
            .collect();
        let args: Vec<String> = args
            .into_iter()
            .map(|arg| match folder.join(&arg) {
                path if arg.ends_with(".pem") => path.display().to_string(),
                _ => arg,
            })
            .collect();
        if args.iter().any(|arg| arg.contains("10.0.0.")) {
            // Machines that are not here: the flags are checked, and
            // `cluster.rs` starts nodes on real Redis with the same ones.
            signalpost::Config::from_args(&args)
                .unwrap_or_else(|error| panic!("{page}: `{block}`: {error}"));
            continue;
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = ServerProcess::start(&args, &[]).await;
        started += 1;
        if curls.is_empty() {
            continue;
        }
        let member = Joined::from_response(
            reqwest::Client::new()
                .post(server.url("/rooms/docs/join"))
                .send()
                .await
                .expect("the server answers"),
        )
        .await;
        let script: Vec<&str> = curls.iter().map(|command| command.as_str()).collect();
        let mut env = ENV.to_vec();
        env.push(("TOKEN", &member.token));
        let printed = run_against(&server, &script.join("\n"), &env).await;
        assert!(!printed.is_empty(), "{page}: `{block}` printed nothing");
    }
    let _ = std::fs::remove_dir_all(&folder);
    assert!(started >= 3, "the docs start servers: {started}");
}

/// A block of `curl` lines alone speaks to a server started with the
/// admin token the docs call `$ADMIN`.
#[tokio::test]
async fn blocks_of_curl_lines_alone_run_against_a_server() {
    let mut ran = 0;
    for (_, block) in sh_blocks() {
        let commands = commands(&block);
        if commands.is_empty() || !commands.iter().all(|command| command.starts_with("curl ")) {
            continue;
        }
        let admin = ENV
            .iter()
            .find(|(name, _)| *name == "ADMIN")
            .map_or("", |(_, value)| *value);
        let server = ServerProcess::start(&["--admin-token", admin], &[]).await;
        run_against(&server, &commands.join("\n"), &ENV).await;
        ran += 1;
    }
    assert!(ran >= 1, "the docs have blocks of curl lines");
}

#[test]
fn every_command_of_the_docs_is_run_by_a_test() {
    let mut unrun = Vec::new();
    for (page, block) in sh_blocks() {
        for command in commands(&block) {
            let runs_here = command.starts_with("signalpost ")
                || command.starts_with("curl ")
                || command.starts_with("cargo run --release");
            let elsewhere = RUN_ELSEWHERE
                .iter()
                .any(|(start, _)| command.starts_with(start));
            if !runs_here && !elsewhere {
                unrun.push(format!("{page}: {command}"));
            }
        }
    }
    assert!(
        unrun.is_empty(),
        "commands in the docs that no test runs:\n{}",
        unrun.join("\n")
    );
}
