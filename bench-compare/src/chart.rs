//! The chart: a grouped bar chart (SVG, written by hand) of each runtime's
//! speed-up over tokio current_thread, on a log scale, bars growing up or
//! down from 1×, with the ANCHORS targets marked.

use std::fmt::Write as _;

use crate::report::{speedup, Imp, Measure, Target, Work, IMPS, WORKS};

/// Width of one group of bars (one workload); the chart is as wide as it needs.
const GROUP_W: f64 = 96.0;
const H: f64 = 460.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 74.0;
const BOTTOM: f64 = 56.0;

/// Runtimes drawn as bars (tokio current_thread is the 1× line; the
/// corosensei floor is not a runtime).
fn drawn(imp: Imp) -> bool {
    !matches!(imp, Imp::TokioCt | Imp::Floor)
}

/// The SVG document for `all`.
pub fn svg(all: &[Measure]) -> String {
    let works: Vec<_> = WORKS
        .into_iter()
        .filter(|w| all.iter().any(|m| m.work == *w && drawn(m.imp)))
        .collect();
    let imps: Vec<Imp> = IMPS
        .into_iter()
        .filter(|i| drawn(*i) && all.iter().any(|m| m.imp == *i))
        .collect();
    let ratios: Vec<f64> = all
        .iter()
        .filter(|m| drawn(m.imp))
        .filter_map(|m| speedup(all, m))
        .collect();
    let targets = all.iter().filter_map(|m| match m.work.target(m.imp) {
        Some(Target::Speedup(x)) => Some(x),
        _ => None,
    });
    let lo = ratios.iter().copied().fold(0.5f64, f64::min).max(1e-3);
    let hi = ratios.iter().copied().chain(targets).fold(2.0f64, f64::max);
    let (dmin, dmax) = (lo.log10().floor(), hi.log10().ceil());
    let w = (LEFT + RIGHT + GROUP_W * works.len() as f64).max(720.0);
    let plot_h = H - TOP - BOTTOM;
    let y = |r: f64| TOP + (dmax - r.log10()) / (dmax - dmin) * plot_h;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{H}" viewBox="0 0 {w} {H}" font-family="sans-serif" font-size="11">"##
    );
    let _ = writeln!(s, r##"<rect width="{w}" height="{H}" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="20" font-size="14" font-weight="bold">Speed-up over tokio current_thread (log scale; above the line = faster / smaller)</text>"##
    );
    // Legend.
    let mut lx = LEFT;
    for imp in &imps {
        let _ = writeln!(
            s,
            r##"<rect x="{lx}" y="32" width="12" height="12" fill="{}"/><text x="{}" y="42">{}</text>"##,
            imp.colour(),
            lx + 16.0,
            xml(imp.name())
        );
        lx += 28.0 + imp.name().len() as f64 * 5.9;
    }
    let _ = writeln!(
        s,
        r##"<line x1="{lx}" y1="38" x2="{}" y2="38" stroke="#d62728" stroke-width="2.5"/><text x="{}" y="42">target</text>"##,
        lx + 16.0,
        lx + 20.0
    );
    // Grid: one line per power of ten, and 1× in bold.
    let mut d = dmin;
    while d <= dmax + 1e-9 {
        for m in [1.0, 2.0, 5.0] {
            let r = 10f64.powf(d) * m;
            if r.log10() > dmax + 1e-9 {
                break;
            }
            let yy = y(r);
            let (stroke, width) = if (r - 1.0).abs() < 1e-9 {
                ("#333", 1.5)
            } else if m == 1.0 {
                ("#ccc", 1.0)
            } else {
                ("#eee", 1.0)
            };
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{stroke}" stroke-width="{width}"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}×</text>"##,
                w - RIGHT,
                LEFT - 6.0,
                yy + 4.0,
                trim(r)
            );
        }
        d += 1.0;
    }
    let group_w = GROUP_W;
    let bar_w = ((group_w - 16.0) / imps.len().max(1) as f64).min(26.0);
    for (gi, work) in works.iter().enumerate() {
        let gx = LEFT + gi as f64 * group_w;
        // Only the runtimes this workload ran on, centred in the group.
        let imps: Vec<Imp> = imps
            .iter()
            .copied()
            .filter(|i| all.iter().any(|m| m.work == *work && m.imp == *i))
            .collect();
        let used = bar_w * imps.len() as f64;
        let x0 = gx + (group_w - used) / 2.0;
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12">{}</text>"##,
            gx + group_w / 2.0,
            H - BOTTOM + 18.0,
            xml(work.short())
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#666" font-size="10">{}</text>"##,
            gx + group_w / 2.0,
            H - BOTTOM + 32.0,
            xml(work.unit())
        );
        for (bi, imp) in imps.iter().enumerate() {
            let Some(m) = all.iter().find(|m| m.work == *work && m.imp == *imp) else {
                continue;
            };
            let bx = x0 + bi as f64 * bar_w;
            match speedup(all, m) {
                Some(r) => {
                    let (y1, y2) = (y(r.max(lo)), y(1.0));
                    let (top, h) = (y1.min(y2), (y1 - y2).abs().max(1.0));
                    let _ = writeln!(
                        s,
                        r##"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{}: {} {:.2}×</title></rect>"##,
                        bx + 1.0,
                        bar_w - 2.0,
                        imp.colour(),
                        xml(work.title()),
                        xml(imp.name()),
                        r
                    );
                    let ly = if r >= 1.0 { top - 3.0 } else { top + h + 10.0 };
                    let _ = writeln!(
                        s,
                        r##"<text x="{:.1}" y="{ly:.1}" text-anchor="middle" font-size="9">{}</text>"##,
                        bx + bar_w / 2.0,
                        short_ratio(r)
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9" fill="#b00">{}</text>"##,
                        bx + bar_w / 2.0,
                        y(1.0) - 3.0,
                        if m.value.is_none() { "fail" } else { "n/a" }
                    );
                }
            }
            if let Some(Target::Speedup(t)) = work.target(*imp) {
                let ty = y(t);
                let _ = writeln!(
                    s,
                    r##"<line x1="{:.1}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#d62728" stroke-width="2.5"><title>target {t}×</title></line>"##,
                    bx - 1.0,
                    bx + bar_w + 1.0
                );
            }
        }
    }
    if works
        .iter()
        .any(|w| matches!(w, Work::ParkedTime | Work::ParkedMem))
    {
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="{:.1}" fill="#555" font-size="10">Parked tasks have absolute targets (1,000,000 fibers in ≤ 3 s, ≤ 8 KiB resident each), shown in the table, not here.</text>"##,
            H - 6.0
        );
    }
    let _ = writeln!(s, "</svg>");
    s
}

fn trim(r: f64) -> String {
    if r >= 1.0 {
        format!("{r:.0}")
    } else {
        let s = format!("{r:.3}");
        s.trim_end_matches('0').to_string()
    }
}

fn short_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}")
    } else if r < 0.1 || (0.9..1.1).contains(&r) {
        // Near 1× one decimal would hide which side of the line it is.
        format!("{r:.2}")
    } else {
        format!("{r:.1}")
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(work: Work, imp: Imp, value: Option<f64>) -> Measure {
        Measure {
            work,
            imp,
            value,
            note: String::new(),
        }
    }

    #[test]
    fn one_bar_per_compared_figure_and_a_mark_per_target() {
        let all = [
            m(Work::Spawn, Imp::TokioCt, Some(300.0)),
            m(Work::Spawn, Imp::WeftUring, Some(100.0)),
            m(Work::Spawn, Imp::May, Some(1500.0)),
            m(Work::Echo, Imp::TokioCt, Some(1000.0)),
            m(Work::Echo, Imp::WeftUring, None),
        ];
        let s = svg(&all);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        // Bars: weft and may on spawn (tokio is the 1× line); legend
        // squares: weft io_uring and may; plus the background.
        let bars = s.matches("<rect").count();
        assert_eq!(bars, 1 + 2 + 2, "{s}");
        assert!(s.contains("weft io_uring 3.00×"), "{s}");
        assert!(s.contains("may (1 worker) 0.20×"), "{s}");
        // Targets: spawn and echo on weft io_uring, plus the legend line.
        assert_eq!(s.matches("<title>target").count(), 2, "{s}");
        // The failed echo figure is marked, not drawn.
        assert!(s.contains(">fail<"), "{s}");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(xml("a<b&c>"), "a&lt;b&amp;c&gt;");
    }
}
