//! Free-space reserve: rejects writes while the data directory's file system has less free
//! space than a configured minimum, so the storage engine itself never runs out of space.
//!
//! sled 0.34.7 records the first I/O error of its log writer as a global error and fails
//! every later write and flush of that database until it is opened again. Stopping writes
//! before the disk is full keeps the database usable, so writes resume once space is freed.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use super::StoreError;

/// Time for which a measurement that found ample room replaces the next ones.
const REUSE_FOR: Duration = Duration::from_millis(50);

/// Free space above the reserve that counts as ample room. By an estimate, 50 ms of 20,000
/// creates per second with 64 KiB configs write about 70 MB to the log and as much to sled.
const AMPLE_HEADROOM_BYTES: u64 = 256 * 1024 * 1024;

pub(super) struct DiskSpaceReserve {
    path: PathBuf,
    /// Writes are rejected while fewer bytes than this are free; 0 turns the check off.
    min_free_bytes: u64,
    /// Whether a failure to measure the free space was already logged.
    measure_failure_logged: AtomicBool,
    /// Start of the clock of `reuse_until`.
    epoch: Instant,
    /// Nanoseconds after `epoch` until which checks pass without measuring again, because
    /// the last measurement found ample room. A write path then costs no `statvfs` call.
    reuse_until: AtomicU64,
}

impl DiskSpaceReserve {
    pub(super) fn new(path: PathBuf, min_free_bytes: u64) -> Self {
        Self { path, min_free_bytes, measure_failure_logged: AtomicBool::new(false), epoch: Instant::now(), reuse_until: AtomicU64::new(0) }
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Fails with [`StoreError::NoSpace`] when less than the reserve is free. When the free
    /// space cannot be measured, the write goes ahead and the failure is logged once.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        if self.min_free_bytes == 0 || self.now_nanos() < self.reuse_until.load(Ordering::Relaxed) {
            return Ok(());
        }
        let measured = fs2::available_space(&self.path);
        if let Ok(free) = measured
            && free.saturating_sub(self.min_free_bytes) >= AMPLE_HEADROOM_BYTES
        {
            let until = self.now_nanos().saturating_add(u64::try_from(REUSE_FOR.as_nanos()).unwrap_or(u64::MAX));
            self.reuse_until.store(until, Ordering::Relaxed);
        }
        match measured {
            Ok(free) if free < self.min_free_bytes => Err(StoreError::NoSpace(format!(
                "{free} bytes are free on the data directory's file system, less than the \
                 reserve of {} bytes; free some space or lower --min-free-disk-bytes",
                self.min_free_bytes
            ))),
            Ok(_) => Ok(()),
            Err(error) => {
                if !self.measure_failure_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(path = %self.path.display(), %error, "cannot measure free disk space; writes are not checked against the reserve");
                }
                Ok(())
            }
        }
    }
}

/// Returns whether an I/O error means that the disk or the user's quota is full.
pub(super) fn is_no_space(error: &std::io::Error) -> bool {
    matches!(error.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_larger_than_disk_rejects_writes() {
        let directory = tempfile::tempdir().unwrap();
        let reserve = DiskSpaceReserve::new(directory.path().to_owned(), u64::MAX);
        let error = reserve.check().unwrap_err();
        assert!(matches!(error, StoreError::NoSpace(ref message) if message.contains("--min-free-disk-bytes")), "{error}");
    }

    #[test]
    fn ample_room_is_measured_once_per_interval() {
        let directory = tempfile::tempdir().unwrap();
        let reserve = DiskSpaceReserve::new(directory.path().to_owned(), 1);
        let free = fs2::available_space(directory.path()).unwrap();
        assert!(free > AMPLE_HEADROOM_BYTES, "the test needs {AMPLE_HEADROOM_BYTES} free bytes, found {free}");
        assert!(reserve.check().is_ok());
        assert!(reserve.reuse_until.load(Ordering::Relaxed) > 0, "a check with ample room should stand for the next ones");
    }

    #[test]
    fn little_room_is_measured_on_every_write() {
        let directory = tempfile::tempdir().unwrap();
        let free = fs2::available_space(directory.path()).unwrap();
        // A reserve just under the free space passes, but leaves less than the ample
        // headroom, so the next write must measure again.
        let reserve = DiskSpaceReserve::new(directory.path().to_owned(), free.saturating_sub(AMPLE_HEADROOM_BYTES / 2));
        let _ = reserve.check();
        assert_eq!(reserve.reuse_until.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn zero_reserve_turns_the_check_off() {
        let reserve = DiskSpaceReserve::new(PathBuf::from("/nonexistent/connectord"), 0);
        assert!(reserve.check().is_ok());
    }

    #[test]
    fn enospc_and_quota_errors_mean_no_space() {
        assert!(is_no_space(&std::io::Error::from_raw_os_error(28)));
        assert!(is_no_space(&std::io::Error::from_raw_os_error(122)));
        assert!(!is_no_space(&std::io::Error::from_raw_os_error(5)));
    }
}
