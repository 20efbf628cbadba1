//! Video input for `segment`: an animated GIF, a folder of frames (JPEG or
//! PNG, in name order), or any video file through Debian's `ffmpeg` (a
//! subprocess that writes raw RGB frames to a pipe). Every frame is held
//! to the [`ImageLimits`] and the count to [`MAX_FRAMES`] before its
//! pixels are decoded; errors name the file, the frame and the limit.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ca_core::ErrorShapes;
use image::{AnimationDecoder, RgbImage};

use crate::error::DataError;
use crate::limits::ImageLimits;
use crate::photo::load_photo;

/// The most frames a video may have (10 minutes at 30 frames a second).
pub const MAX_FRAMES: usize = 18_000;

/// The most bytes a video's decoded RGB frames may take together (1 GiB:
/// 10 minutes of 160x120 at 30 frames a second, or 15 seconds of 1080p).
pub const MAX_VIDEO_BYTES: u64 = 1 << 30;

/// The file name endings read as video files through `ffmpeg`.
pub const VIDEO_EXTENSIONS: &[&str] = &["mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg"];

/// What a path holds, judged from the path alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoSource {
    /// An animated GIF (`.gif`).
    Gif(PathBuf),
    /// A folder of JPEG or PNG frames.
    Folder(PathBuf),
    /// A video file for `ffmpeg` (one of [`VIDEO_EXTENSIONS`]).
    File(PathBuf),
}

impl VideoSource {
    /// The kind of video `path` is, or `None` for a photo (or anything
    /// else `segment` reads as one image).
    pub fn detect(path: &Path) -> Option<Self> {
        if path.is_dir() {
            return Some(VideoSource::Folder(path.to_path_buf()));
        }
        let ext = path.extension()?.to_string_lossy().to_ascii_lowercase();
        if ext == "gif" {
            Some(VideoSource::Gif(path.to_path_buf()))
        } else if VIDEO_EXTENSIONS.contains(&ext.as_str()) {
            Some(VideoSource::File(path.to_path_buf()))
        } else {
            None
        }
    }
}

/// Every frame of `source` as RGB, in order, and the frame delay in
/// milliseconds where the source says (a GIF's first delay, a video
/// file's frame rate), else `None` (a folder).
///
/// # Errors
///
/// [`DataError`] naming the file: unreadable, no frames, more than
/// [`MAX_FRAMES`], a frame over `limits` (checked from the header or the
/// stream's size before its pixels), frames of different sizes, or, for
/// a video file, `ffmpeg`/`ffprobe` missing (named) or failing.
pub fn read_frames(
    source: &VideoSource,
    limits: &ImageLimits,
) -> Result<(Vec<RgbImage>, Option<u32>), DataError> {
    let (frames, delay) = match source {
        VideoSource::Gif(path) => read_gif(path, limits)?,
        VideoSource::Folder(dir) => (read_folder(dir, limits)?, None),
        VideoSource::File(path) => read_with_ffmpeg(path, limits)?,
    };
    let path = match source {
        VideoSource::Gif(p) | VideoSource::Folder(p) | VideoSource::File(p) => p,
    };
    let Some(first) = frames.first() else {
        return Err(DataError::invalid(
            "video",
            path.display(),
            "holds no frames",
        ));
    };
    let size = first.dimensions();
    if let Some(k) = frames.iter().position(|f| f.dimensions() != size) {
        return Err(DataError::invalid(
            "video",
            path.display(),
            format!(
                "frame {k} is {:?}, the first {size:?}: every frame must have one size",
                frames[k].dimensions()
            ),
        ));
    }
    Ok((frames, delay))
}

fn too_many(path: &Path) -> DataError {
    DataError::invalid(
        "video",
        path.display(),
        format!("has more than {MAX_FRAMES} frames (the limit)"),
    )
}

/// Refuses a frame `index` (0-based) of `w x h` pixels that would pass
/// [`MAX_FRAMES`] or [`MAX_VIDEO_BYTES`], before it is decoded.
fn check_room(path: &Path, index: usize, (w, h): (u32, u32)) -> Result<(), DataError> {
    if index >= MAX_FRAMES {
        return Err(too_many(path));
    }
    let bytes = (index as u64 + 1) * u64::from(w) * u64::from(h) * 3;
    if bytes > MAX_VIDEO_BYTES {
        return Err(DataError::invalid(
            "video",
            path.display(),
            format!(
                "frame {index} of {w}x{h} would take the decoded frames past {MAX_VIDEO_BYTES} bytes (the limit); shorten or shrink the video"
            ),
        ));
    }
    Ok(())
}

fn read_gif(path: &Path, limits: &ImageLimits) -> Result<(Vec<RgbImage>, Option<u32>), DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut decoder = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(file))
        .map_err(|e| DataError::invalid("GIF", path.display(), e.to_string()))?;
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    limits
        .check(w, h)
        .map_err(|e| DataError::invalid("GIF", path.display(), e.to_string()))?;
    image::ImageDecoder::set_limits(&mut decoder, limits.decoder_limits(w, h))
        .map_err(|e| DataError::invalid("GIF", path.display(), e.to_string()))?;
    let mut frames = Vec::new();
    let mut delay = None;
    let mut stream = decoder.into_frames();
    loop {
        // Checked before the next frame is decoded.
        check_room(path, frames.len(), (w, h))?;
        let Some(frame) = stream.next() else { break };
        let frame = frame.map_err(|e| {
            DataError::invalid(
                "GIF",
                path.display(),
                format!("frame {}: {e}", frames.len()),
            )
        })?;
        let (num, den) = frame.delay().numer_denom_ms();
        delay.get_or_insert(num / den.max(1));
        frames.push(image::DynamicImage::ImageRgba8(frame.into_buffer()).to_rgb8());
    }
    Ok((frames, delay))
}

fn read_folder(dir: &Path, limits: &ImageLimits) -> Result<Vec<RgbImage>, DataError> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .is_some_and(|e| matches!(e.as_str(), "png" | "jpg" | "jpeg"))
        })
        .collect();
    names.sort();
    if names.len() > MAX_FRAMES {
        return Err(too_many(dir));
    }
    let mut frames: Vec<RgbImage> = Vec::with_capacity(names.len());
    for (k, p) in names.iter().enumerate() {
        if let Some(first) = frames.first() {
            check_room(dir, k, first.dimensions())?;
        }
        frames.push(load_photo(p, limits)?);
    }
    Ok(frames)
}

/// The error of a video file whose reading program is not installed.
fn missing_program(program: &str, path: &Path) -> DataError {
    DataError::invalid(
        "video",
        path.display(),
        format!("reading a video file needs '{program}' (Debian: apt-get install ffmpeg), which is not on the PATH; a GIF or a folder of frames needs nothing"),
    )
}

/// Runs `program` with `args`, its standard output; a clear error naming
/// the program when it is not installed.
fn run_tool(program: &str, args: &[&std::ffi::OsStr], path: &Path) -> Result<Vec<u8>, DataError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => missing_program(program, path),
            _ => DataError::io(path, e),
        })?;
    if !out.status.success() {
        return Err(DataError::invalid(
            "video",
            path.display(),
            format!(
                "{program} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(out.stdout)
}

fn read_with_ffmpeg(
    path: &Path,
    limits: &ImageLimits,
) -> Result<(Vec<RgbImage>, Option<u32>), DataError> {
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let probe = run_tool(
        "ffprobe",
        &[
            os("-v"),
            os("error"),
            os("-select_streams"),
            os("v:0"),
            os("-show_entries"),
            os("stream=width,height,avg_frame_rate"),
            os("-of"),
            os("default=noprint_wrappers=1"),
            path.as_os_str(),
        ],
        path,
    )?;
    let text = String::from_utf8_lossy(&probe);
    let (w, h, delay) = parse_probe(&text).ok_or_else(|| {
        DataError::invalid(
            "video",
            path.display(),
            format!("ffprobe found no video stream (it said '{}')", text.trim()),
        )
    })?;
    limits
        .check(w, h)
        .map_err(|e| DataError::invalid("video", path.display(), e.to_string()))?;
    let mut child = Command::new("ffmpeg")
        .args([os("-v"), os("error"), os("-i"), path.as_os_str()])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => missing_program("ffmpeg", path),
            _ => DataError::io(path, e),
        })?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let frame_bytes = (w as usize) * (h as usize) * 3;
    let mut frames = Vec::new();
    loop {
        if let Err(e) = check_room(path, frames.len(), (w, h)) {
            let _ = child.kill();
            return Err(e);
        }
        let mut buf = vec![0u8; frame_bytes];
        match stdout.read_exact(&mut buf) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(DataError::io(path, e)),
        }
        frames.push(RgbImage::from_raw(w, h, buf).expect("a whole frame"));
    }
    let status = child.wait().map_err(|e| DataError::io(path, e))?;
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        return Err(DataError::invalid(
            "video",
            path.display(),
            format!("ffmpeg failed: {}", err.trim()),
        ));
    }
    Ok((frames, delay))
}

/// Width, height and frame delay (ms, from the average frame rate; `None`
/// where ffprobe gives `0/0`) of ffprobe's `key=value` lines.
fn parse_probe(text: &str) -> Option<(u32, u32, Option<u32>)> {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
    };
    let w = value("width")?.parse().ok()?;
    let h = value("height")?.parse().ok()?;
    let delay = value("avg_frame_rate").and_then(|r| {
        let (num, den) = r.split_once('/').unwrap_or((r, "1"));
        let (num, den): (f64, f64) = (num.parse().ok()?, den.parse().ok()?);
        (num > 0.0 && den > 0.0).then(|| (1000.0 * den / num).round().max(1.0) as u32)
    });
    Some((w, h, delay))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_follows_the_path() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            VideoSource::detect(dir.path()),
            Some(VideoSource::Folder(dir.path().to_path_buf()))
        );
        let gif = Path::new("a/clip.GIF");
        assert_eq!(VideoSource::detect(gif), Some(VideoSource::Gif(gif.into())));
        let mp4 = Path::new("clip.mp4");
        assert_eq!(
            VideoSource::detect(mp4),
            Some(VideoSource::File(mp4.into()))
        );
        assert_eq!(VideoSource::detect(Path::new("photo.jpg")), None);
        assert_eq!(VideoSource::detect(Path::new("noext")), None);
    }

    #[test]
    fn frame_counts_and_bytes_are_bounded_before_decoding() {
        let p = Path::new("big.gif");
        assert!(check_room(p, MAX_FRAMES - 1, (10, 10)).is_ok());
        let e = check_room(p, MAX_FRAMES, (10, 10))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("18000 frames") && e.contains("big.gif"), "{e}");
        assert!(check_room(p, 100, (1920, 1080)).is_ok());
        let e = check_room(p, 200, (1920, 1080)).err().unwrap().to_string();
        assert!(
            e.contains("frame 200") && e.contains("1073741824 bytes"),
            "{e}"
        );
    }

    #[test]
    fn the_probe_gives_size_and_frame_delay() {
        let p = parse_probe("width=64\nheight=48\navg_frame_rate=30000/1001\n");
        assert_eq!(p, Some((64, 48, Some(33))));
        assert_eq!(
            parse_probe("height=2\nwidth=4\navg_frame_rate=0/0"),
            Some((4, 2, None))
        );
        assert_eq!(parse_probe("avg_frame_rate=25/1"), None);
    }

    #[test]
    fn a_missing_ffmpeg_is_named() {
        let e = run_tool(
            "ffprobe-that-does-not-exist",
            &[std::ffi::OsStr::new("-v")],
            Path::new("clip.mp4"),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains("'ffprobe-that-does-not-exist'")
                && e.contains("clip.mp4")
                && e.contains("apt-get install ffmpeg"),
            "{e}"
        );
    }

    #[test]
    fn gifs_and_folders_give_their_frames_and_one_size() {
        let dir = tempfile::tempdir().unwrap();
        let frame = |v: u8| RgbImage::from_pixel(6, 4, image::Rgb([v, 0, 255 - v]));
        // A folder of PNG frames, read in name order.
        for (name, v) in [("b.png", 20u8), ("a.png", 10), ("c.png", 30)] {
            frame(v).save(dir.path().join(name)).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "not a frame").unwrap();
        let limits = ImageLimits::default();
        let (frames, delay) =
            read_frames(&VideoSource::Folder(dir.path().into()), &limits).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].get_pixel(0, 0)[0], 10);
        assert_eq!(frames[2].get_pixel(0, 0)[0], 30);
        assert_eq!(delay, None);
        // A GIF keeps its frames and its delay.
        let gif = dir.path().join("clip.gif");
        {
            let file = std::fs::File::create(&gif).unwrap();
            let mut enc = image::codecs::gif::GifEncoder::new(file);
            for v in [40u8, 80] {
                let rgba = image::DynamicImage::ImageRgb8(frame(v)).to_rgba8();
                let delay = image::Delay::from_numer_denom_ms(70, 1);
                enc.encode_frame(image::Frame::from_parts(rgba, 0, 0, delay))
                    .unwrap();
            }
        }
        let (frames, delay) = read_frames(&VideoSource::Gif(gif), &limits).unwrap();
        assert_eq!((frames.len(), delay), (2, Some(70)));
        assert_eq!(frames[0].dimensions(), (6, 4));
        // Frames of two sizes are refused, naming the frame.
        RgbImage::new(5, 5).save(dir.path().join("d.png")).unwrap();
        let e = read_frames(&VideoSource::Folder(dir.path().into()), &limits)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("frame 3") && e.contains("one size"), "{e}");
        // An empty folder has no frames.
        let empty = tempfile::tempdir().unwrap();
        let e = read_frames(&VideoSource::Folder(empty.path().into()), &limits)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no frames"), "{e}");
    }
}
