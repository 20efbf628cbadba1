//! The one-pass CPU pixel cross entropy (`LossTargets` without class
//! weights or Dice term) against candle's log-softmax path
//! (`per_sample_cross_entropy`), value and gradient.

mod common;

use ca_sched::{per_sample_cross_entropy, LossTargets};
use candle_core::{Device, Tensor, Var};
use common::max_diff;

/// On logits far from zero (the max is subtracted) and a per-sample
/// weighting of the losses, so that each sample's gradient is checked.
#[test]
fn the_one_pass_loss_matches_the_log_softmax_path() {
    let (b, c, h, w) = (3, 4, 5, 7);
    let v: Vec<f32> = (0..b * c * h * w)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.9)
        .collect();
    let logits =
        Var::from_tensor(&Tensor::from_vec(v, (b, c, h, w), &Device::Cpu).unwrap()).unwrap();
    let ids: Vec<u32> = (0..b * h * w).map(|i| (i * 7 % c) as u32).collect();
    let labels = Tensor::from_vec(ids, (b, h, w), &Device::Cpu).unwrap();
    let probe = Tensor::new(&[0.5f32, -2.0, 1.5], &Device::Cpu).unwrap();
    let targets = LossTargets::new(&labels, c, None, 0.0).unwrap();
    let ours = targets.per_sample_loss(&logits).unwrap();
    let theirs = per_sample_cross_entropy(&logits, &labels).unwrap();
    let (a, e) = (
        ours.to_vec1::<f32>().unwrap(),
        theirs.to_vec1::<f32>().unwrap(),
    );
    for (a, e) in a.iter().zip(&e) {
        assert!((a - e).abs() <= 1e-5 * e.abs().max(1.0), "{a} vs {e}");
    }
    let grads = |l: Tensor| (l * &probe).and_then(|l| l.sum_all()?.backward()).unwrap();
    let (g_ours, g_theirs) = (grads(ours), grads(theirs));
    let diff = max_diff(g_ours.get(&logits).unwrap(), g_theirs.get(&logits).unwrap());
    assert!(diff < 1e-6, "gradient differs by {diff}");
}
