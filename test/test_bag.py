"""Experience bags: recorded from real rollouts, read back by an independent MCAP reader.

The independent reader is the ``mcap`` + ``mcap_ros2`` packages (Foxglove's), which decode
CDR from the schema text stored in the file - not rosbags, which wrote it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

import naf_ros.envs  # noqa: F401  (registers the reacher)
from naf_ros.bag.format import (
    ARRAY_TYPE,
    JOINT_STATES_TOPIC,
    TARGET_TOPIC,
    TRANSITIONS_TOPIC,
    BagError,
)
from naf_ros.bag.offline import main
from naf_ros.bag.reader import read_transitions, replay_from_bags, warm_start_replay
from naf_ros.bag.writer import BagRecorder
from naf_ros.config import config_from_dict
from naf_ros.core.offline import train_offline
from naf_ros.core.replay import ReplayBuffer
from naf_ros.envs import REACHER_FIXED_ID
from naf_ros.ros.codec import encode_transition

OBS, ACT = 13, 3
COMMANDS_TOPIC = "/effort_controller/commands"
DT_NS = 20_000_000


def record_rollouts(path: Path, episodes: int, seed: int = 0) -> list:
    """Random-action rollouts of the gym reacher recorded the way a policy node would."""
    env = gym.make(REACHER_FIXED_ID)
    sim = env.unwrapped.sim
    names = sim.arm.joint_names
    rng = np.random.default_rng(seed)
    sent, seq, stamp = [], 0, 1_700_000_000_000_000_000
    with BagRecorder(path) as rec:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            rec.write_target(stamp, sim.target)
            t = 0
            while True:
                rec.write_joint_state(stamp, names, sim.joint_positions(), sim.joint_velocities())
                action = rng.uniform(-1.0, 1.0, ACT)
                command = env.unwrapped.command.command(action, sim.joint_positions())
                rec.write_command(stamp, command)
                next_obs, reward, terminated, truncated, _ = env.step(action)
                msg = encode_transition(
                    producer=0,
                    seq=seq,
                    episode=ep,
                    t=t,
                    obs=obs,
                    action=action,
                    reward=reward,
                    next_obs=next_obs,
                    terminal=terminated,
                    truncated=truncated,
                )
                rec.write_transition(msg, stamp)
                sent.append(msg)
                seq, t, stamp = seq + 1, t + 1, stamp + DT_NS
                obs = next_obs
                if terminated or truncated:
                    break
        # a joint state with NaN (allowed on /joint_states) survives as NaN
        rec.write_joint_state(stamp, names, [np.nan, 0.0, 0.0], [0.0, np.nan, 0.0])
    env.close()
    return sent


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "rollouts"
    sent = record_rollouts(path, episodes=4)
    return path, sent


def mcap_file(path: Path) -> Path:
    (file,) = path.glob("*.mcap")
    return file


def labels(msg) -> list[tuple[str, int, int]]:
    return [(d.label, int(d.size), int(d.stride)) for d in msg.layout.dim]


def test_independent_reader_sees_every_transition_bit_exact(bag):
    # Not rosbags (which wrote the bag): Foxglove's reader decodes CDR from the schema text.
    from mcap import reader as mcap_reader
    from mcap_ros2 import decoder as mcap_ros2_decoder

    path, sent = bag
    got, joint_states, commands, targets = [], [], [], []
    with open(mcap_file(path), "rb") as fh:
        reader = mcap_reader.make_reader(fh, decoder_factories=[mcap_ros2_decoder.DecoderFactory()])
        header = reader.get_header()
        assert header.profile == "ros2"
        summary = reader.get_summary()
        for channel in summary.channels.values():
            schema = summary.schemas[channel.schema_id]
            assert channel.message_encoding == "cdr" and schema.encoding == "ros2msg"
            assert "offered_qos_profiles" in channel.metadata
        for _, channel, message, decoded in reader.iter_decoded_messages():
            if channel.topic == TRANSITIONS_TOPIC:
                got.append((message.log_time, decoded))
            elif channel.topic == JOINT_STATES_TOPIC:
                joint_states.append(decoded)
            elif channel.topic == COMMANDS_TOPIC:
                commands.append(decoded)
            elif channel.topic == TARGET_TOPIC:
                targets.append(decoded)
    assert len(got) == len(sent) == 200
    for (_, dec), orig in zip(got, sent):
        assert labels(dec) == labels(orig)
        assert dec.layout.data_offset == 0
        assert np.asarray(dec.data, np.float64).tobytes() == np.asarray(orig.data).tobytes()
    seqs = []
    for _, dec in got:
        seq_dim = next(d for d in dec.layout.dim if d.label == "seq:scalar")
        seqs.append(int(dec.data[seq_dim.stride]))
    assert seqs == list(range(len(sent))), "sequence numbers must be contiguous"
    assert [t for t, _ in got] == sorted(t for t, _ in got)
    assert len(joint_states) == 201 and len(commands) == 200 and len(targets) == 4
    assert list(joint_states[0].name) == ["joint1", "joint2", "joint3"]
    last = joint_states[-1]
    assert np.isnan(last.position[0]) and np.isnan(last.velocity[1])
    assert last.header.stamp.sec > 1_600_000_000
    assert targets[0].point.x == pytest.approx(0.10) and targets[0].point.y == pytest.approx(0.2)


def test_our_reader_agrees(bag):
    path, sent = bag
    transitions = read_transitions(path, OBS, ACT)
    assert [t["seq"] for t in transitions] == list(range(len(sent)))
    for tr, orig in zip(transitions, sent):
        values = np.asarray(orig.data)
        np.testing.assert_array_equal(tr["obs"], values[8 : 8 + OBS])
        np.testing.assert_array_equal(tr["next_obs"], values[-OBS:])
    assert sum(t["truncated"] for t in transitions) == 4
    assert not any(t["terminal"] for t in transitions)
    assert read_transitions(mcap_file(path), OBS, ACT)[5]["seq"] == 5  # bare .mcap file too


def test_metadata_is_what_ros2_bag_info_reads(bag):
    path, _ = bag
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 8 and info["storage_identifier"] == "mcap"
    assert [(path / f).is_file() for f in info["relative_file_paths"]] == [True]
    topics = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    assert topics[TRANSITIONS_TOPIC]["message_count"] == 200
    assert topics[TRANSITIONS_TOPIC]["topic_metadata"]["type"] == ARRAY_TYPE
    assert topics[JOINT_STATES_TOPIC]["topic_metadata"]["type"] == "sensor_msgs/msg/JointState"
    assert topics[TARGET_TOPIC]["topic_metadata"]["type"] == "geometry_msgs/msg/PointStamped"
    assert info["message_count"] == sum(t["message_count"] for t in topics.values())
    for topic in topics.values():
        meta = topic["topic_metadata"]
        # Humble parses offered_qos_profiles as a YAML *string* (v9's list breaks it).
        assert isinstance(meta["offered_qos_profiles"], str)
        (qos,) = yaml.safe_load(meta["offered_qos_profiles"])
        assert qos["reliability"] == 1  # reliable, as the publishers
        # The type hash is the one the installed ROS 2 message package reports.
        pkg, _, name = meta["type"].split("/")
        described = Path(sys.prefix) / "share" / pkg / "msg" / f"{name}.json"
        if described.is_file():
            assert meta["type_description_hash"] in described.read_text()
    latched = yaml.safe_load(topics[TARGET_TOPIC]["topic_metadata"]["offered_qos_profiles"])
    assert latched[0]["durability"] == 1 and latched[0]["depth"] == 1  # transient local


def test_warm_start_fills_replay_with_exactly_the_bag(bag, tmp_path):
    path, sent = bag
    replay = ReplayBuffer(OBS, ACT, capacity=1000)
    assert warm_start_replay(replay, [path]) == len(sent) == len(replay)
    for i, orig in enumerate(sent):
        values = np.asarray(orig.data)
        np.testing.assert_array_equal(replay.obs[i], values[8 : 8 + OBS].astype(np.float32))
        np.testing.assert_array_equal(
            replay.action[i], values[8 + OBS : 8 + OBS + ACT].astype(np.float32)
        )
        assert replay.reward[i] == np.float32(values[8 + OBS + ACT])
        assert replay.step[i] == i % 50
    assert not replay.terminal[: len(sent)].any(), "time-limit truncation is not terminal"
    # A bad bag among good ones leaves the buffer untouched.
    fresh = ReplayBuffer(OBS, ACT, capacity=1000)
    with pytest.raises(BagError):
        warm_start_replay(fresh, [path, tmp_path / "missing"])
    assert len(fresh) == 0


def test_terminal_flag_is_kept(tmp_path):
    with BagRecorder(tmp_path / "b") as rec:
        for i, (term, trunc) in enumerate([(False, False), (True, False), (False, True)]):
            rec.write_transition(
                dict(producer=1, seq=i, episode=0, t=i, obs=np.zeros(OBS), action=np.zeros(ACT),
                     reward=0.0, next_obs=np.zeros(OBS), terminal=term, truncated=trunc),
                i,
            )  # fmt: skip
    replay = ReplayBuffer(OBS, ACT, capacity=10)
    assert warm_start_replay(replay, tmp_path / "b") == 3
    assert replay.terminal[:3].tolist() == [0.0, 1.0, 0.0]


def one_line_bag_error(path, obs=OBS, act=ACT) -> str:
    with pytest.raises(BagError) as err:
        read_transitions(path, obs, act)
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def copy_bag(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_truncated_bag(bag, tmp_path):
    path, _ = bag
    for frac in (0.3, 0.6, 0.95):
        bad = copy_bag(path, tmp_path / f"cut{frac}")
        data = mcap_file(bad).read_bytes()
        mcap_file(bad).write_bytes(data[: int(len(data) * frac)])
        assert str(bad) in one_line_bag_error(bad)


def test_corrupted_bytes_are_detected(bag, tmp_path):
    path, sent = bag
    bad = copy_bag(path, tmp_path / "flip")
    data = bytearray(mcap_file(bad).read_bytes())
    needle = np.float64(np.asarray(sent[17].data)[9]).tobytes()  # one obs value of seq 17
    at = bytes(data).find(needle)
    assert at > 0
    data[at] ^= 0x01  # a one-bit change in a mantissa: still a finite, plausible number
    mcap_file(bad).write_bytes(bytes(data))
    assert "checksum mismatch" in one_line_bag_error(bad)


def test_other_damage_is_one_line(bag, tmp_path):
    path, _ = bag
    assert "no such bag" in one_line_bag_error(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no metadata.yaml" in one_line_bag_error(empty)
    garbage = copy_bag(path, tmp_path / "garbage")
    mcap_file(garbage).write_bytes(b"not an mcap file at all" * 10)
    one_line_bag_error(garbage)
    meta = copy_bag(path, tmp_path / "meta")
    (meta / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed")
    assert "metadata.yaml" in one_line_bag_error(meta)
    future = copy_bag(path, tmp_path / "future")
    text = (future / "metadata.yaml").read_text()
    (future / "metadata.yaml").write_text(text.replace("version: 8", "version: 99"))
    one_line_bag_error(future)
    # Wrong dimensions for this task: decoding says which field.
    assert "obs: shape" in one_line_bag_error(path, obs=OBS + 1)


def test_schema_version_mismatch(bag, tmp_path):
    path, _ = bag
    other = copy_bag(path, tmp_path / "v2meta")
    text = (other / "metadata.yaml").read_text()
    (other / "metadata.yaml").write_text(
        text.replace("naf_ros.transition_schema: '1'", "naf_ros.transition_schema: '2'")
    )
    assert "transition schema version 2" in one_line_bag_error(other)
    # A v2 message inside a bag (e.g. from `ros2 bag record` of a newer node): per message.
    msg = encode_transition(
        producer=0, seq=0, episode=0, t=0, obs=np.zeros(OBS), action=np.zeros(ACT),
        reward=0.0, next_obs=np.zeros(OBS), terminal=False, truncated=False,
    )  # fmt: skip
    data = np.asarray(msg.data)
    data[0] = 2.0  # the version field
    msg.data = data.tolist()
    with pytest.raises(BagError, match="transition not recorded: CodecError: transition schema"):
        with BagRecorder(tmp_path / "v2") as rec:
            rec.write_transition(msg, 0)
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    t = ts.types
    raw = ts.serialize_cdr(
        t[ARRAY_TYPE](
            layout=t["std_msgs/msg/MultiArrayLayout"](
                dim=[
                    t["std_msgs/msg/MultiArrayDimension"](
                        label=d.label, size=d.size, stride=d.stride
                    )
                    for d in msg.layout.dim
                ],
                data_offset=0,
            ),
            data=np.asarray(msg.data),
        ),
        ARRAY_TYPE,
    )
    with Writer(tmp_path / "recorded", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection(TRANSITIONS_TOPIC, ARRAY_TYPE, typestore=ts)
        w.write(conn, 1, raw)
    assert "transition schema version 2.0, expected 1" in one_line_bag_error(tmp_path / "recorded")


def test_recorder_refuses_bad_input(tmp_path):
    rec = BagRecorder(tmp_path / "r")
    with pytest.raises(BagError, match="non-finite"):
        rec.write_transition(
            dict(producer=0, seq=0, episode=0, t=0, obs=np.full(OBS, np.nan), action=np.zeros(ACT),
                 reward=0.0, next_obs=np.zeros(OBS), terminal=False, truncated=False),
            0,
        )  # fmt: skip
    with pytest.raises(BagError, match="transition not recorded"):
        rec.write_transition({"seq": 1}, 0)
    with pytest.raises(ValueError, match="stamp_ns"):
        rec.write_command(-1, [0.0])
    rec.close()
    rec.close()
    with pytest.raises(BagError, match="closed"):
        rec.write_command(0, [0.0])
    assert read_transitions(tmp_path / "r", OBS, ACT) == []
    with pytest.raises(BagError, match="already exists"):
        BagRecorder(tmp_path / "r")


def test_train_offline_from_bag_only(tmp_path, monkeypatch):
    path = tmp_path / "offline"
    record_rollouts(path, episodes=6, seed=3)
    cfg = config_from_dict(
        {
            "agent": {"hidden": [64, 64], "batch_size": 64, "gamma": 0.5, "lr": 1e-3},
            "train": {"seed": 1},
        }
    )
    # No environment may be touched: offline means the bag is the only data source.
    monkeypatch.setattr(gym, "make", lambda *a, **k: pytest.fail("offline training made an env"))
    replay, added = replay_from_bags([path], cfg.agent.replay_capacity)
    summary = train_offline(cfg, replay, updates=400, run_dir=tmp_path / "run")
    monkeypatch.undo()
    assert added == len(replay) == 300
    assert summary["transitions"] == 300 and summary["updates"] == 400
    assert summary["loss_last"] < 0.5 * summary["loss_first"], summary
    assert json.loads((tmp_path / "run" / "offline_summary.json").read_text())["updates"] == 400
    # The checkpoint resumes in the online trainer (offline pre-training, online fine-tuning).
    from naf_ros.core.trainer import Trainer

    trainer = Trainer(cfg, run_dir=tmp_path / "run", log=None)
    trainer.load(tmp_path / "run" / "checkpoint.pt")
    assert trainer.agent.updates == 400 and len(trainer.replay) == 300
    trainer.env.close()
    trainer.eval_env.close()


def test_cli(bag, tmp_path, capsys):
    path, _ = bag
    args = [str(path), "--updates", "20", "--run-dir", str(tmp_path / "cli")]
    assert main(args + ["-s", "agent.hidden=[16]", "-s", "agent.batch_size=32"]) == 0
    assert "checkpoint" in capsys.readouterr().out
    assert (tmp_path / "cli" / "checkpoint.pt").is_file()
    assert main([str(tmp_path / "nope"), "--updates", "5", "--run-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("naf-ros: ") and "\n" not in err


def test_recording_from_several_threads(tmp_path):
    """Subscription callbacks on a multi-threaded executor may record concurrently."""
    import threading

    rec = BagRecorder(tmp_path / "threads")

    def producer(p: int) -> None:
        for i in range(100):
            rec.write_transition(
                dict(producer=p, seq=i, episode=0, t=i, obs=np.full(OBS, p), action=np.zeros(ACT),
                     reward=-1.0, next_obs=np.zeros(OBS), terminal=False, truncated=False),
                p * 1000 + i,
            )  # fmt: skip
            rec.write_command(p * 1000 + i, [float(p)] * ACT)

    threads = [threading.Thread(target=producer, args=(p,)) for p in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    rec.close()
    transitions = read_transitions(tmp_path / "threads", OBS, ACT)
    for p in range(4):
        assert [t["seq"] for t in transitions if t["producer"] == p] == list(range(100))


def test_train_command_records_a_bag_and_a_second_run_warm_starts_from_it(tmp_path, capsys):
    """``naf-ros train`` writes rosbag2 experience that another run can start from. The CLI
    wires the bag to the trainer (which imports nothing of rosbag2)."""
    from naf_ros.cli import main as cli
    from naf_ros.core.checkpoint import load_checkpoint

    base = [
        *("-s", "env.id=NafRos/Reacher3DOFFixed-v0", "-s", "agent.hidden=[16]"),
        *("-s", "agent.warmup_steps=2000", "-s", "train.episodes=2", "-s", "train.eval_every=2"),
        *("-s", "train.eval_episodes=1", "-s", "train.progress=false"),
    ]
    assert cli(["train", "--run-dir", str(tmp_path / "a"), *base, "-s", "bag.record=rec"]) == 0
    records = read_transitions(tmp_path / "a" / "rec", 13, 3)
    assert [r["seq"] for r in records] == list(range(100))
    replay = load_checkpoint(tmp_path / "a" / "checkpoint.pt")["learner"]["replay"]
    assert np.allclose(np.stack([r["obs"] for r in records]), replay["obs"][:100])
    capsys.readouterr()
    warm = f"bag.warm_start=[{tmp_path / 'a' / 'rec'}]"
    assert cli(["train", "--run-dir", str(tmp_path / "b"), *base, "-s", warm]) == 0
    assert "warm start: 100 transitions from 1 bag(s)" in capsys.readouterr().out
    replay = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["learner"]["replay"]
    assert len(replay["reward"]) == 200  # the bag's 100, then this run's 100
    assert np.allclose(replay["obs"][:100], np.stack([r["obs"] for r in records]))  # float32
    # A bad bag is one line and exit code 2, before anything is written.
    missing = f"bag.warm_start=[{tmp_path / 'nope'}]"
    assert cli(["train", "--run-dir", str(tmp_path / "c"), *base, "-s", missing]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("naf-ros: ") and "\n" not in err
    assert not (tmp_path / "c").exists()


# --- bag segments -----------------------------------------------------------------------------
def test_segments_rotate_and_unclosed_ones_are_set_aside(tmp_path):
    from naf_ros.bag.reader import read_transitions
    from naf_ros.bag.segments import SegmentedBag
    from naf_ros.ros.codec import encode_transition

    def tr(seq: int):
        return encode_transition(producer=0, seq=seq, episode=0, t=seq, obs=np.zeros(13),
                                 action=np.zeros(3), reward=0.0, next_obs=np.zeros(13),
                                 terminal=False, truncated=False)  # fmt: skip

    bag = SegmentedBag(tmp_path / "rec", "transitions")
    for seq in range(3):
        assert bag.write("transition", tr(seq), bag.stamp())
    bag.rotate()
    bag.write("transition", tr(3), bag.stamp())  # left open: a crash
    assert bag.segments_closed == 1
    again = SegmentedBag(tmp_path / "rec", "transitions")
    assert again.index == 2
    names = sorted(p.name for p in (tmp_path / "rec").iterdir())
    assert names == ["transitions_0000", "transitions_0001.incomplete"]
    assert [t["seq"] for t in read_transitions(tmp_path / "rec" / names[0], 13, 3)] == [0, 1, 2]
    # An unwritable folder: every write is counted as not recorded, nothing raised.
    blocker = tmp_path / "file"
    blocker.write_text("")
    broken = SegmentedBag(blocker / "rec", "transitions")
    assert not broken.write("transition", tr(0), broken.stamp())
    assert broken.not_recorded == 1 and broken.errors >= 1 and broken.last_error
