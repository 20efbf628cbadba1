//! The cases of the cell-step benches, shared by `benches/cell_step.rs` and
//! `cellseg bench step` ([`crate::cli::bench_step`]): the six Table 1
//! rules, a forward step and a training step (K-step unroll, backward,
//! and the trainer's own Adam, `ca_sched::Adam` under
//! `AdamConfig::default()`), with the random draws made once, outside the
//! timed region.

use ca_core::{normal_state, step_rng, CellConfig, CellRule, Perception, StepBackend, StepDraws};
use ca_sched::{Adam, AdamConfig};
use candle_core::{DType, Device, Tensor};

/// Steps of the training unroll.
pub const UNROLL: usize = 10;

/// The six Table 1 rules: (perception, state, hidden), 48/72 first.
pub fn variants() -> Vec<CellConfig> {
    let mut out = Vec::new();
    for (s, h) in [(48, 72), (32, 48), (64, 96)] {
        for perception in [Perception::Conv3x3, Perception::Depthwise] {
            out.push(CellConfig {
                state_channels: s,
                hidden_channels: h,
                perception,
                ..CellConfig::default()
            });
        }
    }
    out
}

/// `conv3x3-48x72`: the variant part of a case id.
pub fn variant_name(c: &CellConfig) -> String {
    format!(
        "{}-{}x{}",
        c.perception.name(),
        c.state_channels,
        c.hidden_channels
    )
}

/// The name of a backend in case ids.
pub fn backend_name(b: StepBackend) -> &'static str {
    match b {
        StepBackend::Fused => "fused",
        StepBackend::Reference => "reference",
    }
}

/// A forward-step problem: one step of a fresh rule on random state/image.
pub struct Forward {
    rule: CellRule,
    state: Tensor,
    env: Tensor,
    draws: StepDraws,
}

impl Forward {
    /// A `b x h x w` problem for `config` under `backend` on `dev`.
    pub fn new(
        config: &CellConfig,
        backend: StepBackend,
        (b, h, w): (usize, usize, usize),
        dev: &Device,
    ) -> Self {
        let rule = CellRule::new(config.clone(), 0, dev)
            .expect("valid config")
            .with_backend(backend);
        let mut rng = step_rng(1, 0);
        let state = normal_state((b, config.state_channels, h, w), &mut rng, dev).expect("state");
        let env = normal_state((b, config.env_channels, h, w), &mut rng, dev).expect("env");
        let draws = StepDraws::sample(config, (b, h, w), &mut rng, dev).expect("draws");
        Forward {
            rule,
            state,
            env,
            draws,
        }
    }

    /// One inference step ([`CellRule::step_detached`]); returns the new
    /// state.
    pub fn run(&self) -> Tensor {
        self.rule
            .step_detached(&self.state, &self.env, &self.draws)
            .expect("step")
    }
}

/// A training-step problem: `UNROLL` steps from a random state, cross
/// entropy of the classifier's logits at the last step against fixed
/// random labels, backward, and an Adam update of the trainable vars as
/// `ca_sched::Trainer::train_step` makes it: `ca_sched::Adam` (per-tensor
/// gradient normalization under the default config) with the default
/// `AdamConfig`'s learning rate, betas and epsilon.
pub struct Train {
    rule: CellRule,
    opt: Adam,
    state: Tensor,
    env: Tensor,
    draws: Vec<StepDraws>,
    labels: Tensor,
}

impl Train {
    /// A `b x h x w` problem for `config` under `backend` on `dev`.
    pub fn new(
        config: &CellConfig,
        backend: StepBackend,
        (b, h, w): (usize, usize, usize),
        dev: &Device,
    ) -> Self {
        let rule = CellRule::new(config.clone(), 0, dev)
            .expect("valid config")
            .with_backend(backend);
        let opt =
            Adam::new(rule.params().trainable_vars(), AdamConfig::default()).expect("optimizer");
        let mut rng = step_rng(2, 0);
        let state = normal_state((b, config.state_channels, h, w), &mut rng, dev).expect("state");
        let env = normal_state((b, config.env_channels, h, w), &mut rng, dev).expect("env");
        let draws = (0..UNROLL)
            .map(|_| StepDraws::sample(config, (b, h, w), &mut rng, dev).expect("draws"))
            .collect();
        let labels: Vec<u32> = (0..b * h * w).map(|i| (i * 7 % 3) as u32).collect();
        let labels = Tensor::from_vec(labels, b * h * w, dev).expect("labels");
        Train {
            rule,
            opt,
            state,
            env,
            draws,
            labels,
        }
    }

    /// One training step; returns the loss.
    pub fn run(&mut self) -> f32 {
        let mut s = self.state.clone();
        for d in &self.draws {
            s = self.rule.step(&s, &self.env, d).expect("step");
        }
        let logits = self.rule.logits(&s).expect("logits");
        let classes = logits.dim(1).expect("rank 4");
        let flat = logits
            .permute((0, 2, 3, 1))
            .and_then(|t| t.reshape(((), classes)))
            .expect("flatten");
        let loss = candle_nn::loss::cross_entropy(&flat, &self.labels).expect("loss");
        // As the trainer does: backward, the gradient of each trainable var
        // (in Adam's order), one Adam step.
        let grads = loss.backward().expect("backward");
        let per_var: Vec<Option<Tensor>> = self
            .opt
            .vars()
            .iter()
            .map(|v| grads.get(v.as_tensor()).cloned())
            .collect();
        self.opt
            .step_grads(&per_var, self.opt.config().learning_rate)
            .expect("Adam step");
        loss.to_dtype(DType::F32)
            .and_then(|l| l.to_scalar::<f32>())
            .expect("scalar loss")
    }
}
