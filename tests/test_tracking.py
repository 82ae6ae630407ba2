"""--tensorboard and --mlflow: the JSONL log's records under clean names, the recipe as hyperparameters and
the final test metrics, read back with TensorBoard's and MLflow's own readers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelupdate.events.tracking import Tracking, flatten, member_of, metric_name, metrics_of, scalars
from modelupdate.formats import read_meta

TINY = ["--data", "synthetic", "--arch", "tiny", "--epochs", "2", "--batch-size", "64", "--device", "cpu", "--quiet"]
# what a plain `train` logs, and what ldi-train's method adds: its loss parts and the flips vs --old
TRAIN_TAGS = {"train/loss", "train/lr", "train/grad_norm", "perf/images_per_second", "train/epoch_loss",
              "perf/epoch_seconds", "val/er", "test/er", "test/n", "test/correct", "perf/train_seconds"}
FLIP_TAGS = {f"{split}/{name}" for split in ("val", "test")
             for name in ("nfr", "negative_flips", "positive_flips", "old_er")}
LDI_TAGS = TRAIN_TAGS | {"train/ce", "train/aux"} | FLIP_TAGS


def records(log: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, log.read_text().splitlines()) if r.get("type") == kind]


def event_file(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return events


def hparams_of(events) -> tuple[dict, list[str]]:
    """The HPARAMS tab's data of a run: its hyperparameters, and the metric tags it lists."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    values = {k: v.string_value if v.HasField("string_value") else v.number_value
              for k, v in start.session_start_info.hparams.items()}
    return values, [m.name.tag for m in experiment.experiment.metric_infos]


@pytest.fixture
def mlflow_client(monkeypatch):
    """``mlflow_client(store) -> (client, runs by name)`` of a local store, read with MLflow's own client."""
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'modelupdate[mlflow]')")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks readers of a file store too

    def read(store: Path):
        client = MlflowClient(tracking_uri=store.absolute().as_uri())
        experiment = client.get_experiment_by_name("modelupdate")
        return client, {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}

    return read


def test_names_values_and_members():
    event = {"type": "step", "loss": 0.5, "lr": 0.1, "grad_norm": None, "ok": True, "x": float("nan"), "n": 3}
    assert scalars(event, {"type"}) == {"loss": 0.5, "lr": 0.1, "n": 3.0}
    assert metric_name("val_error_rate", "epoch") == "val/er" and metric_name("ce", "step") == "train/ce"
    assert metric_name("raw_test_error_rate", "done") == "test/raw_er"
    assert metric_name("member_test_error_rate_mean", "done") == "test/member_er_mean"
    assert metrics_of({"type": "epoch", "epoch": 2, "train_loss": 1.0, "lr": 0.1, "val_nfr": 0.02}) == {
        "train/epoch_loss": 1.0, "val/nfr": 0.02}
    assert metrics_of({"type": "done", "test_nfr": 0.1, "val_error_rate": 0.2, "out": "m.safetensors"}) == {
        "test/nfr": 0.1}
    assert flatten({"train": {"lr": 0.1, "dropout": None, "compile": False},
                    "update": {"method": "kd", "params": {"tau": 2.0}}, "data": {"mean": [0.5]}}) == {
        "train.lr": 0.1, "train.compile": "False", "update.method": "kd", "update.tau": 2.0, "data.mean": "[0.5]"}
    assert member_of({"member_label": "member 2/4"}) == (2, 4)
    assert member_of({"member_label": "ce torchvision.models:resnet18"}) is None and member_of({}) is None


def test_train_and_ldi_train_logged_to_tensorboard_and_mlflow(tmp_path, run_cli, mlflow_client):
    pytest.importorskip("tensorboard")
    tb, store = tmp_path / "tb", tmp_path / "store"
    old, new = tmp_path / "old.safetensors", tmp_path / "new.safetensors"
    code, _, err = run_cli("train", *TINY, "--out", old, "--tensorboard", tb, "--mlflow", store)
    assert code == 0, err
    code, _, err = run_cli("ldi-train", *TINY, "--method", "ldi-old", "--old", old, "--out", new,
                           "--tensorboard", tb, "--mlflow", store)
    assert code == 0, err

    # TensorBoard: one run per command, named after --out, under clean tags on the steps' axis
    assert sorted(p.name for p in tb.iterdir()) == ["new", "old"]
    events = event_file(tb / "new")
    assert set(events.Tags()["scalars"]) == LDI_TAGS
    assert set(event_file(tb / "old").Tags()["scalars"]) == TRAIN_TAGS
    log = tmp_path / "new.log.jsonl"
    steps, epochs = records(log, "step"), records(log, "epoch")
    per_epoch = steps[0]["steps_per_epoch"]
    for tag, key in (("train/loss", "loss"), ("train/ce", "ce"), ("train/aux", "aux")):
        assert [e.step for e in events.Scalars(tag)] == [r["global_step"] for r in steps]
        assert [e.value for e in events.Scalars(tag)] == pytest.approx([r[key] for r in steps], rel=1e-6)
    for tag, key in (("val/er", "val_error_rate"), ("val/nfr", "val_nfr"), ("train/epoch_loss", "train_loss")):
        assert [e.step for e in events.Scalars(tag)] == [r["epoch"] * per_epoch for r in epochs]
        assert [e.value for e in events.Scalars(tag)] == pytest.approx([r[key] for r in epochs], rel=1e-6)
    metrics = read_meta(new).metrics
    for tag, key in (("test/er", "test_error_rate"), ("test/nfr", "test_nfr"),
                     ("test/negative_flips", "test_negative_flips")):
        assert [(e.step, e.value) for e in events.Scalars(tag)] == [(2 * per_epoch, pytest.approx(metrics[key]))]
    hparams, shown = hparams_of(events)
    assert hparams["train.arch"] == "tiny" and hparams["update.method"] == "ldi-old" and hparams["train.epochs"] == 2
    assert hparams["train.lr"] == pytest.approx(read_meta(new).config["train"]["lr"] or 0.1 * 64 / 256)
    assert {"test/er", "test/nfr", "val/er", "val/nfr"} <= set(shown)

    # MLflow: the same numbers at the same steps, the recipe as params, the training log as an artifact
    client, runs = mlflow_client(store)
    assert set(runs) == {"old", "new"}
    run = runs["new"]
    assert run.info.status == "FINISHED" and set(run.data.metrics) == LDI_TAGS
    assert run.data.params["update.method"] == "ldi-old" and run.data.params["train.arch"] == "tiny"
    assert run.data.params["data.name"] == "synthetic" and run.data.params["train.seed"] == "0"
    assert run.data.tags["modelupdate.checkpoint"] == str(new.absolute())
    history = client.get_metric_history(run.info.run_id, "train/aux")
    assert [(m.step, m.value) for m in history] == [(r["global_step"], pytest.approx(r["aux"])) for r in steps]
    history = client.get_metric_history(run.info.run_id, "val/nfr")
    assert [(m.step, m.value) for m in history] == [(r["epoch"] * per_epoch, pytest.approx(r["val_nfr"]))
                                                    for r in epochs]
    for tag, key in (("test/er", "test_error_rate"), ("test/nfr", "test_nfr"), ("test/n", "test_n")):
        assert run.data.metrics[tag] == pytest.approx(metrics[key])
    assert runs["old"].data.metrics["test/er"] == pytest.approx(read_meta(old).metrics["test_error_rate"])
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["new.log.jsonl"]


def test_ensemble_members_are_runs_below_the_ensemble(tmp_path, run_cli, mlflow_client):
    pytest.importorskip("tensorboard")
    out, tb, store = tmp_path / "ref.safetensors", tmp_path / "tb", tmp_path / "store"
    code, _, err = run_cli("ensemble-train", *TINY, "--epochs", "1", "--members", "2", "--seed", "5",
                           "--out", out, "--tensorboard", tb, "--mlflow", store)
    assert code == 0, err
    meta = read_meta(out)
    client, runs = mlflow_client(store)
    assert set(runs) == {"ref", "ref member 1", "ref member 2"}
    parent = runs["ref"]
    assert parent.data.params["members"] == "2" and parent.data.params["train.seed"] == "5"
    assert parent.data.metrics["test/er"] == pytest.approx(meta.metrics["test_error_rate"])
    for i, member in enumerate(meta.member_metrics, start=1):
        run = runs[f"ref member {i}"]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id and run.info.status == "FINISHED"
        assert run.data.params["train.seed"] == str(5 + 100 + i - 1)  # members train at --seed + 100 + i
        assert run.data.metrics["test/er"] == pytest.approx(member["test_error_rate"])
        assert set(event_file(tb / "ref" / f"member{i}").Tags()["scalars"]) == TRAIN_TAGS
    assert event_file(tb / "ref").Scalars("test/er")[0].value == pytest.approx(meta.metrics["test_error_rate"])


def test_an_interrupted_run_is_killed_and_resume_continues_it(tmp_path, mlflow_client):
    """--resume continues the MLflow run an interrupted command left, and TensorBoard drops the steps logged
    after the saved state (they are trained again)."""
    pytest.importorskip("tensorboard")
    out = tmp_path / "m.safetensors"
    config = {"type": "config", "config": {"train": {"arch": "tiny", "seed": 0}}}

    def step(n: int, loss: float) -> dict:
        return {"type": "step", "epoch": 0, "step": n, "global_step": n, "loss": loss}

    def tracked(resume: bool) -> Tracking:
        return Tracking("m", tensorboard=tmp_path / "tb", mlflow=str(tmp_path / "store"), out=out, resume=resume)

    with pytest.raises(KeyboardInterrupt), tracked(False) as tracking:
        for event in (config, {"type": "start", "steps_per_epoch": 10, "start_epoch": 0, "start_step": 0},
                      step(2, 1.0), step(4, 0.9)):
            tracking(event)
        raise KeyboardInterrupt
    client, runs = mlflow_client(tmp_path / "store")
    assert runs["m"].info.status == "KILLED"
    with tracked(True) as tracking:  # the state was saved after step 2
        for event in (config, {"type": "start", "steps_per_epoch": 10, "start_epoch": 0, "start_step": 2},
                      step(4, 0.5), {"type": "done", "test_error_rate": 0.25, "out": str(out)}):
            tracking(event)
    client, again = mlflow_client(tmp_path / "store")
    assert set(again) == {"m"} and again["m"].info.run_id == runs["m"].info.run_id
    assert again["m"].info.status == "FINISHED" and again["m"].data.metrics["test/er"] == 0.25
    assert [(e.step, e.value) for e in event_file(tmp_path / "tb" / "m").Scalars("train/loss")] == [(2, 1.0), (4, 0.5)]


def test_resume_continues_an_ensemble_run_and_its_interrupted_member(tmp_path, mlflow_client):
    def config(member: int) -> dict:
        # members of `--seed 7` train at 107 and 108
        return {"type": "config", "member_label": f"member {member}/2", "config": {"train": {"seed": 106 + member}}}

    def tracked(resume: bool) -> Tracking:
        return Tracking("ref", mlflow=str(tmp_path / "store"), out=tmp_path / "ref.safetensors", resume=resume)

    with pytest.raises(KeyboardInterrupt), tracked(False) as tracking:
        for event in (config(1), {"type": "done", "member_label": "member 1/2", "test_error_rate": 0.3}, config(2)):
            tracking(event)
        raise KeyboardInterrupt
    _, runs = mlflow_client(tmp_path / "store")
    assert {name: run.info.status for name, run in runs.items()} == {
        "ref": "KILLED", "ref member 1": "KILLED", "ref member 2": "KILLED"}
    with tracked(True) as tracking:  # member 1 was kept; member 2 goes on
        tracking(config(2))
        tracking.finish({"test_error_rate": 0.2})
    _, again = mlflow_client(tmp_path / "store")
    assert {name: run.info.run_id for name, run in again.items()} == {
        name: run.info.run_id for name, run in runs.items()}
    assert again["ref"].info.status == "FINISHED" and again["ref member 2"].info.status == "FINISHED"
    assert again["ref"].data.params["train.seed"] == "7" and again["ref"].data.params["members"] == "2"
    assert again["ref"].data.metrics["test/er"] == 0.2


def test_missing_tensorboard_is_one_line_before_training(tmp_path, run_cli, monkeypatch):
    fake = tmp_path / "site"
    (fake / "tensorboard").mkdir(parents=True)
    (fake / "tensorboard" / "__init__.py").write_text("raise ImportError('no tensorboard here')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    code, _, err = run_cli("train", *TINY, "--out", tmp_path / "m.safetensors", "--tensorboard", tmp_path / "tb")
    assert code == 2 and err.strip() == "error: --tensorboard: needs the tensorboard package; pip install " \
        "'modelupdate[tracking]' (or tensorboard)"
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "tb").exists()


def test_missing_mlflow_is_one_line_before_training(tmp_path, run_cli, monkeypatch):
    fake = tmp_path / "site"
    (fake / "mlflow").mkdir(parents=True)
    (fake / "mlflow" / "__init__.py").write_text("raise ImportError('no mlflow here')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    code, _, err = run_cli("train", *TINY, "--out", tmp_path / "m.safetensors", "--mlflow", tmp_path / "store")
    assert code == 2 and err.strip() == "error: --mlflow: needs the mlflow package; pip install " \
        "'modelupdate[mlflow]' (or mlflow-skinny)"
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "store").exists()


@pytest.mark.parametrize("option", ["--tensorboard", "--mlflow"])
def test_a_file_as_the_tracking_folder_is_refused_before_training(tmp_path, run_cli, option):
    if option == "--mlflow":
        pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'modelupdate[mlflow]')")
    (tmp_path / "taken").write_text("x")
    code, _, err = run_cli("train", *TINY, "--out", tmp_path / "m.safetensors", option, tmp_path / "taken")
    assert code == 2 and "is a file; expected a folder" in err and not (tmp_path / "m.safetensors").exists()
