"""`python -m outeffhop_jax.viz`: every experiment writes non-empty PNGs; bad flags fail clearly."""
import os
import subprocess
import sys

import pytest

from outeffhop_jax.viz import cli

PNG = b"\x89PNG\r\n\x1a\n"
TINY = ["--betas", "2,16", "--memories", "4", "--queries", "3", "--resolution", "6", "--steps", "2",
        "--num-memories", "2,8", "--dim", "4", "--dpi", "40",
        "--normalizers", "softmax,softmax1"]  # fewer compiles; other tests cover sparse
EXPECTED = {"landscape": {"landscape_contour", "landscape_surface", "landscape_digits_plane"},
            "gallery": {"gallery"}, "capacity": {"capacity"}, "noop": {"noop"},
            "energy-descent": {"energy_descent"}}


@pytest.mark.parametrize("experiment", sorted(EXPECTED))
def test_experiment_writes_pngs(experiment, tmp_path, capsys):
  paths = cli.main([experiment, "--out", str(tmp_path), *TINY])
  assert {p.stem for p in paths} == EXPECTED[experiment]
  assert {p.stem for p in tmp_path.iterdir()} == EXPECTED[experiment]
  for p in paths:
    data = p.read_bytes()
    assert data.startswith(PNG) and len(data) > 1000
  assert experiment in capsys.readouterr().out


def test_all_is_every_experiment():
  assert set(cli.EXPERIMENTS) == set(EXPECTED)
  assert "all" in cli.build_parser()._actions[1].choices


@pytest.mark.parametrize("argv, message", [
    (["nonsense"], "invalid choice: 'nonsense'"),
    (["noop", "--normalizers", "softmax,sofmax1"], "unknown normalizer spec 'sofmax1'"),
    (["noop", "--normalizers", "clipped:-0.1:1"], "no Hopfield energy"),
    (["capacity", "--betas", "2,x"], "comma-separated numbers"),
    (["capacity", "--betas", "-1"], "betas must be"),
    (["capacity", "--dim", "1"], "--dim must be >= 2"),
    (["gallery", "--memories", "65"], "--memories must be <= 64"),
])
def test_bad_arguments_exit_with_a_message(argv, message, tmp_path, capsys):
  with pytest.raises(SystemExit) as exc:
    cli.main([*argv, "--out", str(tmp_path)])
  assert exc.value.code == 2
  assert message in capsys.readouterr().err
  assert not list(tmp_path.iterdir())  # failed before writing anything


def test_module_entry_point():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "outeffhop_jax.viz", "bogus"], capture_output=True,
                        text=True, env=env, timeout=120)
  assert proc.returncode == 2 and "invalid choice" in proc.stderr
