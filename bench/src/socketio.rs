//! A minimal socket.io v4 client (engine.io protocol 4) over either
//! transport, written here rather than taken from `rust_socketio` 0.6, the
//! one crate that speaks both: it always links native-tls (OpenSSL), brings
//! reqwest 0.12 and tungstenite 0.21 beside this crate's versions, and hands
//! every event to a boxed callback, so its costs would land in the
//! generator's measurements rather than the server's.
//!
//! The subset: the open packet `0{…}`, connect `40` / `40{"sid"}`, events
//! `42[…]`, an acknowledged `join` (`420[…]` answered by `430[…]`), ping `2`
//! answered by pong `3`, close `1`. Long-polling batches packets with the
//! record separator `\x1e`, keeps one GET waiting at all times and at most
//! one POST in flight per session, as engine.io requires (an overlapping
//! request closes the session).

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::http;
use crate::peer::{Ctx, OpenGuard};
use crate::recorder::Recorder;
use crate::tls;

/// The engine.io record separator between packets of one polling body.
const SEPARATOR: char = '\x1e';

/// Packets one polling POST carries at most.
const MAX_BATCH: usize = 256;

/// Connects over the websocket transport, joins `room`, and returns the
/// socket id and the sender of the socket's outgoing packets.
pub async fn join_websocket(
    ctx: &Ctx,
    room: &str,
    capacity: u32,
) -> Result<(String, mpsc::UnboundedSender<String>)> {
    let tls = ctx.transport.tls();
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let url = format!(
        "{scheme}://{}/socket.io/?EIO=4&transport=websocket",
        ctx.addr()
    );
    let conn = tls::connect(ctx.addr(), tls).await?;
    let (socket, _) = tokio_tungstenite::client_async_with_config(url, conn, None)
        .await
        .context("websocket handshake")?;
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    let (control_tx, control_rx) = mpsc::unbounded_channel();

    tokio::spawn(async move {
        // Packets queued while one was written go out in one flush.
        while let Some(packet) = out_rx.recv().await {
            if sink.feed(Message::text(packet)).await.is_err() {
                return;
            }
            while let Ok(packet) = out_rx.try_recv() {
                if sink.feed(Message::text(packet)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });

    let recorder = ctx.recorder.clone();
    let open = OpenGuard::new(ctx.open_inboxes.clone());
    let out = out_tx.clone();
    tokio::spawn(async move {
        let _open = open;
        while let Some(Ok(message)) = stream.next().await {
            let keep_going = match message {
                Message::Text(text) => on_packet(text.as_str(), &recorder, &out, &control_tx),
                Message::Close(_) => false,
                _ => true,
            };
            if !keep_going {
                break;
            }
        }
    });

    let id = connect_and_join(&out_tx, control_rx, room, capacity).await?;
    Ok((id, out_tx))
}

/// Connects over the long-polling transport, joins `room`, and returns the
/// socket id and the sender of the socket's outgoing packets.
pub async fn join_polling(
    ctx: &Ctx,
    http: &Arc<http::Client>,
    room: &str,
    capacity: u32,
) -> Result<(String, mpsc::UnboundedSender<String>)> {
    #[derive(Deserialize)]
    struct Open {
        sid: String,
    }
    let base = "/socket.io/?EIO=4&transport=polling";
    let answer = ctx.request(http, "GET", base, None, None).await?;
    let body = String::from_utf8(answer.body).context("the handshake is not UTF-8")?;
    let open = match body.strip_prefix('0') {
        Some(json) if answer.status == 200 => serde_json::from_str::<Open>(json)?,
        _ => bail!("the polling handshake answered {}: {body}", answer.status),
    };
    let path = format!("{base}&sid={}", open.sid);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    let (control_tx, control_rx) = mpsc::unbounded_channel();

    let http_post = http.clone();
    let post_path = path.clone();
    tokio::spawn(async move {
        while let Some(first) = out_rx.recv().await {
            let mut batch = first;
            for _ in 1..MAX_BATCH {
                let Ok(packet) = out_rx.try_recv() else {
                    break;
                };
                batch.push(SEPARATOR);
                batch.push_str(&packet);
            }
            let headers = [("content-type", "text/plain;charset=UTF-8")];
            match http_post
                .send("POST", &post_path, &headers, batch.as_bytes())
                .await
            {
                Ok(answer) if answer.status == 200 => {}
                _ => return,
            }
        }
    });

    let recorder = ctx.recorder.clone();
    let open = OpenGuard::new(ctx.open_inboxes.clone());
    let out = out_tx.clone();
    let http = http.clone();
    tokio::spawn(async move {
        let _open = open;
        // Each turn is one long-poll; the server answers at least every
        // ping interval, and the generator's deadline ends the process.
        loop {
            let body = match http.send("GET", &path, &[], b"").await {
                Ok(answer) if answer.status == 200 => answer.body,
                _ => return,
            };
            let Ok(text) = std::str::from_utf8(&body) else {
                return;
            };
            for packet in text.split(SEPARATOR) {
                if !on_packet(packet, &recorder, &out, &control_tx) {
                    return;
                }
            }
        }
    });

    let id = connect_and_join(&out_tx, control_rx, room, capacity).await?;
    Ok((id, out_tx))
}

/// Handles one incoming engine.io packet; false when the session is over.
fn on_packet(
    packet: &str,
    recorder: &Recorder,
    out: &mpsc::UnboundedSender<String>,
    control: &mpsc::UnboundedSender<String>,
) -> bool {
    match packet.as_bytes().first() {
        Some(b'2') => out.send("3".to_owned()).is_ok(),
        Some(b'1') => false,
        Some(b'4') if packet.starts_with("42") => {
            recorder.on_message(packet.as_bytes());
            true
        }
        Some(b'4') if packet.starts_with("41") => false,
        Some(b'4') => {
            let _ = control.send(packet.to_owned());
            true
        }
        // `0` open, `3` pong, `6` noop: nothing to do.
        _ => true,
    }
}

/// Connects the default namespace and joins `room`; returns the socket id.
async fn connect_and_join(
    out: &mpsc::UnboundedSender<String>,
    mut control: mpsc::UnboundedReceiver<String>,
    room: &str,
    capacity: u32,
) -> Result<String> {
    #[derive(Deserialize)]
    struct Connected {
        sid: String,
    }
    #[derive(Deserialize)]
    struct JoinAck {
        error: Option<String>,
    }
    out.send("40".to_owned()).context("the socket closed")?;
    let connected = control
        .recv()
        .await
        .context("the socket closed before the connect")?;
    let Some(json) = connected.strip_prefix("40") else {
        bail!("connect refused: {connected}");
    };
    let id = serde_json::from_str::<Connected>(json)
        .context("the connect packet")?
        .sid;
    let join = serde_json::json!(["join", { "room": room, "capacity": capacity }]);
    out.send(format!("420{join}"))
        .context("the socket closed")?;
    let ack = control
        .recv()
        .await
        .context("the socket closed before the join was acknowledged")?;
    let Some(json) = ack.strip_prefix("430") else {
        bail!("unexpected answer to join: {ack}");
    };
    let [answer]: [JoinAck; 1] = serde_json::from_str(json).context("the join ack")?;
    if let Some(error) = answer.error {
        bail!("join refused: {error}");
    }
    Ok(id)
}
