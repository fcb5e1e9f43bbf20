"""ament_python packaging: package.xml validates and declares what the code imports, colcon
builds it, the ament index finds it."""

import ast
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


# Third-party top-level module imported under naf_ros/ or launch/ -> the package.xml key
# that provides it on a ROS 2 install (rosdep resolves the python3-* keys).
MODULE_KEYS = {
    "rclpy": "rclpy",
    "rcl_interfaces": "rcl_interfaces",
    "builtin_interfaces": "builtin_interfaces",
    "lifecycle_msgs": "lifecycle_msgs",
    "std_msgs": "std_msgs",
    "std_srvs": "std_srvs",
    "sensor_msgs": "sensor_msgs",
    "rosgraph_msgs": "rosgraph_msgs",
    "diagnostic_msgs": "diagnostic_msgs",
    "visualization_msgs": "visualization_msgs",
    "geometry_msgs": "geometry_msgs",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "numpy": "python3-numpy",
    "yaml": "python3-yaml",
    "matplotlib": "python3-matplotlib",
    "torch": "python3-pytorch-pip",
    "mujoco": "python3-mujoco-pip",
    "gymnasium": "python3-gymnasium-pip",
}
# Imported, but rosdep has no key for it: requirements.txt installs it (bag.py only).
NO_ROSDEP_KEY = {"rosbags"}
# What rosdep can resolve, written down independently of the table above: ROS 2 packages
# (Kilted) and rosdep keys from rosdistro's base/python lists. There is no ROS package
# rclpy_lifecycle: Python lifecycle nodes are part of rclpy.
KNOWN_KEYS = {
    "ament_copyright",
    "ament_flake8",
    "ament_pep257",
    "ament_index_python",
    "builtin_interfaces",
    "diagnostic_msgs",
    "geometry_msgs",
    "launch",
    "launch_ros",
    "lifecycle_msgs",
    "pinocchio",
    "rcl_interfaces",
    "rclpy",
    "rosbag2_py",
    "rosgraph_msgs",
    "sensor_msgs",
    "std_msgs",
    "std_srvs",
    "visualization_msgs",
    "python3-gymnasium-pip",
    "python3-matplotlib",
    "python3-mujoco-pip",
    "python3-numpy",
    "python3-pytest",
    "python3-pytorch-pip",
    "python3-yaml",
}


def imported_modules() -> dict[str, str]:
    """Third-party top-level module -> one file importing it (naf_ros/ and launch/)."""
    found: dict[str, str] = {}
    files = sorted((REPO / "naf_ros").rglob("*.py")) + sorted((REPO / "launch").glob("*.py"))
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "naf_ros":
                    found.setdefault(top, str(path.relative_to(REPO)))
    return found


def dependency_problems(xml_text: str) -> list[str]:
    """What is wrong between package.xml and the imports (empty when nothing is)."""
    from catkin_pkg.package import parse_package_string

    pkg = parse_package_string(xml_text)
    declared = {
        d.name
        for group in (
            pkg.build_depends,
            pkg.buildtool_depends,
            pkg.build_export_depends,
            pkg.exec_depends,
            pkg.test_depends,
            pkg.doc_depends,
        )
        for d in group
    }
    run_time = {d.name for d in pkg.exec_depends}
    problems = [f"{key}: not a ROS package or rosdep key" for key in sorted(declared - KNOWN_KEYS)]
    for module, where in sorted(imported_modules().items()):
        if module in NO_ROSDEP_KEY:
            continue
        key = MODULE_KEYS.get(module)
        if key is None:
            problems.append(f"{module} (imported in {where}): not in this test's table")
        elif key not in run_time:
            problems.append(f"{module} (imported in {where}): {key} is not an exec_depend")
    return problems


def test_package_xml_declares_what_the_code_imports():
    assert dependency_problems((REPO / "package.xml").read_text()) == []


def test_dependency_check_catches_unknown_keys_and_missing_imports():
    """The check itself: a key rosdep cannot resolve, and an import nothing declares."""
    text = (REPO / "package.xml").read_text()
    bad = text.replace(
        "<exec_depend>rclpy</exec_depend>",
        "<exec_depend>rclpy</exec_depend>\n  <exec_depend>rclpy_lifecycle</exec_depend>",
    ).replace("<exec_depend>python3-matplotlib</exec_depend>", "")
    problems = dependency_problems(bad)
    assert any(p.startswith("rclpy_lifecycle:") for p in problems), problems
    assert any(p.startswith("matplotlib ") for p in problems), problems


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
