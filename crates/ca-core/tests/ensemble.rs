//! Pseudo-ensembles: one member is the plain segmenter bit for bit, the
//! averaged probabilities sum to 1 per pixel, independent members spread,
//! and bad member counts are refused by name.

use ca_core::{
    ensemble_mean, repeat_members, CellConfig, CellRule, CoreError, Segmenter, DEFAULT_STEPS,
};
use candle_core::{DType, Device, Tensor, D};

fn rule() -> CellRule {
    let config = CellConfig {
        state_channels: 8,
        hidden_channels: 16,
        ..CellConfig::default()
    };
    CellRule::new(config, 3, &Device::Cpu).unwrap()
}

fn images() -> Tensor {
    Tensor::rand(0f32, 1.0, (2, 3, 10, 12), &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn one_member_is_the_plain_segmenter_bit_for_bit() {
    let (rule, images) = (rule(), images());
    let plain = Segmenter::new(&rule).with_steps(6).with_seed(4);
    let one = plain.clone().with_ensemble(1);
    assert_eq!(
        flat(&plain.segment_batch(&images).unwrap()),
        flat(&one.segment_batch(&images).unwrap())
    );
    // Its probabilities are the plain colony's softmax, its spread 0.
    let (mut colony, env) = plain.clone().start(&images).unwrap();
    colony.evolve(&env, 6).unwrap();
    let softmax = candle_nn::ops::softmax(&colony.logits().unwrap(), 1).unwrap();
    let out = one.probabilities_batch(&images).unwrap();
    assert_eq!(flat(&out.probabilities), flat(&softmax));
    assert!(flat(&out.variance).iter().all(|&v| v == 0.0));
    assert_eq!(
        flat(&out.classes().unwrap()),
        flat(&colony.predict().unwrap())
    );
    assert_eq!(Segmenter::new(&rule).ensemble, 1);
    assert_eq!(Segmenter::new(&rule).steps, DEFAULT_STEPS);
}

#[test]
fn ensemble_probabilities_sum_to_one_and_members_spread() {
    let (rule, images) = (rule(), images());
    let four = Segmenter::new(&rule).with_steps(6).with_ensemble(4);
    let out = four.probabilities_batch(&images).unwrap();
    assert_eq!(out.probabilities.dims(), [2, 3, 10, 12]);
    assert_eq!(out.variance.dims(), [2, 10, 12]);
    assert_eq!(out.members, 4);
    let sums = flat(&out.probabilities.sum(1).unwrap());
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    let var = flat(&out.variance);
    assert!(var.iter().all(|&v| (0.0..=0.25).contains(&v)));
    assert!(var.iter().any(|&v| v > 0.0), "independent members differ");
    assert_eq!(
        flat(&four.segment_batch(&images).unwrap()),
        flat(&out.classes().unwrap())
    );
    // One image alone: [3, H, W] -> [H, W].
    let single = four.segment(&images.get(0).unwrap()).unwrap();
    assert_eq!(single.dims(), [10, 12]);
}

#[test]
fn identical_members_average_to_their_softmax_with_no_spread() {
    let logits = Tensor::randn(0f32, 2.0, (2, 3, 4, 5), &Device::Cpu).unwrap();
    let out = ensemble_mean(&repeat_members(&logits, 3).unwrap(), 3).unwrap();
    let softmax = candle_nn::ops::softmax(&logits, 1).unwrap();
    let diff = (out.probabilities - softmax)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(D::Minus1)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-6, "{diff}");
    assert!(flat(&out.variance).iter().all(|&v| v.abs() < 1e-12));
}

#[test]
fn bad_member_counts_are_refused_by_name() {
    let (rule, images) = (rule(), images());
    let err = Segmenter::new(&rule)
        .with_ensemble(0)
        .segment_batch(&images)
        .err()
        .unwrap();
    assert!(
        matches!(&err, CoreError::InvalidConfig(v) if v.name == "ensemble"),
        "{err}"
    );
    let logits = Tensor::zeros((5, 3, 2, 2), DType::F32, &Device::Cpu).unwrap();
    let err = ensemble_mean(&logits, 2).err().unwrap().to_string();
    assert!(
        err.contains("ensemble logits") && err.contains("members = 2"),
        "{err}"
    );
}
