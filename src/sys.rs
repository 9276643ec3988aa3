//! Every `unsafe` call of ecogate, in one place: process-wide settings that only the binary
//! makes, before any thread starts or once start-up is over. The library forbids `unsafe`.

#![allow(unsafe_code)]

/// Allocations of 64 KiB and more (a batch's vectors, SQLite's scratch space) get pages of
/// their own that go back to the system when freed. glibc's default raises this threshold each
/// time such a block is freed, after which these short-lived blocks land among long-lived small
/// ones and keep whole pages resident: polling 1,000 Modbus devices (benches/modbus_poll.rs),
/// resident memory was 58-59 MB without this and 52-53 MB with it.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets glibc allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
}

/// A command whose output is piped into `head` ends quietly when the pipe closes, as other
/// command-line tools do, instead of failing a write and panicking in `println!`. Only for
/// commands that write reports: the daemon keeps Rust's default (SIGPIPE ignored), so a write
/// to a closed socket is an error it handles, never its death.
pub fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: resets one signal's disposition to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Hands the heap freed after start-up back to the system. Parsing a configuration of a
/// thousand devices frees tens of megabytes in pages that also hold a few long-lived
/// allocations; glibc only returns the top of a heap by itself, so without this the gateway
/// keeps part of that memory resident for the life of the daemon (about 6 MB of 65 in
/// benches/modbus_poll.rs).
pub fn release_startup_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
