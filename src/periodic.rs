//! A named background thread that runs a task every period (and at once when woken), until
//! stopped: the localhost reloader and the Redis definitions reader.

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, select, tick};

use crate::error::Error;

/// A running periodic task.
#[derive(Debug)]
pub(crate) struct Periodic {
    name: String,
    stop: Sender<()>,
    wake: Sender<()>,
    done: Receiver<()>,
    handle: JoinHandle<()>,
}

impl Periodic {
    /// Starts thread `name`, which runs `task` every `period` (the first run after one
    /// period) and whenever [`Periodic::wake`] is called.
    pub(crate) fn start(
        name: &str,
        period: Duration,
        mut task: impl FnMut() + Send + 'static,
    ) -> Result<Periodic, Error> {
        let (stop, stop_rx) = bounded::<()>(1);
        let (wake, wake_rx) = bounded::<()>(1);
        let (done_tx, done) = bounded::<()>(1);
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let ticker = tick(period);
                loop {
                    select! {
                        recv(stop_rx) -> _ => break,
                        recv(ticker) -> _ => task(),
                        recv(wake_rx) -> _ => task(),
                    }
                }
                let _ = done_tx.send(());
            })
            .map_err(|source| Error::Io {
                path: PathBuf::from(format!("<thread {name}>")),
                source,
            })?;
        Ok(Periodic {
            name: name.to_string(),
            stop,
            wake,
            done,
            handle,
        })
    }

    /// Runs the task now (once, however often it is called before it runs).
    pub(crate) fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// Stops the thread and joins it; false when it did not stop within `timeout` (it is
    /// then left to finish on its own) or panicked.
    pub(crate) fn stop(self, timeout: Duration) -> bool {
        let _ = self.stop.try_send(());
        if self.done.recv_timeout(timeout).is_err() {
            log::warn!(
                "{} did not stop within {}",
                self.name,
                crate::text::duration(timeout)
            );
            return false;
        }
        if self.handle.join().is_err() {
            log::error!("{} panicked", self.name);
            return false;
        }
        true
    }
}
