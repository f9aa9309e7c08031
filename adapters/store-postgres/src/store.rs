//! [`PostgresStore`]: the token, health and statistics ports over one PostgreSQL database.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use llxprt_application::ports::{
    BucketLock, HealthStore, PersistenceError, StatsStore, StoreError, TokenStore,
};
use llxprt_domain::failover::BucketHealth;
use llxprt_domain::stats::{BucketStats, StatsDelta, StatsTotals};
use llxprt_domain::{BucketId, BucketName, OAuthProvider, ReportedLimits, Token, UnixSeconds};
use llxprt_store_file::json::{token_from_json, token_to_json};
use llxprt_store_file::{
    health_entry_from_json, health_entry_to_json, limits_entry_from_json, limits_entry_to_json,
};
use sha2::{Digest as _, Sha256};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::address::StoreAddress;
use crate::schema::{migrate, MigrationError};
use crate::sealer::{SealError, TokenSealer};

/// How the store connects and how long anything may wait.
#[derive(Clone)]
pub struct PostgresOptions {
    /// Where the database is, with its password.
    pub address: StoreAddress,
    /// Seals tokens with the team key.
    pub sealer: Arc<dyn TokenSealer>,
    /// The longest a connection may take to open.
    pub connect_timeout: Duration,
    /// The longest any statement may run (`statement_timeout`), and the longest a request
    /// waits for a free pooled connection.
    pub statement_timeout: Duration,
    /// Pooled connections per process (a held bucket lock has its own, on top).
    pub max_connections: usize,
}

impl PostgresOptions {
    /// The defaults: 5 s to connect, 10 s per statement, 4 pooled connections.
    pub fn new(address: StoreAddress, sealer: Arc<dyn TokenSealer>) -> Self {
        Self {
            address,
            sealer,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            max_connections: 4,
        }
    }
}

/// Why the team store cannot be used: one line for the user, never the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Nothing answered at the address (down, wrong host or port, a firewall, a timeout).
    #[error("cannot reach the team store at {host_port} ({message}); check storage.url and that PostgreSQL is running there")]
    Unreachable {
        /// `HOST:PORT`.
        host_port: String,
        /// What the connection attempt met.
        message: String,
    },
    /// The server answered and said no (a wrong password, no such database or user).
    #[error("the team store {store} refused the connection: {message}")]
    Refused {
        /// `postgres://USER@HOST:PORT/DB`.
        store: String,
        /// What the server said.
        message: String,
    },
    /// The key given is not the one the database's tokens are sealed with.
    #[error("this key does not match the team store's ({store}); copy the team's key file to this machine (storage.key_file)")]
    WrongKey {
        /// `postgres://USER@HOST:PORT/DB`.
        store: String,
    },
    /// The schema could not be brought up to date.
    #[error("the team store {store} cannot be used: {message}")]
    Schema {
        /// `postgres://USER@HOST:PORT/DB`.
        store: String,
        /// What went wrong.
        message: String,
    },
}

/// Tokens, bucket health and statistics in one PostgreSQL database shared by every machine
/// that points at it.
///
/// - Tokens are sealed with the team key (associated data: their bucket) and versioned: a save
///   made while this store holds the bucket's lock only lands if the row is still at the
///   version read under that lock, so a holder whose lock was lost never overwrites a newer
///   token.
/// - [`TokenStore::lock`] takes a session advisory lock on a connection of its own; the lock
///   ends with that connection, so a killed or cut-off machine never leaves a stale lock.
/// - Every statement has a `statement_timeout`; nothing waits forever.
pub struct PostgresStore {
    pool: Pool,
    address: StoreAddress,
    sealer: Arc<dyn TokenSealer>,
    lock_config: tokio_postgres::Config,
    connect_timeout: Duration,
    statement_timeout: Duration,
    /// The buckets this store holds the lock of, with the token version read under it.
    held: Arc<Mutex<HashMap<BucketId, i64>>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresStore({})", self.address)
    }
}

impl PostgresStore {
    /// Connects once to check the database (reachable, schema migrated, the key its own), then
    /// makes the pool the ports use. Blocks the calling thread; runs its own small runtime on a
    /// thread of its own, so it may be called from inside or outside a tokio runtime.
    ///
    /// # Errors
    /// [`OpenError`], one line naming the host and port or the store, never the password.
    pub fn open(options: PostgresOptions) -> Result<Self, OpenError> {
        let checked = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| OpenError::Schema {
                            store: options.address.to_string(),
                            message: e.to_string(),
                        })?;
                    runtime.block_on(prepare(&options))
                })
                .join()
        });
        match checked {
            Ok(result) => result?,
            Err(_) => {
                return Err(OpenError::Schema {
                    store: options.address.to_string(),
                    message: "the check of the database stopped unexpectedly".to_owned(),
                })
            }
        }
        Self::with_pool(options)
    }

    /// [`PostgresStore::open`] for callers already in async code.
    ///
    /// # Errors
    /// As [`PostgresStore::open`].
    pub async fn connect(options: PostgresOptions) -> Result<Self, OpenError> {
        prepare(&options).await?;
        Self::with_pool(options)
    }

    fn with_pool(options: PostgresOptions) -> Result<Self, OpenError> {
        let PostgresOptions {
            address,
            sealer,
            connect_timeout,
            statement_timeout,
            max_connections,
        } = options;
        let config = address.config(connect_timeout, &session_options(statement_timeout));
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(statement_timeout))
            .create_timeout(Some(connect_timeout))
            .recycle_timeout(Some(connect_timeout))
            .build()
            .map_err(|e| OpenError::Schema {
                store: address.to_string(),
                message: e.to_string(),
            })?;
        // The lock's connection sets its own timeouts, from the caller's wait.
        let lock_config = address.config(connect_timeout, "");
        Ok(Self {
            pool,
            address,
            sealer,
            lock_config,
            connect_timeout,
            statement_timeout,
            held: Arc::default(),
        })
    }

    /// `postgres://USER@HOST:PORT/DB`, for `/storage`.
    pub fn address(&self) -> &StoreAddress {
        &self.address
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, Failure> {
        self.pool.get().await.map_err(Failure::Pool)
    }

    fn held_version(&self, bucket: &BucketId) -> Option<i64> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(bucket)
            .copied()
    }

    fn store_error(&self, failure: Failure) -> StoreError {
        if failure.is_transient() {
            return StoreError::Unavailable {
                store: format!("the team store {}", self.address),
                reason: failure.to_string(),
                hint: format!(
                    "check that PostgreSQL is running at {}; nothing was changed, and the next request tries again",
                    self.address.host_port()
                ),
            };
        }
        StoreError::Io {
            path: format!("the team store {}", self.address),
            message: failure.to_string(),
        }
    }

    fn persistence_error(&self, what: &str, failure: Failure) -> PersistenceError {
        let place = format!("the {what} in the team store {}", self.address);
        let message = failure.to_string();
        if failure.is_transient() {
            PersistenceError::Unavailable { place, message }
        } else {
            PersistenceError::Refused { place, message }
        }
    }

    /// Who holds an advisory lock, as far as the server tells.
    async fn holder(&self, client: &Client, key: i64) -> String {
        let row = client
            .query_opt(
                "SELECT a.application_name, coalesce(host(a.client_addr), 'a local socket')
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.locktype = 'advisory' AND l.granted
                   AND l.classid = (($1::bigint >> 32) & 4294967295)::oid
                   AND l.objid = ($1::bigint & 4294967295)::oid AND l.objsubid = 1",
                &[&key],
            )
            .await;
        match row {
            Ok(Some(row)) => {
                let name: Option<String> = row.try_get(0).ok().flatten();
                let from: Option<String> = row.try_get(1).ok().flatten();
                format!(
                    "held by {} from {}",
                    name.unwrap_or_else(|| "another client".to_owned()),
                    from.unwrap_or_else(|| "an unknown address".to_owned())
                )
            }
            _ => "held by another machine".to_owned(),
        }
    }
}

/// The server settings of every pooled connection: no statement, lock wait or idle
/// transaction lasts longer than the store allows.
fn session_options(statement_timeout: Duration) -> String {
    let ms = statement_timeout.as_millis().max(1);
    format!(
        "-c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout={}",
        ms.saturating_mul(6)
    )
}

/// Connects once: migrates the schema and checks (or, on a new database, records) the key.
async fn prepare(options: &PostgresOptions) -> Result<(), OpenError> {
    let address = &options.address;
    let store = address.to_string();
    let unreachable = |message: String| OpenError::Unreachable {
        host_port: address.host_port(),
        message,
    };
    let config = address.config(
        options.connect_timeout,
        &session_options(options.statement_timeout),
    );
    let (mut client, connection) =
        tokio::time::timeout(options.connect_timeout, config.connect(NoTls))
            .await
            .map_err(|_| unreachable(format!("no answer in {:?}", options.connect_timeout)))?
            .map_err(|e| match e.as_db_error() {
                Some(db) => OpenError::Refused {
                    store: store.clone(),
                    message: db.message().to_owned(),
                },
                None => unreachable(short_cause(&e)),
            })?;
    let connection = tokio::spawn(connection);
    let schema = |e: &dyn std::fmt::Display| OpenError::Schema {
        store: store.clone(),
        message: e.to_string(),
    };
    let checked = async {
        migrate(&mut client).await.map_err(|e| match e {
            MigrationError::Database(e) => schema(&Failure::Database(e)),
            newer @ MigrationError::Newer { .. } => schema(&newer),
        })?;
        let mine = options.sealer.check_value();
        // Two statements, not one: a machine starting at the same moment may insert first, and
        // a single statement's snapshot would see neither its row nor ours. The insert waits for
        // the other's to commit; the select that follows sees whichever row won.
        client
            .execute(
                "INSERT INTO llxprt_key_check (id, check_value) VALUES (1, $1)
                 ON CONFLICT (id) DO NOTHING",
                &[&mine],
            )
            .await
            .map_err(|e| schema(&Failure::Database(e)))?;
        let row = client
            .query_one("SELECT check_value FROM llxprt_key_check WHERE id = 1", &[])
            .await
            .map_err(|e| schema(&Failure::Database(e)))?;
        let theirs: Vec<u8> = row.try_get(0).map_err(|e| schema(&e))?;
        if theirs != mine {
            return Err(OpenError::WrongKey {
                store: store.clone(),
            });
        }
        Ok(())
    };
    let result = tokio::time::timeout(options.statement_timeout, checked)
        .await
        .unwrap_or_else(|_| {
            Err(unreachable(format!(
                "no answer in {:?}",
                options.statement_timeout
            )))
        });
    drop(client);
    connection.abort();
    result
}

/// The innermost cause of a driver error (`Connection refused (os error 111)`), which says more
/// than its outer `error connecting to server`.
fn short_cause(error: &tokio_postgres::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if text.is_empty() {
        error.to_string()
    } else {
        text
    }
}

/// What went wrong talking to the database, said without any value sent or stored.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{}", describe_pool(.0))]
    Pool(PoolError),
    #[error("{}", describe(.0))]
    Database(#[from] tokio_postgres::Error),
    #[error("the database did not answer in time")]
    Timeout,
    #[error("{0}")]
    Other(String),
}

impl Failure {
    /// Whether trying again later may help (the database away, a timeout, a restart).
    fn is_transient(&self) -> bool {
        match self {
            // A new connection refused: only a wrong password, user or database is for good.
            Failure::Pool(PoolError::Backend(e)) => !e
                .code()
                .is_some_and(|code| matches!(&code.code()[..2], "28" | "3D")),
            Failure::Database(e) => is_transient(e),
            Failure::Pool(_) | Failure::Timeout => true,
            Failure::Other(_) => false,
        }
    }
}

fn is_transient(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        None => true,
        Some(code) => {
            let class = &code.code()[..2];
            matches!(class, "08" | "40" | "53" | "57" | "58")
        }
    }
}

fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_owned(),
        None if error.is_closed() => "the connection to the database was lost".to_owned(),
        None => short_cause(error),
    }
}

fn describe_pool(error: &PoolError) -> String {
    match error {
        PoolError::Backend(e) => describe(e),
        PoolError::Timeout(_) => "the database did not answer in time".to_owned(),
        other => other.to_string(),
    }
}

/// The advisory lock key of a bucket: 64 bits of a hash of its name.
fn lock_key(bucket: &BucketId) -> i64 {
    let digest = Sha256::digest(format!("llxprt bucket lock\0{bucket}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// A count as PostgreSQL's `bigint`, saturating.
fn to_bigint(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The lock of one bucket: a connection holding a session advisory lock. Dropping it closes the
/// connection, which ends the lock on the server.
struct PostgresBucketLock {
    _client: Client,
    connection: tokio::task::JoinHandle<()>,
    held: Arc<Mutex<HashMap<BucketId, i64>>>,
    bucket: BucketId,
}

impl BucketLock for PostgresBucketLock {}

impl Drop for PostgresBucketLock {
    fn drop(&mut self) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.bucket);
        // Dropping the client ends the connection's task (it sends Terminate); aborting makes
        // sure the socket closes even if the task is stuck writing.
        self.connection.abort();
    }
}

#[async_trait]
impl TokenStore for PostgresStore {
    async fn load(&self, bucket: &BucketId) -> Result<Option<Token>, StoreError> {
        let client = self.client().await.map_err(|e| self.store_error(e))?;
        let statement = client
            .prepare_cached("SELECT sealed FROM llxprt_tokens WHERE provider = $1 AND bucket = $2")
            .await
            .map_err(|e| self.store_error(e.into()))?;
        let row = client
            .query_opt(
                &statement,
                &[&bucket.provider.as_str(), &bucket.bucket.as_str()],
            )
            .await
            .map_err(|e| self.store_error(e.into()))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: format!("in the team store {}", self.address),
            reason,
            provider: bucket.provider,
            bucket: bucket.bucket.clone(),
        };
        let sealed: Vec<u8> = row.try_get(0).map_err(|e| corrupt(e.to_string()))?;
        let plain = self.sealer.open(bucket, &sealed).map_err(|e| match e {
            SealError::WrongKey => StoreError::WrongKey {
                path: format!("of {bucket} in the team store {}", self.address),
                provider: bucket.provider,
                bucket: bucket.bucket.clone(),
            },
            SealError::Failed(reason) => corrupt(reason),
        })?;
        let text = String::from_utf8(plain).map_err(|_| corrupt("it is not UTF-8".to_owned()))?;
        token_from_json(&text)
            .map(Some)
            .map_err(|e| corrupt(e.to_string()))
    }

    async fn save(&self, bucket: &BucketId, token: &Token) -> Result<(), StoreError> {
        let sealed = self
            .sealer
            .seal(bucket, token_to_json(token).as_bytes())
            .map_err(|e| self.store_error(Failure::Other(e.to_string())))?;
        let (provider, name) = (bucket.provider.as_str(), bucket.bucket.as_str());
        let client = self.client().await.map_err(|e| self.store_error(e))?;
        let Some(seen) = self.held_version(bucket) else {
            // Not under the lock (a login): the newest save wins.
            client
                .execute(
                    "INSERT INTO llxprt_tokens (provider, bucket, version, sealed)
                     VALUES ($1, $2, 1, $3)
                     ON CONFLICT (provider, bucket) DO UPDATE
                     SET sealed = excluded.sealed, version = llxprt_tokens.version + 1,
                         updated_at = now()",
                    &[&provider, &name, &sealed],
                )
                .await
                .map_err(|e| self.store_error(e.into()))?;
            return Ok(());
        };
        // Under the lock: only over the version read when the lock was taken.
        let row = if seen == 0 {
            client
                .query_opt(
                    "INSERT INTO llxprt_tokens (provider, bucket, version, sealed)
                     VALUES ($1, $2, 1, $3) ON CONFLICT (provider, bucket) DO NOTHING
                     RETURNING version",
                    &[&provider, &name, &sealed],
                )
                .await
        } else {
            client
                .query_opt(
                    "UPDATE llxprt_tokens SET sealed = $3, version = version + 1,
                         updated_at = now()
                     WHERE provider = $1 AND bucket = $2 AND version = $4
                     RETURNING version",
                    &[&provider, &name, &sealed, &seen],
                )
                .await
        }
        .map_err(|e| self.store_error(e.into()))?;
        let Some(row) = row else {
            return Err(self.store_error(Failure::Other(format!(
                "another machine saved a newer token for {bucket} meanwhile; it is kept"
            ))));
        };
        let version: i64 = row
            .try_get(0)
            .map_err(|e| self.store_error(Failure::Database(e)))?;
        if let Some(held) = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(bucket)
        {
            *held = version;
        }
        Ok(())
    }

    async fn delete(&self, bucket: &BucketId) -> Result<bool, StoreError> {
        let client = self.client().await.map_err(|e| self.store_error(e))?;
        let deleted = client
            .execute(
                "DELETE FROM llxprt_tokens WHERE provider = $1 AND bucket = $2",
                &[&bucket.provider.as_str(), &bucket.bucket.as_str()],
            )
            .await
            .map_err(|e| self.store_error(e.into()))?;
        Ok(deleted > 0)
    }

    async fn list(&self, provider: OAuthProvider) -> Result<Vec<BucketName>, StoreError> {
        let client = self.client().await.map_err(|e| self.store_error(e))?;
        let rows = client
            .query(
                "SELECT bucket FROM llxprt_tokens WHERE provider = $1",
                &[&provider.as_str()],
            )
            .await
            .map_err(|e| self.store_error(e.into()))?;
        let mut names: Vec<BucketName> = rows
            .iter()
            .filter_map(|row| {
                let text: String = row.try_get(0).ok()?;
                let name = BucketName::parse(&text).ok();
                if name.is_none() {
                    tracing::warn!(provider = %provider, "skipping a stored bucket with an invalid name");
                }
                name
            })
            .collect();
        // Sorted as Rust sorts, whatever the database's collation.
        names.sort();
        Ok(names)
    }

    async fn lock(
        &self,
        bucket: &BucketId,
        timeout: Duration,
    ) -> Result<Box<dyn BucketLock>, StoreError> {
        let started = tokio::time::Instant::now();
        let (client, connection) =
            tokio::time::timeout(self.connect_timeout, self.lock_config.connect(NoTls))
                .await
                .map_err(|_| self.store_error(Failure::Timeout))?
                .map_err(|e| self.store_error(e.into()))?;
        let connection = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "the bucket lock's connection ended");
            }
        });
        let key = lock_key(bucket);
        let wait = timeout.saturating_sub(started.elapsed()).as_millis().max(1);
        let limit = wait.saturating_add(self.statement_timeout.as_millis());
        client
            .batch_execute(&format!(
                "SET lock_timeout = {wait}; SET statement_timeout = {limit}"
            ))
            .await
            .map_err(|e| self.store_error(e.into()))?;
        match client.execute("SELECT pg_advisory_lock($1)", &[&key]).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                let holder = self.holder(&client, key).await;
                connection.abort();
                return Err(StoreError::LockTimeout {
                    bucket: bucket.clone(),
                    waited: started.elapsed(),
                    holder,
                });
            }
            Err(e) => {
                connection.abort();
                return Err(self.store_error(e.into()));
            }
        }
        let version: i64 = client
            .query_opt(
                "SELECT version FROM llxprt_tokens WHERE provider = $1 AND bucket = $2",
                &[&bucket.provider.as_str(), &bucket.bucket.as_str()],
            )
            .await
            .map_err(|e| self.store_error(e.into()))?
            .map(|row| row.try_get(0))
            .transpose()
            .map_err(|e| self.store_error(e.into()))?
            .unwrap_or(0);
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(bucket.clone(), version);
        Ok(Box::new(PostgresBucketLock {
            _client: client,
            connection,
            held: self.held.clone(),
            bucket: bucket.clone(),
        }))
    }
}

#[async_trait]
impl HealthStore for PostgresStore {
    async fn load(&self) -> Result<HashMap<BucketId, BucketHealth>, PersistenceError> {
        let failed = |e: Failure| self.persistence_error("bucket health", e);
        let client = self.client().await.map_err(failed)?;
        let rows = client
            .query(
                "SELECT provider, bucket, document::text FROM llxprt_health",
                &[],
            )
            .await
            .map_err(|e| failed(e.into()))?;
        let mut health = HashMap::new();
        for row in rows {
            let read = || -> Option<(BucketId, BucketHealth)> {
                let provider: String = row.try_get(0).ok()?;
                let bucket: String = row.try_get(1).ok()?;
                let document: String = row.try_get(2).ok()?;
                let bucket =
                    BucketId::new(provider.parse().ok()?, BucketName::parse(&bucket).ok()?);
                Some((bucket, health_entry_from_json(&document).ok()?))
            };
            // Health is a hint: a row this llxprt cannot read is skipped, not fatal.
            match read() {
                Some((bucket, state)) => {
                    health.insert(bucket, state);
                }
                None => tracing::warn!("skipping an unreadable bucket health row"),
            }
        }
        Ok(health)
    }

    async fn record(&self, changes: &[(BucketId, BucketHealth)]) -> Result<(), PersistenceError> {
        let failed = |e: Failure| self.persistence_error("bucket health", e);
        let mut client = self.client().await.map_err(failed)?;
        let transaction = client.transaction().await.map_err(|e| failed(e.into()))?;
        // One order for every writer, so two machines recording the same buckets never
        // deadlock.
        let ordered: BTreeMap<&BucketId, &BucketHealth> =
            changes.iter().map(|(b, h)| (b, h)).collect();
        for (bucket, health) in ordered {
            let (provider, name) = (bucket.provider.as_str(), bucket.bucket.as_str());
            match health_entry_to_json(*health) {
                Some(document) => {
                    transaction
                        .execute(
                            "INSERT INTO llxprt_health (provider, bucket, document)
                         VALUES ($1, $2, $3::text::jsonb)
                         ON CONFLICT (provider, bucket) DO UPDATE
                         SET document = excluded.document, updated_at = now()",
                            &[&provider, &name, &document],
                        )
                        .await
                }
                None => {
                    transaction
                        .execute(
                            "DELETE FROM llxprt_health WHERE provider = $1 AND bucket = $2",
                            &[&provider, &name],
                        )
                        .await
                }
            }
            .map_err(|e| failed(e.into()))?;
        }
        transaction.commit().await.map_err(|e| failed(e.into()))
    }

    async fn load_limits(&self) -> Result<HashMap<BucketId, ReportedLimits>, PersistenceError> {
        let failed = |e: Failure| self.persistence_error("bucket limits", e);
        let client = self.client().await.map_err(failed)?;
        let rows = client
            .query(
                "SELECT provider, bucket, document::text FROM llxprt_limits",
                &[],
            )
            .await
            .map_err(|e| failed(e.into()))?;
        let mut limits = HashMap::new();
        for row in rows {
            let read = || -> Option<(BucketId, ReportedLimits)> {
                let provider: String = row.try_get(0).ok()?;
                let bucket: String = row.try_get(1).ok()?;
                let document: String = row.try_get(2).ok()?;
                let bucket =
                    BucketId::new(provider.parse().ok()?, BucketName::parse(&bucket).ok()?);
                Some((bucket, limits_entry_from_json(&document).ok()?))
            };
            // Figures are a hint, like health: a row this llxprt cannot read is skipped.
            match read() {
                Some((bucket, reported)) => {
                    limits.insert(bucket, reported);
                }
                None => tracing::warn!("skipping an unreadable bucket limits row"),
            }
        }
        Ok(limits)
    }

    async fn record_limits(
        &self,
        latest: &[(BucketId, Option<ReportedLimits>)],
    ) -> Result<(), PersistenceError> {
        let failed = |e: Failure| self.persistence_error("bucket limits", e);
        let mut client = self.client().await.map_err(failed)?;
        let transaction = client.transaction().await.map_err(|e| failed(e.into()))?;
        // One order for every writer, as for the health.
        let ordered: BTreeMap<&BucketId, &Option<ReportedLimits>> =
            latest.iter().map(|(b, l)| (b, l)).collect();
        for (bucket, reported) in ordered {
            let (provider, name) = (bucket.provider.as_str(), bucket.bucket.as_str());
            match reported {
                // Figures seen before the ones kept (another machine's later answer landed
                // first) leave the row as it is.
                Some(reported) => {
                    let seen_at = reported.seen_at.0;
                    let Some(document) = limits_entry_to_json(reported) else {
                        continue;
                    };
                    transaction
                        .execute(
                            "INSERT INTO llxprt_limits (provider, bucket, seen_at, document)
                         VALUES ($1, $2, $3, $4::text::jsonb)
                         ON CONFLICT (provider, bucket) DO UPDATE
                         SET seen_at = excluded.seen_at, document = excluded.document
                         WHERE llxprt_limits.seen_at <= excluded.seen_at",
                            &[&provider, &name, &seen_at, &document],
                        )
                        .await
                }
                None => {
                    transaction
                        .execute(
                            "DELETE FROM llxprt_limits WHERE provider = $1 AND bucket = $2",
                            &[&provider, &name],
                        )
                        .await
                }
            }
            .map_err(|e| failed(e.into()))?;
        }
        transaction.commit().await.map_err(|e| failed(e.into()))
    }
}

#[async_trait]
impl StatsStore for PostgresStore {
    async fn load(&self) -> Result<StatsTotals, PersistenceError> {
        let failed = |e: Failure| self.persistence_error("statistics", e);
        let client = self.client().await.map_err(failed)?;
        read_totals(&client).await.map_err(failed)
    }

    async fn add(&self, delta: &StatsDelta) -> Result<StatsTotals, PersistenceError> {
        let failed = |e: Failure| self.persistence_error("statistics", e);
        let mut changes = StatsTotals::new();
        changes.apply(delta);
        let mut client = self.client().await.map_err(failed)?;
        let transaction = client.transaction().await.map_err(|e| failed(e.into()))?;
        // `iter` is sorted: every writer takes the rows' locks in the same order.
        for (bucket, stats) in changes.iter() {
            transaction
                .execute(
                    "INSERT INTO llxprt_stats
                         (provider, bucket, requests, last_used, rate_limits, failovers)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (provider, bucket) DO UPDATE SET
                         requests = least(llxprt_stats.requests::numeric + excluded.requests,
                                          9223372036854775807)::bigint,
                         last_used = greatest(llxprt_stats.last_used, excluded.last_used),
                         rate_limits = least(llxprt_stats.rate_limits::numeric
                                             + excluded.rate_limits, 9223372036854775807)::bigint,
                         failovers = least(llxprt_stats.failovers::numeric + excluded.failovers,
                                           9223372036854775807)::bigint",
                    &[
                        &bucket.provider.as_str(),
                        &bucket.bucket.as_str(),
                        &to_bigint(stats.requests),
                        &stats.last_used.map(|t| t.0),
                        &to_bigint(stats.rate_limits),
                        &to_bigint(stats.failovers),
                    ],
                )
                .await
                .map_err(|e| failed(e.into()))?;
        }
        let totals = read_totals(&transaction).await.map_err(failed)?;
        transaction.commit().await.map_err(|e| failed(e.into()))?;
        Ok(totals)
    }
}

async fn read_totals(
    client: &impl deadpool_postgres::GenericClient,
) -> Result<StatsTotals, Failure> {
    let rows = client
        .query(
            "SELECT provider, bucket, requests, last_used, rate_limits, failovers
             FROM llxprt_stats",
            &[],
        )
        .await?;
    let mut totals = StatsTotals::new();
    for row in rows {
        let provider: String = row.try_get(0)?;
        let bucket: String = row.try_get(1)?;
        let (Ok(provider), Ok(bucket)) = (provider.parse(), BucketName::parse(&bucket)) else {
            tracing::warn!("skipping an unreadable statistics row");
            continue;
        };
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        totals.insert(
            BucketId::new(provider, bucket),
            BucketStats {
                requests: count(row.try_get(2)?),
                last_used: row.try_get::<_, Option<i64>>(3)?.map(UnixSeconds),
                rate_limits: count(row.try_get(4)?),
                failovers: count(row.try_get(5)?),
            },
        );
    }
    Ok(totals)
}
