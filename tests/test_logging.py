"""Logging backends (JSON lines, CSV, console, TensorBoard, wandb) and periodic evaluation."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import struct
import sys

import gymnasium as gym
import numpy as np
import pytest
from envs import Corridor
from helpers import assert_trees_equal, small_config

from kitae.algos.dqn import DQN, DQNParams
from kitae.checkpoint.restoring import _truncate_logs
from kitae.config import validate_config
from kitae.envs.make import make_vec_env
from kitae.logger import LOGGER_BACKENDS, Logger

TASK = "KitaeLoggingCorridor-v0"
if TASK not in gym.registry:
    gym.register(TASK, entry_point=Corridor, max_episode_steps=20)


def dqn_config(env, *, n_env_steps: int = 60, **train):
    config = small_config(
        DQNParams,
        env,
        params={
            "hidden_sizes": (16,),
            "gamma": 0.9,
            "start_step": -1,
            "skip_steps": 2,
            "target_update_period": 3,
            "tau": 1.0,
            "exploration_start": 1.0,
            "exploration_end": 0.05,
            "exploration_fraction": 0.5,
        },
        update={"learning_rate": 1e-3, "max_buffer_size": 128, "batch_size": 8},
        n_env_steps=n_env_steps,
    )
    config.train_cfg = dataclasses.replace(config.train_cfg, log_frequency=10, **train)
    return config


def train_dqn(run_dir=None, *, name: str = "run", n_env_steps: int = 60, **train) -> DQN:
    env = make_vec_env(TASK, 2)
    agent = DQN(name, dqn_config(env, n_env_steps=n_env_steps, **train), run_dir=run_dir)
    agent.train(env, n_env_steps)
    return agent


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_event_scalars(path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of a TensorBoard event file, parsed from its TFRecord framing."""
    from tensorboardX.proto.event_pb2 import Event

    data, scalars, offset = path.read_bytes(), {}, 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        event = Event.FromString(data[offset + 12 : offset + 12 + length])
        offset += 12 + length + 4
        for value in event.summary.value:
            if value.HasField("simple_value"):
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


# ---- backends ------------------------------------------------------------------------------


def test_jsonl_backend_writes_every_row_and_keeps_the_history(tmp_path):
    logger = Logger(tmp_path / "run")
    logger.log("train", 10, {"loss": 0.5, "bad": float("nan")})
    logger.log("train", 20, {"loss": 0.25})
    logger.close()
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "train.jsonl").read_text().splitlines()
    ]
    assert rows == [{"step": 10, "loss": 0.5, "bad": "nan"}, {"step": 20, "loss": 0.25}]
    assert rows == logger.history["train"]


def test_csv_backend_writes_a_header_and_extends_it_for_new_columns(tmp_path):
    logger = Logger(tmp_path / "run", backends=("csv",))
    logger.log("train", 10, {"loss": 0.5})
    logger.log("train", 20, {"loss": 0.25, "epsilon": 0.1})
    logger.log("eval", 20, {"eval_return_mean": 1.0})
    logger.close()
    assert sorted(os.listdir(tmp_path / "run")) == ["eval.csv", "train.csv"]
    assert read_csv(tmp_path / "run" / "train.csv") == [
        {"step": "10", "loss": "0.5", "epsilon": ""},
        {"step": "20", "loss": "0.25", "epsilon": "0.1"},
    ]
    assert read_csv(tmp_path / "run" / "eval.csv") == [{"step": "20", "eval_return_mean": "1.0"}]


def test_csv_backend_appends_under_the_existing_header_when_resuming(tmp_path):
    logger = Logger(tmp_path / "run", backends=("csv",))
    logger.log("train", 10, {"loss": 0.5, "epsilon": 0.2})
    logger.close()
    resumed = Logger(tmp_path / "run", resume=True, backends=("csv",))
    resumed.log("train", 20, {"epsilon": 0.1, "loss": 0.25})
    resumed.close()
    lines = (tmp_path / "run" / "train.csv").read_text().splitlines()
    assert lines == ["step,loss,epsilon", "10,0.5,0.2", "20,0.25,0.1"]


def test_resume_truncation_drops_csv_and_jsonl_rows_after_the_checkpoint(tmp_path):
    logger = Logger(tmp_path, backends=("csv", "jsonl"))
    for step in (10, 20, 30):
        logger.log("train", step, {"loss": step / 10})
    logger.close()
    _truncate_logs(tmp_path, 20)
    assert [row["step"] for row in read_csv(tmp_path / "train.csv")] == ["10", "20"]
    assert len((tmp_path / "train.jsonl").read_text().splitlines()) == 2


def test_console_backend_prints_one_line_per_train_and_eval_row(capsys):
    logger = Logger(None, backends=("console",))
    logger.log("episodes", 5, {"return": 1.0})
    logger.log("train", 1000, {"loss": 0.123456, "steps_per_second": 2500.0})
    logger.log("eval", 1000, {"eval_return_mean": 3.5})
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "[train] step 1,000 | loss 0.1235 | steps_per_second 2,500",
        "[eval] step 1,000 | eval_return_mean 3.5",
    ]


def test_tensorboard_backend_writes_readable_scalars_and_the_config(tmp_path):
    pytest.importorskip("tensorboardX")
    logger = Logger(tmp_path / "run", backends=("tensorboard",))
    logger.write_config({"seed": 3})
    logger.log("train", 10, {"loss": 0.5})
    logger.log("train", 20, {"loss": 0.25})
    logger.close()
    (event_file,) = (tmp_path / "run" / "tensorboard").iterdir()
    assert event_file.name.startswith("events.out.tfevents")
    scalars = read_event_scalars(event_file)
    assert scalars == {"train/loss": [(10, 0.5), (20, 0.25)]}


def test_missing_optional_backend_names_its_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match=r"kitae\[tensorboard\]"):
        Logger(tmp_path / "a", backends=("tensorboard",))
    with pytest.raises(ImportError, match=r"kitae\[wandb\]"):
        Logger(tmp_path / "b", backends=("wandb",))


def test_wandb_backend_offline_writes_into_the_run_dir(tmp_cwd, tmp_path_factory, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'kitae[wandb]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path_factory.mktemp("unused")))
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    logger = Logger(run_dir, backends=("wandb",))
    logger.write_config({"seed": 3})
    logger.log("train", 10, {"loss": 0.5})
    run = logger.backends[0].run
    assert run.config["seed"] == 3
    run.finish()
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and any(offline[0].glob("*.wandb"))
    assert os.listdir(tmp_cwd) == []


@pytest.mark.parametrize(
    "loggers",
    [("jsonl", "txt"), "jsonl", ("Console",)],
    ids=["unknown-name", "a-string", "wrong-case"],
)
def test_unknown_logger_is_rejected_naming_the_field(loggers):
    env = make_vec_env(TASK, 2)
    config = dqn_config(env)
    config.train_cfg.loggers = loggers
    with pytest.raises(ValueError, match=r"train_cfg\.loggers"):
        validate_config(config)


@pytest.mark.parametrize(
    ("field", "value"), [("eval_frequency", 0), ("eval_episodes", 0)], ids=["frequency", "episodes"]
)
def test_bad_eval_settings_are_rejected_naming_the_field(field, value):
    config = dqn_config(make_vec_env(TASK, 2))
    setattr(config.train_cfg, field, value)
    with pytest.raises(ValueError, match=rf"train_cfg\.{field}"):
        validate_config(config)


# ---- agents --------------------------------------------------------------------------------


def test_training_writes_every_file_backend_into_the_run_dir_only(tmp_cwd, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    loggers = ("jsonl", "csv") + (("tensorboard",) if "tensorboardX" in sys.modules else ())
    agent = train_dqn(runs, name="all", loggers=loggers, eval_frequency=30, eval_episodes=2)
    assert os.listdir(tmp_cwd) == []
    assert os.listdir(runs) == ["all"]
    files = {"config.json", "episodes.jsonl", "train.jsonl", "eval.jsonl"}
    files |= {"episodes.csv", "train.csv", "eval.csv"}
    assert set(os.listdir(runs / "all")) == files | ({"tensorboard"} & set(loggers))
    rows = agent.logger.history["train"]
    assert [row["step"] for row in rows] == list(range(10, 61, 10))
    for row in rows:
        assert {"episode_return", "episode_length", "learning_rate", "epsilon"} <= set(row)
        assert row["learning_rate"] == pytest.approx(1e-3)
        assert row["epsilon"] == pytest.approx(float(agent.exploration(row["step"])))
        assert row["steps_per_second"] > 0
        assert any(name.startswith("loss") for name in row)
    assert read_csv(runs / "all" / "train.csv")[-1]["step"] == "60"
    if "tensorboard" in loggers:
        (event_file,) = (runs / "all" / "tensorboard").iterdir()
        assert [s for s, _ in read_event_scalars(event_file)["eval/eval_return_mean"]] == [30, 60]


def test_eval_rows_appear_every_eval_frequency_steps():
    agent = train_dqn(eval_frequency=20, eval_episodes=3)
    rows = agent.logger.history["eval"]
    assert [row["step"] for row in rows] == [20, 40, 60]
    for row in rows:
        assert set(row) == {"step", "eval_return_mean", "eval_return_std"}
        assert np.isfinite(row["eval_return_mean"]) and row["eval_return_std"] >= 0


def test_periodic_evaluation_does_not_change_training():
    plain, evaluated = train_dqn(), train_dqn(eval_frequency=10, eval_episodes=2)
    assert "eval" not in plain.logger.history and len(evaluated.logger.history["eval"]) == 6
    assert plain.n_updates > 0
    assert_trees_equal(plain.state, evaluated.state)
    assert plain.tracker.finished == evaluated.tracker.finished


def test_periodic_evaluation_needs_a_registered_task():
    env = make_vec_env(TASK, 2)
    config = dqn_config(env, eval_frequency=20)
    config.env_cfg.task_name = "NotRegistered-v0"
    with pytest.raises(ValueError, match=r"env_cfg\.task_name='NotRegistered-v0'"):
        DQN("bad", config).train(env, 20)


def test_logger_backend_names_are_the_documented_ones():
    assert LOGGER_BACKENDS == ("console", "csv", "jsonl", "tensorboard", "wandb")


def test_compiled_program_logs_each_chunk_through_a_host_callback(tmp_path):
    """The pure ``train(key)`` writes one ``train`` row per chunk while it runs."""
    import jax

    from kitae.compiled import config_for_jax_env, make_agent_train, metrics_logger
    from kitae.envs.jax_env import make_jax_env

    pytest.importorskip("gymnax")
    env = make_jax_env("CartPole-v1")
    config = config_for_jax_env(dqn_config(gym.make("CartPole-v1"), n_env_steps=400), env, 2)
    agent = DQN("compiled", config)
    logger = Logger(tmp_path / "run", backends=("jsonl",))
    train = make_agent_train(agent, env, log_interval=100, log_callback=metrics_logger(logger))
    _, metrics = jax.jit(train)(jax.random.PRNGKey(0))
    jax.effects_barrier()
    logger.flush()
    rows = [
        json.loads(line)
        for line in (tmp_path / "run" / "train.jsonl").read_text().split("\n")
        if line
    ]
    assert [r["step"] for r in rows] == [100, 200, 300, 400]
    assert [r["step"] for r in rows] == np.asarray(metrics.env_steps).tolist()
    assert sum(r["n_updates"] for r in rows) == int(np.asarray(metrics.n_updates).sum()) > 0
