"""Mutants of the environments' semantics: Atari preprocessing (gymnasium and EnvPool backends),
Brax's time limit, and the tuned defaults of env families."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import kitae.envs.atari as atari
import kitae.envs.brax as brax
import kitae.envs.envpool as envpool_backend
import kitae.envs.make as make
import kitae.zoo as zoo
from mutants import mutant

ATARI = "tests/test_atari.py"
LIFE_LOSS = f"{ATARI}::test_a_life_loss_terminates_training_episodes_without_resetting_the_game"
CLIPPING = f"{ATARI}::test_training_rewards_are_the_signs_of_the_evaluation_rewards"
EVALUATION = f"{ATARI}::test_evaluate_plays_whole_games_and_returns_game_scores"
ENVPOOL = f"{ATARI}::test_envpool_backend_has_the_semantics_of_the_gymnasium_backend"
BRAX = "tests/test_brax_env.py"


def _force(monkeypatch, module, name: str, **forced) -> None:
    """Replaces ``module.name`` (an env builder) by one that overrides keyword arguments."""
    original = getattr(module, name)

    def builder(*args, **kwargs):
        return original(*args, **{**kwargs, **forced})

    monkeypatch.setattr(module, name, builder)


@mutant(
    "atari-life-loss-not-terminal",
    "a lost life does not end the training episode (only game overs do)",
    [LIFE_LOSS],
)
def _(monkeypatch):

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._lives = self._ale_lives()
        self._game_over = bool(terminated or truncated)
        self._last = (np.array(obs, copy=True), dict(info))
        return obs, reward, bool(terminated), bool(truncated), info

    monkeypatch.setattr(atari.EpisodicLife, "step", step)


@mutant(
    "atari-training-rewards-not-clipped",
    "training envs give raw game rewards instead of their signs",
    [CLIPPING],
)
def _(monkeypatch):
    _force(monkeypatch, make, "make_atari_env", clip_rewards=False)


@mutant(
    "atari-evaluation-rewards-clipped",
    "evaluation envs clip rewards, so evaluation returns are no game scores",
    [EVALUATION],
)
def _(monkeypatch):
    _force(monkeypatch, make, "make_atari_env", clip_rewards=True)


@mutant(
    "atari-evaluation-ends-at-life-loss",
    "evaluation episodes end at the first lost life instead of the game over",
    [EVALUATION],
)
def _(monkeypatch):
    _force(monkeypatch, make, "make_atari_env", terminal_on_life_loss=True)


@mutant(
    "envpool-life-loss-not-terminal",
    "the EnvPool backend does not end training episodes at a lost life",
    [f"{ENVPOOL}[breakout-training]"],
    requires=("envpool",),
)
def _(monkeypatch):
    _force(monkeypatch, envpool_backend, "make_envpool_atari_env", terminal_on_life_loss=False)


@mutant(
    "envpool-training-rewards-not-clipped",
    "the EnvPool backend gives raw game rewards in training",
    [f"{ENVPOOL}[spaceinvaders-training]"],
    requires=("envpool",),
)
def _(monkeypatch):
    _force(monkeypatch, envpool_backend, "make_envpool_atari_env", clip_rewards=False)


@mutant(
    "envpool-stack-not-zero-padded",
    "the EnvPool backend repeats a new game's first frame through the stack",
    [f"{ENVPOOL}[breakout-evaluation]"],
    requires=("envpool",),
)
def _(monkeypatch):
    monkeypatch.setattr(envpool_backend.EnvPoolAtari, "_pad_new_games", lambda self, o, e: o)


@mutant(
    "brax-truncation-as-termination",
    "Brax's time limit is reported as a termination",
    [f"{BRAX}::test_time_limit_is_truncation_and_the_episode_restarts"],
)
def _(monkeypatch):
    original = brax.BraxEnv.transition

    def transition(self, key, state, action):
        obs, state, reward, terminated, truncated = original(self, key, state, action)
        return obs, state, reward, terminated | truncated, jnp.zeros_like(truncated)

    monkeypatch.setattr(brax.BraxEnv, "transition", transition)


@mutant(
    "brax-termination-as-truncation",
    "a Brax env's own terminal condition is reported as a truncation",
    [f"{BRAX}::test_a_fall_is_termination_not_truncation"],
)
def _(monkeypatch):
    original = brax.BraxEnv.transition

    def transition(self, key, state, action):
        obs, state, reward, terminated, truncated = original(self, key, state, action)
        return obs, state, reward, jnp.zeros_like(terminated), terminated | truncated

    monkeypatch.setattr(brax.BraxEnv, "transition", transition)


@mutant(
    "mujoco-warnings-to-log-file",
    "MuJoCo's warnings go to MUJOCO_LOG.TXT in the working directory",
    ["tests/test_mujoco.py::test_mujoco_warnings_are_python_warnings_and_write_no_log_file"],
)
def _(monkeypatch):
    import mujoco

    monkeypatch.setattr(make, "route_mujoco_warnings", lambda: None)
    mujoco.set_mju_user_warning(None)  # an earlier test of the same process may have routed it


@mutant(
    "zoo-env-families-ignored",
    "the tuned defaults of env families (ALE/*, *-MinAtar) are not applied",
    [
        f"{ATARI}::test_every_atari_game_starts_from_rl_zoos_atari_dqn_settings",
        "tests/test_jax_env.py::test_ppo_on_minatar_starts_from_purejaxqls_settings",
    ],
)
def _(monkeypatch):
    monkeypatch.setattr(zoo, "TUNED_PATTERNS", {})
