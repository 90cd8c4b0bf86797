"""Print (or run) the command that starts a mathrl run on every TPU worker.

  python experiments/launch_tpu.py --tpu=my-v5e-16 --zone=us-west4-a \\
      --config=configs/dgpo_math.py --workdir=gs://BUCKET/runs/dgpo \\
      --set=model.path=/data/Qwen2.5-1.5B --set=rl.steps=200 [--setup] [--run]

A pod slice has one VM per host; every host runs the same command and JAX
connects them (`mathrl.distributed`). The line printed is

  gcloud compute tpus tpu-vm ssh TPU --zone=ZONE [--project=P] --worker=all
      --command='cd REPO && python -m mathrl.main --config=... --workdir=...'

`--setup` prints the install line instead (clone + `pip install -e
".[tpu]"`). `--run` executes the line (gcloud must be installed and logged
in). A run stopped by preemption exits with status 75 after writing its
checkpoint; running the same line again resumes it. See docs/cloud_tpu.md.
"""

import argparse
import shlex
import subprocess
import sys

REPO_DIR = "~/mathrl"
REPO_URL = "https://github.com/YOUR_ORG/mathrl.git"


def train_command(config: str, workdir: str, overrides: list[str],
                  repo_dir: str = REPO_DIR) -> str:
  """The shell command each worker runs: mathrl.main with the overrides."""
  args = [f"--config={config}", f"--workdir={workdir}"]
  for item in overrides:
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise ValueError(f"--set {item!r}: write FIELD=VALUE, e.g. rl.steps=100")
    args.append(f"--config.{key}={value}")
  return f"cd {repo_dir} && python -m mathrl.main " + " ".join(
      shlex.quote(a) for a in args)


def setup_command(repo_url: str = REPO_URL, repo_dir: str = REPO_DIR) -> str:
  """Clones (or updates) the repository and installs it with libtpu."""
  return (f"(test -d {repo_dir} || git clone {shlex.quote(repo_url)}"
          f" {repo_dir}) && cd {repo_dir} && git pull --ff-only &&"
          " python -m pip install -e '.[tpu]'")


def ssh_command(tpu: str, zone: str, command: str,
                project: str | None = None) -> list[str]:
  """`gcloud compute tpus tpu-vm ssh` running `command` on every worker."""
  line = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu, f"--zone={zone}"]
  if project:
    line.append(f"--project={project}")
  return line + ["--worker=all", f"--command={command}"]


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--tpu", required=True, help="TPU VM / pod slice name")
  p.add_argument("--zone", required=True)
  p.add_argument("--project", default=None)
  p.add_argument("--config", default="configs/default.py")
  p.add_argument("--workdir", default="workdir",
                 help="run directory; a gs:// path works (Orbax, TensorBoard)")
  p.add_argument("--set", action="append", default=[], dest="overrides",
                 metavar="FIELD=VALUE", help="config override (repeatable)")
  p.add_argument("--repo_url", default=REPO_URL)
  p.add_argument("--setup", action="store_true",
                 help="print/run the install line instead of the run")
  p.add_argument("--run", action="store_true", help="execute the line")
  a = p.parse_args(argv)
  command = (setup_command(a.repo_url) if a.setup else
             train_command(a.config, a.workdir, a.overrides))
  line = ssh_command(a.tpu, a.zone, command, a.project)
  print(shlex.join(line))
  if a.run:
    return subprocess.call(line)
  return 0


if __name__ == "__main__":
  sys.exit(main())
