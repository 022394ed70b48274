//! What the dashboard (`/ui`) shows, from the ledger: recent rows and one
//! request's attempts, spend today and this month, savings against each
//! route's strongest model, traffic over time. The same SQL runs on the
//! SQLite file and on PostgreSQL (only the placeholders differ; every column
//! is cast to the type Rust reads); figures are computed here in Rust, so
//! both ledgers give the same numbers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::Serialize;
use sqlx::{Connection, Row};

use crate::api::usage::Usage;
use crate::config::Config;

/// Rows read at most by one scan (overview, savings, traffic); beyond it the
/// answer says `truncated`.
pub const MAX_SCAN_ROWS: i64 = 200_000;

/// Where the ledger is.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Sqlite(&'a Path),
    Pg(&'a sqlx::PgPool),
}

/// One ledger row, every column.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub id: i64,
    pub request_id: String,
    pub ts_ms: i64,
    pub key_name: Option<String>,
    pub endpoint: String,
    pub requested_model: String,
    pub served_model: String,
    pub provider: String,
    pub upstream_model: String,
    pub status: i64,
    pub stream: bool,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub cached_tokens: Option<i64>,
    pub cache_write_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub usage_estimated: bool,
    pub error: Option<String>,
    pub route: Option<String>,
    pub task: Option<String>,
    pub task_confidence: Option<f64>,
    pub complexity: Option<f64>,
    pub tier: Option<String>,
    pub route_reason: Option<String>,
    pub attempt: i64,
    pub experiment: Option<String>,
    pub arm: Option<String>,
    pub shadow: bool,
    pub parent_request_id: Option<String>,
    /// A shadow answer's text (only in a request's full record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    pub cache_hit: bool,
    pub saved_usd: Option<f64>,
}

/// The column list, cast so that SQLite and PostgreSQL decode alike.
/// `{output}` is `output` or `CAST(NULL AS TEXT)`.
fn columns(with_output: bool) -> String {
    format!(
        "CAST(id AS BIGINT), request_id, CAST(ts_ms AS BIGINT), key_name, endpoint, requested_model, \
         served_model, provider, upstream_model, CAST(status AS BIGINT), CAST(stream AS BIGINT), \
         CAST(latency_ms AS DOUBLE PRECISION), CAST(ttft_ms AS DOUBLE PRECISION), \
         CAST(prompt_tokens AS BIGINT), CAST(completion_tokens AS BIGINT), CAST(cached_tokens AS BIGINT), \
         CAST(cache_write_tokens AS BIGINT), CAST(reasoning_tokens AS BIGINT), \
         CAST(cost_usd AS DOUBLE PRECISION), CAST(usage_estimated AS BIGINT), error, route, task, \
         CAST(task_confidence AS DOUBLE PRECISION), CAST(complexity AS DOUBLE PRECISION), tier, \
         route_reason, CAST(attempt AS BIGINT), experiment, arm, CAST(shadow AS BIGINT), \
         parent_request_id, {}, CAST(cache_hit AS BIGINT), CAST(saved_usd AS DOUBLE PRECISION)",
        if with_output {
            "output"
        } else {
            "CAST(NULL AS TEXT)"
        }
    )
}

fn decode<R>(r: &R) -> Result<Record, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    f64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Record {
        id: r.try_get(0)?,
        request_id: r.try_get(1)?,
        ts_ms: r.try_get(2)?,
        key_name: r.try_get(3)?,
        endpoint: r.try_get(4)?,
        requested_model: r.try_get(5)?,
        served_model: r.try_get(6)?,
        provider: r.try_get(7)?,
        upstream_model: r.try_get(8)?,
        status: r.try_get(9)?,
        stream: r.try_get::<i64, _>(10)? != 0,
        latency_ms: r.try_get(11)?,
        ttft_ms: r.try_get(12)?,
        prompt_tokens: r.try_get(13)?,
        completion_tokens: r.try_get(14)?,
        cached_tokens: r.try_get(15)?,
        cache_write_tokens: r.try_get(16)?,
        reasoning_tokens: r.try_get(17)?,
        cost_usd: r.try_get(18)?,
        usage_estimated: r.try_get::<Option<i64>, _>(19)?.unwrap_or(0) != 0,
        error: r.try_get(20)?,
        route: r.try_get(21)?,
        task: r.try_get(22)?,
        task_confidence: r.try_get(23)?,
        complexity: r.try_get(24)?,
        tier: r.try_get(25)?,
        route_reason: r.try_get(26)?,
        attempt: r.try_get::<Option<i64>, _>(27)?.unwrap_or(1),
        experiment: r.try_get(28)?,
        arm: r.try_get(29)?,
        shadow: r.try_get::<Option<i64>, _>(30)?.unwrap_or(0) != 0,
        parent_request_id: r.try_get(31)?,
        output: r.try_get(32)?,
        cache_hit: r.try_get::<Option<i64>, _>(33)?.unwrap_or(0) != 0,
        saved_usd: r.try_get(34)?,
    })
}

/// A bound query parameter.
#[derive(Debug, Clone)]
enum Arg {
    Int(i64),
    Text(String),
}

/// `?` placeholders as PostgreSQL's `$1, $2, ...` (our SQL has no `?` in literals).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

async fn fetch(src: Source<'_>, sql: &str, args: &[Arg]) -> Result<Vec<Record>, String> {
    let fail = |e: sqlx::Error| format!("ledger query failed: {e}");
    match src {
        Source::Sqlite(path) => {
            use sqlx::ConnectOptions;
            let opts = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .read_only(true)
                .busy_timeout(std::time::Duration::from_secs(5))
                .disable_statement_logging();
            let mut conn = sqlx::SqliteConnection::connect_with(&opts)
                .await
                .map_err(|e| format!("cannot open ledger {}: {e}", path.display()))?;
            let mut q = sqlx::query(sql);
            for a in args {
                q = match a {
                    Arg::Int(i) => q.bind(*i),
                    Arg::Text(s) => q.bind(s.clone()),
                };
            }
            let rows = q.fetch_all(&mut conn).await.map_err(fail)?;
            let _ = conn.close().await;
            rows.iter().map(|r| decode(r).map_err(fail)).collect()
        }
        Source::Pg(pool) => {
            let sql = numbered(sql);
            let mut q = sqlx::query(&sql);
            for a in args {
                q = match a {
                    Arg::Int(i) => q.bind(*i),
                    Arg::Text(s) => q.bind(s.clone()),
                };
            }
            let rows = q.fetch_all(pool).await.map_err(fail)?;
            rows.iter().map(|r| decode(r).map_err(fail)).collect()
        }
    }
}

/// Rows with `since <= ts_ms < until`, oldest first, at most [`MAX_SCAN_ROWS`]
/// (the bool: more were there).
pub async fn rows_between(src: Source<'_>, since: i64, until: i64) -> Result<(Vec<Record>, bool), String> {
    let sql = format!(
        "SELECT {} FROM ledger WHERE ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms, id LIMIT ?",
        columns(false)
    );
    let mut rows = fetch(
        src,
        &sql,
        &[Arg::Int(since), Arg::Int(until), Arg::Int(MAX_SCAN_ROWS + 1)],
    )
    .await?;
    let truncated = rows.len() as i64 > MAX_SCAN_ROWS;
    rows.truncate(MAX_SCAN_ROWS as usize);
    Ok((rows, truncated))
}

/// Filters of the request list.
#[derive(Debug, Default, Clone)]
pub struct RequestFilter {
    pub key: Option<String>,
    /// Matches the served or the requested model.
    pub model: Option<String>,
    pub task: Option<String>,
    /// `ok` (below 400), `error` (400 and up) or one status code.
    pub status: Option<StatusFilter>,
    /// Rows with a smaller id (the next page).
    pub before_id: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Ok,
    Error,
    Code(i64),
}

impl StatusFilter {
    pub fn parse(s: &str) -> Option<StatusFilter> {
        match s {
            "ok" => Some(StatusFilter::Ok),
            "error" => Some(StatusFilter::Error),
            n => n
                .parse::<i64>()
                .ok()
                .filter(|c| (100..=999).contains(c))
                .map(StatusFilter::Code),
        }
    }
}

/// The most recent rows matching `f`, newest first.
pub async fn recent(src: Source<'_>, f: &RequestFilter) -> Result<Vec<Record>, String> {
    let mut sql = format!("SELECT {} FROM ledger WHERE 1 = 1", columns(false));
    let mut args = Vec::new();
    if let Some(k) = &f.key {
        sql.push_str(" AND key_name = ?");
        args.push(Arg::Text(k.clone()));
    }
    if let Some(m) = &f.model {
        sql.push_str(" AND (served_model = ? OR requested_model = ?)");
        args.push(Arg::Text(m.clone()));
        args.push(Arg::Text(m.clone()));
    }
    if let Some(t) = &f.task {
        sql.push_str(" AND task = ?");
        args.push(Arg::Text(t.clone()));
    }
    match f.status {
        Some(StatusFilter::Ok) => sql.push_str(" AND status < 400"),
        Some(StatusFilter::Error) => sql.push_str(" AND status >= 400"),
        Some(StatusFilter::Code(c)) => {
            sql.push_str(" AND status = ?");
            args.push(Arg::Int(c));
        }
        None => {}
    }
    if let Some(b) = f.before_id {
        sql.push_str(" AND id < ?");
        args.push(Arg::Int(b));
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    args.push(Arg::Int(f.limit));
    fetch(src, &sql, &args).await
}

/// Every row of one client request (its attempts, shadow copies of it too), oldest first.
pub async fn request(src: Source<'_>, request_id: &str) -> Result<Vec<Record>, String> {
    let sql = format!(
        "SELECT {} FROM ledger WHERE request_id = ? OR parent_request_id = ? ORDER BY id",
        columns(true)
    );
    fetch(
        src,
        &sql,
        &[Arg::Text(request_id.into()), Arg::Text(request_id.into())],
    )
    .await
}

/// Failed rows since `since`, newest first, at most `limit`.
pub async fn failures_since(src: Source<'_>, since: i64, limit: i64) -> Result<Vec<Record>, String> {
    let sql = format!(
        "SELECT {} FROM ledger WHERE ts_ms >= ? AND status >= 400 ORDER BY id DESC LIMIT ?",
        columns(false)
    );
    fetch(src, &sql, &[Arg::Int(since), Arg::Int(limit)]).await
}

// ---------------------------------------------------------------- figures

/// Client traffic: shadow copies are in the ledger and budgets but no client saw them.
fn client(r: &Record) -> bool {
    !r.shadow
}

/// Spend in a window.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Spend {
    /// Client requests (distinct request ids).
    pub requests: usize,
    /// Ledger rows (attempts and shadow calls).
    pub rows: usize,
    /// Everything charged, shadow calls included (what budgets count).
    pub cost_usd: f64,
    /// Rows whose cost is unknown (no price or no usage).
    pub unknown_cost_rows: usize,
}

pub fn spend(rows: &[Record]) -> Spend {
    let mut ids = HashSet::new();
    let mut s = Spend::default();
    for r in rows {
        s.rows += 1;
        if client(r) {
            ids.insert(r.request_id.as_str());
        }
        match r.cost_usd {
            Some(c) => s.cost_usd += c,
            None => s.unknown_cost_rows += 1,
        }
    }
    s.requests = ids.len();
    s
}

/// Cumulative spend at the end of each hour-long slice of `[start, end)`
/// that has begun by `now` (the Overview's line of the day).
pub fn cumulative(rows: &[Record], start: i64, end: i64, now: i64, slice_ms: i64) -> Vec<(i64, f64)> {
    let slice_ms = slice_ms.max(1);
    let mut out = Vec::new();
    let mut total = 0.0;
    let mut i = 0;
    let mut t = start;
    out.push((start, 0.0));
    while t < end && t < now {
        let next = (t + slice_ms).min(end).min(now.max(t + 1));
        // The last slice ends now, and holds what happened at `now` itself.
        let bound = if next >= now { now + 1 } else { next };
        while i < rows.len() && rows[i].ts_ms < bound {
            if rows[i].ts_ms >= start {
                total += rows[i].cost_usd.unwrap_or(0.0);
            }
            i += 1;
        }
        out.push((next, total));
        t = next;
    }
    out
}

/// The route's strongest model: the dearest (blended price) of every model
/// the route can serve; None for an unknown route.
pub fn strongest_model(cfg: &Config, route: &str) -> Option<String> {
    let r = cfg.routing.routes.get(route)?;
    let mut names: Vec<&String> = Vec::new();
    if let Some(p) = &r.predicted {
        names.extend(p.models.iter());
    }
    for t in &r.tasks {
        names.extend(t.chain.iter());
        if let Some(e) = &t.escalation {
            names.extend(e.chain.iter());
        }
    }
    names
        .into_iter()
        .filter_map(|n| {
            let m = cfg.models.get(n)?;
            Some((n, crate::routing::policy::blended_price(m)?))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(n, _)| n.clone())
}

fn usage_of(r: &Record) -> Option<Usage> {
    let n = |v: Option<i64>| v.map(|x| x.max(0) as u64);
    Some(Usage {
        prompt_tokens: n(r.prompt_tokens)?,
        completion_tokens: n(r.completion_tokens)?,
        cached_tokens: n(r.cached_tokens).unwrap_or(0),
        cache_write_tokens: n(r.cache_write_tokens).unwrap_or(0),
        reasoning_tokens: n(r.reasoning_tokens).unwrap_or(0),
    })
}

/// Actual against counterfactual cost of one group.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct SavingsLine {
    pub group: String,
    pub requests: usize,
    /// What the rows cost (cache hits: 0).
    pub actual_usd: f64,
    /// What the same tokens would have cost on the route's strongest model.
    pub counterfactual_usd: f64,
    pub saved_usd: f64,
    /// Rows left out: no usage, or no price for the actual or the strongest model.
    pub unpriced_rows: usize,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Savings {
    pub total: SavingsLine,
    pub by_day: Vec<SavingsLine>,
    pub by_task: Vec<SavingsLine>,
    pub by_route: Vec<SavingsLine>,
    /// route -> its strongest model (as priced from the current config).
    pub strongest: BTreeMap<String, String>,
}

/// Savings of client rows: each priced at its route's strongest model
/// (rows sent to a model directly are their own counterfactual). `day_of`
/// names a row's day.
pub fn savings(cfg: &Config, rows: &[Record], day_of: &dyn Fn(i64) -> String) -> Savings {
    let mut strongest: HashMap<String, Option<String>> = HashMap::new();
    let mut total = SavingsLine {
        group: "total".into(),
        ..Default::default()
    };
    let mut ids: HashMap<String, HashSet<String>> = HashMap::new();
    let mut groups: [BTreeMap<String, SavingsLine>; 3] = Default::default();
    for r in rows.iter().filter(|r| client(r)) {
        let keys = [
            day_of(r.ts_ms),
            r.task.clone().unwrap_or_else(|| "(none)".into()),
            r.route.clone().unwrap_or_else(|| "(none)".into()),
        ];
        let strong = match &r.route {
            Some(route) => strongest
                .entry(route.clone())
                .or_insert_with(|| strongest_model(cfg, route))
                .clone()
                .unwrap_or_else(|| r.served_model.clone()),
            None => r.served_model.clone(),
        };
        let actual = if r.cache_hit {
            Some(r.cost_usd.unwrap_or(0.0))
        } else {
            r.cost_usd
        };
        let price = cfg.models.get(&strong).and_then(|m| m.price);
        let counter = match (usage_of(r), price) {
            (Some(u), Some(p)) => Some(p.cost(&u)),
            _ => None,
        };
        let mut add = |line: &mut SavingsLine, tag: &str| {
            match (actual, counter) {
                (Some(a), Some(c)) => {
                    line.actual_usd += a;
                    line.counterfactual_usd += c;
                    line.saved_usd += c - a;
                }
                _ => line.unpriced_rows += 1,
            }
            ids.entry(tag.to_string())
                .or_default()
                .insert(r.request_id.clone());
        };
        add(&mut total, "total");
        for (i, k) in keys.iter().enumerate() {
            let line = groups[i].entry(k.clone()).or_insert_with(|| SavingsLine {
                group: k.clone(),
                ..Default::default()
            });
            add(line, &format!("{i}/{k}"));
        }
    }
    total.requests = ids.get("total").map_or(0, HashSet::len);
    let [days, tasks, routes] = groups;
    let finish = |i: usize, m: BTreeMap<String, SavingsLine>| -> Vec<SavingsLine> {
        m.into_values()
            .map(|mut l| {
                l.requests = ids.get(&format!("{i}/{}", l.group)).map_or(0, HashSet::len);
                l
            })
            .collect()
    };
    let mut by_task = finish(1, tasks);
    by_task.sort_by(|a, b| b.saved_usd.total_cmp(&a.saved_usd));
    Savings {
        total,
        by_day: finish(0, days),
        by_task,
        by_route: finish(2, routes),
        strongest: strongest.into_iter().filter_map(|(k, v)| Some((k, v?))).collect(),
    }
}

/// How traffic is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Model,
    Provider,
    Task,
    Tier,
    Key,
    Route,
    None,
}

impl Split {
    pub fn parse(s: &str) -> Option<Split> {
        Some(match s {
            "model" => Split::Model,
            "provider" => Split::Provider,
            "task" => Split::Task,
            "tier" => Split::Tier,
            "key" => Split::Key,
            "route" => Split::Route,
            "none" => Split::None,
            _ => return None,
        })
    }

    fn of(self, r: &Record) -> String {
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        match self {
            Split::Model => r.served_model.clone(),
            Split::Provider => r.provider.clone(),
            Split::Task => or_none(&r.task),
            Split::Tier => or_none(&r.tier),
            Split::Key => or_none(&r.key_name),
            Split::Route => or_none(&r.route),
            Split::None => "all".into(),
        }
    }
}

/// Traffic figures of one group in one time bucket (or overall).
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct TrafficPoint {
    pub ts_ms: i64,
    /// Client requests (distinct request ids).
    pub requests: usize,
    /// Upstream attempts (ledger rows).
    pub attempts: usize,
    /// Rows with status 400 or above (client hang-ups, 499, included).
    pub errors: usize,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// Median time to first token of streamed rows.
    pub ttft_p50_ms: Option<f64>,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrafficSeries {
    pub group: String,
    pub total: TrafficPoint,
    pub points: Vec<TrafficPoint>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TierShare {
    pub tier: String,
    pub requests: usize,
    pub share: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Traffic {
    pub since: i64,
    pub until: i64,
    pub bucket_ms: i64,
    pub total: TrafficPoint,
    pub series: Vec<TrafficSeries>,
    /// Share of routed requests per tier.
    pub tiers: Vec<TierShare>,
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn point<'a>(ts_ms: i64, rows: impl Iterator<Item = &'a Record>) -> TrafficPoint {
    let mut ids = HashSet::new();
    let mut lat = Vec::new();
    let mut ttft = Vec::new();
    let mut p = TrafficPoint {
        ts_ms,
        ..Default::default()
    };
    for r in rows {
        ids.insert(r.request_id.as_str());
        p.attempts += 1;
        if r.status >= 400 {
            p.errors += 1;
        }
        lat.push(r.latency_ms);
        if let Some(t) = r.ttft_ms {
            ttft.push(t);
        }
        p.cost_usd += r.cost_usd.unwrap_or(0.0);
    }
    lat.sort_by(f64::total_cmp);
    ttft.sort_by(f64::total_cmp);
    p.requests = ids.len();
    p.p50_ms = pct(&lat, 0.5);
    p.p95_ms = pct(&lat, 0.95);
    p.ttft_p50_ms = pct(&ttft, 0.5);
    p
}

/// Client traffic in `[since, until)` in `buckets` equal buckets, split by `by`
/// (the `max_groups - 1` busiest groups, the rest as `(other)`).
pub fn traffic(
    rows: &[Record],
    since: i64,
    until: i64,
    buckets: i64,
    by: Split,
    max_groups: usize,
) -> Traffic {
    let buckets = buckets.clamp(1, 500);
    let bucket_ms = ((until - since) / buckets).max(1);
    let rows: Vec<&Record> = rows.iter().filter(|r| client(r)).collect();
    let mut groups: HashMap<String, Vec<&Record>> = HashMap::new();
    for r in &rows {
        groups.entry(by.of(r)).or_default().push(r);
    }
    let mut names: Vec<(String, usize)> = groups.iter().map(|(k, v)| (k.clone(), v.len())).collect();
    names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let max_groups = max_groups.max(1);
    if names.len() > max_groups {
        let mut other = Vec::new();
        for (n, _) in names.drain(max_groups - 1..) {
            other.extend(groups.remove(&n).unwrap_or_default());
        }
        other.sort_by_key(|r| (r.ts_ms, r.id));
        groups.insert("(other)".into(), other);
        names.push(("(other)".into(), 0));
    }
    let series = names
        .iter()
        .map(|(name, _)| {
            let g = groups.get(name).map(Vec::as_slice).unwrap_or(&[]);
            let points = (0..buckets)
                .map(|b| {
                    let lo = since + b * bucket_ms;
                    let hi = if b == buckets - 1 { until } else { lo + bucket_ms };
                    point(lo, g.iter().copied().filter(|r| r.ts_ms >= lo && r.ts_ms < hi))
                })
                .collect();
            TrafficSeries {
                group: name.clone(),
                total: point(since, g.iter().copied()),
                points,
            }
        })
        .collect();
    let mut tier_ids: BTreeMap<String, HashSet<&str>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.route.is_some()) {
        tier_ids
            .entry(r.tier.clone().unwrap_or_else(|| "(none)".into()))
            .or_default()
            .insert(r.request_id.as_str());
    }
    let routed: usize = tier_ids.values().map(HashSet::len).sum();
    let tiers = tier_ids
        .into_iter()
        .map(|(tier, ids)| TierShare {
            tier,
            requests: ids.len(),
            share: if routed > 0 {
                ids.len() as f64 / routed as f64
            } else {
                0.0
            },
        })
        .collect();
    Traffic {
        since,
        until,
        bucket_ms,
        total: point(since, rows.iter().copied()),
        series,
        tiers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: i64, ts: i64, status: i64, latency: f64) -> Record {
        Record {
            id,
            request_id: format!("r{id}"),
            ts_ms: ts,
            key_name: None,
            endpoint: "chat".into(),
            requested_model: "m".into(),
            served_model: "m".into(),
            provider: "p".into(),
            upstream_model: "m".into(),
            status,
            stream: false,
            latency_ms: latency,
            ttft_ms: None,
            prompt_tokens: Some(1000),
            completion_tokens: Some(100),
            cached_tokens: None,
            cache_write_tokens: None,
            reasoning_tokens: None,
            cost_usd: Some(0.5),
            usage_estimated: false,
            error: None,
            route: None,
            task: None,
            task_confidence: None,
            complexity: None,
            tier: None,
            route_reason: None,
            attempt: 1,
            experiment: None,
            arm: None,
            shadow: false,
            parent_request_id: None,
            output: None,
            cache_hit: false,
            saved_usd: None,
        }
    }

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(numbered("a = ? AND b < ?"), "a = $1 AND b < $2");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pct(&v, 0.5), Some(50.0));
        assert_eq!(pct(&v, 0.95), Some(95.0));
        assert_eq!(pct(&[7.0], 0.95), Some(7.0));
        assert_eq!(pct(&[], 0.5), None);
    }

    #[test]
    fn traffic_buckets_and_errors() {
        let rows = vec![
            rec(1, 0, 200, 10.0),
            rec(2, 50, 502, 30.0),
            rec(3, 150, 200, 20.0),
        ];
        let t = traffic(&rows, 0, 200, 2, Split::None, 8);
        assert_eq!(t.bucket_ms, 100);
        assert_eq!(t.total.requests, 3);
        assert_eq!(t.total.errors, 1);
        assert_eq!(t.series[0].points[0].requests, 2);
        assert_eq!(t.series[0].points[0].p95_ms, Some(30.0));
        assert_eq!(t.series[0].points[1].requests, 1);
    }

    #[test]
    fn cumulative_stops_at_now() {
        let rows = vec![rec(1, 10, 200, 1.0), rec(2, 150, 200, 1.0)];
        let c = cumulative(&rows, 0, 1000, 200, 100);
        assert_eq!(c, vec![(0, 0.0), (100, 0.5), (200, 1.0)]);
    }
}
