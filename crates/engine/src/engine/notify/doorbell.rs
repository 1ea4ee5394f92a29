//! The eventfd a shard sleeps on while its writes are in flight: registered with its io_uring,
//! which signals it on every completion, and rung by producers that hand the shard work.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

#[derive(Debug)]
pub(crate) struct Doorbell(OwnedFd);

impl Doorbell {
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; the descriptor it returns is new and owned here.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a valid descriptor that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Ends a sleep in [`Doorbell::wait`], now or when it starts.
    pub fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to a descriptor this struct owns. A
        // failure can only be a saturated counter, which wakes the sleeper anyway.
        unsafe {
            libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }

    /// Forgets the rings so far (the caller is about to look for work itself).
    pub fn clear(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local; the descriptor is non-blocking,
        // so an unrung doorbell returns EAGAIN at once.
        unsafe {
            libc::read(self.0.as_raw_fd(), (&mut count as *mut u64).cast(), 8);
        }
    }

    /// Sleeps until the doorbell rings (a completion or a producer), at most `timeout`.
    pub fn wait(&self, timeout: Duration) {
        let mut poll = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one live pollfd, for the duration of the call. EINTR and a timeout both
        // mean "look again", which the shard's loop does.
        unsafe {
            libc::poll(&mut poll, 1, millis);
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
