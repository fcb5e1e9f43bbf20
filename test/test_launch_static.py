"""The launch file, the YAML and the launcher agree (launch/launch_ros cannot run here).

The launch file is parsed with ``ast``: every ``Node(...)`` must name a console script of
setup.py and a node block of the YAML; the YAML's shared block must validate against the
config schema, and the launcher must build the same node set from the same file.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

from naf_ros import launcher
from naf_ros.config import ConfigError, config_from_dict

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "reacher_sim.launch.py"
YAML = REPO / "config" / "reacher_sim.yaml"


def console_scripts() -> dict[str, str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    scripts: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = re.fullmatch(r"\s*([\w\-]+)\s*=\s*([\w.]+):(\w+)\s*", node.value)
            if m:
                scripts[m.group(1)] = f"{m.group(2)}:{m.group(3)}"
    return scripts


def launch_nodes() -> list[dict[str, object]]:
    """Keyword arguments (constants only) of every ``Node(...)`` call in the launch file."""
    tree = ast.parse(LAUNCH.read_text())
    constants = {
        t.id: n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
        for t in n.targets
        if isinstance(t, ast.Name)
    }

    def value(v):
        if isinstance(v, ast.Constant):
            return v.value
        if isinstance(v, ast.Name) and v.id in constants:
            return constants[v.id]
        return v

    return [
        {k.arg: value(k.value) for k in node.keywords}
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Node"
    ]


def yaml_blocks() -> dict[str, dict]:
    return launcher.read_params_file(YAML)


def test_launch_file_is_valid_python_with_entry_point():
    tree = ast.parse(LAUNCH.read_text())
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs
    imports = {
        alias.name
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom)
        for alias in n.names
        if n.module in ("launch", "launch.actions", "launch_ros.actions")
    }
    assert {"LaunchDescription", "DeclareLaunchArgument", "Node"} <= imports


def test_every_node_is_a_console_script_and_in_the_yaml():
    scripts = console_scripts()
    blocks = yaml_blocks()
    nodes = launch_nodes()
    assert {n["executable"] for n in nodes} == set(launcher.NODES)
    for node in nodes:
        assert node.get("package") == "naf_ros"
        exe = node["executable"]
        assert isinstance(exe, str) and exe in scripts, f"{exe} is not a console script"
        assert scripts[exe] == f"{launcher.NODE_MODULES[exe]}:main"
        assert node.get("name") in blocks, f"node {node.get('name')} has no block in the YAML"
        assert "parameters" in node


def test_launch_arguments_declared():
    tree = ast.parse(LAUNCH.read_text())
    declared = {
        n.args[0].value
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and getattr(n.func, "id", None) == "DeclareLaunchArgument"
        and n.args
        and isinstance(n.args[0], ast.Constant)
    }
    used = set(re.findall(r'LaunchConfiguration\("(\w+)"\)', LAUNCH.read_text()))
    assert {"mode", "exploration", "model", "namespace", "controller_name", "arms"} <= declared
    assert used <= declared, f"used but not declared: {used - declared}"


def test_yaml_shared_block_validates_and_matches_node_defaults():
    raw = yaml.safe_load(YAML.read_text())
    assert "/**" in raw and all(k.startswith("/**") for k in raw), "blocks must match any ns"
    shared = yaml_blocks()["/**"]
    cfg = launcher.effective_config(shared, {})
    assert cfg.env.id == "NafRos/Reacher3DOFFixed-v0"
    sections = {k: v for k, v in shared.items() if isinstance(v, dict)}
    config_from_dict(sections)  # the same check the nodes' declare_config makes
    for name in launcher.NODES:
        assert name in yaml_blocks(), f"{name} missing from the YAML"


def test_launcher_builds_the_same_graph(tmp_path):
    args = launcher.build_parser().parse_args(
        [
            "--arms",
            "2",
            "--run-dir",
            str(tmp_path),
            "--set",
            "agent.lr=0.01",
            "--set",
            "naf_policy.wait_for_learner=0.5",
            "--controller-name",
            "my_ctrl",
        ]
    )
    launch = launcher.Launch(args)
    labels = [c.label for c in launch.children]
    expected_shared = [n for n in launcher.NODES if n not in launcher.ARM_NODES]
    expected_shared = [n for n in expected_shared if launcher.node_available(n)]
    assert labels == [
        "arm0/sim_bridge",
        "arm0/naf_policy",
        "arm1/sim_bridge",
        "arm1/naf_policy",
        *expected_shared,
    ]
    clocks = []
    for child in launch.children:
        cmd = child.args
        assert cmd[:3] == [sys.executable, "-m", launcher.NODE_MODULES[child.node]]
        files = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--params-file"]
        assert files[0] == str(YAML) and len(files) == 2
        # The override file is keyed by the fully qualified name so it beats /**/<node>.
        override = yaml.safe_load(Path(files[1]).read_text())
        fqn = f"/{child.namespace}/{child.node}" if child.namespace else f"/{child.node}"
        assert list(override) == [fqn]
        params = override[fqn]["ros__parameters"]
        assert params["agent"]["lr"] == 0.01
        assert params["train"]["run_dir"] == str(tmp_path.resolve())
        assert ("wait_for_learner" in params) == (child.node == "naf_policy")
        if child.node in launcher.ARM_NODES:
            assert f"__ns:=/{child.namespace}" in cmd
            assert params["controller_name"] == "my_ctrl"
            assert params["arm_index"] == int(child.namespace[-1])
        if child.node == "sim_bridge":
            clocks.append(params["publish_clock"])
    assert clocks == [True, False]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "agent.lr=-1"], "agent.lr"),
        (["--set", "agent.nope=1"], "agent.nope"),
        (["--set", "bogus"], "overrides look like"),
        (["--set", "naf_policy.exploration.kind=wild"], "exploration.kind"),
        (["--arms", "0"], "--arms"),
    ],
)
def test_launcher_config_errors_are_one_line(argv, message, tmp_path, capsys):
    code = launcher.main([*argv, "--run-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_parse_set_forms():
    assert launcher.parse_set("agent.hidden=[8, 8]") == (None, "agent.hidden", [8, 8])
    assert launcher.parse_set("naf_policy.mode=realtime") == ("naf_policy", "mode", "realtime")
    assert launcher.parse_set("learner.agent.lr=1e-4") == ("learner", "agent.lr", 1e-4)
    with pytest.raises(ConfigError):
        launcher.parse_set("agent=1")


def test_respawn_restarts_a_crashing_node_up_to_the_limit(tmp_path, capsys):
    """--respawn: a node that keeps dying is restarted --max-restarts times, then reported."""
    from support.ros import allocate_domain

    with allocate_domain() as domain:
        args = launcher.build_parser().parse_args(
            ["--run-dir", str(tmp_path), "--domain-id", str(domain), "--respawn",
             "--max-restarts", "2", "--quiet"]
        )  # fmt: skip
        launch = launcher.Launch(args)
        crash = [sys.executable, "-c", "import sys; sys.exit(3)"]
        finish = [sys.executable, "-c", "import time; time.sleep(3.0)"]
        for child in launch.children:
            child.args = finish if child.node == "naf_policy" else crash
        launch.children = [c for c in launch.children if c.node in ("naf_policy", "sim_bridge")]
        code = launch.run()
    out = capsys.readouterr()
    bridge = next(c for c in launch.children if c.node == "sim_bridge")
    assert bridge.restarts == 2
    assert "restart 2/2" in out.out
    assert code == 1 and "sim_bridge exited with 3" in out.err
