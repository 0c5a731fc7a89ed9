//! Process metrics (`process_*`), read from `/proc/self` at each scrape. The
//! `prometheus` crate's own collector keeps CPU time as an integer counter, so a
//! daemon that used 0.65 s of CPU showed 0; this one keeps fractions.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge, Opts};
use std::sync::Mutex;

/// Linux reports times in `/proc` in USER_HZ ticks, fixed at 100 by the ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// The collector.
pub struct ProcessMetrics {
    cpu: Counter,
    /// The CPU seconds already added to `cpu` (a counter only moves forward).
    cpu_seen: Mutex<f64>,
    resident: IntGauge,
    virtual_bytes: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    threads: IntGauge,
    start: Gauge,
    descs: Vec<Desc>,
}

impl ProcessMetrics {
    /// The collector, its families created (not yet registered).
    pub fn new() -> ProcessMetrics {
        let cpu = Counter::with_opts(Opts::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        ))
        .expect("static metric options");
        let gauge = |name: &str, help: &str| {
            IntGauge::with_opts(Opts::new(name, help)).expect("static metric options")
        };
        let resident = gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        );
        let virtual_bytes = gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
        );
        let open_fds = gauge("process_open_fds", "Number of open file descriptors.");
        let max_fds = gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
        );
        let threads = gauge("process_threads", "Number of OS threads in the process.");
        let start = Gauge::with_opts(Opts::new(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        ))
        .expect("static metric options");
        let mut descs = Vec::new();
        for c in [
            &cpu as &dyn Collector,
            &resident,
            &virtual_bytes,
            &open_fds,
            &max_fds,
            &threads,
            &start,
        ] {
            descs.extend(c.desc().into_iter().cloned());
        }
        ProcessMetrics {
            cpu,
            cpu_seen: Mutex::new(0.0),
            resident,
            virtual_bytes,
            open_fds,
            max_fds,
            threads,
            start,
            descs,
        }
    }

    fn update(&self) {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return;
        };
        // fields after the command name, which is in parentheses and may hold spaces
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            return;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // f[0] is field 3 (state): field n is f[n - 3]
        let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        if let (Some(u), Some(s)) = (num(14), num(15)) {
            let total = (u + s) / TICKS_PER_SECOND;
            let mut seen = self.cpu_seen.lock().unwrap_or_else(|p| p.into_inner());
            if total > *seen {
                self.cpu.inc_by(total - *seen);
                *seen = total;
            }
        }
        if let Some(t) = num(20) {
            self.threads.set(t as i64);
        }
        if let Some(v) = num(23) {
            self.virtual_bytes.set(v as i64);
        }
        if let Some(start) = num(22) {
            let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            });
            if let Some(b) = boot {
                self.start.set(b + start / TICKS_PER_SECOND);
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            {
                self.resident.set(kb * 1024);
            }
        }
        if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(rd.count() as i64);
        }
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            if let Some(max) = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<i64>().ok())
            {
                self.max_fds.set(max);
            }
        }
    }
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        ProcessMetrics::new()
    }
}

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.update();
        let mut out = Vec::new();
        for c in [
            &self.cpu as &dyn Collector,
            &self.open_fds,
            &self.max_fds,
            &self.virtual_bytes,
            &self.resident,
            &self.start,
            &self.threads,
        ] {
            out.extend(c.collect());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_keep_fractions_of_a_second() {
        let m = ProcessMetrics::new();
        // about 0.3 s of CPU in this thread: more than the 0.01 s a tick is,
        // less than the whole second an integer counter would need
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let families = m.collect();
        let cpu = families
            .iter()
            .find(|f| f.name() == "process_cpu_seconds_total")
            .expect("process_cpu_seconds_total");
        let v = cpu.get_metric()[0].get_counter().value();
        assert!(v >= 0.2, "process_cpu_seconds_total = {v}");
        let rss = families
            .iter()
            .find(|f| f.name() == "process_resident_memory_bytes")
            .expect("process_resident_memory_bytes");
        assert!(rss.get_metric()[0].get_gauge().value() > 0.0);
    }
}
