//! The answer cache: what the extension said about a credential, kept in
//! memory, forgotten the moment a change that could alter it commits.
//!
//! Why it can be trusted (the consistency promise, in README "Answer cache"):
//!
//! - **Invalidation comes from the database.** The extension sends
//!   `NOTIFY api_auth_changes, '<environment id>'` from triggers on every
//!   change that can alter an answer (rotation, grace expiry moved, purge,
//!   archive, creation, deletion, direct table edits too), delivered at commit.
//!   [`crate::invalidation`] listens on the primary and calls
//!   [`Cache::invalidate`]: every entry about that environment, or signed with
//!   its keys, is dropped, and so is every negative entry (a new key may now be
//!   known).
//! - **No answer from before an invalidation is stored after it.** A fill
//!   takes a [`Ticket`] before it asks the database; [`Cache::insert`] refuses
//!   the answer if an invalidation that concerns it happened since: one about
//!   an environment it depends on, any at all for a refusal, a flush or a
//!   subscription change, or more of them than the cache remembers
//!   ([`RECENT`]). Changes to other environments let it through: had it been
//!   kept before them, they would not have dropped it either. An invalidation
//!   that arrives after the insert drops the entry anyway. So an entry is
//!   never older than the last notification about it.
//! - **No memory without a subscription.** Until the listener has subscribed
//!   (and flushed), and from the moment its connection drops, [`Cache::get`]
//!   answers nothing and nothing is stored: a missed notification can never
//!   serve a stale answer.
//! - **Entries never outlive what they depend on**: a token's entry expires at
//!   its `exp`, a key in grace's at its window's end, and every entry after
//!   the backstop `max_age` (for what sends no notification, such as a
//!   changed `api_auth.jwt_*` setting), spread over its last quarter
//!   ([`Cache::backstop`]).
//! - **No secret in memory.** Entries are keyed by SHA-256 of the credential
//!   (and branch), salted per process ([`key`]); the credential itself is
//!   never stored.
//! - **Bounded, and flood-proof.** At most `capacity` entries. New entries
//!   enter a small probation queue (a tenth of the capacity); an entry hit
//!   again while on probation is promoted to the main queue, where a CLOCK pass
//!   (a second chance for entries hit since the last pass) picks victims. An
//!   entry that leaves probation unasked leaves its key (a hash, no answer) in
//!   a ghost queue as long as the main one, and an answer whose key is found
//!   there goes straight to the main queue: a working set asked in turn, each
//!   credential coming back only after probation has moved on, is kept after
//!   its second miss instead of churning probation forever. A flood of
//!   one-time credentials only churns probation and the ghosts, and can never
//!   evict the hot entries of the main queue (the S3-FIFO design). Negative
//!   answers live in their own bounded queue.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Salted SHA-256 of what identifies a question (credential kind, credential, branch).
pub type Key = [u8; 32];

/// A secret drawn once per process and hashed in front of every key.
static SALT: LazyLock<[u8; 32]> = LazyLock::new(|| {
    let mut salt = [0u8; 32];
    getrandom::fill(&mut salt).expect("the operating system's random number generator failed");
    salt
});

/// The cache key of a question: never the credential itself. Salted, so that
/// no client can predict a key: the maps use its first bytes as their hash
/// ([`KeyHasher`]) without letting anyone choose credentials that collide.
pub fn key(parts: &[&[u8]]) -> Key {
    let mut h = Sha256::new();
    h.update(*SALT);
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// The maps' hasher for [`Key`]s: a salted SHA-256 is already uniformly
/// random, so its first bytes are the hash (no SipHash pass on every hit).
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(17) ^ u64::from_le_bytes(word);
        }
    }

    /// The array's length, written before its bytes: the same for every key.
    fn write_usize(&mut self, _: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;
type KeySet = HashSet<Key, BuildHasherDefault<KeyHasher>>;

/// What the counters say (for `/metrics`).
#[derive(Default)]
pub struct Counters {
    pub hits: AtomicU64,
    /// Questions asked of the database ([`Cache::ticket`]).
    pub misses: AtomicU64,
    pub inserts: AtomicU64,
    /// Fills refused because an invalidation happened while they were asked.
    pub stale_fills: AtomicU64,
    pub evictions: AtomicU64,
    pub expirations: AtomicU64,
    /// Entries dropped by invalidations (notifications and flushes).
    pub invalidated: AtomicU64,
}

/// Taken before asking the database; an insert is refused if an invalidation
/// that concerns it happened since.
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

/// How many invalidations the cache remembers for fills in flight. A fill
/// lasts a round trip; one that straddles more changes than this is refused,
/// whatever they were about.
const RECENT: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Segment {
    Probation,
    Main,
    Negative,
}

struct Entry<V> {
    /// `None`: a negative answer (the credential authenticates nothing).
    value: Option<V>,
    /// Environments the answer depends on (its environment, its signer).
    environments: Vec<String>,
    expires: Instant,
    segment: Segment,
    /// Asked for since it entered its queue (or since the last CLOCK pass);
    /// set under the read lock, so that hits never wait for one another.
    hit: AtomicBool,
}

struct Inner<V> {
    entries: KeyMap<Entry<V>>,
    by_environment: HashMap<String, KeySet>,
    probation: VecDeque<Key>,
    main: VecDeque<Key>,
    negative: VecDeque<Key>,
    counts: [usize; 3],
    /// Keys that left probation unasked, oldest first (at most the main
    /// queue's length), each with the number of its turn; `ghosts` holds
    /// the ghosts now, each with its latest turn: a slot whose number is
    /// not that one is stale (the key was promoted, or became a ghost again).
    ghost: VecDeque<(Key, u64)>,
    ghosts: KeyMap<u64>,
    ghost_turns: u64,
    /// The latest invalidations, oldest first: each one's generation, and
    /// its environment (`None`: a flush, about every entry).
    recent: VecDeque<(u64, Option<String>)>,
}

/// A bounded answer cache for values of type `V` (see the module docs).
///
/// Hits take the lock shared: a thread descheduled in the middle of one (two
/// busy cores are easily oversubscribed) holds up no other hit. Fills,
/// evictions and invalidations take it exclusively.
pub struct Cache<V> {
    inner: RwLock<Inner<V>>,
    capacity: usize,
    max_age: Duration,
    /// Bumped by every invalidation and subscription change.
    generation: AtomicU64,
    live: AtomicBool,
    pub counters: Counters,
}

fn segment_index(s: Segment) -> usize {
    match s {
        Segment::Probation => 0,
        Segment::Main => 1,
        Segment::Negative => 2,
    }
}

impl<V: Clone> Cache<V> {
    /// A cache of at most `capacity` entries (at least 10), none older than `max_age`.
    /// It answers nothing until [`Cache::set_live`] says a subscription is in place.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        Cache {
            inner: RwLock::new(Inner {
                entries: KeyMap::default(),
                by_environment: HashMap::new(),
                probation: VecDeque::new(),
                main: VecDeque::new(),
                negative: VecDeque::new(),
                counts: [0; 3],
                ghost: VecDeque::new(),
                ghosts: KeyMap::default(),
                ghost_turns: 0,
                recent: VecDeque::with_capacity(RECENT),
            }),
            capacity: capacity.max(10),
            max_age,
            generation: AtomicU64::new(0),
            live: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    fn limit(&self, s: Segment) -> usize {
        match s {
            Segment::Probation | Segment::Negative => (self.capacity / 10).max(1),
            Segment::Main => self.capacity - 2 * (self.capacity / 10).max(1),
        }
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// The subscription is in place (after a flush) or lost. Either way every
    /// entry is dropped and every fill in flight is refused.
    pub fn set_live(&self, live: bool) {
        self.live.store(false, Ordering::Release);
        self.flush();
        self.live.store(live, Ordering::Release);
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner<V>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner<V>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// Take before asking the database for an answer to cache (what the
    /// `misses` counter counts).
    pub fn ticket(&self) -> Ticket {
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        Ticket(self.generation.load(Ordering::Acquire))
    }

    /// `Some(Some(v))` a cached answer, `Some(None)` a cached refusal, `None` unknown.
    pub fn get(&self, key: &Key) -> Option<Option<V>> {
        if !self.is_live() {
            return None;
        }
        let now = Instant::now();
        let inner = self.read();
        match inner.entries.get(key) {
            Some(e) if e.expires > now => {
                if !e.hit.load(Ordering::Relaxed) {
                    e.hit.store(true, Ordering::Relaxed);
                }
                let value = e.value.clone();
                drop(inner);
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                Some(value)
            }
            Some(_) => {
                drop(inner);
                // Expired: dropped under the exclusive lock (if still there and still expired).
                let mut inner = self.write();
                if inner.entries.get(key).is_some_and(|e| e.expires <= now) {
                    inner.remove(key);
                    self.counters.expirations.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
            None => None,
        }
    }

    /// Keep an answer asked with `ticket`: `value` `None` for a refusal,
    /// `environments` it depends on, `expires_in` at most (capped by `max_age`).
    /// Refused (false) when an invalidation that concerns it happened since
    /// the ticket (see the module docs), or while there is no subscription.
    pub fn insert(
        &self,
        ticket: Ticket,
        key: Key,
        value: Option<V>,
        environments: Vec<String>,
        expires_in: Option<Duration>,
    ) -> bool {
        if !self.is_live() {
            return false;
        }
        let backstop = self.backstop(&key);
        let ttl = expires_in.map_or(backstop, |d| d.min(backstop));
        if ttl.is_zero() {
            return false;
        }
        let mut inner = self.write();
        // Checked under the lock that invalidations take: no invalidation can
        // slip between this check and the insert.
        if self.generation.load(Ordering::Acquire) != ticket.0 && inner.changed_since(ticket, value.is_none(), &environments) {
            self.counters.stale_fills.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        // Asked again after leaving probation unasked: part of a working set
        // larger than probation, so it goes straight to the main queue.
        let segment = match value {
            None => Segment::Negative,
            Some(_) if inner.take_ghost(&key) => Segment::Main,
            Some(_) => Segment::Probation,
        };
        inner.remove(&key);
        for env in &environments {
            inner.by_environment.entry(env.clone()).or_default().insert(key);
        }
        let hit = AtomicBool::new(false);
        inner.entries.insert(key, Entry { value, environments, expires: Instant::now() + ttl, segment, hit });
        inner.queue(segment).push_back(key);
        inner.counts[segment_index(segment)] += 1;
        let evicted = self.make_room(&mut inner, segment);
        drop(inner);
        self.counters.inserts.fetch_add(1, Ordering::Relaxed);
        self.counters.evictions.fetch_add(evicted, Ordering::Relaxed);
        true
    }

    /// How long an answer for `key` may be kept at most: `max_age`, less up to
    /// a quarter of it, a fraction read from the key (a SHA-256, so uniform).
    /// Answers kept in the same second (a shim warming up) then reach the
    /// backstop over a stretch of time instead of all missing at the same
    /// instant, a burst of round trips every `max_age`. Only ever shorter:
    /// the promise "never older than max-age" holds.
    fn backstop(&self, key: &Key) -> Duration {
        let fraction = f64::from(u16::from_le_bytes([key[0], key[1]])) / 65536.0;
        self.max_age.mul_f64(1.0 - fraction / 4.0)
    }

    /// Evict from `segment` (and, through promotions, from main) until every
    /// segment is within its limit. Returns how many entries were evicted.
    fn make_room(&self, inner: &mut Inner<V>, segment: Segment) -> u64 {
        let mut evicted = 0;
        while inner.counts[segment_index(segment)] > self.limit(segment) {
            let Some(victim) = inner.queue(segment).pop_front() else { break };
            let Some(e) = inner.entries.get_mut(&victim) else { continue };
            if e.segment != segment {
                continue; // a stale queue slot: the entry moved or was replaced
            }
            match (segment, std::mem::take(e.hit.get_mut())) {
                (Segment::Probation, true) => {
                    // Hit while on probation: promoted.
                    e.segment = Segment::Main;
                    inner.counts[segment_index(Segment::Probation)] -= 1;
                    inner.counts[segment_index(Segment::Main)] += 1;
                    inner.main.push_back(victim);
                    evicted += self.make_room(inner, Segment::Main);
                }
                (Segment::Main, true) => {
                    inner.main.push_back(victim);
                }
                (Segment::Probation, false) => {
                    inner.remove(&victim);
                    evicted += 1;
                    let ghosts = self.limit(Segment::Main);
                    inner.add_ghost(victim, ghosts);
                }
                _ => {
                    inner.remove(&victim);
                    evicted += 1;
                }
            }
        }
        evicted
    }

    /// Forget everything about `environment` (and every refusal): a change to
    /// it committed.
    pub fn invalidate(&self, environment: &str) {
        let mut inner = self.write();
        inner.remember(self.generation.fetch_add(1, Ordering::AcqRel) + 1, Some(environment));
        let mut dropped = 0;
        if let Some(keys) = inner.by_environment.remove(environment) {
            for k in keys {
                dropped += u64::from(inner.remove(&k));
            }
        }
        let negatives: Vec<Key> = inner.negative.drain(..).collect();
        for k in negatives {
            if inner.entries.get(&k).is_some_and(|e| e.segment == Segment::Negative) {
                dropped += u64::from(inner.remove(&k));
            }
        }
        drop(inner);
        self.counters.invalidated.fetch_add(dropped, Ordering::Relaxed);
    }

    /// Forget everything.
    pub fn flush(&self) {
        let mut inner = self.write();
        inner.remember(self.generation.fetch_add(1, Ordering::AcqRel) + 1, None);
        let dropped = inner.entries.len() as u64;
        inner.entries.clear();
        inner.by_environment.clear();
        inner.probation.clear();
        inner.main.clear();
        inner.negative.clear();
        inner.counts = [0; 3];
        inner.ghost.clear();
        inner.ghosts.clear();
        drop(inner);
        self.counters.invalidated.fetch_add(dropped, Ordering::Relaxed);
    }
}

impl<V> Inner<V> {
    fn queue(&mut self, s: Segment) -> &mut VecDeque<Key> {
        match s {
            Segment::Probation => &mut self.probation,
            Segment::Main => &mut self.main,
            Segment::Negative => &mut self.negative,
        }
    }

    /// Remember invalidation number `generation`, about `environment` (`None`: everything).
    fn remember(&mut self, generation: u64, environment: Option<&str>) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((generation, environment.map(str::to_string)));
    }

    /// Whether an invalidation since `ticket` concerns an answer about
    /// `environments` (`refusal`: which every change concerns). Yes too when
    /// the oldest of them is no longer remembered.
    fn changed_since(&self, ticket: Ticket, refusal: bool, environments: &[String]) -> bool {
        let remembered = self.recent.front().is_some_and(|(oldest, _)| *oldest <= ticket.0 + 1);
        !remembered
            || refusal
            || self
                .recent
                .iter()
                .rev()
                .take_while(|(generation, _)| *generation > ticket.0)
                .any(|(_, about)| about.as_ref().is_none_or(|env| environments.contains(env)))
    }

    /// Whether `key` was a ghost (it is no longer one).
    fn take_ghost(&mut self, key: &Key) -> bool {
        self.ghosts.remove(key).is_some()
    }

    /// Remember `key` as a ghost (at most `limit` of them, the oldest
    /// forgotten first; stale slots are skipped, and compacted away when they
    /// outnumber live ones).
    fn add_ghost(&mut self, key: Key, limit: usize) {
        self.ghost_turns += 1;
        self.ghosts.insert(key, self.ghost_turns);
        self.ghost.push_back((key, self.ghost_turns));
        while self.ghosts.len() > limit {
            let Some((old, turn)) = self.ghost.pop_front() else { break };
            if self.ghosts.get(&old) == Some(&turn) {
                self.ghosts.remove(&old);
            }
        }
        let ghosts = &self.ghosts;
        compact(&mut self.ghost, ghosts.len(), |(k, turn)| ghosts.get(k) == Some(turn));
    }

    /// Drop one entry (its queue slot goes stale and is skipped later; queues
    /// are compacted when stale slots outnumber live ones).
    fn remove(&mut self, key: &Key) -> bool {
        let Some(e) = self.entries.remove(key) else { return false };
        self.counts[segment_index(e.segment)] -= 1;
        for env in &e.environments {
            if let Some(set) = self.by_environment.get_mut(env) {
                set.remove(key);
                if set.is_empty() {
                    self.by_environment.remove(env);
                }
            }
        }
        let s = e.segment;
        let live = self.counts[segment_index(s)];
        let entries = &self.entries;
        let q = match s {
            Segment::Probation => &mut self.probation,
            Segment::Main => &mut self.main,
            Segment::Negative => &mut self.negative,
        };
        compact(q, live, |k| entries.get(k).is_some_and(|e| e.segment == s));
        true
    }
}

/// Drop a queue's stale slots (those `is_live` refuses) once they outnumber
/// its `live` ones: stale slots are skipped where they are met, and this
/// bounds how many can pile up.
fn compact<T>(queue: &mut VecDeque<T>, live: usize, is_live: impl FnMut(&T) -> bool) {
    if queue.len() > 2 * live + 64 {
        queue.retain(is_live);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: u64) -> Key {
        key(&[&i.to_le_bytes()])
    }

    fn live(capacity: usize) -> Cache<u64> {
        let c = Cache::new(capacity, Duration::from_secs(60));
        c.set_live(true);
        c
    }

    #[test]
    fn nothing_without_a_subscription() {
        let c: Cache<u64> = Cache::new(100, Duration::from_secs(60));
        assert!(!c.insert(c.ticket(), k(1), Some(1), vec!["e".into()], None));
        c.set_live(true);
        assert!(c.insert(c.ticket(), k(1), Some(1), vec!["e".into()], None));
        assert_eq!(c.get(&k(1)), Some(Some(1)));
        c.set_live(false);
        assert_eq!(c.get(&k(1)), None, "a lost subscription answers nothing");
        c.set_live(true);
        assert_eq!(c.get(&k(1)), None, "and resubscribing starts empty");
    }

    #[test]
    fn invalidation_drops_the_environment_and_every_refusal() {
        let c = live(100);
        c.insert(c.ticket(), k(1), Some(1), vec!["a".into()], None);
        c.insert(c.ticket(), k(2), Some(2), vec!["b".into(), "parent".into()], None);
        c.insert(c.ticket(), k(3), None, vec![], None);
        assert_eq!(c.get(&k(3)), Some(None));
        c.invalidate("parent");
        assert_eq!(c.get(&k(2)), None, "signed by the parent");
        assert_eq!(c.get(&k(3)), None, "refusals go with any change");
        assert_eq!(c.get(&k(1)), Some(Some(1)));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_fill_asked_before_an_invalidation_is_refused() {
        let c = live(100);
        let ticket = c.ticket();
        c.invalidate("a");
        assert!(!c.insert(ticket, k(1), Some(1), vec!["a".into()], None));
        assert_eq!(c.get(&k(1)), None);
        assert_eq!(c.counters.stale_fills.load(Ordering::Relaxed), 1);
    }

    /// A change to one environment says nothing about another's answers: a
    /// fill it straddled is kept (a busy system notifies all the time, and
    /// refusing every fill in flight on each notification made the hot keys
    /// of quiet environments miss again and again). A refusal, a flush, or
    /// more changes than the cache remembers still refuse it.
    #[test]
    fn a_fill_straddling_only_other_environments_changes_is_kept() {
        let c = live(100);
        let ticket = c.ticket();
        c.invalidate("b");
        c.invalidate("c");
        assert!(c.insert(ticket, k(1), Some(1), vec!["a".into()], None), "b and c changed, not a");
        assert_eq!(c.get(&k(1)), Some(Some(1)));
        assert!(!c.insert(ticket, k(2), Some(2), vec!["a".into(), "c".into()], None), "signed by c");
        assert!(!c.insert(ticket, k(3), None, vec![], None), "a refusal: any change may have made the key known");
        let ticket = c.ticket();
        c.flush();
        assert!(!c.insert(ticket, k(4), Some(4), vec!["a".into()], None), "a flush concerns every entry");
        let ticket = c.ticket();
        for i in 0..=RECENT {
            c.invalidate(&format!("other-{i}"));
        }
        assert!(!c.insert(ticket, k(5), Some(5), vec!["a".into()], None), "more changes than remembered");
        assert_eq!(c.counters.stale_fills.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn entries_expire() {
        let c = live(100);
        c.insert(c.ticket(), k(1), Some(1), vec!["a".into()], Some(Duration::from_millis(20)));
        c.insert(c.ticket(), k(2), Some(2), vec!["a".into()], Some(Duration::ZERO));
        assert_eq!(c.get(&k(1)), Some(Some(1)));
        assert_eq!(c.get(&k(2)), None, "already expired: not kept");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(c.get(&k(1)), None);
    }

    #[test]
    fn answers_kept_together_do_not_all_expire_together() {
        // A shim warms up in a second: were every answer to reach max-age at
        // the same instant, every hot credential would miss at once, a burst
        // of round trips every max-age. The backstop is spread over its last
        // quarter; exact cut-offs (a token's exp) are kept as they are.
        let c = live(20_000); // probation (a tenth) holds all of them
        let before = Instant::now();
        for i in 0..1000 {
            c.insert(c.ticket(), k(i), Some(i), vec!["a".into()], None);
        }
        c.insert(c.ticket(), k(5000), Some(5000), vec!["a".into()], Some(Duration::from_secs(30)));
        let inner = c.read();
        let ends: Vec<Duration> = (0..1000).map(|i| inner.entries[&k(i)].expires - before).collect();
        let (first, last) = (ends.iter().min().unwrap(), ends.iter().max().unwrap());
        assert!(*last <= Duration::from_secs(61), "never beyond max-age: {last:?}");
        assert!(*first >= Duration::from_secs(44), "at most a quarter early: {first:?}");
        assert!(*last - *first >= Duration::from_secs(12), "spread: {first:?} .. {last:?}");
        // About a fifth of them end in the spread's first fifth (45-48 s): not bunched.
        let early = ends.iter().filter(|d| **d < Duration::from_secs(48)).count();
        assert!((120..280).contains(&early), "{early} of 1000 in the spread's first fifth");
        let exact = inner.entries[&k(5000)].expires - before;
        assert!(exact >= Duration::from_secs(30) && exact < Duration::from_secs(31), "a shorter cut-off is exact: {exact:?}");
    }

    #[test]
    fn a_flood_of_new_credentials_cannot_evict_hot_entries() {
        let c = live(1000);
        // Hot entries: inserted and hit, then pushed through probation.
        for i in 0..500 {
            c.insert(c.ticket(), k(i), Some(i), vec![format!("e{i}")], None);
            c.get(&k(i));
        }
        for i in 0..100_000u64 {
            c.insert(c.ticket(), k(1_000_000 + i), Some(i), vec!["bogus".into()], None);
            if i % 1000 == 0 {
                for h in 0..500 {
                    c.get(&k(h));
                }
            }
        }
        let kept = (0..500).filter(|i| c.get(&k(*i)).is_some()).count();
        assert_eq!(kept, 500, "every hot entry survives the flood");
        assert!(c.len() <= 1000, "bounded: {}", c.len());
        let flood_kept = (0..100_000u64).filter(|i| c.get(&k(1_000_000 + i)).is_some()).count();
        assert!(flood_kept <= 100, "the flood holds only probation: {flood_kept}");
    }

    /// A working set larger than probation but within the capacity, asked in
    /// turn (10 000 keys behind a gateway, say): each key comes back only
    /// after probation has moved on, so it is never hit there. The second time
    /// it is missed it must still find a place in the main queue.
    #[test]
    fn a_working_set_larger_than_probation_is_kept() {
        let c = live(1000);
        let ask = |i: u64| {
            if c.get(&k(i)).is_some() {
                return true;
            }
            c.insert(c.ticket(), k(i), Some(i), vec![format!("e{i}")], None);
            false
        };
        for _ in 0..2 {
            for i in 0..500 {
                ask(i);
            }
        }
        let hits = (0..500).filter(|i| ask(*i)).count();
        assert_eq!(hits, 500, "the third pass is answered from memory");
        assert!(c.len() <= 1000);
    }

    /// A key promoted out of the ghost queue and made a ghost again later
    /// is remembered from then on: the slot it left behind neither counts
    /// against the limit nor, leaving, takes the new ghost with it.
    #[test]
    fn a_ghost_is_forgotten_by_age_only() {
        let c = live(100);
        let mut inner = c.write();
        inner.add_ghost(k(1), 3);
        inner.add_ghost(k(2), 3);
        assert!(inner.take_ghost(&k(1)), "asked again: promoted");
        assert!(!inner.take_ghost(&k(1)), "once");
        inner.add_ghost(k(1), 3);
        inner.add_ghost(k(3), 3);
        for i in 1..=3 {
            assert!(inner.take_ghost(&k(i)), "ghost {i} is among the three latest");
        }
        for i in 10..20 {
            inner.add_ghost(k(i), 3);
        }
        assert!((10..17).all(|i| !inner.take_ghost(&k(i))) && (17..20).all(|i| inner.take_ghost(&k(i))), "the oldest go first");
    }

    #[test]
    fn refusals_have_their_own_bound() {
        let c = live(1000);
        c.insert(c.ticket(), k(1), Some(1), vec!["a".into()], None);
        c.get(&k(1));
        for i in 0..10_000 {
            c.insert(c.ticket(), k(100 + i), None, vec![], None);
        }
        assert!(c.len() <= 1 + 100);
        assert_eq!(c.get(&k(1)), Some(Some(1)));
    }

    #[test]
    fn concurrent_hits_never_see_an_entry_after_its_invalidation() {
        let c = std::sync::Arc::new(live(1000));
        for i in 0..100 {
            c.insert(c.ticket(), k(i), Some(i), vec![format!("e{i}")], None);
        }
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (c, stop) = (c.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut hits = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        hits += (0..100).filter(|i| c.get(&k(*i)).is_some()).count() as u64;
                    }
                    hits
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        for i in 0..100 {
            c.invalidate(&format!("e{i}"));
            assert_eq!(c.get(&k(i)), None, "entry {i} answered after its invalidation");
        }
        stop.store(true, Ordering::Relaxed);
        let hits: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert!(hits > 0, "the readers ran");
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn keys_are_hashes_of_all_parts() {
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]), "parts are length-prefixed");
        // Salted: not what anyone can compute from the credential alone.
        let mut plain = Sha256::new();
        plain.update(8u64.to_le_bytes());
        plain.update(b"tr_dev_x");
        assert_ne!(key(&[b"tr_dev_x"]), <[u8; 32]>::from(plain.finalize()));
        assert_eq!(key(&[b"tr_dev_x"]).len(), 32);
    }
}
