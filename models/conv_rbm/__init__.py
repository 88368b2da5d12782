"""Texture RBM: a convolutional RBM on a torus, sampled seamlessly at any size.

A pixel RBM learns whole 28-32 px images; a *convolutional* RBM shares one small set of
weights across every position of the image, so it learns the local statistics of a texture
from one photograph or a few, and its Gibbs chains run on a grid of any size. Here the grid is
a torus (circular padding): pixel (y, W) is pixel (y, 0), so every sample tiles without a seam.

The model
    K filters W_k [C, f, f], a hidden bias c_k per filter, a visible bias b_c and (Gaussian
    units) a variance σ_c² per colour channel. Visible v [C, H, W] (standardised pixels: the
    data's per-channel mean and std are kept as buffers), hidden h [K, H, W], one binary hidden
    unit per filter and position. With I = W ⋆ (v/σ²) + c, the circular cross-correlation of
    the scaled image with each filter (`hidden_logits`):

        Gaussian  E(v, h) = Σ (v - b)² / 2σ² - Σ h·I          p(v | h) = N(b + Σ_k W_k * h_k, σ²)
        binary    E(v, h) = -Σ b·v        - Σ h·I (σ = 1)    p(v = 1 | h) = sigmoid(b + Σ_k W_k * h_k)
        F(v) = Σ (v - b)² / 2σ² (or -Σ b·v) - Σ softplus(I)

    `W_k * h_k` is the transposed operation (a circular convolution: `visible_mean`). With
    probabilistic max-pooling (`pooling` = p > 1) at most one hidden unit of each p×p block of
    a map is on: p(h_i = 1 | v) = exp(I_i) / (1 + Σ_block exp(I_j)), and the block's term of
    F is -log(1 + Σ_block exp(I_j)). A temperature T divides the energy: logits / T, σ² T.
    tests/test_conv_rbm.py checks all of this against a fully connected RBM whose weight
    matrix is the convolution unrolled (`unrolled_weight`).

Training (`ConvRBMTrainer`, a `models.training.Trainer`: training is a generator of events)
    Short runs from noise (by default), PCD-k or CD-k on random crops of the training images: a batch is `batch_size` crops of
    `crop` px from random images at random places, so one photograph is a whole training set.
    The model is stationary, so the gradient is taken per position: the data's statistics come
    from the hidden units whose field lies wholly inside a crop ("valid" correlation: the crop's
    edges are not a seam the model should learn) and the model's from chains on a torus of the
    crop's size. By default (`short_run` = 1) they are short runs (Nijkamp, Hill, Zhu & Wu
    2019, "Learning non-convergent non-persistent short-run MCMC toward energy-based model"):
    each step one chain starts from noise and runs exactly as `synthesize` and the Dreams tab
    run theirs (40 sweeps, the first half annealed from T = 2), so the model learns what its
    sampler makes from noise in 40 sweeps; with `short_run` = 0, persistent chains (PCD-k,
    `chain_size`, `restart_every`) or CD-k. The loss is the difference of the two free energies per position,
    differentiated by autograd. Adam (a step size per parameter: the weights, biases and log σ²
    have gradients of very different sizes), gradient-norm clipping, weight decay on the
    filters, a floor on σ² (Liao et al. 2022), and Lee et al.'s sparsity target on the hidden
    biases. An epoch is `steps_per_epoch` steps, whatever the number of images.
    What the defaults came from (gravel, brick, grass; bench/texture.py and its history):
    - without pooling, overlapping hidden units of a filter reinforce each other through the
      visible units, and from noise the chains fell into flat grey or saturated "worms";
      2×2 probabilistic max-pooling (one unit on per block) gave stable, textured samples;
    - PCD-1's chains were dragged along by the weights (PCD's samples looked right, the
      model's own did not); PCD-5 keeps them nearer the model;
    - a chain restarted from noise every `restart_every` steps shows the model what its
      sampler meets from noise (persistent chains alone never visit the flat mode);
    - PCD's weights never settle: the model's samples swung between good and washed-out from
      one hundred steps to the next, so the model keeps the moving average of its parameters
      (`average`, Polyak averaging) whenever training is not running;
    - PCD's equilibrium was not the texture: brick's chains swept on drew ever denser mortar
      stripes (×floor 1 at 40 sweeps, 12 at 160), and the stain scan's chains from noise took
      600-1,300 sweeps to find its colours; trained on short runs, the 40-sweep samples scored
      (bench/texture.py, tiles, seed 0) brick 41 -> 1.8× the floor, grass 9.4 -> 1.1, gravel
      4.8 -> 2.7, the stain scan 0.96 -> 0.71, in as long. Past 40 sweeps they drift further
      than PCD's, so the Dreams tab warms its texture again every 40 sweeps (`cycle`).

Sampling (`ConvGibbsSampler`, `synthesize`)
    n chains on an H×W torus (any size from the filter size up, 64 to 2048 px and beyond),
    started from noise or a seed image (tiled or cropped to the size), k block-Gibbs sweeps per
    call at a temperature, optionally annealed from a higher one (`synthesize` anneals from
    T = 2 over its first half: structure then forms everywhere at once), with a clamp mask (the
    dream brush: clamped pixels keep their values, the rest resample given them). Everything is
    `torch.nn.functional` convolutions on the model's device (CUDA when present); on a CPU with
    bfloat16 convolutions free-running chains sweep in bfloat16 (`_FastSweeps`), and binary
    draws come from `models.noise.NoiseSource`'s stream on the CPU. Frames show E[v | h] of the
    last sweep (the denoised mean; "samples" shows the noisy draw). The sampler has the surface
    `studio.dreams` drives: `step(k)`, `images(kind)`, `states(kind)`, `reset(n, start)`,
    `temperature`, `clamp(mask, values)` / `unclamp()`, `state_tensors()`.

What was taken from the papers
* Lee, Grosse, Ranganath & Ng 2009 (convolutional deep belief networks): weights shared across
  positions through convolution, one hidden bias per filter, the "valid"/"full" pair of
  correlations for the two conditionals, real-valued (Gaussian) visible units for natural
  images, probabilistic max-pooling (the block softmax with an "all off" state, as energy and
  free energy), and the sparsity regularisation that moves each filter's hidden bias toward a
  target mean activation (the hidden layer is K times overcomplete, so without it the filters
  stay unspecific).
* Norouzi, Ranjbar & Mori 2009 (stacks of convolutional RBMs): the same model trained from
  images by contrastive divergence with the conditionals written as convolutions, and its
  warning about the border: visible units near an image's edge see fewer hidden units, so a
  model trained with zero padding learns edge effects. Here there is no border at all: the
  chains live on a torus and the data's statistics come from interior positions only.
* Kivinen & Williams 2012 (multiple texture Boltzmann machines): a texture is a stationary
  field, so a model with weights shared across positions (theirs tiled, with Gaussian visible
  units on standardised pixels) synthesises it at any size; what makes samples good there:
  filters wide enough to see the texture's structure, long burn-in of the Gibbs chains, the
  visible means shown rather than noisy draws, and judging samples against held-out texture,
  not the training crops. Their inpainting (clamp the known pixels, resample the rest) is the
  dream brush here.
* Luo, Carrier, Courville & Bengio 2013 (convolutional spike-and-slab RBMs for textures): tiled
  convolution lets a model synthesise patches of variable size while spending its capacity on
  local structure; synthesis and inpainting scored on held-out regions of each texture (the
  bench does the same with patch MMD²). Their spike-and-slab units (which model the local
  covariance: contrast) and deep extensions are not implemented; a plain Gaussian-Bernoulli
  conv RBM is the baseline their tables compare with.
Not implemented: tiling of the weights (Kivinen & Williams, Luo et al.), parallel tempering
(annealing from a higher temperature is offered instead: `ConvGibbsSampler.anneal`).

Checkpoints: the model's `state_dict` holds tensors only and its `config` is a dataclass of
JSON values; the kind's record in `models.kinds.KINDS` ("texture") lets
`models.checkpoint.save_checkpoint` / `load_checkpoint` store it with its trainer's state (the
chains, the moving average: `models.checkpoint.TEXTURE_EXTRA`); `save` / `load` here call them.
`build_texture` is the record's builder.

Modules: `model` (the config, the torus helpers, `ConvRBM`), `sampler` (`ConvGibbsSampler`, the
bfloat16 sweeps, `synthesize`, `seam_ratio`), `trainer` (`ConvRBMTrainer` and the kind's glue).
Every name is imported from `models.conv_rbm` itself.
"""
from __future__ import annotations

from .model import (
    KIND,
    MAX_FILTER_SIZE,
    MAX_FILTERS,
    MAX_POOLING,
    MAX_SAMPLER_BYTES,
    MAX_SIDE,
    VISIBLE_TYPES,
    ConvRBM,
    ConvRBMConfig,
    ConvRBMError,
    circular_pad,
)
from .sampler import (
    DEFAULT_ANNEAL,
    DEFAULT_SWEEPS,
    MAX_TEXTURE_SIDE,
    MIN_TEXTURE_SIDE,
    ConvGibbsSampler,
    _FastSweeps,
    bf16_convolutions_available,
    seam_ratio,
    seed_to_size,
    synthesize,
)
from .trainer import ConvRBMTrainConfig, ConvRBMTrainer, build_texture, load, rebuild, save

__all__ = [
    "KIND",
    "MAX_FILTER_SIZE",
    "MAX_FILTERS",
    "MAX_POOLING",
    "MAX_SAMPLER_BYTES",
    "MAX_SIDE",
    "VISIBLE_TYPES",
    "ConvRBM",
    "ConvRBMConfig",
    "ConvRBMError",
    "circular_pad",
    "DEFAULT_ANNEAL",
    "DEFAULT_SWEEPS",
    "MAX_TEXTURE_SIDE",
    "MIN_TEXTURE_SIDE",
    "ConvGibbsSampler",
    "bf16_convolutions_available",
    "seam_ratio",
    "seed_to_size",
    "synthesize",
    "ConvRBMTrainConfig",
    "ConvRBMTrainer",
    "build_texture",
    "load",
    "rebuild",
    "save",
]
