"""The ``spikeflow`` command line: a thin layer over the library.

Every command builds a typed config and calls one public function
(``spikeflow train`` -> :func:`spikeflow.train.train`), so anything the command line
does, a test or a script can do directly.

Errors print one line to stderr and exit with status 2 (bad usage: an invalid
option or config file) or 1 (the run failed: a corrupt checkpoint, a missing
file); ``spikeflow --debug ...`` (or ``SPIKEFLOW_DEBUG=1``) shows the traceback
instead. Needs the ``cli`` extra: ``pip install spikeflow[cli]``.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

try:
    import click
except ImportError:  # pragma: no cover - depends on the environment
    sys.stderr.write("spikeflow: the command line needs click; install it with `pip install spikeflow[cli]`\n")
    raise SystemExit(1) from None

from . import __version__
from .train import PRESETS as _PRESETS
from .train import TrainConfig as _TrainConfig
from .train import config as _config
from .convert import CODINGS as _CODINGS
from .convert.presets import PRESETS as _CONVERT_PRESETS

__all__ = ["main"]

# Errors whose message is written for users: shown as is. Anything else is
# unexpected and is shown with its type and a pointer to --debug.
_EXPECTED = (ValueError, TypeError, FileNotFoundError, PermissionError, ImportError, OSError)


class _UsageProblem(click.UsageError):
    """An invalid configuration (exit status 2)."""


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


class _Group(click.Group):
    """A group that turns exceptions into one-line errors unless ``--debug`` is set."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            if ctx.params.get("debug"):
                raise
            from .train import CheckpointError

            if isinstance(error, (CheckpointError,) + _EXPECTED):
                raise click.ClickException(_one_line(error)) from None
            raise click.ClickException(
                f"{type(error).__name__}: {_one_line(error)} (run `spikeflow --debug ...` for the traceback)"
            ) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--debug", is_flag=True, envvar="SPIKEFLOW_DEBUG", help="Show full tracebacks instead of one-line errors."
)
@click.version_option(__version__, prog_name="spikeflow")
def main(debug: bool) -> None:
    """spikeflow: fast spiking neural networks on PyTorch.

    Run `spikeflow train` to train the default preset (a spiking MLP on the 8x8
    digits that ship with scikit-learn) with a progress bar and checkpoints.
    """


_DEFAULTS = _TrainConfig()


def _help(text: str, name: str) -> str:
    """``text`` and the default of ``name`` (one source of truth for --help): the
    preset's choice for the fields a preset sets, else the TrainConfig default."""
    value = getattr(_DEFAULTS, name)
    if name in _config.DEFAULTS:
        shown = f"the preset's ({'none' if value is None else value} for {_DEFAULTS.preset})"
    elif name == "out":
        shown = "runs/PRESET"
    elif name == "threads":
        shown = "the preset's"
    else:
        shown = str(value)
    return f"{text}  [default: {shown}]".strip()


@main.command("train")
@click.option("--preset", type=click.Choice(sorted(_PRESETS)), help=_help("Model and data set.", "preset"))
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True),
    help="A .yaml, .json or .toml file of settings (option names as keys); options given here override it.",
)
@click.option("--epochs", type=click.IntRange(min=1), help=_help("Epochs in total.", "epochs"))
@click.option("--batch-size", type=click.IntRange(min=1), help=_help("Mini-batch size.", "batch_size"))
@click.option(
    "--lr", type=click.FloatRange(min=0, min_open=True), help=_help("Learning rate.", "lr")
)
@click.option("--optimizer", type=click.Choice(_config.OPTIMIZERS), help=_help("Optimizer.", "optimizer"))
@click.option("--momentum", type=click.FloatRange(min=0), help=_help("SGD momentum.", "momentum"))
@click.option(
    "--weight-decay", type=click.FloatRange(min=0), help=_help("Weight decay.", "weight_decay")
)
@click.option(
    "--scheduler", type=click.Choice(_config.SCHEDULERS), help=_help("Learning-rate schedule.", "scheduler")
)
@click.option(
    "--grad-clip",
    type=click.FloatRange(min=0),
    help=_help("Clip the gradient norm to this (0: off).", "grad_clip"),
)
@click.option(
    "--steps", "-T", type=click.IntRange(min=1), help=_help("Time steps T per input.", "steps")
)
@click.option("--hidden", type=click.IntRange(min=1), help=_help("Hidden layer width.", "hidden"))
@click.option(
    "--encoding", type=click.Choice(_config.ENCODINGS), help=_help("Input encoding.", "encoding")
)
@click.option(
    "--readout",
    type=click.Choice(_config.READOUTS),
    help=_help("Logits from the output layer: LI membrane max/mean/last/sum, or LIF spike count.", "readout"),
)
@click.option("--surrogate", help=_help("Surrogate gradient name.", "surrogate"))
@click.option(
    "--surrogate-alpha",
    type=click.FloatRange(min=0, min_open=True),
    help=_help("Surrogate sharpness.", "surrogate_alpha"),
)
@click.option(
    "--rate-reg",
    type=click.FloatRange(min=0),
    help=_help("Weight of the firing-rate regulariser (0: off).", "rate_reg"),
)
@click.option("--init", type=click.Choice(_config.INITS), help=_help("Weight initialisation.", "init"))
@click.option(
    "--augment",
    type=click.IntRange(min=0),
    help=_help("Random image shifts of up to this many pixels (0: off).", "augment"),
)
@click.option(
    "--ann",
    is_flag=True,
    default=None,
    help="Train the preset's architecture as an ordinary ANN (ReLU, one step): the baseline.",
)
@click.option("--amp", is_flag=True, default=None, help="Mixed precision (bfloat16 on CPU, float16 on CUDA).")
@click.option("--seed", type=click.IntRange(min=0), help=_help("Random seed.", "seed"))
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="MNIST-format folder for the MNIST presets  [default: $SPIKEFLOW_DATA]",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help=_help("Directory for last.pt and best.pt.", "out"),
)
@click.option(
    "--tensorboard", is_flag=True, default=None, help="Write TensorBoard logs to OUT/tensorboard."
)
@click.option("--device", help=_help("Torch device (cpu, cuda, cuda:1, ...).", "device"))
@click.option("--backend", help=_help("Scan backend of the neuron layers.", "backend"))
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    help=_help("Torch threads during the run (0: torch's default).", "threads"),
)
@click.option("--resume", is_flag=True, default=None, help="Continue from OUT/last.pt.")
@click.option("--quiet", "-q", is_flag=True, default=None, help="No progress bar.")
@click.option(
    "--hardware", type=click.Path(dir_okay=False, exists=True),
    help="Crossbar device file (.yaml/.json/.toml): which layers run on simulated memristive crossbars.",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help="Write a JSON summary of the run to this file."
)
def train_command(config_file: Optional[str], json_path: Optional[str], **options: Any) -> None:
    """Train a spiking network (default: the digits-mlp preset on the 8x8 digits).

    Shows a progress bar per epoch with loss, accuracy and mean firing rate,
    evaluates on the test split after every epoch, writes checkpoints atomically
    under --out, and prints the final test accuracy.
    """
    from .train import load_config, train
    from .train.checkpoint import atomic_write_bytes

    changes = {name: value for name, value in options.items() if value is not None}
    try:
        config = load_config(config_file, **changes) if config_file else _TrainConfig(**changes)
    except (ValueError, TypeError) as error:
        raise _UsageProblem(_one_line(error)) from None

    summary = train(config)

    what = f"{config.preset} (ANN twin)" if config.ann else config.preset
    if "ideal_test_accuracy" in summary:
        click.echo(f"on the crossbar: {summary['test_accuracy']:.2%}; ideal layers: {summary['ideal_test_accuracy']:.2%}")
    click.echo(
        f"{what}: test accuracy {summary['test_accuracy']:.2%} after {summary['epochs']} epochs "
        f"(best {summary['best_test_accuracy']:.2%} at epoch {summary['best_epoch']}), "
        f"mean firing rate {summary['mean_firing_rate']:.3f}, {summary['train_time_s']:.1f} s "
        f"({summary['epoch_time_s']:.1f} s per epoch)"
    )
    click.echo(f"checkpoints: {summary['checkpoints']['last']}, {summary['checkpoints']['best']}")
    if json_path:
        text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(json_path, text.encode("utf-8"))
        click.echo(f"summary: {json_path}")


@main.command("presets")
def presets_command() -> None:
    """List the training presets and their main settings."""
    for name in sorted(_PRESETS):
        config = _TrainConfig(preset=name)
        click.echo(f"{name:12s} {_PRESETS[name].description}")
        click.echo(
            f"{'':12s} epochs {config.epochs}, batch {config.batch_size}, {config.optimizer} lr {config.lr:g}, "
            f"T {config.steps}, encoding {config.encoding}, readout {config.readout}"
        )


def _timesteps(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> tuple[int, ...]:
    if value is None:
        return ()
    try:
        steps = tuple(int(v) for v in value.replace(" ", "").split(",") if v)
    except ValueError:
        raise click.BadParameter(f"expected comma-separated positive integers, got {value!r}") from None
    if not steps or min(steps) < 1:
        raise click.BadParameter(f"expected comma-separated positive integers, got {value!r}")
    return steps


@main.command("convert")
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.option("--preset", type=click.Choice(sorted(_CONVERT_PRESETS)), default="lenet5", show_default=True,
              help="Architecture to train (or that MODEL was saved from).")
@click.option("--coding", type=click.Choice(sorted(_CODINGS)), default="rate", show_default=True,
              help="Coding scheme of the spiking network.")
@click.option("--timesteps", callback=_timesteps, help="Comma-separated simulation lengths to evaluate  [default: the preset's; 50 to 500 for asn]")
@click.option("--dataset", type=click.Choice(["digits", "mnist"]), default=None,
              help="Data set  [default: mnist with --data-dir, else digits]")
@click.option("--data-dir", type=click.Path(file_okay=False), help="MNIST-format folder (else $SPIKEFLOW_DATA).")
@click.option("--epochs", type=click.IntRange(min=1), help="ANN training epochs  [default: the preset's]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="ANN learning rate  [default: the preset's]")
@click.option("--batch-size", type=click.IntRange(min=1), help="ANN batch size  [default: the preset's]")
@click.option("--normalization", type=click.Choice(["percentile", "max"]), default="percentile", show_default=True,
              help="How activation scales are measured.")
@click.option("--percentile", type=click.FloatRange(0, 100, min_open=True), default=99.99, show_default=True)
@click.option("--per-channel/--per-layer", default=True, show_default=True,
              help="One activation scale per channel, or one per layer.")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--levels", type=click.IntRange(min=1), default=8, show_default=True, help="QCFS quantization levels.")
@click.option("--hardware", type=click.Path(dir_okay=False, exists=True),
              help="Crossbar device file: evaluate the spiking network with those layers on simulated crossbars.")
@click.option("--test-samples", type=click.IntRange(min=0), default=0, help="Evaluate on the first N test images (0: all).")
@click.option("--out", type=click.Path(file_okay=False), default="runs/convert", show_default=True,
              help="Directory for ann.pt, snn.pt, accuracy.png and TensorBoard logs.")
@click.option("--tensorboard", is_flag=True, help="Write TensorBoard spike statistics under OUT/tensorboard.")
@click.option("--no-plot", "plot", flag_value=False, default=True, help="Do not save accuracy.png.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=0, help="Torch threads (0: torch's default).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write the ANN accuracy, SNN accuracy per T, spikes and synaptic operations as JSON.")
def convert_command(json_path: Optional[str], dataset: Optional[str], **options: Any) -> None:
    """Convert an ANN into a spiking network and compare the two.

    With no MODEL, trains the --preset's ANN on the data set first (the 8x8 digits
    built into scikit-learn unless --data-dir points to MNIST). MODEL is an ANN saved
    by an earlier run (OUT/ann.pt) or an ONNX file. The spiking network is saved as
    OUT/snn.pt (load it with spikeflow.convert.SpikingNetwork.load).
    """
    from .convert.experiment import ConvertConfig, run_experiment
    from .train.checkpoint import atomic_write_bytes

    dataset = dataset or ("mnist" if options.get("data_dir") else "digits")
    try:
        config = ConvertConfig(dataset=dataset, **options)
    except (ValueError, TypeError) as error:
        raise _UsageProblem(_one_line(error)) from None
    summary = run_experiment(config)
    accuracy = {int(t): a for t, a in summary["snn_accuracy"].items()}
    best = max(accuracy, key=lambda t: (accuracy[t], -t))
    click.echo(
        f"{config.preset} ({config.coding}): ANN {summary['ann_accuracy']:.2%}, SNN {accuracy[best]:.2%} "
        f"at T = {best}; spiking network: {summary['snn_path']}"
    )
    if json_path:
        text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(json_path, text.encode("utf-8"))
        click.echo(f"summary: {json_path}")


if __name__ == "__main__":  # pragma: no cover - `python -m spikeflow.cli`
    main()


def _sweeps(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, list]:
    from .hardware.sweep import parse_sweep

    sweeps = {}
    for text in value:
        try:
            name, values = parse_sweep(text)
        except (ValueError, TypeError) as error:
            raise click.BadParameter(str(error)) from None
        sweeps[name] = values
    return sweeps


@main.command("crossbar")
@click.option("--preset", type=click.Choice(sorted(_PRESETS)), default="randman", show_default=True,
              help="Training preset (model and data set).")
@click.option("--hardware", type=click.Path(dir_okay=False, exists=True),
              help="Crossbar device file (.yaml/.json/.toml)  [default: the last layer, 16 levels, 5% variation]")
@click.option("--sweep", "sweeps", multiple=True, callback=_sweeps, metavar="NAME=V1,V2,...",
              help="A device setting and its values to sweep (repeatable)  "
                   "[default: program_noise=0,0.02,0.05,0.1,0.2]")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True,
              help="Devices (seeds) per measured point.")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs  [default: the preset's]")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="MNIST-format folder for the MNIST presets.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/crossbar", show_default=True)
@click.option("--no-plot", "plot", flag_value=False, default=True, help="Do not save the sweep plots.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the results as JSON.")
def crossbar_command(hardware: Optional[str], sweeps: dict, json_path: Optional[str], **options: Any) -> None:
    """Train a preset ordinarily and hardware-aware with layers on a simulated
    memristive crossbar, and compare the two on the device and along sweeps of its
    non-idealities (accuracy against each, plotted to OUT/sweep_NAME.png).
    """
    from .hardware import CrossbarConfig, HardwareSpec, load_hardware
    from .hardware.sweep import crossbar_experiment
    from .train.checkpoint import atomic_write_bytes

    try:
        spec = load_hardware(hardware) if hardware else HardwareSpec(CrossbarConfig(levels=16, program_noise=0.05))
    except (ValueError, TypeError, OSError) as error:
        raise _UsageProblem(_one_line(error)) from None
    sweeps = sweeps or {"program_noise": [0.0, 0.02, 0.05, 0.1, 0.2]}
    summary = crossbar_experiment(options.pop("preset"), spec, sweeps, **options)
    nets = summary["networks"]
    click.echo(
        f"{summary['preset']}: ideal {nets['ordinary']['ideal_accuracy']:.2%}; on the device: ordinary training "
        f"{nets['ordinary']['device_accuracy_mean']:.2%}, hardware-aware {nets['hardware_aware']['device_accuracy_mean']:.2%}"
    )
    for name, sweep in nets["hardware_aware"]["sweeps"].items():
        ordinary = nets["ordinary"]["sweeps"][name]
        for value, a, b in zip(sweep["values"], ordinary["mean"], sweep["mean"]):
            click.echo(f"  {name} = {value}: ordinary {a:.2%}, hardware-aware {b:.2%}")
    if json_path:
        text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(json_path, text.encode("utf-8"))
        click.echo(f"summary: {json_path}")
