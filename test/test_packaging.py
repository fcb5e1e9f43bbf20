"""ament_python packaging: package.xml validates, colcon builds it, the ament index finds it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NODES = ("sim_bridge", "naf_policy", "dynamics_fitter", "ilqg_explorer", "learner")


def test_package_xml_is_valid_format_3():
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(REPO / "package.xml"))
    pkg.validate()
    assert pkg.package_format == 3 and pkg.name == "naf_ros"
    assert pkg.get_build_type() == "ament_python"
    assert all("@" in m.email and "." in m.email.split("@")[1] for m in pkg.maintainers)
    assert (REPO / "resource" / "naf_ros").is_file()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """colcon build of a copy of the package (build/install/log kept out of the checkout)."""
    colcon = shutil.which("colcon") or str(Path(sys.executable).parent / "colcon")
    work = tmp_path_factory.mktemp("colcon")
    src = work / "src" / "naf_ros"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "build",
            "install",
            "log",
            "runs",
            "bench_results",
            "__pycache__",
            ".pytest_cache",
            ".ruff_cache",
        ),
    )
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        [
            colcon,
            "build",
            "--base-paths",
            "src",
            "--build-base",
            "build",
            "--install-base",
            "install",
            "--event-handlers",
            "console_direct-",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return work / "install"


def test_colcon_install_space_is_found_through_the_ament_index(installed):
    script = (
        "from ament_index_python.packages import get_package_share_directory as s, "
        "get_package_prefix as p; print(s('naf_ros')); print(p('naf_ros'))"
    )
    proc = subprocess.run(
        ["bash", "-c", f'source {installed}/setup.bash && cd / && {sys.executable} -c "{script}"'],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH")},
    )
    assert proc.returncode == 0, proc.stderr
    share, prefix = proc.stdout.split()
    assert Path(share) == installed / "naf_ros" / "share" / "naf_ros"
    assert (Path(share) / "launch" / "reacher_sim.launch.py").is_file()
    assert (Path(share) / "config" / "reacher_sim.yaml").is_file()
    assert (Path(share) / "package.xml").is_file()
    for node in NODES:
        assert (Path(prefix) / "lib" / "naf_ros" / node).is_file(), node


def test_installed_package_imports_from_install_space(installed):
    proc = subprocess.run(
        [
            "bash",
            "-c",
            f"source {installed}/setup.bash && cd / && {sys.executable} -c "
            '"import naf_ros.envs.task as t; print(t.__file__); '
            'print(t.ArmModel.from_mjcf().joint_names)"',
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert proc.returncode == 0, proc.stderr
    assert str(installed) in proc.stdout and "joint1" in proc.stdout
