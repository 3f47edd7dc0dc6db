//! How the process keeps its resident memory close to what it uses. glibc's allocator keeps
//! what is freed for later: after a load run `chat-server all` held 16 MiB of heap, of which
//! about 5 MiB was in use, scattered over 16 arenas. Large blocks are mapped on their own, and
//! once a busy spell is over the free pages inside the heaps are handed back.

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
    /// and, as each exits, the blocks its thread cache held go back to the heaps, where they
    /// keep their pages resident until the next trim (measured: 25.3 -> 24.2 MiB after a load
    /// run, trimming by hand 20 s after it).
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
            give_back();
            tracing::debug!(
                resident_kib_before = before,
                resident_kib_after = resident_kib(),
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
