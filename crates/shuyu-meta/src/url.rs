//! Where the metadata lives: `sqlite:PATH` (or a plain path) or `postgresql://…`, and where
//! a PostgreSQL password comes from.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// A parsed metadata location. Its [`Display`](fmt::Display) form parses back to the same
/// value and never shows a password (a password in the URL is shown as `***`).
#[derive(Clone, PartialEq, Eq)]
pub enum MetadataUrl {
    /// An SQLite file (one server at a time).
    Sqlite(PathBuf),
    /// A PostgreSQL database (shareable by several servers).
    Postgres(PgTarget),
}

/// A PostgreSQL server and database.
#[derive(Clone, PartialEq, Eq)]
pub struct PgTarget {
    /// Role to connect as (libpq's default, the OS user, is not guessed: `None` means the
    /// server decides, which fails on most servers).
    pub user: Option<String>,
    /// TCP host or unix-socket directory.
    pub host: PgHost,
    /// Port (also names the socket file in a socket directory).
    pub port: u16,
    /// Database name.
    pub dbname: String,
    /// `application_name`, shown in `pg_stat_activity`.
    pub application_name: Option<String>,
    /// Connect timeout.
    pub connect_timeout: Option<Duration>,
    /// A password written in the URL itself. Kept only so that a URL typed on a command
    /// line works; configuration files should leave it out and name a [`PasswordSource`]
    /// (a server can refuse it: see [`MetadataUrl::has_password`]).
    password_in_url: Option<String>,
}

/// How to reach the PostgreSQL server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgHost {
    /// A host name or address, over TCP (without TLS: see `ARCHITECTURE.md`).
    Tcp(String),
    /// A directory holding the server's unix socket `.s.PGSQL.<port>`.
    Socket(PathBuf),
}

/// Where a PostgreSQL password comes from: named by the caller (the server's config), read
/// when the store is opened, never stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PasswordSource {
    /// No password (trust, peer or certificate authentication), unless the URL has one.
    #[default]
    None,
    /// The environment variable of this name.
    EnvVar(String),
    /// The first line of this file, which must not be readable by group or others.
    File(PathBuf),
}

impl PasswordSource {
    /// Reads the password.
    ///
    /// # Errors
    /// A missing variable, an unreadable file, or a file others can read.
    pub fn read(&self) -> Result<Option<String>> {
        match self {
            PasswordSource::None => Ok(None),
            PasswordSource::EnvVar(name) => match std::env::var(name) {
                Ok(value) => Ok(Some(value)),
                Err(e) => Err(Error::Password {
                    source_name: format!("environment variable {name}"),
                    reason: e.to_string(),
                }),
            },
            PasswordSource::File(path) => read_password_file(path).map(Some),
        }
    }
}

fn read_password_file(path: &Path) -> Result<String> {
    let failed = |reason: String| Error::Password {
        source_name: path.display().to_string(),
        reason,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).map_err(|e| failed(e.to_string()))?;
        if meta.mode() & 0o077 != 0 {
            return Err(failed(format!(
                "mode {:o} lets others read it; make it 0600",
                meta.mode() & 0o777
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(failed("the file is empty".to_owned()));
    }
    Ok(line.to_owned())
}

impl MetadataUrl {
    /// Parses `sqlite:PATH`, `sqlite://PATH`, a plain path, or
    /// `postgresql://[user[:password]@][host][:port]/dbname[?param=value&…]` (also
    /// `postgres://`). Parameters: `host` (a path starting with `/` is a socket directory),
    /// `port`, `user`, `dbname`, `application_name`, `connect_timeout` (seconds), `sslmode`
    /// (`disable` or `prefer` only: TLS to PostgreSQL is not supported yet, and a URL asking
    /// for it is refused rather than silently served in the clear).
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] (whose text never contains the password).
    pub fn parse(text: &str) -> Result<MetadataUrl> {
        if let Some(rest) = text
            .strip_prefix("postgresql://")
            .or_else(|| text.strip_prefix("postgres://"))
        {
            return parse_postgres(rest).map(MetadataUrl::Postgres);
        }
        if let Some(rest) = text.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(Error::InvalidUrl("sqlite: needs a path".to_owned()));
            }
            return Ok(MetadataUrl::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(Error::InvalidUrl(format!(
                "unsupported scheme {scheme:?} (sqlite: or postgresql://)"
            )));
        }
        if text.is_empty() {
            return Err(Error::InvalidUrl("empty".to_owned()));
        }
        Ok(MetadataUrl::Sqlite(PathBuf::from(text)))
    }

    /// Whether the URL itself carries a password (configuration should not).
    pub fn has_password(&self) -> bool {
        matches!(self, MetadataUrl::Postgres(t) if t.password_in_url.is_some())
    }

    /// The same URL without its password.
    #[must_use]
    pub fn without_password(&self) -> MetadataUrl {
        match self {
            MetadataUrl::Postgres(t) => MetadataUrl::Postgres(PgTarget {
                password_in_url: None,
                ..t.clone()
            }),
            other => other.clone(),
        }
    }
}

impl PgTarget {
    /// A target on a unix socket directory (as the test harness uses).
    pub fn socket(dir: impl Into<PathBuf>, port: u16, user: &str, dbname: &str) -> PgTarget {
        PgTarget {
            user: Some(user.to_owned()),
            host: PgHost::Socket(dir.into()),
            port,
            dbname: dbname.to_owned(),
            application_name: None,
            connect_timeout: None,
            password_in_url: None,
        }
    }

    pub(crate) fn url_password(&self) -> Option<&str> {
        self.password_in_url.as_deref()
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidUrl(message.into())
}

fn parse_postgres(rest: &str) -> Result<PgTarget> {
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((a, p)) => (a, p),
        None => (before_query, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut user = None;
    let mut password = None;
    if let Some(userinfo) = userinfo {
        let (u, p) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        if !u.is_empty() {
            user = Some(percent_decode(u, "user")?);
        }
        if let Some(p) = p {
            // Decoded without echoing it in any error.
            password =
                Some(percent_decode(p, "password").map_err(|_| {
                    invalid("the password is not valid percent-encoding (not shown)")
                })?);
        }
    }
    let (host_text, port_text) = split_host_port(hostport)?;
    let mut host = if host_text.is_empty() {
        None
    } else {
        Some(host_from(percent_decode(host_text, "host")?))
    };
    let mut port = match port_text {
        Some(p) => Some(parse_port(p)?),
        None => None,
    };
    let mut dbname = if path.is_empty() {
        None
    } else {
        Some(percent_decode(path, "database")?)
    };
    let mut application_name = None;
    let mut connect_timeout = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| invalid(format!("parameter {pair:?} has no value")))?;
        let value = percent_decode(value, key)?;
        match key {
            "host" => host = Some(host_from(value)),
            "port" => port = Some(parse_port(&value)?),
            "user" => user = Some(value),
            "dbname" => dbname = Some(value),
            "application_name" => application_name = Some(value),
            "connect_timeout" => {
                let secs: u64 = value
                    .parse()
                    .map_err(|_| invalid(format!("connect_timeout {value:?} is not seconds")))?;
                connect_timeout = Some(Duration::from_secs(secs));
            }
            "sslmode" => match value.as_str() {
                "disable" | "prefer" | "allow" => {}
                other => {
                    return Err(invalid(format!(
                        "sslmode={other}: TLS to PostgreSQL is not supported yet; use a unix socket or a trusted network with sslmode=disable"
                    )));
                }
            },
            "password" => {
                return Err(invalid(
                    "a password parameter is refused: pass a password source instead",
                ));
            }
            other => return Err(invalid(format!("unknown parameter {other:?}"))),
        }
    }
    let host = host.ok_or_else(|| invalid("no host (give one, or ?host=/socket/dir)"))?;
    let dbname = dbname.ok_or_else(|| invalid("no database name (postgresql://…/DBNAME)"))?;
    if dbname.is_empty() {
        return Err(invalid("empty database name"));
    }
    Ok(PgTarget {
        user,
        host,
        port: port.unwrap_or(5432),
        dbname,
        application_name,
        connect_timeout,
        password_in_url: password,
    })
}

fn host_from(text: String) -> PgHost {
    if text.starts_with('/') {
        PgHost::Socket(PathBuf::from(text))
    } else {
        PgHost::Tcp(text)
    }
}

fn split_host_port(hostport: &str) -> Result<(&str, Option<&str>)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| invalid("unclosed [ in host"))?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(invalid("junk after ]")),
            },
        };
    }
    Ok(match hostport.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (hostport, None),
    })
}

fn parse_port(text: &str) -> Result<u16> {
    match text.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(invalid(format!("port {text:?} is not 1-65535"))),
    }
}

fn percent_decode(text: &str, what: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(format!("bad percent-encoding in {what}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid(format!("{what} is not UTF-8")))
}

/// Encodes everything but unreserved characters (RFC 3986), and keeps `/` where asked.
fn percent_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl fmt::Display for MetadataUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            MetadataUrl::Postgres(t) => {
                f.write_str("postgresql://")?;
                if let Some(user) = &t.user {
                    f.write_str(&percent_encode(user, false))?;
                    if t.password_in_url.is_some() {
                        f.write_str(":***")?;
                    }
                    f.write_str("@")?;
                }
                let mut params = Vec::new();
                match &t.host {
                    PgHost::Tcp(h) if h.contains(':') => write!(f, "[{h}]:{}", t.port)?,
                    PgHost::Tcp(h) => write!(f, "{}:{}", percent_encode(h, false), t.port)?,
                    PgHost::Socket(dir) => {
                        params.push(format!(
                            "host={}",
                            percent_encode(&dir.to_string_lossy(), true)
                        ));
                        params.push(format!("port={}", t.port));
                    }
                }
                write!(f, "/{}", percent_encode(&t.dbname, false))?;
                if let Some(name) = &t.application_name {
                    params.push(format!("application_name={}", percent_encode(name, false)));
                }
                if let Some(timeout) = t.connect_timeout {
                    params.push(format!("connect_timeout={}", timeout.as_secs()));
                }
                if !params.is_empty() {
                    write!(f, "?{}", params.join("&"))?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for MetadataUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MetadataUrl({self})")
    }
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgTarget({})", MetadataUrl::Postgres(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, display: &str) {
        let url = MetadataUrl::parse(input).unwrap();
        assert_eq!(url.to_string(), display);
        let again = MetadataUrl::parse(display).unwrap();
        assert_eq!(again, url.without_password(), "display parses back");
    }

    #[test]
    fn sqlite_forms() {
        check(
            "sqlite:/var/lib/shuyu/meta.db",
            "sqlite:/var/lib/shuyu/meta.db",
        );
        check("sqlite:///abs/meta.db", "sqlite:/abs/meta.db");
        check("sqlite:rel/meta.db", "sqlite:rel/meta.db");
        check("data/meta.db", "sqlite:data/meta.db");
        check("/plain/meta.db", "sqlite:/plain/meta.db");
    }

    #[test]
    fn postgres_forms() {
        check(
            "postgresql://shuyu@db.internal:6432/meta",
            "postgresql://shuyu@db.internal:6432/meta",
        );
        check(
            "postgres://shuyu@db.internal/meta",
            "postgresql://shuyu@db.internal:5432/meta",
        );
        check(
            "postgresql://shuyu@[::1]:5433/meta?application_name=shuyu%20a",
            "postgresql://shuyu@[::1]:5433/meta?application_name=shuyu%20a",
        );
        check(
            "postgresql://shuyu@/meta?host=/run/postgresql&port=5433",
            "postgresql://shuyu@/meta?host=/run/postgresql&port=5433",
        );
        check(
            "postgresql://shuyu@%2Frun%2Fpostgresql/meta",
            "postgresql://shuyu@/meta?host=/run/postgresql&port=5432",
        );
        check(
            "postgresql://h:1/m?user=u%40x&sslmode=disable&connect_timeout=5",
            "postgresql://u%40x@h:1/m?connect_timeout=5",
        );
        let MetadataUrl::Postgres(t) =
            MetadataUrl::parse("postgresql://a@/d?host=/tmp/s%20x").unwrap()
        else {
            panic!("not postgres")
        };
        assert_eq!(t.host, PgHost::Socket(PathBuf::from("/tmp/s x")));
        assert_eq!(t.user.as_deref(), Some("a"));
    }

    #[test]
    fn refused() {
        for bad in [
            "",
            "mysql://x/y",
            "sqlite:",
            "postgresql://u@h:0/d",
            "postgresql://u@h:99999/d",
            "postgresql://u@h/",
            "postgresql://u@/d",
            "postgresql://u@h/d?sslmode=require",
            "postgresql://u@h/d?nonsense=1",
            "postgresql://u@h/d?password=canary-pw",
            "postgresql://u@[::1/d",
            "postgresql://u@h/d%zz",
        ] {
            let err = MetadataUrl::parse(bad).expect_err(bad);
            assert!(matches!(err, Error::InvalidUrl(_)), "{bad}: {err}");
            assert!(!err.to_string().contains("canary-pw"), "{err}");
        }
    }

    #[test]
    fn password_is_never_shown() {
        let url = MetadataUrl::parse("postgresql://shuyu:canary%2Dpw@db:5432/meta").unwrap();
        assert!(url.has_password());
        let MetadataUrl::Postgres(t) = &url else {
            panic!("not postgres")
        };
        assert_eq!(t.url_password(), Some("canary-pw"));
        for shown in [url.to_string(), format!("{url:?}"), format!("{t:?}")] {
            assert!(!shown.contains("canary"), "{shown}");
            assert!(shown.contains(":***@"), "{shown}");
        }
        assert!(!url.without_password().has_password());
        let err = MetadataUrl::parse("postgresql://shuyu:canary%zz@db/meta").unwrap_err();
        assert!(!err.to_string().contains("canary"), "{err}");
    }

    #[test]
    fn password_sources() {
        assert_eq!(PasswordSource::None.read().unwrap(), None);
        let err = PasswordSource::EnvVar("SHUYU_META_TEST_SURELY_UNSET_7f3a".to_owned())
            .read()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("SHUYU_META_TEST_SURELY_UNSET_7f3a")
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "throwaway-test-pw\nsecond line\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = PasswordSource::File(path.clone()).read().unwrap_err();
            assert!(err.to_string().contains("0600"), "{err}");
            assert!(!err.to_string().contains("throwaway"), "{err}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(
            PasswordSource::File(path).read().unwrap().as_deref(),
            Some("throwaway-test-pw")
        );
    }
}
