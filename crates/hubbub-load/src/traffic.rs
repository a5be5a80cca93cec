//! The tasks of a run: a sender per sending client, a reader per client, and what they
//! share while the run goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use hubbub_wire::Incoming;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Token, client};

/// Shared between the tasks of one run.
pub(crate) struct Shared {
    pub(crate) run: u32,
    pub(crate) start: Instant,
    /// Set when the measured phase begins / ends.
    pub(crate) measuring: AtomicBool,
    pub(crate) stopped: AtomicBool,
    /// Messages sent while measuring, per sender.
    pub(crate) sent: Vec<AtomicU64>,
    pub(crate) deliveries: AtomicU64,
    /// Tells readers to hand in what they counted.
    pub(crate) finish: CancellationToken,
}

/// What a reader counted.
pub(crate) struct Outcome {
    pub(crate) deliveries: u64,
    pub(crate) duplicates: u64,
    pub(crate) latency: Histogram<u64>,
    /// The connection ended before the run did.
    pub(crate) dropped: bool,
}

/// Microseconds, up to ten minutes, three significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

pub(crate) async fn send_loop(
    sink: client::SharedWriter,
    shared: Arc<Shared>,
    sender: usize,
    rate: f64,
) {
    if rate <= 0.0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // Open loop: a tick missed while this tool was busy is sent late, not skipped, so the
    // offered rate stays the one asked for (the latency then shows the lateness).
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut warm_seq = 0_u64;
    while !shared.stopped.load(Ordering::Relaxed) {
        tick.tick().await;
        let measuring = shared.measuring.load(Ordering::SeqCst);
        let seq = if measuring {
            shared.sent[sender].load(Ordering::SeqCst)
        } else {
            warm_seq
        };
        let token = Token {
            run: shared.run,
            sender: sender as u32,
            seq,
            warmup: !measuring,
            sent_micros: shared.start.elapsed().as_micros() as u64,
        };
        let frame = format!(
            r#"{{"text":"load {}","HEADERS":{{"HX-Request":"true"}}}}"#,
            token.encode()
        );
        if sink.lock().await.send_text(&frame).await.is_err() {
            return;
        }
        if measuring {
            shared.sent[sender].fetch_add(1, Ordering::SeqCst);
        } else {
            warm_seq += 1;
        }
    }
}

pub(crate) async fn read_loop(
    mut stream: client::Reader,
    writer: client::SharedWriter,
    shared: Arc<Shared>,
    senders: usize,
) -> Outcome {
    let mut outcome = Outcome {
        deliveries: 0,
        duplicates: 0,
        latency: new_histogram(),
        dropped: false,
    };
    let prefix = Token::prefix(shared.run);
    // One bit per (sender, sequence number) seen.
    let mut seen: Vec<Vec<u64>> = vec![Vec::new(); senders];
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            () = shared.finish.cancelled() => return outcome,
        };
        let text = match message {
            Some(Incoming::Text(text)) => text,
            Some(Incoming::Ping(payload)) => {
                // Keep-alive: a server drops clients that stop answering.
                let _ = writer.lock().await.pong(&payload).await;
                continue;
            }
            Some(Incoming::Pong | Incoming::Binary) => continue,
            Some(Incoming::Close(_)) | None => {
                outcome.dropped = true;
                return outcome;
            }
        };
        let now = shared.start.elapsed().as_micros() as u64;
        let before = outcome.deliveries;
        for token in Token::find_all_after(&text, shared.run, prefix.as_str()) {
            if token.warmup || token.sender as usize >= senders {
                continue;
            }
            let bits = &mut seen[token.sender as usize];
            let (word, bit) = ((token.seq / 64) as usize, token.seq % 64);
            if bits.len() <= word {
                bits.resize(word + 1, 0);
            }
            if bits[word] & (1 << bit) != 0 {
                outcome.duplicates += 1;
                continue;
            }
            bits[word] |= 1 << bit;
            outcome.deliveries += 1;
            let _ = outcome
                .latency
                .record(now.saturating_sub(token.sent_micros).max(1));
        }
        // One shared update per frame, not per delivery.
        shared
            .deliveries
            .fetch_add(outcome.deliveries - before, Ordering::Relaxed);
    }
}

pub(crate) async fn progress_phase(shared: &Shared, length: Duration, name: &str) {
    let end = Instant::now() + length;
    let mut last = shared.deliveries.load(Ordering::Relaxed);
    while Instant::now() < end {
        let step = (end - Instant::now()).min(Duration::from_secs(1));
        tokio::time::sleep(step).await;
        let now = shared.deliveries.load(Ordering::Relaxed);
        let sent: u64 = shared.sent.iter().map(|s| s.load(Ordering::Relaxed)).sum();
        eprint!(
            "\r{name:>8} {:>6.1}s  sent {sent:>9}  deliveries {now:>11}  ({:>9.0}/s)   ",
            shared.start.elapsed().as_secs_f64(),
            (now - last) as f64 / step.as_secs_f64().max(1e-9)
        );
        last = now;
    }
    eprintln!();
}
