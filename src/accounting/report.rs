//! `switchyard report`: spend, requests and tokens from the ledger, grouped
//! by task, model, provider, key, route or day.

use std::path::Path;

use serde::Serialize;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Row, SqliteConnection};

/// What to group by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Task,
    Model,
    Provider,
    Key,
    Route,
    /// Route and the tier it chose (`auto/frontier`): the live share of each tier.
    Tier,
    Day,
    /// The value of this tag on the request's virtual key (`tag:team`).
    Tag(String),
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        if let Some(tag) = s.strip_prefix("tag:") {
            let ok = !tag.is_empty()
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            return ok.then(|| GroupBy::Tag(tag.to_string()));
        }
        Some(match s {
            "task" => GroupBy::Task,
            "model" => GroupBy::Model,
            "provider" => GroupBy::Provider,
            "key" => GroupBy::Key,
            "route" => GroupBy::Route,
            "tier" => GroupBy::Tier,
            "day" => GroupBy::Day,
            _ => return None,
        })
    }

    /// The SQL expression of the group (a fixed string: never user input;
    /// a tag name is bound as the query's first parameter).
    fn column(&self) -> &'static str {
        match self {
            GroupBy::Tag(_) => {
                "COALESCE((SELECT json_extract(k.tags, '$.\"' || ?1 || '\"') FROM api_keys k \
                 WHERE k.name = ledger.key_name ORDER BY k.created_ms DESC LIMIT 1), '(none)')"
            }
            GroupBy::Task => "COALESCE(task, '(none)')",
            GroupBy::Model => "served_model",
            GroupBy::Provider => "provider",
            GroupBy::Key => "COALESCE(key_name, '(none)')",
            GroupBy::Route => "COALESCE(route, '(none)')",
            GroupBy::Tier => "COALESCE(route, '(none)') || '/' || COALESCE(tier, '(none)')",
            GroupBy::Day => "strftime('%Y-%m-%d', ts_ms / 1000, 'unixepoch')",
        }
    }
}

impl GroupBy {
    /// [`GroupBy::column`] in PostgreSQL's dialect; None for tags (the
    /// virtual keys, which hold them, are not on PostgreSQL yet).
    fn pg_column(&self) -> Option<&'static str> {
        Some(match self {
            GroupBy::Tag(_) => return None,
            GroupBy::Day => "to_char(to_timestamp(ts_ms / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
            other => other.column(),
        })
    }
}

/// [`report`] over a PostgreSQL ledger.
pub async fn report_pg(
    pool: &sqlx::PgPool,
    by: GroupBy,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<Vec<ReportRow>, String> {
    let Some(g) = by.pg_column() else {
        return Err("grouping by tag is not available on a PostgreSQL ledger yet".into());
    };
    let sql = format!(
        "SELECT {g} AS grp, COUNT(DISTINCT request_id), COUNT(*), COALESCE(SUM(prompt_tokens), 0)::BIGINT, \
         COALESCE(SUM(completion_tokens), 0)::BIGINT, \
         COALESCE(SUM(CASE WHEN cache_hit = 1 THEN 0 ELSE cached_tokens END), 0)::BIGINT, \
         COALESCE(SUM(cost_usd), 0.0)::DOUBLE PRECISION, \
         SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END)::BIGINT, \
         COALESCE(SUM(cache_hit), 0)::BIGINT, COALESCE(SUM(saved_usd), 0.0)::DOUBLE PRECISION \
         FROM ledger WHERE ts_ms >= $1 AND ts_ms < $2 GROUP BY grp ORDER BY 7 DESC, grp"
    );
    let rows = sqlx::query(&sql)
        .bind(since.unwrap_or(i64::MIN))
        .bind(until.unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await
        .map_err(|e| format!("ledger query failed: {e}"))?;
    Ok(rows.iter().map(report_row).collect())
}

/// A report row from the query's eight columns (either database).
fn report_row<R>(r: &R) -> ReportRow
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    f64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let requests: i64 = r.get(1);
    let cost: f64 = r.get(6);
    ReportRow {
        group: r.get(0),
        requests,
        attempts: r.get(2),
        prompt_tokens: r.get(3),
        completion_tokens: r.get(4),
        cached_tokens: r.get(5),
        cost_usd: cost,
        cost_per_request_usd: if requests > 0 { cost / requests as f64 } else { 0.0 },
        unknown_cost_rows: r.get(7),
        cache_hits: r.get(8),
        saved_usd: r.get(9),
    }
}

/// One row of the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReportRow {
    pub group: String,
    /// Client requests (distinct request ids).
    pub requests: i64,
    /// Upstream attempts (ledger rows); more than `requests` when retries or fallbacks happened.
    pub attempts: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_usd: f64,
    pub cost_per_request_usd: f64,
    /// Rows whose cost is unknown (no price, or no usage): not counted in `cost_usd`.
    pub unknown_cost_rows: i64,
    /// Requests answered from the exact response cache (cost 0).
    pub cache_hits: i64,
    /// What those cache hits' original calls cost.
    pub saved_usd: f64,
}

/// Parses `YYYY-MM-DD` (UTC midnight) or an integer of Unix milliseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let parts: Vec<&str> = s.split('-').collect();
    let bad = || format!("{s:?} is not YYYY-MM-DD or Unix milliseconds");
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let (y, m, d): (i64, i64, i64) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let days = days_from_civil(y, m, d).ok_or_else(bad)?;
    Ok(days * 86_400_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date, UTC; `None` for a
/// date that does not exist (February 30).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(y).ok()?,
        u32::try_from(m).ok()?,
        u32::try_from(d).ok()?,
    )?;
    Some(
        date.signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?)
            .num_days(),
    )
}

async fn open_read_only(path: &Path) -> Result<SqliteConnection, String> {
    use sqlx::ConnectOptions;
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .disable_statement_logging();
    SqliteConnection::connect_with(&opts)
        .await
        .map_err(|e| format!("cannot open ledger {}: {e}", path.display()))
}

/// Runs the report over the ledger at `path`, for rows with `since <= ts_ms < until`.
pub async fn report(
    path: &Path,
    by: GroupBy,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<Vec<ReportRow>, String> {
    let mut conn = open_read_only(path).await?;
    if let GroupBy::Tag(_) = &by {
        let has_keys: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'api_keys'",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(|e| format!("ledger query failed: {e}"))?;
        if has_keys == 0 {
            return Err("this ledger has no virtual keys, so no tags to group by".into());
        }
    }
    let tag = match &by {
        GroupBy::Tag(t) => t.clone(),
        _ => String::new(),
    };
    // Ledgers written before the response cache have no cache columns.
    let has_cache: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM pragma_table_info('ledger') WHERE name = 'saved_usd'")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| format!("ledger query failed: {e}"))?;
    let has_cache = has_cache > 0;
    let sql = format!(
        "SELECT {g} AS grp, COUNT(DISTINCT request_id), COUNT(*), COALESCE(SUM(prompt_tokens), 0), \
         COALESCE(SUM(completion_tokens), 0), {cached}, COALESCE(SUM(cost_usd), 0.0), \
         SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END), {hits}, {saved} \
         FROM ledger WHERE ts_ms >= ?2 AND ts_ms < ?3 GROUP BY grp ORDER BY 7 DESC, grp",
        g = by.column(),
        // A response-cache hit's usage is the original call's: its cached tokens were not read from a provider.
        cached = if has_cache {
            "COALESCE(SUM(CASE WHEN cache_hit = 1 THEN 0 ELSE cached_tokens END), 0)"
        } else {
            "COALESCE(SUM(cached_tokens), 0)"
        },
        hits = if has_cache {
            "COALESCE(SUM(cache_hit), 0)"
        } else {
            "0"
        },
        saved = if has_cache {
            "COALESCE(SUM(saved_usd), 0.0)"
        } else {
            "0.0"
        },
    );
    let rows = sqlx::query(&sql)
        .bind(tag)
        .bind(since.unwrap_or(i64::MIN))
        .bind(until.unwrap_or(i64::MAX))
        .fetch_all(&mut conn)
        .await
        .map_err(|e| format!("ledger query failed: {e}"))?;
    Ok(rows.iter().map(report_row).collect())
}

/// A plain-text table, with a total line.
pub fn to_table(by: GroupBy, rows: &[ReportRow]) -> String {
    let name = match &by {
        GroupBy::Tag(t) => format!("tag:{t}"),
        other => format!("{other:?}").to_lowercase(),
    };
    let mut out = format!(
        "{:<28} {:>9} {:>9} {:>13} {:>13} {:>12} {:>14} {:>8} {:>10} {:>12} {:>11}\n",
        name,
        "requests",
        "attempts",
        "prompt_tok",
        "output_tok",
        "cost_usd",
        "usd/request",
        "no_cost",
        "cache_hits",
        "saved_usd",
        "cached_tok%"
    );
    let mut t = ReportRow {
        group: "TOTAL".into(),
        requests: 0,
        attempts: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        cached_tokens: 0,
        cost_usd: 0.0,
        cost_per_request_usd: 0.0,
        unknown_cost_rows: 0,
        cache_hits: 0,
        saved_usd: 0.0,
    };
    for r in rows.iter() {
        t.requests += r.requests;
        t.attempts += r.attempts;
        t.prompt_tokens += r.prompt_tokens;
        t.completion_tokens += r.completion_tokens;
        t.cached_tokens += r.cached_tokens;
        t.cost_usd += r.cost_usd;
        t.unknown_cost_rows += r.unknown_cost_rows;
        t.cache_hits += r.cache_hits;
        t.saved_usd += r.saved_usd;
    }
    t.cost_per_request_usd = if t.requests > 0 {
        t.cost_usd / t.requests as f64
    } else {
        0.0
    };
    for r in rows.iter().chain(std::iter::once(&t)) {
        out.push_str(&format!(
            "{:<28} {:>9} {:>9} {:>13} {:>13} {:>12.6} {:>14.8} {:>8} {:>10} {:>12.6} {:>10.1}%\n",
            r.group,
            r.requests,
            r.attempts,
            r.prompt_tokens,
            r.completion_tokens,
            r.cost_usd,
            r.cost_per_request_usd,
            r.unknown_cost_rows,
            r.cache_hits,
            r.saved_usd,
            100.0 * r.cached_tokens as f64 / r.prompt_tokens.max(1) as f64
        ));
    }
    if matches!(by, GroupBy::Tier) {
        // Each tier's share of its route's requests.
        let route_of = |g: &str| g.rsplit_once('/').map_or(g.to_string(), |(r, _)| r.to_string());
        let mut totals: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
        for r in rows {
            *totals.entry(route_of(&r.group)).or_default() += r.requests;
        }
        out.push_str("share of the route's requests:");
        for r in rows {
            let all = totals.get(&route_of(&r.group)).copied().unwrap_or(0).max(1);
            out.push_str(&format!(
                " {} {:.1}%",
                r.group,
                100.0 * r.requests as f64 / all as f64
            ));
        }
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------
// Token drift: `switchyard report --drift`
// ---------------------------------------------------------------------------

/// Default drift threshold, percent.
pub const DEFAULT_DRIFT_THRESHOLD_PCT: f64 = 30.0;
const WEEK_MS: i64 = 7 * 86_400_000;

/// Parses `--drift-threshold`: a percentage, `30` or `30%`.
pub fn parse_threshold(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let num = t.strip_suffix('%').unwrap_or(t).trim();
    match num.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!(
            "--drift-threshold {s:?}: give a positive percentage such as 30 or 30%"
        )),
    }
}

/// Tokens per request of one model and task in one week.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct WeekTokens {
    /// Ledger rows with usage (upstream calls that returned usage).
    pub requests: i64,
    pub input_per_request: Option<f64>,
    pub output_per_request: Option<f64>,
}

/// One model and task, this week against last week.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DriftRow {
    pub model: String,
    pub task: String,
    pub last_week: WeekTokens,
    pub this_week: WeekTokens,
    /// Percent change of input tokens per request; null unless both weeks have requests.
    pub input_change_pct: Option<f64>,
    pub output_change_pct: Option<f64>,
    /// Either change is at least the threshold (up or down).
    pub flagged: bool,
}

/// The drift report: the 7 days before `end_ms` against the 7 days before those.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DriftReport {
    pub last_week_start_ms: i64,
    pub this_week_start_ms: i64,
    pub end_ms: i64,
    pub threshold_pct: f64,
    /// Flagged rows first, then by the largest change.
    pub rows: Vec<DriftRow>,
}

fn change_pct(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if b > 0.0 => Some((a - b) / b * 100.0),
        (Some(b), Some(a)) if b == 0.0 && a == 0.0 => Some(0.0),
        _ => None,
    }
}

/// Per served model and task: input and output tokens per request in the
/// week before `end_ms` against the week before that; a row is flagged when
/// either changed by at least `threshold_pct` percent. Only ledger rows with
/// usage count.
pub async fn drift(path: &Path, end_ms: i64, threshold_pct: f64) -> Result<DriftReport, String> {
    let mut conn = open_read_only(path).await?;
    let mid = end_ms.saturating_sub(WEEK_MS);
    let start = mid.saturating_sub(WEEK_MS);
    let rows = sqlx::query(
        "SELECT served_model, COALESCE(task, '(none)') AS t, CASE WHEN ts_ms >= ? THEN 1 ELSE 0 END AS wk, \
         COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0) \
         FROM ledger WHERE ts_ms >= ? AND ts_ms < ? AND prompt_tokens IS NOT NULL \
         GROUP BY served_model, t, wk",
    )
    .bind(mid)
    .bind(start)
    .bind(end_ms)
    .fetch_all(&mut conn)
    .await
    .map_err(|e| format!("ledger query failed: {e}"))?;
    let empty = WeekTokens {
        requests: 0,
        input_per_request: None,
        output_per_request: None,
    };
    let mut groups: std::collections::BTreeMap<(String, String), [WeekTokens; 2]> = Default::default();
    for r in &rows {
        let (model, task, wk): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
        let (n, input, output): (i64, i64, i64) = (r.get(3), r.get(4), r.get(5));
        let per = |x: i64| (n > 0).then(|| x as f64 / n as f64);
        let slot = &mut groups.entry((model, task)).or_insert([empty; 2])[usize::from(wk == 1)];
        *slot = WeekTokens {
            requests: n,
            input_per_request: per(input),
            output_per_request: per(output),
        };
    }
    let mut out: Vec<DriftRow> = groups
        .into_iter()
        .map(|((model, task), [last, this])| {
            let input_change_pct = change_pct(last.input_per_request, this.input_per_request);
            let output_change_pct = change_pct(last.output_per_request, this.output_per_request);
            let over = |c: Option<f64>| c.is_some_and(|c| c.abs() >= threshold_pct);
            DriftRow {
                model,
                task,
                last_week: last,
                this_week: this,
                flagged: over(input_change_pct) || over(output_change_pct),
                input_change_pct,
                output_change_pct,
            }
        })
        .collect();
    let size = |r: &DriftRow| {
        r.input_change_pct
            .map_or(0.0, f64::abs)
            .max(r.output_change_pct.map_or(0.0, f64::abs))
    };
    out.sort_by(|a, b| {
        b.flagged
            .cmp(&a.flagged)
            .then_with(|| size(b).total_cmp(&size(a)))
            .then_with(|| a.model.cmp(&b.model))
            .then_with(|| a.task.cmp(&b.task))
    });
    Ok(DriftReport {
        last_week_start_ms: start,
        this_week_start_ms: mid,
        end_ms,
        threshold_pct,
        rows: out,
    })
}

/// `YYYY-MM-DD HH:MM` (UTC) of Unix milliseconds.
fn fmt_ms(ms: i64) -> String {
    let t = crate::accounting::audit::format_timestamp(ms.div_euclid(1000) as f64);
    // 2026-11-01T00:00:00Z -> 2026-11-01 00:00
    t.get(..16).map_or(t.clone(), |s| s.replace('T', " "))
}

/// The drift report as a plain-text table.
pub fn drift_table(r: &DriftReport) -> String {
    let fmt_tok = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |x| format!("{x:.1}"));
    let fmt_chg = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |x| format!("{x:+.1}%"));
    let mut out = format!(
        "Tokens per request, this week ({} .. {} UTC) vs last week (from {}); flagged at >= {}% change\n",
        fmt_ms(r.this_week_start_ms),
        fmt_ms(r.end_ms),
        fmt_ms(r.last_week_start_ms),
        r.threshold_pct
    );
    out.push_str(&format!(
        "{:<24} {:<18} {:>8} {:>8} {:>10} {:>10} {:>8} {:>10} {:>10} {:>8}  {}\n",
        "model",
        "task",
        "req_last",
        "req_this",
        "in_last",
        "in_this",
        "in_chg",
        "out_last",
        "out_this",
        "out_chg",
        "flag"
    ));
    for d in &r.rows {
        let line = format!(
            "{:<24} {:<18} {:>8} {:>8} {:>10} {:>10} {:>8} {:>10} {:>10} {:>8}  {}",
            d.model,
            d.task,
            d.last_week.requests,
            d.this_week.requests,
            fmt_tok(d.last_week.input_per_request),
            fmt_tok(d.this_week.input_per_request),
            fmt_chg(d.input_change_pct),
            fmt_tok(d.last_week.output_per_request),
            fmt_tok(d.this_week.output_per_request),
            fmt_chg(d.output_change_pct),
            if d.flagged { "DRIFT" } else { "" }
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if r.rows.is_empty() {
        out.push_str("(no requests with usage in these two weeks)\n");
    } else {
        let n = r.rows.iter().filter(|d| d.flagged).count();
        out.push_str(&format!("{n} of {} model/task pair(s) flagged\n", r.rows.len()));
    }
    out
}

/// Mean feedback score per served model and task (`switchyard calibrate`):
/// each scored request's latest score, joined to its successful ledger row.
pub async fn feedback_by_model_task(path: &Path) -> Result<Vec<(String, String, f64, i64)>, String> {
    let mut conn = open_read_only(path).await?;
    let rows = sqlx::query(
        "SELECT l.served_model, COALESCE(l.task, '(none)'), AVG(f.score), COUNT(*) \
         FROM (SELECT request_id, score FROM feedback f1 WHERE id = \
               (SELECT MAX(id) FROM feedback f2 WHERE f2.request_id = f1.request_id)) f \
         JOIN (SELECT request_id, served_model, task FROM ledger WHERE status < 400 GROUP BY request_id) l \
           ON l.request_id = f.request_id \
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| format!("ledger query failed: {e}"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_and_impossible_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(1969, 12, 31), Some(-1));
        assert_eq!(days_from_civil(2026, 2, 30), None);
        assert!(parse_time("2026-02-30").is_err());
        assert_eq!(parse_time("2000-03-01"), Ok(11_017 * 86_400_000));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_time("1970-01-01"), Ok(0));
        assert_eq!(parse_time("2026-11-27"), Ok(1_795_737_600_000));
        assert_eq!(parse_time("12345"), Ok(12345));
        assert!(parse_time("2026-13-01").is_err());
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn thresholds_and_changes() {
        assert_eq!(parse_threshold("30"), Ok(30.0));
        assert_eq!(parse_threshold("12.5%"), Ok(12.5));
        assert!(parse_threshold("-1").is_err());
        assert!(parse_threshold("lots").is_err());
        assert_eq!(change_pct(Some(100.0), Some(130.0)), Some(30.0));
        assert_eq!(change_pct(Some(100.0), Some(50.0)), Some(-50.0));
        assert_eq!(change_pct(None, Some(50.0)), None);
        assert_eq!(change_pct(Some(0.0), Some(5.0)), None);
        assert_eq!(fmt_ms(1_795_737_600_000), "2026-11-27 00:00");
    }
}
