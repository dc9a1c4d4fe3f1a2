"""A human player as a model: show the observation, read a key per step.

Rendering is in the terminal by default (a grid of characters, or array values); an RGB frame
is shown in a matplotlib window only when asked for and a display is available. Keys come from
an injectable ``input_fn`` (``input`` by default), so a scripted stream can play in tests.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TextIO

import numpy as np

from kitae.models.base import BaseModel

WASD = {"w": 0, "s": 1, "a": 2, "d": 3}
"""The default key map: ``w`` up 0, ``s`` down 1, ``a`` left 2, ``d`` right 3."""


SORREL_QUIT = "quit"
"""The word that quits by raising ``KeyboardInterrupt`` (Sorrel's human player's)."""


class QuitGame(Exception):
    """Raised by :meth:`HumanModel.take_action` when the player types the quit key."""


def scripted_keys(keys: Iterable[str]) -> Callable[[str], str]:
    """An ``input_fn`` that returns the given keys one per call (for tests and replays).

    Raises:
        EOFError: when the keys run out, as ``input`` does at the end of its stream.
    """
    iterator: Iterator[str] = iter(keys)

    def input_fn(prompt: str = "") -> str:
        del prompt
        try:
            return next(iterator)
        except StopIteration:
            raise EOFError("the scripted keys ran out") from None

    return input_fn


def render_text(obs: np.ndarray, symbols: str = " .#@*ox+") -> str:
    """Text rendering of an observation: a 2-D integer grid as one character per cell
    (``symbols[value]``), a one-hot ``[H, W, C]`` grid by its channel index, anything else as
    its array values."""
    obs = np.asarray(obs)
    grid = None
    if obs.ndim == 3 and obs.shape[-1] <= len(symbols) - 1:
        grid = np.where(obs.max(-1) > 0, obs.argmax(-1) + 1, 0)
    elif obs.ndim == 2 and np.issubdtype(obs.dtype, np.integer):
        grid = obs
    elif obs.ndim == 2 and np.all(obs == np.round(obs)) and obs.min() >= 0:
        grid = obs.astype(np.int64)
    if grid is not None and grid.max(initial=0) < len(symbols):
        return "\n".join("".join(symbols[int(v)] for v in row) for row in grid)
    return np.array2string(obs, precision=2, suppress_small=True)


def display_available() -> bool:
    """Whether a window can be opened (a display on Linux; always on macOS and Windows)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class HumanModel(BaseModel):
    """A person picks the actions: each step shows the observation and reads one key.

    Keys are looked up in ``key_map`` (case-insensitive); a non-negative integer below
    ``n_actions`` is taken as the action itself. Invalid keys are asked again (an explanation
    is printed); after ``max_invalid`` invalid keys in a row, or on ``quit_key``,
    :class:`QuitGame` is raised so the simulation can end the episode cleanly (it is an
    ``Exception``, not a ``KeyboardInterrupt``). Typing the word ``quit`` raises
    ``KeyboardInterrupt``, as Sorrel's human player does. Quitting either way sets :attr:`quit`.

    Args:
        obs_shape: shape of one observation.
        n_actions: number of actions.
        key_map: key -> action (default :data:`WASD`).
        quit_key: the key that ends the game.
        input_fn: ``input_fn(prompt) -> str``; ``input`` by default, :func:`scripted_keys` in
            tests.
        output: where the text rendering and prompts go (``sys.stdout`` by default).
        render: ``"text"`` (terminal), ``"rgb"`` (an ``[H, W, 3]`` frame in a matplotlib
            window when :func:`display_available`, else text) or ``"none"``.
        render_fn: custom ``render_fn(obs) -> str`` for the terminal.
        max_invalid: invalid keys in a row tolerated before quitting (``None``: no limit).
        memory_size: frames held by the memory (a human does not train; 2 is enough).
    """

    def __init__(
        self,
        obs_shape: tuple[int, ...] | int,
        n_actions: int,
        *,
        key_map: Mapping[str, int] | None = None,
        quit_key: str = "q",
        input_fn: Callable[[str], str] | None = None,
        output: TextIO | None = None,
        render: str = "text",
        render_fn: Callable[[np.ndarray], str] | None = None,
        max_invalid: int | None = 5,
        memory_size: int = 2,
    ):
        super().__init__(obs_shape, n_actions, memory_size)
        key_map = dict(WASD if key_map is None else key_map)
        for key, action in key_map.items():
            if not 0 <= int(action) < n_actions:
                raise ValueError(
                    f"key_map[{key!r}]={action!r} is invalid: actions are in [0, {n_actions})."
                )
        if quit_key.lower() in {k.lower() for k in key_map}:
            raise ValueError(f"quit_key={quit_key!r} is invalid: it is also in key_map.")
        if render not in ("text", "rgb", "none"):
            raise ValueError(f"render={render!r} is invalid: use 'text', 'rgb' or 'none'.")
        self.key_map = {k.lower(): int(v) for k, v in key_map.items()}
        self.quit_key = quit_key.lower()
        self.input_fn = input if input_fn is None else input_fn
        self.output = output
        self.render = render
        self.render_fn = render_text if render_fn is None else render_fn
        self.max_invalid = max_invalid
        self.quit = False
        self._figure: Any = None

    def _print(self, text: str) -> None:
        print(text, file=sys.stdout if self.output is None else self.output)

    def show(self, state: Any) -> None:
        """Shows the observation: a matplotlib window for ``render="rgb"`` with a display,
        otherwise text."""
        obs = np.asarray(state)
        if self.render == "none":
            return
        if self.render == "rgb" and obs.ndim == 3 and obs.shape[-1] == 3 and display_available():
            self._show_rgb(obs)
            return
        self._print(self.render_fn(obs))

    def _show_rgb(self, frame: np.ndarray) -> None:
        import matplotlib.pyplot as plt  # only when a window is wanted

        if self._figure is None:
            self._figure = plt.figure()
        self._figure.clf()
        self._figure.gca().imshow(np.clip(frame, 0, 255).astype(np.uint8))
        self._figure.canvas.draw_idle()
        plt.pause(0.001)

    def parse_key(self, key: str) -> int | None:
        """The action of ``key`` (``key_map``, or an action index), ``None`` if invalid."""
        key = key.strip().lower()
        if key in self.key_map:
            return self.key_map[key]
        if key.isdigit() and int(key) < self.n_actions:
            return int(key)
        return None

    def take_action(self, state: Any) -> int:
        """Shows ``state`` and reads keys until a valid one.

        Raises:
            QuitGame: on ``quit_key``, after ``max_invalid`` invalid keys, or when the input
                ends (``EOFError``).
            KeyboardInterrupt: on the word ``quit`` (Sorrel's way to quit), unless it is
                ``quit_key``.
        """
        self.show(state)
        keys = ", ".join(f"{k}={a}" for k, a in self.key_map.items())
        prompt = f"Action ({keys}, {self.quit_key} to quit): "
        invalid = 0
        while True:
            try:
                key = self.input_fn(prompt)
            except EOFError as error:
                self.quit = True
                raise QuitGame("input ended") from error
            if key.strip().lower() == self.quit_key:
                self.quit = True
                raise QuitGame("the player quit")
            if key.strip().lower() == SORREL_QUIT:
                self.quit = True
                raise KeyboardInterrupt("the player typed quit")
            action = self.parse_key(key)
            if action is not None:
                return action
            invalid += 1
            self._print(f"{key!r} is not a valid key; use {keys} or {self.quit_key}.")
            if self.max_invalid is not None and invalid >= self.max_invalid:
                self.quit = True
                raise QuitGame(f"{invalid} invalid keys in a row")


class HumanPlayer(HumanModel):
    """Sorrel's human player: ``HumanPlayer(input_size, action_space, memory_size, show)``.

    A :class:`HumanModel` with the default key map (``w`` ``s`` ``a`` ``d`` for actions 0-3, or
    an action's number), shown as text when ``show``. Typing ``quit`` raises
    ``KeyboardInterrupt`` as in Sorrel; ``q`` raises :class:`QuitGame`.

    Args:
        input_size: shape of one observation.
        action_space: number of actions.
        memory_size: frames held by the memory (at least 2 are kept; a human does not train).
        show: print each observation before asking for a key.
        **kwargs: any other :class:`HumanModel` argument (``input_fn``, ``output``...).
    """

    def __init__(
        self,
        input_size: int | Sequence[int],
        action_space: int,
        memory_size: int = 2,
        show: bool = True,
        **kwargs: Any,
    ):
        if "render" in kwargs:
            raise TypeError("HumanPlayer takes show, not render (use HumanModel for render).")
        self.show_state = bool(show)
        super().__init__(
            input_size,
            action_space,
            memory_size=max(2, int(memory_size)),
            render="text" if show else "none",
            **kwargs,
        )
