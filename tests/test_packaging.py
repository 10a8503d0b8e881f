"""What an installed (non-editable) package carries: every data file the report reads."""
import fnmatch

import tomllib

from moe_core import paths


def test_the_wheel_carries_every_calibration_file_the_report_quotes():
    setup = tomllib.loads((paths.CHECKOUT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setup["package-data"]["moe_core.analysis"]
    quoted = [value for name, value in vars(paths).items() if name.startswith("CALIBRATION_")]
    assert len(quoted) >= 4
    for path in quoted:
        assert path.is_file(), path  # committed beside the code
        relative = path.relative_to(paths.PACKAGE_DIR / "analysis").as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), (
            f"{relative} is not in [tool.setuptools.package-data] moe_core.analysis")
