//! A throwaway PostgreSQL for tests: `initdb` into a temporary folder, the server listening
//! only on a unix socket there, stopped and removed on drop. Behind the `test-support`
//! feature, for this crate's tests and other crates' tests.
//!
//! The binaries come from `PATH` or Debian's `/usr/lib/postgresql/<major>/bin`. Without
//! them [`TestPostgres::start`] fails (CI installs the `postgresql` package); a test never
//! skips for want of them. Run as root (which `initdb` and `postgres` refuse), the server
//! runs as the `postgres` user through `setpriv`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::db::{Db, DbOptions};
use crate::error::{Error, Result};
use crate::url::{MetadataUrl, PgTarget};

/// The role the tests connect as (trust authentication on the socket).
const ROLE: &str = "shuyu";
const PORT: u16 = 5432;

/// A running throwaway PostgreSQL.
#[derive(Debug)]
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
    url: MetadataUrl,
}

fn failed(message: impl Into<String>) -> Error {
    Error::TestPostgres(message.into())
}

impl TestPostgres {
    /// Starts a server and creates the database `shuyu_test` on it; [`TestPostgres::url`]
    /// names it.
    ///
    /// # Errors
    /// No PostgreSQL binaries, no `postgres` user when running as root, or a server that
    /// did not become ready within 60 seconds (the message carries its log).
    pub fn start() -> Result<TestPostgres> {
        let bin = find_bin_dir(
            std::env::var_os("PATH").as_deref(),
            Path::new("/usr/lib/postgresql"),
        )?;
        let run_as = if running_as_root() {
            Some(postgres_user()?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("shuyu-pg-")
            .tempdir()
            .map_err(|e| failed(format!("temp dir: {e}")))?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| failed(format!("chown {}: {e}", dir.path().display())))?;
        }
        let server = TestPostgres {
            url: MetadataUrl::Postgres(PgTarget::socket(dir.path(), PORT, ROLE, "shuyu_test")),
            dir,
            bin,
            run_as,
        };
        let data = server.data_dir();
        server.run_tool(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                ROLE.as_ref(),
                "--auth=trust".as_ref(),
                "--no-sync".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
            ],
        )?;
        let log = server.dir.path().join("server.log");
        let server_options = format!(
            "-k {} -p {PORT} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            server.dir.path().display()
        );
        server.run_tool(
            "pg_ctl",
            &[
                "start".as_ref(),
                "-W".as_ref(),
                "-s".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                server_options.as_ref(),
            ],
        )?;
        let admin = server.wait_ready(Duration::from_secs(60))?;
        admin.execute_outside_transaction("CREATE DATABASE shuyu_test")?;
        Ok(server)
    }

    /// The test database's URL (a unix socket in the temporary folder).
    pub fn url(&self) -> MetadataUrl {
        self.url.clone()
    }

    /// Creates another empty database on this server and returns its URL.
    ///
    /// # Errors
    /// If the statement fails (a name already taken).
    pub fn create_database(&self, name: &str) -> Result<MetadataUrl> {
        let admin = Db::open(&self.database_url("postgres"), &DbOptions::default())?;
        admin.execute_outside_transaction(&format!("CREATE DATABASE \"{name}\""))?;
        Ok(self.database_url(name))
    }

    fn database_url(&self, name: &str) -> MetadataUrl {
        MetadataUrl::Postgres(PgTarget::socket(self.dir.path(), PORT, ROLE, name))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Polls until the server accepts a connection.
    fn wait_ready(&self, limit: Duration) -> Result<Db> {
        let deadline = Instant::now() + limit;
        let options = DbOptions {
            pool_size: 1,
            ..DbOptions::default()
        };
        loop {
            match Db::open(&self.database_url("postgres"), &options) {
                Ok(db) => return Ok(db),
                Err(e) if Instant::now() >= deadline => {
                    return Err(failed(format!(
                        "not ready after {limit:?}: {e}\nlog:\n{}",
                        self.log()
                    )));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn run_tool(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
        let program = self.bin.join(tool);
        let mut command = match self.run_as {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| failed(format!("running {}: {e}", program.display())))?;
        if !output.status.success() {
            return Err(failed(format!(
                "{tool} failed ({}): {}{}\nlog:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                self.log()
            )));
        }
        Ok(())
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self.run_tool(
            "pg_ctl",
            &[
                "stop".as_ref(),
                "-s".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
            ],
        );
    }
}

/// The folder holding `initdb`, `pg_ctl` and `postgres`: the one `initdb` on `path` lives in
/// (links resolved), else the newest `<debian_root>/<major>/bin`.
fn find_bin_dir(path: Option<&std::ffi::OsStr>, debian_root: &Path) -> Result<PathBuf> {
    let on_path = path
        .map(|path| std::env::split_paths(path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("initdb"))
        .find(|p| p.is_file());
    if let Some(initdb) = on_path {
        // Debian links /usr/bin tools to wrappers; the real folder holds all three.
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent().filter(|d| has_server(d)) {
            return Ok(dir.to_owned());
        }
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir(debian_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((major, bin))
        })
        .collect();
    debian.sort();
    debian.pop().map(|(_, bin)| bin).ok_or_else(|| {
        failed(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH or under \
             /usr/lib/postgresql/*/bin; install them (Debian: apt-get install postgresql)",
        )
    })
}

fn has_server(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|tool| dir.join(tool).is_file())
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn postgres_user() -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .ok_or_else(|| {
            failed(
                "running as root, and PostgreSQL refuses root: needs a 'postgres' user to run \
                 as (the Debian postgresql package creates it)",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_fail_with_the_fix() {
        let empty = tempfile::tempdir().unwrap();
        let err = find_bin_dir(Some(empty.path().as_os_str()), empty.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no PostgreSQL server binaries"), "{text}");
        assert!(text.contains("apt-get install postgresql"), "{text}");
    }

    #[test]
    fn newest_debian_major_wins() {
        let root = tempfile::tempdir().unwrap();
        for major in ["9", "15", "13"] {
            let bin = root.path().join(major).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for tool in ["initdb", "pg_ctl", "postgres"] {
                std::fs::write(bin.join(tool), "").unwrap();
            }
        }
        // A major without the server binaries (only the client) is passed over.
        std::fs::create_dir_all(root.path().join("17").join("bin")).unwrap();
        let found = find_bin_dir(None, root.path()).unwrap();
        assert_eq!(found, root.path().join("15").join("bin"));
    }
}
