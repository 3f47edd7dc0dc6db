//! How the process keeps its resident memory close to what it uses. glibc's allocator keeps
//! what is freed for later: after a load run `chat-server all` held 16 MiB of heap, of which
//! about 5 MiB was in use, scattered over 16 arenas. The process runs without glibc's
//! per-thread caches and with one heap per core, large blocks are mapped on their own, and once
//! a busy spell is over the free pages inside the heaps are handed back.

use std::time::Duration;

/// Sets glibc's allocator up to keep little it does not use; call before any thread starts.
///
/// - Each password hash allocates a 19 MiB block (Argon2's memory cost), and a burst of
///   registrations left hundreds of MiB resident for good: blocks from 128 KiB up are mapped
///   and unmapped on their own instead, so they go back to the system when freed.
/// - glibc gives every thread that contends for a heap a heap of its own, up to 8 per core: the
///   runtime's blocking threads (the embedded store's reads, password hashes) made 15 heaps in
///   a load run, each keeping the pages at its top resident (1 MiB in all), where no trim
///   reaches. One heap per core instead: RSS after the load run 23.4 -> 22.3 MiB, CPU per send
///   unchanged within the runs' spread.
///
/// `MALLOC_MMAP_THRESHOLD_` and `MALLOC_ARENA_MAX` in the environment still win.
pub fn keep_the_allocator_lean() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: mallopt only sets an allocator tunable; no other thread runs yet.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
            }
        }
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            // SAFETY: as above.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, i32::try_from(cores).unwrap_or(i32::MAX));
            }
        }
    }
}

/// The glibc tunable that sizes each thread's cache of freed blocks (7 a size by default).
const THREAD_CACHE_TUNABLE: &str = "glibc.malloc.tcache_count";

/// Starts the program again, in the same process, with glibc's per-thread caches of freed
/// blocks turned off (`GLIBC_TUNABLES`, read only when a program starts), unless that variable
/// already sizes them. Call first in `main`, before any thread starts.
///
/// Each thread keeps up to 7 freed blocks of every size up to 1 KiB for its next allocations;
/// after a load run those cached blocks were scattered over 464 heap pages (1.8 MiB) that held
/// nothing else, where no trim reaches: half of what the heaps had grown by. Without the
/// caches RSS after the load run came back to 1.15-1.19x the start (was 1.33x); CPU per send
/// moved by 0-6 % and the saturating rate not at all, within the runs' spread: the heaps' own
/// free lists serve the same blocks. `GLIBC_TUNABLES=glibc.malloc.tcache_count=7` restores
/// glibc's default.
///
/// Returns what kept it from starting again (no `/proc`), the process then going on with the
/// caches; None when there was nothing to do.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn restart_without_thread_caches() -> Option<std::io::Error> {
    use std::os::unix::process::CommandExt;
    // A privileged start (setuid) has its tunables ignored: starting again would not help.
    // SAFETY: getauxval only reads the process's auxiliary vector.
    if unsafe { libc::getauxval(libc::AT_SECURE) } != 0 {
        return None;
    }
    let current = match std::env::var_os("GLIBC_TUNABLES") {
        None => None,
        Some(value) => Some(value.into_string().ok()?),
    };
    let tunables = tunables_without_thread_caches(current.as_deref())?;
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new("/proc/self/exe");
    if let Some(name) = args.next() {
        command.arg0(name);
    }
    // `exec` returns only when it failed.
    Some(command.args(args).env("GLIBC_TUNABLES", tunables).exec())
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn restart_without_thread_caches() -> Option<std::io::Error> {
    None
}

/// `GLIBC_TUNABLES` with the per-thread caches off, given its current value; None when the
/// current value already says how big they are.
pub fn tunables_without_thread_caches(current: Option<&str>) -> Option<String> {
    match current {
        Some(tunables) if tunables.contains("glibc.malloc.tcache") => None,
        Some(tunables) if !tunables.is_empty() => {
            Some(format!("{tunables}:{THREAD_CACHE_TUNABLE}=0"))
        }
        _ => Some(format!("{THREAD_CACHE_TUNABLE}=0")),
    }
}

/// How often the process's CPU time is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Tells busy spells from idleness by the CPU time the process used in each sample.
#[derive(Debug, Default)]
pub struct Spells {
    /// CPU time of the busy samples since memory was last given back.
    busy: Duration,
    /// Idle samples in a row.
    idle_in_a_row: u32,
    /// Memory was given back at the end of a spell and is to be given back once more, after
    /// [`Spells::LATE_IDLE_SAMPLES`].
    late: bool,
}

impl Spells {
    /// A sample using less CPU than this (5 % of a core) is idle: heartbeats of thousands of
    /// idle sockets stay under it.
    pub const IDLE_BELOW: Duration = Duration::from_millis(50);
    /// Idle samples in a row that end a spell.
    pub const IDLE_SAMPLES: u32 = 3;
    /// A spell worth giving memory back after: this much CPU time in busy samples.
    pub const WORTH: Duration = Duration::from_secs(1);
    /// Idle samples in a row after which memory is given back a second time. The runtime's
    /// blocking threads (the embedded store's reads, password hashes) outlive the spell by 10 s
    /// and, as each exits, what it still held goes back to the heaps, where it keeps its pages
    /// resident until the next trim (measured with glibc's thread caches on: 25.3 -> 24.2 MiB
    /// after a load run, trimming by hand 20 s after it).
    pub const LATE_IDLE_SAMPLES: u32 = 12;

    /// Takes the CPU time used during one sample; true when a busy spell worth giving memory
    /// back after has just ended, and once more [`Spells::LATE_IDLE_SAMPLES`] into the quiet.
    pub fn sample(&mut self, used: Duration) -> bool {
        if used >= Self::IDLE_BELOW {
            self.busy += used;
            self.idle_in_a_row = 0;
            return false;
        }
        self.idle_in_a_row = self.idle_in_a_row.saturating_add(1);
        if self.idle_in_a_row >= Self::IDLE_SAMPLES && self.busy >= Self::WORTH {
            self.busy = Duration::ZERO;
            self.late = true;
            return true;
        }
        if self.late && self.idle_in_a_row >= Self::LATE_IDLE_SAMPLES {
            self.late = false;
            return true;
        }
        false
    }
}

/// Gives the free pages of the allocator's heaps back to the system each time a busy spell
/// ends (see [`Spells`]); runs until the process exits. Does nothing where the allocator is
/// not glibc's.
pub async fn give_back_after_busy_spells() {
    let Some(mut last) = cpu_time() else {
        return;
    };
    let mut spells = Spells::default();
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(now) = cpu_time() else {
            return;
        };
        let used = now.saturating_sub(last);
        last = now;
        if spells.sample(used) {
            let before = resident_kib();
            let started = std::time::Instant::now();
            // On a blocking thread: a trim walks every heap under its lock and returns pages
            // one range at a time, which is no work for a runtime worker to stall on.
            if tokio::task::spawn_blocking(give_back).await.is_err() {
                return;
            }
            tracing::debug!(
                resident_kib_before = before,
                resident_kib_after = resident_kib(),
                took_ms = started.elapsed().as_secs_f64() * 1000.0,
                "gave the allocator's free pages back after a busy spell"
            );
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn give_back() {
    // SAFETY: malloc_trim takes the allocator's own locks; it frees nothing in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_back() {}

/// CPU time the process has used, user and system (None where it cannot be read).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn cpu_time() -> Option<Duration> {
    // SAFETY: getrusage fills the struct it is given and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return None;
        }
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Some(time(usage.ru_utime) + time(usage.ru_stime))
}

/// Elsewhere there is nothing to give back, so nothing to watch.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn cpu_time() -> Option<Duration> {
    None
}

/// Resident memory in KiB, for the log (0 where it cannot be read).
fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_caches_are_turned_off_unless_the_tunables_size_them() {
        let off = "glibc.malloc.tcache_count=0";
        assert_eq!(tunables_without_thread_caches(None).as_deref(), Some(off));
        assert_eq!(
            tunables_without_thread_caches(Some("")).as_deref(),
            Some(off)
        );
        // Other tunables are kept.
        assert_eq!(
            tunables_without_thread_caches(Some("glibc.malloc.check=0")).as_deref(),
            Some("glibc.malloc.check=0:glibc.malloc.tcache_count=0")
        );
        // An operator's choice about the caches stands, whichever of their tunables it is.
        for set in [
            "glibc.malloc.tcache_count=7",
            "glibc.malloc.check=0:glibc.malloc.tcache_count=2",
            "glibc.malloc.tcache_max=256",
        ] {
            assert_eq!(tunables_without_thread_caches(Some(set)), None, "{set}");
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn memory_is_given_back_after_a_busy_spell_and_once_more_not_while_idle_or_busy() {
        let mut spells = Spells::default();
        // Idle from the start: nothing to give back.
        assert!(!(0..10).any(|_| spells.sample(2 * MS)));
        // A busy spell: nothing while it lasts.
        assert!(!(0..5).any(|_| spells.sample(600 * MS)));
        // Idle again: given back on the third idle sample and the twelfth, then no more.
        let given_back: Vec<usize> = (1..=40).filter(|_| spells.sample(10 * MS)).collect();
        assert_eq!(given_back, [3, 12]);
    }

    #[test]
    fn a_trickle_or_a_pause_in_the_middle_of_a_spell_does_not_count() {
        let mut spells = Spells::default();
        // Heartbeats of idle sockets: under the idle line, never a spell however long.
        assert!(!(0..1_000).any(|_| spells.sample(40 * MS)));
        // A short spell: not worth it.
        assert!(!spells.sample(300 * MS));
        assert!(!(0..5).any(|_| spells.sample(Duration::ZERO)));
        // Busy, a two-sample pause, busy again: the pause does not end the spell.
        assert!(!spells.sample(800 * MS));
        assert!(!spells.sample(Duration::ZERO) && !spells.sample(Duration::ZERO));
        assert!(!spells.sample(800 * MS));
        assert_eq!(
            (0..3)
                .map(|_| spells.sample(Duration::ZERO))
                .collect::<Vec<_>>(),
            [false, false, true]
        );
        // Busy again before the late give-back: it waits for the next twelve idle samples.
        assert!(!(0..5).any(|_| spells.sample(Duration::ZERO)));
        assert!(!spells.sample(200 * MS));
        let given_back: Vec<usize> = (1..=20).filter(|_| spells.sample(Duration::ZERO)).collect();
        assert_eq!(
            given_back,
            [12],
            "a short spell ends with the late one only"
        );
    }

    #[test]
    fn the_process_cpu_time_and_resident_memory_can_be_read() {
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(cpu_time().is_some());
            assert!(resident_kib() > 0);
            give_back();
        }
    }
}
