//! Workloads, runtimes, measurements, ratios against tokio, verdicts
//! against the ANCHORS targets, and the table printed at the end.

/// A workload (one row group of the table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    Yield,
    Spawn,
    Promise,
    PromiseDirect,
    Stream1,
    Stream64,
    Echo,
    EchoCpu,
    Http,
    HttpCpu,
    Files,
    ParkedTime,
    ParkedMem,
}

/// Every workload, in table order.
pub const WORKS: [Work; 13] = [
    Work::Yield,
    Work::Spawn,
    Work::Promise,
    Work::PromiseDirect,
    Work::Stream1,
    Work::Stream64,
    Work::Echo,
    Work::EchoCpu,
    Work::Http,
    Work::HttpCpu,
    Work::Files,
    Work::ParkedTime,
    Work::ParkedMem,
];

impl Work {
    pub fn key(self) -> &'static str {
        match self {
            Work::Yield => "yield",
            Work::Spawn => "spawn",
            Work::Promise => "promise",
            Work::PromiseDirect => "promise-direct",
            Work::Stream1 => "stream1",
            Work::Stream64 => "stream64",
            Work::Echo => "echo",
            Work::EchoCpu => "echo-cpu",
            Work::Http => "http",
            Work::HttpCpu => "http-cpu",
            Work::Files => "files",
            Work::ParkedTime => "parked-time",
            Work::ParkedMem => "parked-mem",
        }
    }

    pub fn from_key(k: &str) -> Option<Work> {
        WORKS.into_iter().find(|w| w.key() == k)
    }

    pub fn title(self) -> &'static str {
        match self {
            Work::Yield => "switch (2 tasks yielding)",
            Work::Spawn => "spawn + join, 200k",
            Work::Promise => "promise round trip",
            Work::PromiseDirect => "promise: spawn resolver, await",
            Work::Stream1 => "stream, cap 1",
            Work::Stream64 => "stream, cap 64",
            Work::Echo => "TCP echo, 32 clients x 64 B",
            Work::EchoCpu => "TCP echo: server CPU per trip",
            Work::Http => "HTTP hello, -t1 -c64",
            Work::HttpCpu => "HTTP hello: server CPU per req",
            Work::Files => "random 4 KiB reads, 64 readers",
            Work::ParkedTime => "parked tasks: spawn + finish",
            Work::ParkedMem => "parked tasks: resident memory",
        }
    }

    /// A short label for the chart.
    pub fn short(self) -> &'static str {
        match self {
            Work::Yield => "yield",
            Work::Spawn => "spawn",
            Work::Promise => "promise",
            Work::PromiseDirect => "promise direct",
            Work::Stream1 => "stream 1",
            Work::Stream64 => "stream 64",
            Work::Echo => "TCP echo",
            Work::EchoCpu => "echo CPU",
            Work::Http => "HTTP",
            Work::HttpCpu => "HTTP CPU",
            Work::Files => "file reads",
            Work::ParkedTime => "parked time",
            Work::ParkedMem => "parked mem",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Work::Yield => "ns/switch",
            Work::Spawn => "ns/task",
            Work::Promise | Work::PromiseDirect => "ns/trip",
            Work::Stream1 | Work::Stream64 => "ns/item",
            Work::Echo => "trips/s",
            Work::EchoCpu | Work::HttpCpu => "µs CPU/op",
            Work::Http => "req/s",
            Work::Files => "reads/s",
            Work::ParkedTime => "s",
            Work::ParkedMem => "B/task",
        }
    }

    pub fn higher_is_better(self) -> bool {
        matches!(self, Work::Echo | Work::Http | Work::Files)
    }

    /// The stream capacity of a stream workload.
    pub fn capacity(self) -> usize {
        if self == Work::Stream1 {
            1
        } else {
            64
        }
    }

    /// The tokio current_thread figure in ANCHORS.md (measured earlier on
    /// this machine kind, unloaded), to show how loaded this run's machine was.
    pub fn anchor_tokio(self) -> Option<f64> {
        Some(match self {
            Work::Yield => 272.0,
            Work::Spawn => 354.0,
            Work::Promise | Work::PromiseDirect => 613.0,
            Work::Stream1 => 594.0,
            Work::Stream64 => 96.0,
            Work::Echo => 164_000.0,
            Work::Http => 171_000.0,
            Work::Files => 87_000.0,
            Work::ParkedTime => 1.4,
            Work::ParkedMem => 464.0,
            Work::EchoCpu | Work::HttpCpu => return None,
        })
    }

    /// The ANCHORS target for `imp` on this workload, if any.
    pub fn target(self, imp: Imp) -> Option<Target> {
        use Target::*;
        let weft = matches!(imp, Imp::WeftUring | Imp::WeftPosix);
        match (self, imp) {
            (Work::Yield, _) if weft => Some(Speedup(10.0)),
            (Work::Spawn, _) if weft => Some(Speedup(3.0)),
            (Work::Promise, _) if weft => Some(Speedup(4.0)),
            (Work::Stream1, _) if weft => Some(Speedup(4.0)),
            (Work::Stream64, _) if weft => Some(Speedup(3.0)),
            (Work::Http, Imp::WeftUring) => Some(Speedup(1.3)),
            (Work::Http, Imp::WeftPosix) => Some(Speedup(1.0)),
            (Work::Echo, Imp::WeftUring) => Some(Speedup(1.2)),
            (Work::Files, Imp::WeftUring) => Some(Speedup(4.0)),
            (Work::ParkedTime, _) if weft => Some(AtMost(3.0)),
            (Work::ParkedMem, _) if weft => Some(AtMost(8192.0)),
            _ => None,
        }
    }
}

/// Fibers in this run's parked workload (its targets are for a million).
pub static PARKED_N: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(1_000_000);

/// A target from ANCHORS.md.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// At least this many times faster than tokio current_thread.
    Speedup(f64),
    /// The figure itself at most this.
    AtMost(f64),
}

/// A runtime (or runtime configuration) a workload runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Imp {
    WeftUring,
    WeftPosix,
    TokioCt,
    TokioMt,
    TokioPread,
    May,
    Floor,
}

/// Every runtime, in table and chart order.
pub const IMPS: [Imp; 7] = [
    Imp::WeftUring,
    Imp::WeftPosix,
    Imp::TokioCt,
    Imp::TokioMt,
    Imp::TokioPread,
    Imp::May,
    Imp::Floor,
];

impl Imp {
    pub fn key(self) -> &'static str {
        match self {
            Imp::WeftUring => "weft-uring",
            Imp::WeftPosix => "weft-posix",
            Imp::TokioCt => "tokio-ct",
            Imp::TokioMt => "tokio-mt",
            Imp::TokioPread => "tokio-pread",
            Imp::May => "may",
            Imp::Floor => "floor",
        }
    }

    pub fn from_key(k: &str) -> Option<Imp> {
        IMPS.into_iter().find(|i| i.key() == k)
    }

    pub fn name(self) -> &'static str {
        match self {
            Imp::WeftUring => "weft io_uring",
            Imp::WeftPosix => "weft POSIX",
            Imp::TokioCt => "tokio current_thread",
            Imp::TokioMt => "tokio multi_thread (2)",
            Imp::TokioPread => "tokio spawn_blocking(pread)",
            Imp::May => "may (1 worker)",
            Imp::Floor => "corosensei floor",
        }
    }

    /// Bar colour in the chart.
    pub fn colour(self) -> &'static str {
        match self {
            Imp::WeftUring => "#1f4e9c",
            Imp::WeftPosix => "#6fa0e0",
            Imp::TokioCt => "#888888",
            Imp::TokioMt => "#b0b0b0",
            Imp::TokioPread => "#c9a36b",
            Imp::May => "#e08a2e",
            Imp::Floor => "#444444",
        }
    }
}

/// One figure: a workload on a runtime.
#[derive(Clone, Debug)]
pub struct Measure {
    pub work: Work,
    pub imp: Imp,
    /// The figure in `work.unit()`; `None` if the run failed.
    pub value: Option<f64>,
    /// Why it failed, or what else is worth knowing.
    pub note: String,
}

impl Measure {
    /// Prints one round's figure (progress output).
    pub fn print_line_round(&self, round: usize, rounds: usize) {
        let v = self
            .value
            .map_or("failed".into(), |v| fmt_value(v, self.work));
        println!(
            "    round {round}/{rounds}: {:<28} {v} {}",
            self.imp.name(),
            if self.value.is_some() {
                self.work.unit()
            } else {
                self.note.as_str()
            }
        );
    }

    /// Prints the figure as soon as it is known (progress output).
    pub fn print_line(&self) {
        let (v, unit) = match self.value {
            Some(v) => (fmt_value(v, self.work), self.work.unit()),
            None => ("failed".into(), ""),
        };
        let note = if self.note.is_empty() {
            String::new()
        } else {
            format!("  ({})", self.note)
        };
        println!(
            "  {:<32} {:<28} {:>12} {:<9}{note}",
            self.work.title(),
            self.imp.name(),
            v,
            unit
        );
    }
}

/// A figure formatted for the table.
pub fn fmt_value(v: f64, work: Work) -> String {
    match work {
        Work::ParkedTime => format!("{v:.2}"),
        _ if v >= 1000.0 => group_thousands(v.round() as u64),
        _ if v >= 100.0 => format!("{v:.0}"),
        _ if v >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

fn group_thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How many times better than tokio current_thread `m` is (> 1: better).
pub fn speedup(all: &[Measure], m: &Measure) -> Option<f64> {
    let v = m.value?;
    let base = all
        .iter()
        .find(|b| b.work == m.work && b.imp == Imp::TokioCt)?
        .value?;
    if v <= 0.0 || base <= 0.0 {
        return None;
    }
    Some(if m.work.higher_is_better() {
        v / base
    } else {
        base / v
    })
}

/// `met`, or `missed` and by how much, against the ANCHORS target.
pub fn verdict(all: &[Measure], m: &Measure) -> (String, String) {
    let Some(t) = m.work.target(m.imp) else {
        return (String::new(), String::new());
    };
    let mut target = match t {
        Target::Speedup(x) => format!("≥ {x}× tokio"),
        Target::AtMost(x) if m.work == Work::ParkedMem => format!("≤ {} B", x as u64),
        Target::AtMost(x) => format!("≤ {x} s"),
    };
    let parked_n = PARKED_N.load(std::sync::atomic::Ordering::Relaxed);
    if matches!(m.work, Work::ParkedTime | Work::ParkedMem) && parked_n != 1_000_000 {
        return (
            target,
            format!("n/a: target is for 1,000,000, this run parked {parked_n}"),
        );
    }
    let mut verdict = match (t, m.value, speedup(all, m)) {
        (_, None, _) => "no figure".to_string(),
        (Target::Speedup(x), _, Some(s)) if s >= x => "met".into(),
        (Target::Speedup(x), _, Some(s)) => format!(
            "missed: {s:.2}× of {x}× ({:.0}% short)",
            (1.0 - s / x) * 100.0
        ),
        (Target::Speedup(_), _, None) => "no tokio figure".into(),
        (Target::AtMost(x), Some(v), _) if v <= x => "met".into(),
        (Target::AtMost(x), Some(v), _) => format!("missed: {:.1}× the limit", v / x),
    };
    // The switch also has a floor-relative target.
    if m.work == Work::Yield {
        if let (Some(v), Some(floor)) = (m.value, find(all, Work::Yield, Imp::Floor)) {
            target.push_str("; ≤ 8× floor");
            let x = v / floor;
            if x <= 8.0 {
                verdict.push_str(&format!("; {x:.1}× floor: met"));
            } else {
                verdict.push_str(&format!("; {x:.1}× floor: missed"));
            }
        }
    }
    (target, verdict)
}

/// The figure of `work` on `imp`, if measured.
pub fn find(all: &[Measure], work: Work, imp: Imp) -> Option<f64> {
    all.iter()
        .find(|m| m.work == work && m.imp == imp)
        .and_then(|m| m.value)
}

/// Rows in table order.
pub fn ordered(all: &[Measure]) -> Vec<&Measure> {
    let mut v: Vec<&Measure> = all.iter().collect();
    let pos_w = |w: Work| WORKS.iter().position(|x| *x == w).unwrap_or(99);
    let pos_i = |i: Imp| IMPS.iter().position(|x| *x == i).unwrap_or(99);
    v.sort_by_key(|m| (pos_w(m.work), pos_i(m.imp)));
    v
}

/// Prints the summary table to stdout.
pub fn print_table(all: &[Measure]) {
    println!(
        "{:<32} {:<28} {:>12} {:<9} {:>9}  {:<22} verdict",
        "workload", "runtime", "figure", "unit", "vs tokio", "target"
    );
    for m in ordered(all) {
        let (v, unit) = match m.value {
            Some(v) => (fmt_value(v, m.work), m.work.unit()),
            None => ("failed".into(), ""),
        };
        let s = speedup(all, m).map_or("-".into(), |s| format!("{s:.2}×"));
        let (target, verdict) = verdict(all, m);
        println!(
            "{:<32} {:<28} {:>12} {:<9} {:>9}  {:<22} {verdict}",
            m.work.title(),
            m.imp.name(),
            v,
            unit,
            s,
            target
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A measurement of `value`, with no note (for tests here and in `doc`).
    pub(crate) fn m(work: Work, imp: Imp, value: f64) -> Measure {
        Measure {
            work,
            imp,
            value: Some(value),
            note: String::new(),
        }
    }

    #[test]
    fn speedup_follows_the_direction_of_the_unit() {
        let all = [
            m(Work::Yield, Imp::TokioCt, 100.0),
            m(Work::Yield, Imp::WeftUring, 25.0),
            m(Work::Echo, Imp::TokioCt, 1000.0),
            m(Work::Echo, Imp::WeftUring, 1500.0),
        ];
        // Time: tokio / weft. Rate: weft / tokio.
        assert_eq!(speedup(&all, &all[1]), Some(4.0));
        assert_eq!(speedup(&all, &all[3]), Some(1.5));
        assert_eq!(speedup(&all, &all[0]), Some(1.0));
    }

    #[test]
    fn no_speedup_without_a_tokio_figure_or_a_value() {
        let mut failed = m(Work::Spawn, Imp::TokioCt, 0.0);
        failed.value = None;
        let all = [failed, m(Work::Spawn, Imp::WeftUring, 10.0)];
        assert_eq!(speedup(&all, &all[1]), None);
        assert_eq!(speedup(&all, &all[0]), None);
    }

    #[test]
    fn verdicts_say_met_or_by_how_much_it_was_missed() {
        let all = [
            m(Work::Spawn, Imp::TokioCt, 300.0),
            m(Work::Spawn, Imp::WeftUring, 100.0),
            m(Work::Spawn, Imp::WeftPosix, 150.0),
            m(Work::ParkedMem, Imp::WeftUring, 9000.0),
        ];
        assert_eq!(verdict(&all, &all[1]).1, "met");
        assert_eq!(verdict(&all, &all[2]).1, "missed: 2.00× of 3× (33% short)");
        assert_eq!(verdict(&all, &all[0]), (String::new(), String::new()));
        assert_eq!(verdict(&all, &all[3]).1, "missed: 1.1× the limit");
    }

    #[test]
    fn the_switch_is_also_judged_against_the_floor() {
        let all = [
            m(Work::Yield, Imp::TokioCt, 200.0),
            m(Work::Yield, Imp::WeftUring, 20.0),
            m(Work::Yield, Imp::Floor, 4.0),
        ];
        let (target, v) = verdict(&all, &all[1]);
        assert!(target.contains("≤ 8× floor"), "{target}");
        assert_eq!(v, "met; 5.0× floor: met");
    }

    #[test]
    fn figures_are_grouped_by_thousands() {
        assert_eq!(fmt_value(1_234_567.0, Work::Http), "1,234,567");
        assert_eq!(fmt_value(999.0, Work::Http), "999");
        assert_eq!(fmt_value(3.456, Work::Yield), "3.46");
        assert_eq!(fmt_value(1.5, Work::ParkedTime), "1.50");
    }

    #[test]
    fn keys_round_trip() {
        for w in WORKS {
            assert_eq!(Work::from_key(w.key()), Some(w));
        }
        for i in IMPS {
            assert_eq!(Imp::from_key(i.key()), Some(i));
        }
        assert_eq!(Imp::from_key("nope"), None);
    }
}
