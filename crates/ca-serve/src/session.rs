//! A live colony behind one page: a dedicated thread that steps the
//! colony at the page's speed, applies the page's commands (play, speed,
//! steps, restart, damage, model, uncertainty, new photo or video frame)
//! and pushes frames at a bounded rate. The thread ends when the page's
//! command channel closes (the WebSocket closed) and frees its colony slot.

use ca_core::ErrorShapes;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ca_core::{Colony, Segmenter, SettleTracker, Settling};
use ca_model::AnyModel;
use ca_viz::render::{self, StateProjection};
use ca_viz::Result;
use candle_core::{DType, Tensor};
use image::RgbImage;
use serde::Deserialize;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;

use crate::error::ApiError;
use crate::models::{LoadedModel, ModelRegistry};
use crate::upload::{decode_image, UploadLimits};
use crate::views;

/// How often a colony whose page is not taking its frames looks for room
/// in the queue again.
const WAIT_FOR_ROOM: Duration = Duration::from_millis(20);

/// Most steps per second a page may ask for.
pub const MAX_STEPS_PER_SECOND: u32 = 1000;

/// A command of the page, a WebSocket text message `{"cmd": ..., ...}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum ClientCommand {
    /// Run (`true`) or pause (`false`).
    Play {
        /// Run?
        on: bool,
    },
    /// Target speed in CA steps per second.
    Speed {
        /// 1 to [`MAX_STEPS_PER_SECOND`].
        steps_per_second: u32,
    },
    /// The colony pauses after this many steps since the last photo, video
    /// frame, restart or damage; `null` (or absent): it runs until paused.
    Steps {
        /// 1 to the server's `max_steps`, or `None` for no limit.
        #[serde(default)]
        steps: Option<usize>,
    },
    /// Restart from noise.
    Restart,
    /// Switch to the model of this name (restarts from noise).
    Model {
        /// A name listed by `GET /api/models`.
        name: String,
    },
    /// Reset the state to noise in a disc: the brush.
    Damage {
        /// Centre, as a fraction of the width (0 left, 1 right).
        x: f32,
        /// Centre, as a fraction of the height (0 top, 1 bottom).
        y: f32,
        /// Radius, as a fraction of the side: more than 0, at most 0.5.
        radius: f32,
    },
    /// Turn the uncertainty view on or off (restarts from noise with that
    /// many runs).
    Uncertainty {
        /// On?
        on: bool,
    },
}

impl ClientCommand {
    /// Checks the values against the server's `max_steps`; the error names
    /// the value.
    pub fn validate(&self, max_steps: usize) -> std::result::Result<(), String> {
        match *self {
            ClientCommand::Speed { steps_per_second: s } if !(1..=MAX_STEPS_PER_SECOND).contains(&s) => {
                Err(format!("speed {s} steps per second: must be 1 to {MAX_STEPS_PER_SECOND}"))
            }
            ClientCommand::Steps { steps: Some(steps) } if steps == 0 || steps > max_steps => {
                Err(format!("steps {steps}: must be 1 to {max_steps}, or empty for no limit"))
            }
            ClientCommand::Damage { x, y, radius }
                if !((0.0..=1.0).contains(&x) && (0.0..=1.0).contains(&y) && radius > 0.0 && radius <= 0.5) =>
            {
                Err(format!(
                    "damage at ({x}, {y}) radius {radius}: the centre must be in [0, 1] and the radius in (0, 0.5]"
                ))
            }
            _ => Ok(()),
        }
    }
}

/// What the WebSocket task hands the colony thread.
#[derive(Debug)]
pub enum Command {
    /// A validated page command.
    Client(ClientCommand),
    /// An uploaded image (still encoded): a photo restarts the colony from
    /// noise, a video frame (`keep_state`) only changes what the cells see.
    Image {
        /// JPEG or PNG bytes.
        bytes: Vec<u8>,
        /// Keep the colony's state (webcam mode).
        keep_state: bool,
    },
}

/// What the colony thread sends the page.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// A frame message ([`views::frame_message`]), sent as binary.
    Frame(Vec<u8>),
    /// A JSON notice (`{"type": "error", "error": ...}`), sent as text.
    Notice(serde_json::Value),
}

/// The server's limits as a session sees them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionLimits {
    /// Upload limits of the images.
    pub upload: UploadLimits,
    /// Most steps a page may ask for, and the initial number.
    pub max_steps: usize,
    /// Most frames per second.
    pub max_fps: u32,
    /// Side of each view in pixels.
    pub view_size: u32,
    /// Runs of the uncertainty view.
    pub uncertainty_runs: usize,
}

/// Initial speed in steps per second.
pub const INITIAL_SPEED: u32 = 30;

/// How often the measured steps per second are updated.
const RATE_WINDOW: Duration = Duration::from_millis(500);

/// Runs a session until `commands` closes; `model` is the first model,
/// `models` loads the ones the page switches to. Blocking: run it on a
/// thread of its own. Panics of the colony code are caught and reported to
/// the page as an error notice; the thread then ends.
pub fn run_session(
    model: Arc<LoadedModel>,
    models: Arc<ModelRegistry>,
    limits: SessionLimits,
    commands: Receiver<Command>,
    out: Sender<Outgoing>,
) {
    let notices = out.clone();
    let run = std::panic::AssertUnwindSafe(move || {
        Session::new(models, limits, commands, out).run(model)
    });
    if std::panic::catch_unwind(run).is_err() {
        let _ = notices.try_send(error_notice(&ApiError::internal(
            "internal error: the colony stopped; reload the page",
        )));
    }
}

/// The notice of `error`: `{"type": "error", "status": ..., "error": ...}`.
pub fn error_notice(error: &ApiError) -> Outgoing {
    Outgoing::Notice(serde_json::json!({
        "type": "error",
        "status": error.status.as_u16(),
        "error": error.message,
    }))
}

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("{what}: {e}"))
}

/// The page is gone.
struct Closed;

/// A colony on a photo.
struct Live<'m> {
    colony: Colony<&'m AnyModel>,
    env: Tensor,
}

struct Session {
    models: Arc<ModelRegistry>,
    limits: SessionLimits,
    commands: Receiver<Command>,
    out: Sender<Outgoing>,
    playing: bool,
    steps_per_second: u32,
    /// Steps after an event before the colony pauses; `None`: no limit.
    max_steps: Option<usize>,
    uncertainty: bool,
    /// The last photo or video frame, as uploaded, and as the overlay's
    /// background.
    photo: Option<(RgbImage, RgbImage)>,
    seed: u64,
    steps: u64,
    since_event: usize,
    /// Whether the class map has settled since the last event
    /// ([`Settling::default`]; `None` until the first step after one).
    settle: Option<SettleTracker>,
    video_frames: u64,
    damages: u64,
    rate: (Instant, u64, f64),
    dirty: bool,
}

impl Session {
    fn new(
        models: Arc<ModelRegistry>,
        limits: SessionLimits,
        commands: Receiver<Command>,
        out: Sender<Outgoing>,
    ) -> Self {
        Session {
            models,
            limits,
            commands,
            out,
            playing: true,
            steps_per_second: INITIAL_SPEED,
            max_steps: None,
            uncertainty: false,
            photo: None,
            seed: 0,
            steps: 0,
            since_event: 0,
            settle: None,
            video_frames: 0,
            damages: 0,
            rate: (Instant::now(), 0, 0.0),
            dirty: true,
        }
    }

    fn run(mut self, mut model: Arc<LoadedModel>) {
        loop {
            match self.run_model(&model) {
                Ok(next) => model = next,
                Err(Closed) => return,
            }
        }
    }

    fn notice(&self, error: &ApiError) -> std::result::Result<(), Closed> {
        match self.out.try_send(error_notice(error)) {
            Err(TrySendError::Closed(_)) => Err(Closed),
            _ => Ok(()),
        }
    }

    /// Runs `model` until the page switches model (the new one) or leaves.
    fn run_model(&mut self, model: &LoadedModel) -> std::result::Result<Arc<LoadedModel>, Closed> {
        let projection = StateProjection::new(model.model.rule().config().state_channels);
        let mut live = match self.restart(model) {
            Ok(live) => live,
            Err(e) => {
                self.notice(&internal("cannot start the colony", e))?;
                None
            }
        };
        let mut next_step = Instant::now();
        let mut next_frame = Instant::now();
        loop {
            // Back-pressure: with the frames queue full (the page is not
            // taking them) the colony neither steps nor draws; it looks
            // for room again after WAIT_FOR_ROOM.
            let room = self.out.capacity() > 0;
            let active = room && self.running() && live.is_some();
            let now = Instant::now();
            let due = if !room && live.is_some() {
                Some(now + WAIT_FOR_ROOM)
            } else if active {
                Some(next_step.min(if self.dirty { next_frame } else { next_step }))
            } else if self.dirty && live.is_some() {
                Some(next_frame)
            } else {
                None
            };
            let received = match due {
                None => self.commands.recv().map_err(|_| Closed).map(Some)?,
                Some(at) if at <= now => match self.commands.try_recv() {
                    Ok(c) => Some(c),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => return Err(Closed),
                },
                Some(at) => match self.commands.recv_timeout(at - now) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return Err(Closed),
                },
            };
            if let Some(command) = received {
                match self.apply(command, model, &mut live) {
                    Ok(Some(next)) => return Ok(next),
                    Ok(None) => {}
                    Err(e) => self.notice(&e)?,
                }
                next_step = next_step.max(Instant::now() - Duration::from_millis(1));
                continue;
            }
            let now = Instant::now();
            if active && now >= next_step {
                if let Some(l) = live.as_mut() {
                    if let Err(e) = l.colony.step(&l.env) {
                        self.notice(&internal("the colony stopped", e))?;
                        live = None;
                        continue;
                    }
                    self.steps += 1;
                    self.since_event += 1;
                    self.dirty = true;
                    if let Err(e) = self.observe_settling(&l.colony) {
                        self.notice(&internal("cannot read the class map", e))?;
                    }
                }
                let interval = Duration::from_secs_f64(1.0 / f64::from(self.steps_per_second));
                next_step = (next_step + interval).max(now);
            }
            self.measure_rate(now);
            if room && self.dirty && now >= next_frame {
                if let Some(l) = live.as_ref() {
                    let frame = match self.frame(model, l, &projection) {
                        Ok(f) => Outgoing::Frame(f),
                        Err(e) => error_notice(&internal("cannot draw the frame", e)),
                    };
                    if let Err(TrySendError::Closed(_)) = self.out.try_send(frame) {
                        return Err(Closed);
                    }
                }
                self.dirty = false;
                next_frame = now + Duration::from_secs_f64(1.0 / f64::from(self.limits.max_fps));
            }
        }
    }

    /// A photo, frame, restart, damage or resumed run: the step limit and
    /// the settling count start again.
    fn event(&mut self) {
        self.since_event = 0;
        self.settle = None;
    }

    /// Records the class map of the first run after a step, for "settled
    /// after N steps".
    fn observe_settling(&mut self, colony: &Colony<&AnyModel>) -> Result<()> {
        // The first run's probabilities (the uncertainty view runs several).
        let p = ca_core::ensemble_mean(&colony.logits()?.narrow(0, 0, 1)?, 1)?.probabilities;
        let (_, _, h, w) = p.dims4()?;
        let tracker = self
            .settle
            .get_or_insert_with(|| SettleTracker::new(Settling::default(), 1, h * w));
        tracker.observe(self.since_event, &p)?;
        Ok(())
    }

    /// Whether the colony steps: playing, and under the step limit.
    fn running(&self) -> bool {
        self.playing && self.max_steps.is_none_or(|m| self.since_event < m)
    }

    fn measure_rate(&mut self, now: Instant) {
        let (since, steps_then, _) = self.rate;
        let elapsed = now - since;
        if elapsed >= RATE_WINDOW {
            let rate = (self.steps.saturating_sub(steps_then)) as f64 / elapsed.as_secs_f64();
            self.rate = (now, self.steps, rate);
        }
    }

    fn batch(&self) -> usize {
        if self.uncertainty {
            self.limits.uncertainty_runs
        } else {
            1
        }
    }

    /// A colony from noise on the current photo (none without a photo).
    fn restart<'m>(&mut self, model: &'m LoadedModel) -> Result<Option<Live<'m>>> {
        self.seed += 1;
        self.steps = 0;
        self.event();
        self.dirty = true;
        let Some((photo, _)) = &self.photo else {
            return Ok(None);
        };
        let size = model.image_size;
        let batch = self.batch();
        let images = photo_batch(photo, size, batch, model.model.rule().device())?;
        let (colony, env) = Segmenter::new(&model.model)
            .with_seed(self.seed)
            .start(&images)?;
        Ok(Some(Live { colony, env }))
    }

    /// Applies `command`; `Some(model)` when the page switches to it.
    fn apply<'m>(
        &mut self,
        command: Command,
        model: &'m LoadedModel,
        live: &mut Option<Live<'m>>,
    ) -> std::result::Result<Option<Arc<LoadedModel>>, ApiError> {
        let restart_failed = |e| internal("cannot restart the colony", e);
        match command {
            Command::Image { bytes, keep_state } => {
                let photo = decode_image(&bytes, self.limits.upload)?;
                let view = views::photo_view(&photo, self.limits.view_size);
                self.photo = Some((photo, view));
                self.event();
                self.dirty = true;
                match live.as_mut() {
                    Some(l) if keep_state => {
                        self.video_frames += 1;
                        let photo = &self.photo.as_ref().expect("just set").0;
                        l.env = environment(&l.colony, photo, model.image_size, self.batch())
                            .map_err(|e| internal("cannot read the video frame", e))?;
                    }
                    _ => {
                        if keep_state {
                            self.video_frames += 1;
                        }
                        *live = self.restart(model).map_err(restart_failed)?;
                    }
                }
            }
            Command::Client(c) => match c {
                ClientCommand::Play { on } => {
                    self.playing = on;
                    if on && self.max_steps.is_some_and(|m| self.since_event >= m) {
                        self.event();
                    }
                    self.dirty = true;
                }
                ClientCommand::Speed { steps_per_second } => {
                    self.steps_per_second = steps_per_second
                }
                ClientCommand::Steps { steps } => {
                    self.max_steps = steps;
                    self.dirty = true;
                }
                ClientCommand::Restart => *live = self.restart(model).map_err(restart_failed)?,
                ClientCommand::Uncertainty { on } => {
                    self.uncertainty = on;
                    *live = self.restart(model).map_err(restart_failed)?;
                }
                ClientCommand::Damage { x, y, radius } => {
                    if let Some(l) = live.as_mut() {
                        self.damages += 1;
                        damage(
                            &mut l.colony,
                            (x, y, radius),
                            self.seed ^ self.damages.rotate_left(32),
                        )
                        .map_err(|e| internal("cannot damage the colony", e))?;
                        self.event();
                        self.dirty = true;
                    }
                }
                ClientCommand::Model { name } => return self.models.get(&name).map(Some),
            },
        }
        Ok(None)
    }

    /// The frame message of the colony now.
    fn frame(
        &self,
        model: &LoadedModel,
        live: &Live,
        projection: &StateProjection,
    ) -> Result<Vec<u8>> {
        let size = model.image_size;
        let logits = live.colony.logits()?;
        let classes = logits
            .argmax(1)?
            .to_dtype(DType::U32)?
            .get(0)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        let (sh, sw) = live.colony.state_size();
        let state = live
            .colony
            .state()
            .get(0)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let state_rgb = projection.project(&state, sw, sh);
        let variance = if self.uncertainty {
            Some(views::prob_variance(&logits)?)
        } else {
            None
        };
        let (_, photo_view) = self.photo.as_ref().expect("a live colony has a photo");
        let strip = views::strip(
            photo_view,
            &classes,
            size,
            &state_rgb,
            variance.as_deref(),
            self.limits.view_size,
        );
        let png = views::encode_png(&strip)
            .map_err(|e| ca_viz::VizError::invalid("frame", "PNG", e.message))?;
        let num_classes = model.model.rule().config().num_classes;
        let header = serde_json::json!({
            "type": "frame",
            "model": model.name,
            "grid": size,
            "view": self.limits.view_size,
            "views": views::VIEWS,
            "step": self.steps,
            "since_event": self.since_event,
            "settled_after": self.settle.as_ref().and_then(|t| t.settled_at()[0]),
            "max_steps": self.max_steps,
            "playing": self.playing,
            "running": self.running(),
            "steps_per_second": if self.running() { self.rate.2 } else { 0.0 },
            "target_speed": self.steps_per_second,
            "video_frames": self.video_frames,
            "damages": self.damages,
            "uncertainty": self.uncertainty,
            "runs": self.batch(),
            "mean_variance": variance.as_ref().map(|v| v.iter().sum::<f32>() / v.len().max(1) as f32),
            "counts": views::class_counts(classes.iter().map(|&c| c as usize), num_classes),
        });
        Ok(views::frame_message(&header, &png))
    }
}

/// `photo` resized to `size x size`, `batch` times: `[batch, 3, size, size]`
/// in `[0, 1]` on `device`.
fn photo_batch(
    photo: &RgbImage,
    size: usize,
    batch: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let chw = ca_data::resize::image_to_chw(photo, size);
    Ok(Tensor::from_vec(chw, (1, 3, size, size), device)?.repeat((batch, 1, 1, 1))?)
}

/// The environment of `photo` resized to `size x size`, `batch` times.
fn environment(
    colony: &Colony<&AnyModel>,
    photo: &RgbImage,
    size: usize,
    batch: usize,
) -> Result<Tensor> {
    let images = photo_batch(photo, size, batch, colony.state().device())?;
    Ok(colony.environment(&images)?)
}

/// Resets the state of every run to `N(0, 1)` noise in the disc
/// `(x, y, radius)` (fractions of the grid's width, height and side).
fn damage(
    colony: &mut Colony<&AnyModel>,
    (x, y, radius): (f32, f32, f32),
    seed: u64,
) -> Result<()> {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    let state = colony.state();
    let (b, s, h, w) = state.dims4()?;
    let (cx, cy) = (x * w as f32, y * h as f32);
    let r = radius * w.max(h) as f32;
    let mask: Vec<f32> = (0..h * w)
        .map(|i| {
            let (px, py) = ((i % w) as f32 + 0.5, (i / w) as f32 + 0.5);
            f32::from(u8::from((px - cx).powi(2) + (py - cy).powi(2) <= r * r))
        })
        .collect();
    let device = state.device();
    let mask = Tensor::from_vec(mask, (1, 1, h, w), device)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let noise: Vec<f32> = (0..b * s * h * w)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let noise = Tensor::from_vec(noise, (b, s, h, w), device)?;
    let keep = mask.affine(-1.0, 1.0)?;
    let damaged = (state.broadcast_mul(&keep)? + noise.broadcast_mul(&mask)?)?;
    Ok(colony.set_state(damaged)?)
}

/// The render palette colour of class `c`, for the page's legend.
pub fn legend(classes: usize) -> Vec<serde_json::Value> {
    (0..classes)
        .map(|c| {
            serde_json::json!({
                "name": ca_data::CLASS_NAMES.get(c).copied().unwrap_or("class"),
                "colour": render::class_colour(c as u32),
            })
        })
        .collect()
}
