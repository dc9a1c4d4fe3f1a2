"""Mutants of the frame-stack replay buffer (kitae.frame_replay) and of the episode-boundary
rules it shares with the models' FrameStackMemory (kitae.frame_stack)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

import kitae.frame_replay as frame_replay
import kitae.models.memory as memory
from kitae.frame_replay import FrameStackReplayBuffer
from mutants import mutant

TESTS = "tests/test_frame_replay.py"
PADDING = f"{TESTS}::test_stacks_at_episode_starts_are_padded_as_the_env_pads_them"
EVERY = f"{TESTS}::test_every_sampleable_transition_is_the_one_stored_after_wraparound"
OVERWRITTEN = f"{TESTS}::test_transitions_whose_stack_was_overwritten_are_never_drawn"
LIVES = f"{TESTS}::test_a_game_that_goes_on_after_a_lost_life_continues_its_stacks"
WINDOWS = f"{TESTS}::test_n_step_windows_are_consecutive_transitions_across_episode_ends"
HELD_PRIORITIZED = f"{TESTS}::test_prioritized_replay_draws_only_held_stacks_and_stored_windows"
MISMATCH = f"{TESTS}::test_mismatching_observations_are_counted_and_refused"
CUT = f"{TESTS}::test_end_episodes_cuts_the_running_episode"
MEMORY = "tests/test_models_memory.py::test_memory_matches_reference"


def keep_everything(first, xp=jnp):
    return xp.ones(first.shape, bool)


@mutant(
    "frame-replay-stacks-cross-episodes",
    "rebuilt stacks keep the frames of the previous episode instead of padding",
    [f"{PADDING}[zero]", EVERY],
)
def _(monkeypatch):
    monkeypatch.setattr(frame_replay, "in_episode", keep_everything)


@mutant(
    "frame-replay-pads-with-zeros-only",
    "stacks are zero-padded even for an env that pads with the episode's first frame",
    [f"{PADDING}[reset]"],
)
def _(monkeypatch):
    original = frame_replay.padding_sources

    def padding_sources(keep, pad_first, xp=jnp):
        return original(keep, xp.zeros_like(pad_first), xp)

    monkeypatch.setattr(frame_replay, "padding_sources", padding_sources)


@mutant(
    "frame-replay-final-frame-not-stored",
    "the true final frame of an ended episode is not written: its next observation is stale",
    [f"{PADDING}[zero]", EVERY],
)
def _(monkeypatch):
    original = FrameStackReplayBuffer._plan

    def _plan(self, state, experience, valid):
        plan, first, counters = original(self, state, experience, valid)
        ended = experience.done.astype(bool) | experience.truncated.astype(bool)
        next_slots = jnp.where(ended, self.slots_per_env, plan.next_slots)
        return plan._replace(next_slots=next_slots), first, counters

    monkeypatch.setattr(FrameStackReplayBuffer, "_plan", _plan)


@mutant(
    "frame-replay-samples-overwritten-stacks",
    "transitions whose stack's first frames were overwritten by the ring can be drawn",
    [f"{OVERWRITTEN}[three-games]", EVERY],
)
def _(monkeypatch):
    monkeypatch.setattr(frame_replay, "stack_is_held", lambda keep, rank: rank >= 0)


@mutant(
    "frame-replay-lost-life-restarts-stacks",
    "an episode that continues the previous one's frames (a lost life) is padded as a new stack",
    [LIVES],
)
def _(monkeypatch):
    monkeypatch.setattr(
        FrameStackReplayBuffer,
        "_continues",
        lambda self, state, experience, previous: jnp.zeros(previous.shape, bool),
    )


@mutant(
    "frame-replay-windows-count-slots",
    "n-step windows take the following slots, final frames included, not the next transitions",
    [WINDOWS],
)
def _(monkeypatch):
    original = FrameStackReplayBuffer.gather

    def gather(self, state, slots, envs, length=None):
        if length is None:
            return original(self, state, slots, envs)
        times = (slots[:, None] + jnp.arange(length)) % self.slots_per_env
        return original(self, state, times, jnp.broadcast_to(envs[:, None], times.shape))

    monkeypatch.setattr(FrameStackReplayBuffer, "gather", gather)


@mutant(
    "frame-replay-prioritized-ignores-stack-bounds",
    "prioritized frame replay draws any transition slot held, with overwritten stack frames or "
    "an unfinished window",
    [HELD_PRIORITIZED],
)
def _(monkeypatch):
    def _start_mask(self, state, length):
        t_max = self.slots_per_env
        rank = (jnp.arange(t_max)[:, None] - self._oldest(state)[None, :]) % t_max
        return state.step & (rank < state.size[None, :])

    monkeypatch.setattr(FrameStackReplayBuffer, "_start_mask", _start_mask)


@mutant(
    "frame-replay-check-disabled",
    "observations the buffer cannot rebuild are not counted: training goes on with wrong stacks",
    [MISMATCH],
)
def _(monkeypatch):
    monkeypatch.setattr(
        FrameStackReplayBuffer,
        "_mismatches",
        lambda self, state, experience, plan: jnp.zeros((), jnp.int32),
    )


@mutant(
    "frame-replay-end-episodes-does-nothing",
    "moving to another env does not end the running episodes in the frame-stack buffer",
    [CUT],
)
def _(monkeypatch):
    monkeypatch.setattr(
        FrameStackReplayBuffer, "end_episodes", lambda self, state, envs=None: state
    )


@mutant(
    "memory-stacks-cross-episodes",
    "the models' FrameStackMemory keeps frames of the previous episode in its stacks",
    [MEMORY],
)
def _(monkeypatch):
    import numpy as np

    monkeypatch.setattr(memory, "in_episode", lambda first, xp=np: np.ones(first.shape, bool))


@mutant(
    "memory-samples-overwritten-stacks",
    "the models' FrameStackMemory samples steps whose stack's first frames were overwritten",
    [MEMORY],
)
def _(monkeypatch):
    monkeypatch.setattr(memory, "stack_is_held", lambda keep, rank: rank >= 0)


@mutant(
    "replay-end-episodes-does-nothing",
    "moving to another env leaves the flat buffer's newest transitions open: n-step windows run "
    "on into the other env's episodes",
    [
        "tests/test_buffer.py::test_end_episodes_marks_the_newest_transition_truncated_unless_it_is_done",
        "tests/test_agents.py::test_train_on_another_env_resets_it_and_the_running_episode_statistics",
    ],
)
def _(monkeypatch):
    from kitae.buffer import ReplayBuffer

    monkeypatch.setattr(ReplayBuffer, "end_episodes", lambda self, state, envs=None: state)


@mutant(
    "checkpoint-new-config-fields-refused",
    "a checkpoint written before a config field existed is refused although the field holds "
    "its default",
    [f"{TESTS}::test_checkpoints_written_before_the_frame_stack_fields_still_restore"],
)
def _(monkeypatch):
    import kitae.checkpoint.restoring as restoring

    monkeypatch.setattr(restoring, "_added_at_default", lambda saved, config, name: False)


ROUND_TRIP = f"{TESTS}::test_uint8_pixel_frames_round_trip_across_the_rings_wraparound"
MILLION = f"{TESTS}::test_a_million_atari_transitions_fit_in_8_gb"
GYMNASIUM = f"{TESTS}::test_dqn_trains_on_the_gymnasium_path_with_frame_stack_replay"
CHECKPOINT = f"{TESTS}::test_checkpoints_save_and_restore_the_frame_stack_buffer"


@mutant(
    "frame-replay-frames-stored-as-float32",
    "frames are stored as float32 rather than in the observations' dtype: 4x the memory",
    [MILLION, f"{ROUND_TRIP}[add]"],
)
def _(monkeypatch):
    original = FrameStackReplayBuffer.init

    def init(self, example):
        state = original(self, example)
        return state.replace(frames=state.frames.astype(jnp.float32))

    monkeypatch.setattr(FrameStackReplayBuffer, "init", init)


@mutant(
    "frame-replay-samples-cast-to-float32",
    "sampled observations come back as float32 instead of the stored uint8",
    [f"{ROUND_TRIP}[add]", GYMNASIUM],
)
def _(monkeypatch):
    original = FrameStackReplayBuffer._stacks

    def _stacks(self, state, slots, envs):
        obs, nxt = original(self, state, slots, envs)
        return obs.astype(jnp.float32), nxt.astype(jnp.float32)

    monkeypatch.setattr(FrameStackReplayBuffer, "_stacks", _stacks)


@mutant(
    "frame-replay-window-not-wrapped",
    "the stack window is not taken modulo the ring: stacks at the ring's end read clamped slots",
    [f"{ROUND_TRIP}[add]", EVERY],
)
def _(monkeypatch):
    original = FrameStackReplayBuffer._stacks

    def _stacks(self, state, slots, envs):
        # read the window from a ring padded with copies of its last slot, as a clamped gather
        t_max = self.slots_per_env
        pad = lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], self.n_frames, 0)])  # noqa: E731
        wide = state.replace(
            frames=pad(state.frames), first=pad(state.first), pad_first=pad(state.pad_first)
        )
        wider = dataclasses.replace(self, capacity=(t_max + self.n_frames) * self.n_envs)
        return original(wider, wide, slots, envs)

    monkeypatch.setattr(FrameStackReplayBuffer, "_stacks", _stacks)


@mutant(
    "dqn-casts-pixels-before-the-network",
    "DQN turns sampled uint8 observations into float32 before its network (unscaled pixels)",
    [GYMNASIUM],
)
def _(monkeypatch):
    import kitae.algos.dqn as dqn

    original = dqn.bootstrap_transition

    def bootstrap_transition(experience, gamma):
        t = original(experience, gamma)
        return t._replace(
            observation=t.observation.astype(jnp.float32),
            next_observation=t.next_observation.astype(jnp.float32),
        )

    monkeypatch.setattr(dqn, "bootstrap_transition", bootstrap_transition)


@mutant(
    "checkpoint-frame-buffer-not-restored",
    "restoring a checkpoint starts an empty frame-stack buffer instead of the saved one",
    [CHECKPOINT],
)
def _(monkeypatch):
    import jax

    import kitae.checkpoint.restoring as restoring

    def _restore_buffer(agent, raw):
        example = agent.replay_buffer.saved_example(raw, agent.experience_type)
        return jax.jit(agent.replay_buffer.init)(example)

    monkeypatch.setattr(restoring, "_restore_buffer", _restore_buffer)
