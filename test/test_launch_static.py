"""The launch file, the YAML and the launcher agree (launch/launch_ros cannot run here).

The launch file is parsed with ``ast``: every ``Node(...)`` must name a console script of
setup.py and a node block of the YAML; the YAML's shared block must validate against the
config schema, and the launcher must build the same node set from the same file. The launch
file's node-building function is also run, with stand-ins for ``launch``/``launch_ros``
that record each ``Node(...)`` call, for several argument combinations.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import types
from pathlib import Path

import pytest
import yaml

from naf_ros.bringup import launcher
from naf_ros.bringup.params import (
    ARM_NODES,
    DESCRIPTION_NODE,
    NODES,
    effective_config,
    parse_set,
    read_params_file,
)
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
    return read_params_file(YAML)


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
    assert {n["executable"] for n in nodes} == set(NODES)
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
    cfg = effective_config(shared, {})
    assert cfg.env.id == "NafRos/Reacher3DOFFixed-v0"
    sections = {k: v for k, v in shared.items() if isinstance(v, dict)}
    config_from_dict(sections)  # the same check the nodes' declare_config makes
    for name in NODES:
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
    expected_shared = [n for n in NODES if n not in (*ARM_NODES, DESCRIPTION_NODE)]
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
        if child.node in ARM_NODES:
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
    assert parse_set("agent.hidden=[8, 8]") == (None, "agent.hidden", [8, 8])
    assert parse_set("naf_policy.mode=realtime") == ("naf_policy", "mode", "realtime")
    assert parse_set("learner.agent.lr=1e-4") == ("learner", "agent.lr", 1e-4)
    with pytest.raises(ConfigError):
        parse_set("agent=1")


# --- the launch file evaluated with stand-ins for launch / launch_ros ---------------------------
class FakeNode:
    """``launch_ros.actions.Node``: keeps the keyword arguments it was built with."""

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs

    def parameters(self) -> dict:
        """The parameter dicts merged in order (later wins, as launch_ros applies them)."""
        merged: dict = {}
        for item in self.kwargs["parameters"][1:]:
            merged.update(item)
        return merged


class FakeDeclare:
    def __init__(self, name: str, default_value=None, description: str = "") -> None:
        self.name, self.default_value, self.description = name, default_value, description


class FakeOpaque:
    def __init__(self, function) -> None:
        self.function = function


class FakeConfiguration:
    """``LaunchConfiguration``: ``perform`` reads the evaluated argument from the context."""

    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, context) -> str:
        return context.launch_configurations[self.name]


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


@pytest.fixture
def launch_file(monkeypatch):
    """The launch file imported against stand-in ``launch`` / ``launch_ros`` modules."""
    fakes = {
        "launch": _module("launch", LaunchDescription=lambda entities: entities),
        "launch.actions": _module(
            "launch.actions", DeclareLaunchArgument=FakeDeclare, OpaqueFunction=FakeOpaque
        ),
        "launch.substitutions": _module(
            "launch.substitutions",
            LaunchConfiguration=FakeConfiguration,
            PathJoinSubstitution=lambda parts: ("path-join", parts),
        ),
        "launch_ros": _module("launch_ros"),
        "launch_ros.actions": _module("launch_ros.actions", Node=FakeNode),
        "launch_ros.substitutions": _module(
            "launch_ros.substitutions", FindPackageShare=lambda pkg: ("share", pkg)
        ),
    }
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("reacher_sim_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluate(module, **arguments: str) -> list[FakeNode]:
    """The nodes the launch file builds for ``ros2 launch ... key:=value`` arguments."""
    entities = module.generate_launch_description()
    declared = {e.name: e.default_value for e in entities if isinstance(e, FakeDeclare)}
    unknown = set(arguments) - set(declared)
    assert not unknown, f"not declared: {unknown}"
    context = types.SimpleNamespace(
        launch_configurations={**declared, "params_file": str(YAML), **arguments}
    )
    (opaque,) = [e for e in entities if isinstance(e, FakeOpaque)]
    nodes = opaque.function(context)
    for node in nodes:
        assert node.kwargs["package"] == "naf_ros"
        assert node.kwargs["parameters"][0] == str(YAML)  # the YAML first, overrides after
        assert "remappings" not in node.kwargs  # relative names + namespace, no remaps
    return nodes


def by_label(nodes: list[FakeNode]) -> dict[str, FakeNode]:
    out = {}
    for node in nodes:
        ns = node.kwargs.get("namespace") or ""
        out[f"{ns}/{node.kwargs['name']}" if ns else node.kwargs["name"]] = node
    return out


SHARED = ["learner", "dynamics_fitter", "ilqg_explorer"]


def test_launch_defaults_one_simulated_arm_without_namespace(launch_file):
    nodes = by_label(evaluate(launch_file))
    assert list(nodes) == ["sim_bridge", "naf_policy", *SHARED]
    for label, node in nodes.items():
        assert node.kwargs["executable"] == node.kwargs["name"] == label
    bridge, policy = nodes["sim_bridge"].parameters(), nodes["naf_policy"].parameters()
    assert bridge == {"arm_index": 0, "controller_name": "effort_controller", "publish_clock": True}
    # The YAML's mode and reset_mode (service) stay in force: nothing overrides them.
    assert policy == {"arm_index": 0, "controller_name": "effort_controller", "use_sim_time": False}
    assert nodes["learner"].parameters() == {"use_sim_time": False}
    assert nodes["dynamics_fitter"].parameters() == {}


def test_launch_without_sim_resets_by_homing_in_realtime(launch_file):
    """sim:=false is a real arm: no bridge, and nobody would serve sim/reset."""
    nodes = by_label(evaluate(launch_file, sim="false", controller_name="arm_effort_controller"))
    assert list(nodes) == ["naf_policy", *SHARED]
    policy = nodes["naf_policy"].parameters()
    assert policy["reset_mode"] == "homing"
    assert policy["mode"] == "realtime"
    assert policy["controller_name"] == "arm_effort_controller"
    for name in SHARED:  # the whole graph runs in the same mode
        assert nodes[name].parameters()["mode"] == "realtime"
        assert "reset_mode" not in nodes[name].parameters()


def test_launch_reset_mode_and_mode_arguments_win_over_the_sim_default(launch_file):
    nodes = by_label(evaluate(launch_file, sim="false", reset_mode="service", mode="lockstep"))
    policy = nodes["naf_policy"].parameters()
    assert (policy["reset_mode"], policy["mode"]) == ("service", "lockstep")
    nodes = by_label(evaluate(launch_file, reset_mode="homing", mode="realtime"))
    assert "sim_bridge" in nodes
    policy = nodes["naf_policy"].parameters()
    assert (policy["reset_mode"], policy["mode"]) == ("homing", "realtime")
    assert "reset_mode" not in nodes["sim_bridge"].parameters()


def test_launch_arms_namespaces_record_and_sim_time(launch_file):
    nodes = by_label(
        evaluate(launch_file, arms="2", namespace="/robot/", record="exp", use_sim_time="true")
    )
    assert list(nodes) == [
        "robot0/sim_bridge",
        "robot0/naf_policy",
        "robot0/bag_recorder",
        "robot1/sim_bridge",
        "robot1/naf_policy",
        "robot1/bag_recorder",
        *SHARED,
    ]
    assert [nodes[f"robot{i}/sim_bridge"].parameters()["publish_clock"] for i in (0, 1)] == [
        True,
        False,
    ]
    for i in (0, 1):
        for node in ("sim_bridge", "naf_policy", "bag_recorder"):
            params = nodes[f"robot{i}/{node}"].parameters()
            assert params["arm_index"] == i and params["bag.record"] == "exp"
        assert nodes[f"robot{i}/naf_policy"].parameters()["use_sim_time"] is True
    assert nodes["learner"].parameters()["use_sim_time"] is True
    assert all(not nodes[name].kwargs.get("namespace") for name in SHARED)
    single = by_label(evaluate(launch_file, namespace="/robot/"))
    assert "robot/naf_policy" in single and "robot/sim_bridge" in single
    plain = by_label(evaluate(launch_file, arms="2"))
    assert "arm0/naf_policy" in plain and "arm1/sim_bridge" in plain


@pytest.mark.parametrize(
    "arguments",
    [{"arms": "0"}, {"reset_mode": "reboot"}, {"mode": "turbo"}, {"exploration": "wild"}],
)
def test_launch_rejects_bad_arguments(launch_file, arguments):
    with pytest.raises(ValueError):
        evaluate(launch_file, **arguments)


def _launcher_graph(tmp_path, argv: list[str]) -> dict[str, dict]:
    """Label -> flattened override parameters of each process the embedded launcher builds."""
    args = launcher.build_parser().parse_args([*argv, "--run-dir", str(tmp_path)])
    out = {}
    for child in launcher.Launch(args).children:
        files = [child.args[i + 1] for i, a in enumerate(child.args) if a == "--params-file"]
        block = next(iter(yaml.safe_load(Path(files[1]).read_text()).values()))
        out[child.label] = dict(_flat(block["ros__parameters"]))
    return out


def _flat(d: dict, prefix: str = ""):
    for key, value in d.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize(
    "launch_args, launcher_args",
    [
        ({}, []),
        (
            {"sim": "false", "controller_name": "arm_ctrl"},
            ["--skip", "sim_bridge", "--controller-name", "arm_ctrl"],
        ),
        (
            {"sim": "false", "reset_mode": "service", "mode": "lockstep"},
            ["--skip", "sim_bridge", "--reset-mode", "service", "--mode", "lockstep"],
        ),
        ({"arms": "2", "record": "exp"}, ["--arms", "2", "--record", "exp"]),
    ],
)
def test_launch_file_and_launcher_agree(launch_file, tmp_path, launch_args, launcher_args):
    """Same nodes, namespaces and per-node choices from ``ros2 launch`` and ``naf-ros launch``."""
    nodes = by_label(evaluate(launch_file, **launch_args))
    graph = _launcher_graph(tmp_path, launcher_args)
    available = {n for n in nodes if launcher.node_available(nodes[n].kwargs["executable"])}
    assert available == set(graph)
    yaml_mode = read_params_file(YAML)["/**"]["mode"]
    for label in available:
        ours, theirs = nodes[label].parameters(), graph[label]
        assert ours.get("mode", yaml_mode) == theirs["mode"], label
        for key in ("reset_mode", "arm_index", "publish_clock", "controller_name", "bag.record"):
            if key in ours or key in theirs:
                default = "effort_controller" if key == "controller_name" else None
                assert ours.get(key, default) == theirs.get(key, default), (label, key)


def test_robot_description_is_latched_per_arm_and_at_the_root(launch_file, tmp_path):
    """``--robot-description FILE`` / ``robot_description:=FILE``: a description publisher
    in every arm's namespace and one at the root (the shared learning nodes' namespace),
    each latching FILE, and every node takes its arm from the topic."""
    from naf_ros.envs.arm import asset_path

    urdf = tmp_path / "arm.urdf"  # a real arm: the launcher builds it before starting nodes
    urdf.write_text(asset_path("arm7dof.urdf").read_text())
    argv = ["--arms", "2", "--robot-description", str(urdf), "--set", "env.id=NafRos/Arm7Reach-v0"]
    graph = _launcher_graph(tmp_path / "run", argv)
    nodes = by_label(evaluate(launch_file, arms="2", robot_description=str(urdf)))
    publishers = ["arm0/description_publisher", "arm1/description_publisher", DESCRIPTION_NODE]
    for labels in (list(graph), list(nodes)):
        assert [label for label in labels if label.endswith(DESCRIPTION_NODE)] == publishers
    for label in publishers:
        assert graph[label]["file"] == str(urdf.resolve())
        assert nodes[label].parameters()["file"] == str(urdf)
    for label in ("arm0/sim_bridge", "arm1/naf_policy", "learner"):
        assert graph[label]["arm.model"] == "robot_description"
        assert nodes[label].parameters()["arm.model"] == "robot_description"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--robot-description", "/nonexistent/arm.urdf"], "--robot-description"),
        # the YAML's planar reacher has its own arm
        (["--robot-description", __file__], "arm.model: the planar 3-DOF reacher"),
        # an arm environment: the file is checked before any node starts
        (
            ["--robot-description", __file__, "--set", "env.id=NafRos/Arm7Reach-v0"],
            "neither a file path nor XML",
        ),
        (
            ["--set", "env.id=NafRos/Arm7Reach-v0", "--set", "arm.model=/nonexistent/arm.urdf"],
            "cannot read the arm model",
        ),
        (
            ["--set", "env.id=NafRos/Arm7Reach-v0", "--set", "arm.tip=no_such_site"],
            "tip 'no_such_site'",
        ),
    ],
)
def test_robot_description_errors_are_one_line(argv, message, tmp_path, capsys):
    code = launcher.main([*argv, "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_reset_modes_match_the_policy_node():
    """The launcher and the launch file offer the modes the policy node accepts (the launch
    file runs without this package's modules on its path, so it keeps a copy; held here)."""
    from naf_ros.ros.names import RESET_MODES as modes
    from naf_ros.ros.policy import parameters

    assert launcher.RESET_MODES is modes and parameters.RESET_MODES is modes
    launch_tree = ast.parse(LAUNCH.read_text())
    (launch_modes,) = [
        ast.literal_eval(n.value)
        for n in launch_tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "RESET_MODES"
    ]
    assert launch_modes == modes


@pytest.mark.parametrize(
    "argv, mode, reset_mode",
    [
        (["--skip", "sim_bridge"], "realtime", "homing"),
        (["--skip", "sim_bridge", "--set", "naf_policy.reset_mode=service"], "realtime", "service"),
        (["--skip", "sim_bridge", "--set", "reset_mode=service"], "realtime", "service"),
        (["--skip", "sim_bridge", "--mode", "lockstep"], "lockstep", "homing"),
        (["--reset-mode", "homing", "--mode", "realtime"], "realtime", "homing"),
        ([], "lockstep", None),
    ],
)
def test_launcher_real_arm_defaults(tmp_path, argv, mode, reset_mode):
    """--skip sim_bridge implies homing and realtime; what the user sets wins."""
    policy = _launcher_graph(tmp_path, argv)["naf_policy"]
    assert policy["mode"] == mode
    assert policy.get("reset_mode") == reset_mode


def test_launcher_splits_the_graph_between_an_arm_host_and_a_learner_host(tmp_path):
    """``--skip`` leaves any node out, the policy included (a learner host runs no policy,
    which would otherwise drive the other host's arm over the network), and
    ``--discovery-range SUBNET`` reaches every node's environment."""

    def labels(argv: list[str]) -> tuple[list[str], dict[str, str]]:
        args = launcher.build_parser().parse_args(["--run-dir", str(tmp_path), *argv])
        launch = launcher.Launch(args)
        return [c.label for c in launch.children], launch.env

    learner_host, env = labels(
        ["--skip", "sim_bridge", "--skip", "naf_policy", "--discovery-range", "SUBNET"]
    )
    assert "naf_policy" not in learner_host and "learner" in learner_host
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"
    arm_host, env = labels(["--skip", "learner", "--skip", "dynamics_fitter"])
    assert arm_host[:2] == ["sim_bridge", "naf_policy"] and "learner" not in arm_host
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
