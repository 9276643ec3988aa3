//! Acknowledging QoS 1 messages after their commit, in runs, written right behind one
//! acknowledgement that rumqttc sends itself.
//!
//! This is the one file that reaches into rumqttc's insides (`EventLoop::state.events`,
//! `EventLoop::network`, and the number of packets `Network::readb` decodes from one socket
//! read). Cargo.toml pins rumqttc to the exact version this was written against
//! ([`RUMQTTC_VERSION`]); `tests/mqtt.rs::rumqttc_behaves_as_the_acknowledgement_batching_expects`
//! fails if an upgrade changes what it relies on.

use crate::pipeline::AckCount;
use rumqttc::{AsyncClient, Event, EventLoop, Packet, PubAck, Publish, QoS};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The rumqttc release this file was written against (and Cargo.toml pins).
pub const RUMQTTC_VERSION: &str = "0.25.1";

/// rumqttc decodes at most this many packets from one socket read before it returns
/// (`Network::readb`); a read that gave fewer left nothing in the socket.
pub const READ_BATCH: usize = 9;

/// Whether the messages of the last socket read have all been handed out: the next poll reads
/// the socket.
pub(super) fn read_drained(eventloop: &EventLoop) -> bool {
    eventloop.state.events.is_empty()
}

/// Writes a PINGREQ at once, outside rumqttc's keep-alive (an unasked PINGRESP only clears its
/// wait for one). Sent when a small window refilled only in part: a broker with Nagle's
/// algorithm on (mosquitto's default, `set_tcp_nodelay false`) sends one PUBLISH after a run of
/// acknowledgements and holds the others until that one is acknowledged at the TCP level, which
/// the kernel delays (delayed ACK) until ecogate next writes. The ping's segment carries that
/// ACK. Measured under a strict 20-message window: 3,243 msg/s without it (docs/benchmarks.md).
/// Returns whether it was written.
pub(super) async fn kick(eventloop: &mut EventLoop) -> bool {
    let Some(network) = eventloop.network.as_mut() else {
        return false;
    };
    if network.write(Packet::PingReq).await.is_err() {
        return false;
    }
    tokio::time::timeout(Duration::from_secs(10), network.flush())
        .await
        .is_ok_and(|r| r.is_ok())
}

/// The publishes rumqttc decoded but has not handed out yet (on a lost connection).
pub(super) fn take_unread_publishes(eventloop: &mut EventLoop) -> Vec<Publish> {
    let mut out = Vec::new();
    while let Some(ev) = eventloop.state.events.pop_front() {
        if let Event::Incoming(Packet::Publish(p)) = ev {
            out.push(p);
        }
    }
    out
}

/// A QoS 1 message to acknowledge. Kept in arrival order, which is the order envelopes commit
/// in. Only the packet id is kept: a whole `Publish` would hold on to the socket read its payload
/// was cut from.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingAck {
    /// Acknowledged once the pipeline has committed its readings; else at once (refused input,
    /// or nothing to read).
    pub(super) needs_commit: bool,
    /// `None` once the connection it came on is lost: the broker sends every unacknowledged
    /// message again on the new connection, with the same packet id, and that copy is the one
    /// to acknowledge. Acknowledging the old one as well could acknowledge, under a packet id the
    /// broker has since reused, a message not yet committed.
    pub(super) pkid: Option<u16>,
}

/// What the event loop tells the acker, in order.
#[derive(Debug)]
pub(super) enum AckNote {
    Messages(Vec<PendingAck>),
    ConnectionLost,
}

/// One run of acknowledgements that came due together. The acker sends the first through
/// rumqttc's request channel (which also wakes the event loop if it is waiting on the socket);
/// when rumqttc reports it written, the event loop writes the rest behind it with one flush.
/// rumqttc writes and flushes every request on its own, a system call and a TCP segment per
/// PUBACK for ecogate and the broker, where its automatic acknowledgements go out ten at a time.
#[derive(Debug)]
pub(super) struct AckRun {
    leader: u16,
    rest: Vec<u16>,
}

/// Runs whose leader is in rumqttc's request channel, in the order the leaders were sent. The
/// acker and the event loop share one thread, so the acker's "send the leader, queue the run"
/// happens with no await in between and the two never disagree; the lock is never contended.
pub(super) type AckRuns = Arc<std::sync::Mutex<std::collections::VecDeque<AckRun>>>;

/// Writes the run led by `pkid`, which rumqttc has just written, right behind it. Returns the
/// PUBACKs written, the leader included.
pub(super) async fn write_run(eventloop: &mut EventLoop, runs: &AckRuns, pkid: u16) -> u64 {
    let run = runs.lock().expect("ack runs").pop_front();
    match run {
        Some(run) if run.leader == pkid => {
            if run.rest.is_empty() {
                return 1;
            }
            // No connection: these messages are unacknowledged, so the broker sends them again.
            let Some(network) = eventloop.network.as_mut() else {
                return 1;
            };
            let mut written = 1;
            for id in run.rest {
                if network
                    .write(Packet::PubAck(PubAck::new(id)))
                    .await
                    .is_err()
                {
                    // The connection is failing; the next poll says so and reconnects.
                    return written;
                }
                written += 1;
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), network.flush()).await;
            written
        }
        other => {
            // Not expected to happen. If it did, some acknowledgements would never be sent
            // and their messages would hold the broker's in-flight slots until a reconnect:
            // reconnecting now makes the broker send every unacknowledged message again.
            tracing::error!(
                pkid,
                expected = other.map(|r| r.leader),
                "mqtt acknowledgements out of step; reconnecting"
            );
            runs.lock().expect("ack runs").clear();
            eventloop.clean();
            1
        }
    }
}

/// Acknowledges messages in arrival order: refused ones at once, the others as the pipeline's
/// commit count passes them, a run at a time (see [`AckRun`]). Once the source stops (`rx`
/// closed), it acknowledges what is committed within a few seconds and leaves the rest to the
/// broker's redelivery.
pub(super) async fn acker(
    client: AsyncClient,
    mut rx: mpsc::UnboundedReceiver<AckNote>,
    committed: Arc<AckCount>,
    runs: AckRuns,
) {
    let mut pending: std::collections::VecDeque<PendingAck> = std::collections::VecDeque::new();
    let mut acked_commits = 0u64;
    let mut open = true;
    let mut stop_by: Option<tokio::time::Instant> = None;
    loop {
        if open {
            tokio::select! {
                item = rx.recv() => match item {
                    Some(note) => take(&mut pending, note),
                    None => open = false,
                },
                _ = committed.changed.notified() => {}
            }
            while let Ok(note) = rx.try_recv() {
                take(&mut pending, note);
            }
        } else {
            let by = *stop_by
                .get_or_insert_with(|| tokio::time::Instant::now() + Duration::from_secs(4));
            if pending.is_empty()
                || tokio::time::timeout_at(by, committed.changed.notified())
                    .await
                    .is_err()
            {
                tracing::debug!(
                    left = pending.len(),
                    acked_commits,
                    committed = committed.committed(),
                    "mqtt acker stopped"
                );
                return;
            }
        }
        let done = committed.committed();
        let mut due = Vec::new();
        while let Some(&PendingAck { needs_commit, pkid }) = pending.front() {
            if needs_commit {
                if acked_commits >= done {
                    break;
                }
                acked_commits += 1;
            }
            pending.pop_front();
            due.extend(pkid);
        }
        if !due.is_empty() {
            send_run(&client, &runs, due).await;
        }
    }
}

fn take(pending: &mut std::collections::VecDeque<PendingAck>, note: AckNote) {
    match note {
        AckNote::Messages(acks) => pending.extend(acks),
        AckNote::ConnectionLost => {
            for ack in pending.iter_mut() {
                ack.pkid = None;
            }
        }
    }
}

/// Sends a run's leader and queues the run.
async fn send_run(client: &AsyncClient, runs: &AckRuns, due: Vec<u16>) {
    tracing::trace!(
        leader = due[0],
        acks = due.len(),
        "mqtt acknowledgements due"
    );
    let mut leader = Publish::new("", QoS::AtLeastOnce, Vec::new());
    leader.pkid = due[0];
    let mut run = Some(AckRun {
        leader: due[0],
        rest: due[1..].to_vec(),
    });
    loop {
        {
            // Sent and queued under one lock with no await between: see [`AckRuns`].
            let mut queue = runs.lock().expect("ack runs");
            if client.try_ack(&leader).is_ok() {
                queue.push_back(run.take().expect("sent once"));
                return;
            }
        }
        // The request channel is full (the event loop is reconnecting), or closed because the
        // event loop has ended, in which case this task ends with the runtime.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
