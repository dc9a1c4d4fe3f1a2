"""The command line: every config field parses, bad values are refused naming the field, YAML
configs, run directories, train / resume / eval / plot / sweep end to end."""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import yaml

from kitae.cli import main
from kitae.cli.runs import (
    ALGORITHMS,
    CONFIG_SECTIONS,
    RUN_OPTION_NAMES,
    default_spec,
    dict_to_args,
    gymnax_id,
    parse_spec,
    spec_to_dict,
)
from kitae.cli.sweep import (
    Param,
    member_args,
    members,
    parse_param,
    program_groups,
    wandb_sweep_config,
)
from kitae.plotting import expand_run_dirs, group_runs, plot_runs, read_curve, smooth

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

FAST_DQN = [
    "--algo-params.hidden-sizes",
    "16",
    "--algo-params.start-step",
    "200",
    "--update-cfg.max-buffer-size",
    "2000",
    "--update-cfg.batch-size",
    "32",
    "--train-cfg.n-env-steps",
    "800",
    "--eval-episodes",
    "2",
    "--quiet",
]


def _flag(path: str) -> str:
    return "--" + path.replace("_", "-")


def _other_value(hint: typing.Any, default: typing.Any) -> tuple[list[str], typing.Any]:
    """Command-line tokens of a valid value different from ``default``, and the parsed value."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Literal:
        other = next(a for a in args if a != default)
        return [str(other)], other
    if isinstance(default, bool):
        return [], not default
    if default is None:
        inner = next(a for a in args if a is not type(None))
        return _other_value(inner, {int: 3, float: 0.5, str: "x"}.get(inner, 0))
    if isinstance(default, int):
        return [str(default + 3)], default + 3
    if isinstance(default, float):
        value = default * 2 + 0.25
        return [repr(value)], value
    if isinstance(default, str):
        return ["other"], "other"
    if isinstance(default, (tuple, list)):
        if default and isinstance(default[0], str):
            return ["csv", "console"], ("csv", "console")
        return ["7", "5"], (7, 5)
    raise AssertionError(f"no test value for {hint!r} = {default!r}")


def _leaf_fields(algo: str):
    spec = default_spec(algo)
    for name in RUN_OPTION_NAMES:
        hint = typing.get_type_hints(type(spec))[name]
        yield name, hint, getattr(spec, name)
    for section in CONFIG_SECTIONS:
        part = getattr(spec, section)
        hints = typing.get_type_hints(type(part))
        for f in dataclasses.fields(part):
            yield f"{section}.{f.name}", hints[f.name], getattr(part, f.name)


def _get(spec, path):
    for part in path.split("."):
        spec = getattr(spec, part)
    return spec


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_every_field_of_every_algorithm_parses_from_its_flag(algo):
    for path, hint, default in _leaf_fields(algo):
        tokens, expected = _other_value(hint, default)
        if isinstance(default, bool):
            head, _, leaf = path.rpartition(".")
            flag = _flag(path) if expected else _flag(f"{head}.no_{leaf}" if head else f"no_{leaf}")
            argv = [flag]
        else:
            argv = [_flag(path), *tokens]
        _, spec = parse_spec(algo, argv)
        value = _get(spec, path)
        if isinstance(expected, tuple):
            value = tuple(value)
        assert value == expected, (path, argv, value)


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_a_value_that_does_not_parse_is_refused_naming_its_flag(algo, capsys):
    for path, hint, default in _leaf_fields(algo):
        if (
            isinstance(default, (bool, str))
            or str in typing.get_args(hint)
            or (isinstance(default, tuple) and default and isinstance(default[0], str))
        ):
            continue  # any text is a valid str; booleans take no value
        with pytest.raises(SystemExit) as exit_info:
            parse_spec(algo, [_flag(path), "not-a-number"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert _flag(path) in err.replace("_", "-"), (path, err)


def test_help_lists_every_field_with_its_default_and_doc(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_spec("dqn", ["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for path, _, _ in _leaf_fields("dqn"):
        assert _flag(path) in out, path
    assert "optimizer step size. (default: 0.0023)" in out  # docstring and DQN's own default
    assert "(default: 100000)" in out  # the tuned length of dqn on CartPole-v1 (kitae.zoo)


def test_invalid_value_is_refused_naming_the_field_before_anything_is_written(tmp_cwd, capsys):
    status = main(["train", "dqn", "--update-cfg.learning-rate", "-1", "--quiet"])
    assert status == 2
    assert "update_cfg.learning_rate" in capsys.readouterr().err
    assert not (tmp_cwd / "runs").exists()
    assert main(["train", "dqn", "--n-envs", "0", "--quiet"]) == 2
    assert "n_envs" in capsys.readouterr().err
    assert main(["train", "dqn", "--env", "NoSuchEnv-v0", "--quiet"]) == 2
    assert "NoSuchEnv-v0" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../escaped", "../../x", "a/b", "..", ".", "", "/tmp/abs-run"])
def test_a_run_name_is_one_directory_name_inside_the_runs_dir(tmp_cwd, capsys, name):
    runs = tmp_cwd / "sub" / "runs"
    status = main(["train", "dqn", "--runs-dir", str(runs), "--run-name", name, "--quiet"])
    assert status == 2
    assert "run_name=" in capsys.readouterr().err
    assert not any(tmp_cwd.iterdir())  # nothing written, inside or outside the runs dir
    assert not Path("/tmp/abs-run").exists()


def test_a_run_name_from_a_yaml_file_cannot_escape_either(tmp_cwd, capsys):
    (tmp_cwd / "shared.yaml").write_text(yaml.safe_dump({"run_name": "../outside"}))
    status = main(["train", "dqn", "--config", "shared.yaml", "--runs-dir", "runs", "--quiet"])
    assert status == 2
    assert "run_name='../outside'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_cwd.iterdir()) == ["shared.yaml"]


def test_a_run_name_or_runs_dir_that_is_a_file_is_a_clear_error(tmp_cwd, capsys):
    (tmp_cwd / "runs").mkdir()
    (tmp_cwd / "runs" / "taken").write_text("not a run")
    assert main(["train", "dqn", "--run-name", "taken", "--quiet"]) == 2
    assert "is a file, not a run directory" in capsys.readouterr().err
    (tmp_cwd / "afile").write_text("x")
    assert main(["train", "dqn", "--runs-dir", "afile", "--run-name", "r", "--quiet"]) == 2
    assert "runs_dir='afile' is a file" in capsys.readouterr().err


def test_yaml_config_is_overridden_by_flags_and_unknown_fields_are_refused(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "algo": "dqn",
                "seed": 4,
                "algo_params": {"gamma": 0.95, "double_q": False, "hidden_sizes": [8, 8]},
                "update_cfg": {"learning_rate": 1e-3, "max_grad_norm": None},
                "train_cfg": {"n_env_steps": 1234, "loggers": ["csv"]},
            }
        )
    )
    algo, spec = parse_spec(None, ["--algo-params.gamma", "0.9"], config_file=path)
    assert algo == "dqn" and spec.seed == 4
    assert spec.algo_params.gamma == 0.9  # the flag wins over the file
    assert spec.algo_params.double_q is False
    assert tuple(spec.algo_params.hidden_sizes) == (8, 8)
    assert spec.update_cfg.learning_rate == 1e-3 and spec.update_cfg.max_grad_norm is None
    assert spec.train_cfg.n_env_steps == 1234 and tuple(spec.train_cfg.loggers) == ("csv",)

    with pytest.raises(ValueError, match=r"algo_params.gama"):
        dict_to_args("dqn", {"algo_params": {"gama": 0.9}}, "f.yaml")
    with pytest.raises(ValueError, match="not 'ppo'"):
        parse_spec("ppo", [], config_file=path)
    with pytest.raises(ValueError, match="unknown field 'envv'"):
        dict_to_args("dqn", {"envv": "x"}, "f.yaml")


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_spec_dict_round_trips_through_the_command_line(algo):
    spec = default_spec(algo)
    spec.seed, spec.train_cfg.n_env_steps = 3, 999
    data = spec_to_dict(algo, spec)
    _, parsed = parse_spec(algo, dict_to_args(algo, data, "test"))
    assert spec_to_dict(algo, parsed) == data


def test_gymnax_ids_are_recognised():
    assert gymnax_id("gymnax:CartPole-v1") == "CartPole-v1"
    assert gymnax_id("CartPole-v1") is None  # gymnasium's own
    assert gymnax_id("Catch-bsuite") == "Catch-bsuite"


def _report(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_resume_eval_and_plot_a_gymnasium_run(tmp_cwd, capsys):
    args = ["train", "dqn", *FAST_DQN, "--run-name", "r", "--train-cfg.save-frequency", "400"]
    assert main(args) == 0
    report = _report(capsys)
    run = tmp_cwd / "runs" / "r"
    assert report["env_steps"] == 800 and report["run_dir"] == str(Path("runs") / "r")
    assert {"config.yaml", "config.json", "episodes.jsonl", "eval.jsonl", "checkpoints"} <= {
        p.name for p in run.iterdir()
    }
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == [
        "step_000000400",
        "step_000000800",
    ]
    # config.yaml reproduces the run's spec exactly
    _, saved = parse_spec(None, [], config_file=run / "config.yaml")
    assert saved.train_cfg.n_env_steps == 800 and tuple(saved.algo_params.hidden_sizes) == (16,)
    assert saved.run_name == "r"

    # the same explicit run name is refused, naming resume
    assert main(args) == 2
    assert "kitae resume" in capsys.readouterr().err

    # --checkpoint picks an earlier checkpoint of the run (e.g. before a damaged one)
    assert main(["resume", str(run), "--checkpoint", "step_9", "--quiet"]) == 2
    assert "step_000000400, step_000000800" in capsys.readouterr().err
    resume_400 = ["resume", str(run), "--checkpoint", "step_000000400", "--steps", "400"]
    assert main([*resume_400, "--quiet"]) == 0
    assert _report(capsys)["env_steps"] == 800  # 400 after step 400 (the latest would give 1200)

    # resume continues the counters from the checkpoint
    with pytest.warns(UserWarning, match="annealed to 0"):  # 1200 > the config's 800
        assert main(["resume", str(run), "--steps", "400", "--quiet"]) == 0
    assert _report(capsys)["env_steps"] == 1200
    assert "step_000001200" in (run / "checkpoints" / "latest").read_text()

    assert main(["eval", str(run), "--episodes", "3", "--quiet"]) == 0
    report = _report(capsys)
    assert report["eval_episodes"] == 3 and report["env_steps"] == 1200
    rows = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [800, 1200, 1200]

    assert main(["plot", str(run), "-o", str(tmp_cwd / "out" / "curve.png")]) == 0
    assert (tmp_cwd / "out" / "curve.png").read_bytes()[:8] == PNG_SIGNATURE
    assert {p.name for p in tmp_cwd.iterdir()} == {"runs", "out"}  # nothing else written


def test_eval_records_a_video(tmp_cwd, capsys):
    pytest.importorskip("moviepy")
    pytest.importorskip("pygame")
    assert main(["train", "dqn", *FAST_DQN, "--run-name", "v", "--video"]) == 0
    videos = _report(capsys)["videos"]
    assert len(videos) == 1 and videos[0].endswith(".mp4")
    assert Path(videos[0]).stat().st_size > 1000
    assert Path(videos[0]).parent == Path("runs", "v", "videos")


def test_train_on_a_gymnax_id_uses_the_compiled_path_and_logs_evaluations(tmp_cwd, capsys):
    args = ["train", "dqn", "--env", "gymnax:CartPole-v1", *FAST_DQN, "--run-name", "g"]
    args += ["--train-cfg.log-frequency", "200", "--train-cfg.eval-frequency", "400"]
    assert main(args) == 0
    report = _report(capsys)
    assert report["env_steps"] == 800 and report["eval_episodes"] == 2
    run = tmp_cwd / "runs" / "g"
    rows = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    # periodic evaluations on the compiled path at 400 and 800, then the final one
    assert [r["step"] for r in rows] == [400, 800, 800]
    assert main(["eval", str(run), "--episodes", "4", "--quiet"]) == 0
    assert _report(capsys)["eval_episodes"] == 4
    assert main(["resume", str(run), "--steps", "200", "--quiet"]) == 0  # the compiled carry
    assert _report(capsys)["env_steps"] == 1000
    assert main(["eval", str(run), "--video"]) == 2
    assert "gymnax" in capsys.readouterr().err


def test_eval_of_a_directory_without_checkpoint_is_a_clear_error(tmp_cwd, capsys):
    (tmp_cwd / "empty").mkdir()
    assert main(["eval", "empty"]) == 2
    assert "empty" in capsys.readouterr().err


# ---- sweeps --------------------------------------------------------------------------------------


def test_sweep_params_grid_random_and_errors():
    lr = parse_param("dqn", "update_cfg.learning_rate=1e-3,3e-4")
    gamma = parse_param("dqn", "algo_params.gamma=0.9,0.99")
    assert lr == Param("update_cfg.learning_rate", ("1e-3", "3e-4"))
    grid = members([lr, gamma], None)
    assert len(grid) == 4 and {m["algo_params.gamma"] for m in grid} == {"0.9", "0.99"}

    log = parse_param("dqn", "update_cfg.learning_rate=loguniform(1e-4, 1e-2)")
    n_step = parse_param("dqn", "algo_params.n_step=randint(1,3)")
    drawn = members([log, n_step], 50, seed=1)
    lrs = np.asarray([float(m["update_cfg.learning_rate"]) for m in drawn])
    assert len(drawn) == 50 and lrs.min() >= 1e-4 and lrs.max() <= 1e-2
    assert {m["algo_params.n_step"] for m in drawn} == {"1", "2", "3"}
    assert members([log, n_step], 50, seed=1) == drawn  # the draw is seeded

    with pytest.raises(ValueError, match="--random"):
        members([log], None)
    with pytest.raises(ValueError, match="algo_params has no field 'gama'"):
        parse_param("dqn", "algo_params.gama=0.9")
    with pytest.raises(ValueError, match="seeds"):
        parse_param("dqn", "seed=1,2")
    assert member_args("dqn", {"algo_params.double_q": "false"}) == ["--algo-params.no-double-q"]
    assert member_args("dqn", {"algo_params.hidden_sizes": "8 8"}) == [
        "--algo-params.hidden-sizes",
        "8",
        "8",
    ]


def test_compiled_sweep_groups_traced_values_into_one_program():
    def run(member: dict[str, str], seed: int):
        from kitae.cli.sweep import _spec_with_seed

        return ("m", member, seed, _spec_with_seed("dqn", member_args("dqn", member), None, seed))

    lr_runs = [run({"update_cfg.learning_rate": v}, s) for v in ("1e-3", "3e-3") for s in (0, 1)]
    eps_runs = [run({"algo_params.exploration_end": "0.1"}, 0)]
    assert len(program_groups("dqn", lr_runs + eps_runs)) == 1  # all traced: one program
    size_runs = [run({"algo_params.hidden_sizes": v}, 0) for v in ("8", "16")]
    assert len(program_groups("dqn", size_runs)) == 2  # network shapes: one program each


def test_wandb_sweep_config_mirrors_the_params():
    params = [
        parse_param("dqn", "update_cfg.learning_rate=loguniform(1e-4,1e-2)"),
        parse_param("dqn", "algo_params.gamma=0.9,0.99"),
    ]
    config = wandb_sweep_config("dqn", params, 10, ["--env", "CartPole-v1"])
    assert config["method"] == "random"
    assert config["parameters"]["update_cfg.learning_rate"] == {
        "distribution": "log_uniform_values",
        "min": 1e-4,
        "max": 1e-2,
    }
    assert config["parameters"]["algo_params.gamma"] == {"values": ["0.9", "0.99"]}
    assert config["command"][:5] == ["kitae", "train", "dqn", "--env", "CartPole-v1"]
    assert config["command"][-1] == "${args}"


@pytest.mark.slow
def test_compiled_sweep_trains_every_member_and_seed(tmp_cwd, capsys):
    argv = ["sweep", "dqn", "--env", "gymnax:CartPole-v1", *FAST_DQN, "--name", "s"]
    argv += ["--param", "update_cfg.learning_rate=1e-3,1e-2", "--seeds", "2"]
    assert main(argv) == 0
    sweep = tmp_cwd / "runs" / "s"
    results = [json.loads(x) for x in (sweep / "results.jsonl").read_text().splitlines()]
    assert len(results) == 4 and {r["seed"] for r in results} == {0, 1}
    assert "| update_cfg.learning_rate |" in (sweep / "summary.md").read_text()
    assert (sweep / "sweep.png").read_bytes()[:8] == PNG_SIGNATURE
    assert yaml.safe_load((sweep / "wandb_sweep.yaml").read_text())["method"] == "grid"
    # each member trained with its own learning rate: the same seed gives different returns
    run_dirs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(run_dirs) == 4
    lrs = [
        yaml.safe_load((p / "config.yaml").read_text())["update_cfg"]["learning_rate"]
        for p in run_dirs
    ]
    assert sorted(lrs) == [1e-3, 1e-3, 1e-2, 1e-2]
    curves = {p.name: read_curve(p).values for p in run_dirs}
    assert not np.array_equal(curves["learning_rate=1e-3_s0"], curves["learning_rate=1e-2_s0"])
    # the sweep directory plots as two curves of two seeds each
    groups = group_runs(expand_run_dirs([sweep]))
    assert sorted(len(v) for v in groups.values()) == [2, 2]
    assert all("learning_rate=" in label for label in groups)


@pytest.mark.slow
def test_gymnasium_sweep_runs_in_parallel_processes(tmp_cwd, capsys):
    argv = ["sweep", "dqn", *FAST_DQN, "--name", "p", "--workers", "2", "--seeds", "1"]
    argv += ["--param", "algo_params.gamma=0.9,0.99"]
    assert main(argv) == 0
    results = [json.loads(x) for x in (tmp_cwd / "runs/p/results.jsonl").read_text().splitlines()]
    assert sorted(r["algo_params.gamma"] for r in results) == ["0.9", "0.99"]
    for r in results:
        assert (Path(r["run_dir"]) / "checkpoints" / "latest").is_file()


# ---- plots ---------------------------------------------------------------------------------------


def _fake_run(path: Path, seed: int, lr: float, steps: np.ndarray, values: np.ndarray) -> Path:
    path.mkdir(parents=True)
    spec = {"algo": "dqn", "env": "CartPole-v1", "seed": seed, "update_cfg": {"learning_rate": lr}}
    (path / "config.yaml").write_text(yaml.safe_dump(spec))
    with open(path / "episodes.jsonl", "w") as f:
        for s, v in zip(steps, values, strict=True):
            f.write(json.dumps({"step": int(s), "return": float(v), "length": 10}) + "\n")
    return path


def test_plot_groups_seeds_and_writes_a_valid_png(tmp_path):
    import matplotlib.image

    steps = np.arange(1, 101) * 100
    runs = [
        _fake_run(tmp_path / f"a{s}", s, 1e-3, steps, np.linspace(0, 100, 100) + s)
        for s in range(3)
    ] + [_fake_run(tmp_path / "b0", 0, 1e-2, steps, np.full(100, 5.0))]
    groups = group_runs(runs)
    assert {label: len(v) for label, v in groups.items()} == {
        "learning_rate=0.001": 3,
        "learning_rate=0.01": 1,
    }
    out = plot_runs(runs, tmp_path / "curve.png", window=5, spread="minmax")
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(out)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # something was drawn

    with pytest.raises(ValueError, match="spread"):
        plot_runs(runs, tmp_path / "x.png", spread="iqr")
    with pytest.raises(ValueError, match="logged no 'eval'"):
        plot_runs(runs, tmp_path / "x.png", metric="eval")


def test_read_curve_drops_non_finite_values_and_smooth_is_a_trailing_mean(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    rows = [{"step": 2, "episode_return": 4.0}, {"step": 1, "episode_return": "nan"}]
    (run / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    curve = read_curve(run)  # no episodes stream: the compiled loop's train stream
    assert curve.steps.tolist() == [2.0] and curve.values.tolist() == [4.0]
    np.testing.assert_allclose(smooth(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1.0, 2.0, 4.0, 6.0])


@pytest.mark.slow
def test_pettingzoo_runs_train_sweep_and_log_per_agent_returns(tmp_cwd, capsys):
    pytest.importorskip("mpe2")
    env = ["--env", "pettingzoo:mpe2.simple_spread_v3", "--agent-id", *FAST_DQN]
    assert main(["train", "dqn", *env, "--run-name", "ma"]) == 0
    report = _report(capsys)
    agents = {"agent_0", "agent_1", "agent_2"}
    assert {k.split("/")[1] for k in report if k.startswith("eval_mean/")} == agents
    rows = [json.loads(x) for x in (tmp_cwd / "runs/ma/episodes.jsonl").read_text().splitlines()]
    assert rows and {f"return/{a}" for a in agents} <= set(rows[0])
    assert main(["resume", "runs/ma"]) == 2
    assert "multi-agent" in capsys.readouterr().err

    sweep = ["sweep", "dqn", *env, "--name", "s", "--seeds", "1"]
    assert main([*sweep, "--param", "algo_params.gamma=0.9,0.99"]) == 0
    results = [json.loads(x) for x in (tmp_cwd / "runs/s/results.jsonl").read_text().splitlines()]
    assert sorted(r["algo_params.gamma"] for r in results) == ["0.9", "0.99"]


# ---- distributed training ------------------------------------------------------------------------

DISTRIBUTED_DQN = [
    "train", "dqn", "--env", "gymnax:CartPole-v1", "--distributed", *FAST_DQN,
    "--n-envs", "2", "--run-name", "r",
]  # fmt: skip


@pytest.fixture
def no_cluster_env(monkeypatch):
    """No process settings in the environment (nor a SLURM allocation)."""
    for name in ("KITAE_COORDINATOR_ADDRESS", "KITAE_NUM_PROCESSES", "KITAE_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "needs its process settings"),
        (["--num-processes", "2", "--process-id", "1"], "missing --coordinator-address"),
        (["--coordinator-address", "127.0.0.1:1", "--num-processes", "2"], "missing --process-id"),
        (["--num-processes", "1", "--env", "CartPole-v1"], "compiled path"),
        (["--num-processes", "1", "--env", "pettingzoo:mpe2.simple_spread_v3"], "compiled path"),
        (["--num-processes", "1", "--train-cfg.save-frequency", "400"], "save_frequency"),
    ],
)
def test_distributed_train_is_refused_before_anything_runs(
    tmp_cwd, capsys, no_cluster_env, extra, message
):
    assert main([*DISTRIBUTED_DQN, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_cwd.iterdir())  # no run directory


def test_process_settings_without_distributed_are_refused(tmp_cwd, capsys, no_cluster_env):
    args = [a for a in DISTRIBUTED_DQN if a != "--distributed"]
    assert main([*args, "--num-processes", "2"]) == 2
    assert "--num-processes set the processes of --distributed" in capsys.readouterr().err
    assert not any(tmp_cwd.iterdir())


@pytest.mark.slow
def test_distributed_train_on_two_processes_writes_one_run_from_process_0(tmp_path):
    """Two processes (settings from flags, and from KITAE_* variables) train one run; the same
    command with one process of 2 devices trains the same run."""
    from distributed_launch import child_env, free_port, launch, python_command, report

    from kitae.checkpoint import load_params

    address = f"127.0.0.1:{free_port()}"
    train = python_command("-m", "kitae", *DISTRIBUTED_DQN)
    variables = {
        "KITAE_COORDINATOR_ADDRESS": address,
        "KITAE_NUM_PROCESSES": "2",
        "KITAE_PROCESS_ID": "1",
    }
    commands = [
        [*train, "--runs-dir", str(tmp_path / "runs"), "--coordinator-address", address]
        + ["--num-processes", "2", "--process-id", "0"],
        [*train, "--runs-dir", str(tmp_path / "runs")],
        [*train, "--runs-dir", str(tmp_path / "single"), "--num-processes", "1"],
    ]
    envs = [child_env(1), child_env(1, variables), child_env(2)]
    finished = launch(commands, envs, timeout_s=240, cwd=tmp_path)
    assert all(f.returncode == 0 for f in finished), report(finished)
    report0 = json.loads(finished[0].stdout.strip().splitlines()[-1])
    assert (report0["n_processes"], report0["n_replicas"]) == (2, 2)
    assert report0["env_steps"] == 800 and report0["total_env_steps"] == 1600
    assert report0["eval_episodes"] == 2
    # process 1 prints no report (only the collectives' own connection line) and writes nothing
    assert not [line for line in finished[1].stdout.splitlines() if not line.startswith("[Gloo]")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "single"]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["r"]
    run, single = tmp_path / "runs" / "r", tmp_path / "single" / "r"
    assert (run / "checkpoints" / "latest").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["n_envs"] == 2
    # the run of two processes is the run of one process with two devices
    report1 = json.loads(finished[2].stdout.strip().splitlines()[-1])
    assert (report1["n_processes"], report1["n_replicas"]) == (1, 2)
    params, expected = load_params(run), load_params(single)
    assert jax_tree_allclose(params, expected)
    rows = [json.loads(x) for x in (run / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(8, 801, 8))  # 1% of the run per row
    assert all(r["total_env_steps"] == 2 * r["step"] for r in rows)
    assert rows == [json.loads(x) for x in (single / "train.jsonl").read_text().splitlines()]


def jax_tree_allclose(a, b, atol: float = 1e-6) -> bool:
    """Whether two nested dicts of arrays have the same structure and close leaves."""
    import jax

    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    return tree_a == tree_b and all(
        np.allclose(x, y, rtol=1e-5, atol=atol) for x, y in zip(leaves_a, leaves_b, strict=True)
    )


# ---- sweeps as submitit jobs ---------------------------------------------------------------------


def _needs_submitit() -> None:
    """Skips the test without submitit (imported as kitae imports it: importing it bare would
    reconfigure logging and close pytest's capture handlers)."""
    from kitae.cli.sweep import import_submitit

    try:
        import_submitit()
    except ImportError:
        pytest.skip("submitit is not installed")


def _results(sweep: Path) -> list[tuple]:
    rows = [json.loads(x) for x in (sweep / "results.jsonl").read_text().splitlines()]
    return sorted((r["member"], r["seed"], r["eval_mean"]) for r in rows)


@pytest.mark.slow
def test_submitit_sweep_runs_one_local_job_per_program_and_matches_the_local_backend(
    tmp_cwd, capsys, monkeypatch
):
    _needs_submitit()
    import jax

    cache_dir = jax.config.jax_compilation_cache_dir
    if cache_dir:  # the jobs' processes share the test session's compilation cache
        monkeypatch.setenv("KITAE_COMPILATION_CACHE", str(cache_dir))
    argv = ["sweep", "dqn", "--env", "gymnax:CartPole-v1", *FAST_DQN, "--seeds", "2"]
    argv += ["--param", "algo_params.hidden_sizes=16,32"]  # two programs, two seeds each
    assert main([*argv, "--name", "here"]) == 0
    capsys.readouterr()
    jobs = ["--backend", "submitit", "--submitit-cluster", "local"]
    assert main([*argv, "--name", "jobs", *jobs, "--submitit-param", "timeout_min=10"]) == 0
    assert "submitted 2 job(s) to local" in capsys.readouterr().out
    here, there = tmp_cwd / "runs" / "here", tmp_cwd / "runs" / "jobs"
    assert len(_results(there)) == 4
    assert _results(there) == _results(here)
    assert (there / "summary.md").read_text() == (here / "summary.md").read_text()
    for run_dir in (p for p in there.iterdir() if p.name.startswith("hidden_sizes=")):
        assert (run_dir / "config.yaml").is_file() and (run_dir / "eval.jsonl").is_file()
    logs = list((there / "submitit").glob("*_log.out"))
    assert len(logs) == 2  # one job per compiled program


def test_submitit_sweep_of_gymnasium_runs_submits_one_job_per_run(tmp_cwd, capsys):
    _needs_submitit()
    argv = ["sweep", "dqn", *FAST_DQN, "--name", "g", "--seeds", "1"]
    argv += ["--param", "algo_params.gamma=0.9,0.99"]
    argv += ["--backend", "submitit", "--submitit-cluster", "debug"]  # jobs run in this process
    assert main(argv) == 0
    assert "submitted 2 job(s) to debug" in capsys.readouterr().out
    sweep = tmp_cwd / "runs" / "g"
    rows = [json.loads(x) for x in (sweep / "results.jsonl").read_text().splitlines()]
    assert sorted(r["algo_params.gamma"] for r in rows) == ["0.9", "0.99"]
    for r in rows:
        assert (Path(r["run_dir"]) / "checkpoints" / "latest").is_file()
    assert "| algo_params.gamma |" in (sweep / "summary.md").read_text()


def test_submitit_backend_errors_are_clear_and_early(tmp_cwd, capsys, monkeypatch):
    argv = ["sweep", "dqn", "--env", "gymnax:CartPole-v1", "--param", "algo_params.gamma=0.9"]
    assert main([*argv, "--submitit-cluster", "local"]) == 2
    assert "need --backend submitit" in capsys.readouterr().err
    assert main([*argv, "--backend", "submitit", "--submitit-param", "timeout"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "submitit", None)  # not installed
    assert main([*argv, "--backend", "submitit"]) == 2
    assert "pip install 'kitae[cluster]'" in capsys.readouterr().err
    assert not any(tmp_cwd.iterdir())  # refused before the sweep directory exists
