"""Atari 2600 games (``ALE/<Game>-v5``) with the standard DQN preprocessing.

:func:`make_atari_env` builds one game as "Revisiting the Arcade Learning Environment", Machado
et al., 2018, and the Nature DQN ("Human-level control through deep reinforcement learning",
Mnih et al., 2015) as gymnasium implements them:

* sticky actions: the previous action repeats with probability 0.25 at every frame (the v5
  default); the emulator itself skips no frames (``frameskip=1``);
* ``gymnasium.wrappers.AtariPreprocessing``: up to 30 no-op actions at reset, each action
  repeated for 4 frames with the max over the last two frames, 84x84 grayscale ``uint8``;
* ``gymnasium.wrappers.FrameStackObservation``: the last 4 frames, ``(4, 84, 84)``, zero-padded
  at the start of a game;
* training only: rewards clipped to their sign ({-1, 0, 1}) and the loss of a life reported as
  ``terminated`` (:class:`EpisodicLife`), without resetting the game: the next episode
  continues the game from where the life was lost, and only a game over (or the 108,000-frame
  limit, as ``truncated``) starts a new game.

Evaluation envs (``training=False``) apply the same preprocessing without reward clipping and
without life-loss terminals, so their returns are game scores.

:func:`make_atari_vec_env` builds the same envs as one vector env, either as gymnasium
``SyncVectorEnv`` / ``AsyncVectorEnv`` of :func:`make_atari_env` envs or with ALE's own
multithreaded C++ vector env (``vectorization="ale"``), which implements the same preprocessing
natively and gives the same observations, rewards and episode ends (its random number streams
for sticky actions and no-ops differ).

Atari needs ``pip install 'kitae[atari]'`` (``ale-py``, which ships the ROMs, and
``opencv-python-headless`` for ``AtariPreprocessing``'s resize).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

ATARI_NAMESPACE = "ALE/"
"""Env ids in this namespace get the preprocessing of this module by default."""

STICKY_ACTION_PROBABILITY = 0.25
"""Machado et al.'s probability that the emulator repeats the previous action at a frame."""


def is_atari_id(env_id: str) -> bool:
    """Whether ``env_id`` names an ALE game (``ALE/<Game>-v5``)."""
    return env_id.startswith(ATARI_NAMESPACE)


def register_atari_envs() -> None:
    """Registers the ``ALE/`` ids with gymnasium (a no-op once done).

    Raises:
        ImportError: if ale-py is missing, with the command that installs it.
    """
    try:
        import ale_py
    except ImportError as err:
        raise ImportError("Atari envs need ale-py: pip install 'kitae[atari]'.") from err
    gym.register_envs(ale_py)


class EpisodicLife(gym.Wrapper):
    """Reports the loss of a life as ``terminated``, but starts a new game only at game over.

    A ``reset`` after a life loss returns the last observation and lets the game go on, so the
    learner bootstraps from no value past a lost life while the agent still plays whole games
    (as the Nature DQN, Stable-Baselines3's ``EpisodicLifeEnv`` and EnvPool's
    ``episodic_life``). gymnasium's ``AtariPreprocessing(terminal_on_life_loss=True)`` instead
    starts a new game at every lost life in a vector env (its autoreset calls ``reset``), so
    this wrapper is written here. ``reset(seed=...)`` always starts a new game.

    ``info["lives"]`` is the number of lives left.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._lives = 0
        self._game_over = True
        self._last: tuple[Any, dict[str, Any]] | None = None

    def _ale_lives(self) -> int:
        return int(self.env.unwrapped.ale.lives())  # type: ignore[attr-defined]

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self._ale_lives()
        life_lost = 0 < lives < self._lives
        self._lives = lives
        self._game_over = bool(terminated or truncated)
        self._last = (np.array(obs, copy=True), dict(info))
        return obs, reward, bool(terminated or life_lost), bool(truncated), info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if self._game_over or self._last is None or seed is not None:
            obs, info = self.env.reset(seed=seed, options=options)
            self._lives = self._ale_lives()
            self._game_over = False
            return obs, info
        obs, info = self._last
        return np.array(obs, copy=True), dict(info)


def make_atari_env(
    env_id: str,
    *,
    training: bool,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int = 84,
    stack_size: int = 4,
    repeat_action_probability: float = STICKY_ACTION_PROBABILITY,
    terminal_on_life_loss: bool | None = None,
    clip_rewards: bool | None = None,
    **make_kwargs: Any,
) -> gym.Env:
    """One ALE game with the standard preprocessing (see the module docstring).

    Args:
        env_id: an ``ALE/<Game>-v5`` id.
        training: the learner's env (clipped rewards, life-loss terminals) rather than an
            evaluation env (game scores, whole games).
        noop_max: most no-op actions at reset (a uniform number in ``[1, noop_max]``; 0: none).
        frame_skip: frames per action.
        screen_size: side of the square frames.
        stack_size: frames per observation.
        repeat_action_probability: sticky-action probability per frame.
        terminal_on_life_loss: override: life-loss terminals (default: ``training``).
        clip_rewards: override: rewards clipped to their sign (default: ``training``).
        **make_kwargs: passed to ``gymnasium.make`` (e.g. ``full_action_space``, ``mode``,
            ``render_mode``).

    Returns:
        A gymnasium env with ``uint8[stack_size, screen_size, screen_size]`` observations and
        ``info["episode"]`` (game score and length, before clipping) at the end of each game.

    Raises:
        ValueError: for an id outside ``ALE/`` or a bad preprocessing value.
        ImportError: if ale-py or OpenCV is missing.
    """
    if not is_atari_id(env_id):
        raise ValueError(f"env_id={env_id!r} is not an ALE game: use an id such as 'ALE/Pong-v5'.")
    _check_options(noop_max, frame_skip, screen_size, stack_size, repeat_action_probability)
    register_atari_envs()
    if "frameskip" in make_kwargs:
        raise ValueError(
            "frameskip is set by make_atari_env (1 in the emulator, frame_skip in the "
            "preprocessing): pass frame_skip instead."
        )
    env = gym.make(
        env_id,
        frameskip=1,
        repeat_action_probability=repeat_action_probability,
        **make_kwargs,
    )
    try:
        env = gym.wrappers.AtariPreprocessing(
            env, noop_max=noop_max, frame_skip=frame_skip, screen_size=screen_size
        )
    except gym.error.DependencyNotInstalled as err:
        env.close()
        raise ImportError(
            "AtariPreprocessing resizes frames with OpenCV: pip install 'kitae[atari]'."
        ) from err
    env = gym.wrappers.FrameStackObservation(env, stack_size, padding_type="zero")
    env = gym.wrappers.RecordEpisodeStatistics(env)
    if training if clip_rewards is None else clip_rewards:
        env = gym.wrappers.TransformReward(env, np.sign)
    if training if terminal_on_life_loss is None else terminal_on_life_loss:
        env = EpisodicLife(env)
    return env


def _check_options(
    noop_max: int,
    frame_skip: int,
    screen_size: int,
    stack_size: int,
    repeat_action_probability: float,
) -> None:
    for name, value, least in (
        ("noop_max", noop_max, 0),
        ("frame_skip", frame_skip, 1),
        ("screen_size", screen_size, 1),
        ("stack_size", stack_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise ValueError(f"{name}={value!r} is invalid: it must be an integer >= {least}.")
    if not 0.0 <= repeat_action_probability <= 1.0:
        raise ValueError(
            f"repeat_action_probability={repeat_action_probability!r} is invalid: it must be "
            "in [0, 1]."
        )


class _FinalObservations(gym.vector.VectorWrapper):
    """Gives ALE's vector env the ``info["final_obs"]`` / ``info["_final_obs"]`` of gymnasium's
    same-step vector envs, for every ended episode: ALE leaves ``final_obs`` blank where a life
    loss ended an episode and the game went on, and there the final observation is the returned
    one (a game that goes on has a growing ``episode_frame_number``)."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._frames = np.array(info["episode_frame_number"], copy=True)
        return obs, info

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        obs, rewards, terminated, truncated, info = self.env.step(np.asarray(actions, np.int32))
        frames = np.asarray(info["episode_frame_number"])
        ended = np.logical_or(terminated, truncated)
        if ended.any():
            went_on = ended & (frames > self._frames)
            final = np.array(info.get("final_obs", obs), copy=True)
            final[went_on] = obs[went_on]
            info["final_obs"], info["_final_obs"] = final, ended
        self._frames = np.array(frames, copy=True)
        return obs, rewards, terminated, truncated, info


def make_ale_vec_env(
    env_id: str,
    n_envs: int,
    *,
    training: bool,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int = 84,
    stack_size: int = 4,
    repeat_action_probability: float = STICKY_ACTION_PROBABILITY,
    terminal_on_life_loss: bool | None = None,
    clip_rewards: bool | None = None,
    **vector_kwargs: Any,
) -> gym.vector.VectorEnv:
    """``n_envs`` games in ALE's multithreaded C++ vector env, same-step autoreset, with the
    preprocessing of :func:`make_atari_env` (arguments as there; ``**vector_kwargs`` go to
    ``ale_py.vector_env.AtariVectorEnv``, e.g. ``num_threads``)."""
    if not is_atari_id(env_id):
        raise ValueError(f"env_id={env_id!r} is not an ALE game: use an id such as 'ALE/Pong-v5'.")
    _check_options(noop_max, frame_skip, screen_size, stack_size, repeat_action_probability)
    register_atari_envs()
    env = gym.make_vec(
        env_id,
        n_envs,
        vectorization_mode="vector_entry_point",
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        frameskip=frame_skip,
        noop_max=noop_max,
        img_height=screen_size,
        img_width=screen_size,
        stack_num=stack_size,
        repeat_action_probability=repeat_action_probability,
        episodic_life=False,
        life_loss_info=training if terminal_on_life_loss is None else terminal_on_life_loss,
        reward_clipping=training if clip_rewards is None else clip_rewards,
        use_fire_reset=False,
        **vector_kwargs,
    )
    return _FinalObservations(env)
