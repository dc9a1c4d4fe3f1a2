"""Multi-agent training on PettingZoo ``ParallelEnv`` s with kitae's own agents.

* :mod:`kitae.multiagent.groups`: which PettingZoo agents share one kitae agent (parameter
  sharing, independent learners, or explicit groups) and how their observations are encoded.
* :mod:`kitae.multiagent.learners`: how one group's live transitions reach its kitae agent's
  replay buffer (off-policy, masked) or rollouts (on-policy, per-agent trajectories cut with
  truncation), and its jitted updates.
* :mod:`kitae.multiagent.trainer`: :class:`MultiAgentTrainer`, the loop (one jitted ``explore``
  call per group and one ``env.step`` per step), agents that finish early, per-agent returns
  logged through :class:`kitae.logger.Logger`.

Example::

    from mpe2 import simple_spread_v3
    from kitae.algos.dqn import DQN
    from kitae.multiagent import MultiAgentTrainer

    env = simple_spread_v3.parallel_env(N=3, max_cycles=25)
    trainer = MultiAgentTrainer(env, DQN, n_steps=50_000, grouping="shared", agent_id=True)
    trainer.train()
"""

from kitae.multiagent.groups import AgentGroup, Grouping, make_groups
from kitae.multiagent.learners import GroupLearner, OffPolicyLearner, OnPolicyLearner, make_learner
from kitae.multiagent.trainer import (
    EpisodeRecorder,
    MultiAgentTrainer,
    check_parallel_env,
    group_config,
)

__all__ = [
    "AgentGroup",
    "EpisodeRecorder",
    "GroupLearner",
    "Grouping",
    "MultiAgentTrainer",
    "OffPolicyLearner",
    "OnPolicyLearner",
    "check_parallel_env",
    "group_config",
    "make_groups",
    "make_learner",
]
