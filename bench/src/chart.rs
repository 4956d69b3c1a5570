//! The chart: one small bar panel per headline figure, one bar per peer,
//! drawn as plain SVG (system sans-serif, nothing fetched) so it renders on
//! GitHub and in any browser as committed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::Summary;
use crate::scenario::Sizes;

const WIDTH: f64 = 920.0;
const PANEL_W: f64 = 440.0;
const TOP: f64 = 56.0;
const LABEL_W: f64 = 150.0;
const BAR_H: f64 = 20.0;
const BAR_GAP: f64 = 8.0;

fn color(peer: &str) -> &'static str {
    match peer {
        "signalpost" => "#1f6fb4",
        "signalpost-poll" => "#7fb2e0",
        "signalpost-tls" => "#3d8fd6",
        "signalpost-h2" => "#174f80",
        "signalpost-redis" => "#2a9d8f",
        "signalpost-redis-x2" => "#3fb8a8",
        "signalpost-redis-x3" => "#62cbbd",
        "signalpost-cluster-x3" => "#1d6f65",
        "floor" => "#7a7a7a",
        "floor-tls" | "floor-h2" => "#a8a8a8",
        "sio-ws" => "#d0432b",
        "sio-wss" => "#e87a5f",
        _ => "#f0a070",
    }
}

/// Picks a panel's figure out of a peer's summary.
type Pick = Box<dyn Fn(&Summary) -> Option<f64>>;

struct Panel {
    title: String,
    unit: &'static str,
    /// Whether a shorter bar is better; said in the panel's title.
    lower_is_better: bool,
    pick: Pick,
}

pub fn svg(peers: &[(&str, &str)], summaries: &BTreeMap<&str, Summary>, sizes: &Sizes) -> String {
    let largest_idle = sizes.idle_sizes.iter().copied().max().unwrap_or(0);
    let panels = [
        Panel {
            title: format!("relay p99 latency ({:.0} signals/s)", sizes.relay_rate),
            unit: "ms",
            lower_is_better: true,
            pick: Box::new(|s| s.relay_p99_ms),
        },
        Panel {
            title: "server CPU per relayed signal".into(),
            unit: "µs",
            lower_is_better: true,
            pick: Box::new(|s| s.relay_cpu_us),
        },
        Panel {
            title: format!("fanout p99 latency (room of {})", sizes.fanout_members),
            unit: "ms",
            lower_is_better: true,
            pick: Box::new(|s| s.fanout_p99_ms),
        },
        Panel {
            title: "highest rate held (p99 ≤ 50 ms, no loss)".into(),
            unit: "/s",
            lower_is_better: false,
            pick: Box::new(|s| s.held_rate),
        },
        Panel {
            title: format!("server memory per idle member ({largest_idle})"),
            unit: "KiB",
            lower_is_better: true,
            pick: Box::new(move |s| s.idle.get(&largest_idle).map(|(kib, _)| *kib)),
        },
        Panel {
            title: format!("join storm p99 ({} at once)", sizes.storm_joins),
            unit: "ms",
            lower_is_better: true,
            pick: Box::new(|s| s.storm_p99_ms),
        },
    ];
    let rows = panels.len().div_ceil(2);
    // A title line, a bar per peer, and a gap to the next row of panels.
    let panel_h = 26.0 + peers.len() as f64 * (BAR_H + BAR_GAP) + 12.0;
    let height = TOP + rows as f64 * panel_h + 40.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        svg,
        r##"<text x="20" y="28" font-size="17" font-weight="bold" fill="#222">signalpost vs socket.io vs the floor: medians, same machine, same offered rate</text>"##
    );
    for (index, panel) in panels.iter().enumerate() {
        let x = 20.0 + (index % 2) as f64 * (PANEL_W + 20.0);
        let y = TOP + (index / 2) as f64 * panel_h;
        draw_panel(&mut svg, x, y, panel, peers, summaries);
    }
    let _ = writeln!(
        svg,
        r##"<text x="20" y="{}" font-size="11" fill="#666">server and generator pinned to different cores; see bench/results/results.md for the table and the flags</text>"##,
        height - 14.0
    );
    svg.push_str("</svg>\n");
    svg
}

fn draw_panel(
    svg: &mut String,
    x: f64,
    y: f64,
    panel: &Panel,
    peers: &[(&str, &str)],
    summaries: &BTreeMap<&str, Summary>,
) {
    let hint = if panel.lower_is_better {
        "lower is better"
    } else {
        "higher is better"
    };
    let _ = writeln!(
        svg,
        r##"<text x="{x}" y="{}" font-size="13" font-weight="bold" fill="#222">{} <tspan font-weight="normal" fill="#777">({hint})</tspan></text>"##,
        y + 14.0,
        panel.title
    );
    let values: Vec<Option<f64>> = peers
        .iter()
        .map(|(peer, _)| summaries.get(peer).and_then(|s| (panel.pick)(s)))
        .collect();
    let max = values.iter().flatten().copied().fold(0.0_f64, f64::max);
    let bar_area = PANEL_W - LABEL_W - 80.0;
    for (row, ((peer, label), value)) in peers.iter().zip(&values).enumerate() {
        let top = y + 26.0 + row as f64 * (BAR_H + BAR_GAP);
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="end" fill="#333">{label}</text>"##,
            x + LABEL_W - 8.0,
            top + BAR_H * 0.7
        );
        let (width, text) = match value {
            Some(v) if max > 0.0 => (
                (v / max * bar_area).max(1.0),
                format!("{} {}", pretty(*v), panel.unit),
            ),
            Some(v) => (1.0, format!("{} {}", pretty(*v), panel.unit)),
            None => (0.0, "not run".to_owned()),
        };
        let _ = writeln!(
            svg,
            r#"<rect x="{}" y="{top}" width="{width:.1}" height="{BAR_H}" fill="{}"/>"#,
            x + LABEL_W,
            color(peer)
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{}" fill="#222">{text}</text>"##,
            x + LABEL_W + width + 6.0,
            top + BAR_H * 0.7
        );
    }
}

/// Three significant figures, without a run of zeros after the point.
fn pretty(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_is_one_svg_with_a_bar_per_peer_and_panel() {
        let mut summaries = BTreeMap::new();
        summaries.insert(
            "signalpost",
            Summary {
                relay_p99_ms: Some(1.5),
                ..Summary::default()
            },
        );
        let peers = [("signalpost", "signalpost"), ("floor", "floor")];
        let svg = svg(&peers, &summaries, &Sizes::smoke());
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<rect x=").count(), 12);
        assert!(svg.contains("1.50 ms"));
    }
}
