//! The machine a figure was measured on, for benchmarks that print one.

/// The CPU's model name (x86 `model name`, or the Arm `CPU part`), else the architecture.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("CPU part"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
