"""`gram-ray label|prove|score|denoise` wiring that needs no Ray: help and config errors."""

from __future__ import annotations

import pytest

from gram_ray.cli import build_parser, main


@pytest.mark.parametrize("command", ["label", "prove", "score", "denoise"])
def test_stage_commands_take_a_config_an_input_and_an_output(command):
    args = build_parser().parse_args([command, "--config", "c.yaml", "in.parquet", "out"])
    assert (args.command, args.input, args.output) == (command, "in.parquet", "out")


def test_engine_stages_need_an_engine_section(tmp_path, capsys):
    config = tmp_path / "job.yaml"
    config.write_text("judge:\n  template: compact\n")
    assert main(["label", "--config", str(config), "in.parquet", str(tmp_path / "out")]) == 2
    assert "needs an engine section" in capsys.readouterr().err


def test_invalid_stage_settings_are_reported_with_their_key(tmp_path, capsys):
    config = tmp_path / "job.yaml"
    config.write_text("engine:\n  model: m\njudge:\n  votes: 4\n")
    assert main(["label", "--config", str(config), "in.parquet", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "judge" in err and "temperature" in err
