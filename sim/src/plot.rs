//! An SVG of a run: leases per worker (min, max, and the band between them) and cumulative
//! lease moves over simulated time, with the moment the scenario's change was over marked, so a
//! person can see convergence.

use std::fmt::Write as _;

use crate::report::Report;

const W: f64 = 900.0;
const PANEL: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 50.0;

fn path(points: impl Iterator<Item = (f64, f64)>) -> String {
    let mut d = String::new();
    for (i, (x, y)) in points.enumerate() {
        let _ = write!(d, "{}{x:.1},{y:.1} ", if i == 0 { "M" } else { "L" });
    }
    d
}

fn axis(svg: &mut String, top: f64, max_y: f64, label: &str, t_end: f64) {
    let bottom = top + PANEL;
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#333"/><line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{bottom}" stroke="#333"/>"##,
        W - RIGHT
    );
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" font-size="12" text-anchor="end">{max_y:.0}</text><text x="{}" y="{bottom}" font-size="12" text-anchor="end">0</text>"##,
        LEFT - 6.0,
        top + 4.0,
        LEFT - 6.0
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="{}" font-size="13" font-weight="bold">{label}</text>"##,
        top - 8.0
    );
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" font-size="12" text-anchor="end">{t_end:.0} s</text>"##,
        W - RIGHT,
        bottom + 16.0
    );
}

/// The SVG document.
pub fn svg(report: &Report) -> String {
    let samples = &report.timeline;
    let t_end = report.simulated_seconds.max(1.0);
    let x = |t: f64| LEFT + (W - LEFT - RIGHT) * t / t_end;
    let max_leases = samples.iter().map(|s| s.max).max().unwrap_or(1).max(1) as f64;
    let max_moves = samples.iter().map(|s| s.moves).max().unwrap_or(1).max(1) as f64;
    let top1 = TOP;
    let top2 = TOP + PANEL + GAP;
    let y1 = |v: f64| top1 + PANEL - PANEL * v / max_leases;
    let y2 = |v: f64| top2 + PANEL - PANEL * v / max_moves;
    let height = top2 + PANEL + 40.0;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif">"##
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="18" font-size="14">kcl-sim {} | policy {} | {} workers, {} shards | seed {}</text>"##,
        report.scenario, report.policy, report.workers, report.shards, report.seed
    );
    axis(
        &mut svg,
        top1,
        max_leases,
        "leases per worker: min, max (band) and spread",
        t_end,
    );
    axis(&mut svg, top2, max_moves, "lease moves (cumulative)", t_end);

    // The band between min and max.
    let upper = samples.iter().map(|s| (x(s.t), y1(s.max as f64)));
    let lower = samples.iter().rev().map(|s| (x(s.t), y1(s.min as f64)));
    if !samples.is_empty() {
        let _ = writeln!(
            svg,
            r##"<path d="{}Z" fill="#9ecae1" opacity="0.5"/>"##,
            path(upper.chain(lower))
        );
    }
    for (color, f) in [
        (
            "#08519c",
            (|s: &crate::fleet::Sample| s.max as f64) as fn(&_) -> f64,
        ),
        ("#6baed6", |s| s.min as f64),
        ("#e6550d", |s| (s.max - s.min) as f64),
    ] {
        let _ = writeln!(
            svg,
            r##"<path d="{}" fill="none" stroke="{color}" stroke-width="1.5"/>"##,
            path(samples.iter().map(|s| (x(s.t), y1(f(s)))))
        );
    }
    let _ = writeln!(
        svg,
        r##"<path d="{}" fill="none" stroke="#31a354" stroke-width="1.5"/>"##,
        path(samples.iter().map(|s| (x(s.t), y2(s.moves as f64))))
    );
    // When the change was over, and when the fleet was balanced for good.
    let mut marks = vec![(report.measured_from_seconds, "#555", "change over")];
    if let Some(c) = report.convergence_seconds {
        marks.push((report.measured_from_seconds + c, "#31a354", "balanced"));
    }
    for (t, color, label) in marks {
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="{color}" stroke-dasharray="4 3"/><text x="{3:.1}" y="{4}" font-size="11" fill="{color}">{label}</text>"##,
            x(t),
            top1,
            top2 + PANEL,
            x(t) + 3.0,
            top1 + 12.0
        );
    }
    let legend = [
        ("#08519c", "max"),
        ("#6baed6", "min"),
        ("#e6550d", "spread"),
        ("#31a354", "moves"),
    ];
    for (i, (color, label)) in legend.iter().enumerate() {
        let lx = W - RIGHT - 300.0 + 75.0 * i as f64;
        let _ = writeln!(
            svg,
            r##"<rect x="{lx}" y="{}" width="12" height="3" fill="{color}"/><text x="{}" y="{}" font-size="11">{label}</text>"##,
            top1 - 14.0,
            lx + 16.0,
            top1 - 10.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}
