//! Where the team store is: `storage.url` (`postgres://USER@HOST:PORT/DB`) and its password,
//! from `PGPASSWORD` or a password file (`~/.pgpass`, or `PGPASSFILE`) as libpq reads them.
//!
//! The password is never part of anything shown: [`StoreAddress`] displays as
//! `postgres://USER@HOST:PORT/DB`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use llxprt_domain::Secret;
use tokio_postgres::config::Host;

/// PostgreSQL's port when the URL names none.
const DEFAULT_PORT: u16 = 5432;

/// Why `storage.url` cannot be used. The URL itself is never quoted: it may hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The text is not a PostgreSQL URL at all.
    #[error("storage.url is not a PostgreSQL URL (postgres://USER@HOST:PORT/DB)")]
    NotAUrl,
    /// A part the store needs is missing.
    #[error("storage.url names no {0}; it must be postgres://USER@HOST:PORT/DB")]
    Missing(&'static str),
}

/// A parsed `storage.url` with its password resolved.
#[derive(Clone)]
pub struct StoreAddress {
    user: String,
    host: String,
    port: u16,
    database: String,
    password: Option<Secret>,
}

impl StoreAddress {
    /// Reads `url`; the password is the URL's own if it has one, else `pgpassword`
    /// (`PGPASSWORD`), else the first matching line of the password file at `pgpass`.
    ///
    /// # Errors
    /// [`AddressError`] when `url` is not `postgres://USER@HOST[:PORT]/DB`.
    pub fn parse(
        url: &str,
        pgpassword: Option<&str>,
        pgpass: Option<&Path>,
    ) -> Result<Self, AddressError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(AddressError::NotAUrl);
        }
        let config = tokio_postgres::Config::from_str(url).map_err(|_| AddressError::NotAUrl)?;
        let user = config
            .get_user()
            .ok_or(AddressError::Missing("user"))?
            .to_owned();
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            _ => return Err(AddressError::Missing("host")),
        };
        let port = config.get_ports().first().copied().unwrap_or(DEFAULT_PORT);
        let database = config
            .get_dbname()
            .ok_or(AddressError::Missing("database"))?
            .to_owned();
        let password = config
            .get_password()
            .map(|p| Secret::new(String::from_utf8_lossy(p)))
            .or_else(|| pgpassword.filter(|p| !p.is_empty()).map(Secret::new))
            .or_else(|| {
                let text = pgpass.and_then(read_password_file)?;
                password_from_file(&text, &host, port, &database, &user)
            });
        Ok(Self {
            user,
            host,
            port,
            database,
            password,
        })
    }

    /// `HOST:PORT`, for the line that says the store cannot be reached.
    pub fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The driver's configuration: bounded connect time, keepalives, and `options` passed to
    /// the server (`-c statement_timeout=…`).
    pub(crate) fn config(
        &self,
        connect_timeout: std::time::Duration,
        options: &str,
    ) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .user(&self.user)
            .host(&self.host)
            .port(self.port)
            .dbname(&self.database)
            .application_name("llxprt")
            .connect_timeout(connect_timeout)
            .keepalives(true)
            .keepalives_idle(std::time::Duration::from_secs(30))
            .options(options);
        if let Some(password) = &self.password {
            config.password(password.expose());
        }
        config
    }
}

/// `postgres://USER@HOST:PORT/DB`, never the password.
impl fmt::Display for StoreAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "postgres://{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }
}

impl fmt::Debug for StoreAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreAddress({self})")
    }
}

/// The password file's text, unless it is missing or others may read it (libpq ignores such a
/// file too).
fn read_password_file(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "ignoring a password file that others can read");
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// The password of the first line `hostname:port:database:username:password` that matches
/// (`*` matches anything; `\:` and `\\` escape), as libpq reads `~/.pgpass`.
fn password_from_file(
    text: &str,
    host: &str,
    port: u16,
    database: &str,
    user: &str,
) -> Option<Secret> {
    let port = port.to_string();
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = split_fields(line);
            let [h, p, d, u, password] = fields.as_slice() else {
                return None;
            };
            let matches = |field: &str, value: &str| field == "*" || field == value;
            (matches(h, host) && matches(p, &port) && matches(d, database) && matches(u, user))
                .then(|| Secret::new(password.clone()))
        })
}

fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(field)) = (chars.next(), fields.last_mut()) {
                    field.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_user_host_port_and_database_but_never_the_password() {
        let address =
            StoreAddress::parse("postgres://team:hunter2@db.example:6543/llxprt", None, None)
                .unwrap();
        assert_eq!(
            address.to_string(),
            "postgres://team@db.example:6543/llxprt"
        );
        assert_eq!(address.host_port(), "db.example:6543");
        assert!(!format!("{address:?}").contains("hunter2"));
    }

    #[test]
    fn the_password_comes_from_pgpassword_then_the_password_file() {
        let url = "postgres://team@db:5432/llxprt";
        let from_env = StoreAddress::parse(url, Some("s3cret"), None).unwrap();
        assert_eq!(
            from_env.password.as_ref().map(Secret::expose),
            Some("s3cret")
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:5432:*:team:nope\ndb:*:llxprt:team:pa\\:ss\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let from_file = StoreAddress::parse(url, None, Some(&file)).unwrap();
        assert_eq!(
            from_file.password.as_ref().map(Secret::expose),
            Some("pa:ss")
        );

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let ignored = StoreAddress::parse(url, None, Some(&file)).unwrap();
        assert!(
            ignored.password.is_none(),
            "a file others can read is ignored"
        );
    }

    #[test]
    fn a_url_without_user_host_or_database_is_refused_without_quoting_it() {
        for (url, missing) in [
            ("postgres://db:5432/llxprt", "user"),
            ("postgres://team@db:5432", "database"),
        ] {
            let err = StoreAddress::parse(url, None, None).unwrap_err();
            assert_eq!(err, AddressError::Missing(missing), "{url}");
        }
        let err = StoreAddress::parse("mysql://u:pw@h/d", None, None).unwrap_err();
        assert!(!err.to_string().contains("pw"));
    }
}
