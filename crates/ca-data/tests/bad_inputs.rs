//! Every bad-input case of the loader, generated in a temp dir, under both
//! policies: strict stops with an error naming the file, lenient skips and
//! counts. Nothing may panic.

mod common;

use std::fs;

use ca_data::{
    load_label_map, load_rgb, DataError, LoadOptions, LoadPolicy, PetsDataset, Split, BACKGROUND,
    BOUNDARY, OBJECT,
};
use common::{jpeg_bytes, test_image, test_trimap, trimap_value, Layout};
use image::{ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};

fn options(policy: LoadPolicy) -> LoadOptions {
    LoadOptions {
        image_size: 16,
        label_size: 8,
        policy,
    }
}

/// A layout with a good sample `good_1` plus whatever `make_bad` adds for
/// the sample `bad`, listed in that order.
fn layout_with_bad(make_bad: impl FnOnce(&Layout)) -> Layout {
    let layout = Layout::new();
    layout.good_pair("good_1", 40, 30);
    make_bad(&layout);
    layout.split("good_1 1 1 1\nbad 2 2 1\n");
    layout
}

/// Strict: an error whose message contains `needle`; lenient: one loaded,
/// one skipped whose message contains `needle`.
fn assert_bad_case(layout: &Layout, needle: &str) -> DataError {
    let err = PetsDataset::open(layout.root(), Split::TrainVal, &options(LoadPolicy::Strict))
        .expect_err("strict must fail");
    assert!(
        err.to_string().contains(needle),
        "strict error {err:?} lacks {needle:?}"
    );

    let ds = PetsDataset::open(
        layout.root(),
        Split::TrainVal,
        &options(LoadPolicy::Lenient),
    )
    .expect("lenient loads the good sample");
    assert_eq!(ds.len(), 1);
    assert_eq!(ds.sample(0).name, "good_1");
    let report = ds.report();
    assert_eq!(report.loaded, 1);
    assert_eq!(report.skipped.len(), 1, "{report}");
    let summary = report.to_string();
    assert!(summary.contains("loaded 1 samples, skipped 1"), "{summary}");
    assert!(summary.contains(needle), "{summary}");
    err
}

#[test]
fn truncated_jpeg() {
    let layout = layout_with_bad(|l| {
        let bytes = jpeg_bytes(&test_image(40, 30));
        fs::write(l.image("bad"), &bytes[..bytes.len() / 2]).expect("write");
        test_trimap(40, 30).save(l.trimap("bad")).expect("write");
    });
    let err = assert_bad_case(&layout, "bad.jpg");
    assert!(matches!(err, DataError::Decode { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn jpeg_cut_just_before_end_marker() {
    let layout = layout_with_bad(|l| {
        let bytes = jpeg_bytes(&test_image(40, 30));
        fs::write(l.image("bad"), &bytes[..bytes.len() - 2]).expect("write");
        test_trimap(40, 30).save(l.trimap("bad")).expect("write");
    });
    assert_bad_case(&layout, "bad.jpg");
}

#[test]
fn zero_byte_image() {
    let layout = layout_with_bad(|l| {
        fs::write(l.image("bad"), b"").expect("write");
        test_trimap(40, 30).save(l.trimap("bad")).expect("write");
    });
    let err = assert_bad_case(&layout, "bad.jpg");
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn zero_byte_trimap() {
    let layout = layout_with_bad(|l| {
        fs::write(l.image("bad"), jpeg_bytes(&test_image(40, 30))).expect("write");
        fs::write(l.trimap("bad"), b"").expect("write");
    });
    assert_bad_case(&layout, "bad.png");
}

#[test]
fn not_an_image_at_all() {
    let layout = layout_with_bad(|l| {
        fs::write(l.image("bad"), b"MATLAB 5.0 MAT-file, Platform: GLNXA64").expect("write");
        test_trimap(40, 30).save(l.trimap("bad")).expect("write");
    });
    assert_bad_case(&layout, "bad.jpg");
}

#[test]
fn missing_image() {
    let layout = layout_with_bad(|l| {
        test_trimap(40, 30).save(l.trimap("bad")).expect("write");
    });
    let err = assert_bad_case(&layout, "bad.jpg");
    assert!(matches!(err, DataError::MissingImage { .. }), "{err}");
}

#[test]
fn missing_trimap() {
    let layout = layout_with_bad(|l| {
        fs::write(l.image("bad"), jpeg_bytes(&test_image(40, 30))).expect("write");
    });
    let err = assert_bad_case(&layout, "bad.png");
    assert!(matches!(err, DataError::MissingTrimap { .. }), "{err}");
}

#[test]
fn trimap_value_outside_1_2_3() {
    let layout = layout_with_bad(|l| {
        fs::write(l.image("bad"), jpeg_bytes(&test_image(40, 30))).expect("write");
        let mut t = test_trimap(40, 30);
        t.put_pixel(5, 4, Luma([7]));
        t.save(l.trimap("bad")).expect("write");
    });
    let err = assert_bad_case(&layout, "bad.png");
    assert!(
        matches!(
            err,
            DataError::TrimapValue {
                value: 7,
                x: 5,
                y: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("value 7"), "{err}");
}

#[test]
fn trimap_with_zero_values() {
    let layout = layout_with_bad(|l| {
        fs::write(l.image("bad"), jpeg_bytes(&test_image(40, 30))).expect("write");
        ImageBuffer::<Luma<u8>, _>::new(40, 30)
            .save(l.trimap("bad"))
            .expect("write");
    });
    assert_bad_case(&layout, "value 0");
}

#[test]
fn colour_trimap() {
    let layout = layout_with_bad(|l| {
        fs::write(l.image("bad"), jpeg_bytes(&test_image(40, 30))).expect("write");
        RgbImage::from_pixel(40, 30, Rgb([1, 2, 3]))
            .save(l.trimap("bad"))
            .expect("write");
    });
    let err = assert_bad_case(&layout, "bad.png");
    assert!(matches!(err, DataError::UnsupportedTrimap { .. }), "{err}");
}

#[test]
fn image_and_trimap_sizes_differ() {
    let layout = layout_with_bad(|l| {
        fs::write(l.image("bad"), jpeg_bytes(&test_image(40, 30))).expect("write");
        test_trimap(30, 40).save(l.trimap("bad")).expect("write");
    });
    let err = assert_bad_case(&layout, "bad.jpg");
    assert!(err.to_string().contains("40x30"), "{err}");
    assert!(err.to_string().contains("30x40"), "{err}");
    assert!(err.to_string().contains("bad.png"), "{err}");
}

#[test]
fn malformed_split_line() {
    let layout = Layout::new();
    layout.good_pair("good_1", 40, 30);
    layout.good_pair("good_2", 40, 30);
    layout.split("good_1 1 1 1\ngood_2 1 one 1\n");
    assert_bad_case(&layout, "trainval.txt:2");
}

#[test]
fn split_line_with_name_only() {
    let layout = Layout::new();
    layout.good_pair("good_1", 40, 30);
    layout.good_pair("good_2", 40, 30);
    layout.split("good_1 1 1 1\ngood_2\n");
    assert_bad_case(&layout, "found 1");
}

#[test]
fn duplicate_names() {
    let layout = Layout::new();
    layout.good_pair("good_1", 40, 30);
    layout.split("good_1 1 1 1\ngood_1 1 1 1\n");
    let err = assert_bad_case(&layout, "duplicate name \"good_1\"");
    assert!(err.to_string().contains("trainval.txt:2"), "{err}");
}

#[test]
fn empty_split_fails_under_both_policies() {
    let layout = Layout::new();
    layout.good_pair("good_1", 40, 30);
    layout.split("# nothing listed\r\n\r\n");
    for policy in [LoadPolicy::Strict, LoadPolicy::Lenient] {
        let err = PetsDataset::open(layout.root(), Split::TrainVal, &options(policy))
            .expect_err("empty split");
        assert!(matches!(err, DataError::EmptySplit { .. }), "{err}");
        assert!(err.to_string().contains("trainval.txt"), "{err}");
    }
}

#[test]
fn missing_split_file_fails_under_both_policies() {
    let layout = Layout::new();
    for policy in [LoadPolicy::Strict, LoadPolicy::Lenient] {
        let err = PetsDataset::open(layout.root(), Split::Test, &options(policy))
            .expect_err("no test.txt");
        assert!(matches!(err, DataError::MissingSplit { .. }), "{err}");
        assert!(err.to_string().contains("test.txt"), "{err}");
    }
}

#[test]
fn no_annotations_dir_fails_under_both_policies() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::create_dir(dir.path().join("images")).expect("mkdir");
    for policy in [LoadPolicy::Strict, LoadPolicy::Lenient] {
        let err = PetsDataset::open(dir.path(), Split::TrainVal, &options(policy))
            .expect_err("no annotations");
        assert!(matches!(err, DataError::NoAnnotations { .. }), "{err}");
        assert!(err.to_string().contains("annotations/"), "{err}");
    }
    let missing = dir.path().join("does-not-exist");
    let err =
        PetsDataset::open(&missing, Split::TrainVal, &LoadOptions::default()).expect_err("no root");
    assert!(err.to_string().contains("does-not-exist"), "{err}");
}

#[test]
fn lenient_with_nothing_loadable_is_an_error() {
    let layout = Layout::new();
    layout.split("a 1 1 1\nb 1 1 1\n");
    let err = PetsDataset::open(
        layout.root(),
        Split::TrainVal,
        &options(LoadPolicy::Lenient),
    )
    .expect_err("nothing loads");
    assert!(
        matches!(err, DataError::NoSamples { skipped: 2, .. }),
        "{err}"
    );
}

#[test]
fn zero_size_option_is_rejected() {
    let layout = Layout::new();
    layout.good_pair("good_1", 40, 30);
    layout.split("good_1 1 1 1\n");
    let opts = LoadOptions {
        image_size: 0,
        ..LoadOptions::default()
    };
    let err = PetsDataset::open(layout.root(), Split::TrainVal, &opts).expect_err("size 0");
    assert!(err.to_string().contains("image_size = 0"), "{err}");
}

#[test]
fn crlf_comments_blank_lines_and_unlisted_files() {
    let layout = Layout::new();
    layout.good_pair("a_1", 40, 30);
    layout.good_pair("b_2", 24, 36);
    layout.good_pair("unlisted", 10, 10);
    fs::write(layout.root().join("images/a_100.mat"), b"MATLAB 5.0").expect("write");
    layout.split("#Image CLASS-ID SPECIES BREED ID\r\na_1 1 1 1\r\n\r\nb_2 2 2 1\r\n");
    let ds = PetsDataset::open(layout.root(), Split::TrainVal, &options(LoadPolicy::Strict))
        .expect("loads");
    let names: Vec<&str> = ds.samples().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a_1", "b_2"]);
    assert!(ds.report().skipped.is_empty());
    for s in ds.samples() {
        assert_eq!(s.image.len(), 3 * 16 * 16);
        assert_eq!(s.label.len(), 8 * 8);
        assert!(s.image.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}

#[test]
fn sixteen_bit_trimap_keeps_raw_values() {
    let layout = Layout::new();
    layout.good_pair("a", 20, 10);
    ImageBuffer::<Luma<u16>, _>::from_fn(20, 10, |x, y| {
        Luma([u16::from(trimap_value(x, y, 20, 10))])
    })
    .save(layout.trimap("a"))
    .expect("write 16-bit png");
    let labels = load_label_map(&layout.trimap("a")).expect("16-bit trimap");
    let expected = load_label_map(&{
        let p = layout.root().join("eight.png");
        test_trimap(20, 10).save(&p).expect("write");
        p
    })
    .expect("8-bit trimap");
    assert_eq!(labels, expected);
    assert!(labels.as_raw().contains(&OBJECT));
    assert!(labels.as_raw().contains(&BOUNDARY));
    assert!(labels.as_raw().contains(&BACKGROUND));

    // A 16-bit value above 255 is reported as is, not rescaled.
    ImageBuffer::<Luma<u16>, _>::from_pixel(4, 4, Luma([300]))
        .save(layout.trimap("a"))
        .expect("write");
    let err = load_label_map(&layout.trimap("a")).expect_err("value 300");
    assert!(err.to_string().contains("value 300"), "{err}");
}

fn write_palette_trimap(path: &std::path::Path, w: u32, h: u32, depth: png::BitDepth) {
    let file = fs::File::create(path).expect("create");
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(depth);
    // Palette colours unrelated to the indices: only indices must count.
    enc.set_palette(vec![0, 0, 0, 200, 10, 10, 10, 200, 10, 10, 10, 200]);
    let mut writer = enc.write_header().expect("header");
    let indices: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).map(move |x| trimap_value(x, y, w, h)))
        .collect();
    let data = match depth {
        png::BitDepth::Eight => indices,
        png::BitDepth::Two => {
            let per_row = (w as usize).div_ceil(4);
            let mut packed = vec![0u8; per_row * h as usize];
            for y in 0..h as usize {
                for x in 0..w as usize {
                    packed[y * per_row + x / 4] |= indices[y * w as usize + x] << (6 - 2 * (x % 4));
                }
            }
            packed
        }
        _ => unreachable!("test uses 8 or 2 bits"),
    };
    writer.write_image_data(&data).expect("data");
}

#[test]
fn palette_trimaps_give_indices() {
    let layout = Layout::new();
    let expected = {
        let p = layout.root().join("eight.png");
        test_trimap(21, 11).save(&p).expect("write");
        load_label_map(&p).expect("8-bit")
    };
    for depth in [png::BitDepth::Eight, png::BitDepth::Two] {
        let p = layout.root().join("pal.png");
        write_palette_trimap(&p, 21, 11, depth);
        assert_eq!(
            load_label_map(&p).expect("palette trimap"),
            expected,
            "{depth:?}"
        );
    }
}

#[test]
fn grayscale_rgba_and_16_bit_images_become_rgb() {
    let layout = Layout::new();
    let gray_path = layout.root().join("gray.jpg");
    image::GrayImage::from_pixel(8, 6, Luma([100]))
        .save_with_format(&gray_path, image::ImageFormat::Png)
        .expect("write");
    let gray = load_rgb(&gray_path).expect("grayscale");
    assert_eq!(gray.dimensions(), (8, 6));
    assert!(gray.pixels().all(|p| p.0 == [100, 100, 100]));

    let rgba_path = layout.root().join("rgba.jpg");
    RgbaImage::from_pixel(8, 6, Rgba([10, 20, 30, 255]))
        .save_with_format(&rgba_path, image::ImageFormat::Png)
        .expect("write");
    assert!(load_rgb(&rgba_path)
        .expect("rgba")
        .pixels()
        .all(|p| p.0 == [10, 20, 30]));

    let deep_path = layout.root().join("deep.jpg");
    ImageBuffer::<Rgb<u16>, _>::from_pixel(8, 6, Rgb([65535, 0, 257 * 128]))
        .save_with_format(&deep_path, image::ImageFormat::Png)
        .expect("write");
    assert!(load_rgb(&deep_path)
        .expect("16-bit")
        .pixels()
        .all(|p| p.0 == [255, 0, 128]));

    let gray_jpeg = layout.root().join("grayjpeg.png");
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95)
        .encode_image(&image::GrayImage::from_pixel(16, 16, Luma([60])))
        .expect("encode");
    fs::write(&gray_jpeg, bytes).expect("write");
    let g = load_rgb(&gray_jpeg).expect("gray jpeg");
    assert!(g
        .pixels()
        .all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2] && p.0[0].abs_diff(60) <= 2));
}

#[test]
fn cmyk_jpegs_come_out_as_rgb() {
    let layout = Layout::new();
    // Four 8x8 blocks: red, green, blue, white, as CMYK (C, M, Y, K).
    let (w, h) = (16u16, 16u16);
    let cmyk_of = |x: u16, y: u16| -> [u8; 4] {
        match (x / 8, y / 8) {
            (0, 0) => [0, 255, 255, 0],
            (1, 0) => [255, 0, 255, 0],
            (0, 1) => [255, 255, 0, 0],
            _ => [0, 0, 0, 0],
        }
    };
    let expected = |x: u32, y: u32| -> [u8; 3] {
        match (x / 8, y / 8) {
            (0, 0) => [255, 0, 0],
            (1, 0) => [0, 255, 0],
            (0, 1) => [0, 0, 255],
            _ => [255, 255, 255],
        }
    };
    let data: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).flat_map(move |x| cmyk_of(x, y)))
        .collect();
    for colour in [
        jpeg_encoder::ColorType::Cmyk,
        jpeg_encoder::ColorType::CmykAsYcck,
    ] {
        let mut bytes = Vec::new();
        jpeg_encoder::Encoder::new(&mut bytes, 100)
            .encode(&data, w, h, colour)
            .expect("encode cmyk");
        let path = layout.image("cmyk");
        fs::write(&path, bytes).expect("write");
        let rgb = load_rgb(&path).expect("cmyk jpeg decodes");
        assert_eq!(rgb.dimensions(), (16, 16));
        // Check block centres (away from chroma bleeding at block edges).
        for (x, y) in [(3, 3), (11, 3), (3, 11), (11, 11)] {
            let got = rgb.get_pixel(x, y).0;
            let want = expected(x, y);
            for c in 0..3 {
                assert!(
                    got[c].abs_diff(want[c]) <= 24,
                    "{colour:?} at ({x},{y}): got {got:?}, want {want:?}"
                );
            }
        }
    }
}

#[test]
fn png_and_gif_data_behind_jpg_names_load_by_content() {
    let layout = Layout::new();
    layout.good_pair("good_1", 40, 30);
    // Few colours, so that the GIF palette holds them exactly.
    let flat = RgbImage::from_fn(40, 30, |x, _| {
        if x < 20 {
            Rgb([200, 30, 30])
        } else {
            Rgb([20, 40, 220])
        }
    });
    flat.save_with_format(layout.image("png_in_jpg"), image::ImageFormat::Png)
        .expect("write png");
    flat.save_with_format(layout.image("gif_in_jpg"), image::ImageFormat::Gif)
        .expect("write gif");
    for name in ["png_in_jpg", "gif_in_jpg"] {
        test_trimap(40, 30)
            .save(layout.trimap(name))
            .expect("write");
        assert_eq!(load_rgb(&layout.image(name)).expect(name), flat, "{name}");
    }
    layout.split("good_1 1 1 1\npng_in_jpg 1 1 1\ngif_in_jpg 1 1 1\n");
    let ds = PetsDataset::open(layout.root(), Split::TrainVal, &options(LoadPolicy::Strict))
        .expect("strict load by content");
    assert_eq!(ds.len(), 3);
    assert!(ds.report().skipped.is_empty());
}

#[test]
fn truncated_png_trimap() {
    let layout = layout_with_bad(|l| {
        fs::write(l.image("bad"), jpeg_bytes(&test_image(40, 30))).expect("write");
        let mut bytes = Vec::new();
        test_trimap(40, 30)
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .expect("encode");
        fs::write(l.trimap("bad"), &bytes[..bytes.len() / 2]).expect("write");
    });
    let err = assert_bad_case(&layout, "bad.png");
    assert!(matches!(err, DataError::Decode { .. }), "{err}");
}

#[test]
fn crlf_split_with_a_malformed_line_and_a_duplicate() {
    let layout = Layout::new();
    layout.good_pair("good_1", 40, 30);
    layout.good_pair("good_2", 40, 30);
    layout.split("good_1 1 1 1\r\ngood_2 1 x 1\r\n");
    let err = assert_bad_case(&layout, "trainval.txt:2");
    // The message quotes the line without its carriage return.
    assert!(err.to_string().contains("\"good_2 1 x 1\""), "{err}");

    layout.split("good_1 1 1 1\r\ngood_2 1 1 1\r\ngood_1 1 1 1\r\n");
    let err = PetsDataset::open(layout.root(), Split::TrainVal, &options(LoadPolicy::Strict))
        .expect_err("duplicate");
    assert!(
        matches!(
            err,
            DataError::DuplicateName {
                line: 3,
                first_line: 1,
                ..
            }
        ),
        "{err}"
    );
    let ds = PetsDataset::open(
        layout.root(),
        Split::TrainVal,
        &options(LoadPolicy::Lenient),
    )
    .expect("lenient");
    assert_eq!((ds.len(), ds.report().skipped.len()), (2, 1));
}

#[test]
fn split_that_is_not_utf8() {
    let layout = Layout::new();
    layout.good_pair("good_1", 40, 30);
    fs::write(
        layout.root().join("annotations/trainval.txt"),
        b"good_1 1 1 1\n\xff\xfe 1 1 1\n",
    )
    .expect("write");
    for policy in [LoadPolicy::Strict, LoadPolicy::Lenient] {
        let err = PetsDataset::open(layout.root(), Split::TrainVal, &options(policy))
            .expect_err("not UTF-8");
        let msg = err.to_string();
        assert!(
            msg.contains("trainval.txt:2") && msg.contains("UTF-8"),
            "{msg}"
        );
    }
}

/// CRC-32 (ISO-HDLC), as PNG chunks use.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG chunk: length, type, data, CRC.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let body: Vec<u8> = kind.iter().chain(data).copied().collect();
    out.extend(&body);
    out.extend(crc32(&body).to_be_bytes());
    out
}

/// Found by the `trimap_labels` fuzzer: a PNG header claiming a huge size
/// made the trimap decoder allocate its buffer (a terabyte) before reading
/// any pixel, and abort.
#[test]
fn trimap_header_claiming_a_huge_size() {
    let mut ihdr = Vec::new();
    ihdr.extend((1u32 << 20).to_be_bytes());
    ihdr.extend((1u32 << 20).to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]); // 8-bit grayscale
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x01]));
    png.extend(chunk(b"IEND", &[]));
    let path = std::path::Path::new("annotations/trimaps/huge.png");
    let err = ca_data::label_map_from_bytes(&png, path).expect_err("too large");
    let msg = err.to_string();
    assert!(
        msg.contains("huge.png") && msg.contains("1048576x1048576"),
        "{msg}"
    );
}
