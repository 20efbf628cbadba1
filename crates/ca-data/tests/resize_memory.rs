//! The resize's memory is bounded by its output, whatever the photo's shape
//! (issue 24: a 16777216x1 PNG made `imageops::resize` ask for 12.9 GB).
//! A counting global allocator records the peak of live bytes while each
//! resize runs, and refuses any single allocation over 1 GiB, so the old
//! resize aborts this test instead of swapping.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ca_data::resize::{image_to_chw, resize_rgb};
use image::RgbImage;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
const REFUSE_OVER: usize = 1 << 30;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > REFUSE_OVER {
            return std::ptr::null_mut();
        }
        let p = System.alloc(layout);
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(live, Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated beyond what was live before `f` ran, at the peak.
fn peak_extra<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst) - before)
}

#[test]
fn resizing_extreme_shapes_allocates_little() {
    // One test, so no other test thread allocates while a peak is measured.
    let shapes: [(u32, u32); 8] = [
        (16_777_216, 1),
        (1, 16_777_216),
        (1_000_000, 1),
        (1, 1_000_000),
        (4096, 4096),
        (16_384, 512),
        (512, 16_384),
        (1, 1),
    ];
    for (w, h) in shapes {
        let photo = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 251) as u8, (y % 241) as u8, 7])
        });
        let (chw, extra) = peak_extra(|| image_to_chw(&photo, 48));
        assert_eq!(chw.len(), 3 * 48 * 48);
        // The intermediate is at most 48 x min(w, h) pixels of 3 floats
        // (2.4 MB for 4096 x 4096), the filter weights of one output pixel
        // 2 x max(w, h) / 48 floats (2.8 MB for 16777216 x 1), the output
        // 27 KB. The old resize asked for 12.9 GB on 16777216 x 1.
        assert!(
            extra < 6 << 20,
            "{w}x{h} -> 48x48 allocated {extra} bytes at its peak"
        );
        let (view, extra) = peak_extra(|| resize_rgb(&photo, 256, 256));
        assert_eq!(view.dimensions(), (256, 256));
        assert!(
            extra < 16 << 20,
            "{w}x{h} -> 256x256 allocated {extra} bytes at its peak"
        );
    }
}
