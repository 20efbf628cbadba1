//! Output shapes of the encoder, the decoder and the whole model for every
//! number of levels and odd sizes; the crop and the padding are exact.

mod common;

use ca_hires::{reduced_size, Decoder, Encoder, HiresError};
use candle_core::Device;
use common::{max_diff, small_model, uniform};

const SIZES: [(usize, usize); 7] = [
    (96, 96),
    (95, 95),
    (97, 97),
    (33, 33),
    (95, 96),
    (96, 33),
    (1, 2),
];

#[test]
fn encoder_and_decoder_shapes_for_all_levels_and_odd_sizes() {
    for levels in 1..=3 {
        let model = small_model(levels, levels as u64);
        for (h, w) in SIZES {
            let (sh, sw) = (reduced_size(h, levels), reduced_size(w, levels));
            assert_eq!(model.state_size((h, w)), (sh, sw));
            let env = model.environment(&uniform(&[2, 3, h, w], 1)).unwrap();
            assert_eq!(env.dims(), [2, 8, sh, sw], "levels {levels}, {h}x{w}");
            let logits = model.logits(&uniform(&[2, 8, sh, sw], 2), (h, w)).unwrap();
            assert_eq!(logits.dims(), [2, 3, h, w], "levels {levels}, {h}x{w}");
        }
    }
}

#[test]
fn factors_of_the_paper() {
    for (levels, image) in [(1, 96), (2, 192), (3, 384)] {
        assert_eq!(small_model(levels, 0).state_size((image, image)), (48, 48));
    }
    assert_eq!(small_model(3, 0).factor(), 8);
}

/// The decoder crops a doubled grid; for an odd side that must equal a
/// transposed convolution with output padding 0.
#[test]
fn the_crop_equals_output_padding_zero() {
    let dec = Decoder::new(1, 8, 3, 4, &Device::Cpu).unwrap();
    let state = uniform(&[1, 8, 17, 17], 5);
    let ours = dec.forward(&state, (33, 33)).unwrap();
    let layer = &dec.layers()[0];
    let plain = state
        .conv_transpose2d(layer.weight.as_tensor(), 1, 0, 2, 1)
        .unwrap()
        .broadcast_add(&layer.bias.as_tensor().reshape((1, 3, 1, 1)).unwrap())
        .unwrap();
    assert_eq!(plain.dims(), [1, 3, 33, 33]);
    assert!(max_diff(&ours, &plain) < 1e-5);
}

/// The encoder pads an odd side with an explicit zero row; that must equal
/// the plain strided convolution.
#[test]
fn the_explicit_padding_changes_nothing() {
    let enc = Encoder::new(1, 6, &Device::Cpu).unwrap();
    let images = uniform(&[2, 3, 33, 34], 7);
    let ours = enc.forward(&images).unwrap();
    let layer = &enc.layers()[0];
    let plain = images
        .conv2d(layer.weight.as_tensor(), 1, 2, 1, 1)
        .unwrap()
        .broadcast_add(&layer.bias.as_tensor().reshape((1, 8, 1, 1)).unwrap())
        .unwrap();
    assert!(max_diff(&ours, &plain) < 1e-5);
}

#[test]
fn wrong_shapes_are_named() {
    let model = small_model(2, 0);
    let err = model.environment(&uniform(&[1, 4, 16, 16], 0)).unwrap_err();
    assert!(
        matches!(
            err,
            HiresError::Shape(ca_core::ShapeError { what: "images", .. })
        ),
        "{err}"
    );
    // 95 pixels need a 24-cell state at two levels, not 23.
    let err = model
        .logits(&uniform(&[1, 8, 23, 24], 0), (95, 95))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("[B, 8, 24, 24]") && msg.contains("95x95"),
        "{msg}"
    );
}
