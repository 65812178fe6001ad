"""A JAX training loop instrumented with jaxobs: step SLIs, throughput, goodput/badput.

A small MLP classifier learns a synthetic task with plain SGD on CPU.  Each
step runs inside ``GoodputTracker.step`` (a ``jaxobs.step("training")`` plus
compile-time accounting), the input pipeline inside ``tracker.data()`` and
checkpoints inside ``tracker.checkpoint()`` (nested in the step), so the run ends with where its
time went: goodput, and badput lost to compilation, data, checkpoints and
anomalous steps.  Before training, the loss's gradients are checked against
finite differences: a model that trains on wrong gradients
still "learns", just badly, and nothing else would notice.

Faults to see the accounting move: ``--data-delay-ms`` / ``--stall-every``
(a slow input pipeline), ``--slow-step-every`` (a straggling step, counted as
anomaly), ``--checkpoint-every``.

    python examples/training_loop/train.py --steps 300 --metrics-port 9465
    PROMETHEUS_MULTIPROC_DIR=/tmp/mp python examples/training_loop/train.py  # for the sidecar
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxobs
from jaxobs import GoodputSummary, GoodputTracker

Params = dict[str, Any]


@dataclass(frozen=True)
class Config:
    """Everything a run depends on (the CLI flags, and what tests vary)."""

    steps: int = 200
    batch_size: int = 256
    features: int = 128
    hidden: int = 512
    classes: int = 4
    learning_rate: float = 0.2
    seed: int = 0
    data_delay_ms: float = 0.0      # every batch waits this long (a slow input pipeline)
    stall_every: int = 0            # every N-th batch stalls for stall_ms (0: never)
    stall_ms: float = 50.0
    slow_step_every: int = 0        # every N-th step straggles for slow_step_ms (0: never)
    slow_step_ms: float = 50.0
    checkpoint_every: int = 100     # 0: never
    checkpoint_dir: str | None = None
    grad_check: bool = True
    service: str = "training"


@dataclass(frozen=True)
class TrainResult:
    summary: GoodputSummary
    losses: list[float]
    accuracy: float
    grad_check: str  # "passed", or "skipped"


# --- model -----------------------------------------------------------------------------


def init_params(key: jax.Array, features: int, hidden: int, classes: int) -> Params:
    """Random init (no downloaded weights): scaled normal weights, zero biases."""
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (features, hidden)) / np.sqrt(features),
        "b1": jnp.zeros(hidden),
        "w2": jax.random.normal(k2, (hidden, classes)) / np.sqrt(hidden),
        "b2": jnp.zeros(classes),
    }


def logits_fn(params: Params, x: jax.Array) -> jax.Array:
    # tanh, not relu: smooth everywhere, so finite differences agree with autodiff.
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def loss_fn(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy; ``y`` holds integer labels."""
    logp = jax.nn.log_softmax(logits_fn(params, x))
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def make_train_step(learning_rate: float) -> Any:
    """One SGD step, jitted and instrumented (``function="train_step"``)."""

    def train_step(params: Params, x: jax.Array, y: jax.Array) -> tuple[Params, jax.Array]:
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        new = jax.tree_util.tree_map(lambda p, g: p - learning_rate * g, params, grads)
        return new, loss

    return jaxobs.jit(train_step, name="train_step")


def accuracy(params: Params, x: np.ndarray, y: np.ndarray) -> float:
    return float(jnp.mean(jnp.argmax(logits_fn(params, x), axis=1) == y))


# --- data ------------------------------------------------------------------------------


def make_dataset(seed: int, n: int, features: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A learnable synthetic task: labels are the argmax of a fixed random projection."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    teacher = rng.normal(size=(features, classes)).astype(np.float32)
    return x, np.argmax(x @ teacher, axis=1).astype(np.int32)


def batches(x: np.ndarray, y: np.ndarray, cfg: Config) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled batches of one fixed size (a new size would recompile the step).

    The delays stand in for a real input pipeline (decoding, augmentation,
    a remote file system) that the accelerator waits for.
    """
    rng = np.random.default_rng(cfg.seed + 1)
    for i in itertools.count(1):
        idx = rng.integers(0, len(x), size=cfg.batch_size)
        delay = cfg.data_delay_ms + (cfg.stall_ms if cfg.stall_every and i % cfg.stall_every == 0 else 0.0)
        if delay:
            time.sleep(delay / 1e3)
        yield x[idx], y[idx]


def save_checkpoint(params: Params, directory: Path, step: int, keep: int = 2) -> Path:
    """Write the parameters to ``step_N.npz`` (real disk I/O) and keep the last ``keep``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step_{step:06d}.npz"
    np.savez(path, **{k: np.asarray(v) for k, v in params.items()})
    for old in sorted(directory.glob("step_*.npz"))[:-keep]:
        old.unlink()
    return path


# --- gradient check -----------------------------------------------------------------


def check_gradients(loss: Any, params: Params, x: np.ndarray, y: np.ndarray) -> None:
    """Autodiff against central differences on a small batch; raises naming the bad parameter.

    Reverse mode only: that is what training uses.  Eight examples keep the
    element-wise diagnosis (paid only on failure) cheap.
    """
    from jaxobs.testing import check_grads

    check_grads(lambda p: loss(p, jnp.asarray(x[:8]), jnp.asarray(y[:8])), (params,),
                order=1, modes=("rev",))


# --- the loop ----------------------------------------------------------------------------


def run(cfg: Config, *, registry: Any = None, echo: Any = print) -> TrainResult:
    """Train for ``cfg.steps`` steps and return the goodput summary (also exported as metrics).

    The tracker comes first: wall time counts from process start, so imports,
    JAX initialisation and everything before the first step are ``startup``
    badput, and the gradient check is a custom event (``grad_check``).
    """
    tracker = GoodputTracker(cfg.service, registry=registry,
                             state_file=Path(cfg.checkpoint_dir) / "goodput.json" if cfg.checkpoint_dir else None)
    with tracker.startup():
        x_all, y_all = make_dataset(cfg.seed, 4096, cfg.features, cfg.classes)
        params = init_params(jax.random.PRNGKey(cfg.seed), cfg.features, cfg.hidden, cfg.classes)
    grad_status = "skipped"
    if cfg.grad_check:
        with tracker.badput("grad_check"):
            check_gradients(loss_fn, params, x_all, y_all)
        grad_status = "passed"
        echo("gradient check: passed")
    train_step = make_train_step(cfg.learning_rate)
    ckpt_dir = Path(cfg.checkpoint_dir or tempfile.mkdtemp(prefix="jaxobs-ckpt-"))
    jaxobs.set_ready()  # a training job takes no traffic; readiness = "the loop is running"

    data = batches(x_all, y_all, cfg)
    losses: list[float] = []
    for i in range(1, cfg.steps + 1):
        # Nested blocks are fine: data and checkpoint time is taken out of the step's time.
        with tracker.step(examples=cfg.batch_size, number=i):
            with tracker.data():
                xb, yb = next(data)
            params, loss = train_step(params, xb, yb)
            jax.block_until_ready(loss)  # time the compute, not the asynchronous dispatch
            if cfg.slow_step_every and i % cfg.slow_step_every == 0:
                time.sleep(cfg.slow_step_ms / 1e3)  # a straggler (another tenant, a slow host)
            if cfg.checkpoint_every and i % cfg.checkpoint_every == 0:
                with tracker.checkpoint():
                    save_checkpoint(params, ckpt_dir, i)
        losses.append(float(loss))
    return TrainResult(summary=tracker.summary(), losses=losses,
                       accuracy=accuracy(params, x_all, y_all), grad_check=grad_status)


def main(argv: list[str] | None = None) -> int:
    defaults = Config()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=defaults.steps)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--data-delay-ms", type=float, default=defaults.data_delay_ms)
    p.add_argument("--stall-every", type=int, default=defaults.stall_every)
    p.add_argument("--stall-ms", type=float, default=defaults.stall_ms)
    p.add_argument("--slow-step-every", type=int, default=defaults.slow_step_every)
    p.add_argument("--slow-step-ms", type=float, default=defaults.slow_step_ms)
    p.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--no-grad-check", dest="grad_check", action="store_false")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve /metrics on 127.0.0.1:PORT (without it, set PROMETHEUS_MULTIPROC_DIR "
                        "for the sidecar)")
    p.add_argument("--linger", type=float, default=0.0,
                   help="keep serving /metrics this many seconds after training")
    args = p.parse_args(argv)
    cfg = Config(steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                 seed=args.seed, data_delay_ms=args.data_delay_ms, stall_every=args.stall_every,
                 stall_ms=args.stall_ms, slow_step_every=args.slow_step_every,
                 slow_step_ms=args.slow_step_ms, checkpoint_every=args.checkpoint_every,
                 checkpoint_dir=args.checkpoint_dir, grad_check=args.grad_check)
    if args.metrics_port is not None:
        server, _ = jaxobs.start_http_server(args.metrics_port, addr="127.0.0.1")
        print(f"serving metrics on http://127.0.0.1:{server.server_port}/metrics", flush=True)
    result = run(cfg)
    print(f"loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}, accuracy {result.accuracy:.1%}")
    print(result.summary.format())
    jaxobs.flush_multiprocess()
    if args.linger > 0:
        time.sleep(args.linger)
    return 0


if __name__ == "__main__":
    sys.exit(main())
