"""Keeps libtpu quiet and local on machines without a TPU.

`import mathrl` calls `configure()` before anything loads JAX's backends.
On a machine with no TPU chip on its PCI bus (and no GPU), it

  * sets JAX_PLATFORMS=cpu when unset, so JAX never starts the TPU runtime
    just because libtpu is installed (it would otherwise load libtpu.so and
    try to initialise it);
  * sets TPU_SKIP_MDS_QUERY=1, so libtpu never asks a cloud metadata
    server for the TPU's type and workers when it is loaded to compile for
    a topology (`mathrl.aot`);
  * sets the accelerator type and worker variables libtpu would otherwise
    look up (TPU_ACCELERATOR_TYPE, TPU_WORKER_ID, TPU_WORKER_HOSTNAMES) to
    a one-host placeholder. Compiling for a topology takes the chip type and
    shape from the topology name, not from these;
  * sets ALLOW_MULTIPLE_LIBTPU_LOAD=1: with no chip to guard, several
    processes (parallel tests, concurrent compiles) may load libtpu at once
    instead of failing on its /tmp/libtpu_lockfile.

Values already in the environment are kept; on a TPU VM nothing is changed.
"""

import glob
import os
import pathlib

_GOOGLE_PCI_VENDOR = "0x1ae0"
_GPU_DEVICE_FILES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")

# libtpu's own variables; the accelerator type is a placeholder (see above).
PLACEHOLDERS = {
    "TPU_SKIP_MDS_QUERY": "1",
    "TPU_ACCELERATOR_TYPE": "v5litepod-1",
    "TPU_WORKER_ID": "0",
    "TPU_WORKER_HOSTNAMES": "localhost",
    "ALLOW_MULTIPLE_LIBTPU_LOAD": "1",
}


def tpu_attached() -> bool:
  """True when a Google TPU device is on this machine's PCI bus."""
  for vendor in glob.glob("/sys/bus/pci/devices/*/vendor"):
    try:
      if pathlib.Path(vendor).read_text().strip() == _GOOGLE_PCI_VENDOR:
        return True
    except OSError:
      continue
  return os.path.exists("/dev/accel0") or os.path.isdir("/dev/vfio/devices")


def gpu_attached() -> bool:
  return any(os.path.exists(p) for p in _GPU_DEVICE_FILES)


def configure() -> dict[str, str]:
  """Applies the rules above; returns the variables it set."""
  if tpu_attached():
    return {}
  changed = {}
  wanted = dict(PLACEHOLDERS)
  if not gpu_attached():
    wanted["JAX_PLATFORMS"] = "cpu"
  for name, value in wanted.items():
    if name not in os.environ:
      os.environ[name] = value
      changed[name] = value
  return changed
