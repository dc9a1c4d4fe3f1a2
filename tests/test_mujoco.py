"""MuJoCo through gymnasium (HalfCheetah-v5, Hopper-v5): the envs, their tuned defaults, and
SAC, TD3 and PPO trained a few hundred steps through the command line on the gymnasium loop.

MuJoCo's own warning handler writes ``MUJOCO_LOG.TXT`` into the working directory; kitae's env
builders route the warnings to Python's ``warnings`` instead, and every test here runs in a
temporary working directory all the same."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("mujoco")

from kitae.cli import main  # noqa: E402
from kitae.cli.runs import default_spec  # noqa: E402
from kitae.envs.make import make_vec_env  # noqa: E402

ENVS = {"HalfCheetah-v5": (17, 6), "Hopper-v5": (11, 3)}
"""Observation and action sizes."""


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_cwd):
    return tmp_cwd


@pytest.mark.parametrize("env_id", list(ENVS))
def test_mujoco_envs_are_continuous_control_with_a_1000_step_limit(env_id):
    n_obs, n_act = ENVS[env_id]
    env = make_vec_env(env_id, 2)
    try:
        assert env.single_observation_space.shape == (n_obs,)
        assert env.single_action_space == gym.spaces.Box(-1.0, 1.0, (n_act,), np.float32)
        assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
        assert env.spec is None or env.envs[0].spec.max_episode_steps == 1000
        obs, _ = env.reset(seed=0)
        assert obs.shape == (2, n_obs) and obs.dtype == np.float64
    finally:
        env.close()


def test_mujoco_warnings_are_python_warnings_and_write_no_log_file(tmp_cwd):
    import mujoco

    make_vec_env("HalfCheetah-v5", 1).close()  # routes MuJoCo's warnings
    model = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><body><joint name="j" type="slide"/><geom size=".1"/></body>'
        '</worldbody><actuator><motor joint="j"/></actuator></mujoco>'
    )
    data = mujoco.MjData(model)
    data.ctrl[:] = np.nan
    with pytest.warns(RuntimeWarning, match="MuJoCo: Nan, Inf or huge value in CTRL"):
        mujoco.mj_step(model, data)
    assert not (tmp_cwd / "MUJOCO_LOG.TXT").exists()


@pytest.mark.parametrize(
    ("algo", "env_id", "expected"),
    [
        ("sac", "HalfCheetah-v5", {"learning_rate": 3e-4, "n_env_steps": 1_000_000}),
        ("sac", "Hopper-v5", {"learning_rate": 3e-4, "n_env_steps": 1_000_000}),
        ("ppo", "HalfCheetah-v5", {"learning_rate": 2.0633e-05, "n_env_steps": 1_000_000}),
        ("ppo", "Hopper-v5", {"learning_rate": 9.80828e-05, "n_env_steps": 1_000_000}),
    ],
    ids=["sac-halfcheetah", "sac-hopper", "ppo-halfcheetah", "ppo-hopper"],
)
def test_the_command_line_starts_from_rl_zoos_mujoco_settings(algo, env_id, expected):
    spec = default_spec(algo, env_id)
    assert spec.update_cfg.learning_rate == pytest.approx(expected["learning_rate"])
    assert spec.train_cfg.n_env_steps == expected["n_env_steps"]
    if algo == "sac":
        assert spec.algo_params.start_step == 10_000
        assert spec.update_cfg.batch_size == 256 and spec.n_envs == 1
    else:
        assert spec.n_envs == 1 and spec.update_cfg.max_buffer_size == 512


OFF_POLICY = ["--algo-params.start-step", "100", "--algo-params.skip-steps", "100"]
TINY = {
    "sac": [*OFF_POLICY, "--update-cfg.batch-size", "32"],
    "td3": [*OFF_POLICY, "--update-cfg.batch-size", "32"],
    "ppo": ["--update-cfg.max-buffer-size", "100", "--update-cfg.batch-size", "50"]
    + ["--update-cfg.n-epochs", "1"],
}
"""Two updates in 200 transitions of 2 envs."""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algo", "env_id"),
    [("sac", "HalfCheetah-v5"), ("td3", "Hopper-v5"), ("ppo", "Hopper-v5")],
    ids=["sac-halfcheetah", "td3-hopper", "ppo-hopper"],
)
def test_cli_trains_on_mujoco_on_the_gymnasium_loop(algo, env_id, tmp_cwd, capsys):
    args = ["train", algo, "--env", env_id, "--n-envs", "2"]
    args += ["--train-cfg.n-env-steps", "200"]
    args += ["--algo-params.hidden-sizes", "16", *TINY[algo], "--quiet"]
    args += ["--eval-episodes", "1" if env_id == "Hopper-v5" else "0"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["env_steps"] == 200 and report["n_updates"] == 2
    if env_id == "Hopper-v5":  # a short fall: a finite score of a whole episode
        assert np.isfinite(report["eval_mean"]) and report["eval_episodes"] == 1
    assert (tmp_cwd / "runs").is_dir()
