"""Sweeps on Dask distributed: real LocalClusters (worker processes on 127.0.0.1), and a scheduler
and workers started as separate processes, as a user of a real cluster starts them."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from distributed import Client
from sweep_helpers import SimulatedProviderPlugin, most_at_once

import beamkit
from beamkit.errors import InvalidRequest
from beamkit.sweeps import baselines, gates, local_cluster, plan, stats
from beamkit.sweeps.widget import SweepView

TINY = {"N": 2, "M": 1, "iterations": 2}
HERE = Path(__file__).parent


def wait_for(check, what: str, timeout: float = 60.0):
    """Poll ``check`` until it is true (a condition to reach, not a delay to hide a race)."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return found


#: the recipe docs/sweeps.md gives for workers started by hand: no MALLOC_TRIM_THRESHOLD_
WORKER_DASK_CONFIG = """distributed:
  nanny:
    pre-spawn-environ:
      MALLOC_TRIM_THRESHOLD_: null
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two workers started as separate processes, as a user of a real cluster starts
    them (``dask scheduler``, ``dask worker``); its address and a client."""
    tmp = tmp_path_factory.mktemp("cluster")
    file = tmp / "scheduler.json"
    (tmp / "dask").mkdir()
    (tmp / "dask" / "beamkit.yaml").write_text(WORKER_DASK_CONFIG)
    env = {**os.environ, "DASK_CONFIG": str(tmp / "dask"),
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    dask = str(Path(sys.executable).parent / "dask")
    quiet = dict(env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(file)], **quiet)]
    try:
        wait_for(file.exists, "the scheduler file")
        for _ in range(2):
            procs.append(subprocess.Popen([dask, "worker", "--scheduler-file", str(file), "--nthreads", "1",
                                           "--no-dashboard", "--host", "127.0.0.1"], **quiet))
        with Client(scheduler_file=str(file)) as c:
            c.wait_for_workers(2, timeout=60)
            yield c.scheduler.address, c
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


_plugins = iter(range(1000))


def simulated(client: Client, tmp_path: Path, image_latency: float = 0.0) -> tuple[str, Path, Path]:
    """A simulated provider registered on every worker; its name, its marks file and its hold file."""
    name = f"simw{next(_plugins)}"
    marks, hold = tmp_path / f"{name}.marks", tmp_path / f"{name}.hold"
    client.register_plugin(SimulatedProviderPlugin(name, str(marks), str(hold), image_latency), name=name)
    return name, marks, hold


def test_import_beamkit_stays_free_of_dask_pandas_and_scipy():
    code = ("import sys, beamkit, beamkit.sweeps; print(','.join(m for m in "
            "('dask', 'distributed', 'pandas', 'scipy', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "", out.stderr


# -- what a sweep will run ---------------------------------------------------------------------


def test_job_ids_are_stable_and_tell_jobs_apart():
    base = plan.check_params("a", {"N": 2, "M": 1})
    jid = plan.job_id("a fox", base, 0)
    assert jid == plan.job_id("a fox", dict(base), 0)
    assert len({jid, plan.job_id("a fox", base, 1), plan.job_id("a cat", base, 0),
                plan.job_id("a fox", {**base, "N": 3}, 0)}) == 4
    # A parameter the engine adds later, at its default, must not change the ids of sessions on disk.
    assert plan.job_id("a fox", {**base, "alpha": 0.7}, 0) == jid


def test_rows_share_a_job_when_their_parameters_are_equal():
    p = plan.plan(["a fox", "a cat"], {"beam": {"N": 2, "M": 1, "iterations": 2}}, seeds=2,
                  baseline_kinds=["greedy", "best-of-n"])
    assert len(p.rows) == 2 * 2 * 3
    assert [r.config for r in p.rows[:3]] == ["beam", "greedy", "best-of-n"]
    # greedy of a beam of one is the beam itself: one session for both rows
    assert len(p.jobs) == 2 * 2 * 2
    assert {r.budget for r in p.rows} == {4}
    assert [(r.prompt_index, r.seed) for r in p.rows[::3]] == [(0, 0), (1, 0), (0, 1), (1, 1)]


def test_a_list_of_configurations_is_named_by_what_differs():
    table = plan.config_table([{"N": 4, "M": 2}, {"N": 4, "M": 1}])
    assert list(table) == ["M=2", "M=1"]
    assert table["M=1"]["iterations"] == 3  # defaults are filled in


@pytest.mark.parametrize("configs,needle", [
    ({"a": {"seed": 3}}, "sets 'seed', which the sweep sets itself (use seeds=)"),
    ({"a": {"bogus": 1}}, "unknown job parameter 'bogus'"),
    ({"a": {"N": 2, "M": 3}}, "configuration 'a': 'M' must be at most N"),
    ({"greedy": {}}, "'greedy' names a baseline"),
    ({}, "at least one configuration"),
])
def test_bad_configurations_are_refused_naming_the_problem(configs, needle):
    with pytest.raises(InvalidRequest, match=None) as info:
        beamkit.sweep(["a fox"], configs, start=False)
    assert needle in info.value.message
    assert info.value.field == "configs"


@pytest.mark.parametrize("kwargs,field", [
    ({"prompts": []}, "prompts"),
    ({"prompts": "not-a-set-or-file"}, "prompts"),
    ({"seeds": 0}, "seeds"),
    ({"seeds": [1, 1]}, "seeds"),
    ({"baselines": ["best-of-three"]}, "baselines"),
    ({"limits": {"image": 0}}, "limits"),
    ({"limits": {"pictures": 2}}, "limits"),
])
def test_bad_sweep_arguments_are_refused(kwargs, field):
    args = {"prompts": ["a fox"], "configs": {"a": TINY}, **kwargs}
    with pytest.raises(InvalidRequest) as info:
        beamkit.sweep(args.pop("prompts"), args.pop("configs"), start=False, **args)
    assert info.value.field == field


def test_prompts_can_be_a_prompt_set():
    p = plan.plan("parti", {"a": TINY})
    assert len(p.rows) == 1632
    assert p.rows[0].category


# -- baselines at an equal budget ------------------------------------------------------------


def test_baselines_spend_the_configurations_budget():
    beam = plan.check_params("beam", {"N": 9, "M": 3, "iterations": 3})
    best = baselines.derive("best-of-n", beam)
    assert (best["N"], best["iterations"]) == (27, 1)
    assert baselines.derive("greedy", beam)["M"] == 1
    assert baselines.budget(best) == baselines.budget(beam) == 27


def test_best_of_n_is_capped_by_the_n_limit_and_says_so():
    with pytest.warns(UserWarning, match="above the N limit 64"):
        capped = baselines.derive("best-of-n", plan.check_params("big", {"N": 32, "M": 4, "iterations": 4}))
    assert capped["N"] == 64


@pytest.mark.parametrize("kind,needs", [("none", "seeds_per_prompt, unexpanded"), ("rewrite-once", "seeds_per_prompt")])
def test_baselines_that_need_the_engine_say_what_they_need(kind, needs):
    beam = plan.check_params("beam", {"N": 3, "M": 1, "iterations": 2})
    if all(baselines.engine_accepts(n) for n in needs.split(", ")):
        derived = baselines.derive(kind, beam)
        assert (derived["N"], derived["iterations"], derived[baselines.SEEDS_PER_PROMPT]) == (1, 1, 6)
        return
    with pytest.raises(baselines.NeedsEngineSupport, match="needs engine support") as info:
        beamkit.sweep(["a fox"], {"beam": beam}, baselines=[kind], start=False)
    assert needs.split(", ")[0] in info.value.message


# -- statistics ----------------------------------------------------------------------------------


def test_bootstrap_interval_holds_the_mean_and_narrows_with_more_data():
    few = [70.0, 80, 75, 90, 60, 85]
    low, high = stats.bootstrap_ci(few)
    assert low < sum(few) / len(few) < high
    wide = high - low
    low, high = stats.bootstrap_ci(few * 8)
    assert high - low < wide
    assert stats.bootstrap_ci([5.0, 5.0, 5.0]) == (5.0, 5.0)
    assert all(math.isnan(x) for x in stats.bootstrap_ci([5.0]))


def test_win_rates_pair_rows_by_prompt_and_seed():
    df = pd.DataFrame({
        "prompt_index": [0, 0, 1, 1, 2, 2, 3],
        "seed": [0, 0, 0, 0, 0, 0, 0],
        "config": ["beam", "best", "beam", "best", "beam", "best", "beam"],
        "best_total": [90.0, 80, 70, 75, 60, 60, 99],
    })
    rate, pairs = stats.win_rate(df, "beam", "best")
    assert pairs == 3  # prompt 3 has no baseline row to pair with
    assert rate == pytest.approx((1 + 0 + 0.5) / 3)


def test_limits_parse_for_every_provider_or_one():
    parsed = gates.parse({"image": 2, "openai": {"llm": {"concurrency": 4, "per_minute": 100}}})
    assert gates.lookup(parsed, "offline", "image") == gates.ClusterLimit(2)
    assert gates.lookup(parsed, "openai:llm", "llm") == gates.ClusterLimit(4, 100)
    assert gates.lookup(parsed, "offline", "llm") is None
    assert gates.from_wire(gates.to_wire(parsed)) == parsed


def test_the_engines_shared_gate_hook_is_passed_by_every_call_of_its_context(tmp_path):
    from engine_helpers import use

    from beamkit.engine import limits
    from beamkit.providers.simulated import Simulation

    class Counting:
        def __init__(self) -> None:
            self.held = self.taken = 0

        async def acquire(self) -> None:
            self.held += 1
            self.taken += 1

        def release(self) -> None:
            self.held -= 1

    gates_made: dict[str, Counting] = {}

    def factory(key: str, kind: str, limit) -> Counting | None:
        return gates_made.setdefault(kind, Counting()) if kind == "image" else None

    name = use(Simulation())

    async def job(gated: bool) -> None:
        if gated:  # set in this task's context, as a sweep's task sets it: the jobs it starts inherit it
            limits.set_shared(factory)
        await beamkit.start("a fox", N=3, M=1, iterations=1, seed=1, providers=name, output=tmp_path / str(gated))

    asyncio.run(job(gated=True))
    assert set(gates_made) == {"image"}
    assert gates_made["image"].taken == 3 and gates_made["image"].held == 0
    asyncio.run(job(gated=False))  # another context: no gate
    assert gates_made["image"].taken == 3


# -- on a LocalCluster -------------------------------------------------------------------------


def malloc_trim(client: Client) -> set[str | None]:
    return set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values())


@pytest.mark.slow
def test_local_cluster_workers_do_not_get_dasks_malloc_trim_threshold_nor_its_profiler():
    def settings() -> tuple[Any, ...]:
        import dask

        return (dask.config.get("distributed.worker.profile.enabled"), dask.config.get("distributed.admin.tick.interval"))

    with local_cluster(1) as lc, Client(lc) as c:
        assert malloc_trim(c) == {None}
        # the nanny hands the cluster's configuration to its worker process: the periodic work is off there
        assert set(c.run(settings).values()) == {(False, "1s")}
        assert c.run_on_scheduler(lambda dask_scheduler: "stealing" not in dask_scheduler.extensions)


@pytest.mark.slow
def test_the_documented_dask_config_keeps_it_from_workers_started_by_hand(cluster):
    assert malloc_trim(cluster[1]) == {None}


@pytest.mark.slow
def test_an_offline_sweep_gives_a_row_per_prompt_configuration_and_seed_and_resumes(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store for those who ask
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    prompts = ["a forest at dawn", "a red fox in the snow", "a lighthouse at night"]
    configs = {"beam": TINY, "one": {"N": 1, "M": 1, "iterations": 1}}
    out = tmp_path / "sweep"
    s = beamkit.sweep(prompts, configs, seeds=2, baselines=["greedy"], output=out, workers=2, mlflow="tests")
    view = SweepView(s)
    s.wait()
    df = s.results()
    assert len(df) == 3 * 2 * 2 * 2
    assert set(df["status"]) == {"completed"}, df[["config", "status", "error"]]
    assert list(df["config"][:4]) == ["beam", "one", "greedy@beam", "greedy@one"]
    assert (df["images"] == df["budget"]).all()
    assert (df["image_calls"] == df["images"]).all()
    assert df["best_total"].between(0, 100).all()
    assert all(Path(f, "metadata.json").is_file() for f in df["folder"])
    # greedy of a beam of one is that beam: one session for both rows
    by_config = df.set_index(["config", "prompt_index", "seed"])["job_id"]
    assert (by_config["beam"] == by_config["greedy@beam"]).all()
    assert s.jobs_run == 3 * 2 * 2 and s.jobs_resumed == 0

    table = s.summary().set_index("config")
    assert list(table.index) == ["beam", "one", "greedy@beam", "greedy@one"]
    assert table.loc["beam", "ci_low"] <= table.loc["beam", "mean"] <= table.loc["beam", "ci_high"]
    assert table.loc["beam", "win_vs_greedy"] == 0.5  # the same sessions: every pair a tie
    assert math.isnan(table.loc["greedy@beam", "win_vs_greedy"])
    for name in ("results.csv", "results.parquet", "summary.csv", "summary.json", "sweep.json"):
        assert (out / name).is_file(), name
    assert len(pd.read_csv(out / "results.csv")) == len(df)
    assert [r["config"] for r in json.loads((out / "summary.json").read_text())] == list(table.index)
    assert view.bar.value == len(df) and f"{len(df)}/{len(df)} done" in view.header.value
    assert "application/vnd.jupyter.widget-view+json" in s._repr_mimebundle_()
    import matplotlib

    matplotlib.use("Agg")
    assert len(s.plot().containers) == len(table)  # one error bar per configuration

    runs = mlflow.MlflowClient().search_runs([mlflow.get_experiment_by_name("tests").experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(runs) == len(children) + 1 == len(df) + 1
    child = next(r for r in children if r.data.params["config"] == "beam")
    history = mlflow.MlflowClient().get_metric_history(child.info.run_id, "best_total")
    assert [m.step for m in history] == [0, 1]
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(child.info.run_id, "best")]

    async def awaited():
        return await beamkit.sweep(prompts, configs, seeds=2, baselines=["greedy"], output=out, workers=2)

    again = asyncio.run(awaited())
    assert again.jobs_run == 0 and again.jobs_resumed == s.jobs_run
    redo = again.results()
    assert redo["resumed"].all()
    assert list(redo["best_total"]) == list(df["best_total"])


@pytest.mark.slow
def test_a_failing_job_is_a_row_with_its_error(cluster, tmp_path):
    client = cluster[1]
    name, _, _ = simulated(client, tmp_path)
    s = beamkit.sweep(["a fox"], {"ok": {**TINY, "providers": name}, "broken": {**TINY, "providers": "no-such-provider"}},
                      output=tmp_path / "sweep", cluster=client).wait()
    df = s.results().set_index("config")
    assert s.status == "completed"
    assert df.loc["ok", "status"] == "completed"
    assert df.loc["broken", "status"] == "error"
    assert df.loc["broken", "error_code"] == "INVALID_REQUEST"
    assert "no-such-provider" in df.loc["broken", "error"]
    assert client.scheduler_info()["workers"], "the cluster given by the user stays open"


@pytest.mark.slow
def test_cancel_stops_running_and_queued_jobs_and_a_rerun_finishes_them(cluster, tmp_path):
    client = cluster[1]
    name, marks, hold = simulated(client, tmp_path)
    hold.touch()
    args = (["a fox", "a cat"], {"held": {**TINY, "providers": name}})
    kwargs = dict(seeds=2, output=tmp_path / "sweep", cluster=client)
    s = beamkit.sweep(*args, **kwargs)
    # two workers, each in a job whose image calls wait on the hold file
    wait_for(lambda: marks.exists() and len({line.split()[2] for line in marks.read_text().splitlines()}) == 2,
             "both workers to be inside a job")
    s.cancel()
    s.wait()
    df = s.results()
    assert s.status == "cancelled"
    assert set(df["status"]) == {"cancelled"}
    assert s.jobs_run == 2, df[["job_id", "error", "folder"]].to_string()
    started = [f for f in df["folder"].dropna() if Path(f).is_dir()]
    assert len(started) == 2
    assert {str(beamkit.load(f).status) for f in started} == {"cancelled"}

    hold.unlink()
    again = beamkit.sweep(*args, **kwargs).wait()
    assert set(again.results()["status"]) == {"completed"}
    assert again.jobs_run == 4 and again.jobs_resumed == 0
    assert len(list((tmp_path / "sweep" / "attempts").iterdir())) == 2  # the cancelled sessions, kept aside


@pytest.mark.slow
def test_a_cross_worker_limit_holds_across_workers(cluster, tmp_path):
    client = cluster[1]
    name, marks, _ = simulated(client, tmp_path, image_latency=0.05)
    s = beamkit.sweep(["a fox", "a cat"], {"one": {"N": 2, "M": 1, "iterations": 1, "providers": name}}, seeds=2,
                      output=tmp_path / "sweep", cluster=client, limits={"image": 1}).wait()
    assert set(s.results()["status"]) == {"completed"}
    lines = marks.read_text().splitlines()
    assert len(lines) == 2 * 4 * 2  # 4 jobs of 2 pictures, each a start and an end
    assert len({line.split()[2] for line in lines}) == 2, "both workers painted"
    assert most_at_once(str(marks)) == 1


# -- the CLI ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_cli_runs_a_sweep_on_a_scheduler_and_workers_of_its_own(cluster, tmp_path):
    (tmp_path / "prompts.txt").write_text("a forest at dawn\n")
    (tmp_path / "beam.json").write_text(json.dumps(TINY))
    (tmp_path / "wide.json").write_text(json.dumps({"N": 2, "M": 2, "iterations": 1}))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "beamkit", "sweep", "prompts.txt", "--config", "beam.json", "--config", "wide.json",
         "--seeds", "2", "--baseline", "greedy", "--cluster", cluster[0], "--output", str(out), "--quiet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 1 * 2 * 4 and set(df["status"]) == {"completed"}
    assert "win_vs_greedy" in proc.stdout
    assert f"{len(df)} of {len(df)} rows completed" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [r["config"] for r in summary] == ["beam", "wide", "greedy@beam", "greedy@wide"]


def test_the_cli_refuses_a_bad_config_in_one_line(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"N": 0}))
    proc = subprocess.run([sys.executable, "-m", "beamkit", "sweep", "parti", "--config", "bad.json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "configuration 'bad': 'N' must be between 1 and 64" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
