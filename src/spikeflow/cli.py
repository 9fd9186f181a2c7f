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

import contextlib
import json
import sys
import warnings
from typing import Any, Iterator, Optional

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


class _OneLineUsageError(click.ClickException):
    """A usage error shown as one line (click's own shows the usage and a hint
    on two more lines); exit status 2."""

    exit_code = 2


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _one_line_usage(error: click.UsageError) -> _OneLineUsageError:
    """``error`` as one line that points to the command's --help."""
    message = " ".join(error.format_message().split()) or type(error).__name__
    if error.ctx is not None:
        message += f" (see '{error.ctx.command_path} --help')"
    return _OneLineUsageError(message)


def _debugging() -> bool:
    """Whether ``spikeflow --debug`` (or ``SPIKEFLOW_DEBUG``) was given."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("debug"))


def _usage_problem(error: Exception) -> Exception:
    """A bad configuration (exit status 2): the error itself under ``--debug``
    (for its traceback), else a one-line usage error."""
    return error if _debugging() else _UsageProblem(_one_line(error))


class _Group(click.Group):
    """A group that turns exceptions into one-line errors unless ``--debug`` is set,
    and click's usage errors (bad option values, missing files, unknown names) into
    one line on stderr with exit status 2."""

    def make_context(self, info_name: Optional[str], args: list, parent: Optional[click.Context] = None, **extra: Any):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as error:  # an unknown option of spikeflow itself
            raise _one_line_usage(error) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            raise _one_line_usage(error) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            if ctx.params.get("debug"):
                raise
            from .numerics import NonFiniteError
            from .train import CheckpointError

            if isinstance(error, (CheckpointError, NonFiniteError) + _EXPECTED):
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
    if not debug:
        click.get_current_context().with_resource(_one_line_warnings())


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Show each warning as one line, ``Warning: <message>`` on stderr (Python's own
    format adds the file, line and source line, which mean nothing to a user);
    ``--debug`` keeps Python's format."""
    shown = warnings.showwarning

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        click.echo(f"Warning: {_one_line(message)}", err=True)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


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
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=0),
    help=_help("Also write OUT/last.pt every N training batches (0: once per epoch).", "checkpoint_every"),
)
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
        raise _usage_problem(error) from None

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
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run in OUT (same settings): from its last ANN epoch, "
                   "its calibration and its completed evaluations.")
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

    if dataset == "digits" and options.get("data_dir"):
        raise _UsageProblem(
            f"--data-dir {options['data_dir']} is for --dataset mnist, got --dataset digits (the digits are built in): "
            f"drop one of them"
        )
    ctx = click.get_current_context()
    if options.get("coding") != "qcfs" and ctx.get_parameter_source("levels") is click.core.ParameterSource.COMMANDLINE:
        raise _UsageProblem(f"--levels is for --coding qcfs, got --coding {options.get('coding')}")
    dataset = dataset or ("mnist" if options.get("data_dir") else "digits")
    try:
        config = ConvertConfig(dataset=dataset, **options)
    except (ValueError, TypeError) as error:
        raise _usage_problem(error) from None
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
        raise _usage_problem(error) from None
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


# ------------------------------------------------------------------------- spikeflow plot


@main.group("plot")
def plot_group() -> None:
    """Figures of a training run or a conversion, as PNG files (needs matplotlib: pip install spikeflow[plot]).

    \b
    spikeflow plot curves RUN          loss, accuracy and firing rate per epoch
    spikeflow plot activity RUN        raster, membrane traces, firing rates, spike counts
    spikeflow plot conversion REPORT   ANN and SNN accuracy against time steps

    RUN is a run directory (its last.pt) or a checkpoint file; `plot curves` also
    reads the summary `spikeflow train --json` writes. Each command prints the
    files it wrote.
    """


def _plot_done(files: list, json_path: Optional[str]) -> None:
    """Print the written files; with --json also write ``{"files": [...]}``."""
    from .train.checkpoint import atomic_write_bytes

    names = [str(path) for path in files]
    for name in names:
        click.echo(name)
    if json_path:
        atomic_write_bytes(json_path, (json.dumps({"files": names}, indent=2) + "\n").encode("utf-8"))


def _plot_json(path: Any, what: str) -> dict:
    """The JSON object in ``path`` (a one-line error if there is none)."""
    if path.is_dir():
        raise FileNotFoundError(f"{what} {path} is a folder; expected a JSON file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{what} {path} is not valid JSON ({_one_line(error)})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} is not a JSON object")
    return data


def _plot_is_json(path: Any) -> bool:
    if path.suffix.lower() == ".json":
        return True
    with open(path, "rb") as handle:
        return handle.read(64).lstrip()[:1] == b"{"


def _plot_checkpoint(source: str, needs: tuple[str, ...]) -> tuple[Any, dict]:
    """The training checkpoint ``source`` names (a run directory: its last.pt), read
    with ``weights_only=True``, and checked to hold ``needs``."""
    from pathlib import Path

    from .train import CheckpointError
    from .train.checkpoint import FORMAT, read_weights_only
    from .train.trainer import LAST

    path = Path(source)
    if path.is_dir():
        path = path / LAST
        if not path.is_file():
            raise FileNotFoundError(f"{source} is not a training run: it holds no {LAST}")
    elif not path.exists():
        raise FileNotFoundError(f"{source} does not exist; expected a training run folder (with {LAST}) or a checkpoint file")
    payload = read_weights_only(path, what="training checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path} is not a spikeflow training checkpoint (expected format {FORMAT!r}, found {found!r})"
        )
    missing = [key for key in needs if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: it lacks {', '.join(missing)}")
    if not isinstance(payload["config"], dict):
        raise CheckpointError(f"checkpoint {path} holds no training config")
    return path, payload


def _plot_title(config: Any) -> str:
    if not isinstance(config, dict) or not isinstance(config.get("preset"), str):
        return ""
    return config["preset"] + (" (ANN twin)" if config.get("ann") else "")


_OUT_PNG = click.Path(dir_okay=False)
_JSON_FILES = click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help='Also write {"files": [...]} to this file.'
)


@plot_group.command("curves")
@click.argument("source", metavar="RUN_DIR_OR_CHECKPOINT", type=click.Path())
@click.option("--out", type=_OUT_PNG, help="The image to write  [default: curves.png beside the checkpoint or summary]")
@_JSON_FILES
def plot_curves_command(source: str, out: Optional[str], json_path: Optional[str]) -> None:
    """Loss, accuracy and firing rate per epoch of a training run: from its
    last.pt, another checkpoint, or a `spikeflow train --json` summary."""
    from pathlib import Path

    from .plot import training_curves
    from .train import CheckpointError

    path = Path(source)
    if path.is_file() and _plot_is_json(path):
        summary = _plot_json(path, "training summary")
        history, config = summary.get("history"), summary.get("config")
        if not isinstance(history, list):
            raise ValueError(f"{path} is not a `spikeflow train --json` summary: it has no history")
    else:
        path, checkpoint = _plot_checkpoint(source, ("config", "history"))
        history, config = checkpoint["history"], checkpoint["config"]
        if not isinstance(history, list):
            raise CheckpointError(f"checkpoint {path} holds no per-epoch history")
    if not history:
        raise ValueError(f"{path} holds no finished epoch to plot")
    title = f"{_plot_title(config)}: {len(history)} epoch{'s' if len(history) != 1 else ''}".lstrip(": ")
    written = training_curves(history, out or path.parent / "curves.png", title=title)
    _plot_done([written], json_path)


def _plot_network(path: Any, checkpoint: dict, data_dir: Optional[str]) -> tuple[Any, Any]:
    """``(config, model)``: the checkpoint's network rebuilt from its config, on the
    CPU, with the trained weights, in eval mode."""
    import torch

    from .backends import backend_names
    from .train import CheckpointError, build_model
    from .train.checkpoint import _reason

    saved = {**checkpoint["config"], "device": "cpu", "resume": False, "tensorboard": False}
    if saved.get("backend") not in backend_names():
        saved["backend"] = "auto"  # a backend of the machine that trained it
    if data_dir is not None:
        saved["data_dir"] = data_dir
    try:
        config = _TrainConfig.from_dict(saved)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} holds an invalid config: {_one_line(error)}") from None
    with torch.random.fork_rng(devices=[]):  # the initial weights are replaced anyway
        torch.manual_seed(config.seed)
        model = build_model(config)
        if config.hardware is not None:
            from .hardware import HardwareSpec, to_crossbar

            to_crossbar(model, HardwareSpec.from_dict(config.hardware))
    try:
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"checkpoint {path} does not fit the {config.preset} network its config describes ({_reason(error)})"
        ) from None
    return config, model.eval()


@plot_group.command("activity")
@click.argument("source", metavar="RUN_DIR_OR_CHECKPOINT", type=click.Path())
@click.option("--samples", type=click.IntRange(min=1), default=100, show_default=True,
              help="Test samples to run the network on (the first N of the preset's test split).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="MNIST-format folder  [default: the run's]")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for the images  [default: plots/ in the run directory]")
@_JSON_FILES
def plot_activity_command(
    source: str, samples: int, data_dir: Optional[str], out: Optional[str], json_path: Optional[str]
) -> None:
    """Spiking activity of a trained network on test samples.

    Rebuilds the network from the checkpoint's config and weights, runs it on the
    first --samples test inputs (encoded as in evaluation) and writes to --out:
    raster.png (the first spiking layer's spikes on sample 0), membrane.png (its
    membrane potential on sample 0, for the up to 8 neurons that spiked most),
    rates.png (firing rate per layer and per neuron) and spike_counts.png (spikes
    per neuron and sample, per layer).
    """
    from pathlib import Path

    import numpy as np
    import torch

    from . import plot as _plot
    from .train import load_data
    from .train.activity import LayerActivity, spiking_layers
    from .train.trainer import _STOCHASTIC, _encode_batch

    path, checkpoint = _plot_checkpoint(source, ("config", "model"))
    config, model = _plot_network(path, checkpoint, data_dir)
    layers = spiking_layers(model)
    if not layers:
        raise ValueError(f"the network of {path} has no spiking layers (an ANN twin?): no spikes to plot")
    x_test = load_data(config)[2][:samples]
    n = len(x_test)
    if n == 0:
        raise ValueError(f"preset {config.preset} has no test samples")

    inputs: dict[str, torch.Tensor] = {}  # each spiking layer's input for sample 0

    def keep_input(name: str):
        def hook(module: torch.nn.Module, args: Any) -> None:
            inputs.setdefault(name, args[0][:, :1].detach())

        return hook

    handles = [module.register_forward_pre_hook(keep_input(name)) for name, module in layers.items()]
    generator = torch.Generator().manual_seed(config.seed + 1) if config.encoding in _STOCHASTIC else None
    outputs: dict[str, list] = {}
    activity = LayerActivity(model, keep_outputs=True)
    try:
        with torch.no_grad():
            for start in range(0, n, 256):
                model(_encode_batch(config, x_test[start : start + 256], generator))
                for name, spikes in activity.outputs().items():
                    outputs.setdefault(name, []).append(spikes.detach().float())
        counts, entries = activity.counts(), activity.entries()
    finally:
        activity.close()
        for handle in handles:
            handle.remove()
    spikes = {name: torch.cat(parts, dim=1) for name, parts in outputs.items()}  # [T, n, *features]
    if not spikes:
        raise ValueError(f"no spiking layer of the network of {path} ran")

    folder = Path(out) if out else path.parent / "plots"
    title = _plot_title(checkpoint["config"])
    first = next(name for name in layers if name in spikes)
    grid = spikes[first][:, 0].reshape(spikes[first].shape[0], -1)  # [T, neurons] of sample 0
    files = [_plot.spike_raster(grid, folder / "raster.png",
                                title=f"layer {first}, sample 0: {int((grid != 0).sum())} spikes")]

    trajectory = layers[first].record(inputs[first]).trajectory if first in inputs else None
    v = getattr(trajectory, "v", None)
    if v is not None:
        per_neuron = (grid != 0).sum(dim=0).numpy()
        shown = np.sort(np.argsort(-per_neuron, kind="stable")[: min(8, len(per_neuron))])
        threshold = getattr(layers[first], "threshold", None)
        if threshold is not None:
            theta = _plot._array(threshold, "threshold").reshape(-1)
            threshold = theta[0] if theta.size == 1 else theta[shown] if theta.size == len(per_neuron) else None
        trace = v.detach()[:, 0].reshape(v.shape[0], -1)[:, shown]
        files.append(_plot.membrane_traces(
            trace, folder / "membrane.png", threshold, max_traces=len(shown),
            title=f"layer {first}, sample 0: neurons {', '.join(str(i) for i in shown)}",
        ))
    else:
        click.echo(f"no membrane.png: layer {first} ({type(layers[first]).__name__}) records no membrane potential v")

    rates = {name: counts[name].reshape(-1).double() * counts[name].numel() / entries[name] for name in spikes}
    files.append(_plot.firing_rates(rates, folder / "rates.png",
                                    title=f"{title}: {n} test samples, T = {config.time_steps}".lstrip(": ")))
    per_sample = {name: (s != 0).sum(dim=0).reshape(-1) for name, s in spikes.items()}  # over steps, per (sample, neuron)
    files.append(_plot.spike_count_histogram(per_sample, folder / "spike_counts.png",
                                             title=f"spikes per neuron and sample ({n} test samples)"))
    _plot_done(files, json_path)


@plot_group.command("conversion")
@click.argument("report", metavar="REPORT_JSON", type=click.Path())
@click.option("--out", type=_OUT_PNG, help="The image to write  [default: conversion.png beside REPORT_JSON]")
@_JSON_FILES
def plot_conversion_command(report: str, out: Optional[str], json_path: Optional[str]) -> None:
    """SNN accuracy against time steps, and the ANN's, from a `spikeflow convert
    --json` summary."""
    from pathlib import Path

    from .plot import accuracy_vs_timesteps

    path = Path(report)
    summary = _plot_json(path, "conversion summary")
    if not isinstance(summary.get("snn_accuracy"), dict) or not summary["snn_accuracy"]:
        raise ValueError(f"{path} is not a `spikeflow convert --json` summary: it has no snn_accuracy per T")
    config = summary.get("config") if isinstance(summary.get("config"), dict) else {}
    title = " ".join(filter(None, [config.get("preset"), f"({summary['coding']})" if summary.get("coding") else None]))
    written = accuracy_vs_timesteps(summary, out or path.parent / "conversion.png", title=title or None)
    _plot_done([written], json_path)


@main.command("tune")
@click.argument("space_file", type=click.Path(dir_okay=False, exists=True))
@click.option("--trials", type=click.IntRange(min=1), required=True,
              help="Finished (complete + pruned) trials the study should hold, earlier runs and other workers included.")
@click.option("--storage", help="Optuna database URL, e.g. postgresql://host/db  [default: sqlite:///OUT/study.db]")
@click.option("--study-name", help="Study name  [default: the space file's name without its suffix]")
@click.option("--out", type=click.Path(file_okay=False), default="runs/tune", show_default=True,
              help="Directory for the trials' runs (OUT/trial_N), the default storage and tune.json.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Start no new trial after this many seconds.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the best result, not a line per trial.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also write the study summary (OUT/tune.json) to this file.")
def tune_command(space_file: str, json_path: Optional[str], **options: Any) -> None:
    """Search hyper-parameters of training or conversion runs with Optuna.

    SPACE_FILE (.yaml, .json or .toml) names the task (train or convert), the fixed
    settings, the metric and the parameters to search; see spikeflow.tune for the
    format. Running the command again with the same --storage and --study-name
    continues the study, and several processes may share one study.
    """
    from .train.checkpoint import atomic_write_bytes
    from .tune import load_space, tune

    try:
        space = load_space(space_file)
    except (ValueError, TypeError) as error:
        raise _usage_problem(error) from None
    from pathlib import Path

    study_name = options.pop("study_name") or Path(space_file).stem
    summary = tune(space, study_name=study_name, **options)
    counts = f"{summary['complete']} complete, {summary['pruned']} pruned, {summary['failed']} failed"
    if summary["best_params"] is None:
        click.echo(f"study {summary['study_name']}: no complete trial ({counts})")
    else:
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary["best_params"].items())
        click.echo(
            f"study {summary['study_name']}: best {summary['metric']} {summary['best_value']:.4f} "
            f"at trial {summary['best_trial']} ({params}); {counts}"
        )
    click.echo(f"summary: {Path(summary['out']) / 'tune.json'}")
    if json_path:
        text = json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n"
        atomic_write_bytes(json_path, text.encode("utf-8"))
        click.echo(f"summary: {json_path}")


@main.group("nir")
def nir_group() -> None:
    """Export spikeflow models to NIR (.nir) and import NIR graphs (spikeflow.nir)."""


def _shape(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in value.replace("x", ",").split(",") if v.strip())
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise click.BadParameter(f"expected positive sizes such as 784 or 1,28,28, got {value!r}")
    return shape


@nir_group.command("export")
@click.argument("model", type=click.Path(dir_okay=False, exists=True))
@click.option("--input-shape", required=True, callback=_shape, help="Features of one time step, e.g. 784 or 1,28,28.")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="The .nir file to write.")
@click.option("--dt", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Euler step (s) the time constants are written for.")
@click.option("--subtract-reset", type=click.Choice(["error", "as_zero"]), default="error", show_default=True,
              help="Neurons resetting by subtraction: refuse, or export them as resetting to zero.")
@click.option("--unit-resistance", is_flag=True, help="Fold each neuron's r into its input weights (for Norse).")
def nir_export_command(model: str, input_shape: tuple, out: str, dt: float, subtract_reset: str,
                       unit_resistance: bool) -> None:
    """Write MODEL (a file from spikeflow.save) as a NIR graph."""
    from . import load
    from . import nir as snir

    graph = snir.to_nir(load(model), input_shape, dt=dt, subtract_reset=subtract_reset,
                        unit_resistance=unit_resistance)
    snir.write(out, graph)
    click.echo(f"{len(graph.nodes)} NIR nodes, {len(graph.edges)} edges: {out}")


@nir_group.command("import")
@click.argument("graph", type=click.Path(dir_okay=False, exists=True))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="The spikeflow model file to write.")
@click.option("--dt", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Euler step (s) the graph was written for (Norse: 1e-3).")
def nir_import_command(graph: str, out: str, dt: float) -> None:
    """Read a NIR graph and save it as a spikeflow model (spikeflow.load reads it)."""
    from . import nir as snir
    from . import save

    net = snir.from_nir(graph, dt=dt)
    save(net, out, metadata={"source": str(graph), "dt": dt})
    click.echo(f"{len(net)} layers: {out}")


# ------------------------------------------------------------------------- spikeflow bench


@main.command("bench")
@click.option("--device", type=click.Choice(["cpu", "cuda"]),
              help="Where to run  [default: cuda when available, else cpu]")
@click.option("--only", multiple=True, metavar="NAME",
              help="Run only this configuration (repeatable; default all): ceilings, lif_layer, mlp, "
                   "open_neuromorphic, asn_seed, memory, resnet18.")
@click.option("--impls", multiple=True, metavar="PREFIX",
              help="Only implementations whose name starts with PREFIX (repeatable), e.g. spikeflow, snntorch.")
@click.option("--quick", is_flag=True, help="Small sizes and few repeats: a smoke run of seconds to a minute.")
@click.option("--repeats", type=click.IntRange(min=1), help="Timed rounds per case  [default: 10; --quick: 2]")
@click.option("--warmup", type=click.IntRange(min=0), help="Untimed rounds before timing  [default: 2; --quick: 1]")
@click.option("--threads", type=click.IntRange(min=0), default=0,
              help="Torch threads (0: the cores available to the process).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--on-neurons", type=click.IntRange(min=1),
              help="open_neuromorphic: neurons N  [default: 16384 on cuda, 4096 on cpu]")
@click.option("--out", type=click.Path(dir_okay=False),
              help="The report JSON (and the markdown beside it, .md)  [default: bench-results/bench_DEVICE.json]")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the report JSON to this file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def bench_command(device: Optional[str], only: tuple, impls: tuple, quick: bool, repeats: Optional[int],
                  warmup: Optional[int], threads: int, seed: int, on_neurons: Optional[int], out: Optional[str],
                  json_path: Optional[str], quiet: bool) -> None:
    """Benchmark spikeflow against snnTorch, Norse and SpikingJelly (those installed).

    Measures the device's ceilings (memory bandwidth from a large copy, float32 GEMM
    rate), then runs each configuration with every implementation interleaved, and
    writes one JSON report plus a markdown table; prints the summary of ratios against
    the targets at the end. Peers that are not importable are recorded as unavailable.
    """
    import torch

    from .bench.suite import default_out, make_options, resolve_names, run_suite, summary_markdown, write_suite

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise _usage_problem(ValueError("--device cuda: CUDA is not available here (torch.cuda.is_available() is False)"))
    try:
        resolve_names(only)
    except ValueError as error:
        raise _usage_problem(ValueError(f"--only: {error}")) from None
    opts = make_options(device, threads, quick, repeats, warmup, seed, impls, not quiet)
    out = out or default_out(device)
    extra = {"open_neuromorphic": {"neurons": on_neurons}} if on_neurons else None
    report = run_suite(opts, only, out, echo=lambda text: click.echo(text, err=True), extra=extra,
                       command=["spikeflow"] + sys.argv[1:])
    c = report["ceilings"]
    click.echo(f"ceilings on {device}: {c['bandwidth_gb_per_s']:.1f} GB/s memory bandwidth (copy), "
               f"{c['gemm_gflop_per_s']:.1f} GFLOP/s float32 GEMM, {c['torch_num_threads']} threads")
    click.echo(summary_markdown(report["summary"]))
    for name, cfg in report["configurations"].items():
        if cfg.get("status") in ("unavailable", "failed"):
            click.echo(f"{name}: {cfg['status']}: {cfg.get('reason')}")
    if json_path:
        write_suite(report, json_path)
    click.echo(f"report: {out} and {out[:-5] if out.endswith('.json') else out}.md ({report['wall_s']} s)")


if __name__ == "__main__":  # pragma: no cover - `python -m spikeflow.cli`
    main()
