"""Run tracking: the engine's records (the ones the JSONL log holds) sent to TensorBoard and MLflow.

Off by default; both are optional packages (``pip install 'modelupdate[tracking]'`` for TensorBoard,
``'modelupdate[mlflow]'`` for MLflow). Every number is logged under one clean name (``train/loss``,
``val/er``, ``test/nfr``, ...) at the global training step, so that step and epoch curves share an axis.
A run is named after the output file's stem; an ensemble's members are runs of their own below it.
Runs are created at the first record, so only the process that receives records (rank 0) writes.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

from ..config import MEMBER_SEED_OFFSET
from ..errors import ConfigError, OutputError
from . import Event

INSTALL_HINT = "--tensorboard: needs the tensorboard package; pip install 'modelupdate[tracking]' (or tensorboard)"
MLFLOW_HINT = "--mlflow: needs the mlflow package; pip install 'modelupdate[mlflow]' (or mlflow-skinny)"
EXPERIMENT = "modelupdate"  # the MLflow experiment unless MLFLOW_EXPERIMENT_NAME names another

# counters and positions, not measurements: they index the scalars instead
POSITION_KEYS = {"type", "epoch", "step", "steps_per_epoch", "global_step", "total_steps", "member_label", "out"}
# names that the split rule in metric_name would not give; None: not logged (a repeat of another curve)
RENAMED: dict[str, dict[str, str | None]] = {
    "step": {"images_per_second": "perf/images_per_second"},
    "epoch": {"train_loss": "train/epoch_loss", "epoch_seconds": "perf/epoch_seconds", "lr": None},
    "done": {"train_seconds": "perf/train_seconds", "images_per_second": None, "epochs_completed": None},
}
GROUP = {"step": "train", "epoch": "train", "done": "final"}  # where a name of no split goes
MEMBER = re.compile(r"member (\d+)/(\d+)")


def check_tensorboard(logdir: str | Path) -> None:
    """Fail before training, in one line, when the package is missing or ``logdir`` cannot be a folder."""
    if not str(logdir).strip():  # '' would log into the current folder
        raise ConfigError(f"--tensorboard {str(logdir)!r}: expected a folder path")
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    check_folder("--tensorboard", Path(logdir))


def check_folder(option: str, folder: Path) -> None:
    """``folder`` is one, or can be created: its nearest existing ancestor is a folder that takes a new entry
    (probed: os.access says yes to root, and /proc refuses only when written to)."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {folder}: is a file; expected a folder (created if missing)")
    parent = next((p for p in (folder.absolute(), *folder.absolute().parents) if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"{option} {folder}: {parent} is a file; expected a folder")
    if parent is None:
        return
    import tempfile

    try:
        probe = tempfile.mkdtemp(prefix=".modelupdate-", suffix=".probe", dir=parent)
        os.rmdir(probe)
    except OSError as exc:
        raise ConfigError(f"{option} {folder}: cannot create or write it in {parent} ({exc.strerror}); "
                          f"expected a writable folder") from None


def check_mlflow(uri: str) -> str:
    """The tracking URI that ``uri`` names (a path or ``file:`` URI: a local file store); fails before
    training, in one line, when mlflow is missing or a local store cannot be a folder."""
    if not uri.strip():  # '' would make the current folder a file store
        raise ConfigError(f"--mlflow {uri!r}: expected a folder or a tracking URI")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError(MLFLOW_HINT) from None
    path = local_store(uri)
    if path is None:
        return uri
    check_folder("--mlflow", path)
    return path.absolute().as_uri()


def local_store(uri: str) -> Path | None:
    """The folder of a file store, or None for a server or database URI (http:, sqlite:, databricks)."""
    if uri.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    if uri == "databricks" or re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", uri):  # a one-letter scheme: a drive
        return None
    return Path(uri).expanduser()


# --------------------------------------------------------------------------- names and values


def metric_name(name: str, kind: str) -> str | None:
    """``val_error_rate`` -> ``val/er``, ``raw_test_error_rate`` -> ``test/raw_er``, a step's loss part ``ce``
    -> ``train/ce``."""
    renamed = RENAMED.get(kind, {})
    if name in renamed:
        return renamed[name]
    short = name.replace("error_rate", "er")
    for split in ("val", "test"):
        if short.startswith(split + "_"):
            return f"{split}/{short.removeprefix(split + '_')}"
        if f"_{split}_" in short:
            return f"{split}/{short.replace(f'_{split}_', '_')}"
    return f"{GROUP.get(kind, 'train')}/{short}"


def scalars(event: Event, skip: set[str] = POSITION_KEYS) -> dict[str, float]:
    """The record's finite numbers (booleans and text left out), by name."""
    return {k: float(v) for k, v in event.items() if k not in skip and isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(float(v))}


def metrics_of(event: Event) -> dict[str, float]:
    """A record's numbers under their tracking names; the final record's validation numbers repeat the last
    epoch's and are left out."""
    kind = event["type"]
    named = {metric_name(k, kind): v for k, v in scalars(event).items()
             if not (kind == "done" and k.startswith("val_"))}
    return {k: v for k, v in named.items() if k is not None}


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``; lists as JSON text, booleans as text, unset (None)
    values left out.
    A ``params`` dict is merged into its parent (the update's method options: ``update.alpha``)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat |= flatten(value, prefix if key == "params" and prefix else f"{prefix}{key}.")
        elif isinstance(value, (list, tuple)):
            flat[f"{prefix}{key}"] = json.dumps(value)
        elif isinstance(value, bool):  # TensorBoard would show a number
            flat[f"{prefix}{key}"] = str(value)
        elif value is not None:
            flat[f"{prefix}{key}"] = value
    return flat


def member_of(event: Event) -> tuple[int, int] | None:
    """``member 2/4`` -> (2, 4): an ensemble's member; None for a single model's records."""
    match = MEMBER.fullmatch(str(event.get("member_label") or ""))
    return (int(match[1]), int(match[2])) if match else None


# --------------------------------------------------------------------------- the event handler


class Tracking:
    """An ``on_event`` handler sending each record to the chosen sinks, and a context manager that closes
    their runs with the command's outcome (finished, failed, or killed by an interrupt).

    ``run_name``: the output file's stem. ``resume``: an MLflow run left unfinished for ``out`` is continued.
    """

    def __init__(self, run_name: str, *, tensorboard: str | Path | None = None, mlflow: str | None = None,
                 out: str | Path | None = None, resume: bool = False):
        self.sinks: list[Sink] = []
        if tensorboard is not None:
            self.sinks.append(TensorBoardSink(Path(tensorboard), run_name))
        if mlflow is not None:
            self.sinks.append(MlflowSink(mlflow, run_name, out=out, resume=resume))
        self.steps_per_epoch = 1
        self.last_step = 0
        self.top_params: dict[str, Any] | None = None

    def __call__(self, event: Event) -> None:
        kind = event.get("type")
        member = member_of(event)
        if kind == "config":
            params = flatten(event["config"])
            if self.top_params is None:  # an ensemble's run: its first member's recipe at the command's seed
                self.top_params = params if member is None else (
                    params | {"train.seed": params["train.seed"] - MEMBER_SEED_OFFSET - (member[0] - 1),
                              "members": member[1]})
                for sink in self.sinks:
                    sink.begin(None, self.top_params)
            if member is not None:
                for sink in self.sinks:
                    sink.begin(member, params)
        elif kind == "start":
            self.steps_per_epoch = int(event["steps_per_epoch"])
            done = int(event["start_epoch"]) * self.steps_per_epoch + int(event["start_step"])
            for sink in self.sinks:
                sink.start(member, done)
        elif kind in ("step", "epoch", "done"):
            if kind == "step":
                self.last_step = int(event["global_step"])
            elif kind == "epoch":  # the epoch's end, on the steps' axis
                self.last_step = int(event["epoch"]) * self.steps_per_epoch
            values = metrics_of(event)
            for sink in self.sinks:
                sink.scalars(member, values, self.last_step, flush=kind != "step")
                if kind == "done":
                    sink.final(member, values, event.get("out"))

    def finish(self, metrics: dict[str, Any], out: Path | None = None) -> None:
        """The command's own final metrics (an ensemble's, measured after its members) on its top run."""
        values = metrics_of({"type": "done"} | metrics)
        for sink in self.sinks:
            sink.scalars(None, values, self.last_step, flush=True)
            sink.final(None, values, str(out) if out is not None else None)

    def __enter__(self) -> Tracking:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        code = getattr(exc, "exit_code", None)  # the CLI's typer.Exit
        if kind is None or code == 0:
            status = "FINISHED"
        elif issubclass(kind, KeyboardInterrupt) or code == 130:
            status = "KILLED"
        else:
            status = "FAILED"
        for sink in self.sinks:
            sink.close(status)


class Sink:
    """Where records go. ``member``: None for the command's run, else (index, count) of an ensemble member."""

    def begin(self, member: tuple[int, int] | None, params: dict[str, Any]) -> None: ...

    def start(self, member: tuple[int, int] | None, steps_done: int) -> None: ...

    def scalars(self, member: tuple[int, int] | None, values: dict[str, float], step: int, *,
                flush: bool) -> None: ...

    def final(self, member: tuple[int, int] | None, values: dict[str, float], out: str | None) -> None: ...

    def close(self, status: str) -> None: ...


class TensorBoardSink(Sink):
    """Runs in ``logdir/<run name>`` (members in ``.../member1``): several commands given the same folder
    show as runs side by side. The final test metrics and the recipe go to the HPARAMS tab."""

    def __init__(self, logdir: Path, run_name: str):
        check_tensorboard(logdir)
        self.root = logdir / run_name
        self.writers: dict[Any, Any] = {}
        self.params: dict[Any, dict[str, Any]] = {}
        self.purge: dict[Any, int] = {}
        self.tags: dict[Any, set[str]] = {}

    def writer(self, member: tuple[int, int] | None):
        if member not in self.writers:
            from torch.utils.tensorboard import SummaryWriter

            folder = self.root / f"member{member[0]}" if member else self.root
            # a resumed run: drop what the interrupted one logged after its saved state
            self.writers[member] = SummaryWriter(log_dir=str(folder), purge_step=self.purge.get(member))
        return self.writers[member]

    def begin(self, member, params):
        self.params[member] = params

    def start(self, member, steps_done):
        if steps_done and member not in self.writers:
            self.purge[member] = steps_done + 1

    def scalars(self, member, values, step, *, flush):
        writer = self.writer(member)
        for tag, value in values.items():
            writer.add_scalar(tag, value, step)
        self.tags.setdefault(member, set()).update(values)
        if flush:  # to disk once an epoch, not at every logged step
            writer.flush()

    def final(self, member, values, out):
        from torch.utils.tensorboard.summary import hparams

        writer = self.writer(member)
        # the HPARAMS tab's columns: the test metrics and the last validation numbers (it reads each
        # metric's last value from the curve of that tag; the values given here are not used)
        shown = [tag for tag in sorted(self.tags.get(member, ())) if tag.startswith("test/")]
        shown += [tag for tag in ("val/er", "val/nfr") if tag in self.tags.get(member, ())]
        for summary in hparams(self.params.get(member, {}), dict.fromkeys(shown, 0.0)):
            writer.file_writer.add_summary(summary)
        writer.flush()

    def close(self, status):
        for writer in self.writers.values():
            writer.close()


class MlflowSink(Sink):
    """One MLflow run per command (its params, metrics at their steps, final test metrics, the training log
    as an artifact and the checkpoint's path as a tag); an ensemble's members are child runs of it."""

    def __init__(self, uri: str, run_name: str, *, out: str | Path | None = None, resume: bool = False):
        self.uri = uri
        self.tracking_uri = check_mlflow(uri)
        self.run_name, self.out, self.resume = run_name, Path(out) if out is not None else None, resume
        self.client: Any = None  # an MlflowClient once connected (mlflow is an optional dependency)
        self.experiment_id: str | None = None
        self.runs: dict[Any, str] = {}
        self.logged_params: dict[Any, set[str]] = {}

    def fail(self, what: str, exc: Exception) -> OutputError:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        return OutputError(f"--mlflow {self.uri}: cannot {what} ({first})")

    def connect(self) -> None:
        from mlflow.tracking import MlflowClient

        if local_store(self.uri) is not None:
            # MLflow 3 asks to opt in to its file store; a folder given to --mlflow is that opt-in
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            self.client = MlflowClient(tracking_uri=self.tracking_uri)
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                try:
                    self.experiment_id = self.client.create_experiment(name)
                except Exception:  # another command created it in between
                    self.experiment_id = self.client.get_experiment_by_name(name).experiment_id
            else:
                self.experiment_id = experiment.experiment_id
        except Exception as exc:
            raise self.fail("open the tracking store", exc) from None

    def run_id(self, member: tuple[int, int] | None) -> str:
        if member not in self.runs:
            if member is not None:
                self.run_id(None)
            if self.client is None:
                self.connect()
            out = str(self.out.absolute()) if self.out else self.run_name
            tags, name = {"modelupdate.out": out}, self.run_name
            if member is not None:  # not tagged with the out: --resume looks a command's run up by that tag
                tags = {"mlflow.parentRunId": self.runs[None], "modelupdate.ensemble": out,
                        "modelupdate.member": f"{member[0]}/{member[1]}"}
                name = f"{self.run_name} member {member[0]}"
            try:
                found = self.unfinished(tags) if self.resume else None
                self.runs[member] = found or self.client.create_run(self.experiment_id, run_name=name,
                                                                    tags=tags).info.run_id
            except Exception as exc:
                raise self.fail("create a run", exc) from None
        return self.runs[member]

    def unfinished(self, tags: dict[str, str]) -> str | None:
        """The latest run with these tags that did not finish (an interrupted run that --resume continues)."""
        if any("'" in value for value in tags.values()):
            return None
        where = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
        runs = self.client.search_runs([self.experiment_id], filter_string=where, max_results=1,
                                       order_by=["attributes.start_time DESC"])
        if not runs or runs[0].info.status == "FINISHED":
            return None
        self.client.update_run(runs[0].info.run_id, status="RUNNING")
        return runs[0].info.run_id

    def log(self, member, *, metrics=(), params=(), tags=()) -> None:
        try:
            self.client.log_batch(self.run_id(member), metrics=list(metrics), params=list(params), tags=list(tags))
        except OutputError:
            raise
        except Exception as exc:
            raise self.fail("log to the run", exc) from None

    def begin(self, member, params):
        from mlflow.entities import Param

        run = self.run_id(member)
        done = self.logged_params.setdefault(run, set())
        # a resumed run has them already; MLflow accepts 100 params per call
        new = [Param(k, str(v)[:500]) for k, v in params.items() if k not in done]
        for i in range(0, len(new), 100):
            self.log(member, params=new[i:i + 100])
        done.update(params)

    def scalars(self, member, values, step, *, flush):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.log(member, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def final(self, member, values, out):
        from mlflow.entities import RunTag

        if out is None:
            return
        self.log(member, tags=[RunTag("modelupdate.checkpoint", str(Path(out).absolute()))])
        from ..atomic import OutputFiles

        log = OutputFiles(Path(out)).log
        if log.is_file():
            try:
                self.client.log_artifact(self.run_id(member), str(log))
            except Exception as exc:
                raise self.fail("store the training log", exc) from None

    def close(self, status):
        for member in sorted(self.runs, key=lambda m: m is None):  # the members first, their parent last
            try:
                self.client.set_terminated(self.runs[member], status=status)
            except Exception:  # closing is best effort: the command's own outcome is what is reported
                pass
