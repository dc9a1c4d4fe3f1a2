"""Vectorized gymnasium environments with same-step autoreset.

kitae's loop needs ``AutoresetMode.SAME_STEP``: when an episode ends, ``step`` returns the first
observation of the next episode and puts the true final observation in
``infos["final_obs"]``, so every returned step is a valid transition.

Ids of the ``ALE/`` namespace (Atari) get the standard DQN preprocessing of
:mod:`kitae.envs.atari`, in its training form (clipped rewards, life-loss terminals) or, with
``training=False``, its evaluation form (game scores); ``preprocessing=False`` opts out (the
plain ``gymnasium.make`` env), and the preprocessing's options (``noop_max``, ``frame_skip``,
``screen_size``, ``stack_size``, ``repeat_action_probability``, ``terminal_on_life_loss``,
``clip_rewards``) pass through ``**env_kwargs``.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

from kitae.envs.atari import is_atari_id, make_ale_vec_env, make_atari_env, register_atari_envs

VECTORIZATION_MODES = ("sync", "async", "ale", "envpool")
"""``"ale"``: ALE's own C++ vector env; ``"envpool"``: EnvPool's (``kitae[envpool]``); both for
preprocessed ``ALE/`` ids only."""


def _mujoco_warning(message: str) -> None:
    warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)


def route_mujoco_warnings() -> None:
    """Sends MuJoCo's warnings to Python's ``warnings`` (unless a handler is already set).

    MuJoCo's default handler appends every warning (e.g. a deprecated attribute of a model file,
    unstable simulation) to ``MUJOCO_LOG.TXT`` in the working directory; with this handler
    nothing is written outside the run. Called by the builders of MuJoCo-backed envs; a no-op
    without the ``mujoco`` package.
    """
    try:
        import mujoco
    except ImportError:
        return
    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_mujoco_warning)


def _is_mujoco_id(env_id: str) -> bool:
    spec = gym.registry.get(env_id)
    return spec is not None and "mujoco" in str(spec.entry_point)


def build_env(
    env_id: str, *, training: bool = True, preprocessing: bool = True, **env_kwargs: Any
) -> gym.Env:
    """One env of ``env_id``: an ``ALE/`` game with :func:`kitae.envs.atari.make_atari_env`'s
    preprocessing (unless ``preprocessing=False``), any other id with ``gymnasium.make``.

    Args:
        env_id: a registered gymnasium id, or an ``ALE/`` id (registered here).
        training: the learner's env rather than an evaluation env (Atari: reward clipping and
            life-loss terminals).
        preprocessing: apply the id's standard preprocessing (Atari).
        **env_kwargs: passed to ``gymnasium.make`` (and the Atari preprocessing options).
    """
    if is_atari_id(env_id):
        if preprocessing:
            return make_atari_env(env_id, training=training, **env_kwargs)
        register_atari_envs()
    elif _is_mujoco_id(env_id):
        route_mujoco_warnings()
    return gym.make(env_id, **env_kwargs)


def make_env(
    env_id: str,
    idx: int = 0,
    *,
    training: bool = True,
    preprocessing: bool = True,
    capture_video: bool = False,
    run_name: str | None = None,
    video_dir: str | Path = "videos",
    wrappers: Sequence[Callable[[gym.Env], gym.Env]] = (),
    **env_kwargs: Any,
) -> Callable[[], gym.Env]:
    """A thunk building one env; env 0 records videos when ``capture_video``.

    Args:
        env_id: a registered gymnasium id.
        idx: index of the env in its vector env.
        training: see :func:`build_env`.
        preprocessing: see :func:`build_env`.
        capture_video: wrap env 0 in ``gymnasium.wrappers.RecordVideo`` (needs ``moviepy``,
            the ``kitae[video]`` extra), writing to ``video_dir/run_name``.
        run_name: names the video folder.
        video_dir: parent folder of the videos.
        wrappers: applied in order to every env.
        **env_kwargs: passed to :func:`build_env`.
    """

    kwargs = dict(env_kwargs)
    if capture_video and idx == 0:
        kwargs["render_mode"] = "rgb_array"

    def thunk() -> gym.Env:
        env = build_env(env_id, training=training, preprocessing=preprocessing, **kwargs)
        for wrapper in wrappers:
            env = wrapper(env)
        if capture_video and idx == 0:
            folder = Path(video_dir) / (run_name or env_id)
            env = gym.wrappers.RecordVideo(env, str(folder))
        return env

    return thunk


def make_vec_env(
    env_id: str,
    n_envs: int,
    capture_video: bool = False,
    run_name: str | None = None,
    *,
    training: bool = True,
    preprocessing: bool = True,
    vectorization: str = "sync",
    wrappers: Sequence[Callable[[gym.Env], gym.Env]] = (),
    video_dir: str | Path = "videos",
    context: str = "forkserver",
    **env_kwargs: Any,
) -> gym.vector.VectorEnv:
    """Builds ``n_envs`` copies of ``env_id`` as one same-step-autoreset vector env.

    Args:
        env_id: a registered gymnasium id, e.g. ``"CartPole-v1"``.
        n_envs: number of envs.
        capture_video: record videos of env 0 (see :func:`make_env`).
        run_name: names the video folder.
        training: the learner's env rather than an evaluation env (see :func:`build_env`).
        preprocessing: apply the id's standard preprocessing (``ALE/`` ids).
        vectorization: ``"sync"`` (one process, best for cheap envs), ``"async"`` (one
            subprocess per env) or, for preprocessed ``ALE/`` ids, ``"ale"`` (ALE's
            multithreaded vector env, :func:`kitae.envs.atari.make_ale_vec_env`) or
            ``"envpool"`` (:func:`kitae.envs.envpool.make_envpool_atari_env`).
        wrappers: gymnasium wrappers applied to every env.
        video_dir: parent folder of the videos.
        context: multiprocessing start method of the async workers.
        **env_kwargs: passed to :func:`build_env` (``gymnasium.make`` and the Atari options).

    Raises:
        ValueError: for ``n_envs < 1``, an unknown ``vectorization``, or ``"ale"`` /
            ``"envpool"`` for another id, without preprocessing or with wrappers or video.
    """
    if isinstance(n_envs, bool) or not isinstance(n_envs, numbers.Integral) or n_envs < 1:
        raise ValueError(f"n_envs={n_envs!r} is invalid: it must be an integer >= 1.")
    if vectorization not in VECTORIZATION_MODES:
        raise ValueError(
            f"vectorization={vectorization!r} is invalid: use one of {VECTORIZATION_MODES}."
        )
    if vectorization in ("ale", "envpool"):
        if not (is_atari_id(env_id) and preprocessing) or wrappers or capture_video:
            raise ValueError(
                f"vectorization={vectorization!r} is for preprocessed ALE/ ids without wrappers "
                f"or video (env_id={env_id!r}): use 'sync' or 'async'."
            )
        if vectorization == "envpool":
            from kitae.envs.envpool import make_envpool_atari_env

            return make_envpool_atari_env(env_id, n_envs, training=training, **env_kwargs)
        return make_ale_vec_env(env_id, n_envs, training=training, **env_kwargs)
    if capture_video:
        try:
            import moviepy  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "capture_video=True needs moviepy: pip install 'kitae[video]'."
            ) from err
    fns = [
        make_env(
            env_id,
            i,
            training=training,
            preprocessing=preprocessing,
            capture_video=capture_video,
            run_name=run_name,
            video_dir=video_dir,
            wrappers=wrappers,
            **env_kwargs,
        )
        for i in range(n_envs)
    ]
    if vectorization == "sync":
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    # Forking a process that runs JAX's thread pools can deadlock: start workers from a server.
    return gym.vector.AsyncVectorEnv(
        fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, context=context
    )
