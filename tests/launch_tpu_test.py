"""experiments/launch_tpu.py: the gcloud lines, checked as text."""

import importlib.util
import pathlib
import shlex

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "experiments" / (
    "launch_tpu.py")
_spec = importlib.util.spec_from_file_location("launch_tpu", _PATH)
launch_tpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(launch_tpu)


def test_run_line(capsys):
  rc = launch_tpu.main([
      "--tpu=pod", "--zone=us-west4-a", "--project=proj",
      "--config=configs/dgpo_math.py", "--workdir=gs://b/runs/x",
      "--set=model.path=/data/Qwen 1.5B", "--set=rl.steps=200"])
  assert rc == 0
  printed = capsys.readouterr().out.strip()
  assert printed == (
      "gcloud compute tpus tpu-vm ssh pod --zone=us-west4-a --project=proj"
      " --worker=all '--command=cd ~/mathrl && python -m mathrl.main"
      " --config=configs/dgpo_math.py --workdir=gs://b/runs/x"
      " '\"'\"'--config.model.path=/data/Qwen 1.5B'\"'\"'"
      " --config.rl.steps=200'")
  # The shell splits it back into gcloud's arguments, the command last.
  words = shlex.split(printed)
  assert words[-2:] == ["--worker=all", (
      "--command=cd ~/mathrl && python -m mathrl.main"
      " --config=configs/dgpo_math.py --workdir=gs://b/runs/x"
      " '--config.model.path=/data/Qwen 1.5B' --config.rl.steps=200")]


def test_setup_line():
  line = launch_tpu.ssh_command(
      "v5e-16", "us-west4-a", launch_tpu.setup_command("https://x/m.git"))
  assert line[:7] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "v5e-16",
                      "--zone=us-west4-a"]
  assert line[7] == "--worker=all"
  assert line[8] == (
      "--command=(test -d ~/mathrl || git clone https://x/m.git ~/mathrl)"
      " && cd ~/mathrl && git pull --ff-only &&"
      " python -m pip install -e '.[tpu]'")


def test_bad_override_is_named():
  with pytest.raises(ValueError, match="rl.steps"):
    launch_tpu.train_command("configs/x.py", "w", ["rl.steps"])
