//! Allocating a file's blocks ahead of its writes (`fallocate`): the one system call every
//! caller makes, with its retries, and the one reading of its errors.
//!
//! What a failure means is each caller's own policy, not this module's: a preallocating
//! segment goes sparse, a roll's reservation stops the roll, the write-mode probe measures
//! sparse or gives up. They all start from the same [`Refusal`].

use std::fs::File;
use std::io;

/// What a failed allocation says about the file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The file system (or the platform) cannot preallocate: nothing is wrong, files are
    /// sparse there and get their blocks as they are written.
    Unsupported,
    /// No room left (`ENOSPC`) or over the quota (`EDQUOT`): freeing space helps.
    NoSpace,
    /// Anything else (`EIO`, a call interrupted every time it was tried, ...): a fault the
    /// caller cannot prove harmless.
    Other,
}

/// Reads a failed [`fallocate`]'s error.
pub(crate) fn classify(error: &io::Error) -> Refusal {
    match error.raw_os_error() {
        Some(libc::EOPNOTSUPP | libc::ENOSYS) => Refusal::Unsupported,
        Some(libc::EDQUOT) => Refusal::NoSpace,
        _ if error.kind() == io::ErrorKind::Unsupported => Refusal::Unsupported,
        _ if crate::error::is_storage_full(error) => Refusal::NoSpace,
        _ => Refusal::Other,
    }
}

/// Interrupted calls are retried; a signal storm does not get to loop forever.
#[cfg(target_os = "linux")]
const ATTEMPTS: usize = 8;

/// Allocates the blocks of `offset..offset + len` in `file` (mode 0: bytes already there are
/// kept, the rest read as zeros, and the file grows to cover the range if it is shorter).
/// An interrupted call (`EINTR`) is retried a bounded number of times; nothing to allocate
/// (`len` 0) succeeds at once.
#[cfg(target_os = "linux")]
pub(crate) fn fallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;

    if len == 0 {
        return Ok(());
    }
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "range past the largest file offset",
        ));
    };
    let mut error = io::Error::from_raw_os_error(libc::EINTR);
    for _ in 0..ATTEMPTS {
        #[cfg(test)]
        if let Some(injected) = fail_hook::check(file) {
            error = injected;
            if error.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        // SAFETY: the descriptor belongs to `file`, which outlives the call; fallocate takes
        // no pointers.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) } == 0 {
            return Ok(());
        }
        error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    Err(error)
}

/// Elsewhere nothing is preallocated: files are sparse.
#[cfg(not(target_os = "linux"))]
pub(crate) fn fallocate(_file: &File, _offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "fallocate is Linux-only",
    ))
}

/// Lets unit tests make the next calls on files whose path contains a given text fail with a
/// chosen errno, on the calling thread only (the callers under test run on it).
#[cfg(all(test, target_os = "linux"))]
pub(crate) mod fail_hook {
    use std::cell::RefCell;
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;

    struct Rule {
        path_contains: String,
        errno: i32,
        left: usize,
    }

    thread_local! {
        static RULES: RefCell<Vec<Rule>> = const { RefCell::new(Vec::new()) };
    }

    /// The next `times` calls (on this thread) on a file whose path contains `path_contains`
    /// fail with `errno` instead of reaching the kernel.
    pub fn fail(path_contains: &str, errno: i32, times: usize) {
        RULES.with(|rules| {
            rules.borrow_mut().push(Rule {
                path_contains: path_contains.to_owned(),
                errno,
                left: times,
            });
        });
    }

    /// How many injected failures are still to come (on this thread).
    pub fn pending() -> usize {
        RULES.with(|rules| rules.borrow().iter().map(|rule| rule.left).sum())
    }

    /// Drops every rule (on this thread).
    pub fn clear() {
        RULES.with(|rules| rules.borrow_mut().clear());
    }

    pub(super) fn check(file: &File) -> Option<io::Error> {
        let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
        let path = path.to_string_lossy();
        RULES.with(|rules| {
            let mut rules = rules.borrow_mut();
            let rule = rules
                .iter_mut()
                .find(|rule| rule.left > 0 && path.contains(&rule.path_contains))?;
            rule.left -= 1;
            Some(io::Error::from_raw_os_error(rule.errno))
        })
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::os::unix::fs::MetadataExt;

    use super::*;

    const LEN: u64 = 1 << 20;

    fn allocated(file: &File) -> u64 {
        file.metadata().unwrap().blocks() * 512
    }

    /// An interrupted call is tried again until it gets through, a bounded number of times;
    /// one interrupted every time fails as interrupted (a fault, not "unsupported").
    #[test]
    fn interrupted_calls_are_retried_a_bounded_number_of_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eintr");
        let file = File::create(&path).unwrap();
        fail_hook::fail("eintr", libc::EINTR, ATTEMPTS - 1);
        let done = fallocate(&file, 0, LEN);
        assert_eq!(fail_hook::pending(), 0, "every injected EINTR was seen");
        match done {
            Ok(()) => assert!(allocated(&file) >= LEN, "the last try allocated"),
            Err(error) => assert_eq!(classify(&error), Refusal::Unsupported, "{error}"),
        }

        fail_hook::fail("eintr", libc::EINTR, ATTEMPTS + 1);
        let error = fallocate(&file, LEN, LEN).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EINTR));
        assert_eq!(classify(&error), Refusal::Other);
        assert_eq!(fail_hook::pending(), 1, "gave up after {ATTEMPTS} tries");
        fail_hook::clear();
    }

    #[test]
    fn refusals_are_read_the_same_for_every_caller() {
        let of = |errno| classify(&io::Error::from_raw_os_error(errno));
        assert_eq!(of(libc::EOPNOTSUPP), Refusal::Unsupported);
        assert_eq!(of(libc::ENOSYS), Refusal::Unsupported);
        assert_eq!(of(libc::ENOSPC), Refusal::NoSpace);
        assert_eq!(of(libc::EDQUOT), Refusal::NoSpace);
        assert_eq!(of(libc::EIO), Refusal::Other);
        assert_eq!(of(libc::EBADF), Refusal::Other);
        let unsupported = io::Error::from(io::ErrorKind::Unsupported);
        assert_eq!(classify(&unsupported), Refusal::Unsupported);
    }

    #[test]
    fn nothing_to_allocate_is_no_call() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("empty")).unwrap();
        fail_hook::fail("empty", libc::EIO, 1);
        fallocate(&file, 0, 0).unwrap();
        assert_eq!(fail_hook::pending(), 1);
        fail_hook::clear();
    }
}
