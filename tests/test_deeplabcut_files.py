"""The HDF files oodpose writes in DeepLabCut's layout read under DeepLabCut's pandas (2.x) as under 3.x."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import tables
from test_reliability import cell

from oodpose.data.labels import PANDAS_TABLE_VERSION
from oodpose.evaluate import evaluate
from oodpose.train import train


def test_label_files_carry_the_version_stamp_pandas_2_reads_them_by(synthetic_dataset):
    """Before: pandas 3 left the stamp out, and pandas 2.3.3 failed on the synthetic labels."""
    with tables.open_file(synthetic_dataset / "CollectedData_synthetic.h5") as h5:
        assert h5.root.df_with_missing._v_attrs.pandas_version == PANDAS_TABLE_VERSION
    assert pd.read_hdf(synthetic_dataset / "CollectedData_synthetic.h5").shape[1] == 44


READ_UNDER_PANDAS_2 = textwrap.dedent(
    """
    import json, sys
    import pandas as pd
    assert pd.__version__.startswith("2."), pd.__version__
    out = {}
    for path in sys.argv[1:]:
        frame = pd.read_hdf(path)
        out[path] = {"shape": list(frame.shape), "sum": float(frame.sum(numeric_only=True).sum())}
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="session")
def pandas_2(tmp_path_factory):
    """A small environment with DeepLabCut 3's pandas (< 3) and tables; skipped where pip cannot reach them."""
    env = tmp_path_factory.mktemp("pandas2")
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    python = env / "bin" / "python"
    pip = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--timeout", "10", "--retries", "1", "pandas>=2,<3", "tables"],
        capture_output=True,
        text=True,
    )
    if pip.returncode:
        pytest.skip(f"pandas < 3 could not be installed: {pip.stderr.strip().splitlines()[-1:]}")
    return python


@pytest.mark.slow
def test_every_deeplabcut_file_of_a_run_reads_under_pandas_2(pandas_2, synthetic_dataset, synthetic_cache, tmp_path):
    folder = tmp_path / "cell"
    train(cell(synthetic_cache, folder))
    evaluate(folder, synthetic_cache, folder / "predictions.h5", folder / "metrics.csv", device="cpu")
    files = [
        synthetic_dataset / "CollectedData_synthetic.h5",
        synthetic_dataset / "Horsescale.h5",
        folder / "predictions.h5",
    ]
    read = subprocess.run([pandas_2, "-c", READ_UNDER_PANDAS_2, *map(str, files)], capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    seen = json.loads(read.stdout)
    for path in files:
        frame = pd.read_hdf(path)
        assert seen[str(path)]["shape"] == list(frame.shape)
        assert seen[str(path)]["sum"] == pytest.approx(float(frame.sum(numeric_only=True).sum()))
