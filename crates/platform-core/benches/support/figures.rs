//! How the benchmarks report: each figure printed as `bench: NAME VALUE UNIT` when measured, then a
//! table against its target. Shared by `platform-core`'s scale bench and the platform bench in
//! `examples` (included there by path).

use std::time::Duration;

/// One measured figure and its target.
pub(crate) struct Figure {
    name: &'static str,
    value: f64,
    unit: &'static str,
    target: Option<Target>,
}

/// What a figure should reach.
#[derive(Clone, Copy)]
pub(crate) enum Target {
    /// The value is at most this.
    AtMost(f64),
    /// The value is at least this.
    AtLeast(f64),
}

impl Target {
    fn met(self, v: f64) -> bool {
        match self {
            Target::AtMost(t) => v <= t,
            Target::AtLeast(t) => v >= t,
        }
    }

    fn show(self) -> String {
        match self {
            Target::AtMost(t) => format!("<= {t}"),
            Target::AtLeast(t) => format!(">= {t}"),
        }
    }
}

/// The figures of a run, in the order measured.
#[derive(Default)]
pub(crate) struct Figures(Vec<Figure>);

impl Figures {
    /// Records a figure and prints its `bench:` line.
    pub(crate) fn add(
        &mut self,
        name: &'static str,
        value: f64,
        unit: &'static str,
        target: Option<Target>,
    ) {
        println!("bench: {name} {} {unit}", round(value));
        self.0.push(Figure {
            name,
            value,
            unit,
            target,
        });
    }

    /// Prints every figure against its target.
    pub(crate) fn table(&self) {
        println!();
        println!(
            "{:<28} {:>12} {:<6} {:>10}  result",
            "figure", "value", "unit", "target"
        );
        for f in &self.0 {
            let (target, result) = match f.target {
                Some(t) if t.met(f.value) => (t.show(), "met"),
                Some(t) => (t.show(), "MISSED"),
                None => (String::new(), ""),
            };
            println!(
                "{:<28} {:>12} {:<6} {:>10}  {result}",
                f.name,
                round(f.value),
                f.unit,
                target
            );
        }
    }
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Milliseconds, as a figure.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
