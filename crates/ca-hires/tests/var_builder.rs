//! A high-resolution model built from a `candle_nn::VarBuilder`: a saved
//! file loads through it exactly, a `VarMap` trains it, and a missing
//! tensor is named.

mod common;

use std::collections::HashMap;

use ca_hires::{Decoder, Encoder, HiresModel};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use common::{max_diff, small_config, small_model, uniform};

fn tensors(model: &HiresModel) -> HashMap<String, Tensor> {
    model.to_safetensors_parts().0.into_iter().collect()
}

#[test]
fn a_saved_model_loads_through_a_var_builder_exactly() {
    for levels in 1..=3 {
        let model = small_model(levels, 7 + levels as u64);
        let vb = VarBuilder::from_tensors(tensors(&model), DType::F32, &Device::Cpu);
        let built = HiresModel::from_var_builder(small_config(), levels, &vb).unwrap();
        let images = uniform(&[2, 3, 40, 36], 1);
        let env = model.environment(&images).unwrap();
        assert_eq!(max_diff(&env, &built.environment(&images).unwrap()), 0.0);
        let (h, w) = model.state_size((40, 36));
        let state = uniform(&[2, 8, h, w], 2);
        let a = model.logits(&state, (40, 36)).unwrap();
        let b = built.logits(&state, (40, 36)).unwrap();
        assert_eq!(max_diff(&a, &b), 0.0, "levels {levels}");
        assert_eq!(built.param_count(), model.param_count());
        let rule_classifier = &built.rule().params().classifier.weight;
        let zero = rule_classifier.abs().unwrap().sum_all().unwrap();
        assert_eq!(zero.to_scalar::<f32>().unwrap(), 0.0);
    }
}

#[test]
fn a_var_map_creates_the_trainable_tensors_and_shares_them() {
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
    let model = HiresModel::from_var_builder(small_config(), 2, &vb.pp("hires")).unwrap();
    let held: usize = map.all_vars().iter().map(|v| v.elem_count()).sum();
    let count = model.param_count();
    assert_eq!(
        held,
        count.rule + count.reset_gate + count.encoder + count.decoder
    );
    let data = map.data().lock().unwrap();
    assert!(data.contains_key("hires.encoder.0.weight"));
    assert!(data.contains_key("hires.decoder.1.bias"));
    assert!(data.contains_key("hires.perceive.weight"));
    assert!(
        !data.keys().any(|k| k.contains("classifier")),
        "{:?}",
        data.keys()
    );
    // The map's variable is the model's: changing one changes the other.
    let w = data["hires.encoder.0.weight"].clone();
    drop(data);
    w.set(&w.zeros_like().unwrap()).unwrap();
    let layer = &model.encoder().layers()[0].weight;
    let sum = layer.abs().unwrap().sum_all().unwrap();
    assert_eq!(sum.to_scalar::<f32>().unwrap(), 0.0);
}

#[test]
fn a_missing_or_misshapen_tensor_is_named() {
    let model = small_model(2, 3);
    let mut missing: HashMap<String, Tensor> = tensors(&model)
        .into_iter()
        .map(|(k, v)| (format!("m.{k}"), v))
        .collect();
    missing.remove("m.decoder.1.bias");
    let vb = VarBuilder::from_tensors(missing, DType::F32, &Device::Cpu);
    let e = HiresModel::from_var_builder(small_config(), 2, &vb.pp("m"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("m.decoder.1.bias") && e.contains("missing"),
        "{e}"
    );

    let vb = VarBuilder::from_tensors(tensors(&model), DType::F32, &Device::Cpu);
    let e = Encoder::from_var_builder(3, &vb.pp("encoder"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("encoder.2.weight"), "{e}");
    let e = Decoder::from_var_builder(2, 8, 4, &vb.pp("decoder"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("decoder.1.weight") && e.contains("shape"), "{e}");
    let e = Encoder::from_var_builder(4, &vb).unwrap_err().to_string();
    assert!(e.contains("levels"), "{e}");
}

#[test]
fn the_encoder_is_a_candle_module() {
    use candle_nn::Module;
    let model = small_model(2, 5);
    let images = uniform(&[1, 3, 21, 19], 4);
    let direct = model.environment(&images).unwrap();
    let module: &dyn Module = model.encoder();
    assert_eq!(max_diff(&direct, &module.forward(&images).unwrap()), 0.0);
    let bad = uniform(&[1, 4, 8, 8], 4);
    let e = module.forward(&bad).unwrap_err().to_string();
    assert!(e.contains("images"), "{e}");
}
