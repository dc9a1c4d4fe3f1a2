"""kitae: functional reinforcement-learning agents in JAX.

On import, and only if JAX's CPU backend has not been initialised yet, kitae sets two CPU
defaults that suit reinforcement learning's many small computations; neither changes results:

* JAX's asynchronous dispatch on CPU is turned off (``jax_cpu_enable_async_dispatch``): a
  gymnasium loop makes one small jitted call per env step and waits for its result, and
  synchronous dispatch halves the cost of such calls. Set ``KITAE_CPU_ASYNC_DISPATCH=1`` to keep
  it.
* XLA's multi-threaded Eigen kernels are turned off (``--xla_cpu_multi_thread_eigen=false`` in
  ``XLA_FLAGS``, unless ``XLA_FLAGS`` already sets it): with small networks, splitting each
  matrix product over threads costs more than it saves (8 vmapped PPO seeds train 1.7x faster
  without it on 2 cores). Set ``KITAE_CPU_MULTI_THREAD_EIGEN=1`` to keep XLA's default.
"""

import os

if os.environ.get("KITAE_CPU_MULTI_THREAD_EIGEN", "0") != "1":
    _flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in _flags:
        os.environ["XLA_FLAGS"] = f"{_flags} --xla_cpu_multi_thread_eigen=false".strip()

import jax  # noqa: E402

if os.environ.get("KITAE_CPU_ASYNC_DISPATCH", "0") != "1":
    jax.config.update("jax_cpu_enable_async_dispatch", False)

__version__ = "0.2.0"
