//! `switchyard experiment report NAME` and `GET /admin/experiments/{name}`:
//! per arm figures from the ledger and the feedback table, and a verdict
//! per candidate against the control.
//!
//! A "request" is one client request (all its attempts: retries and
//! fallbacks count toward its arm); a shadow copy is a request of its own.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use sqlx::Row;

use super::stats::{self, Difference, Summary};
use crate::config::experiments::CONTROL;

/// One client request in one arm, aggregated over its attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRow {
    pub request_id: String,
    pub arm: String,
    pub shadow: bool,
    /// The model of the first attempt: the arm's model.
    pub model: String,
    pub ts_ms: i64,
    /// The longest attempt's latency: the time the client (or the shadow) waited.
    pub latency_ms: f64,
    /// Known cost of every attempt.
    pub cost_usd: f64,
    /// An attempt's cost is unknown (no price, or no usage).
    pub unknown_cost: bool,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// An attempt failed (status 400 or above, other than 499: client gone).
    pub failed: bool,
    /// An attempt answered 200.
    pub ok: bool,
}

/// Figures of one arm.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ArmReport {
    /// `control` or the candidate's model name.
    pub arm: String,
    /// Shadow copies (never seen by clients) rather than live traffic.
    pub shadow: bool,
    /// The model that served the arm's first attempts (most often).
    pub model: Option<String>,
    pub requests: u64,
    /// Requests with at least one failed attempt (a fallback may still have answered).
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub cost_usd: f64,
    pub cost_per_request_usd: Option<f64>,
    /// Requests with an attempt of unknown cost (not in `cost_usd`).
    pub unknown_cost_requests: u64,
    /// Latency of answered requests.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    /// Tokens per answered request.
    pub prompt_tokens_per_request: Option<f64>,
    pub completion_tokens_per_request: Option<f64>,
    /// Requests with feedback (the latest score of each counts).
    pub feedback_count: u64,
    pub feedback_mean: Option<f64>,
    /// Half-width of the 95% confidence interval of the mean feedback.
    pub feedback_ci95: Option<f64>,
    #[serde(skip)]
    pub feedback: Summary,
}

/// A candidate against the control.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Comparison {
    pub candidate: String,
    pub shadow: bool,
    /// Cost per request relative to the control's, in percent (negative: cheaper).
    pub cost_change_pct: Option<f64>,
    /// Error rate minus the control's.
    pub error_rate_diff: Option<f64>,
    /// Mean feedback minus the control's, with its 95% interval (Welch).
    pub quality: Option<Difference>,
    pub verdict: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExperimentReport {
    pub experiment: String,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// The control first, then live candidates, then shadows.
    pub arms: Vec<ArmReport>,
    pub comparisons: Vec<Comparison>,
}

/// Aggregates per-request rows and feedback (request id -> score) into arms.
pub fn figures(rows: &[RequestRow], feedback: &HashMap<String, f64>) -> Vec<ArmReport> {
    let mut groups: Vec<((&str, bool), Vec<&RequestRow>)> = Vec::new();
    for r in rows {
        let k = (r.arm.as_str(), r.shadow);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, v)) => v.push(r),
            None => groups.push((k, vec![r])),
        }
    }
    let mut arms: Vec<ArmReport> = groups
        .into_iter()
        .map(|((arm, shadow), rs)| arm_figures(arm, shadow, &rs, feedback))
        .collect();
    arms.sort_by(|a, b| (a.shadow, a.arm != CONTROL, &a.arm).cmp(&(b.shadow, b.arm != CONTROL, &b.arm)));
    arms
}

fn arm_figures(arm: &str, shadow: bool, rs: &[&RequestRow], feedback: &HashMap<String, f64>) -> ArmReport {
    let n = rs.len() as u64;
    let errors = rs.iter().filter(|r| r.failed).count() as u64;
    let cost: f64 = rs.iter().map(|r| r.cost_usd).sum();
    let unknown = rs.iter().filter(|r| r.unknown_cost).count() as u64;
    let answered: Vec<&&RequestRow> = rs.iter().filter(|r| r.ok).collect();
    let mut lat: Vec<f64> = answered.iter().map(|r| r.latency_ms).collect();
    lat.sort_by(f64::total_cmp);
    let per_answered = |f: fn(&RequestRow) -> i64| {
        (!answered.is_empty())
            .then(|| answered.iter().map(|r| f(r) as f64).sum::<f64>() / answered.len() as f64)
    };
    let fb = Summary::of(rs.iter().filter_map(|r| feedback.get(&r.request_id).copied()));
    let mut models: Vec<(&str, usize)> = Vec::new();
    for r in rs {
        match models.iter_mut().find(|(m, _)| *m == r.model) {
            Some((_, c)) => *c += 1,
            None => models.push((&r.model, 1)),
        }
    }
    let model = models.iter().max_by_key(|(_, c)| *c).map(|(m, _)| m.to_string());
    ArmReport {
        arm: arm.to_string(),
        shadow,
        model,
        requests: n,
        errors,
        error_rate: (n > 0).then(|| errors as f64 / n as f64),
        cost_usd: cost,
        cost_per_request_usd: (n > unknown).then(|| cost / (n - unknown) as f64),
        unknown_cost_requests: unknown,
        latency_p50_ms: stats::percentile(&lat, 0.5),
        latency_p95_ms: stats::percentile(&lat, 0.95),
        prompt_tokens_per_request: per_answered(|r| r.prompt_tokens),
        completion_tokens_per_request: per_answered(|r| r.completion_tokens),
        feedback_count: fb.n,
        feedback_mean: fb.mean(),
        feedback_ci95: fb.ci95(),
        feedback: fb,
    }
}

/// Each candidate against the control, with a plain verdict line.
pub fn compare(arms: &[ArmReport]) -> Vec<Comparison> {
    let control = arms.iter().find(|a| a.arm == CONTROL && !a.shadow);
    arms.iter()
        .filter(|a| a.arm != CONTROL || a.shadow)
        .map(|c| compare_one(control, c))
        .collect()
}

fn compare_one(control: Option<&ArmReport>, c: &ArmReport) -> Comparison {
    let label = if c.shadow {
        format!("{} (shadow)", c.arm)
    } else {
        c.arm.clone()
    };
    let Some(k) = control else {
        return Comparison {
            candidate: c.arm.clone(),
            shadow: c.shadow,
            cost_change_pct: None,
            error_rate_diff: None,
            quality: None,
            verdict: format!("{label}: no control requests to compare with yet"),
        };
    };
    let cost_change_pct = match (k.cost_per_request_usd, c.cost_per_request_usd) {
        (Some(a), Some(b)) if a > 0.0 => Some((b / a - 1.0) * 100.0),
        _ => None,
    };
    let error_rate_diff = match (k.error_rate, c.error_rate) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let quality = stats::welch(&k.feedback, &c.feedback);
    let mut parts = Vec::new();
    parts.push(match cost_change_pct {
        Some(p) if p <= -0.5 => format!("candidate {:.0}% cheaper", -p),
        Some(p) if p >= 0.5 => format!("candidate {p:.0}% dearer"),
        Some(_) => "candidate about as expensive".to_string(),
        None => "cost not comparable (unknown prices)".to_string(),
    });
    parts.push(match quality {
        Some(d) => format!(
            "quality {:+.2} +/- {:.2}, {}",
            d.diff,
            d.ci95,
            match (d.significant, d.diff > 0.0) {
                (false, _) => "not yet significant",
                (true, true) => "significantly better",
                (true, false) => "significantly worse",
            }
        ),
        None => format!(
            "quality not yet comparable ({} vs {} feedback scores; 2 each needed)",
            c.feedback_count, k.feedback_count
        ),
    });
    if let (Some(a), Some(b)) = (k.error_rate, c.error_rate) {
        parts.push(format!("errors {:.1}% vs {:.1}%", b * 100.0, a * 100.0));
    }
    Comparison {
        candidate: c.arm.clone(),
        shadow: c.shadow,
        cost_change_pct,
        error_rate_diff,
        quality,
        verdict: format!("{label}: {}", parts.join("; ")),
    }
}

/// Reads the experiment's requests and their feedback from the ledger at `path`.
pub async fn load(
    path: &Path,
    name: &str,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<(Vec<RequestRow>, HashMap<String, f64>), String> {
    let mut conn = super::store::connect(path, true).await?;
    if !super::store::has_column(&mut conn, "experiment").await? {
        return Ok((Vec::new(), HashMap::new()));
    }
    let q = |e: sqlx::Error| format!("ledger query failed: {e}");
    let rows = sqlx::query(
        "SELECT request_id, COALESCE(arm, ''), shadow, \
         COALESCE(MIN(CASE WHEN attempt = 1 THEN served_model END), MIN(served_model)), MIN(ts_ms), \
         MAX(latency_ms), COALESCE(SUM(cost_usd), 0.0), MAX(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END), \
         COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), \
         MAX(CASE WHEN status >= 400 AND status <> 499 THEN 1 ELSE 0 END), MAX(CASE WHEN status = 200 THEN 1 ELSE 0 END) \
         FROM ledger WHERE experiment = ? AND ts_ms >= ? AND ts_ms < ? \
         GROUP BY request_id, arm, shadow ORDER BY MIN(id)",
    )
    .bind(name)
    .bind(since.unwrap_or(i64::MIN))
    .bind(until.unwrap_or(i64::MAX))
    .fetch_all(&mut conn)
    .await
    .map_err(q)?;
    let rows: Vec<RequestRow> = rows.iter().map(request_row).collect();
    let mut feedback = HashMap::new();
    if super::store::has_table(&mut conn, "feedback").await? {
        // The latest score of a request counts.
        let fb = sqlx::query(
            "SELECT request_id, score FROM feedback WHERE request_id IN \
             (SELECT request_id FROM ledger WHERE experiment = ? AND ts_ms >= ? AND ts_ms < ?) ORDER BY id",
        )
        .bind(name)
        .bind(since.unwrap_or(i64::MIN))
        .bind(until.unwrap_or(i64::MAX))
        .fetch_all(&mut conn)
        .await
        .map_err(q)?;
        for r in &fb {
            feedback.insert(r.get::<String, _>(0), r.get::<f64, _>(1));
        }
    }
    Ok((rows, feedback))
}

/// One request of the grouped query both ledgers run (same column order).
fn request_row<R>(r: &R) -> RequestRow
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    f64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    RequestRow {
        request_id: r.get(0),
        arm: r.get(1),
        shadow: r.get::<i64, _>(2) != 0,
        model: r.get(3),
        ts_ms: r.get(4),
        latency_ms: r.get(5),
        cost_usd: r.get(6),
        unknown_cost: r.get::<i64, _>(7) != 0,
        prompt_tokens: r.get(8),
        completion_tokens: r.get(9),
        failed: r.get::<i64, _>(10) != 0,
        ok: r.get::<i64, _>(11) != 0,
    }
}

/// [`load`] with the requests in a PostgreSQL ledger (`pg`) and the
/// feedback in the local SQLite file at `path`; without `pg`, [`load`].
pub async fn load_from(
    pg: Option<&sqlx::PgPool>,
    path: &Path,
    name: &str,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<(Vec<RequestRow>, HashMap<String, f64>), String> {
    let Some(pool) = pg else {
        return load(path, name, since, until).await;
    };
    let q = |e: sqlx::Error| format!("ledger query failed: {e}");
    let rows = sqlx::query(
        "SELECT request_id, COALESCE(arm, ''), shadow::BIGINT, \
         COALESCE(MIN(CASE WHEN attempt = 1 THEN served_model END), MIN(served_model)), MIN(ts_ms), \
         MAX(latency_ms), COALESCE(SUM(cost_usd), 0.0)::DOUBLE PRECISION, \
         MAX(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END)::BIGINT, \
         COALESCE(SUM(prompt_tokens), 0)::BIGINT, COALESCE(SUM(completion_tokens), 0)::BIGINT, \
         MAX(CASE WHEN status >= 400 AND status <> 499 THEN 1 ELSE 0 END)::BIGINT, \
         MAX(CASE WHEN status = 200 THEN 1 ELSE 0 END)::BIGINT \
         FROM ledger WHERE experiment = $1 AND ts_ms >= $2 AND ts_ms < $3 \
         GROUP BY request_id, arm, shadow ORDER BY MIN(id)",
    )
    .bind(name)
    .bind(since.unwrap_or(i64::MIN))
    .bind(until.unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(q)?;
    let rows: Vec<RequestRow> = rows.iter().map(request_row).collect();
    let mut feedback = HashMap::new();
    if path.exists() {
        let mut conn = super::store::connect(path, true).await?;
        if super::store::has_table(&mut conn, "feedback").await? {
            let ids: std::collections::HashSet<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
            // The latest score of a request counts.
            let fb = sqlx::query("SELECT request_id, score FROM feedback ORDER BY id")
                .fetch_all(&mut conn)
                .await
                .map_err(q)?;
            for r in &fb {
                let id: String = r.get(0);
                if ids.contains(id.as_str()) {
                    feedback.insert(id, r.get::<f64, _>(1));
                }
            }
        }
    }
    Ok((rows, feedback))
}

/// The report of experiment `name` over `since <= ts_ms < until`.
pub async fn report(
    path: &Path,
    name: &str,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<ExperimentReport, String> {
    report_from(None, path, name, since, until).await
}

/// [`report`] with the requests in a PostgreSQL ledger (see [`load_from`]).
pub async fn report_from(
    pg: Option<&sqlx::PgPool>,
    path: &Path,
    name: &str,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<ExperimentReport, String> {
    let (rows, feedback) = load_from(pg, path, name, since, until).await?;
    let arms = figures(&rows, &feedback);
    let comparisons = compare(&arms);
    Ok(ExperimentReport {
        experiment: name.to_string(),
        since_ms: since,
        until_ms: until,
        arms,
        comparisons,
    })
}

/// The report as plain text: one line per arm, then one verdict per candidate.
pub fn to_text(r: &ExperimentReport, header: Option<&str>) -> String {
    let mut out = String::new();
    out.push_str(&format!("experiment {}", r.experiment));
    if let Some(h) = header {
        out.push_str(&format!(" ({h})"));
    }
    out.push('\n');
    if r.arms.is_empty() {
        out.push_str("(no requests recorded for this experiment)\n");
        return out;
    }
    let opt = |v: Option<f64>, prec: usize| v.map_or_else(|| "-".to_string(), |x| format!("{x:.prec$}"));
    out.push_str(&format!(
        "{:<24} {:<20} {:>8} {:>7} {:>12} {:>8} {:>8} {:>9} {:>9}  {}\n",
        "arm",
        "model",
        "requests",
        "errors",
        "usd/request",
        "p50_ms",
        "p95_ms",
        "in_tok/r",
        "out_tok/r",
        "feedback (95% CI)"
    ));
    for a in &r.arms {
        let arm = if a.shadow {
            format!("{} (shadow)", a.arm)
        } else {
            a.arm.clone()
        };
        let feedback = match (a.feedback_mean, a.feedback_ci95) {
            (Some(m), Some(ci)) => format!("{m:.2} +/- {ci:.2} (n={})", a.feedback_count),
            (Some(m), None) => format!("{m:.2} (n={})", a.feedback_count),
            _ => "-".to_string(),
        };
        out.push_str(&format!(
            "{:<24} {:<20} {:>8} {:>7} {:>12} {:>8} {:>8} {:>9} {:>9}  {}\n",
            arm,
            a.model.as_deref().unwrap_or("-"),
            a.requests,
            a.error_rate
                .map_or_else(|| "-".to_string(), |e| format!("{:.1}%", e * 100.0)),
            opt(a.cost_per_request_usd, 6),
            opt(a.latency_p50_ms, 0),
            opt(a.latency_p95_ms, 0),
            opt(a.prompt_tokens_per_request, 1),
            opt(a.completion_tokens_per_request, 1),
            feedback
        ));
    }
    for c in &r.comparisons {
        out.push_str(&format!("verdict {}\n", c.verdict));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: usize, arm: &str, cost: f64, latency: f64, failed: bool) -> RequestRow {
        RequestRow {
            request_id: format!("r{id}"),
            arm: arm.into(),
            shadow: false,
            model: if arm == CONTROL { "big".into() } else { arm.into() },
            ts_ms: id as i64,
            latency_ms: latency,
            cost_usd: cost,
            unknown_cost: false,
            prompt_tokens: 100,
            completion_tokens: 20,
            failed,
            ok: !failed,
        }
    }

    #[test]
    fn experiment_report_figures_and_verdict() {
        let mut rows = Vec::new();
        let mut fb = HashMap::new();
        for i in 0..40 {
            rows.push(row(i, CONTROL, 0.010, 100.0 + i as f64, false));
            fb.insert(format!("r{i}"), if i % 5 == 0 { 0.0 } else { 1.0 });
        }
        for i in 40..60 {
            rows.push(row(i, "mid", 0.004, 50.0 + i as f64, i == 59));
            fb.insert(format!("r{i}"), if i % 4 == 0 { 0.0 } else { 1.0 });
        }
        let arms = figures(&rows, &fb);
        assert_eq!(arms.len(), 2);
        let (c, m) = (&arms[0], &arms[1]);
        assert_eq!((c.arm.as_str(), c.requests, c.errors), (CONTROL, 40, 0));
        assert_eq!((m.arm.as_str(), m.requests, m.errors), ("mid", 20, 1));
        assert!((c.cost_usd - 0.4).abs() < 1e-9 && (m.cost_usd - 0.08).abs() < 1e-9);
        assert_eq!(c.latency_p50_ms, Some(119.0));
        assert_eq!(c.latency_p95_ms, Some(137.0));
        assert_eq!(m.prompt_tokens_per_request, Some(100.0));
        assert_eq!((c.feedback_count, m.feedback_count), (40, 20));
        assert!((c.feedback_mean.unwrap_or(0.0) - 0.8).abs() < 1e-12);
        assert!((m.feedback_mean.unwrap_or(0.0) - 0.75).abs() < 1e-12);
        let cmp = compare(&arms);
        assert_eq!(cmp.len(), 1);
        assert!((cmp[0].cost_change_pct.unwrap_or(0.0) + 60.0).abs() < 1e-9);
        let v = &cmp[0].verdict;
        assert!(
            v.starts_with("mid: candidate 60% cheaper; quality -0.05 +/- 0.2")
                && v.contains("not yet significant")
                && v.ends_with("errors 5.0% vs 0.0%"),
            "{v}"
        );
        let text = to_text(
            &ExperimentReport {
                experiment: "x".into(),
                since_ms: None,
                until_ms: None,
                arms: arms.clone(),
                comparisons: cmp,
            },
            None,
        );
        assert!(text.contains("verdict mid: candidate 60% cheaper"), "{text}");
        // No feedback, no control: the verdict says so.
        let lone = figures(&rows[40..], &HashMap::new());
        assert!(compare(&lone)[0].verdict.contains("no control"));
        let none = compare(&figures(&rows, &HashMap::new()));
        assert!(
            none[0].verdict.contains("quality not yet comparable (0 vs 0"),
            "{}",
            none[0].verdict
        );
    }
}
