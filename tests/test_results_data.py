"""Results as data: ``Result.rows()``, ``to_dataframe()`` (pandas) and ``to_csv()`` (no pandas needed)."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import pytest

import beamkit
from beamkit.providers import register
from beamkit.providers.simulated import Simulation
from beamkit.result import COLUMNS

_names = itertools.count()


def sim_set(**kwargs: object) -> str:
    name = f"dsim{next(_names)}"
    register(name, Simulation(name=name, **kwargs).provider)  # type: ignore[arg-type]
    return name


@pytest.mark.asyncio
async def test_one_row_per_candidate_with_its_beam_flags(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    result = await beamkit.search("a kite over dunes", providers=sim_set(), output=tmp_path, N=4, M=2, iterations=3, seed=5)
    df = result.to_dataframe()
    assert list(df.columns) == list(COLUMNS) and len(df) == 12
    assert list(zip(df.iteration, df.candidate_id)) == sorted(c.key for c in result.candidates)
    assert df.dtypes["iteration"] == "int64" and df.dtypes["total_score"] == "float64"
    best = df[df.best]
    assert len(best) == 1 and (best.iteration.item(), best.candidate_id.item()) == result.best.key
    assert best.total_score.item() == result.best.total_score
    # kept / beam_rank follow each iteration's beam; the final beam is the last one
    # (a beam also holds parents carried over from earlier iterations: kept_until says how long each lasted)
    for i, beam in result.beams.items():
        kept = df[(df.iteration == i) & df.kept.fillna(False)]
        assert sorted(zip(kept.beam_rank, kept.key)) == [(r, f"{k[0]}-{k[1]}") for r, k in enumerate(beam) if k[0] == i]
    for key in {k for beam in result.beams.values() for k in beam}:
        row = df[df.key == f"{key[0]}-{key[1]}"]
        assert row.kept_until.item() == max(i for i, beam in result.beams.items() if key in beam)
    assert df[~df.kept.fillna(False)].kept_until.isna().all()
    assert set(df[df.in_final_beam].key) == {f"{i}-{c}" for i, c in result.beams[2]}
    assert set(df[df.on_best_lineage].key) == {f"{i}-{c}" for i, c in result.lineage()}
    # parent links join back to the table
    refined = df[df.iteration > 0]
    assert refined.parent.isin(df.key).all() and df[df.iteration == 0].parent.isna().all()
    assert set(df.operation) == {"expand", "refine"} and set(df.dimension) == {"what", "how"}
    assert pd.api.types.is_bool_dtype(df.best)


@pytest.mark.asyncio
async def test_failed_candidates_and_an_unfinished_iteration(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    job = beamkit.start("some fail", providers=sim_set(fail_rate=0.3, image_latency=0.02), output=tmp_path,
                        N=6, M=2, iterations=10, seed=2)
    async for e in job.events():
        if e.type == "iteration" and getattr(e, "status", None) == "completed":
            break
    while not any(c.iteration == 1 for c in job.state.candidates.values()):
        async for _ in job.events(start=len(job.history)):
            break
    job.cancel()
    with pytest.raises(beamkit.JobCancelled):
        await job
    df = beamkit.load(job.folder).to_dataframe()
    failed = df[df.status == "failed"]
    assert len(failed) > 0 and failed.error_code.notna().all() and failed.total_score.isna().all()
    assert df[df.iteration == 0].kept.notna().all()  # iteration 0 finished: each row kept or not
    assert df[df.iteration == df.iteration.max()].kept.isna().all()  # cut short: no beam to be in


@pytest.mark.asyncio
async def test_csv_without_pandas_reads_back(tmp_path: Path) -> None:
    result = await beamkit.search('a "quoted", prompt\nwith a newline', providers=sim_set(), output=tmp_path,
                                  N=3, M=1, iterations=2, seed=1)
    path = result.to_csv(tmp_path / "run.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [tuple(r) for r in rows][:1] == [COLUMNS] and len(rows) == 6
    assert rows == [{k: "" if v is None else str(v) for k, v in r.items()} for r in result.rows()]
    pd = pytest.importorskip("pandas")
    back = pd.read_csv(path)
    assert list(back.columns) == list(COLUMNS) and back.total_score.tolist() == pytest.approx(
        [r["total_score"] for r in result.rows()])


def test_to_dataframe_without_pandas_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"beamkit\[data\]"):
        beamkit.Result("job-x", {}, "completed").to_dataframe()
