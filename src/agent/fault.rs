//! Faults a test build can inject (`--features fault-injection`); compiled out otherwise.

/// Completes when `CAMAGENT_FAULT_HANG_AFTER` (seconds) has passed; never without the
/// feature or the variable.
pub async fn hang_after() {
    #[cfg(feature = "fault-injection")]
    if let Some(secs) = std::env::var("CAMAGENT_FAULT_HANG_AFTER")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
        return;
    }
    std::future::pending::<()>().await
}

/// Blocks the main loop's thread for good: what a deadlock looks like to the watchdog.
pub fn hang() {
    tracing::error!("fault injection: the main loop hangs now");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Aborts the agent at `point` when `CAMAGENT_FAULT_DIE_AT` names it: a kill that lands
/// exactly there, where a random one would rarely.
pub fn die_at(point: &str) {
    #[cfg(feature = "fault-injection")]
    if std::env::var("CAMAGENT_FAULT_DIE_AT").is_ok_and(|at| at == point) {
        tracing::error!(point, "fault injection: the agent dies here");
        std::process::abort();
    }
    let _ = point;
}
