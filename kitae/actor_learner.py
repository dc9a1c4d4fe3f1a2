"""Actor-learner training on the gymnasium loop: env steps run beside the updates.

With ``train_cfg.actor_learner``, :meth:`kitae.host_loop.GymnasiumLoop.train` hands the env to one
actor thread. The actor acts (the agent's own :meth:`~kitae.agent.BaseAgent.explore`, on a copy of
the acting parameters) and steps the vector env; it sends the vector steps, a few at a time, through
a bounded queue. The calling thread, the learner, receives them in order and does with each what
the sequential loop does: episode statistics, logging, storing into the replay buffer / rollout,
the updates that became due, callbacks, checkpoints and evaluations. XLA releases the GIL while
it computes, so the env steps of the actor and the updates of the learner overlap, on two cores;
the run approaches ``max(update time, acting time)`` plus the learner's own storing,
instead of the sum of everything.

Staleness. Each publication of the acting parameters carries the learner's update count, its
*version*; the learner publishes its latest version whenever it has stored every step the
actor sent (so that the actor acts while the learner updates, not while the learner stores: the
two threads' Python shares the GIL). The actor always acts with the newest version it has
received, and before acting for vector step ``j`` it waits until it has a version
``>= U_j - max_staleness``, where ``U_j`` is the number of update calls the learner will have
made when it stores step ``j`` (all the updates that the steps before ``j`` made due; the
schedule comes from the agent's :meth:`~kitae.agent.BaseAgent.expected_updates`). So every
transition is acted with parameters at most ``K = train_cfg.max_staleness`` update calls behind
the learner's at the moment it is stored, and the learner checks it (a violation raises
``RuntimeError``). In particular:

* DQN and the other off-policy agents: an update call (its ``n_epochs`` gradient steps) is due
  every ``skip_steps`` transitions; the acting parameters lag the learner's by at most ``K``
  update calls, i.e. the actor may run up to ``K`` update periods ahead of the learner. Epsilon
  and every schedule read the actor's own transition counter, as in the sequential loop.
* PPO and the other on-policy agents: one update call per rollout, so a rollout may be collected
  with the parameters of up to ``K`` iterations before (``K = 1``: the next rollout is collected
  while the learner trains on the previous one). The rollout stores the behaviour policy's
  log-probabilities, so the probability ratio of the update stays that of the policy that acted.
* ``K = 0``: the actor waits for every update before acting past it; the run is the sequential
  one (same actions, keys, updates and checkpoints), with no overlap.

The interaction keys are the agent's stream, drawn by the actor in step order; the learner takes
over the key state of each step it stores, so checkpoints hold exactly the sequential loop's
fields and resuming works as usual. With one actor the env stream is reproducible: the same
keys act the same steps; only which version of the parameters acts where depends on timing
(``K > 0``).

Devices. The actor's parameters are its own copy (``jax.device_put(..., may_alias=False)``) on
the CPU, so an update that donates the train state never deletes arrays the actor holds, and on
a machine with an accelerator the acting runs on the CPU while the learner keeps the default
device.

Errors. An exception in the actor thread is raised again in the learner's thread, with its
traceback, when the learner reaches it; an exception in the learner (a callback, a checkpoint)
stops the actor. The actor thread never outlives :meth:`ActorLearner.close` (unless the env's own
``step`` hangs, which is warned about).
"""

from __future__ import annotations

import copy
import queue
import threading
import time
import warnings
from collections import deque
from typing import Any, NamedTuple

import jax
import numpy as np

from kitae.types import Agent

CHUNK_STEPS = 16
"""Vector steps the actor sends to the learner in one queue item (sooner when it must wait)."""
POLL_S = 0.05
"""Seconds between two checks of the other thread's state while a thread waits."""
JOIN_S = 30.0
"""Seconds :meth:`ActorLearner.close` waits for the actor thread to end."""


class VectorStep(NamedTuple):
    """One vector step of the gymnasium loop, as acted and stepped.

    Attributes:
        observation: the observations acted on, ``[N, ...]``.
        action: the actions stored, ``[N, ...]`` (``to_env_action`` of them went to the env).
        log_prob: their log-probabilities under the acting policy, ``[N]``.
        next_observation: what ``env.step`` returned (after an autoreset, the new episode's).
        reward: ``[N]``.
        terminated: ``bool[N]``.
        truncated: ``bool[N]``.
        infos: the env's info dict (``final_obs`` of the envs whose episode ended).
    """

    observation: Any
    action: np.ndarray
    log_prob: Any
    next_observation: Any
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    infos: dict


class _Acted(NamedTuple):
    """A vector step with what the learner needs to check and continue the actor's stream."""

    step: VectorStep
    version: int
    """The update count of the parameters that acted."""
    keys: tuple[Any, np.ndarray, int]
    """The agent's interaction-key state right after acting: ``(key, pool, index)``."""


class _Stopped(Exception):
    """Raised inside the actor thread when the learner asks it to stop."""


class _Failed(NamedTuple):
    """The queue item that reports the actor's exception."""

    error: BaseException


def actor_device() -> jax.Device:
    """The device the actor acts on: the first CPU device (the default device when JAX has no
    CPU backend)."""
    try:
        return jax.devices("cpu")[0]
    except RuntimeError:
        return jax.devices()[0]


def update_schedule(agent: Agent, n_vector_steps: int) -> np.ndarray:
    """``int64[n_vector_steps]``: entry ``j`` is the learner's update count when it stores vector
    step ``j`` of the coming ``train`` call (``agent.n_updates`` plus the update calls that the
    ``j`` steps before make due, from :meth:`~kitae.agent.BaseAgent.expected_updates`).

    Call it before the loop starts: ``expected_updates`` counts from the agent's current state.
    """
    n_envs = agent.config.env_cfg.n_envs
    due = np.fromiter(
        (agent.expected_updates(j * n_envs) if j else 0 for j in range(n_vector_steps)),
        np.int64,
        count=n_vector_steps,
    )
    return agent.n_updates + due


def check_actor_learner_agent(agent: Agent) -> None:
    """Raises ``ValueError`` for an agent whose acting cannot run apart from its learning.

    An agent with an acting state carried on the host between steps (``init_actor_state``, e.g.
    a recurrent core) stores, with each transition, state that its ``explore`` left on the
    agent; acting on a copy would lose it.
    """
    if getattr(agent, "init_actor_state", None) is not None:
        raise ValueError(
            f"train_cfg.actor_learner=True is not supported by {type(agent).__name__}: its "
            "acting carries a state between env steps (init_actor_state) that the stored "
            "transitions need. Set train_cfg.actor_learner=False."
        )


class ActorLearner:
    """The vector steps of one ``train`` call, acted and stepped by an actor thread.

    Iterating yields the :class:`VectorStep` s in order, in the calling (learner) thread, which
    stores each and runs its updates before asking for the next; every new update count is then
    published to the actor (see the module docstring for the staleness bound). Use it as
    ``with contextlib.closing(ActorLearner(...)) as steps: for step in steps: ...``.

    Args:
        agent: the learning agent; the actor acts on a shallow copy of it with its own
            parameters, transition counter and interaction keys.
        env: the vector env, stepped only by the actor until :meth:`close`.
        observation: the observations to act on first.
        n_vector_steps: vector steps to act, step and yield.
    """

    def __init__(self, agent: Agent, env: Any, observation: Any, n_vector_steps: int):
        check_actor_learner_agent(agent)
        cfg = agent.config.train_cfg
        self.agent = agent
        self.env = env
        self.max_staleness = int(cfg.max_staleness)
        self.n_vector_steps = n_vector_steps
        self.device = actor_device()
        self.schedule = update_schedule(agent, n_vector_steps)
        self._observation = observation
        self._copy_observations = getattr(env, "copy", True) is False
        capacity = max(1, -(-int(cfg.actor_queue_steps) // CHUNK_STEPS))
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._published = (agent.n_updates, self._acting_copy())
        self._published_cond = threading.Condition()
        self._stopping = threading.Event()
        self._pending: deque[_Acted] = deque()
        self._chunk: list[_Acted] = []
        self._received = 0
        self._lag_max = 0
        self._lag_sum = 0
        self._learner_wait_s = 0.0
        self._actor_wait_s = 0.0
        self._actor_cpu_s = 0.0
        self._thread: threading.Thread | None = None
        self._actor = self._make_actor()

    # ---- learner side ----------------------------------------------------------------------
    def __iter__(self) -> ActorLearner:
        return self

    def __next__(self) -> VectorStep:
        """The next vector step.

        The parameters of the updates that the previous steps ran are published when the
        learner has no other step to store (it yields the last one it has, or is about to wait
        for the actor): the actor acts while the learner updates, and not while the learner
        stores the steps it sent (the two threads' Python would share the GIL).

        Raises:
            StopIteration: after ``n_vector_steps`` steps, or once closed.
            BaseException: the actor's exception, when it failed.
            RuntimeError: if a step was acted with parameters more than ``max_staleness``
                updates behind the learner's.
        """
        if self._received >= self.n_vector_steps or self._stopping.is_set():
            raise StopIteration
        if self._thread is None:
            self._start()
        while not self._pending:
            if self._queue.empty():  # about to wait: the actor may be waiting for these
                self._publish_if_updated()
            start = time.perf_counter()
            item = self._get()
            self._learner_wait_s += time.perf_counter() - start
            if isinstance(item, _Failed):
                raise item.error
            self._pending.extend(item)
        acted = self._pending.popleft()
        if not self._pending and self._queue.empty():
            self._publish_if_updated()  # the body of this step may run the next update
        self._received += 1
        lag = self.agent.n_updates - acted.version
        if not 0 <= lag <= self.max_staleness:
            raise RuntimeError(
                f"vector step {self._received - 1} of this train call was acted with the "
                f"parameters of update {acted.version} while the learner has made "
                f"{self.agent.n_updates}: a lag of {lag} outside [0, train_cfg.max_staleness="
                f"{self.max_staleness}]. {type(self.agent).__name__}.expected_updates disagrees "
                "with the updates its loop runs."
            )
        self._lag_max = max(self._lag_max, lag)
        self._lag_sum += lag
        agent = self.agent
        agent._interact_key, agent._key_pool, agent._key_index = acted.keys
        return acted.step

    def close(self) -> None:
        """Stops the actor thread and waits for it (idempotent); the env is the caller's again.

        Warns if the thread is still running after :data:`JOIN_S` seconds (stuck in the env).
        """
        self._stopping.set()
        with self._published_cond:
            self._published_cond.notify_all()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        thread.join(JOIN_S)
        if thread.is_alive():
            warnings.warn(
                f"the actor thread did not stop within {JOIN_S:.0f} s (is env.step hanging?); "
                "it is left running as a daemon thread.",
                stacklevel=2,
            )
        while True:  # drop what the actor sent and the learner did not take
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    def stats(self) -> dict[str, float]:
        """What the run's time went to, over the steps yielded so far.

        Returns:
            ``acting_lag_max`` / ``acting_lag_mean``: how many updates behind the learner's the
            acting parameters were; ``learner_wait_s``: seconds the learner waited for the
            actor's steps; ``actor_wait_s``: seconds the actor waited for parameters or for room
            in the queue; ``actor_cpu_s``: CPU seconds of the actor thread (once it ended).
            The side that waits less bounds the run.
        """
        return {
            "acting_lag_max": self._lag_max,
            "acting_lag_mean": self._lag_sum / max(self._received, 1),
            "learner_wait_s": self._learner_wait_s,
            "actor_wait_s": self._actor_wait_s,
            "actor_cpu_s": self._actor_cpu_s,
        }

    def _acting_copy(self) -> Any:
        """The agent's acting state copied onto the actor's device (never aliased: updates may
        donate the train state)."""
        return jax.device_put(self.agent.acting_state, self.device, may_alias=False)

    def _publish_if_updated(self) -> None:
        """Publishes the learner's parameters if it updated them since the last publication."""
        if self.agent.n_updates == self._published[0]:
            return
        published = (self.agent.n_updates, self._acting_copy())
        with self._published_cond:
            self._published = published
            self._published_cond.notify_all()

    def _get(self) -> list[_Acted] | _Failed:
        """The next queue item; raises if the actor thread ended without sending one."""
        while True:
            try:
                return self._queue.get(timeout=POLL_S)
            except queue.Empty:
                if self._thread is None or not self._thread.is_alive():
                    try:
                        return self._queue.get_nowait()
                    except queue.Empty:
                        raise RuntimeError(
                            "the actor thread ended without sending the remaining vector steps."
                        ) from None

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run_actor, name="kitae-actor", daemon=True)
        self._thread.start()

    # ---- actor side -------------------------------------------------------------------------
    def _make_actor(self) -> Agent:
        """A shallow copy of the agent that acts: its own parameters (the published copy), update
        count, transition counter and key stream; everything else (jitted functions,
        schedules, hyperparameters) is shared."""
        actor = copy.copy(self.agent)
        version, state = self._published
        actor.state, actor._acting_state, actor.n_updates = state, state, version
        return actor

    def _needed_version(self, j: int) -> int:
        """The oldest parameters that may act for vector step ``j``."""
        return int(self.schedule[j]) - self.max_staleness

    def _refresh(self, actor: Agent) -> None:
        """Takes the newest published parameters, if newer than the actor's."""
        version, state = self._published
        if version != actor.n_updates:
            actor.state, actor._acting_state, actor.n_updates = state, state, version

    def _wait_for(self, actor: Agent, version: int) -> None:
        """Blocks until the published parameters are at least ``version``, then takes them."""
        start = time.perf_counter()
        with self._published_cond:
            while self._published[0] < version:
                if self._stopping.is_set():
                    raise _Stopped
                self._published_cond.wait(POLL_S)
        self._actor_wait_s += time.perf_counter() - start
        self._refresh(actor)

    def _put(self, item: list[_Acted] | _Failed) -> None:
        """Puts ``item`` on the queue, waiting for room unless the learner stops the actor."""
        start = time.perf_counter()
        try:
            while True:
                if self._stopping.is_set():
                    raise _Stopped
                try:
                    self._queue.put(item, timeout=POLL_S)
                    return
                except queue.Full:
                    continue
        finally:
            self._actor_wait_s += time.perf_counter() - start

    def _send_chunk(self) -> None:
        """Sends the steps acted since the last item, if any."""
        if self._chunk:
            chunk, self._chunk = self._chunk, []
            self._put(chunk)

    def _run_actor(self) -> None:
        """The actor thread: acts every step, then ends; an exception goes to the learner
        after the steps acted before it."""
        try:
            self._act_all()
        except _Stopped:
            return
        except BaseException as error:  # noqa: BLE001  (handed to the learner thread)
            try:
                self._send_chunk()
                self._put(_Failed(error))
            except _Stopped:
                return
        finally:
            self._actor_cpu_s = time.thread_time()

    def _act_all(self) -> None:
        """Acts and steps the ``n_vector_steps`` steps, waiting for fresh enough parameters
        before each, and sends them to the learner."""
        actor, env = self._actor, self.env
        n_envs = actor.config.env_cfg.n_envs
        obs = self._observation
        for j in range(self.n_vector_steps):
            if self._stopping.is_set():
                raise _Stopped
            self._refresh(actor)
            needed = self._needed_version(j)
            if actor.n_updates < needed:
                self._send_chunk()  # the learner needs these steps to reach the version
                self._wait_for(actor, needed)
            actions, log_probs = actor.explore(obs)
            actions = np.asarray(actions)
            keys = (actor._interact_key, actor._key_pool, actor._key_index)
            next_obs, rewards, terminated, truncated, infos = env.step(actor.to_env_action(actions))
            if self._copy_observations:
                next_obs = copy.deepcopy(next_obs)
                infos = copy.deepcopy(infos)
            actor.env_steps += n_envs
            step = VectorStep(
                obs, actions, np.asarray(log_probs), next_obs, rewards, terminated, truncated, infos
            )
            self._chunk.append(_Acted(step, actor.n_updates, keys))
            obs = next_obs
            if len(self._chunk) >= CHUNK_STEPS:
                self._send_chunk()
        self._send_chunk()


__all__ = [
    "ActorLearner",
    "VectorStep",
    "actor_device",
    "check_actor_learner_agent",
    "update_schedule",
]
