r"""Compiles the real sharded train step for a named TPU topology, on any machine (no TPU needed).

libtpu (pip install "jax[tpu]") contains the TPU compiler; `get_topology_desc` describes a slice
without owning one. The script builds the run exactly as train.py would (config, mesh, logical-axis
shardings, donated state), lowers the jitted train step on abstract inputs, compiles it with XLA:TPU
and prints per-device memory and FLOPs. A config that would not fit fails here, not on the slice.

  python tpu/aot_compile.py --config configs/opt_125m.py:softmax1 --topology v5e:2x4
  python tpu/aot_compile.py --config configs/opt_1_3b.py:softmax1 --topology v5e:4x8
Topology names: "v5e:2x4" (v5e-8), "v5e:4x8" (v5e-32), "v4:2x2x4" (v4-32), "v5p:2x2x4", ...
"""
import os
import sys

# CPU for everything that is not the TPU compile (libtpu probes for a TPU at backend start).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<preset>.py:<variant>")
_TOPOLOGY = flags.DEFINE_string("topology", "v5e:2x4", "TPU topology name, e.g. v5e:2x4")
_CHIP_CONFIG = flags.DEFINE_string("chip_config", "default", "get_topology_desc chip_config_name")
flags.mark_flags_as_required(["config"])


def compile_for_topology(config, topology: str, chip_config: str = "default") -> dict:
  """Compiles config's train step for `topology`; returns per-device memory and cost figures."""
  import jax
  from jax.experimental import topologies

  from outeffhop_jax.train import checks, setup as setup_lib

  topo = topologies.get_topology_desc(topology_name=topology, platform="tpu",
                                      chip_config_name=chip_config)
  devices = topo.devices
  checks.validate(config, len(devices))
  mesh = setup_lib.mesh_from_config(config, devices)
  setup = setup_lib.build(config, mesh)
  abs_rest = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          setup.abstract_rest, setup.rest_shardings)
  batch = setup_lib.abstract_batch(setup, int(config.train.global_batch_size))
  step = setup_lib.jit_train_step(setup)
  lowered = step.lower(setup.abstract_state, abs_rest, batch)
  compiled = lowered.compile()
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  fields = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
            "temp_size_in_bytes", "generated_code_size_in_bytes")
  memory = {f: int(getattr(mem, f, 0) or 0) for f in fields}
  # Donated state aliases its output: live peak ~ arguments + outputs - aliased + temporaries.
  memory["peak_estimate_bytes"] = (memory["argument_size_in_bytes"] +
                                   memory["output_size_in_bytes"] -
                                   memory["alias_size_in_bytes"] + memory["temp_size_in_bytes"])
  return {
      "topology": topology,
      "device_kind": getattr(devices[0], "device_kind", "?"),
      "num_devices": len(devices),
      "mesh": dict(mesh.shape),
      "parameters": setup_lib.param_count(setup.abstract_params),
      "global_batch": int(config.train.global_batch_size),
      "memory_per_device": memory,
      "flops_per_device": float(cost.get("flops", 0.0)) if cost else 0.0,
      "bytes_accessed_per_device": float(cost.get("bytes accessed", 0.0)) if cost else 0.0,
      "unsplit": setup.unsplit,
  }


def _gib(n: int) -> str:
  return f"{n / 2**30:.3f} GiB"


def main(argv):
  del argv
  r = compile_for_topology(_CONFIG.value, _TOPOLOGY.value, _CHIP_CONFIG.value)
  print(f"topology {r['topology']} ({r['num_devices']} x {r['device_kind']}), mesh {r['mesh']}, "
        f"{r['parameters']:,} parameters, global batch {r['global_batch']}")
  for k, v in r["memory_per_device"].items():
    print(f"  {k:32s} {_gib(v)}")
  print(f"  flops per device per step        {r['flops_per_device']:.4e}")
  print(f"  bytes accessed per device        {r['bytes_accessed_per_device']:.4e}")


if __name__ == "__main__":
  app.run(main)
