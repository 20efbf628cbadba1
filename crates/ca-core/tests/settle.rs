//! Anytime stopping: a colony stops when its class map has settled, never
//! before `min_steps` nor after `max_steps`, and its map is the plain
//! segmenter's at the step it stopped.

use ca_core::{CellConfig, CellRule, CoreError, Segmenter, Settling};
use candle_core::{DType, Device, Tensor};

fn rule() -> CellRule {
    let config = CellConfig {
        state_channels: 8,
        hidden_channels: 16,
        ..CellConfig::default()
    };
    CellRule::new(config, 5, &Device::Cpu).unwrap()
}

fn images(b: usize) -> Tensor {
    Tensor::rand(0f32, 1.0, (b, 3, 9, 11), &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn a_quiet_rule_stops_at_min_steps_and_a_strict_one_at_max_steps() {
    let (rule, images) = (rule(), images(3));
    let segmenter = Segmenter::new(&rule).with_seed(2);
    let lenient = Settling {
        max_change: 0.999,
        window: 2,
        min_steps: 4,
        max_steps: 30,
        smoothing: 0.0,
    };
    let out = segmenter.segment_until_stable(&images, &lenient).unwrap();
    assert_eq!(out.steps, [4, 4, 4]);
    assert_eq!(out.settled, [true, true, true]);
    assert_eq!(out.classes.dims(), [3, 9, 11]);
    assert_eq!(out.classes.dtype(), DType::U32);
    let capped = Settling {
        max_change: 0.0,
        window: 3,
        min_steps: 3,
        max_steps: 3,
        smoothing: 0.0,
    };
    let out = segmenter.segment_until_stable(&images, &capped).unwrap();
    assert_eq!(out.steps, [3, 3, 3], "never past max_steps");
}

#[test]
fn each_image_keeps_the_plain_map_of_the_step_it_settled_at() {
    let (rule, images) = (rule(), images(1));
    let settling = Settling {
        max_change: 0.02,
        window: 2,
        min_steps: 2,
        max_steps: 40,
        smoothing: 0.0,
    };
    let segmenter = Segmenter::new(&rule).with_seed(7);
    let out = segmenter.segment_until_stable(&images, &settling).unwrap();
    let t = out.steps[0];
    assert!((2..=40).contains(&t));
    let plain = segmenter
        .clone()
        .with_steps(t)
        .segment_batch(&images)
        .unwrap();
    assert_eq!(flat(&out.classes), flat(&plain));
    // An ensemble settles too, within its bounds, and so does a map of
    // smoothed probabilities.
    let four = segmenter.clone().with_ensemble(4);
    let out = four.segment_until_stable(&images, &settling).unwrap();
    assert!((2..=40).contains(&out.steps[0]));
    let smooth = Settling {
        smoothing: 0.5,
        ..settling
    };
    let out = segmenter.segment_until_stable(&images, &smooth).unwrap();
    assert!((2..=40).contains(&out.steps[0]));
    assert_eq!(out.classes.dims(), [1, 9, 11]);
}

#[test]
fn bad_settings_are_refused_by_name() {
    let (rule, images) = (rule(), images(1));
    let segmenter = Segmenter::new(&rule);
    let base = Settling::default();
    assert!(base.validate().is_ok());
    for (settling, field) in [
        (
            Settling {
                max_change: 1.0,
                ..base
            },
            "max_change",
        ),
        (
            Settling {
                max_change: -0.1,
                ..base
            },
            "max_change",
        ),
        (Settling { window: 0, ..base }, "window"),
        (
            Settling {
                min_steps: 2,
                window: 3,
                ..base
            },
            "min_steps",
        ),
        (
            Settling {
                max_steps: 5,
                ..base
            },
            "max_steps",
        ),
    ] {
        let err = segmenter
            .segment_until_stable(&images, &settling)
            .err()
            .unwrap();
        assert!(
            matches!(&err, CoreError::InvalidConfig(v) if v.name == field),
            "{field}: {err}"
        );
    }
    let bad = Tensor::zeros((3, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let err = segmenter.segment_until_stable(&bad, &base).err().unwrap();
    assert!(err.to_string().contains("images"), "{err}");
}

/// The tracker on probabilities that flicker between two classes every
/// step: without smoothing every cell changes every step and the image
/// never settles (it stops at `max_steps`); the running average of the
/// default rule (smoothing 0.8) holds the first class and settles as soon
/// as the window allows.
#[test]
fn smoothing_settles_a_flickering_map() {
    let dev = Device::Cpu;
    let flicker = |t: usize| {
        let (a, b) = if t % 2 == 1 {
            (0.55f32, 0.45f32)
        } else {
            (0.45, 0.55)
        };
        Tensor::from_vec(vec![a, a, b, b, 0.0, 0.0], (1, 3, 1, 2), &dev).unwrap()
    };
    let run = |rule: Settling| {
        let mut tracker = ca_core::SettleTracker::new(rule, 1, 2);
        let mut t = 0;
        while t < rule.max_steps {
            t += 1;
            if tracker.observe(t, &flicker(t)).unwrap() {
                break;
            }
        }
        (t, tracker.settled_at()[0])
    };
    let smooth = Settling {
        max_steps: 20,
        ..Settling::default()
    };
    assert_eq!(smooth.smoothing, 0.8);
    assert_eq!(run(smooth), (8, Some(8)));
    let plain = Settling {
        smoothing: 0.0,
        ..smooth
    };
    assert_eq!(run(plain), (20, None));
    // Probabilities of another batch or grid are refused by name.
    let mut tracker = ca_core::SettleTracker::new(plain, 2, 2);
    let e = tracker.observe(1, &flicker(1)).unwrap_err().to_string();
    assert!(e.contains("class probabilities to settle"), "{e}");
}
