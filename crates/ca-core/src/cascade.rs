//! Coarse-to-fine colonies: the first steps of an evolution run on grids
//! 2, 4, ... times coarser than the state grid, with the same rule, so that
//! information crosses the image in a few steps; the state is then
//! upsampled (nearest) to the next level and the evolution goes on.
//!
//! The state keeps its full shape `[B, S, h, w]` at every level: during a
//! coarse level of factor `f` it is made of `f x f` blocks of equal cells
//! (the coarse state upsampled), so reading every `f`-th cell gives the
//! coarse state back exactly, and everything that reads a colony's state
//! (logits, damage, projections) works at every step.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// One coarse level of a [`Cascade`]: `steps` CA steps on a grid `factor`
/// times coarser than the state grid (per side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CascadeLevel {
    /// How many times coarser than the state grid, per side (at least 2).
    pub factor: usize,
    /// CA steps at this level (at least 1).
    pub steps: usize,
}

/// The coarse levels that open an evolution, coarsest first; after them
/// every step runs on the full state grid. An empty cascade is the plain
/// colony.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cascade {
    /// The coarse levels, coarsest (largest factor) first.
    pub levels: Vec<CascadeLevel>,
}

impl Cascade {
    /// The cascade of grid sides `sides` (coarsest first, the last one the
    /// state grid, e.g. `[12, 24, 48]`) with `steps[i]` CA steps at side
    /// `sides[i]`; the last level's steps are those of the full grid and
    /// are not stored (a colony runs on the full grid for as long as it is
    /// stepped).
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] naming `levels` when the lists differ in
    /// length, a side does not divide the last one, or the sides do not
    /// grow strictly; naming `level_steps` when a step count is 0.
    pub fn from_sides(sides: &[usize], steps: &[usize]) -> Result<Self> {
        let bad = |field: &'static str, value: String, reason: &'static str| {
            Err(CoreError::InvalidConfig(crate::InvalidValue {
                name: field,
                value,
                reason: reason.into(),
            }))
        };
        if sides.len() != steps.len() || sides.is_empty() {
            return bad(
                "levels",
                format!("{sides:?} with steps {steps:?}"),
                "needs one step count per level and at least one level",
            );
        }
        let full = *sides.last().expect("checked non-empty");
        let mut levels = Vec::new();
        for (i, (&side, &n)) in sides.iter().zip(steps).enumerate() {
            if n == 0 {
                return bad(
                    "level_steps",
                    format!("{steps:?}"),
                    "every level needs a step",
                );
            }
            if side == 0 || !full.is_multiple_of(side) {
                return bad(
                    "levels",
                    format!("{sides:?}"),
                    "every side must divide the last (the state grid)",
                );
            }
            if i > 0 && side <= sides[i - 1] {
                return bad("levels", format!("{sides:?}"), "sides must grow strictly");
            }
            if i + 1 < sides.len() {
                levels.push(CascadeLevel {
                    factor: full / side,
                    steps: n,
                });
            }
        }
        Ok(Cascade { levels })
    }

    /// Checks the levels: factors at least 2 and strictly decreasing, steps
    /// at least 1; the error names the field `cascade`.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: &'static str| {
            Err(CoreError::InvalidConfig(crate::InvalidValue {
                name: "cascade",
                value: format!("{:?}", self.levels),
                reason: reason.into(),
            }))
        };
        for (i, l) in self.levels.iter().enumerate() {
            if l.factor < 2 {
                return bad("a coarse level's factor must be at least 2");
            }
            if l.steps == 0 {
                return bad("a coarse level needs at least one step");
            }
            if i > 0 && l.factor >= self.levels[i - 1].factor {
                return bad("factors must decrease strictly (coarsest first)");
            }
        }
        Ok(())
    }

    /// CA steps spent on coarse levels, before the first full-grid step.
    pub fn coarse_steps(&self) -> usize {
        self.levels.iter().map(|l| l.steps).sum()
    }

    /// The factor of CA step `t` (0-based), or `None` when step `t` runs on
    /// the full grid.
    pub fn factor_at(&self, t: u64) -> Option<usize> {
        let mut end = 0u64;
        for l in &self.levels {
            end += l.steps as u64;
            if t < end {
                return Some(l.factor);
            }
        }
        None
    }

    /// One line for tables, e.g. `1/4 x 20, 1/2 x 10`.
    pub fn describe(&self) -> String {
        self.levels
            .iter()
            .map(|l| format!("1/{} x {}", l.factor, l.steps))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The coarse grid `(ceil(h / f), ceil(w / f))` of a `(h, w)` grid.
pub fn coarse_size((h, w): (usize, usize), factor: usize) -> (usize, usize) {
    (h.div_ceil(factor), w.div_ceil(factor))
}

fn index(len: usize, f: impl Fn(usize) -> usize, device: &Device) -> Result<Tensor> {
    let v: Vec<u32> = (0..len).map(|i| f(i) as u32).collect();
    Ok(Tensor::from_vec(v, len, device)?)
}

/// Every `factor`-th cell of `state` in both directions (the top-left cell
/// of each block): the coarse state of a full-shape state made of blocks.
/// Differentiable.
///
/// # Shapes
///
/// `[B, C, h, w]` -> `[B, C, ceil(h / f), ceil(w / f)]`.
pub fn subsample(state: &Tensor, factor: usize) -> Result<Tensor> {
    let (_, _, h, w) = state.dims4()?;
    let (hc, wc) = coarse_size((h, w), factor);
    let dev = state.device();
    let rows = index(hc, |i| i * factor, dev)?;
    let cols = index(wc, |j| j * factor, dev)?;
    Ok(state.index_select(&rows, 2)?.index_select(&cols, 3)?)
}

/// Nearest upsampling by `factor`, cropped to `(h, w)`: each coarse cell
/// becomes an `f x f` block. Differentiable (the gradient of a block is
/// summed into its cell). `subsample(upsample(x, f, size), f) == x`.
///
/// # Shapes
///
/// `[B, C, hc, wc]` -> `[B, C, h, w]`, with `hc = ceil(h / f)`, `wc =
/// ceil(w / f)`.
pub fn upsample(coarse: &Tensor, factor: usize, (h, w): (usize, usize)) -> Result<Tensor> {
    let (_, _, hc, wc) = coarse.dims4()?;
    if (hc, wc) != coarse_size((h, w), factor) {
        return Err(CoreError::Shape(crate::ShapeError {
            what: "coarse state to upsample",
            expected: format!(
                "{:?} for {h}x{w} at factor {factor}",
                coarse_size((h, w), factor)
            ),
            got: vec![hc, wc],
        }));
    }
    let dev = coarse.device();
    let rows = index(h, |i| i / factor, dev)?;
    let cols = index(w, |j| j / factor, dev)?;
    Ok(coarse.index_select(&rows, 2)?.index_select(&cols, 3)?)
}

/// The mean of each `f x f` block of `env` (blocks cut by the grid's edge
/// average the cells they have): the environment of a coarse level.
///
/// # Shapes
///
/// `[B, E, h, w]` -> `[B, E, ceil(h / f), ceil(w / f)]`.
pub fn block_mean(env: &Tensor, factor: usize) -> Result<Tensor> {
    let (_, _, h, w) = env.dims4()?;
    let (hc, wc) = coarse_size((h, w), factor);
    let dev = env.device();
    // Sum the rows (then the columns) of each block with a 0/1 matrix, so
    // that partial blocks at the edge work as well as whole ones.
    let pool = |len: usize, coarse: usize| -> Result<Tensor> {
        let mut m = vec![0f32; coarse * len];
        for i in 0..len {
            let block = i / factor;
            let size = (len - block * factor).min(factor);
            m[block * len + i] = 1.0 / size as f32;
        }
        Ok(Tensor::from_vec(m, (coarse, len), dev)?)
    };
    let rows = pool(h, hc)?; // [hc, h]
    let cols = pool(w, wc)?.t()?; // [w, wc]
    let (b, e, _, _) = env.dims4()?;
    let x = env.reshape((b * e * h, w))?.matmul(&cols)?; // [b e h, wc]
    let x = x.reshape((b * e, h, wc))?;
    let x = rows.broadcast_left(b * e)?.matmul(&x)?; // [b e, hc, wc]
    Ok(x.reshape((b, e, hc, wc))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(shape: (usize, usize, usize, usize)) -> Tensor {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        Tensor::arange(0f32, n as f32, &Device::Cpu)
            .unwrap()
            .reshape(shape)
            .unwrap()
    }

    #[test]
    fn sides_become_factors_and_the_last_level_is_the_grid() {
        let c = Cascade::from_sides(&[12, 24, 48], &[20, 10, 10]).unwrap();
        assert_eq!(
            c.levels,
            vec![
                CascadeLevel {
                    factor: 4,
                    steps: 20
                },
                CascadeLevel {
                    factor: 2,
                    steps: 10
                }
            ]
        );
        c.validate().unwrap();
        assert_eq!(c.coarse_steps(), 30);
        assert_eq!(c.factor_at(0), Some(4));
        assert_eq!(c.factor_at(19), Some(4));
        assert_eq!(c.factor_at(20), Some(2));
        assert_eq!(c.factor_at(29), Some(2));
        assert_eq!(c.factor_at(30), None);
        assert_eq!(c.describe(), "1/4 x 20, 1/2 x 10");
        let one = Cascade::from_sides(&[48], &[40]).unwrap();
        assert!(one.levels.is_empty());
        assert_eq!(one.factor_at(0), None);
    }

    #[test]
    fn nonsense_levels_are_refused_with_the_field_named() {
        for (sides, steps, field) in [
            (&[12, 24, 48][..], &[20, 10][..], "levels"),
            (&[10, 48], &[5, 5], "levels"),
            (&[24, 12, 48], &[5, 5, 5], "levels"),
            (&[12, 48], &[0, 5], "level_steps"),
            (&[], &[], "levels"),
        ] {
            let msg = Cascade::from_sides(sides, steps).unwrap_err().to_string();
            assert!(msg.contains(field), "{sides:?}: {msg}");
        }
        let bad = Cascade {
            levels: vec![
                CascadeLevel {
                    factor: 2,
                    steps: 3,
                },
                CascadeLevel {
                    factor: 4,
                    steps: 3,
                },
            ],
        };
        assert!(bad.validate().unwrap_err().to_string().contains("cascade"));
    }

    #[test]
    fn upsampling_keeps_shape_and_values() {
        for (h, w, f) in [(48, 48, 4), (48, 48, 2), (13, 7, 4), (5, 9, 2)] {
            let (hc, wc) = coarse_size((h, w), f);
            let coarse = ramp((2, 3, hc, wc));
            let up = upsample(&coarse, f, (h, w)).unwrap();
            assert_eq!(up.dims(), [2, 3, h, w]);
            let back = subsample(&up, f).unwrap();
            assert_eq!(
                back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                coarse.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            );
            let c = &coarse;
            for i in [0, h / 2, h - 1] {
                for j in [0, w / 2, w - 1] {
                    let a = up
                        .get(1)
                        .unwrap()
                        .get(2)
                        .unwrap()
                        .get(i)
                        .unwrap()
                        .get(j)
                        .unwrap();
                    let b = c
                        .get(1)
                        .unwrap()
                        .get(2)
                        .unwrap()
                        .get(i / f)
                        .unwrap()
                        .get(j / f)
                        .unwrap();
                    assert_eq!(a.to_scalar::<f32>().unwrap(), b.to_scalar::<f32>().unwrap());
                }
            }
        }
    }

    #[test]
    fn block_means_average_whole_and_partial_blocks() {
        let env = ramp((1, 1, 3, 5)); // rows 0..3, cols 0..5
        let m = block_mean(&env, 2).unwrap();
        assert_eq!(m.dims(), [1, 1, 2, 3]);
        let v = m.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // block (0,0): 0,1,5,6 -> 3; (0,2): 4,9 -> 6.5; (1,0): 10,11 -> 10.5
        assert_eq!(v, vec![3.0, 5.0, 6.5, 10.5, 12.5, 14.0]);
    }
}
