//! OS confinement of a job worker process: parent-death signal, resource limits, Landlock
//! filesystem (and TCP) rules and a seccomp-bpf filter, applied once and irreversibly before the
//! worker runs an untrusted SQL job.
//!
//! # When to call [`confine`]
//!
//! Call it early in `shuyu worker`, **while the process is still single-threaded**: after the job
//! spec was read from stdin and the needed fds are open, and *before* the tokio runtime is built.
//! Landlock before ABI 8 (Linux 7.0) restricts only the calling thread and the threads it spawns
//! afterwards, so a runtime built earlier would keep unconfined worker threads (the report then
//! lists "threads other than the caller" as not enforced). Seccomp, the resource limits and
//! `no_new_privs` cover every thread either way. Building the runtime afterwards works: it needs
//! no file (see the tests), but `std::thread::available_parallelism` then cannot read the cgroup
//! CPU quota under `/proc` and `/sys/fs/cgroup` and falls back to the CPU affinity mask; call it
//! before `confine` and pass the result to `worker_threads` if the quota matters.
//!
//! # What stays possible afterwards
//!
//! Already-open fds (stdin/stdout/stderr, files opened earlier), anonymous memory, reading
//! beneath `read_dirs`, reading and writing regular files beneath `write_dirs`, new threads,
//! `socketpair(AF_UNIX)`. Everything else on the filesystem is denied when Landlock is available,
//! including `/proc`, `/etc` (so no local time zone: times are UTC) and `/dev`; nothing can be
//! executed.
//!
//! # Non-Linux targets
//!
//! [`confine`] applies nothing and says so in its report.
#![cfg_attr(
    not(target_os = "linux"),
    allow(
        dead_code,
        reason = "off Linux nothing reads the request or builds most errors"
    )
)]

use std::fmt;
use std::path::PathBuf;

/// What the worker may still do once confined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// Directories the worker may read (recursively), e.g. the dataset folders the job reads.
    pub read_dirs: Vec<PathBuf>,
    /// Directories the worker may read and write (create/remove files inside), e.g. its result
    /// folder.
    pub write_dirs: Vec<PathBuf>,
    /// Address-space ceiling (RLIMIT_AS) in bytes; None = unchanged.
    pub address_space_bytes: Option<u64>,
    /// Deny network sockets (AF_INET, AF_INET6, AF_PACKET, AF_NETLINK...; AF_UNIX may stay
    /// allowed).
    pub deny_network: bool,
}

/// What [`confine`] applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfinementReport {
    /// Landlock filesystem (and, with `deny_network`, TCP) rules.
    pub landlock: LandlockReport,
    /// The seccomp-bpf filter.
    pub seccomp: SeccompReport,
    /// RLIMIT_AS now in force (soft and hard), if one was requested.
    pub address_space_bytes: Option<u64>,
    /// RLIMIT_NOFILE now in force (soft and hard), if set.
    pub open_files_limit: Option<u64>,
    /// RLIMIT_CORE is 0 and the process is not dumpable: no core dump can hold job data.
    pub core_dumps_disabled: bool,
    /// The worker receives SIGKILL when the thread that spawned it exits.
    pub parent_death_kill: bool,
}

/// How much of the requested Landlock ruleset the running kernel enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LandlockReport {
    /// Everything requested is enforced.
    Full {
        /// Landlock ABI version in use.
        abi: u32,
    },
    /// Enforced, but the running kernel lacks some of the requested restrictions.
    Partial {
        /// Landlock ABI version in use.
        abi: u32,
        /// What is not enforced, each with the ABI version that would add it.
        unenforced: Vec<&'static str>,
    },
    /// Nothing enforced: the kernel or the platform has no Landlock.
    NotSupported {
        /// Why.
        reason: &'static str,
    },
}

/// Whether the seccomp-bpf filter is in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompReport {
    /// The filter denies (EACCES) access to other processes (`ptrace`, `process_vm_*`,
    /// `pidfd_getfd`) and, if `network`, creating non-UNIX sockets, `connect`, `bind`,
    /// `listen`, `accept*` and `io_uring_setup`.
    Applied {
        /// The network part of the filter is in place.
        network: bool,
    },
    /// No filter: the platform has no seccomp.
    #[cfg_attr(
        target_os = "linux",
        allow(dead_code, reason = "built on other platforms only")
    )]
    NotSupported {
        /// Why.
        reason: &'static str,
    },
}

impl ConfinementReport {
    /// One readable line, e.g. "landlock ABI 7 (full), seccomp network and process filter,
    /// RLIMIT_AS 3.0 GiB, RLIMIT_NOFILE 1024, no core dumps, parent-death SIGKILL".
    pub fn summary(&self) -> String {
        let address_space = match self.address_space_bytes {
            Some(bytes) => format!("RLIMIT_AS {}", format_bytes(bytes)),
            None => "RLIMIT_AS unchanged".to_owned(),
        };
        let open_files = match self.open_files_limit {
            Some(n_files) => format!("RLIMIT_NOFILE {n_files}"),
            None => "RLIMIT_NOFILE unchanged".to_owned(),
        };
        let core_dumps = if self.core_dumps_disabled {
            "no core dumps"
        } else {
            "core dumps unchanged"
        };
        let parent_death = if self.parent_death_kill {
            "parent-death SIGKILL"
        } else {
            "no parent-death signal"
        };
        let parts = [
            self.landlock.to_string(),
            self.seccomp.to_string(),
            address_space,
            open_files,
            core_dumps.to_owned(),
            parent_death.to_owned(),
        ];
        parts.join(", ")
    }
}

impl fmt::Display for LandlockReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LandlockReport::Full { abi } => write!(f, "landlock ABI {abi} (full)"),
            LandlockReport::Partial { abi, unenforced } => {
                write!(
                    f,
                    "landlock ABI {abi} (partial, not enforced: {})",
                    unenforced.join("; ")
                )
            }
            LandlockReport::NotSupported { reason } => write!(f, "no landlock ({reason})"),
        }
    }
}

impl fmt::Display for SeccompReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeccompReport::Applied { network: true } => {
                f.write_str("seccomp network and process filter")
            }
            SeccompReport::Applied { network: false } => f.write_str("seccomp process filter"),
            SeccompReport::NotSupported { reason } => write!(f, "no seccomp ({reason})"),
        }
    }
}

fn format_bytes(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} B")
    }
}

/// Why confinement failed. The process may then be partly confined: do not run the job.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A `read_dirs` or `write_dirs` entry cannot be opened as a directory.
    #[error("cannot open the {kind} directory {path}")]
    OpenDir {
        /// "readable" or "writable".
        kind: &'static str,
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The process already uses more address space than the requested RLIMIT_AS.
    #[error(
        "the process already maps {in_use} bytes, more than the address-space limit of {limit} bytes"
    )]
    AddressSpaceInUse {
        /// Bytes mapped now (VmSize).
        in_use: u64,
        /// The requested limit.
        limit: u64,
    },
    /// A `prctl` or `setrlimit` call failed.
    #[error("cannot set {what}")]
    Syscall {
        /// What was being set.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Building or enforcing the Landlock ruleset failed (not: Landlock is unsupported).
    #[error("cannot apply the landlock ruleset")]
    Landlock(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Building or installing the seccomp filter failed.
    #[error("cannot apply the seccomp filter")]
    Seccomp(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// This build has no seccomp filter for its architecture.
    #[error("no seccomp filter is built for the {0} architecture")]
    SeccompUnsupportedArch(&'static str),
}

/// Confines the calling process, irreversibly: parent-death SIGKILL, RLIMIT_CORE 0 and not
/// dumpable, RLIMIT_NOFILE 1024, `no_new_privs`, Landlock rules for `c.read_dirs` and
/// `c.write_dirs` (best effort: a kernel without Landlock is reported, not an error), a seccomp
/// filter (see [`SeccompReport::Applied`]) and, last, RLIMIT_AS.
///
/// Call it while the process is single-threaded (see the module documentation).
///
/// # Errors
///
/// A directory cannot be opened (checked before anything is applied), the process already
/// exceeds `address_space_bytes`, or a system call that the kernel should support fails. The
/// process may then be partly confined and must not run the job.
#[cfg(target_os = "linux")]
pub fn confine(c: &Confinement) -> Result<ConfinementReport, SandboxError> {
    let prepared = linux::prepare(c)?;
    linux::apply(prepared)
}

/// Confines nothing: this platform has neither Landlock nor seccomp.
///
/// # Errors
///
/// None on this platform.
#[cfg(not(target_os = "linux"))]
pub fn confine(_c: &Confinement) -> Result<ConfinementReport, SandboxError> {
    Ok(ConfinementReport {
        landlock: LandlockReport::NotSupported {
            reason: "not Linux",
        },
        seccomp: SeccompReport::NotSupported {
            reason: "not Linux",
        },
        address_space_bytes: None,
        open_files_limit: None,
        core_dumps_disabled: false,
        parent_death_kill: false,
    })
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::{File, OpenOptions};
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    use landlock::{
        ABI, Access, AccessFs, AccessNet, BitFlags, LandlockStatus, PathBeneath, RestrictSelfAttr,
        Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, make_bitflags,
    };
    use nix::libc;
    use nix::sys::prctl;
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};
    use nix::sys::signal::Signal;

    use super::{Confinement, ConfinementReport, LandlockReport, SandboxError, SeccompReport};

    /// RLIMIT_NOFILE once confined (lowered to the hard limit if that is smaller).
    pub(super) const OPEN_FILES_LIMIT: u64 = 1024;

    /// The newest Landlock ABI whose rights we request; older kernels get a best-effort subset.
    const LANDLOCK_TARGET: ABI = ABI::V10;

    /// What is opened and compiled before anything is applied, so that a bad directory or filter
    /// fails while the process is still untouched.
    #[derive(Debug)]
    pub(super) struct Prepared {
        read_dirs: Vec<File>,
        write_dirs: Vec<File>,
        address_space_bytes: Option<u64>,
        deny_network: bool,
        filter: seccomp::Filter,
    }

    pub(super) fn prepare(c: &Confinement) -> Result<Prepared, SandboxError> {
        Ok(Prepared {
            read_dirs: open_dirs(&c.read_dirs, "readable")?,
            write_dirs: open_dirs(&c.write_dirs, "writable")?,
            address_space_bytes: c.address_space_bytes,
            deny_network: c.deny_network,
            filter: seccomp::build(c.deny_network)?,
        })
    }

    fn open_dirs(dirs: &[impl AsRef<Path>], kind: &'static str) -> Result<Vec<File>, SandboxError> {
        dirs.iter()
            .map(|dir| {
                let path = dir.as_ref();
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                    .open(path)
                    .map_err(|source| SandboxError::OpenDir {
                        kind,
                        path: path.to_owned(),
                        source,
                    })
            })
            .collect()
    }

    pub(super) fn apply(p: Prepared) -> Result<ConfinementReport, SandboxError> {
        prctl::set_pdeathsig(Signal::SIGKILL).map_err(syscall_error("the parent-death signal"))?;
        prctl::set_dumpable(false).map_err(syscall_error("not dumpable"))?;
        set_limit(Resource::RLIMIT_CORE, "RLIMIT_CORE", 0)?;
        let open_files_limit =
            set_limit(Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE", OPEN_FILES_LIMIT)?;
        if let (Some(limit), Some(in_use)) = (p.address_space_bytes, mapped_bytes())
            && in_use > limit
        {
            return Err(SandboxError::AddressSpaceInUse { in_use, limit });
        }
        prctl::set_no_new_privs().map_err(syscall_error("no_new_privs"))?;
        let landlock = apply_landlock(&p)?;
        seccomp::install(&p.filter)?;
        // Last, so that nothing above can run out of address space half-way.
        let address_space_bytes = match p.address_space_bytes {
            Some(bytes) => Some(set_limit(Resource::RLIMIT_AS, "RLIMIT_AS", bytes)?),
            None => None,
        };
        Ok(ConfinementReport {
            landlock,
            seccomp: SeccompReport::Applied {
                network: p.deny_network,
            },
            address_space_bytes,
            open_files_limit: Some(open_files_limit),
            core_dumps_disabled: true,
            parent_death_kill: true,
        })
    }

    fn syscall_error(what: &'static str) -> impl FnOnce(nix::errno::Errno) -> SandboxError {
        move |errno| SandboxError::Syscall {
            what,
            source: errno.into(),
        }
    }

    /// Sets soft and hard limit to `wanted`, or to the hard limit if that is lower (raising it
    /// would need CAP_SYS_RESOURCE). Returns the limit now in force.
    fn set_limit(resource: Resource, what: &'static str, wanted: u64) -> Result<u64, SandboxError> {
        let (_, hard) = getrlimit(resource).map_err(syscall_error(what))?;
        let limit = if hard == RLIM_INFINITY {
            wanted
        } else {
            wanted.min(hard)
        };
        setrlimit(resource, limit, limit).map_err(syscall_error(what))?;
        Ok(limit)
    }

    /// VmSize of this process, if /proc can tell.
    fn mapped_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmSize:"))?;
        let kib: u64 = kib.trim().strip_suffix("kB")?.trim().parse().ok()?;
        kib.checked_mul(1024)
    }

    /// Threads of this process, if /proc can tell.
    fn thread_count() -> Option<usize> {
        std::fs::read_dir("/proc/self/task")
            .ok()
            .map(Iterator::count)
    }

    fn landlock_error(error: landlock::RulesetError) -> SandboxError {
        SandboxError::Landlock(Box::new(error))
    }

    fn apply_landlock(p: &Prepared) -> Result<LandlockReport, SandboxError> {
        let read_access: BitFlags<AccessFs> = make_bitflags!(AccessFs::{ReadFile | ReadDir});
        let write_access =
            read_access | make_bitflags!(AccessFs::{WriteFile | MakeReg | RemoveFile | Truncate});
        // Counted before restricting: /proc is out of reach afterwards.
        let n_threads = thread_count();

        let mut ruleset = Ruleset::default()
            .handle_access(AccessFs::from_all(LANDLOCK_TARGET))
            .and_then(|r| r.scope(Scope::from_all(LANDLOCK_TARGET)))
            .map_err(landlock_error)?;
        if p.deny_network {
            // Handled without any rule: every TCP (and, from ABI 10, UDP) bind and connect fails.
            ruleset = ruleset
                .handle_access(AccessNet::from_all(LANDLOCK_TARGET))
                .map_err(landlock_error)?;
        }
        let mut created = ruleset.create().map_err(landlock_error)?;
        for dir in &p.read_dirs {
            created = created
                .add_rule(PathBeneath::new(dir, read_access))
                .map_err(landlock_error)?;
        }
        for dir in &p.write_dirs {
            created = created
                .add_rule(PathBeneath::new(dir, write_access))
                .map_err(landlock_error)?;
        }
        let status = created
            .all_threads(true)
            .and_then(|r| r.restrict_self())
            .map_err(landlock_error)?;

        let abi = match status.landlock {
            LandlockStatus::NotEnabled => {
                return Ok(LandlockReport::NotSupported {
                    reason: "built into the kernel but not enabled at boot",
                });
            }
            LandlockStatus::NotImplemented => {
                return Ok(LandlockReport::NotSupported {
                    reason: "not built into the kernel",
                });
            }
            LandlockStatus::Available { effective_abi, .. } => effective_abi,
        };
        if status.ruleset == RulesetStatus::NotEnforced {
            return Ok(LandlockReport::NotSupported {
                reason: "the kernel enforced none of the ruleset",
            });
        }
        let unenforced = unenforced(abi, p.deny_network, status.all_threads, n_threads);
        let abi = abi_number(abi);
        Ok(if unenforced.is_empty() {
            LandlockReport::Full { abi }
        } else {
            LandlockReport::Partial { abi, unenforced }
        })
    }

    /// What of the ruleset requested above an `abi` kernel cannot enforce.
    fn unenforced(
        abi: ABI,
        deny_network: bool,
        all_threads: bool,
        n_threads: Option<usize>,
    ) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if abi < ABI::V3 {
            missing.push("truncation outside the allowed dirs (ABI 3)");
        }
        if abi < ABI::V4 && deny_network {
            missing.push("TCP rules (ABI 4)");
        }
        if abi < ABI::V5 {
            missing.push("device ioctl (ABI 5)");
        }
        if abi < ABI::V6 {
            missing.push("abstract UNIX socket and signal scoping (ABI 6)");
        }
        if !all_threads && n_threads != Some(1) {
            missing.push("threads other than the caller (ABI 8)");
        }
        if abi < ABI::V9 {
            missing.push("UNIX socket paths (ABI 9)");
        }
        if abi < ABI::V10 && deny_network {
            missing.push("UDP rules (ABI 10)");
        }
        missing
    }

    fn abi_number(abi: ABI) -> u32 {
        const KNOWN: [ABI; 10] = [
            ABI::V1,
            ABI::V2,
            ABI::V3,
            ABI::V4,
            ABI::V5,
            ABI::V6,
            ABI::V7,
            ABI::V8,
            ABI::V9,
            ABI::V10,
        ];
        KNOWN.iter().filter(|known| **known <= abi).map(|_| 1).sum()
    }

    /// The seccomp-bpf filter, for the architectures seccompiler supports.
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    ))]
    mod seccomp {
        use std::collections::BTreeMap;

        use nix::libc;
        use seccompiler::{
            BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
            SeccompFilter, SeccompRule, TargetArch,
        };

        use crate::worker::sandbox::SandboxError;

        pub(super) type Filter = BpfProgram;

        fn seccomp_error(error: impl Into<seccompiler::Error>) -> SandboxError {
            let error: seccompiler::Error = error.into();
            SandboxError::Seccomp(Box::new(error))
        }

        /// Allows every system call except those below, which fail with EACCES.
        pub(super) fn build(deny_network: bool) -> Result<BpfProgram, SandboxError> {
            let arch = TargetArch::try_from(std::env::consts::ARCH)
                .map_err(|_| SandboxError::SeccompUnsupportedArch(std::env::consts::ARCH))?;
            let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
            // Reading another process's memory or stealing its fds (the server's keys and
            // sockets): Landlock denies this too, but only where Landlock is enabled.
            for nr in [
                libc::SYS_ptrace,
                libc::SYS_process_vm_readv,
                libc::SYS_process_vm_writev,
                libc::SYS_pidfd_getfd,
            ] {
                rules.insert(nr, Vec::new());
            }
            if deny_network {
                let domain_is_not_unix = || -> Result<Vec<SeccompRule>, seccompiler::Error> {
                    let condition = SeccompCondition::new(
                        0,
                        SeccompCmpArgLen::Dword,
                        SeccompCmpOp::Ne,
                        libc::AF_UNIX as u64,
                    )?;
                    Ok(vec![SeccompRule::new(vec![condition])?])
                };
                rules.insert(
                    libc::SYS_socket,
                    domain_is_not_unix().map_err(seccomp_error)?,
                );
                rules.insert(
                    libc::SYS_socketpair,
                    domain_is_not_unix().map_err(seccomp_error)?,
                );
                // Their address is behind a pointer that seccomp cannot read, so they are denied
                // for every family; a worker makes no new connections. io_uring could create and
                // connect sockets without these system calls.
                for nr in [
                    libc::SYS_connect,
                    libc::SYS_bind,
                    libc::SYS_listen,
                    libc::SYS_accept,
                    libc::SYS_accept4,
                    libc::SYS_io_uring_setup,
                ] {
                    rules.insert(nr, Vec::new());
                }
            }
            // x32 system calls pass the x86_64 architecture check with this bit set in their
            // number: a kernel built with CONFIG_X86_X32_ABI would otherwise let `socket` through
            // as `socket | X32_SYSCALL_BIT`. A worker is never an x32 program, so the x32 forms
            // are denied whatever their arguments: the shared numbers of the calls above, and the
            // x32-only numbers of ptrace (521) and process_vm_readv/writev (539, 540) from
            // arch/x86/entry/syscalls/syscall_64.tbl.
            #[cfg(target_arch = "x86_64")]
            {
                const X32_SYSCALL_BIT: i64 = 0x4000_0000;
                const X32_ONLY: [i64; 3] = [521, 539, 540];
                let x32: Vec<i64> = rules.keys().copied().chain(X32_ONLY).collect();
                for nr in x32 {
                    rules.insert(nr | X32_SYSCALL_BIT, Vec::new());
                }
            }
            let filter = SeccompFilter::new(
                rules,
                SeccompAction::Allow,
                SeccompAction::Errno(libc::EACCES as u32),
                arch,
            )
            .map_err(seccomp_error)?;
            BpfProgram::try_from(filter).map_err(seccomp_error)
        }

        /// Installs the filter on every thread of the process (TSYNC).
        pub(super) fn install(filter: &BpfProgram) -> Result<(), SandboxError> {
            seccompiler::apply_filter_all_threads(filter).map_err(seccomp_error)
        }
    }

    /// No seccomp filter is built for this architecture: confinement fails rather than run a job
    /// without it.
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )))]
    mod seccomp {
        use crate::worker::sandbox::SandboxError;

        pub(super) type Filter = ();

        pub(super) fn build(_deny_network: bool) -> Result<Filter, SandboxError> {
            Err(SandboxError::SeccompUnsupportedArch(std::env::consts::ARCH))
        }

        pub(super) fn install(_filter: &Filter) -> Result<(), SandboxError> {
            Err(SandboxError::SeccompUnsupportedArch(std::env::consts::ARCH))
        }
    }
}

/// Hardens the server process, which holds unwrapped keys: not dumpable (no core dumps, no
/// ptrace or /proc/<pid>/mem access by other processes of the same user). Best effort.
pub fn protect_server_process() {
    #[cfg(target_os = "linux")]
    {
        if let Err(e) = nix::sys::prctl::set_dumpable(false) {
            tracing::warn!(error = %e, "could not make the server process non-dumpable");
        }
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_one_readable_line() {
        let confined = ConfinementReport {
            landlock: LandlockReport::Partial {
                abi: 7,
                unenforced: vec!["UNIX socket paths (ABI 9)", "UDP rules (ABI 10)"],
            },
            seccomp: SeccompReport::Applied { network: true },
            address_space_bytes: Some(3 << 30),
            open_files_limit: Some(1024),
            core_dumps_disabled: true,
            parent_death_kill: true,
        };
        assert_eq!(
            confined.summary(),
            "landlock ABI 7 (partial, not enforced: UNIX socket paths (ABI 9); UDP rules (ABI 10)), \
             seccomp network and process filter, RLIMIT_AS 3.0 GiB, RLIMIT_NOFILE 1024, \
             no core dumps, parent-death SIGKILL"
        );
        let bare = ConfinementReport {
            landlock: LandlockReport::NotSupported {
                reason: "not Linux",
            },
            seccomp: SeccompReport::NotSupported {
                reason: "not Linux",
            },
            address_space_bytes: None,
            open_files_limit: None,
            core_dumps_disabled: false,
            parent_death_kill: false,
        };
        assert_eq!(
            bare.summary(),
            "no landlock (not Linux), no seccomp (not Linux), RLIMIT_AS unchanged, \
             RLIMIT_NOFILE unchanged, core dumps unchanged, no parent-death signal"
        );
        let full = LandlockReport::Full { abi: 4 };
        assert_eq!(full.to_string(), "landlock ABI 4 (full)");
        assert_eq!(format_bytes(512 << 20), "512.0 MiB");
    }
}

/// Confinement is irreversible and process-wide, so each of these tests re-executes the test
/// binary, running only itself, with [`CHILD_ENV`] set: the child confines itself, tries things
/// and prints one `probe NAME=OUTCOME` line per attempt; the parent compares them with what it
/// expects on this kernel.
#[cfg(all(test, target_os = "linux"))]
mod linux_tests {
    use std::collections::BTreeMap;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use landlock::{AccessFs, Ruleset, RulesetAttr};
    use nix::sys::prctl;
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};

    use super::*;

    /// Set in the child: which scenario to run.
    const CHILD_ENV: &str = "SHUYU_SANDBOX_TEST_CHILD";
    /// Set in the child: the temporary directory holding `read/`, `write/` and `outside/`.
    const ROOT_ENV: &str = "SHUYU_SANDBOX_TEST_ROOT";
    /// Set in the child: a loopback port the parent listens on.
    const PORT_ENV: &str = "SHUYU_SANDBOX_TEST_PORT";

    const ADDRESS_SPACE: u64 = 3 << 30;
    /// More than [`ADDRESS_SPACE`]; reserved (never touched) to see the limit bite.
    const BEYOND_ADDRESS_SPACE: usize = 4 << 30;
    const READABLE_CANARY: &str = "readable-canary-5f1c0e";
    const OUTSIDE_CANARY: &str = "outside-canary-9b2e77";

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Scenario {
        /// A read dir, a write dir, RLIMIT_AS and no network.
        Confined,
        /// A read dir only, no RLIMIT_AS, network allowed.
        NetworkAllowed,
    }

    impl Scenario {
        fn name(self) -> &'static str {
            match self {
                Scenario::Confined => "confined",
                Scenario::NetworkAllowed => "network-allowed",
            }
        }

        fn confinement(self, root: &Path) -> Confinement {
            match self {
                Scenario::Confined => Confinement {
                    read_dirs: vec![root.join("read")],
                    write_dirs: vec![root.join("write")],
                    address_space_bytes: Some(ADDRESS_SPACE),
                    deny_network: true,
                },
                Scenario::NetworkAllowed => Confinement {
                    read_dirs: vec![root.join("read")],
                    write_dirs: Vec::new(),
                    address_space_bytes: None,
                    deny_network: false,
                },
            }
        }
    }

    #[test]
    fn confined_worker_keeps_to_its_dirs_and_off_the_network() {
        parent_or_child(
            "confined_worker_keeps_to_its_dirs_and_off_the_network",
            Scenario::Confined,
        );
    }

    #[test]
    fn worker_allowed_the_network_can_still_connect() {
        parent_or_child(
            "worker_allowed_the_network_can_still_connect",
            Scenario::NetworkAllowed,
        );
    }

    #[test]
    fn bad_directories_fail_before_anything_is_applied() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("file.txt");
        std::fs::write(&file, "not a directory").unwrap();
        let missing = root.path().join("missing");
        let cases = [
            (
                Confinement {
                    read_dirs: vec![missing.clone()],
                    ..Confinement::default()
                },
                "readable",
                &missing,
            ),
            (
                Confinement {
                    write_dirs: vec![file.clone()],
                    ..Confinement::default()
                },
                "writable",
                &file,
            ),
        ];
        for (confinement, expected_kind, expected_path) in cases {
            // `prepare` is the side-effect-free half of `confine`: it is safe in this process.
            match linux::prepare(&confinement) {
                Err(SandboxError::OpenDir { kind, path, .. }) => {
                    assert_eq!((kind, &path), (expected_kind, expected_path));
                }
                other => panic!("expected OpenDir, got {other:?}"),
            }
        }
    }

    fn parent_or_child(test_fn: &str, scenario: Scenario) {
        match std::env::var(CHILD_ENV) {
            Ok(name) if name == scenario.name() => child(scenario),
            Ok(name) => panic!("{CHILD_ENV}={name} reached the {} test", scenario.name()),
            Err(_) => parent(test_fn, scenario),
        }
    }

    /// Whether this kernel has Landlock: creates a ruleset without enforcing it.
    fn kernel_has_landlock() -> bool {
        let created = Ruleset::default()
            .handle_access(AccessFs::ReadFile)
            .and_then(|r| r.create());
        matches!(created.map(Option::<OwnedFd>::from), Ok(Some(_)))
    }

    fn parent(test_fn: &str, scenario: Scenario) {
        let root = tempfile::tempdir().unwrap();
        for dir in ["read", "write", "outside"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        std::fs::write(root.path().join("read/data.txt"), READABLE_CANARY).unwrap();
        std::fs::write(root.path().join("outside/secret.txt"), OUTSIDE_CANARY).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();

        let (_, module) = module_path!().split_once("::").unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("{module}::{test_fn}"),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, scenario.name())
            .env(ROOT_ENV, root.path())
            .env(PORT_ENV, port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("the confined child did not finish in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        let mut stderr = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(
            status.success(),
            "child failed: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );

        let mut probes: BTreeMap<String, String> = stdout
            .lines()
            .filter_map(|line| line.strip_prefix("probe "))
            .filter_map(|probe| probe.split_once('='))
            .map(|(name, outcome)| (name.to_owned(), outcome.to_owned()))
            .collect();
        let summary = probes.remove("summary").unwrap_or_default();
        eprintln!("{} child: {summary}", scenario.name());
        let landlock = kernel_has_landlock();
        assert_eq!(
            summary.starts_with("landlock ABI "),
            landlock,
            "summary: {summary}"
        );
        assert_eq!(
            probes,
            expected_probes(scenario, landlock),
            "summary: {summary}"
        );
    }

    fn expected_probes(scenario: Scenario, landlock: bool) -> BTreeMap<String, String> {
        // Outside the granted dirs: denied with Landlock, untouched without it.
        let fenced = if landlock { "denied" } else { "ok" };
        let confined = scenario == Scenario::Confined;
        let (_, nofile_hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let nofile = linux::OPEN_FILES_LIMIT.min(nofile_hard);
        let mut reservation = Vec::<u8>::new();
        let reserve_here = if reservation.try_reserve_exact(BEYOND_ADDRESS_SPACE).is_ok() {
            "ok"
        } else {
            "failed"
        };
        drop(reservation);
        let expected = [
            (
                "landlock",
                if landlock {
                    "enforced"
                } else {
                    "not-supported"
                },
            ),
            ("seccomp", if confined { "network" } else { "process-only" }),
            ("read_allowed", "ok"),
            ("list_allowed", "ok"),
            ("read_outside", fenced),
            ("read_proc", fenced),
            ("write_in_write_dir", if confined { "ok" } else { fenced }),
            ("write_in_read_dir", fenced),
            ("mkdir_in_write_dir", fenced),
            ("thread_read_allowed", "ok"),
            ("thread_read_outside", fenced),
            ("tokio_runtime", "ok"),
            ("tokio_read_allowed", "ok"),
            ("tokio_read_outside", fenced),
            ("available_parallelism", "ok"),
            ("tcp_connect", if confined { "denied" } else { "ok" }),
            ("udp_bind", if confined { "denied" } else { "ok" }),
            ("unix_socketpair", "ok"),
            ("rlimit_core", "0/0"),
            ("pdeathsig", "SIGKILL"),
            ("dumpable", "false"),
            (
                "reserve_beyond_limit",
                if confined { "failed" } else { reserve_here },
            ),
        ];
        let mut expected: BTreeMap<String, String> = expected
            .into_iter()
            .map(|(name, outcome)| (name.to_owned(), outcome.to_owned()))
            .collect();
        expected.insert("rlimit_nofile".to_owned(), format!("{nofile}/{nofile}"));
        let address_space = if confined {
            limit_text(ADDRESS_SPACE, ADDRESS_SPACE)
        } else {
            rlimit(Resource::RLIMIT_AS)
        };
        expected.insert("rlimit_as".to_owned(), address_space);
        expected
    }

    fn limit_text(soft: u64, hard: u64) -> String {
        let text = |limit: u64| {
            if limit == RLIM_INFINITY {
                "unlimited".to_owned()
            } else {
                limit.to_string()
            }
        };
        format!("{}/{}", text(soft), text(hard))
    }

    fn rlimit(resource: Resource) -> String {
        match getrlimit(resource) {
            Ok((soft, hard)) => limit_text(soft, hard),
            Err(errno) => format!("error {errno}"),
        }
    }

    fn probe(name: &str, outcome: impl std::fmt::Display) {
        println!("probe {name}={outcome}");
    }

    /// "ok", "denied" (EACCES or EPERM) or the error kind.
    fn io_outcome<T>(result: std::io::Result<T>) -> String {
        match result {
            Ok(_) => "ok".to_owned(),
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                "denied".to_owned()
            }
            Err(error) => format!("error {:?}", error.kind()),
        }
    }

    fn read_canary(path: &Path, canary: &str) -> String {
        match std::fs::read_to_string(path) {
            Ok(text) if text == canary => "ok".to_owned(),
            Ok(_) => "wrong content".to_owned(),
            result => io_outcome(result),
        }
    }

    fn child(scenario: Scenario) {
        let root = std::path::PathBuf::from(std::env::var_os(ROOT_ENV).unwrap());
        let port: u16 = std::env::var(PORT_ENV).unwrap().parse().unwrap();
        let allowed = root.join("read/data.txt");
        let outside = root.join("outside/secret.txt");

        let report = confine(&scenario.confinement(&root)).unwrap();
        // libtest has printed "test NAME ... " without a newline: end that line first.
        println!();
        probe("summary", report.summary());
        probe(
            "landlock",
            match report.landlock {
                LandlockReport::Full { .. } | LandlockReport::Partial { .. } => "enforced",
                LandlockReport::NotSupported { .. } => "not-supported",
            },
        );
        probe(
            "seccomp",
            match report.seccomp {
                SeccompReport::Applied { network: true } => "network",
                SeccompReport::Applied { network: false } => "process-only",
                SeccompReport::NotSupported { .. } => "not-supported",
            },
        );

        probe("read_allowed", read_canary(&allowed, READABLE_CANARY));
        probe(
            "list_allowed",
            io_outcome(
                std::fs::read_dir(root.join("read"))
                    .and_then(|dir| dir.collect::<Result<Vec<_>, _>>()),
            ),
        );
        probe("read_outside", read_canary(&outside, OUTSIDE_CANARY));
        probe(
            "read_proc",
            io_outcome(std::fs::read_to_string("/proc/self/status")),
        );

        let result = root.join("write/result.txt");
        let renamed = root.join("write/renamed.txt");
        probe(
            "write_in_write_dir",
            io_outcome((|| {
                std::fs::write(&result, "first, longer content")?;
                std::fs::write(&result, "second")?; // O_TRUNC: needs Truncate
                if std::fs::read_to_string(&result)? != "second" {
                    return Err(std::io::Error::other("read back the wrong content"));
                }
                std::fs::rename(&result, &renamed)?;
                std::fs::remove_file(&renamed)
            })()),
        );
        probe(
            "write_in_read_dir",
            io_outcome(std::fs::write(root.join("read/new.txt"), "x")),
        );
        probe(
            "mkdir_in_write_dir",
            io_outcome(std::fs::create_dir(root.join("write/sub"))),
        );

        // Threads started after confinement inherit it.
        let (thread_allowed, thread_outside) = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    (
                        read_canary(&allowed, READABLE_CANARY),
                        read_canary(&outside, OUTSIDE_CANARY),
                    )
                })
                .join()
                .unwrap()
        });
        probe("thread_read_allowed", thread_allowed);
        probe("thread_read_outside", thread_outside);

        // The worker builds its runtime after confinement.
        probe(
            "available_parallelism",
            io_outcome(std::thread::available_parallelism()),
        );
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(runtime) => {
                probe("tokio_runtime", "ok");
                let (allowed, outside) = (allowed.clone(), outside.clone());
                let (tokio_allowed, tokio_outside) = runtime
                    .block_on(async move {
                        // On a worker thread; tokio::fs then runs on a blocking-pool thread.
                        tokio::spawn(async move {
                            let allowed = tokio::fs::read_to_string(&allowed).await;
                            let outside = tokio::fs::read_to_string(&outside).await;
                            (allowed.map(|text| text == READABLE_CANARY), outside)
                        })
                        .await
                    })
                    .unwrap();
                probe(
                    "tokio_read_allowed",
                    match tokio_allowed {
                        Ok(true) => "ok".to_owned(),
                        Ok(false) => "wrong content".to_owned(),
                        Err(error) => io_outcome::<()>(Err(error)),
                    },
                );
                probe("tokio_read_outside", io_outcome(tokio_outside));
            }
            Err(error) => probe("tokio_runtime", io_outcome::<()>(Err(error))),
        }

        probe(
            "tcp_connect",
            io_outcome(TcpStream::connect(("127.0.0.1", port))),
        );
        probe("udp_bind", io_outcome(UdpSocket::bind("127.0.0.1:0")));
        probe(
            "unix_socketpair",
            io_outcome(UnixStream::pair().and_then(|(mut a, mut b)| {
                a.write_all(b"x")?;
                let mut byte = [0u8];
                b.read_exact(&mut byte)
            })),
        );

        probe("rlimit_as", rlimit(Resource::RLIMIT_AS));
        probe("rlimit_core", rlimit(Resource::RLIMIT_CORE));
        probe("rlimit_nofile", rlimit(Resource::RLIMIT_NOFILE));
        // try_reserve reports the failed allocation instead of aborting.
        let mut reservation = Vec::<u8>::new();
        probe(
            "reserve_beyond_limit",
            if reservation.try_reserve_exact(BEYOND_ADDRESS_SPACE).is_ok() {
                "ok"
            } else {
                "failed"
            },
        );
        drop(reservation);
        probe(
            "pdeathsig",
            match prctl::get_pdeathsig() {
                Ok(Some(signal)) => signal.as_str().to_owned(),
                Ok(None) => "none".to_owned(),
                Err(errno) => format!("error {errno}"),
            },
        );
        probe(
            "dumpable",
            match prctl::get_dumpable() {
                Ok(dumpable) => dumpable.to_string(),
                Err(errno) => format!("error {errno}"),
            },
        );
    }
}
