//! Where the store's writes go, and how they commit.
//!
//! On PostgreSQL (and a SQLite database in memory) a write takes a connection from the pool
//! and commits on its own.
//!
//! On a SQLite file every write goes through one connection, [`Sole`], taken in turn under a
//! lock. SQLite has one writer at a time: with several connections, writers that find the
//! database locked sleep in the busy handler; through a pool, each write also pays the pool's
//! test of the connection on its return, while the next writer waits. The writer's
//! transactions **commit in groups**: a writer that finishes while others wait for the
//! connection leaves its work uncommitted in the open transaction and hands the connection
//! to the next, which joins behind a savepoint; the last of the group commits for all, and
//! only then does any of them return. Every commit is made durable on the disk
//! (`synchronous = FULL`) before it returns: an intent is on the disk before its remote call
//! goes out, however many commits share the fsync.
//!
//! A member that fails or is dropped before committing is undone back to its savepoint: the
//! others' work stays. If the group's commit fails, every member gets the error.
//!
//! The sole connection is SQLite's own ([`crate::native`]), not sqlx's: a write transaction's
//! statements run in the task that holds the writer, through [`WriteConn`]'s `Executor`, so
//! the store's sqlx queries are the same on every backend.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use sqlx::any::{AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Describe, Either, Execute, Executor};
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};

use crate::native::Native;

/// Members of one group commit at most: past it, the writer commits even with others waiting.
const GROUP_MEMBERS: usize = 32;

/// How long a group stays open at most before a writer commits it, so that a member's wait
/// for its own commit stays short behind long transactions.
const GROUP_AGE: Duration = Duration::from_millis(4);

/// The savepoint a member joins behind. One name serves every member: a member releases
/// or undoes its savepoint before the next one joins, so at most one is open. A fixed text
/// also keeps the connection's cache of prepared statements for the statements that recur
/// (a name per member would put a new entry in it for each one, pushing the others out).
const MEMBER_SAVEPOINT: &str = "SAVEPOINT member";
const MEMBER_RELEASE: &str = "RELEASE member";
const MEMBER_UNDO: &str = "ROLLBACK TO member; RELEASE member";

/// How long a member that handed its work on waits before it looks at the connection itself:
/// the writer it handed to may have given up before taking the connection.
const GROUP_STALL: Duration = Duration::from_millis(2);

/// How a group's commit ended, for every member.
type Outcome = Result<(), Arc<sqlx::Error>>;

#[derive(Clone)]
pub(crate) enum Writer {
    Pool { pool: AnyPool, begin: &'static str },
    Sole(Arc<Sole>),
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Writer::Pool { .. } => f.write_str("Writer::Pool"),
            Writer::Sole(_) => f.write_str("Writer::Sole"),
        }
    }
}

/// A SQLite file's one writing connection and the group of transactions it holds open.
pub(crate) struct Sole {
    state: Arc<Mutex<SoleState>>,
    /// How to open a sqlx connection to the same file, for what must run through sqlx with no
    /// transaction open (migrations, `VACUUM INTO`): [`Writer::outside_transaction`].
    outside: Box<dyn Fn() -> BoxFuture<'static, Result<AnyConnection, sqlx::Error>> + Send + Sync>,
    /// Writers waiting for the connection: a finishing writer hands its open transaction on
    /// only when one is.
    waiting: AtomicUsize,
    /// Commits made (each of one group), for the tests and the figures.
    commits: Arc<Commits>,
}

/// A writer's commits so far, and the time spent in them (their fsyncs, mostly).
#[derive(Debug, Default)]
pub(crate) struct Commits {
    count: AtomicU64,
    nanos: AtomicU64,
}

impl Commits {
    fn add(&self, took: Duration) {
        self.count.fetch_add(1, Ordering::SeqCst);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::SeqCst);
    }

    /// How many, and how long they took in all.
    pub(crate) fn so_far(&self) -> (u64, Duration) {
        (
            self.count.load(Ordering::SeqCst),
            Duration::from_nanos(self.nanos.load(Ordering::SeqCst)),
        )
    }
}

pub(crate) struct SoleState {
    /// Runs the writer's statements in the task that holds the writer ([`crate::native`]).
    conn: Native,
    /// The transaction left open for the next writer.
    group: Option<Group>,
    /// Work of a writer dropped before it committed or rolled back, to undo first.
    abandoned: Option<Member>,
    /// Groups are numbered: a member knows its group.
    next_id: u64,
    commits: Arc<Commits>,
}

struct Group {
    id: u64,
    opened: Instant,
    members: Vec<oneshot::Sender<Outcome>>,
}

/// Where a writer's work starts in the open transaction.
#[derive(Debug, Clone, Copy)]
enum Member {
    /// It opened the transaction: undoing it is `ROLLBACK`.
    Opener,
    /// It joined behind the savepoint of [`MEMBER_SAVEPOINT`].
    Joined,
}

impl Sole {
    /// `outside` opens a sqlx connection to the same file, set up as the writer.
    pub(crate) fn new(
        conn: Native,
        outside: impl Fn() -> BoxFuture<'static, Result<AnyConnection, sqlx::Error>>
        + Send
        + Sync
        + 'static,
    ) -> Sole {
        let commits = Arc::new(Commits::default());
        Sole {
            state: Arc::new(Mutex::new(SoleState {
                conn,
                group: None,
                abandoned: None,
                next_id: 0,
                commits: commits.clone(),
            })),
            waiting: AtomicUsize::new(0),
            commits,
            outside: Box::new(outside),
        }
    }

    /// How many commits this connection has made, and the time they took.
    pub(crate) fn commit_time(&self) -> (u64, Duration) {
        self.commits.so_far()
    }

    /// The connection, once every earlier writer is done with it (a dropped writer's work
    /// undone).
    async fn lock(&self) -> Result<OwnedMutexGuard<SoleState>, sqlx::Error> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let waited = Waiting(&self.waiting);
        let mut state = self.state.clone().lock_owned().await;
        drop(waited);
        state.undo_abandoned().await?;
        Ok(state)
    }

    /// The connection with no transaction open (the open group committed first): for what
    /// cannot run inside a transaction (`VACUUM INTO`, migrations). In a task of its own, as
    /// every commit: a caller that stops waiting does not cut the group's commit short.
    pub(crate) async fn exclusive(
        self: &Arc<Self>,
    ) -> Result<OwnedMutexGuard<SoleState>, sqlx::Error> {
        let sole = self.clone();
        detached(async move {
            let mut state = sole.lock().await?;
            state.commit_group().await?;
            Ok(state)
        })
        .await
    }
}

impl Sole {
    /// Commits the open group, if any, before the store closes.
    pub(crate) async fn close(self: &Arc<Self>) {
        if let Err(e) = self.exclusive().await {
            tracing::warn!(error = %e, "the writer's last group did not commit");
        }
    }
}

impl SoleState {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Starts this writer's work: opens the transaction, or joins the open one.
    async fn begin(&mut self) -> Result<Member, sqlx::Error> {
        if self.group.is_some() {
            if !self.conn.in_autocommit() {
                self.conn.batch(MEMBER_SAVEPOINT)?;
                return Ok(Member::Joined);
            }
            // SQLite ended the group's transaction itself (some errors roll it all back): its
            // members' work is gone, so they fail; a savepoint now would open a transaction
            // of its own, which the member's release would commit.
            tracing::warn!("the writer's group lost its transaction: its members fail");
            self.fail_group(sqlx::Error::Protocol(
                "SQLite rolled the group's transaction back".into(),
            ))
            .await;
        } else if !self.conn.in_autocommit() {
            tracing::warn!("the writer found a transaction no group holds: rolled back");
            self.conn.batch("ROLLBACK")?;
        }
        self.conn.begin_immediate().await?;
        let id = self.next_id();
        self.group = Some(Group {
            id,
            opened: Instant::now(),
            members: Vec::new(),
        });
        Ok(Member::Opener)
    }

    /// Undoes the work a writer left in [`SoleState::abandoned`], if any.
    async fn undo_abandoned(&mut self) -> Result<(), sqlx::Error> {
        match self.abandoned.take() {
            Some(member) => self.undo(member).await,
            None => Ok(()),
        }
    }

    /// Undoes a writer's work. Undoing a joined member fails only when the transaction itself
    /// is gone (SQLite ended it on an error): then the whole group failed.
    async fn undo(&mut self, member: Member) -> Result<(), sqlx::Error> {
        match member {
            Member::Opener => {
                self.group = None;
                self.conn.batch("ROLLBACK")?;
            }
            Member::Joined => {
                let undone = self.conn.batch(MEMBER_UNDO);
                if let Err(e) = undone {
                    self.fail_group(e).await;
                }
            }
        }
        Ok(())
    }

    /// Commits the open group, if any, and tells its members.
    async fn commit_group(&mut self) -> Result<(), sqlx::Error> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        // On the blocking pool: the fsync may take a millisecond or more.
        let started = Instant::now();
        match self.conn.blocking("COMMIT").await {
            Ok(_) => {
                self.commits.add(started.elapsed());
                for member in group.members {
                    let _ = member.send(Ok(()));
                }
                Ok(())
            }
            Err(e) => {
                let e = Arc::new(e);
                for member in group.members {
                    let _ = member.send(Err(e.clone()));
                }
                // A failed commit may leave the transaction open.
                let _ = self.conn.batch("ROLLBACK");
                Err(sqlx::Error::Protocol(format!("group commit failed: {e}")))
            }
        }
    }

    /// Ends the open group in failure: its work is rolled back and every member told.
    async fn fail_group(&mut self, e: sqlx::Error) {
        let e = Arc::new(e);
        if let Some(group) = self.group.take() {
            for member in group.members {
                let _ = member.send(Err(e.clone()));
            }
        }
        let _ = self.conn.batch("ROLLBACK");
    }
}

/// Counts a writer waiting for the connection, until it has it or gives up.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A write transaction: the statements of one change, committed together. Dereferences to
/// its connection, so `&mut *tx` is the executor. Dropped without [`WriteTx::commit`], it
/// is rolled back.
pub(crate) struct WriteTx {
    inner: WriteConn,
}

/// A write transaction's connection: an executor of the store's queries whichever it is.
pub(crate) enum WriteConn {
    Pool(sqlx::Transaction<'static, Any>),
    /// One statement on its own: the pool's connection commits it (PostgreSQL's autocommit).
    Single(PoolConnection<Any>),
    Sole(Held),
}

/// The sole connection, held by one writer. What a writer does to the group (open or join
/// it, commit or undo) runs in a task of its own, so a writer cancelled half way (its
/// request dropped, its worker stopped) never leaves the group half changed; dropped while
/// held, its work is undone at once by such a task.
pub(crate) struct Held {
    sole: Arc<Sole>,
    state: Option<OwnedMutexGuard<SoleState>>,
    member: Member,
}

impl Held {
    fn take(mut self) -> (Arc<Sole>, OwnedMutexGuard<SoleState>, Member) {
        let state = self.state.take().expect("held until taken");
        (self.sole.clone(), state, self.member)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(mut state) = self.state.take() else {
            return;
        };
        // Recorded first: if the task below never runs (the runtime is shutting down), the
        // next writer undoes it before anything else.
        state.abandoned = Some(self.member);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let sole = self.sole.clone();
            runtime.spawn(async move {
                if let Err(e) = settle(&sole, state).await {
                    tracing::warn!(error = %e, "cannot undo a dropped write");
                }
            });
        }
    }
}

/// A sqlx connection that may write, with no transaction open: on a SQLite file one of its
/// own to the file, while the sole connection is held idle (its open group committed first,
/// until this is dropped); otherwise one of the pool's.
pub(crate) enum Outside {
    /// Dropped in this order: the connection is let go (sqlx closes it on its own thread a
    /// moment later; it holds no lock by then, its work done) before the writer is.
    Sole {
        conn: AnyConnection,
        _writer: OwnedMutexGuard<SoleState>,
    },
    Pooled(PoolConnection<Any>),
}

impl Deref for Outside {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            Outside::Sole { conn, .. } => conn,
            Outside::Pooled(conn) => conn,
        }
    }
}

impl DerefMut for Outside {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Outside::Sole { conn, .. } => conn,
            Outside::Pooled(conn) => &mut *conn,
        }
    }
}

impl Writer {
    /// For what cannot run inside a transaction (`VACUUM INTO`, migrations).
    pub(crate) async fn outside_transaction(&self) -> Result<Outside, sqlx::Error> {
        Ok(match self {
            Writer::Sole(sole) => {
                let writer = sole.exclusive().await?;
                Outside::Sole {
                    conn: (sole.outside)().await?,
                    _writer: writer,
                }
            }
            Writer::Pool { pool, .. } => Outside::Pooled(pool.acquire().await?),
        })
    }

    /// A write transaction.
    pub(crate) async fn begin(&self) -> Result<WriteTx, sqlx::Error> {
        match self {
            Writer::Pool { pool, begin } => Ok(WriteTx {
                inner: WriteConn::Pool(pool.begin_with(*begin).await?),
            }),
            Writer::Sole(sole) => Self::begin_sole(sole).await,
        }
    }

    /// For one statement: on the pool, no transaction around it; on the sole connection, a
    /// member of the group like any other write.
    pub(crate) async fn single(&self) -> Result<WriteTx, sqlx::Error> {
        match self {
            Writer::Pool { pool, .. } => Ok(WriteTx {
                inner: WriteConn::Single(pool.acquire().await?),
            }),
            Writer::Sole(sole) => Self::begin_sole(sole).await,
        }
    }

    async fn begin_sole(sole: &Arc<Sole>) -> Result<WriteTx, sqlx::Error> {
        let sole = sole.clone();
        let held = detached(async move {
            let mut state = sole.lock().await?;
            let member = state.begin().await?;
            Ok(Held {
                sole,
                state: Some(state),
                member,
            })
        })
        .await?;
        Ok(WriteTx {
            inner: WriteConn::Sole(held),
        })
    }
}

/// Runs `work` in a task of its own, to the end even if the caller stops waiting.
async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, sqlx::Error>> + Send + 'static,
) -> Result<T, sqlx::Error> {
    tokio::spawn(work)
        .await
        .map_err(|e| sqlx::Error::Protocol(format!("the writer's task ended: {e}")))?
}

impl Deref for WriteTx {
    type Target = WriteConn;
    fn deref(&self) -> &WriteConn {
        &self.inner
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut WriteConn {
        &mut self.inner
    }
}

impl std::fmt::Debug for WriteConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteConn::Pool(_) => "WriteConn::Pool",
            WriteConn::Single(_) => "WriteConn::Single",
            WriteConn::Sole(_) => "WriteConn::Sole",
        })
    }
}

impl Held {
    /// The sole connection.
    fn native(&self) -> &Native {
        &self.state.as_ref().expect("held until the end").conn
    }
}

/// The store's queries run on a write transaction as on any sqlx connection: through sqlx on
/// the pool's, in this task on the sole one ([`Native::run_awaited`]: all its rows at once).
impl<'c> Executor<'c> for &'c mut WriteConn {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            WriteConn::Pool(tx) => (&mut **tx).fetch_many(query),
            WriteConn::Single(conn) => (&mut **conn).fetch_many(query),
            WriteConn::Sole(held) => {
                let out = held.native().run_awaited(query, None).map(|out| {
                    let items: Vec<_> = match out {
                        Ok((result, rows)) => rows
                            .into_iter()
                            .map(|row| Ok(Either::Right(row)))
                            .chain([Ok(Either::Left(result))])
                            .collect(),
                        Err(e) => vec![Err(e)],
                    };
                    futures::stream::iter(items)
                });
                futures::stream::once(out).flatten().boxed()
            }
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            WriteConn::Pool(tx) => (&mut **tx).fetch_optional(query),
            WriteConn::Single(conn) => (&mut **conn).fetch_optional(query),
            WriteConn::Sole(held) => held
                .native()
                .run_awaited(query, Some(1))
                .map(|out| out.map(|(_, rows)| rows.into_iter().next()))
                .boxed(),
        }
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            WriteConn::Pool(tx) => (&mut **tx).prepare_with(sql, parameters),
            WriteConn::Single(conn) => (&mut **conn).prepare_with(sql, parameters),
            WriteConn::Sole(_) => futures::future::ready(Err(sqlx::Error::Protocol(
                "the SQLite writer prepares its statements itself".into(),
            )))
            .boxed(),
        }
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            WriteConn::Pool(tx) => (&mut **tx).describe(sql),
            WriteConn::Single(conn) => (&mut **conn).describe(sql),
            WriteConn::Sole(_) => futures::future::ready(Err(sqlx::Error::Protocol(
                "the SQLite writer describes no statements".into(),
            )))
            .boxed(),
        }
    }
}

impl WriteTx {
    /// Commits; returns once the work is on the disk (on the sole connection, once the group
    /// it joined has committed).
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self.inner {
            WriteConn::Pool(tx) => tx.commit().await,
            WriteConn::Single(_) => Ok(()),
            WriteConn::Sole(held) => {
                let (sole, state, member) = held.take();
                detached(async move { commit_sole(&sole, state, member).await }).await
            }
        }
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.inner {
            WriteConn::Pool(tx) => tx.rollback().await,
            WriteConn::Single(_) => Ok(()),
            WriteConn::Sole(held) => {
                let (sole, mut state, member) = held.take();
                state.abandoned = Some(member);
                detached(async move { settle(&sole, state).await }).await
            }
        }
    }
}

/// Undoes the abandoned work; then a writer waiting for the connection takes the group on,
/// and with none the group commits now.
async fn settle(sole: &Sole, mut state: OwnedMutexGuard<SoleState>) -> Result<(), sqlx::Error> {
    state.undo_abandoned().await?;
    if sole.waiting.load(Ordering::SeqCst) == 0 || !state.group_may_grow() {
        state.commit_group().await?;
    }
    Ok(())
}

impl SoleState {
    /// Whether the open group may take one more member.
    fn group_may_grow(&self) -> bool {
        self.group
            .as_ref()
            .is_some_and(|g| g.members.len() + 1 < GROUP_MEMBERS && g.opened.elapsed() < GROUP_AGE)
    }
}

/// Commits a member's work: with the group when others wait for the connection, else now.
async fn commit_sole(
    sole: &Sole,
    mut state: OwnedMutexGuard<SoleState>,
    member: Member,
) -> Result<(), sqlx::Error> {
    if let Member::Joined = member {
        if let Err(e) = state.conn.batch(MEMBER_RELEASE) {
            state.undo(member).await?;
            return Err(e);
        }
    }
    if sole.waiting.load(Ordering::SeqCst) == 0 || !state.group_may_grow() {
        return state.commit_group().await;
    }
    // Others wait: this work goes with theirs, committed by the last of the group.
    let (tx, rx) = oneshot::channel();
    let group = state.group.as_mut().expect("a member's group is open");
    let id = group.id;
    group.members.push(tx);
    drop(state);
    wait_for_group(sole, id, rx).await
}

/// Waits for the group `id` to commit. The writer this member handed the connection to
/// normally commits it or hands it on; if the connection has gone quiet with the group still
/// open (that writer gave up before taking it), the member commits the group itself.
async fn wait_for_group(
    sole: &Sole,
    id: u64,
    mut rx: oneshot::Receiver<Outcome>,
) -> Result<(), sqlx::Error> {
    loop {
        tokio::select! {
            outcome = &mut rx => return delivered(outcome),
            _ = tokio::time::sleep(GROUP_STALL) => {}
        }
        let Ok(mut state) = sole.state.clone().try_lock_owned() else {
            // A writer has the connection: it commits or hands the group on.
            continue;
        };
        state.undo_abandoned().await?;
        if state.group.as_ref().is_some_and(|g| g.id == id) {
            state.commit_group().await?;
        }
        drop(state);
        return delivered(rx.await);
    }
}

fn delivered(outcome: Result<Outcome, oneshot::error::RecvError>) -> Result<(), sqlx::Error> {
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(sqlx::Error::Protocol(format!("group commit failed: {e}"))),
        // The group's senders go only when it commits or fails, and both send first.
        Err(_) => Err(sqlx::Error::Protocol(
            "the group commit ended without an outcome".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use crate::test_util::{insert_budget_row as insert, sqlite_file_store as sqlite_store};

    fn sole(store: &Store) -> Arc<Sole> {
        match &store.writer {
            Writer::Sole(sole) => sole.clone(),
            Writer::Pool { .. } => panic!("a SQLite file has the sole writer"),
        }
    }

    /// Until `n` writers wait for the connection.
    async fn until_waiting(sole: &Sole, n: usize) {
        while sole.waiting.load(Ordering::SeqCst) < n {
            tokio::task::yield_now().await;
        }
    }

    async fn names(store: &Store) -> Vec<String> {
        sqlx::query_scalar("SELECT name FROM rate_budget WHERE name LIKE 'w%' ORDER BY name")
            .fetch_all(store.reader())
            .await
            .unwrap()
    }

    /// Writers that wait for the connection commit together, and each one's write is
    /// visible to a reader (another connection) as soon as its commit returns.
    #[tokio::test]
    async fn concurrent_writes_commit_in_groups_and_each_is_visible_once_committed() {
        let (store, _dir) = sqlite_store().await;
        let before = sole(&store).commit_time().0;
        let writes = 64;
        let tasks: Vec<_> = (0..writes)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let name = format!("w{i:03}");
                    let mut tx = store.begin_write().await.unwrap();
                    insert(&mut tx, &name).await;
                    tx.commit().await.unwrap();
                    let seen: Option<String> =
                        sqlx::query_scalar("SELECT name FROM rate_budget WHERE name = $1")
                            .bind(&name)
                            .fetch_optional(store.reader())
                            .await
                            .unwrap();
                    assert_eq!(
                        seen.as_deref(),
                        Some(name.as_str()),
                        "committed, so visible"
                    );
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(names(&store).await.len(), writes);
        let commits = sole(&store).commit_time().0 - before;
        assert!(
            commits < writes as u64,
            "{writes} concurrent writes took {commits} commits: none was shared"
        );
    }

    /// A writer that fails inside a group (dropped after writing, or rolled back) loses its
    /// own work only.
    #[tokio::test]
    async fn a_member_dropped_or_rolled_back_loses_only_its_own_work() {
        let (store, _dir) = sqlite_store().await;
        let sole = sole(&store);
        // The first writer holds the connection while the others queue behind it, so the
        // group forms: a keeps, b is dropped, c rolls back, d keeps.
        let mut a = store.begin_write().await.unwrap();
        insert(&mut a, "wa").await;
        let spawn = |name: &'static str, end: &'static str| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin_write().await.unwrap();
                insert(&mut tx, name).await;
                match end {
                    "commit" => tx.commit().await.unwrap(),
                    "rollback" => tx.rollback().await.unwrap(),
                    _ => drop(tx),
                }
            })
        };
        let others = [
            spawn("wb", "drop"),
            spawn("wc", "rollback"),
            spawn("wd", "commit"),
        ];
        until_waiting(&sole, 3).await;
        a.commit().await.unwrap();
        for t in others {
            t.await.unwrap();
        }
        assert_eq!(names(&store).await, vec!["wa", "wd"]);
    }

    /// A group handed to a writer that then drops its transaction still commits: the
    /// member's commit returns with its work stored.
    #[tokio::test]
    async fn a_group_handed_to_a_writer_that_drops_out_still_commits() {
        let (store, _dir) = sqlite_store().await;
        let sole = sole(&store);
        let mut a = store.begin_write().await.unwrap();
        insert(&mut a, "wa").await;
        // A writer that waits, so that a hands the group on, then takes the connection and
        // drops its transaction without a word: no one is left to commit the group.
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move {
                let tx = store.begin_write().await.unwrap();
                drop(tx);
            })
        };
        until_waiting(&sole, 1).await;
        tokio::time::timeout(Duration::from_secs(5), a.commit())
            .await
            .expect("the commit returns")
            .unwrap();
        waiter.await.unwrap();
        assert_eq!(names(&store).await, vec!["wa"]);
    }

    /// A writer cancelled in the middle of its transaction (its task aborted, as a stopped
    /// worker or a dropped request is) leaves nothing behind, and the connection goes on.
    #[tokio::test]
    async fn a_writer_cancelled_mid_transaction_leaves_nothing_and_the_next_writes() {
        let (store, _dir) = sqlite_store().await;
        let (wrote, written) = oneshot::channel();
        let task = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin_write().await.unwrap();
                insert(&mut tx, "wx").await;
                let _ = wrote.send(());
                std::future::pending::<()>().await;
                drop(tx);
            })
        };
        written.await.unwrap();
        task.abort();
        let _ = task.await;
        let mut tx = tokio::time::timeout(Duration::from_secs(5), store.begin_write())
            .await
            .expect("the connection is free again")
            .unwrap();
        insert(&mut tx, "wy").await;
        tx.commit().await.unwrap();
        assert_eq!(names(&store).await, vec!["wy"]);
    }

    /// Writers cancelled at every point of their turn (waiting, opening or joining, writing,
    /// committing) leave the connection usable, and every commit that returned is stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writers_cancelled_anywhere_leave_the_connection_consistent() {
        let (store, _dir) = sqlite_store().await;
        let committed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..200 {
            let (store, committed) = (store.clone(), committed.clone());
            let task = tokio::spawn(async move {
                let name = format!("w{i:03}");
                let mut tx = store.begin_write().await.unwrap();
                insert(&mut tx, &name).await;
                tx.commit().await.unwrap();
                committed.lock().unwrap().push(name);
            });
            tasks.push((i, task));
        }
        for (i, task) in tasks {
            if i % 2 == 1 {
                for _ in 0..(i % 7) {
                    tokio::task::yield_now().await;
                }
                task.abort();
                let _ = task.await;
            } else {
                task.await.expect("a writer left alone commits");
            }
        }
        let mut tx = tokio::time::timeout(Duration::from_secs(5), store.begin_write())
            .await
            .expect("the connection is free again")
            .unwrap();
        insert(&mut tx, "wz").await;
        tx.commit().await.unwrap();
        let stored = names(&store).await;
        for name in committed.lock().unwrap().iter() {
            assert!(
                stored.contains(name),
                "{name} returned from its commit but is not stored"
            );
        }
        assert!(stored.contains(&"wz".to_owned()));
    }
}
