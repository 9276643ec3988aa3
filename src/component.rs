//! The one lifecycle every running source and sink follows.
//!
//! A component is built from its own config and a context, and returns a [`Running`] handle:
//! the tasks it started. When the daemon stops, `crate::app::daemon` sets the shutdown signal and
//! drains every handle by the same rule: each task gets [`DRAIN`] to finish what it holds, then
//! the daemon goes on without it (a stuck device or socket cannot hold up the exit).

use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a stopping component may take to finish what it holds.
pub const DRAIN: Duration = Duration::from_secs(10);

/// The tasks of one running component.
#[derive(Debug)]
pub struct Running {
    pub name: &'static str,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn new(name: &'static str, tasks: Vec<JoinHandle<()>>) -> Running {
        Running { name, tasks }
    }

    /// Waits for the component's tasks (after the shutdown signal), each for at most [`DRAIN`].
    pub async fn drain(self) {
        for task in self.tasks {
            if tokio::time::timeout(DRAIN, task).await.is_err() {
                tracing::warn!(
                    component = self.name,
                    "did not stop within {} s; going on without it",
                    DRAIN.as_secs()
                );
            }
        }
    }
}
