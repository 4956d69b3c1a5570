//! The format a node writes its keys in, and the gate that keeps nodes of
//! two formats off one `--redis-prefix`: one format's node would misread
//! what the other's wrote (docs/scaling.md, "Upgrading").
//!
//! A node shows its format by a subscription, not a key: to the channel
//! `<prefix>:{index}:format:<format>` (a shard channel on a Cluster, in
//! the slot of the other keys outside any room). Redis drops it the
//! moment the node's connection closes, SIGKILL included, so there is no
//! lease to wait out and nothing to leak; the subscription is made again
//! with the node's others after an outage or a failover. A starting node
//! subscribes, then lists the format channels with subscribers, and
//! refuses to start if one is not its own. Two nodes of two formats that
//! start at the same instant both see the other, and both refuse.

use ::redis::{ErrorKind, RedisError};

use super::link::Conn;

/// This version's format. Raise it with any change that a node of the
/// version before would misread, or that would misread that node's keys.
/// Format 1 was before signals were appended plainly (`tail.rs`). Nodes
/// from before this gate show nothing, so it cannot see them.
pub(super) const FORMAT: u32 = 2;

/// The channel nodes of `format` subscribe to under `prefix`.
pub(super) fn channel(prefix: &str, format: u32) -> String {
    format!("{}{format}", stem(prefix))
}

/// What every format's channel under `prefix` begins with.
fn stem(prefix: &str) -> String {
    format!("{prefix}:{{index}}:format:")
}

/// The formats of the nodes subscribed under `prefix`, this one's among
/// them once it has subscribed.
pub(super) async fn present(
    connection: &mut Conn,
    prefix: &str,
    cluster: bool,
) -> Result<Vec<u32>, RedisError> {
    let stem = stem(prefix);
    let pattern = format!("{}*", escape_glob(&stem));
    // Both are asked of every node of a Cluster, and their answers joined.
    let listing = if cluster { "SHARDCHANNELS" } else { "CHANNELS" };
    let channels: Vec<String> = ::redis::cmd("PUBSUB")
        .arg(listing)
        .arg(pattern)
        .query_async(connection)
        .await?;
    let mut formats: Vec<u32> = channels
        .iter()
        .filter_map(|name| name.strip_prefix(stem.as_str())?.parse().ok())
        .collect();
    formats.sort_unstable();
    formats.dedup();
    Ok(formats)
}

/// Refuses when a node of another format than this one's is present.
pub(super) fn check(prefix: &str, present: &[u32]) -> Result<(), RedisError> {
    let others: Vec<String> = present
        .iter()
        .filter(|format| **format != FORMAT)
        .map(u32::to_string)
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    Err(RedisError::from((
        ErrorKind::InvalidClientConfig,
        "nodes of another version use this Redis prefix",
        format!(
            "nodes that write format {} are running with --redis-prefix {prefix}, and this \
             node writes format {FORMAT}: stop them first, or give this node another \
             --redis-prefix (docs/scaling.md, \"Upgrading\")",
            others.join(" and "),
        ),
    )))
}

/// `text` matched literally by a Redis glob pattern.
fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_format_refuses() {
        assert!(check("signalpost", &[]).is_ok());
        assert!(check("signalpost", &[FORMAT]).is_ok());
        let refused = check("signalpost", &[FORMAT, FORMAT + 1])
            .expect_err("a newer node refuses")
            .to_string();
        assert!(
            refused.contains(&format!("format {}", FORMAT + 1)),
            "{refused}"
        );
        assert!(refused.contains("--redis-prefix signalpost"), "{refused}");
    }

    #[test]
    fn a_prefix_is_matched_literally() {
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(channel("sp", 2), "sp:{index}:format:2");
    }
}
