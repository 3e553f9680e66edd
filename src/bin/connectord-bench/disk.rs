//! The disk probe times small appends, each made durable with fdatasync, the way
//! connectord's write-ahead log makes a batch durable. Each pause setting runs its own
//! loop, with the CPU kept busy during the pause, so that the numbers show what the device
//! does when durable writes arrive back to back and when they arrive spaced out.

use std::{
    fs::File,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Upper bound of --writes, so a run stays short on a slow disk.
const MAX_WRITES: u64 = 100_000;
/// Upper bound of --write-size.
const MAX_WRITE_BYTES: usize = 1024 * 1024;
/// Upper bound of each pause.
const MAX_PAUSE: Duration = Duration::from_millis(100);
/// Upper bound of the probe file's preallocated size.
const MAX_FILE_BYTES: u64 = 1024 * 1024 * 1024;

#[derive(Debug, Clone, Args)]
pub struct DiskArgs {
    /// Directory on the disk to probe, such as the server's data directory. The probe file
    /// is created there and removed at the end.
    #[arg(long)]
    pub dir: PathBuf,

    /// Bytes per append. connectord's log record for one create with a 256-byte description
    /// takes about 530 bytes.
    #[arg(long, default_value_t = 600)]
    pub write_size: usize,

    /// Appends per pause setting.
    #[arg(long, default_value_t = 4000)]
    pub writes: u64,

    /// Busy pauses between one fdatasync's return and the next append, in microseconds,
    /// comma-separated. One loop runs per value.
    #[arg(long, value_delimiter = ',', default_value = "0,50,150,1000")]
    pub pauses_micros: Vec<u64>,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Latency of append plus fdatasync for one pause setting, in microseconds.
#[derive(Debug, Serialize)]
struct PauseReport {
    pause_micros: u64,
    writes: u64,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: f64,
}

#[derive(Debug, Serialize)]
struct DiskReport {
    dir: PathBuf,
    write_size: usize,
    results: Vec<PauseReport>,
}

pub fn run(args: &DiskArgs) -> Result<ExitCode, String> {
    check_args(args)?;
    let path = args.dir.join(format!("connectord-bench-disk-{}.probe", std::process::id()));
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|error| format!("cannot create the probe file {}: {error}", path.display()))?;

    let outcome = probe(&file, args);
    drop(file);
    if let Err(error) = std::fs::remove_file(&path) {
        eprintln!("connectord-bench: cannot remove the probe file {}: {error}", path.display());
    }
    let results = outcome?;

    let report = DiskReport { dir: args.dir.clone(), write_size: args.write_size, results };
    if args.json {
        let line = serde_json::to_string(&report).map_err(|error| format!("cannot encode the report as JSON: {error}"))?;
        println!("{line}");
    } else {
        print_text(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn check_args(args: &DiskArgs) -> Result<(), String> {
    if !(1..=MAX_WRITES).contains(&args.writes) {
        return Err(format!("--writes must be between 1 and {MAX_WRITES}, got {}", args.writes));
    }
    if !(1..=MAX_WRITE_BYTES).contains(&args.write_size) {
        return Err(format!("--write-size must be between 1 and {MAX_WRITE_BYTES} bytes, got {}", args.write_size));
    }
    if args.pauses_micros.is_empty() {
        return Err("--pauses-micros needs at least one value".to_owned());
    }
    if let Some(pause) = args.pauses_micros.iter().find(|pause| Duration::from_micros(**pause) > MAX_PAUSE) {
        return Err(format!("--pauses-micros values must be at most {} µs, got {pause}", MAX_PAUSE.as_micros()));
    }
    let file_bytes = file_bytes(args);
    if file_bytes > MAX_FILE_BYTES {
        return Err(format!(
            "--writes × --write-size needs a {file_bytes}-byte probe file, more than the maximum of {MAX_FILE_BYTES}; lower one of them"
        ));
    }
    if !args.dir.is_dir() {
        return Err(format!("--dir {} is not a directory", args.dir.display()));
    }
    Ok(())
}

fn file_bytes(args: &DiskArgs) -> u64 {
    args.writes.saturating_mul(args.write_size as u64)
}

/// Runs one loop per pause setting, each from the start of the preallocated file.
fn probe(file: &File, args: &DiskArgs) -> Result<Vec<PauseReport>, String> {
    // Allocated in advance like a log segment, so appends do not change the file's size.
    fs2::FileExt::allocate(file, file_bytes(args)).map_err(|error| format!("cannot allocate the probe file: {error}"))?;
    file.sync_all().map_err(|error| format!("fsync of the probe file failed: {error}"))?;

    let payload = vec![0x5a_u8; args.write_size];
    let mut results = Vec::with_capacity(args.pauses_micros.len());
    for &pause_micros in &args.pauses_micros {
        let pause = Duration::from_micros(pause_micros);
        let mut latency =
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("1 µs to 60 s at 3 significant figures is a valid histogram");
        for index in 0..args.writes {
            let started = Instant::now();
            append_durably(file, &payload, index * args.write_size as u64)?;
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            latency.saturating_record(micros.max(1));
            spin(pause);
        }
        results.push(PauseReport {
            pause_micros,
            writes: args.writes,
            p50: latency.value_at_quantile(0.50),
            p99: latency.value_at_quantile(0.99),
            p999: latency.value_at_quantile(0.999),
            max: latency.max(),
            mean: latency.mean(),
        });
    }
    Ok(results)
}

fn append_durably(file: &File, payload: &[u8], offset: u64) -> Result<(), String> {
    file.write_all_at(payload, offset).map_err(|error| format!("write to the probe file failed: {error}"))?;
    file.sync_data().map_err(|error| format!("fdatasync of the probe file failed: {error}"))
}

/// Waits without sleeping, as a server busy with other requests would. A sleep would let
/// the CPU idle, and the probe would measure its wake-up time as well.
fn spin(pause: Duration) {
    let until = Instant::now() + pause;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

fn print_text(report: &DiskReport) {
    println!("append of {} bytes plus fdatasync in {}:", report.write_size, display_dir(&report.dir));
    for result in &report.results {
        println!(
            "  pause {:>6} µs  p50 {:>7} µs  p99 {:>7} µs  p99.9 {:>7} µs  max {:>7} µs  mean {:>9.1} µs  writes {}",
            result.pause_micros, result.p50, result.p99, result.p999, result.max, result.mean, result.writes
        );
    }
}

fn display_dir(dir: &Path) -> String {
    dir.canonicalize().unwrap_or_else(|_| dir.to_owned()).display().to_string()
}
