"""Atari through ale-py (kitae.envs.atari): the standard DQN preprocessing, its training and
evaluation forms, ALE's native vector backend and EnvPool's (kitae.envs.envpool, skipped without
envpool), and a DQN run through the command line."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("ale_py")
pytest.importorskip("cv2")

from kitae.envs.atari import EpisodicLife, make_atari_env  # noqa: E402
from kitae.envs.make import build_env, make_vec_env  # noqa: E402
from kitae.evaluation import evaluate  # noqa: E402

DETERMINISTIC = {"repeat_action_probability": 0.0, "noop_max": 0}
"""No random starts and no sticky actions: two backends given the same actions must agree."""


def random_actions(n: int, n_actions: int, seed: int = 0, n_envs: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_actions, (n, n_envs))


def rollout(env: gym.vector.VectorEnv, actions: np.ndarray, seed: int = 0) -> dict:
    """Steps a vector env through ``actions [T, N]``; stacks what it returns."""
    obs, _ = env.reset(seed=seed)
    out: dict[str, list] = {k: [] for k in ("obs", "reward", "terminated", "truncated", "lives")}
    out["final_obs"] = []
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out["obs"].append(obs)
        out["reward"].append(reward)
        out["terminated"].append(terminated)
        out["truncated"].append(truncated)
        out["lives"].append(np.asarray(info["lives"]))
        ended = terminated | truncated
        final = np.array(obs, copy=True)
        if ended.any():
            final[info["_final_obs"]] = np.stack(info["final_obs"][info["_final_obs"]])
        out["final_obs"].append(final)
    env.close()
    return {k: np.asarray(v) for k, v in out.items()}


def test_observations_are_four_stacked_84x84_grayscale_uint8_frames():
    env = make_vec_env("ALE/Pong-v5", 2)
    try:
        assert env.single_observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
        obs, _ = env.reset(seed=0)
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        # a new game: the stack is zero-padded behind its one frame
        assert not obs[:, :3].any() and obs[:, 3].any()
        obs, *_ = env.step(np.zeros(2, np.int64))
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        assert not obs[:, :2].any() and obs[:, 2:].all(axis=(2, 3)).any()
    finally:
        env.close()
    evaluation = build_env("ALE/Pong-v5", training=False)
    assert evaluation.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)


def test_one_step_is_four_emulator_frames_with_sticky_actions():
    env = make_atari_env("ALE/Breakout-v5", training=True)
    env.reset(seed=0)
    ale = env.unwrapped.ale
    assert env.unwrapped._frameskip == 1  # the emulator skips no frame itself
    assert ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    start = ale.getFrameNumber()
    for k in range(1, 11):
        env.step(0)
        assert ale.getFrameNumber() - start == 4 * k
    plain = make_atari_env("ALE/Breakout-v5", training=True, repeat_action_probability=0.0)
    assert plain.unwrapped.ale.getFloat("repeat_action_probability") == 0.0


def test_reset_takes_between_1_and_30_noop_frames():
    env = make_atari_env("ALE/Pong-v5", training=False)
    starts = []
    for seed in range(12):
        env.reset(seed=seed)
        starts.append(env.unwrapped.ale.getEpisodeFrameNumber())
    assert all(1 <= n <= 30 for n in starts) and len(set(starts)) > 3, starts
    env = make_atari_env("ALE/Pong-v5", training=False, noop_max=0)
    env.reset(seed=0)
    assert env.unwrapped.ale.getEpisodeFrameNumber() == 0


def test_training_rewards_are_the_signs_of_the_evaluation_rewards():
    # SpaceInvaders scores 5 to 30 points per invader; same seed and actions, same game
    actions = random_actions(300, 6)
    train = rollout(make_vec_env("ALE/SpaceInvaders-v5", 1), actions)
    score = rollout(make_vec_env("ALE/SpaceInvaders-v5", 1, training=False), actions)
    assert (score["reward"] >= 5).sum() >= 3, "no invader was hit: pick another seed"
    assert set(np.unique(train["reward"])) <= {-1.0, 0.0, 1.0}
    np.testing.assert_array_equal(train["reward"], np.sign(score["reward"]))


def test_a_life_loss_terminates_training_episodes_without_resetting_the_game():
    actions = random_actions(160, 4, seed=1)
    train = rollout(make_vec_env("ALE/Breakout-v5", 1), actions)
    score = rollout(make_vec_env("ALE/Breakout-v5", 1, training=False), actions)
    lives = score["lives"][:, 0]
    game_over = np.flatnonzero(score["terminated"][:, 0])
    lost = np.flatnonzero(np.diff(np.concatenate([[5], lives])) < 0)
    assert len(game_over) == 1 and len(lost) >= 3, (lives, game_over)
    assert game_over[0] > lost[-1] and lives[game_over[0]] == 5  # a new game started
    # training: an episode ends at every lost life and at the game over
    np.testing.assert_array_equal(
        np.flatnonzero(train["terminated"][:, 0]), np.concatenate([lost, game_over])
    )
    assert not train["truncated"].any()
    # ... and only the game over started a new game: the same frames and lives throughout
    np.testing.assert_array_equal(train["lives"], score["lives"])
    np.testing.assert_array_equal(train["obs"], score["obs"])
    # the final observation of a training episode is the frame where the life was lost
    np.testing.assert_array_equal(train["final_obs"][lost], score["obs"][lost])


def test_episodic_life_starts_a_new_game_at_game_over_and_on_seeded_resets():
    env = EpisodicLife(make_atari_env("ALE/Breakout-v5", training=False, **DETERMINISTIC))
    env.reset(seed=0)
    ale = env.unwrapped.ale
    rng = np.random.default_rng(0)
    while True:
        *_, terminated, truncated, _ = env.step(int(rng.integers(4)))
        if terminated:
            break
    assert ale.lives() == 4 and ale.getEpisodeFrameNumber() > 0
    env.reset()  # after a life loss: the game goes on
    assert ale.lives() == 4 and ale.getEpisodeFrameNumber() > 0
    env.reset(seed=1)  # a seeded reset is a new game
    assert ale.lives() == 5 and ale.getEpisodeFrameNumber() == 0


@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
def test_ale_vector_backend_matches_the_gymnasium_backend(training):
    actions = random_actions(300, 4, seed=1, n_envs=2)
    kwargs = {"training": training, **DETERMINISTIC}
    sync = rollout(make_vec_env("ALE/Breakout-v5", 2, **kwargs), actions)
    native = make_vec_env("ALE/Breakout-v5", 2, vectorization="ale", **kwargs)
    assert native.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    assert native.single_observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    native = rollout(native, actions)
    # episodes end at game overs (the lives go back up), and in training at every lost life
    change = np.diff(np.concatenate([np.full((1, 2), 5), sync["lives"]]), axis=0)
    assert (change > 0).any() and (change < 0).any()
    ends = ((change > 0) | (change < 0)) if training else (change > 0)
    np.testing.assert_array_equal(sync["terminated"], ends)
    for key in ("obs", "reward", "terminated", "truncated", "lives", "final_obs"):
        np.testing.assert_array_equal(sync[key], native[key], err_msg=key)


@pytest.mark.parametrize(
    ("game", "n_actions", "training"),
    [("Breakout", 4, True), ("Breakout", 4, False), ("SpaceInvaders", 6, True)],
    ids=["breakout-training", "breakout-evaluation", "spaceinvaders-training"],
)
def test_envpool_backend_has_the_semantics_of_the_gymnasium_backend(game, n_actions, training):
    pytest.importorskip("envpool")
    # EnvPool always plays one no-op frame at reset: both backends play exactly one here
    kwargs = {"training": training, "repeat_action_probability": 0.0, "noop_max": 1}
    actions = random_actions(400, n_actions, seed=1, n_envs=2)
    env_id = f"ALE/{game}-v5"
    sync = rollout(make_vec_env(env_id, 2, **kwargs), actions)
    pool = make_vec_env(env_id, 2, vectorization="envpool", **kwargs)
    assert pool.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    assert pool.single_observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    first, _ = pool.reset(seed=0)
    assert first.shape == (2, 4, 84, 84) and first.dtype == np.uint8
    assert not first[:, :3].any() and first[:, 3].any()  # a new game's stack is zero-padded
    pool = rollout(pool, actions)
    for key in ("reward", "terminated", "truncated", "lives"):
        np.testing.assert_array_equal(sync[key], pool[key], err_msg=key)
    assert pool["reward"].dtype == np.float64 and sync["reward"].any()
    if training:
        assert set(np.unique(pool["reward"])) <= {-1.0, 0.0, 1.0}
    # episodes end at game overs (the lives go back up), and in training at every lost life
    change = np.diff(np.concatenate([np.full((1, 2), sync["lives"][0]), sync["lives"]]), axis=0)
    assert (change < 0).any()
    if game == "Breakout":
        ends = ((change > 0) | (change < 0)) if training else (change > 0)
        assert (change > 0).any()
        np.testing.assert_array_equal(pool["terminated"], ends)
    # the same frames up to EnvPool's own resize and max-pool, the same zero padding
    for key in ("obs", "final_obs"):
        assert pool[key].shape == sync[key].shape and pool[key].dtype == np.uint8
        assert np.mean(pool[key] != sync[key]) < 0.005, key
        np.testing.assert_array_equal(pool[key].any(axis=(3, 4)), sync[key].any(axis=(3, 4)))


def test_envpool_backend_refuses_what_it_cannot_do():
    pytest.importorskip("envpool")
    with pytest.raises(ValueError, match="noop_max"):
        make_vec_env("ALE/Pong-v5", 2, vectorization="envpool", noop_max=0)
    with pytest.raises(ValueError, match="episodic_life"):
        make_vec_env("ALE/Pong-v5", 2, vectorization="envpool", episodic_life=True)
    with pytest.raises(ValueError, match="vectorization='envpool'"):
        make_vec_env("CartPole-v1", 2, vectorization="envpool")


def test_the_command_line_picks_the_vectorization_of_an_atari_run():
    pytest.importorskip("envpool")
    from kitae.cli.runs import make_env, parse_spec
    from kitae.config import EnvConfig
    from kitae.envs.envpool import EnvPoolAtari

    _, spec = parse_spec("dqn", ["--env", "ALE/Pong-v5", "--vectorization", "envpool"])
    env = make_env(spec.env, 2, spec.vectorization)
    try:
        assert isinstance(env, EnvPoolAtari) and env.num_envs == 2
        assert EnvConfig.from_env(env).task_name == "ALE/Pong-v5"  # for the tuned defaults
    finally:
        env.close()
    with pytest.raises(ValueError, match="vectorization='envpool' is for gymnasium envs"):
        make_env("gymnax:Breakout-MinAtar", 2, "envpool")


class RandomAgent:
    """Plays uniform random actions; records what it saw and did."""

    def __init__(self, n_actions: int, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.n_actions = n_actions
        self.observations: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []

    def select_action(self, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.observations.append(np.asarray(observations))
        actions = self.rng.integers(0, self.n_actions, len(observations))
        self.actions.append(actions)
        return actions, np.zeros(len(observations))


def test_evaluate_plays_whole_games_and_returns_game_scores():
    agent = RandomAgent(6)
    returns = evaluate(agent, "ALE/SpaceInvaders-v5", n_episodes=1, seed=3)
    assert {o.shape for o in agent.observations} == {(1, 4, 84, 84)}
    # the same actions on the evaluation env, and on the training one
    played = np.concatenate(agent.actions)
    totals = {}
    for training in (False, True):
        env = make_atari_env("ALE/SpaceInvaders-v5", training=training)
        env.reset(seed=3)
        total, ended = 0.0, False
        for a in played:
            _, reward, terminated, truncated, _ = env.step(int(a))
            total += float(reward)
            if terminated or truncated:
                ended = True
                break
        totals[training] = (total, ended)
    assert totals[False] == (returns[0], True)  # one whole game, its score
    assert totals[False][0] > totals[True][0] > 0  # the training env clips and ends at a life


def test_record_video_plays_the_evaluation_env(tmp_path):
    pytest.importorskip("moviepy")
    from kitae.evaluation import record_video

    agent = RandomAgent(6)
    paths = record_video(agent, "ALE/Pong-v5", tmp_path, max_steps=20)
    assert len(paths) == 1 and paths[0].stat().st_size > 0
    assert {o.shape for o in agent.observations} == {(1, 4, 84, 84)}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"noop_max": -1}, "noop_max"),
        ({"frame_skip": 0}, "frame_skip"),
        ({"stack_size": 0}, "stack_size"),
        ({"screen_size": 2.5}, "screen_size"),
        ({"repeat_action_probability": 1.5}, "repeat_action_probability"),
        ({"frameskip": 4}, "frameskip"),
    ],
    ids=["noop_max", "frame_skip", "stack_size", "screen_size", "sticky", "frameskip"],
)
def test_bad_preprocessing_options_are_refused(kwargs, field):
    with pytest.raises(ValueError, match=field):
        make_atari_env("ALE/Pong-v5", training=True, **kwargs)


def test_non_atari_ids_are_refused_by_the_atari_builders():
    with pytest.raises(ValueError, match="not an ALE game"):
        make_atari_env("CartPole-v1", training=True)
    with pytest.raises(ValueError, match="vectorization='ale'"):
        make_vec_env("CartPole-v1", 2, vectorization="ale")
    with pytest.raises(ValueError, match="vectorization='ale'"):
        make_vec_env("ALE/Pong-v5", 2, vectorization="ale", preprocessing=False)


def test_preprocessing_false_gives_the_plain_game():
    env = make_vec_env("ALE/Pong-v5", 1, preprocessing=False)
    try:
        obs, _ = env.reset(seed=0)
        assert obs.shape == (1, 210, 160, 3) and obs.dtype == np.uint8
    finally:
        env.close()


def test_every_atari_game_starts_from_rl_zoos_atari_dqn_settings():
    from kitae.algos.dqn import DQN
    from kitae.cli.runs import build_config, default_spec
    from kitae.config import validate_config

    for env_id in ("ALE/Pong-v5", "ALE/Breakout-v5"):
        spec = default_spec("dqn", env_id)
        params, update = spec.algo_params, spec.update_cfg
        assert (update.learning_rate, update.max_buffer_size, update.batch_size) == (
            1e-4,
            100_000,
            32,
        )
        assert (params.start_step, params.skip_steps, params.target_update_period) == (
            100_000,
            4,
            250,
        )
        assert (params.exploration_fraction, params.exploration_end) == (0.1, 0.01)
        assert params.encoder == "nature_cnn" and params.hidden_sizes == (512,)
        assert spec.n_envs == 1 and spec.train_cfg.n_env_steps == 10_000_000
    assert default_spec("dqn", "ALE/Pong-v5").update_cfg == spec.update_cfg
    env = make_vec_env("ALE/Pong-v5", 1)
    try:
        config = build_config(spec, env)
    finally:
        env.close()
    validate_config(config)
    DQN.validate_config(DQN.__new__(DQN), config)
    assert default_spec("ppo", "ALE/Pong-v5").update_cfg.learning_rate != 1e-4  # DQN's only


@pytest.mark.slow
def test_cli_trains_dqn_on_pong_with_a_convolutional_encoder(tmp_cwd, capsys):
    from kitae.cli import main

    args = ["train", "dqn", "--env", "ALE/Pong-v5", "--n-envs", "2"]
    args += ["--train-cfg.n-env-steps", "256", "--update-cfg.max-buffer-size", "256"]
    args += ["--update-cfg.batch-size", "32", "--update-cfg.n-epochs", "1"]
    args += ["--algo-params.start-step", "128", "--algo-params.skip-steps", "128"]
    args += ["--eval-episodes", "0", "--quiet"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["env_steps"] == 256 and report["n_updates"] == 2
