"""HumanModel driven by scripted key streams."""

from __future__ import annotations

import io

import numpy as np
import pytest

from kitae.models import WASD, HumanModel, QuitGame, scripted_keys
from kitae.models.human import render_text


def human(keys, **kwargs) -> tuple[HumanModel, io.StringIO]:
    out = io.StringIO()
    model = HumanModel((3, 3), 4, input_fn=scripted_keys(keys), output=out, **kwargs)
    return model, out


def test_wasd_keys_map_to_actions():
    model, out = human(["w", "S", "a", " d ", "2"])
    grid = np.zeros((3, 3), np.int64)
    assert [model.take_action(grid) for _ in range(5)] == [0, 1, 2, 3, 2]
    assert WASD == {"w": 0, "s": 1, "a": 2, "d": 3}
    assert "Action" not in out.getvalue()  # the prompt goes to input_fn, not the output


def test_invalid_keys_are_asked_again():
    model, out = human(["x", "9", "", "d"])
    assert model.take_action(np.zeros((3, 3))) == 3
    assert out.getvalue().count("is not a valid key") == 3


def test_quit_key_ends_the_game_cleanly():
    model, _ = human(["w", "q"])
    assert model.take_action(np.zeros((3, 3))) == 0
    with pytest.raises(QuitGame, match="quit"):
        model.take_action(np.zeros((3, 3)))
    assert model.quit


def test_too_many_invalid_keys_or_end_of_input_quit():
    model, _ = human(["x", "y"], max_invalid=2)
    with pytest.raises(QuitGame, match="invalid"):
        model.take_action(np.zeros((3, 3)))
    model, _ = human([])
    with pytest.raises(QuitGame, match="ended"):
        model.take_action(np.zeros((3, 3)))


def test_custom_key_map_and_validation():
    model, _ = human(["j", "k"], key_map={"j": 1, "k": 0})
    assert [model.take_action(np.zeros((3, 3))) for _ in range(2)] == [1, 0]
    with pytest.raises(ValueError, match="key_map"):
        HumanModel((3,), 2, key_map={"w": 5})
    with pytest.raises(ValueError, match="quit_key"):
        HumanModel((3,), 4, quit_key="w")
    with pytest.raises(ValueError, match="render"):
        HumanModel((3,), 4, render="pygame")


def test_terminal_rendering_shows_the_grid():
    grid = np.array([[0, 2, 0], [0, 0, 3], [1, 0, 0]])
    model, out = human(["d"])
    model.take_action(grid)
    assert render_text(grid) in out.getvalue()
    assert render_text(grid).splitlines() == [" # ", "  @", ".  "]
    onehot = np.zeros((2, 2, 3))
    onehot[0, 1, 2] = 1
    assert render_text(onehot).splitlines() == [" @", "  "]


def test_rgb_render_falls_back_to_text_without_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    out = io.StringIO()
    model = HumanModel(
        (2, 2, 3),
        4,
        input_fn=scripted_keys(["w"]),
        output=out,
        render="rgb",
        render_fn=lambda o: "FRAME",
    )
    assert model.take_action(np.zeros((2, 2, 3))) == 0
    assert "FRAME" in out.getvalue()


def test_a_scripted_player_walks_a_gridworld():
    """A person's keys (scripted) drive the same loop as any model; 'q' ends the episode."""
    size, goal = 3, (2, 2)
    moves = {0: (-1, 0), 1: (1, 0), 2: (0, -1), 3: (0, 1)}
    model, _ = human(["d", "s", "x", "d", "s", "q"])
    position, total, steps = (0, 0), 0.0, 0
    model.start_epoch_action()
    while True:
        grid = np.zeros((size, size), np.int64)
        grid[goal] = 2
        grid[position] = 3
        try:
            action = model.take_action(grid)
        except QuitGame:
            break
        dr, dc = moves[action]
        position = (
            min(max(position[0] + dr, 0), size - 1),
            min(max(position[1] + dc, 0), size - 1),
        )
        reward = 1.0 if position == goal else 0.0
        model.memory.add(grid, action, reward, position == goal)
        total += reward
        steps += 1
        if position == goal:
            position = (0, 0)
    assert steps == 4 and total == 1.0
    assert model.memory.n_transitions() == 2  # capacity 2: the terminal step and the one before
