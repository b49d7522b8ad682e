"""Checkpoints count only once complete: the marker written last, the files it lists, and what resume does."""

import logging

from grouprp.checkpoints import MARKER, checkpoint_problem, latest_complete, mark_complete, rotate


def make_checkpoint(folder, step, complete=True):
    path = folder / f"checkpoint-{step}"
    (path / "global_step").mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"w" * 100)
    (path / "global_step" / "optim_states.pt").write_bytes(b"o" * 1000)
    (path / "trainer_state.json").write_text('{"global_step": %d}' % step)
    if complete:
        mark_complete(path, step)
    return path


def test_a_checkpoint_is_complete_only_with_its_marker_and_every_file_it_lists(tmp_path):
    good = make_checkpoint(tmp_path, 1)
    assert checkpoint_problem(good) is None
    assert "has no completion marker" in checkpoint_problem(make_checkpoint(tmp_path, 2, complete=False))
    truncated = make_checkpoint(tmp_path, 3)
    (truncated / "global_step" / "optim_states.pt").write_bytes(b"o" * 10)
    assert checkpoint_problem(truncated) == "has global_step/optim_states.pt truncated or changed (10 of 1,000 bytes)"
    missing = make_checkpoint(tmp_path, 4)
    (missing / "trainer_state.json").unlink()
    assert checkpoint_problem(missing) == "is missing trainer_state.json"
    jit = make_checkpoint(tmp_path, 5)
    (jit / "checkpoint-is-incomplete.txt").write_text("in progress")
    assert "left incomplete" in checkpoint_problem(jit)
    assert checkpoint_problem(tmp_path / "checkpoint-9") == "is not a checkpoint folder"


def test_resume_takes_the_latest_complete_one_and_moves_newer_incomplete_ones_aside(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="grouprp")
    for step in (2, 4):
        make_checkpoint(tmp_path, step)
    make_checkpoint(tmp_path, 6, complete=False)
    make_checkpoint(tmp_path, 10, complete=False)
    assert latest_complete(tmp_path, tidy=False) == tmp_path / "checkpoint-4"
    assert (tmp_path / "checkpoint-10").exists()  # without tidy nothing moves
    assert latest_complete(tmp_path, tidy=True) == tmp_path / "checkpoint-4"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[:2] == ["checkpoint-10.incomplete-" + names[0].rsplit("-", 1)[1], "checkpoint-2"]
    assert [n for n in names if n.startswith("checkpoint-") and "." not in n] == ["checkpoint-2", "checkpoint-4"]
    assert "checkpoint-6 has no completion marker" in caplog.text and "not resumed from" in caplog.text


def test_rotation_keeps_the_newest_complete_checkpoints(tmp_path):
    for step in (1, 2, 3):
        make_checkpoint(tmp_path, step)
    make_checkpoint(tmp_path, 4, complete=False)  # being written: never counted, never deleted here
    rotate(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-3", "checkpoint-4"]
    assert (tmp_path / "checkpoint-3" / MARKER).is_file()
