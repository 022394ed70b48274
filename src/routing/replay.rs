//! `switchyard eval-routing`: replays per-prompt outcome data through the
//! real routing code (classifier, policy, predictor, the config's models and
//! prices), sweeping the route's threshold, and scores the routers the way
//! RouteLLM does.
//!
//! * PGR (performance gap recovered) = (Q - Q_weak) / (Q_strong - Q_weak).
//! * APGR = area under PGR against the share of strong calls, over [0, 1]
//!   (trapezoids between the swept points; all-weak (0, 0) and all-strong
//!   (1, 1) are the ends). A random router scores 0.5.
//! * CPT(x) = the smallest share of strong calls at which PGR >= x.

use serde::Serialize;

use super::classifier::OwnedInput;
use super::policy::{Route, Routing};
use super::routedata::{Outcome, TestSet};
use crate::config::Config;

/// One point of a router's curve.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Point {
    pub threshold: f64,
    /// Share of requests on the strongest candidate.
    pub strong_share: f64,
    pub quality: f64,
    pub pgr: f64,
    /// USD for the whole set.
    pub cost_usd: f64,
}

/// Figures of one curve.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub apgr: f64,
    pub cpt50: Option<f64>,
    pub cpt80: Option<f64>,
}

/// The figures asked of a quality target: the cheapest point with at least
/// `target` of the strong quality.
#[derive(Debug, Clone, Serialize)]
pub struct AtTarget {
    /// Fraction of the strong model's quality required.
    pub target: f64,
    pub point: Option<Point>,
    /// 1 - strong share: strong calls saved vs all-strong.
    pub strong_calls_saved: Option<f64>,
    pub quality_kept: Option<f64>,
    pub cost_saved: Option<f64>,
}

/// PGR of quality `q` between the weak and strong qualities.
pub fn pgr(q: f64, q_weak: f64, q_strong: f64) -> f64 {
    let gap = q_strong - q_weak;
    if gap.abs() < 1e-12 {
        return 1.0;
    }
    (q - q_weak) / gap
}

/// Area under PGR vs strong share over [0, 1], points sorted by share; the
/// curve starts at (0, pgr of all-weak = 0) and ends at (1, 1).
pub fn apgr(points: &[Point]) -> f64 {
    let mut v: Vec<(f64, f64)> = points.iter().map(|p| (p.strong_share, p.pgr)).collect();
    v.push((0.0, 0.0));
    v.push((1.0, 1.0));
    v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    // At equal shares keep the best PGR (the router's knob reaches it).
    let mut best: Vec<(f64, f64)> = Vec::with_capacity(v.len());
    for (s, g) in v {
        match best.last_mut() {
            Some(l) if (l.0 - s).abs() < 1e-12 => l.1 = l.1.max(g),
            _ => best.push((s, g)),
        }
    }
    best.windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum()
}

/// Smallest strong share with PGR >= `x`.
pub fn cpt(points: &[Point], x: f64) -> Option<f64> {
    points
        .iter()
        .filter(|p| p.pgr >= x - 1e-12)
        .map(|p| p.strong_share)
        .min_by(f64::total_cmp)
}

pub fn summarize(points: &[Point]) -> Summary {
    Summary {
        apgr: apgr(points),
        cpt50: cpt(points, 0.5),
        cpt80: cpt(points, 0.8),
    }
}

/// The point with the fewest strong calls keeping `target` of strong quality.
pub fn at_target(points: &[Point], q_strong: f64, strong_cost: f64, target: f64) -> AtTarget {
    let point = points
        .iter()
        .filter(|p| p.quality >= target * q_strong - 1e-12)
        .min_by(|a, b| {
            a.strong_share
                .total_cmp(&b.strong_share)
                .then(a.cost_usd.total_cmp(&b.cost_usd))
        })
        .copied();
    AtTarget {
        target,
        point,
        strong_calls_saved: point.map(|p| 1.0 - p.strong_share),
        quality_kept: point.map(|p| if q_strong > 0.0 { p.quality / q_strong } else { 1.0 }),
        cost_saved: point.map(|p| {
            if strong_cost > 0.0 {
                1.0 - p.cost_usd / strong_cost
            } else {
                0.0
            }
        }),
    }
}

/// Curve of a router that sends the items with the highest `hardness`
/// first to the strong model: one point per prefix (ties move together).
pub fn ranking_curve(items: &[(f64, f64, f64, f64)], hardness: &[f64]) -> Vec<Point> {
    // items: (strong_q, weak_q, strong_cost, weak_cost)
    let n = items.len();
    if n == 0 {
        return Vec::new();
    }
    let (qs, qw) = means(items);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|a, b| hardness[*b].total_cmp(&hardness[*a]).then(a.cmp(b)));
    let mut q: f64 = items.iter().map(|i| i.1).sum();
    let mut cost: f64 = items.iter().map(|i| i.3).sum();
    let mut out = vec![Point {
        threshold: 0.0,
        strong_share: 0.0,
        quality: q / n as f64,
        pgr: pgr(q / n as f64, qw, qs),
        cost_usd: cost,
    }];
    let mut k = 0;
    while k < n {
        let mut j = k;
        while j + 1 < n && hardness[order[j + 1]] == hardness[order[k]] {
            j += 1;
        }
        for &i in &order[k..=j] {
            q += items[i].0 - items[i].1;
            cost += items[i].2 - items[i].3;
        }
        k = j + 1;
        out.push(Point {
            threshold: 0.0,
            strong_share: k as f64 / n as f64,
            quality: q / n as f64,
            pgr: pgr(q / n as f64, qw, qs),
            cost_usd: cost,
        });
    }
    out
}

fn means(items: &[(f64, f64, f64, f64)]) -> (f64, f64) {
    let n = items.len().max(1) as f64;
    (
        items.iter().map(|i| i.0).sum::<f64>() / n,
        items.iter().map(|i| i.1).sum::<f64>() / n,
    )
}

/// Report of one test set.
#[derive(Debug, Clone, Serialize)]
pub struct SetReport {
    pub name: String,
    pub quality_measure: String,
    pub prompts: usize,
    pub strong_model: String,
    pub weak_model: String,
    pub all_strong: Point,
    pub all_weak: Point,
    pub router: Summary,
    pub oracle: Summary,
    /// A random router's expected APGR (PGR grows linearly with the share).
    pub random_apgr: f64,
    /// Cheapest point with >= 99% of strong quality (the "best point").
    pub best_99: AtTarget,
    pub at_98: AtTarget,
    pub at_95: AtTarget,
    /// Tier shares at the route's configured threshold.
    pub configured: Point,
    pub configured_tier_shares: Vec<(String, f64)>,
    pub curve: Vec<Point>,
}

/// Per-item USD costs for the strong and weak model (prompt tokens x input
/// price + answer tokens x output price; tiktoken `cl100k_base` counts).
pub fn item_costs(cfg: &Config, strong: &str, weak: &str, o: &Outcome) -> (f64, f64) {
    let price = |m: &str| cfg.models.get(m).and_then(|s| s.price);
    let toks = |t: &str| crate::accounting::estimate::count_tokens(t) as f64;
    let input = toks(&o.input.last_user) + toks(&o.input.system);
    let cost = |m: &str, answer: &str| {
        price(m).map_or(0.0, |p| (input * p.input + toks(answer) * p.output) / 1_000_000.0)
    };
    (cost(strong, &o.strong_answer), cost(weak, &o.weak_answer))
}

/// Sweep thresholds: 0, the quantiles of the route's scores, 1.
fn thresholds(scores: &mut [f32], points: usize) -> Vec<f32> {
    scores.sort_by(f32::total_cmp);
    let mut t = vec![0.0f32];
    if !scores.is_empty() {
        for i in 0..=points {
            let v = scores[(i * (scores.len() - 1)) / points];
            t.push(v);
            t.push(f32::from_bits(v.to_bits() + 1).min(1.0));
        }
    }
    t.push(1.0);
    t.sort_by(f32::total_cmp);
    t.dedup();
    t
}

/// Replays one set on `route` (a predictor route whose cheapest candidate
/// stands for the weak model and dearest for the strong one).
pub fn replay_set(
    cfg: &Config,
    route: &Route,
    set: &TestSet,
    mut progress: impl FnMut(usize, usize),
) -> Result<SetReport, String> {
    let routing: &Routing = &cfg.routing;
    let pr = route.predicted.as_ref().ok_or_else(|| {
        format!(
            "route {:?} has no candidate `models`: eval-routing needs a predictor route",
            route.name
        )
    })?;
    let (weak, strong) = match (pr.models.first(), pr.models.last()) {
        (Some(w), Some(s)) if pr.models.len() >= 2 => (w.clone(), s.clone()),
        _ => return Err(format!("route {:?} needs two candidate models", route.name)),
    };
    let items: Vec<(f64, f64, f64, f64)> = set
        .items
        .iter()
        .map(|o| {
            let (sc, wc) = item_costs(cfg, &strong, &weak, o);
            (o.strong_q, o.weak_q, sc, wc)
        })
        .collect();
    let n = items.len();
    if n == 0 {
        return Err(format!("{}: no prompts", set.name));
    }
    let (qs, qw) = means(&items);
    let strong_cost: f64 = items.iter().map(|i| i.2).sum();
    let weak_cost: f64 = items.iter().map(|i| i.3).sum();
    let inputs: Vec<&OwnedInput> = set.items.iter().map(|o| &o.input).collect();
    // The route's own score for each prompt, read off a real decision.
    let mut scores: Vec<f32> = inputs
        .iter()
        .map(|i| {
            routing
                .decide_at(route, &i.as_input(), None, Some(0.5))
                .predicted
                .map_or(0.5, |p| p.0)
        })
        .collect();
    let ts = thresholds(&mut scores.clone(), n.clamp(2, 100));
    let mut curve = Vec::with_capacity(ts.len());
    let total = ts.len() + 1;
    let shares_at = |t: Option<f32>| -> (Point, Vec<(String, f64)>) {
        let (mut q, mut cost, mut strong_n) = (0.0, 0.0, 0usize);
        let mut per_model = vec![0usize; pr.models.len()];
        for (k, i) in inputs.iter().enumerate() {
            let d = routing.decide_at(route, &i.as_input(), None, t);
            let m = d.chain.first().map(String::as_str).unwrap_or("");
            if let Some(ix) = pr.models.iter().position(|x| x == m) {
                per_model[ix] += 1;
            }
            if m == strong {
                strong_n += 1;
                q += items[k].0;
                cost += items[k].2;
            } else {
                // Any cheaper candidate is scored with the weak model's outcome.
                q += items[k].1;
                cost += items[k].3;
            }
        }
        let quality = q / n as f64;
        let p = Point {
            threshold: t.map_or(pr.threshold as f64, |t| t as f64),
            strong_share: strong_n as f64 / n as f64,
            quality,
            pgr: pgr(quality, qw, qs),
            cost_usd: cost,
        };
        let tiers = pr
            .tiers
            .iter()
            .zip(&per_model)
            .map(|(t, c)| (t.clone(), *c as f64 / n as f64))
            .collect();
        (p, tiers)
    };
    for (i, t) in ts.iter().enumerate() {
        curve.push(shares_at(Some(*t)).0);
        progress(i + 1, total);
    }
    let (configured, configured_tier_shares) = shares_at(None);
    progress(total, total);
    curve.sort_by(|a, b| a.threshold.total_cmp(&b.threshold));
    let oracle_hard: Vec<f64> = items.iter().map(|i| i.0 - i.1).collect();
    let oracle = ranking_curve(&items, &oracle_hard);
    scores.truncate(n);
    let end = |share: f64, quality: f64, cost: f64, t: f64| Point {
        threshold: t,
        strong_share: share,
        quality,
        pgr: pgr(quality, qw, qs),
        cost_usd: cost,
    };
    Ok(SetReport {
        name: set.name.clone(),
        quality_measure: set.quality.to_string(),
        prompts: n,
        strong_model: strong.clone(),
        weak_model: weak.clone(),
        all_strong: end(1.0, qs, strong_cost, 1.0),
        all_weak: end(0.0, qw, weak_cost, 0.0),
        router: summarize(&curve),
        oracle: summarize(&oracle),
        random_apgr: 0.5,
        best_99: at_target(&curve, qs, strong_cost, 0.99),
        at_98: at_target(&curve, qs, strong_cost, 0.98),
        at_95: at_target(&curve, qs, strong_cost, 0.95),
        configured,
        configured_tier_shares,
        curve,
    })
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.1}%", v * 100.0))
}

/// Human-readable table of the reports.
pub fn render_table(reports: &[SetReport]) -> String {
    let mut s = String::new();
    s.push_str(
        "set                      n     APGR  oracle random  CPT50   CPT80  | >=99% strong q: strong calls  q kept  cost saved | >=98%: calls saved | >=95%: calls saved\n",
    );
    for r in reports {
        s.push_str(&format!(
            "{:<22} {:>5}  {:>6.3}  {:>5.3}  {:>5.3}  {:>6}  {:>6}  | {:>27}  {:>6}  {:>10} | {:>18} | {:>18}\n",
            r.name,
            r.prompts,
            r.router.apgr,
            r.oracle.apgr,
            r.random_apgr,
            pct(r.router.cpt50),
            pct(r.router.cpt80),
            pct(r.best_99.point.map(|p| p.strong_share)),
            pct(r.best_99.quality_kept),
            pct(r.best_99.cost_saved),
            pct(r.at_98.strong_calls_saved),
            pct(r.at_95.strong_calls_saved),
        ));
    }
    s.push('\n');
    for r in reports {
        s.push_str(&format!(
            "{}: all-strong ({}) quality {:.3} ${:.4}; all-weak ({}) quality {:.3} ${:.4}; at the route's threshold {:.3}: {} -> quality {:.3} (PGR {:.2}) ${:.4}\n",
            r.name,
            r.strong_model,
            r.all_strong.quality,
            r.all_strong.cost_usd,
            r.weak_model,
            r.all_weak.quality,
            r.all_weak.cost_usd,
            r.configured.threshold,
            r.configured_tier_shares
                .iter()
                .map(|(t, v)| format!("{t} {:.1}%", v * 100.0))
                .collect::<Vec<_>>()
                .join(", "),
            r.configured.quality,
            r.configured.pgr,
            r.configured.cost_usd,
        ));
    }
    s
}

/// Cost-quality curves (share of strong calls vs PGR) of every set as an SVG.
pub fn render_svg(reports: &[SetReport]) -> String {
    let (w, h) = (760.0, 520.0);
    let (l, r, t, b) = (70.0, 200.0, 40.0, 60.0);
    let pw = w - l - r;
    let ph = h - t - b;
    let x = |s: f64| l + s.clamp(0.0, 1.0) * pw;
    let y = |g: f64| t + (1.0 - g.clamp(-0.2, 1.2)) / 1.4 * ph;
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">switchyard eval-routing: quality gap recovered vs share of strong calls</text>\n",
        w / 2.0
    );
    for i in 0..=10 {
        let v = i as f64 / 10.0;
        s.push_str(&format!(
            "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{2:.1}\" stroke=\"#eee\"/><text x=\"{0:.1}\" y=\"{3:.1}\" text-anchor=\"middle\">{4}%</text>\n",
            x(v),
            t,
            t + ph,
            t + ph + 16.0,
            i * 10
        ));
    }
    for i in -1..=6 {
        let g = i as f64 * 0.2;
        s.push_str(&format!(
            "<line x1=\"{l}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#eee\"/><text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{g:.1}</text>\n",
            y(g),
            l + pw,
            l - 6.0,
            y(g) + 4.0
        ));
    }
    s.push_str(&format!(
        "<rect x=\"{l}\" y=\"{t}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">share of requests sent to the strong model (GPT-4-1106)</text>\n<text x=\"18\" y=\"{:.1}\" transform=\"rotate(-90 18 {:.1})\" text-anchor=\"middle\">PGR (0 = all weak, 1 = all strong)</text>\n",
        l + pw / 2.0,
        h - 18.0,
        t + ph / 2.0,
        t + ph / 2.0
    ));
    s.push_str(&format!(
        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"5,4\"/>\n",
        x(0.0),
        y(0.0),
        x(1.0),
        y(1.0)
    ));
    for (i, rep) in reports.iter().enumerate() {
        let c = colors[i % colors.len()];
        let mut pts: Vec<(f64, f64)> = rep.curve.iter().map(|p| (p.strong_share, p.pgr)).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let path: Vec<String> = pts
            .iter()
            .map(|(a, g)| format!("{:.1},{:.1}", x(*a), y(*g)))
            .collect();
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n",
            path.join(" ")
        ));
        let ly = t + 20.0 + i as f64 * 36.0;
        s.push_str(&format!(
            "<line x1=\"{0:.1}\" y1=\"{ly:.1}\" x2=\"{1:.1}\" y2=\"{ly:.1}\" stroke=\"{c}\" stroke-width=\"3\"/><text x=\"{2:.1}\" y=\"{3:.1}\">{4}</text><text x=\"{2:.1}\" y=\"{5:.1}\" fill=\"#555\">APGR {6:.3} (oracle {7:.3})</text>\n",
            l + pw + 12.0,
            l + pw + 32.0,
            l + pw + 38.0,
            ly + 4.0,
            rep.name,
            ly + 18.0,
            rep.router.apgr,
            rep.oracle.apgr
        ));
    }
    s.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#777\">dashed: random router (APGR 0.5)</text>\n</svg>\n",
        l + pw + 12.0,
        t + 20.0 + reports.len() as f64 * 36.0
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(share: f64, pgr: f64) -> Point {
        Point {
            threshold: 0.0,
            strong_share: share,
            quality: 0.0,
            pgr,
            cost_usd: 0.0,
        }
    }

    /// Four prompts, strong always right (1), weak right on #0 and #1 only.
    /// The perfect ordering sends #2 and #3 first: PGR 0, 0.5, 1, 1, 1 at
    /// shares 0, .25, .5, .75, 1 -> APGR = 0.0625 + 0.1875 + 0.25 + 0.25 = 0.75.
    /// The reversed ordering: PGR 0, 0, 0, .5, 1 -> APGR = 0.0625 + 0.1875 = 0.25.
    #[test]
    fn metrics_on_a_hand_made_set() {
        let items = [
            (1.0, 1.0, 1.0, 0.1),
            (1.0, 1.0, 1.0, 0.1),
            (1.0, 0.0, 1.0, 0.1),
            (1.0, 0.0, 1.0, 0.1),
        ];
        let good = ranking_curve(&items, &[0.1, 0.2, 0.9, 0.8]);
        assert_eq!(good.len(), 5);
        assert!((good[1].pgr - 0.5).abs() < 1e-12 && (good[2].pgr - 1.0).abs() < 1e-12);
        assert!((apgr(&good) - 0.75).abs() < 1e-12, "{}", apgr(&good));
        assert_eq!(cpt(&good, 0.5), Some(0.25));
        assert_eq!(cpt(&good, 0.8), Some(0.5));
        let bad = ranking_curve(&items, &[0.9, 0.8, 0.1, 0.2]);
        assert!((apgr(&bad) - 0.25).abs() < 1e-12);
        assert_eq!(cpt(&bad, 0.8), Some(1.0));
        // Ties move together: one step from 0 to 1.
        let flat = ranking_curve(&items, &[0.5; 4]);
        assert_eq!(flat.len(), 2);
        assert!((apgr(&flat) - 0.5).abs() < 1e-12, "a knob-less router is random");
        // Cost: at share .5 on the good ordering two strong (1.0) + two weak (0.1).
        assert!((good[2].cost_usd - 2.2).abs() < 1e-12);
        let t = at_target(&good, 1.0, 4.0, 0.99);
        assert_eq!(t.point.map(|p| p.strong_share), Some(0.5));
        assert!((t.cost_saved.unwrap_or(0.0) - (1.0 - 2.2 / 4.0)).abs() < 1e-12);
        assert!((pgr(0.75, 0.5, 1.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn apgr_of_the_random_diagonal_is_half() {
        let pts: Vec<Point> = (0..=10).map(|i| pt(i as f64 / 10.0, i as f64 / 10.0)).collect();
        assert!((apgr(&pts) - 0.5).abs() < 1e-12);
        assert!((apgr(&[]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn svg_is_well_formed_enough() {
        let rep = SetReport {
            name: "x".into(),
            quality_measure: "q".into(),
            prompts: 1,
            strong_model: "s".into(),
            weak_model: "w".into(),
            all_strong: pt(1.0, 1.0),
            all_weak: pt(0.0, 0.0),
            router: summarize(&[pt(0.5, 0.8)]),
            oracle: summarize(&[pt(0.5, 1.0)]),
            random_apgr: 0.5,
            best_99: at_target(&[], 1.0, 1.0, 0.99),
            at_98: at_target(&[], 1.0, 1.0, 0.98),
            at_95: at_target(&[], 1.0, 1.0, 0.95),
            configured: pt(0.5, 0.8),
            configured_tier_shares: vec![],
            curve: vec![pt(0.0, 0.0), pt(0.5, 0.8), pt(1.0, 1.0)],
        };
        let svg = render_svg(&[rep]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("<polyline"));
    }
}
