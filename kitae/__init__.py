"""kitae: functional reinforcement-learning agents in JAX.

On import, kitae turns off JAX's asynchronous dispatch on CPU (``jax_cpu_enable_async_dispatch``)
unless the environment variable ``KITAE_CPU_ASYNC_DISPATCH=1`` is set: a gymnasium loop makes one
small jitted call per env step and waits for its result, and synchronous dispatch halves the cost
of such calls. It only takes effect if JAX's CPU backend has not been initialised yet, and it does
not change results.
"""

import os

import jax

if os.environ.get("KITAE_CPU_ASYNC_DISPATCH", "0") != "1":
    jax.config.update("jax_cpu_enable_async_dispatch", False)

__version__ = "0.2.0"
