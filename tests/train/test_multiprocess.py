"""Two local processes (4 CPU devices each, gloo collectives) train together and agree."""
import json
import os
import socket
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_WORKER = r"""
import json, os, sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
sys.path.insert(0, os.path.join({repo!r}, "tests", "train"))
from conftest import small_config
from outeffhop_jax.train import loop
from flax import nnx
import numpy as np

pid = int(sys.argv[1])
config = small_config("opt", "softmax1", num_steps=4, global_batch_size=8, checkpoint_every=2)
config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 2, 2, 2
config.distributed.update(initialize=True, coordinator_address="127.0.0.1:{port}",
                          num_processes=2, process_id=pid)
final = loop.run(config, sys.argv[2])
from outeffhop_jax.train import load_from_workdir
run = load_from_workdir(sys.argv[2])
leaves = jax.tree.leaves(nnx.state(run.model, nnx.Param))
# Every process sees the same global parameters: gather its addressable shards' checksums.
total = float(sum(np.sum(np.asarray(jax.experimental.multihost_utils.process_allgather(x, tiled=True)))
                  for x in leaves))
print("RESULT", json.dumps({{"pid": pid, "devices": jax.device_count(),
                            "local": jax.local_device_count(), "loss": final["loss"],
                            "checksum": total, "step": run.step}}), flush=True)
"""


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_train_together(tmp_path):
  code = _WORKER.format(repo=REPO, port=_free_port())
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=4")
  procs = [subprocess.Popen([sys.executable, "-c", code, str(i), str(tmp_path / "run")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for i in range(2)]
  results = []
  for p in procs:
    out, err = p.communicate(timeout=240)
    assert p.returncode == 0, err[-3000:]
    line = [l for l in out.splitlines() if l.startswith("RESULT")][0]
    results.append(json.loads(line.split(" ", 1)[1]))
  a, b = sorted(results, key=lambda r: r["pid"])
  assert a["devices"] == b["devices"] == 8 and a["local"] == b["local"] == 4
  assert a["step"] == b["step"] == 4
  assert np.isfinite(a["loss"]) and a["loss"] == b["loss"]
  assert a["checksum"] == b["checksum"]
  # Each host wrote its own data-iterator position beside the shared model checkpoint.
  data_dir = tmp_path / "run" / "checkpoints" / "4" / "data"
  assert sorted(n for n in os.listdir(data_dir) if n.endswith(".json")) == [
      "process_0-of-2.json", "process_1-of-2.json"]
