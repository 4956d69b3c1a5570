//! docs/API.md and the OpenAPI document describe one API: every call,
//! error code and event of either is in the other. The document is the
//! one the server generates (`openapi_file` holds the committed copy to
//! it).

use std::collections::BTreeSet;

use serde_json::Value;

const API_MD: &str = include_str!("../../docs/API.md");

/// The first code span of each table row in the section `## {title}`.
fn documented(title: &str) -> BTreeSet<String> {
    let heading = format!("\n## {title}\n");
    let start = API_MD
        .find(&heading)
        .unwrap_or_else(|| panic!("docs/API.md has a `## {title}` section"))
        + heading.len();
    let section = &API_MD[start..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(first, _)| first.to_owned()))
        .collect()
}

fn document() -> Value {
    serde_json::to_value(signalpost::openapi()).expect("the document serializes")
}

fn assert_same(what: &str, in_docs: &BTreeSet<String>, in_spec: &BTreeSet<String>) {
    let undocumented: Vec<_> = in_spec.difference(in_docs).collect();
    let unspecified: Vec<_> = in_docs.difference(in_spec).collect();
    assert!(
        undocumented.is_empty() && unspecified.is_empty(),
        "{what}: in the OpenAPI document but not in docs/API.md: {undocumented:?}; \
         in docs/API.md but not in the OpenAPI document: {unspecified:?}"
    );
}

#[test]
fn every_call_is_in_both() {
    let spec: BTreeSet<String> = document()["paths"]
        .as_object()
        .expect("the document has paths")
        .iter()
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(method, _)| {
                    ["get", "put", "post", "delete", "patch"].contains(&method.as_str())
                })
                .map(move |(method, _)| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    assert!(spec.len() > 10, "{spec:?}");
    assert_same("calls", &documented("Calls"), &spec);
}

#[test]
fn every_error_code_is_in_both() {
    let spec: BTreeSet<String> = document()["components"]["schemas"]["ProblemCode"]["enum"]
        .as_array()
        .expect("the problem codes are an enumeration")
        .iter()
        .filter_map(|code| code.as_str().map(str::to_owned))
        .collect();
    assert_same("error codes", &documented("Errors"), &spec);
}

#[test]
fn every_event_is_in_both() {
    let document = document();
    let schemas = &document["components"]["schemas"];
    let mut spec: BTreeSet<String> = schemas["InboxEvent"]["discriminator"]["mapping"]
        .as_object()
        .expect("inbox events are told apart by `event`")
        .keys()
        .cloned()
        .collect();
    // `ready` opens every stream and is in no inbox: its data has a schema
    // of its own, which the stream's description names.
    assert!(schemas["ReadyData"].is_object());
    let stream = &document["paths"]["/rooms/{room_id}/members/{member_id}/events"]["get"];
    assert!(
        stream["description"]
            .as_str()
            .is_some_and(|text| text.contains("`ready`")),
        "the stream's description names `ready`"
    );
    spec.insert("ready".to_owned());
    assert_same("events", &documented("Events"), &spec);
}

#[test]
fn the_document_points_at_the_contract() {
    let description = document()["info"]["description"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(description.contains("docs/API.md"), "{description}");
}
