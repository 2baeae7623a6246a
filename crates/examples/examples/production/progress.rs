//! Progress on stderr while a run applies: a bar on a terminal, a line per step otherwise.

use crate::*;

/// Live progress: one line per resource with its state and elapsed time, and an overall bar when
/// stderr is a terminal; plain lines otherwise. In JSON mode, lines go to stderr.
#[derive(Clone)]
pub(crate) struct Reporter {
    inner: Arc<Mutex<ReporterState>>,
}

pub(crate) struct ReporterState {
    bar: Option<ProgressBar>,
    json: bool,
    tty: bool,
}

impl Reporter {
    pub(crate) fn new(json: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        Self {
            inner: Arc::new(Mutex::new(ReporterState {
                bar: None,
                json,
                tty,
            })),
        }
    }

    pub(crate) fn start(&self, total: usize) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if s.tty {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            s.bar = Some(bar);
        }
    }

    pub(crate) fn finish(&self) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bar) = s.bar.take() {
            bar.finish_and_clear();
        }
    }

    pub(crate) fn line(&self, text: String) {
        let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match &s.bar {
            Some(bar) => bar.println(text),
            None if s.json => eprintln!("{text}"),
            None => println!("{text}"),
        }
    }

    pub(crate) fn event(&self, e: &Event) {
        let verb = |a: &ActionKind| match a {
            ActionKind::Create => "creating",
            ActionKind::Update => "updating",
            ActionKind::Replace => "replacing",
            ActionKind::Delete => "deleting",
            ActionKind::Same => "checking",
            _ => "applying",
        };
        let done = |a: &ActionKind| match a {
            ActionKind::Create => "created",
            ActionKind::Update => "updated",
            ActionKind::Replace => "replaced",
            ActionKind::Delete => "deleted",
            ActionKind::Same => "unchanged",
            _ => "applied",
        };
        match e {
            Event::Started {
                stack,
                resource,
                action,
            } => {
                let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(bar) = &s.bar {
                    bar.set_message(format!("{} {stack}/{resource}", verb(action)));
                }
            }
            Event::Done {
                stack,
                resource,
                action,
                elapsed,
            } => {
                self.line(format!(
                    "  {:<9} {stack}/{resource} ({:.1}s)",
                    done(action),
                    elapsed.as_secs_f64()
                ));
                let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(bar) = &s.bar {
                    bar.inc(1);
                }
            }
            Event::Failed {
                stack,
                resource,
                action,
                error,
            } => self.line(format!("  FAILED    {stack}/{resource} while {}: {error}", verb(action))),
            Event::Retrying {
                stack,
                resource,
                operation,
                attempt,
                delay,
                code,
            } => self.line(format!(
                "  retrying  {stack}/{resource} {operation} (attempt {attempt} failed with {}; next in {:.1}s)",
                code.as_deref().unwrap_or("an error"),
                delay.as_secs_f64()
            )),
            Event::Progress {
                stack,
                resource,
                message,
            } => self.line(format!("  ...       {stack}/{resource}: {message}")),
            Event::LockWait {
                stack,
                holder,
                timeout,
            } => self.line(format!(
                "  waiting   for the lock of stack {stack}, held by {holder} (up to {})",
                humantime::format_duration(*timeout)
            )),
            _ => {}
        }
    }
}
