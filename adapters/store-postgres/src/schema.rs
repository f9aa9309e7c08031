//! The schema, versioned: each migration runs once per database, in order, at start.
//!
//! Migrations run in one transaction under a transaction-scoped advisory lock, so two machines
//! starting at once take turns (the second finds the work done) and a migration that fails
//! leaves the schema as it was. A database whose schema is newer than this llxprt knows is
//! refused rather than written with the wrong layout.

use tokio_postgres::Client;

/// The advisory lock key that serialises migrations (`llxprt` in ASCII).
const MIGRATION_LOCK: i64 = 0x6c6c_7870_7274;

/// The migrations, in order; the version of `MIGRATIONS[i]` is `i + 1`. Never edit one that has
/// shipped: add the next.
const MIGRATIONS: [&str; 2] = [
    // 1: tokens (sealed), the key's check value, bucket health and statistics.
    "CREATE TABLE llxprt_key_check (
         id smallint PRIMARY KEY CHECK (id = 1),
         check_value bytea NOT NULL,
         created_at timestamptz NOT NULL DEFAULT now()
     );
     CREATE TABLE llxprt_tokens (
         provider text NOT NULL,
         bucket text NOT NULL,
         version bigint NOT NULL,
         sealed bytea NOT NULL,
         updated_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (provider, bucket)
     );
     CREATE TABLE llxprt_health (
         provider text NOT NULL,
         bucket text NOT NULL,
         document jsonb NOT NULL,
         updated_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (provider, bucket)
     );
     CREATE TABLE llxprt_stats (
         provider text NOT NULL,
         bucket text NOT NULL,
         requests bigint NOT NULL DEFAULT 0,
         last_used bigint,
         rate_limits bigint NOT NULL DEFAULT 0,
         failovers bigint NOT NULL DEFAULT 0,
         PRIMARY KEY (provider, bucket)
     );",
    // 2: the latest limits each bucket's provider reported (`/stats quota`).
    "CREATE TABLE llxprt_limits (
         provider text NOT NULL,
         bucket text NOT NULL,
         seen_at bigint NOT NULL,
         document jsonb NOT NULL,
         PRIMARY KEY (provider, bucket)
     );",
];

/// The schema version this llxprt writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MigrationError {
    /// The database answered with an error.
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
    /// Another, newer llxprt migrated the database past what this one knows.
    #[error("its schema is version {found}, newer than this llxprt knows ({SCHEMA_VERSION}); upgrade llxprt")]
    Newer {
        /// The version found.
        found: i32,
    },
}

/// Applies every migration the database lacks; returns how many were applied.
pub(crate) async fn migrate(client: &mut Client) -> Result<usize, MigrationError> {
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS llxprt_schema (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let found: i32 = transaction
        .query_one("SELECT coalesce(max(version), 0) FROM llxprt_schema", &[])
        .await?
        .try_get(0)?;
    if found > SCHEMA_VERSION {
        return Err(MigrationError::Newer { found });
    }
    let mut applied = 0;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let version = index as i32 + 1;
        transaction.batch_execute(sql).await?;
        transaction
            .execute(
                "INSERT INTO llxprt_schema (version) VALUES ($1)",
                &[&version],
            )
            .await?;
        tracing::info!(version, "applied a team store migration");
        applied += 1;
    }
    transaction.commit().await?;
    Ok(applied)
}
