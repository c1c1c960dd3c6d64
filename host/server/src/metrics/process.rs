//! The standard process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds`, `process_threads`), read from `/proc` at each scrape, with
//! the names and meanings of the Prometheus client libraries. Where `/proc` cannot be read
//! (not Linux) they are left out.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// `/proc` reports times in clock ticks of `USER_HZ`, which Linux fixes at 100 on every
/// architecture it exposes to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// Renders the process metrics at each scrape.
#[derive(Debug)]
pub(super) struct ProcessCollector;

/// What one read of `/proc` found.
#[derive(Debug, Default, PartialEq)]
struct Figures {
    cpu_seconds: f64,
    start_time_seconds: f64,
    threads: i64,
    virtual_bytes: i64,
    resident_bytes: i64,
    open_fds: i64,
    max_fds: Option<i64>,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(f) = read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(f.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges: [(&str, &str, f64); 5] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                f.resident_bytes as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                f.virtual_bytes as f64,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                f.open_fds as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                f.start_time_seconds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                f.threads as f64,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        if let Some(max) = f.max_fds {
            let gauge = ConstGauge::new(max as f64);
            gauge.encode(encoder.encode_descriptor(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                None,
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// Reads this process's figures, `None` without `/proc`.
fn read() -> Option<Figures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
    let mut figures = parse(&stat, &boot, &limits, page_size())?;
    // The directory listing holds its own descriptor while it is read.
    figures.open_fds = (open_fds - 1).max(0);
    Some(figures)
}

/// Bytes in a page, for the resident set (`/proc/self/stat` counts it in pages): the
/// `Rss:` lines of smaps_rollup would be exact but cost far more, so the size is read once
/// from the kernel's auxiliary vector where it is always given.
fn page_size() -> i64 {
    static PAGE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
        const AT_PAGESZ: u64 = 6;
        auxv.chunks_exact(16)
            .find_map(|entry| {
                let key = u64::from_ne_bytes(entry[..8].try_into().ok()?);
                let value = u64::from_ne_bytes(entry[8..].try_into().ok()?);
                (key == AT_PAGESZ).then_some(value as i64)
            })
            .unwrap_or(4096)
    })
}

/// The figures in `/proc/self/stat`, `/proc/stat` (for the boot time) and
/// `/proc/self/limits`; `open_fds` is left at 0.
fn parse(stat: &str, boot: &str, limits: &str, page_size: i64) -> Option<Figures> {
    // The command name (field 2) is in parentheses and may hold spaces: fields count from
    // after its closing parenthesis, starting at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    let btime: f64 = boot
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let max_fds = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok());
    Some(Figures {
        cpu_seconds: (field(14)? + field(15)?) / TICKS_PER_SECOND,
        start_time_seconds: btime + field(22)? / TICKS_PER_SECOND,
        threads: field(20)? as i64,
        virtual_bytes: field(23)? as i64,
        resident_bytes: field(24)? as i64 * page_size,
        open_fds: 0,
        max_fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_with_a_command_name_holding_spaces_and_parentheses() {
        let stat = "4242 (stream (host) x) S 1 4242 4242 0 -1 4194560 5000 0 0 0 250 75 0 0 20 0 \
                    7 0 123400 987654321 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 \
                    1 0 0 0 0 0";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        let f = parse(stat, boot, limits, 4096).unwrap();
        assert_eq!(
            f,
            Figures {
                cpu_seconds: 3.25,
                start_time_seconds: 1_700_001_234.0,
                threads: 7,
                virtual_bytes: 987_654_321,
                resident_bytes: 2048 * 4096,
                open_fds: 0,
                max_fds: Some(1024),
            }
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let f = read().expect("/proc is readable on Linux");
        assert!(
            f.threads >= 1 && f.resident_bytes > 0 && f.open_fds > 0,
            "{f:?}"
        );
    }
}
