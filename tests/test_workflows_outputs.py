"""workflows/outputs.py: the report files are checked before any work (never an input, never one path twice), the
step summary likewise, and written all or none; what a report records of each input."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelupdate.errors import ConfigError, OutputError, PredictionFileError
from modelupdate.predictions import Predictions, write_predictions
from modelupdate.workflows.outputs import Outputs, deliver, input_record, step_summary_path

SHA = "ab" * 32


@pytest.fixture(autouse=True)
def no_step_summary(monkeypatch):
    """Outside GitHub Actions: a test sets $GITHUB_STEP_SUMMARY itself where it wants one."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture
def inputs(tmp_path) -> list[Path]:
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    for path in (old, new):
        path.write_text("id,target,pred\n1,0,0\n")
    return [old, new]


def test_an_output_that_is_an_input_is_refused(tmp_path, inputs, monkeypatch):
    old, new = inputs
    with pytest.raises(ConfigError) as info:
        Outputs(inputs, {"--markdown": tmp_path / "report.md", "--json": new})
    assert str(info.value) == f"--json {new}: is one of the inputs; refusing to overwrite it"
    # named another way (through a linked folder, or with '..'), it is still the input
    (tmp_path / "linked").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "sub").mkdir()
    for alias in (tmp_path / "linked" / "old.csv", tmp_path / "sub" / ".." / "old.csv"):
        with pytest.raises(ConfigError) as info:
            Outputs(inputs, {"--json": alias})
        assert str(info.value) == f"--json {alias}: is one of the inputs; refusing to overwrite it"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^--html old\.csv: is one of the inputs"):  # relative to the folder
        Outputs(inputs, {"--html": "old.csv"})
    classes = tmp_path / "classes.txt"
    classes.write_text("a\nb\n")
    with pytest.raises(ConfigError, match=r"^--markdown classes\.txt: is one of the inputs"):
        Outputs(inputs, {"--markdown": "classes.txt"}, extra_inputs=[str(classes)])
    assert old.read_text() == new.read_text() == "id,target,pred\n1,0,0\n"


def test_outputs_each_path_once_stdout_once_in_existing_folders(tmp_path, inputs):
    plan = Outputs(inputs, {"--json": tmp_path / "r.json", "--markdown": "-", "--html": None})
    assert plan.files == {"--json": tmp_path / "r.json"} and plan.stdout == "--markdown" and plan.summary is None
    assert plan.wanted("--json") and plan.wanted("--markdown") and not plan.wanted("--html")
    with pytest.raises(ConfigError, match=r"^--json and --markdown cannot both write to stdout \('-'\)$"):
        Outputs(inputs, {"--json": "-", "--markdown": "-"})
    with pytest.raises(ConfigError) as info:
        Outputs(inputs, {"--json": tmp_path / "r.txt", "--markdown": tmp_path / "." / "r.txt"})
    assert str(info.value) == f"--json and --markdown both write {tmp_path / 'r.txt'}"
    missing = tmp_path / "nowhere" / "r.json"
    with pytest.raises(OutputError) as info:
        Outputs(inputs, {"--json": missing})
    assert str(info.value) == f"--json {missing}: folder {tmp_path / 'nowhere'} does not exist"
    (tmp_path / "folder").mkdir()
    with pytest.raises(OutputError, match=r"^--json .*folder: is a folder; expected a regular file path to write$"):
        Outputs(inputs, {"--json": tmp_path / "folder"})
    assert sorted(os.listdir(tmp_path)) == ["folder", "new.csv", "old.csv"]  # checks write nothing


def test_step_summary_is_checked_as_an_output(tmp_path, inputs, monkeypatch):
    assert step_summary_path() is None
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", "")
    assert step_summary_path() is None
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert step_summary_path() == summary and not summary.exists()  # probed, not created
    assert Outputs(inputs, {"--json": tmp_path / "r.json"}).summary == summary
    with pytest.raises(ConfigError) as info:
        Outputs(inputs, {"--markdown": summary})
    assert str(info.value) == f"--markdown and $GITHUB_STEP_SUMMARY both write {summary}"
    with pytest.raises(ConfigError) as info:
        Outputs([inputs[0], summary], {})
    assert str(info.value) == f"$GITHUB_STEP_SUMMARY {summary}: is one of the inputs; refusing to append to it"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "nowhere" / "s.md"))
    with pytest.raises(OutputError, match=r"^\$GITHUB_STEP_SUMMARY .*s\.md: folder .*nowhere does not exist$"):
        step_summary_path()
    (tmp_path / "link.md").symlink_to(inputs[0])
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "link.md"))
    with pytest.raises(OutputError, match=r"^\$GITHUB_STEP_SUMMARY .*link\.md: is a symbolic link"):
        step_summary_path()


def test_deliver_writes_every_report_and_the_summary_or_none(tmp_path, inputs):
    rendered: list[str] = []

    def renderer(option: str):
        def render(result: dict) -> str:
            rendered.append(option)
            return f"{option} of {result['n']}"
        return render

    renderers = {option: renderer(option) for option in ("--json", "--markdown", "--html")}
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    plan = Outputs(inputs, {"--json": tmp_path / "r.json", "--html": "-"})
    printed = deliver(plan, summary, {"n": 3}, renderers)
    assert printed == "--html of 3"
    assert (tmp_path / "r.json").read_text() == "--json of 3"
    # the Markdown is rendered for the step summary even where no --markdown file was asked for
    assert summary.read_text() == "earlier step\n--markdown of 3\n" and sorted(rendered) == ["--html", "--json",
                                                                                             "--markdown"]
    rendered.clear()
    assert deliver(Outputs(inputs, {"--json": tmp_path / "r.json"}), None, {"n": 4}, renderers) is None
    assert rendered == ["--json"] and (tmp_path / "r.json").read_text() == "--json of 4"

    # the summary cannot be appended to (a folder, here): no report file is renamed into place either
    (tmp_path / "blocked").mkdir()
    plan = Outputs(inputs, {"--json": tmp_path / "r.json", "--markdown": tmp_path / "r.md"})
    with pytest.raises(OutputError, match="blocked: is not a regular file"):
        deliver(plan, tmp_path / "blocked", {"n": 5}, renderers)
    assert (tmp_path / "r.json").read_text() == "--json of 4" and not (tmp_path / "r.md").exists()
    assert sorted(os.listdir(tmp_path)) == ["blocked", "new.csv", "old.csv", "r.json", "summary.md"]


def test_input_record_hashes_prediction_files_and_takes_a_checkpoints_sha256(tmp_path):
    meta = {"dataset": "synthetic", "dataset_fingerprint": "fp", "split": "val", "checkpoint_sha256": SHA}
    p = Predictions.from_arrays(np.array([1, 2]), np.array([0, 1]), preds=np.array([0, 0]), meta=meta)
    npz = write_predictions(tmp_path / "p.npz", p)
    record = input_record("old", npz, p).as_dict()
    assert record == {"role": "old", "name": None, "path": str(npz), "kind": "predictions",
                      "sha256": hashlib.sha256(npz.read_bytes()).hexdigest(), "checkpoint_sha256": SHA,
                      "dataset": "synthetic", "dataset_fingerprint": "fp", "split": "val"}

    # a file whose header says it is an ensemble checkpoint: the sha256 its loader computed is recorded
    ckpt = tmp_path / "e.safetensors"
    save_file({"x": np.zeros(2, dtype=np.float32)}, str(ckpt), metadata={"format": "modelupdate-ensemble/1"})
    record = input_record("candidate", ckpt, p, name="wide").as_dict()
    assert (record["kind"], record["sha256"], record["name"], record["role"]) == ("ensemble", SHA, "wide", "candidate")
    # without one, the file is hashed as a prediction file would be
    bare = Predictions.from_arrays(np.array([1]), np.array([0]), preds=np.array([0]))
    record = input_record("old", ckpt, bare).as_dict()
    assert record["kind"] == "predictions" and record["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert record["dataset"] is record["split"] is record["checkpoint_sha256"] is None

    with pytest.raises(PredictionFileError) as info:
        input_record("old", tmp_path / "gone.npz", p)
    assert str(info.value) == f"{tmp_path / 'gone.npz'}: cannot read it again to record its sha256 (No such file or " \
                              "directory)"
