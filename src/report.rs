//! What `ca-eval` measures, drawn by `ca-viz`: a protocol's tables, plot
//! and pictures written to a folder, the comparison of one column across
//! tables, and a sweep's validation curves.

use std::path::{Path, PathBuf};

use ca_eval::protocols::{EvalSet, ProtocolOutput, Table};
use ca_eval::sweep::ValidationCurve;
use ca_viz::plot::{LinePlot, Series};
use ca_viz::render;

use crate::error::{Result, ToolError};

/// The plot of a protocol's main table, as its [`ca_eval::protocols::Chart`]
/// describes it.
pub fn protocol_plot(output: &ProtocolOutput) -> LinePlot {
    let (chart, table) = (&output.chart, &output.table);
    LinePlot {
        title: chart.title.clone(),
        x_label: chart.x_label.clone(),
        y_label: chart.y_label.clone(),
        series: (chart.columns.iter())
            .filter_map(|(c, label)| Series::from_column(&table.columns, &table.rows, c, label))
            .collect(),
        marks: chart.marks.clone(),
        y_range: chart.y_range,
    }
}

/// Writes a protocol's tables (`NAME.csv`, `NAME_SUFFIX.csv`), its plot
/// (`NAME.png`) and, for the uncertainty protocol, one picture per kept
/// image of `set` (`NAME_map_INDEX.png`, [`render::spread_panel`] enlarged
/// four times, white at the largest variance among the pictures) into
/// `dir`; returns the paths written.
pub fn write_protocol(output: &ProtocolOutput, set: &EvalSet, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = output.write_tables(dir)?;
    let png = dir.join(format!("{}.png", output.name));
    protocol_plot(output).save(&png)?;
    paths.push(png);
    let maps = &output.maps;
    let vmax = maps
        .iter()
        .flat_map(|m| m.prob_variance.iter().copied())
        .fold(0f32, f32::max);
    for map in maps {
        let image = set.images.get(map.index).ok_or_else(|| {
            ToolError::invalid("map index", map.index, "not an image of the evaluation set")
        })?;
        let panel =
            render::spread_panel(image, &map.majority, &map.prob_variance, set.size, vmax, 4);
        let path = dir.join(format!("{}_map_{}.png", output.name, map.index));
        render::save_png(&panel, &path)?;
        paths.push(path);
    }
    Ok(paths)
}

/// One line per named table: column `column` against each table's first
/// column, e.g. the object IoU of several models under the same protocol
/// (paper Fig 11). Errors name a table without the column.
pub fn compare(tables: &[(String, Table)], column: &str, title: String) -> Result<LinePlot> {
    let series = (tables.iter())
        .map(|(name, t)| {
            Series::from_column(&t.columns, &t.rows, column, name).ok_or_else(|| {
                let have = t.columns.join(", ");
                ToolError::invalid(
                    "column",
                    column,
                    format!("not in table '{name}' (columns: {have})"),
                )
            })
        })
        .collect::<Result<_>>()?;
    Ok(LinePlot {
        title,
        x_label: (tables.first().and_then(|(_, t)| t.columns.first().cloned())).unwrap_or_default(),
        y_label: column.to_string(),
        series,
        marks: vec![],
        y_range: ca_eval::protocols::is_iou_column(column).then_some((0.0, 1.0)),
    })
}

/// A sweep's validation curves (object IoU at CA step `at` against
/// CPU-minutes, one line per configuration) as a plot.
pub fn sweep_plot(curves: &[ValidationCurve], at: usize) -> LinePlot {
    LinePlot {
        title: format!("validation object IoU at CA step {at}: median over seeds"),
        x_label: "CPU-minutes of training".into(),
        y_label: "object IoU".into(),
        series: (curves.iter())
            .map(|c| Series {
                name: c.config.clone(),
                points: c.points.clone(),
            })
            .collect(),
        marks: vec![],
        y_range: None,
    }
}
