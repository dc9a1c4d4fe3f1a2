"""Vectorized gymnasium environments with same-step autoreset.

kitae's loop needs ``AutoresetMode.SAME_STEP``: when an episode ends, ``step`` returns the first
observation of the next episode and puts the true final observation in
``infos["final_obs"]``, so every returned step is a valid transition.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

VECTORIZATION_MODES = ("sync", "async")


def make_env(
    env_id: str,
    idx: int = 0,
    *,
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
        capture_video: wrap env 0 in ``gymnasium.wrappers.RecordVideo`` (needs ``moviepy``,
            the ``kitae[video]`` extra), writing to ``video_dir/run_name``.
        run_name: names the video folder.
        video_dir: parent folder of the videos.
        wrappers: applied in order to every env.
        **env_kwargs: passed to ``gymnasium.make``.
    """

    kwargs = dict(env_kwargs)
    if capture_video and idx == 0:
        kwargs["render_mode"] = "rgb_array"

    def thunk() -> gym.Env:
        env = gym.make(env_id, **kwargs)
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
        vectorization: ``"sync"`` (one process, best for cheap envs) or ``"async"`` (one
            subprocess per env).
        wrappers: gymnasium wrappers applied to every env.
        video_dir: parent folder of the videos.
        context: multiprocessing start method of the async workers.
        **env_kwargs: passed to ``gymnasium.make``.

    Raises:
        ValueError: for ``n_envs < 1`` or an unknown ``vectorization``.
    """
    if isinstance(n_envs, bool) or not isinstance(n_envs, numbers.Integral) or n_envs < 1:
        raise ValueError(f"n_envs={n_envs!r} is invalid: it must be an integer >= 1.")
    if vectorization not in VECTORIZATION_MODES:
        raise ValueError(
            f"vectorization={vectorization!r} is invalid: use one of {VECTORIZATION_MODES}."
        )
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
