//! The README's curl walkthrough, run as written: its `sh` blocks go to
//! bash against the real binary, and what they print must be what the
//! README shows after them (ids, tokens and times aside). A README that
//! drifts from the server fails here.

use std::process::Stdio;

use serde_json::Value;

use crate::helpers::{DEADLINE, ServerProcess};

const SECTION: &str = "## A call from curl";

/// One fenced block of the section: its language and text.
struct Block {
    lang: String,
    text: String,
}

fn walkthrough_blocks() -> Vec<Block> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md is readable");
    let start = readme
        .find(SECTION)
        .expect("the README has its curl walkthrough");
    let section = &readme[start + SECTION.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```") {
            let text: Vec<&str> = lines.by_ref().take_while(|line| *line != "```").collect();
            blocks.push(Block {
                lang: lang.to_owned(),
                text: text.join("\n"),
            });
        }
    }
    blocks
}

/// The text with what differs from run to run replaced: UUIDs, times and
/// the token.
fn normalized(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_inclusive(['"', ' ', ',', '/', '=', '&']) {
        let (core, end) =
            word.split_at(word.trim_end_matches(['"', ' ', ',', '/', '=', '&']).len());
        let core = if uuid::Uuid::parse_str(core).is_ok() {
            "<uuid>"
        } else if humantime::parse_rfc3339(core).is_ok() {
            "<time>"
        } else if core.len() >= 46
            && core
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            "<token>"
        } else {
            core
        };
        out.push_str(core);
        out.push_str(end);
    }
    out
}

fn same_json(shown: &str, printed: &str) -> bool {
    let parse = |text: &str| serde_json::from_str::<Value>(&normalized(text)).ok();
    parse(shown).is_some() && parse(shown) == parse(printed)
}

#[tokio::test]
async fn the_curl_walkthrough_prints_what_the_readme_shows() {
    let server = ServerProcess::start(&["--keep-alive", "0.5"], &[]).await;
    let base = format!("http://{}", server.addr);
    let blocks = walkthrough_blocks();
    let timeout = DEADLINE.as_secs();

    // Each `sh` block, with a marker before it so its output can be found;
    // the stream that the README leaves running is read through fd 3 up to
    // `ready`, and the rest of it after the last block.
    let mut script = String::from("set -euo pipefail\n");
    let mut shells = 0;
    for block in blocks.iter().filter(|block| block.lang == "sh") {
        script.push_str(&format!("echo '@@block {shells}@@'\n"));
        shells += 1;
        for line in block.text.replace("http://127.0.0.1:8080", &base).lines() {
            match line.strip_prefix("curl -N ") {
                Some(args) => script.push_str(&format!(
                    "exec 3< <(curl -sN {args})\n\
                     while IFS= read -r -t {timeout} line <&3; do\n\
                       echo \"$line\" >> \"$STREAM\"; [ \"$line\" = 'event: ready' ] && break\n\
                     done\n"
                )),
                None => {
                    script.push_str(line);
                    script.push('\n');
                }
            }
        }
    }
    script.push_str(&format!(
        "while IFS= read -r -t {timeout} line <&3; do\n\
           echo \"$line\" >> \"$STREAM\"; [ \"$line\" = ': keep-alive' ] && break\n\
         done\n"
    ));

    let stream_file =
        std::env::temp_dir().join(format!("signalpost-readme-{}", server.addr.port()));
    let _ = std::fs::remove_file(&stream_file);
    let run = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("STREAM", &stream_file)
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(4 * DEADLINE, run)
        .await
        .expect("the walkthrough ends within the deadline")
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the walkthrough runs without error:\n{script}\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Vec<&str> = stdout
        .split("@@block ")
        .skip(1)
        .map(|part| part.split_once("@@\n").map_or("", |(_, text)| text))
        .collect();
    assert_eq!(printed.len(), shells);

    // After each `sh` block, the block that shows its output.
    let mut shell = 0;
    for pair in blocks.windows(2) {
        let (block, next) = (&pair[0], &pair[1]);
        if block.lang != "sh" {
            continue;
        }
        let output = printed[shell];
        shell += 1;
        // `# …` lines of a block are what its commands print.
        for expected in block
            .text
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
        {
            assert!(
                output.contains(expected),
                "the README says a command prints `{expected}`; it printed:\n{output}"
            );
        }
        if next.lang == "json" {
            assert!(
                same_json(&next.text, output),
                "the README shows\n{}\nafter\n{}\nbut it printed\n{output}",
                next.text,
                block.text
            );
        }
    }

    // The stream, line by line, as the `text` block shows it.
    let stream = std::fs::read_to_string(&stream_file).expect("the stream was saved");
    let _ = std::fs::remove_file(&stream_file);
    // The server runs with `--keep-alive 0.5`, so that the stream's comment
    // comes soon; the README shows what `ready` says with the default.
    let stream = stream.replace(r#""keep_alive":0.5"#, r#""keep_alive":15.0"#);
    let shown = blocks
        .iter()
        .find(|block| block.lang == "text")
        .expect("the README shows the stream");
    let lines = |text: &str| -> Vec<String> {
        text.lines()
            .map(|line| match line.strip_prefix("data: ") {
                // JSON compared as JSON: the README may space it for reading.
                Some(data) => format!(
                    "data: {}",
                    serde_json::from_str::<Value>(&normalized(data))
                        .map_or_else(|_| normalized(data), |value| value.to_string())
                ),
                None => line.to_owned(),
            })
            .collect()
    };
    assert_eq!(
        lines(&stream),
        lines(&shown.text),
        "the stream is what the README shows"
    );
}
