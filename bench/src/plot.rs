//! The scale plot: per-call cost against the number of environments, one
//! panel per revoked-row count, drawn as SVG by plotters.

use std::path::Path;

use plotters::coord::combinators::BindKeyPoints;
use plotters::prelude::*;
use serde_json::Value;

const SCRIPTS: &[&str] = &["bare_lookup", "find_current", "find_grace", "find_miss", "validate_current", "validate_grace"];

fn human(x: f64) -> String {
    if x >= 1e6 {
        format!("{}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{}k", x / 1e3)
    } else {
        format!("{x}")
    }
}

pub fn scale_svg(path: &Path, points: &[Value], rev_points: &[i64]) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Debug| format!("plot: {e:?}");
    let mut xs: Vec<f64> = points.iter().filter_map(|p| p["environments"].as_f64()).collect();
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    xs.dedup();
    let (xmin, xmax) = xs.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    if xs.is_empty() || xmin >= xmax {
        return Err("plot: need at least two table sizes".into());
    }
    let cols = rev_points.len().max(1);
    let width = 560 * cols as u32;
    let root = SVGBackend::new(path, (width, 880)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let root = root.titled("api_auth: per-call cost against table size (medians)", ("sans-serif", 18)).map_err(|x| e(&x))?;
    let panels = root.split_evenly((2, cols));
    let kinds = [
        ("server_us_per_call", "server-side (loop in one statement)"),
        ("us_per_call", "pgbench -M prepared, 1 client (incl. round trip)"),
    ];
    for (idx, panel) in panels.iter().enumerate() {
        let (field, label) = kinds[idx / cols];
        let rev = rev_points[idx % cols];
        let ymax = points
            .iter()
            .flat_map(|p| SCRIPTS.iter().filter_map(move |s| p[field][*s].as_f64()))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            * 1.3;
        let ymin = points
            .iter()
            .flat_map(|p| SCRIPTS.iter().filter_map(move |s| p[field][*s].as_f64()))
            .filter(|v| v.is_finite() && *v > 0.0)
            .fold(f64::MAX, f64::min)
            .min(ymax / 2.0)
            * 0.7;
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{label}, {} revoked rows", human(rev as f64)), ("sans-serif", 14))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(
                (xmin * 0.7..xmax * 1.4).log_scale().with_key_points(xs.clone()),
                (ymin.max(0.01)..ymax.max(1.0)).log_scale().with_key_points(
                    [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0]
                        .into_iter()
                        .filter(|v| *v >= ymin && *v <= ymax)
                        .collect(),
                ),
            )
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("environments (log scale)")
            .y_desc("microseconds per call (log)")
            .x_label_formatter(&|x| human(*x))
            .y_label_formatter(&|y| format!("{y}"))
            .light_line_style(WHITE)
            .draw()
            .map_err(|x| e(&x))?;
        for (i, script) in SCRIPTS.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p["revoked"].as_i64() == Some(rev))
                .filter_map(|p| Some((p["environments"].as_f64()?, p[field][*script].as_f64()?)))
                .filter(|(_, y)| y.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|x| e(&x))?
                .label(*script)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(|x| e(&x))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
