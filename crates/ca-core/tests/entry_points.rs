//! The entry points a candle user expects: a rule from a `VarBuilder`
//! (trainable vars of a `VarMap`, or weights loaded from safetensors), from
//! bytes, from checked parameters.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use ca_core::io::{config_from_metadata, parse_safetensors, read_file};
use ca_core::{
    param_shapes, CellConfig, CellRule, Colony, CoreError, Segmenter, DEFAULT_STEPS,
    RESET_BIAS_INIT,
};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn pets_small() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/pets48-small.safetensors")
}

/// A deterministic `[1, 3, h, w]` image with values in `[0, 1]`.
fn image(h: usize, w: usize) -> Tensor {
    let v: Vec<f32> = (0..3 * h * w)
        .map(|i| ((i * 7919) % 1000) as f32 / 999.0)
        .collect();
    Tensor::from_vec(v, (1, 3, h, w), &Device::Cpu).unwrap()
}

/// The state after `steps` steps of a colony of `rule` on [`image`].
fn evolved(rule: CellRule, steps: usize) -> Vec<f32> {
    let mut colony = Colony::new(rule, 1, 20, 24, 7).unwrap();
    colony.evolve(&image(20, 24), steps).unwrap();
    values(colony.state())
}

fn param_err(err: CoreError) -> (String, String) {
    match err {
        CoreError::Param { name, reason } => (name, reason),
        e => panic!("expected a CoreError::Param, got {e}"),
    }
}

#[test]
fn var_map_builds_shared_trainable_vars_under_the_prefix() {
    let cfg = CellConfig::default();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let rule = CellRule::from_var_builder(cfg.clone(), &vb.pp("ca")).unwrap();

    let map = varmap.data().lock().unwrap().clone();
    let mut expected: Vec<String> = param_shapes(&cfg)
        .into_iter()
        .map(|(name, ..)| format!("ca.{name}"))
        .collect();
    let mut held: Vec<String> = map.keys().cloned().collect();
    expected.sort();
    held.sort();
    assert_eq!(held, expected);

    // The rule's tensors are the map's variables, initialised as
    // `CellRule::new` draws them.
    let mut fan_in = 1;
    for p in rule.params().named() {
        let var = &map[&format!("ca.{}", p.name)];
        assert_eq!(var.as_tensor().id(), p.var.as_tensor().id(), "{}", p.name);
        if p.name.ends_with(".weight") {
            fan_in = p.var.dims()[1..].iter().product::<usize>();
        }
        let v = values(p.var.as_tensor());
        if p.name == "reset.bias" {
            assert!(v.iter().all(|&x| x == RESET_BIAS_INIT), "{v:?}");
        } else {
            let bound = 1.0 / (fan_in as f32).sqrt();
            assert!(v.iter().all(|x| x.abs() <= bound), "{}", p.name);
            if v.len() > 8 {
                let spread = v.iter().fold(0f32, |m, x| m.max(x.abs()));
                assert!(spread > bound / 2.0, "{}: max |x| {spread}", p.name);
            }
        }
    }

    // Gradients of the rule's output reach every variable of the map.
    let mut rng = ca_core::step_rng(0, 0);
    let state =
        ca_core::normal_state((1, cfg.state_channels, 8, 8), &mut rng, &Device::Cpu).unwrap();
    let draws = ca_core::StepDraws::sample(&cfg, (1, 8, 8), &mut rng, &Device::Cpu).unwrap();
    let next = rule.step(&state, &image(8, 8), &draws).unwrap();
    let loss = rule
        .logits(&next)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in &map {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no grad"));
        assert!(
            values(&g.abs().unwrap()).iter().any(|&x| x > 0.0),
            "{name}: zero grad"
        );
    }

    // A second build from the same map shares the same variables.
    let again = CellRule::from_var_builder(cfg, &vb.pp("ca")).unwrap();
    assert_eq!(varmap.all_vars().len(), map.len());
    for (a, b) in rule.params().named().iter().zip(again.params().named()) {
        assert_eq!(a.var.as_tensor().id(), b.var.as_tensor().id());
    }
}

#[test]
fn var_map_holding_other_shapes_names_the_tensor() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    CellRule::from_var_builder(CellConfig::default(), &vb.pp("ca")).unwrap();
    let wider = CellConfig {
        hidden_channels: 64,
        ..CellConfig::default()
    };
    let (name, reason) = param_err(CellRule::from_var_builder(wider, &vb.pp("ca")).unwrap_err());
    assert_eq!(name, "ca.perceive.weight");
    assert!(
        reason.contains("[64, 51, 3, 3]") && reason.contains("[72, 51, 3, 3]"),
        "{reason}"
    );
}

#[test]
fn memory_mapped_model_steps_exactly_like_load() {
    let path = pets_small();
    let bytes = read_file(&path).unwrap();
    let (_, meta) = parse_safetensors(&bytes, &path).unwrap();
    let config = config_from_metadata(&meta, &path).unwrap();
    // SAFETY: the model file is part of the repository and nothing writes
    // it while the test runs.
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu) }.unwrap();
    let mapped = CellRule::from_var_builder(config.clone(), &vb).unwrap();
    let loaded = CellRule::load(&path, &Device::Cpu).unwrap();
    assert_eq!(mapped.config(), loaded.config());
    assert_eq!(mapped.backend(), loaded.backend());
    for (a, b) in mapped.params().named().iter().zip(loaded.params().named()) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.trainable, b.trainable);
        assert_eq!(
            values(a.var.as_tensor()),
            values(b.var.as_tensor()),
            "{}",
            a.name
        );
    }
    let (a, b) = (evolved(mapped, 6), evolved(loaded.clone(), 6));
    assert_eq!(a, b, "same weights, same seed: the same states bit for bit");
    assert_ne!(a, evolved(loaded, 5), "the steps change the state");

    let buffered = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu).unwrap();
    let from_buffer = CellRule::from_var_builder(config, &buffered).unwrap();
    assert_eq!(evolved(from_buffer, 6), a);
}

#[test]
fn loading_builders_name_missing_and_misshaped_tensors() {
    let cfg = CellConfig::default();
    let rule = CellRule::new(cfg.clone(), 1, &Device::Cpu).unwrap();
    let (tensors, _) = rule.to_safetensors_parts();
    let prefixed = |skip: &str| -> HashMap<String, Tensor> {
        tensors
            .iter()
            .filter(|(n, _)| n != skip)
            .map(|(n, t)| (format!("m.{n}"), t.clone()))
            .collect()
    };

    let vb = VarBuilder::from_tensors(prefixed("hidden.0.bias"), DType::F32, &Device::Cpu);
    let (name, reason) =
        param_err(CellRule::from_var_builder(cfg.clone(), &vb.pp("m")).unwrap_err());
    assert_eq!(name, "m.hidden.0.bias");
    assert!(
        reason.contains("missing") && reason.contains("[72]"),
        "{reason}"
    );

    // A safetensors buffer whose update layer has one input too many.
    let mut misshaped = prefixed("");
    misshaped.insert(
        "m.update.weight".into(),
        Tensor::zeros((48, 73), DType::F32, &Device::Cpu).unwrap(),
    );
    let bytes = safetensors::serialize(misshaped, None).unwrap();
    let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu).unwrap();
    let (name, reason) =
        param_err(CellRule::from_var_builder(cfg.clone(), &vb.pp("m")).unwrap_err());
    assert_eq!(name, "m.update.weight");
    assert!(
        reason.contains("[48, 73]") && reason.contains("[48, 72]"),
        "{reason}"
    );

    // Under the wrong prefix nothing is found; the first tensor is named.
    let vb = VarBuilder::from_tensors(prefixed(""), DType::F32, &Device::Cpu);
    let (name, _) = param_err(CellRule::from_var_builder(cfg, &vb.pp("other")).unwrap_err());
    assert_eq!(name, "other.perceive.weight");
}

#[test]
fn from_safetensors_slice_loads_like_load_and_names_bytes_in_errors() {
    let path = pets_small();
    let bytes = std::fs::read(&path).unwrap();
    let from_slice = CellRule::from_safetensors_slice(&bytes, &Device::Cpu).unwrap();
    let loaded = CellRule::load(&path, &Device::Cpu).unwrap();
    assert_eq!(from_slice.config(), loaded.config());
    for (a, b) in from_slice
        .params()
        .named()
        .iter()
        .zip(loaded.params().named())
    {
        assert_eq!(
            values(a.var.as_tensor()),
            values(b.var.as_tensor()),
            "{}",
            a.name
        );
    }
    let err = CellRule::from_safetensors_slice(&bytes[..bytes.len() / 2], &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("<bytes>") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn from_params_names_the_mismatched_tensor_and_both_shapes() {
    let cfg = CellConfig::default();
    let good = CellRule::new(cfg.clone(), 2, &Device::Cpu).unwrap();
    assert!(CellRule::from_params(cfg.clone(), good.params().clone(), &Device::Cpu).is_ok());

    let mut params = good.params().clone();
    params.hidden[1].weight = Var::zeros((72, 71), DType::F32, &Device::Cpu).unwrap();
    let (name, reason) =
        param_err(CellRule::from_params(cfg.clone(), params, &Device::Cpu).unwrap_err());
    assert_eq!(name, "hidden.1.weight");
    assert!(
        reason.contains("[72, 71]") && reason.contains("[72, 72]"),
        "{reason}"
    );

    let mut params = good.params().clone();
    params.classifier.bias = Var::zeros(3, DType::F64, &Device::Cpu).unwrap();
    let (name, reason) =
        param_err(CellRule::from_params(cfg.clone(), params, &Device::Cpu).unwrap_err());
    assert_eq!(name, "classifier.bias");
    assert!(reason.contains("F64"), "{reason}");

    // Parameters of another config: one hidden layer fewer, no reset gate.
    let other = CellConfig {
        hidden_layers: 1,
        ..cfg.clone()
    };
    let params = CellRule::new(other, 0, &Device::Cpu)
        .unwrap()
        .params()
        .clone();
    let (name, reason) =
        param_err(CellRule::from_params(cfg.clone(), params, &Device::Cpu).unwrap_err());
    assert_eq!(name, "hidden.1.weight");
    assert!(reason.contains("missing"), "{reason}");
    let no_gate = CellConfig {
        reset_gate: false,
        ..cfg.clone()
    };
    let params = good.params().clone();
    let (name, reason) =
        param_err(CellRule::from_params(no_gate, params, &Device::Cpu).unwrap_err());
    assert_eq!(name, "reset.weight");
    assert!(reason.contains("not part of"), "{reason}");
}

/// The class map of a colony of `rule` evolved by hand, `[B, H, W]`,
/// seeded as a segmenter (and an evaluation's first chunk) seeds it.
fn by_hand(rule: &CellRule, images: &Tensor, steps: usize, seed: u64) -> Vec<u32> {
    let (b, _, h, w) = images.dims4().unwrap();
    let mut colony = Colony::new(rule, b, h, w, ca_core::chunk_seed(seed, 0)).unwrap();
    // What the cells see: the image standardised as the rule's config says.
    let env = colony.environment(images).unwrap();
    colony.evolve(&env, steps).unwrap();
    colony
        .predict()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn classes(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn segmenter_is_a_colony_evolved_by_hand() {
    let rule = CellRule::load(pets_small(), &Device::Cpu).unwrap();
    let seg = Segmenter::new(Arc::new(rule.clone()));
    assert_eq!((seg.steps, seg.seed), (DEFAULT_STEPS, 0));
    assert_eq!(DEFAULT_STEPS, 40);

    let one = image(20, 24);
    let map = seg.segment(&one.squeeze(0).unwrap()).unwrap();
    assert_eq!(map.dims(), [20, 24]);
    assert_eq!(map.dtype(), DType::U32);
    assert_eq!(classes(&map), by_hand(&rule, &one, 40, 0));
    assert!(classes(&map).iter().all(|&c| c < 3));

    let batch = Tensor::cat(&[&one, &one.affine(0.5, 0.25).unwrap()], 0).unwrap();
    let seg = Segmenter::new(&rule).with_steps(12).with_seed(3);
    let maps = seg.segment_batch(&batch).unwrap();
    assert_eq!(maps.dims(), [2, 20, 24]);
    assert_eq!(classes(&maps), by_hand(&rule, &batch, 12, 3));
}

#[test]
fn segmenter_start_gives_the_colony_segment_batch_evolves() {
    let rule = CellRule::load(pets_small(), &Device::Cpu).unwrap();
    let batch = Tensor::cat(
        &[&image(12, 16), &image(12, 16).affine(0.5, 0.2).unwrap()],
        0,
    )
    .unwrap();
    let seg = Segmenter::new(&rule).with_steps(9).with_seed(5);
    let whole = classes(&seg.segment_batch(&batch).unwrap());

    let (mut colony, env) = seg.clone().start(&batch).unwrap();
    assert_eq!(colony.state().dims()[0], 2);
    // The environment is the model's, not the raw images (the fixture
    // standardises its image).
    let raw = Colony::new(&rule, 2, 12, 16, 5)
        .unwrap()
        .environment(&batch)
        .unwrap();
    assert_eq!(values(&env), values(&raw));
    assert_ne!(values(&env), values(&batch));
    for _ in 0..9 {
        colony.step(&env).unwrap();
    }
    assert_eq!(classes(&colony.predict().unwrap()), whole);

    let bad = Tensor::zeros((3, 8, 8), DType::F32, &Device::Cpu).unwrap();
    match seg.start(&bad).map(|_| ()).unwrap_err() {
        CoreError::Shape(ca_core::ShapeError { what, got, .. }) => {
            assert_eq!((what, got), ("images", vec![3, 8, 8]))
        }
        e => panic!("expected a CoreError::Shape, got {e}"),
    }
}

#[test]
fn segmenter_rejects_bad_shapes_naming_the_argument() {
    let rule = CellRule::new(CellConfig::default(), 0, &Device::Cpu).unwrap();
    let seg = Segmenter::new(rule).with_steps(1);
    let zeros = |dims: &[usize], dtype| Tensor::zeros(dims, dtype, &Device::Cpu).unwrap();
    let what = |r: ca_core::Result<Tensor>| match r.unwrap_err() {
        CoreError::Shape(ca_core::ShapeError { what, got, .. }) => (what, got),
        e => panic!("expected a CoreError::Shape, got {e}"),
    };
    assert_eq!(
        what(seg.segment(&zeros(&[4, 8, 8], DType::F32))),
        ("image", vec![4, 8, 8])
    );
    assert_eq!(
        what(seg.segment(&zeros(&[1, 3, 8, 8], DType::F32))).0,
        "image"
    );
    assert_eq!(what(seg.segment(&zeros(&[3, 0, 8], DType::F32))).0, "image");
    assert_eq!(what(seg.segment(&zeros(&[3, 8, 8], DType::F64))).0, "image");
    assert_eq!(
        what(seg.segment_batch(&zeros(&[3, 8, 8], DType::F32))),
        ("images", vec![3, 8, 8])
    );
    assert_eq!(
        what(seg.segment_batch(&zeros(&[0, 3, 8, 8], DType::F32))).0,
        "images"
    );
    assert_eq!(
        what(seg.segment_batch(&zeros(&[2, 1, 8, 8], DType::F32))).0,
        "images"
    );
}

#[cfg(feature = "image")]
#[test]
fn segment_rgb_scales_bytes_to_the_unit_range() {
    let rgb = image::RgbImage::from_fn(5, 4, |x, y| {
        image::Rgb([(x * 50) as u8, (y * 60) as u8, 255])
    });
    let chw = ca_core::rgb_to_chw(&rgb);
    assert_eq!(chw.len(), 3 * 4 * 5);
    assert_eq!(chw[1], 50.0 / 255.0, "red of (x 1, y 0)");
    assert_eq!(chw[20 + 2 * 5], 120.0 / 255.0, "green of (x 0, y 2)");
    assert!(chw[40..].iter().all(|&v| v == 1.0), "blue");

    let rule = CellRule::load(pets_small(), &Device::Cpu).unwrap();
    let seg = Segmenter::new(&rule).with_steps(10);
    let tensor = Tensor::from_vec(chw, (3, 4, 5), &Device::Cpu).unwrap();
    let map = seg.segment_rgb(&rgb).unwrap();
    assert_eq!(map.dims(), [4, 5]);
    assert_eq!(classes(&map), classes(&seg.segment(&tensor).unwrap()));
    let empty = seg.segment_rgb(&image::RgbImage::new(0, 3)).unwrap_err();
    assert!(
        matches!(
            empty,
            CoreError::Shape(ca_core::ShapeError { what: "image", .. })
        ),
        "{empty}"
    );
}
