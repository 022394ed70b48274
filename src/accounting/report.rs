//! `switchyard report`: spend, requests and tokens from the ledger, grouped
//! by task, model, provider, key, route or day.

use std::path::Path;

use serde::Serialize;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Row, SqliteConnection};

/// What to group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Task,
    Model,
    Provider,
    Key,
    Route,
    Day,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "task" => GroupBy::Task,
            "model" => GroupBy::Model,
            "provider" => GroupBy::Provider,
            "key" => GroupBy::Key,
            "route" => GroupBy::Route,
            "day" => GroupBy::Day,
            _ => return None,
        })
    }

    /// The SQL expression of the group (a fixed string: never user input).
    fn column(self) -> &'static str {
        match self {
            GroupBy::Task => "COALESCE(task, '(none)')",
            GroupBy::Model => "served_model",
            GroupBy::Provider => "provider",
            GroupBy::Key => "COALESCE(key_name, '(none)')",
            GroupBy::Route => "COALESCE(route, '(none)')",
            GroupBy::Day => "strftime('%Y-%m-%d', ts_ms / 1000, 'unixepoch')",
        }
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
    let days = days_from_civil(y, m, d);
    Ok(days * 86_400_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm), UTC.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Runs the report over the ledger at `path`, for rows with `since <= ts_ms < until`.
pub async fn report(
    path: &Path,
    by: GroupBy,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<Vec<ReportRow>, String> {
    use sqlx::ConnectOptions;
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .disable_statement_logging();
    let mut conn = SqliteConnection::connect_with(&opts)
        .await
        .map_err(|e| format!("cannot open ledger {}: {e}", path.display()))?;
    let sql = format!(
        "SELECT {g} AS grp, COUNT(DISTINCT request_id), COUNT(*), COALESCE(SUM(prompt_tokens), 0), \
         COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cached_tokens), 0), COALESCE(SUM(cost_usd), 0.0), \
         SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END) \
         FROM ledger WHERE ts_ms >= ? AND ts_ms < ? GROUP BY grp ORDER BY 7 DESC, grp",
        g = by.column()
    );
    let rows = sqlx::query(&sql)
        .bind(since.unwrap_or(i64::MIN))
        .bind(until.unwrap_or(i64::MAX))
        .fetch_all(&mut conn)
        .await
        .map_err(|e| format!("ledger query failed: {e}"))?;
    Ok(rows
        .iter()
        .map(|r| {
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
            }
        })
        .collect())
}

/// A plain-text table, with a total line.
pub fn to_table(by: GroupBy, rows: &[ReportRow]) -> String {
    let name = format!("{by:?}").to_lowercase();
    let mut out = format!(
        "{:<28} {:>9} {:>9} {:>13} {:>13} {:>12} {:>14} {:>8}\n",
        name, "requests", "attempts", "prompt_tok", "output_tok", "cost_usd", "usd/request", "no_cost"
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
    };
    for r in rows.iter() {
        t.requests += r.requests;
        t.attempts += r.attempts;
        t.prompt_tokens += r.prompt_tokens;
        t.completion_tokens += r.completion_tokens;
        t.cost_usd += r.cost_usd;
        t.unknown_cost_rows += r.unknown_cost_rows;
    }
    t.cost_per_request_usd = if t.requests > 0 {
        t.cost_usd / t.requests as f64
    } else {
        0.0
    };
    for r in rows.iter().chain(std::iter::once(&t)) {
        out.push_str(&format!(
            "{:<28} {:>9} {:>9} {:>13} {:>13} {:>12.6} {:>14.8} {:>8}\n",
            r.group,
            r.requests,
            r.attempts,
            r.prompt_tokens,
            r.completion_tokens,
            r.cost_usd,
            r.cost_per_request_usd,
            r.unknown_cost_rows
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_time("1970-01-01"), Ok(0));
        assert_eq!(parse_time("2026-11-27"), Ok(1_795_737_600_000));
        assert_eq!(parse_time("12345"), Ok(12345));
        assert!(parse_time("2026-13-01").is_err());
        assert!(parse_time("yesterday").is_err());
    }
}
