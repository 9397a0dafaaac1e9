//! Benchmark: what the outbox costs the cameras' result handlers when many
//! cameras produce events at once, with the daemon's own store (fsync on, the
//! store on this machine's disk). Two ways side by side in one run:
//!
//! - `inline`: each append writes and syncs its event before returning, on the
//!   async runtime (the store before the writer thread);
//! - `writer`: appends queue their events for the writer thread, which writes
//!   what queued up with one sync per batch (group commit).
//!
//! Each camera is a task on a 2-thread runtime, as in the daemon: it handles a
//! result every 200 ms (5 Hz) and appends an event every `1/rate` s, the
//! cameras' events spread over that period, or all at the same moment (one
//! thing seen by every camera: the lights go out). At every result the
//! camera's publisher delivers what is stored (`next`, then `remove` of each,
//! on the runtime as in the daemon). Printed: how long an append holds the
//! result handler, how long a delivery holds the publisher (it waits for any
//! lock the writer holds), and how late the results are handled (a blocked
//! runtime thread delays every camera on it).
//!
//!     cargo run --release --example outbox_latency -- [DIR] [CAMERAS] [SECONDS] [EVENTS/S PER CAMERA]
//!
//! DIR must be on the disk being measured (not a tmpfs): by default
//! `target/outbox-latency`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orion::config::OutboxConfig;
use orion::outbox::Outbox;

const RESULT_EVERY: Duration = Duration::from_millis(200);

/// What one run measured, in microseconds.
struct Figures {
    append_us: Vec<f64>,
    deliver_us: Vec<f64>,
    late_us: Vec<f64>,
    events: usize,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.first().map_or("target/outbox-latency", String::as_str));
    let cameras: usize = args.get(1).map_or(Ok(64), |a| a.parse())?;
    let seconds: f64 = args.get(2).map_or(Ok(10.0), |a| a.parse())?;
    let rate: f64 = args.get(3).map_or(Ok(1.0), |a| a.parse())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "{cameras} cameras, {rate} event/s and 5 results/s each, {seconds} s per way, fsync on, store in {}",
        dir.display()
    );
    let mut rows = Vec::new();
    for (events, aligned) in [("spread", false), ("together", true)] {
        for way in ["inline", "writer"] {
            let _ = std::fs::remove_dir_all(&dir);
            let settings = OutboxConfig {
                path: dir.clone(),
                fsync: true,
                max_events_per_minute: u32::MAX,
                ..OutboxConfig::default()
            };
            let outbox = Arc::new(Outbox::open(&settings)?);
            if way == "writer" {
                outbox.start_writer()?;
            }
            let figures = runtime.block_on(run(&outbox, cameras, seconds, rate, aligned));
            outbox.close();
            rows.push((events, way, figures));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "| events come | way | events | append p50 | append p99 | append max | delivery p99 | delivery max | result late p50 | result late p99 | result late max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (events, way, f) in &mut rows {
        println!(
            "| {events} | {way} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f.events,
            ms(quantile(&mut f.append_us, 0.5)),
            ms(quantile(&mut f.append_us, 0.99)),
            ms(quantile(&mut f.append_us, 1.0)),
            ms(quantile(&mut f.deliver_us, 0.99)),
            ms(quantile(&mut f.deliver_us, 1.0)),
            ms(quantile(&mut f.late_us, 0.5)),
            ms(quantile(&mut f.late_us, 0.99)),
            ms(quantile(&mut f.late_us, 1.0)),
        );
    }
    for pair in rows.chunks_mut(2) {
        let [(events, _, inline), (_, _, writer)] = pair else {
            continue;
        };
        println!(
            "{events}: append p99 inline / writer {:.0}x; result lateness p99 inline / writer {:.1}x, max {:.1}x",
            quantile(&mut inline.append_us, 0.99) / quantile(&mut writer.append_us, 0.99).max(1.0),
            quantile(&mut inline.late_us, 0.99) / quantile(&mut writer.late_us, 0.99).max(1.0),
            quantile(&mut inline.late_us, 1.0) / quantile(&mut writer.late_us, 1.0).max(1.0),
        );
    }
    Ok(())
}

fn ms(us: f64) -> String {
    format!("{:.2} ms", us / 1e3)
}

fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// Every camera's task for `seconds`; what they measured.
async fn run(
    outbox: &Arc<Outbox>,
    cameras: usize,
    seconds: f64,
    rate: f64,
    aligned: bool,
) -> Figures {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for camera in 0..cameras {
        let outbox = outbox.clone();
        let phase = if aligned {
            0.0
        } else {
            camera as f64 / cameras as f64
        };
        tasks.spawn(camera_task(outbox, camera, phase, until, rate));
    }
    let mut figures = Figures {
        append_us: Vec::new(),
        deliver_us: Vec::new(),
        late_us: Vec::new(),
        events: 0,
    };
    while let Some(Ok(f)) = tasks.join_next().await {
        figures.events += f.events;
        figures.append_us.extend(f.append_us);
        figures.deliver_us.extend(f.deliver_us);
        figures.late_us.extend(f.late_us);
    }
    figures
}

/// One camera: a result every [`RESULT_EVERY`] (how late it is handled is
/// measured), an event every `1/rate` s (how long the append takes), and a
/// delivery of what is stored (how long it takes, when there was something).
async fn camera_task(
    outbox: Arc<Outbox>,
    camera: usize,
    phase: f64,
    until: Instant,
    rate: f64,
) -> Figures {
    let id = format!("cam-{camera}");
    let topic = format!("care/events/{id}");
    let event_every = Duration::from_secs_f64(1.0 / rate);
    // Spread the cameras over a period, as their rate gates are.
    let mut next_result = tokio::time::Instant::now() + RESULT_EVERY.mul_f64(phase);
    let mut next_event = Instant::now() + event_every.mul_f64(phase);
    let (mut append, mut deliver, mut late) = (Vec::new(), Vec::new(), Vec::new());
    let mut n = 0;
    while Instant::now() < until {
        tokio::time::sleep_until(next_result).await;
        late.push(next_result.elapsed().as_secs_f64() * 1e6);
        next_result += RESULT_EVERY;
        if Instant::now() >= next_event {
            let payload = format!(
                "{{\"event_id\":\"{id}-{n}\",\"type\":\"person_entered\",\"pad\":\"{}\"}}",
                "x".repeat(300)
            );
            let started = Instant::now();
            outbox.append(&id, topic.clone(), payload.into_bytes());
            append.push(started.elapsed().as_secs_f64() * 1e6);
            next_event += event_every;
            n += 1;
        }
        let started = Instant::now();
        let stored = outbox.next(&id, None, 16);
        for (seq, _) in &stored {
            outbox.remove(&id, *seq);
        }
        if !stored.is_empty() {
            deliver.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    Figures {
        events: append.len(),
        append_us: append,
        deliver_us: deliver,
        late_us: late,
    }
}
