//! A compiled plan in use by one VM, with what goes with it there: the
//! stats defined so far, counters not yet handed to Envoy, the prefix of the
//! plugin's shared-data keys and the per-process secret of per-client limits.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use super::abi;
use crate::config::Plan;
use crate::ratelimit::Secret;
use crate::stats::{FailoverStat, Stat, TokenStat, ToolStat};

/// A token counter: entry index, model label, input or output.
type TokenKey = (usize, String, TokenStat);

pub struct Active {
    pub plan: Plan,
    /// Metric ids per entry and stat, defined on first use: defining every
    /// stat of 10,000 agents up front would slow start-up for stats nobody hits.
    metrics: RefCell<Vec<[Option<u32>; Stat::COUNT]>>,
    /// Prefix of this plugin's shared-data keys: shared data is per VM id,
    /// and Istio sets none, so every key carries the plugin's name.
    pub key_prefix: String,
    /// Counter increments not yet handed to Envoy: a host call per request
    /// for a counter measurably slows the hot path, so counters are summed
    /// here and flushed once a second (`on_tick`).
    pending: RefCell<HashMap<(usize, Stat), i64>>,
    /// Token counters per entry and model label: increments not yet
    /// flushed, and the metric ids defined so far. Labels come from the
    /// configuration (`observe::model_label`), so both stay bounded.
    pending_tokens: RefCell<HashMap<TokenKey, i64>>,
    token_metrics: RefCell<HashMap<TokenKey, Option<u32>>>,
    /// Per-tool counters of MCP entries, by (entry, label, stat): metric
    /// ids once defined, and increments not yet handed to Envoy.
    tool_metrics: RefCell<HashMap<(usize, usize, ToolStat), Option<u32>>>,
    pending_tools: RefCell<HashMap<(usize, usize, ToolStat), i64>>,
    /// The per-client hash key, read from shared data on first use.
    secret: Cell<Option<Secret>>,
    /// The rate limit service as `proxy_grpc_call` takes it.
    pub limit_service: Option<Vec<u8>>,
    /// Some entry keeps per-client buckets or in-flight limits.
    client_slots: bool,
    /// Pages of client slots per per-client limit (fewer when the plan has
    /// many such limits; see `ratelimit::pages_per_limit`).
    client_pages: u32,
    /// Entries with an in-flight limit, whose gauge the tick records.
    limited: Vec<usize>,
    /// Where the next tick's round of gauges starts.
    gauge_cursor: Cell<usize>,
    /// Gauge values this VM last recorded, by entry and gauge.
    recorded: RefCell<HashMap<(usize, Stat), u64>>,
    /// Per-backend failover counters by (entry, backend label index):
    /// metric ids once defined, and increments not yet handed to Envoy.
    failover_metrics: RefCell<HashMap<(usize, usize, FailoverStat), Option<u32>>>,
    pending_failover: RefCell<HashMap<(usize, usize, FailoverStat), i64>>,
    /// Entries with failover, whose ejected-backends gauge the tick records.
    failing_over: Vec<usize>,
    /// The ejection records this VM knows (`failover::peers`): what
    /// requests ask, kept current by the other VMs' messages.
    pub ejections: RefCell<crate::failover::peers::Ejections>,
    /// This VM's queue for those messages, once registered.
    pub peer_queue: Cell<Option<u32>>,
}

impl Active {
    pub fn new(plan: Plan) -> Self {
        let metrics = RefCell::new(vec![[None; Stat::COUNT]; plan.entries.len()]);
        let limit_service = plan
            .rate_limit_service
            .as_ref()
            .map(|s| crate::rls::grpc_service(&s.cluster));
        let key_prefix = key_prefix();
        ensure_secret(&key_prefix);
        let per_client_limits: usize = plan
            .entries
            .iter()
            .filter_map(|e| e.rate_limit.as_ref())
            .filter(|l| l.per != crate::config::Per::Entry)
            .map(|l| match &l.scope {
                crate::config::Scope::Local { requests, tokens } => {
                    usize::from(requests.is_some()) + usize::from(tokens.is_some())
                }
                crate::config::Scope::Global { .. } => 0,
            })
            .sum();
        // Per-client in-flight limits hash clients with the secret too.
        let per_client_concurrency = plan.entries.iter().any(|e| {
            e.concurrency
                .as_ref()
                .is_some_and(|c| c.per != crate::config::Per::Entry)
        });
        let limited = (0..plan.entries.len())
            .filter(|&i| plan.entries.get(i).is_some_and(|e| e.concurrency.is_some()))
            .collect();
        let failing_over = (0..plan.entries.len())
            .filter(|&i| plan.entries.get(i).is_some_and(|e| e.failover.is_some()))
            .collect();
        Active {
            failover_metrics: RefCell::new(HashMap::new()),
            pending_failover: RefCell::new(HashMap::new()),
            failing_over,
            ejections: RefCell::new(Default::default()),
            peer_queue: Cell::new(None),
            client_slots: per_client_limits > 0 || per_client_concurrency,
            client_pages: crate::ratelimit::pages_per_limit(per_client_limits),
            limited,
            gauge_cursor: Cell::new(0),
            recorded: RefCell::new(HashMap::new()),
            plan,
            metrics,
            key_prefix,
            pending: RefCell::new(HashMap::new()),
            pending_tokens: RefCell::new(HashMap::new()),
            token_metrics: RefCell::new(HashMap::new()),
            tool_metrics: RefCell::new(HashMap::new()),
            pending_tools: RefCell::new(HashMap::new()),
            secret: Cell::new(None),
            limit_service,
        }
    }

    /// Counts `delta` for a stat: gauges at once, counters at the next flush.
    pub fn bump(&self, entry: usize, stat: Stat, delta: i64) {
        if stat.is_gauge() {
            self.record(entry, stat, delta);
        } else {
            *self.pending.borrow_mut().entry((entry, stat)).or_default() += delta;
        }
    }

    /// Counts tokens of `entry` under a model label, at the next flush.
    pub fn count_tokens(&self, entry: usize, model: &str, stat: TokenStat, tokens: u64) {
        if tokens == 0 {
            return;
        }
        let delta = i64::try_from(tokens).unwrap_or(i64::MAX);
        let mut pending = self.pending_tokens.borrow_mut();
        let key = (entry, model.to_string(), stat);
        let slot = pending.entry(key).or_default();
        *slot = slot.saturating_add(delta);
    }

    pub fn flush(&self) {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for ((entry, stat), delta) in pending {
            self.record(entry, stat, delta);
        }
        let tokens = std::mem::take(&mut *self.pending_tokens.borrow_mut());
        for (key, delta) in tokens {
            if let Some(id) = self.token_metric(key) {
                let _ = hostcalls::increment_metric(id, delta);
            }
        }
        let failover = std::mem::take(&mut *self.pending_failover.borrow_mut());
        for (key, delta) in failover {
            if let Some(id) = self.failover_metric(key) {
                let _ = hostcalls::increment_metric(id, delta);
            }
        }
        let tools = std::mem::take(&mut *self.pending_tools.borrow_mut());
        for (key, delta) in tools {
            if let Some(id) = self.tool_metric(key) {
                let _ = hostcalls::increment_metric(id, delta);
            }
        }
    }

    fn token_metric(&self, key: TokenKey) -> Option<u32> {
        let mut metrics = self.token_metrics.borrow_mut();
        if let Some(id) = metrics.get(&key) {
            return *id;
        }
        let (entry, model, stat) = &key;
        let name = stat.name(self.plan.entries.get(*entry)?, model);
        let id = abi::define_metric(0, &name).ok();
        metrics.insert(key, id);
        id
    }

    /// Counts one call, refusal or limit of a tool (by its label), at the
    /// next flush.
    pub fn bump_tool(&self, entry: usize, label: usize, stat: ToolStat) {
        *self
            .pending_tools
            .borrow_mut()
            .entry((entry, label, stat))
            .or_default() += 1;
    }

    fn tool_metric(&self, key: (usize, usize, ToolStat)) -> Option<u32> {
        let (entry, label, stat) = key;
        let mut metrics = self.tool_metrics.borrow_mut();
        if let Some(id) = metrics.get(&key) {
            return *id;
        }
        let e = self.plan.entries.get(entry)?;
        let label = e.mcp.as_ref()?.labels.get(label)?;
        let id = abi::define_metric(0, &stat.name(e, label)).ok();
        metrics.insert(key, id);
        id
    }

    /// Counts an ejection of, or a retry on, the backend `label` (an
    /// index into `failover::candidates(entry, true)`), at the next flush.
    pub fn bump_failover(&self, entry: usize, label: usize, stat: FailoverStat) {
        *self
            .pending_failover
            .borrow_mut()
            .entry((entry, label, stat))
            .or_default() += 1;
    }

    fn failover_metric(&self, key: (usize, usize, FailoverStat)) -> Option<u32> {
        let (entry, label, stat) = key;
        let mut metrics = self.failover_metrics.borrow_mut();
        if let Some(id) = metrics.get(&key) {
            return *id;
        }
        let e = self.plan.entries.get(entry)?;
        let backend = *crate::failover::candidates(e, true).get(label)?;
        let id = abi::define_metric(0, &stat.name(e, backend)).ok();
        metrics.insert(key, id);
        id
    }

    /// Entries with failover.
    pub fn failing_over(&self) -> &[usize] {
        &self.failing_over
    }

    /// Sets a gauge to `value` (a count read from shared data), unless this
    /// VM last set it to the same.
    pub fn set_gauge(&self, entry: usize, stat: Stat, value: u64) {
        if self.recorded.borrow().get(&(entry, stat)) == Some(&value) {
            return;
        }
        if let Some(id) = self.metric(entry, stat) {
            if hostcalls::record_metric(id, value).is_ok() {
                self.recorded.borrow_mut().insert((entry, stat), value);
            }
        }
    }

    /// Entries with an in-flight limit.
    pub fn limited_entries(&self) -> &[usize] {
        &self.limited
    }

    /// Where this round of `budget` gauges (of `len`) starts; the next
    /// round starts after it.
    pub fn next_gauge(&self, len: usize, budget: usize) -> usize {
        let start = self.gauge_cursor.get() % len.max(1);
        self.gauge_cursor.set((start + budget) % len.max(1));
        start
    }

    fn record(&self, entry: usize, stat: Stat, delta: i64) {
        if let Some(id) = self.metric(entry, stat) {
            // NotFound and BadArgument come back as errors, not panics.
            let _ = hostcalls::increment_metric(id, delta);
        }
    }

    fn metric(&self, entry: usize, stat: Stat) -> Option<u32> {
        let mut metrics = self.metrics.borrow_mut();
        let slot = metrics.get_mut(entry)?.get_mut(stat.index())?;
        if slot.is_none() {
            let kind = u32::from(stat.is_gauge());
            let name = stat.name(self.plan.entries.get(entry)?);
            *slot = abi::define_metric(kind, &name).ok();
        }
        *slot
    }

    /// The key of per-client buckets: made once per Envoy process at random
    /// and shared by its workers through shared data.
    pub fn secret(&self) -> Option<Secret> {
        if let Some(s) = self.secret.get() {
            return Some(s);
        }
        self.refresh_secret()
    }

    /// Reads the stored secret again (every tick). Shared data has no
    /// create-if-absent: workers starting together may each store one, the
    /// last write winning, and a worker that hashed a client with an earlier
    /// one would put it in another slot than its peers. Re-reading every
    /// second makes every worker use the winner within a second of the last
    /// write (README: Rate limiting).
    pub fn refresh_secret(&self) -> Option<Secret> {
        let (value, _) = hostcalls::get_shared_data(&secret_key(&self.key_prefix)).ok()?;
        let secret = Secret(<[u8; 16]>::try_from(value?.as_slice()).ok()?);
        self.secret.set(Some(secret));
        Some(secret)
    }
}

impl Active {
    /// Whether any entry keeps per-client buckets (and so needs the secret).
    pub fn uses_client_slots(&self) -> bool {
        self.client_slots
    }

    /// Pages of client slots for each per-client limit of this plan.
    pub fn client_pages(&self) -> u32 {
        self.client_pages
    }

    /// Shared-data key saying that Envoy delivers paused requests' bodies.
    pub fn bodies_key(&self) -> String {
        format!("{}/bodies-arrive", self.key_prefix)
    }
}

fn key_prefix() -> String {
    let name = abi::get_property(&["plugin_name"])
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    format!("agentroute/{name}")
}

fn secret_key(prefix: &str) -> String {
    format!("{prefix}/client-secret")
}

/// Writes a random secret unless one is stored: the first VM of the process
/// makes it. Workers starting at the same moment may each write one; the last
/// write wins and all read it at first use.
fn ensure_secret(prefix: &str) {
    let key = secret_key(prefix);
    if let Ok((Some(_), _)) = hostcalls::get_shared_data(&key) {
        return;
    }
    // std's RandomState is seeded from the host's random source (WASI
    // random_get); two of them hashing nothing give 128 random bits.
    let mut secret = [0u8; 16];
    let (a, b) = secret.split_at_mut(8);
    a.copy_from_slice(&RandomState::new().hash_one(0u8).to_le_bytes());
    b.copy_from_slice(&RandomState::new().hash_one(1u8).to_le_bytes());
    match hostcalls::set_shared_data(&key, Some(&secret), None) {
        Ok(()) | Err(Status::CasMismatch) => {}
        Err(e) => log::warn!("cannot store the per-client secret: {e:?}"),
    }
}
