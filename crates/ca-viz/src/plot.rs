//! PNG line plots (plotters on a bitmap) of the evaluation protocols' CSV
//! tables: axes, a title, a legend, optional vertical marks.
//!
//! Text needs a TrueType font, read once at run time from [`FONT_PATH`];
//! without it the plot is drawn with its lines, frame and marks but no text,
//! and [`font_available`] says so.

use std::path::Path;
use std::sync::OnceLock;

use image::RgbImage;
use plotters::prelude::*;

use crate::error::{Result, VizError};

/// Where the plots' font is read from.
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Line colours, in series order (then repeated).
const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Whether the plot font could be loaded (it is loaded on the first call).
pub fn font_available() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| match std::fs::read(FONT_PATH) {
        // The font lives as long as the process: plotters keeps a reference.
        Ok(bytes) => {
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes.leak()).is_ok()
        }
        Err(_) => false,
    })
}

/// One named line of a plot: `(x, y)` points; a non-finite `y` breaks the
/// line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend entry.
    pub name: String,
    /// The points, in drawing order.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// Column `column` of a numeric table against its first column, named
    /// `name`: `header` holds the column names, each row one value per
    /// column. `None` when the table has no such column.
    pub fn from_column(
        header: &[String],
        rows: &[Vec<f64>],
        column: &str,
        name: &str,
    ) -> Option<Self> {
        let k = header.iter().position(|c| c == column)?;
        Some(Series {
            name: name.to_string(),
            points: rows.iter().map(|r| (r[0], r[k])).collect(),
        })
    }
}

/// A line plot.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePlot {
    /// The title above the plot.
    pub title: String,
    /// The x-axis label.
    pub x_label: String,
    /// The y-axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// x positions marked by thin vertical gray lines (e.g. image changes).
    pub marks: Vec<f64>,
    /// A fixed y range; `None` fits the data.
    pub y_range: Option<(f64, f64)>,
}

/// Pixel size of the plots.
pub const PLOT_SIZE: (u32, u32) = (800, 480);

impl LinePlot {
    /// Draws the plot into a [`PLOT_SIZE`] PNG at `path`, with text when
    /// the font is available.
    pub fn save(&self, path: &Path) -> Result<()> {
        let image = self
            .render(font_available())
            .map_err(|reason| VizError::Plot {
                path: path.to_path_buf(),
                reason,
            })?;
        crate::render::save_png(&image, path)
    }

    /// Draws the plot into an image, with or without text.
    pub fn render(&self, text: bool) -> std::result::Result<RgbImage, String> {
        let (w, h) = PLOT_SIZE;
        let mut buf = vec![255u8; (w * h * 3) as usize];
        self.draw(&mut buf, text).map_err(|e| e.to_string())?;
        RgbImage::from_raw(w, h, buf).ok_or_else(|| "plot buffer has the wrong size".into())
    }

    fn x_range(&self) -> (f64, f64) {
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0));
        let (lo, hi) = min_max(xs.chain(self.marks.iter().copied()));
        widen(lo, hi, 0.0)
    }

    fn y_range(&self) -> (f64, f64) {
        if let Some(r) = self.y_range {
            return r;
        }
        let ys = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1));
        let (lo, hi) = min_max(ys);
        widen(lo, hi, 0.05)
    }

    fn draw(
        &self,
        buf: &mut [u8],
        text: bool,
    ) -> std::result::Result<(), Box<dyn std::error::Error + '_>> {
        let root = BitMapBackend::with_buffer(buf, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let (x0, x1) = self.x_range();
        let (y0, y1) = self.y_range();
        let mut builder = ChartBuilder::on(&root);
        builder.margin(16);
        if text {
            builder
                .caption(&self.title, ("sans-serif", 22))
                .x_label_area_size(44)
                .y_label_area_size(64);
        }
        let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(RGBColor(235, 235, 235));
        if text {
            mesh.x_desc(&self.x_label)
                .y_desc(&self.y_label)
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .label_style(("sans-serif", 14));
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw()?;
        if !text {
            chart
                .plotting_area()
                .draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))?;
        }
        for &m in &self.marks {
            chart.draw_series(LineSeries::new(
                [(m, y0), (m, y1)],
                RGBColor(170, 170, 170).stroke_width(1),
            ))?;
        }
        for (i, s) in self.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let style = colour.stroke_width(2);
            let mut first = true;
            for run in finite_runs(&s.points) {
                let drawn = chart.draw_series(LineSeries::new(run, style))?;
                if first && text {
                    drawn.label(s.name.as_str()).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2))
                    });
                }
                first = false;
            }
        }
        if text && !self.series.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .position(SeriesLabelPosition::LowerRight)
                .draw()?;
        }
        root.present()?;
        Ok(())
    }
}

/// A tick label: integers without a decimal point, other values with as
/// few decimals as tell them apart at plot scale.
fn tick(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 0.01 {
        format!("{v:.2}")
    } else {
        format!("{v:.1e}")
    }
}

/// The smallest and largest finite value, `(0, 1)` when there is none.
fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        (0.0, 1.0)
    } else {
        (lo, hi)
    }
}

/// `[lo, hi]` widened by `margin` of its span on both sides, and to a span
/// of at least 1e-9 around a single value.
fn widen(lo: f64, hi: f64, margin: f64) -> (f64, f64) {
    if hi - lo < 1e-9 {
        let pad = (lo.abs() * 0.05).max(0.5);
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * margin;
    (lo - pad, hi + pad)
}

/// The maximal runs of consecutive points with a finite `y` and `x`.
fn finite_runs(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut runs = Vec::new();
    let mut run = Vec::new();
    for &(x, y) in points {
        if x.is_finite() && y.is_finite() {
            run.push((x, y));
        } else if !run.is_empty() {
            runs.push(std::mem::take(&mut run));
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LinePlot {
        LinePlot {
            title: "t".into(),
            x_label: "step".into(),
            y_label: "IoU".into(),
            series: vec![
                Series {
                    name: "a".into(),
                    points: vec![(1.0, 0.1), (2.0, f64::NAN), (3.0, 0.5), (4.0, 0.6)],
                },
                Series {
                    name: "b".into(),
                    points: vec![(1.0, 0.3), (4.0, 0.3)],
                },
            ],
            marks: vec![2.5],
            y_range: None,
        }
    }

    #[test]
    fn draws_with_and_without_text() {
        let without = sample().render(false).unwrap();
        assert_eq!(without.dimensions(), PLOT_SIZE);
        assert!(without.pixels().any(|p| p.0 != [255, 255, 255]));
        if font_available() {
            let with = sample().render(true).unwrap();
            assert_ne!(with, without);
        }
    }

    #[test]
    fn runs_split_at_nan() {
        let runs = finite_runs(&sample().series[0].points);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[1], vec![(3.0, 0.5), (4.0, 0.6)]);
        assert_eq!(min_max([f64::NAN].into_iter()), (0.0, 1.0));
    }
}
