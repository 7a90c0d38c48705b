"""benchmarks/session_plan.py: the missing packs spread over lanes before a deadline."""

import pytest

from bench_scripts import load_script

plan_mod = load_script("session_plan")
Pack = plan_mod.Pack


def test_models_nearest_to_complete_go_first_and_packs_fit_with_the_margin():
    packs = [Pack("big", "standard", 6, 500, True), Pack("big", "shuffle", 6, 300, True),
             Pack("big", "last", 6, 200, False), Pack("near", "k2v2", 6, 400, True)]
    slots, left = plan_mod.plan(packs, lanes=2, start=100, deadline=1000)
    # `near` (6 missing) before `big` (18), big's longest first, each onto the lane free soonest:
    # k2v2 -> lane 1 (ends 500), standard -> lane 2 (600), shuffle -> lane 1 (800), last -> lane 2 (800)
    assert [[(p.model, p.task) for p in lane.packs] for lane in slots] == [
        [("near", "k2v2"), ("big", "shuffle")], [("big", "standard"), ("big", "last")]]
    assert [lane.ends for lane in slots] == [800, 800] and left == []
    # deadline 810: shuffle would end lane 1 at 500 + 330 > 810 and waits for a later machine;
    # the shorter `last` still fills the gap (500 + 220 <= 810)
    slots, left = plan_mod.plan(packs, lanes=2, start=100, deadline=810)
    assert [(p.model, p.task) for p in left] == [("big", "shuffle")]
    assert [[p.task for p in lane.packs] for lane in slots] == [["k2v2", "last"], ["standard"]]


def test_a_pack_that_does_not_fit_is_left_for_later():
    slots, left = plan_mod.plan([Pack("m", "a", 6, 950, True), Pack("m", "b", 6, 100, True)], 1, 0, 1000)
    # 950 s needs 1045 s with the margin: left; the 100 s pack fits
    assert [p.task for p in slots[0].packs] == ["b"] and [p.task for p in left] == ["a"]


def test_rendered_lines_are_gpu_session_phases():
    slots, left = plan_mod.plan([Pack("hyena", "k2v2", 6, 466, True), Pack("rwkv", "last", 6, 600, False)],
                                2, 110, 1430)
    lines = plan_mod.render(slots, left, "all", 3, 1430)
    assert 'PHASES="todo@hyena@all@3@train=k2v2"' in lines and 'LANE2="todo@rwkv@all@3@train=last"' in lines
    assert "rwkv last 600 s (guess)" in lines[2] and lines[-1].startswith("# 12 runs planned")


def test_zero_lanes_is_a_user_error():
    with pytest.raises(plan_mod.UserError, match="--lanes"):
        plan_mod.plan([], 0, 0, 100)


def test_task_packs_take_board_todos_estimate_or_the_guess(tmp_path):
    from mqarbench.runner.hparams import sweep
    from mqarbench.runner.plan import plan_runs, suite_datasets

    root = tmp_path / "leaderboard"
    specs = plan_runs(["pythia"], "main", "tiny", suite_datasets("main", "tiny", tmp_path / "data"),
                      sweep("tiny"), [0], root)
    todo = plan_mod.Todo("pythia", specs, absent=[s.run_id for s in specs])
    tasks = list(dict.fromkeys(s.train.task for s in specs))  # plan order
    timings = [("pythia", "standard", 1, 300.0, None), ("pythia", "k2v2", 99, 5.0, None), ("other", "shuffle", 1, 9.0, None)]
    timed = plan_mod.task_packs(todo, timings, 600)
    # k2v2 timed only in a larger pack: that 5 s bounds it; the others: standard's 300 s
    assert [(p.task, p.seconds, p.known) for p in timed] == [(t, 5 if t == "k2v2" else 300, True) for t in tasks]
    assert sum(p.runs for p in timed) == len(specs)
    guessed = plan_mod.task_packs(todo, [], 600)
    assert {(p.seconds, p.known) for p in guessed} == {(600, False)}


def test_several_tasks_per_pack_make_one_phase_each(tmp_path):
    from mqarbench.runner.hparams import sweep
    from mqarbench.runner.plan import plan_runs, suite_datasets

    root = tmp_path / "leaderboard"
    specs = plan_runs(["pythia"], "main", "tiny", suite_datasets("main", "tiny", tmp_path / "data"),
                      sweep("tiny"), [0], root)
    todo = plan_mod.Todo("pythia", specs, absent=[s.run_id for s in specs])
    tasks = list(dict.fromkeys(s.train.task for s in specs))
    assert len(tasks) == 4
    packs = plan_mod.task_packs(todo, [("pythia", "standard", 1, 300.0, None), ("pythia", "shuffle", 1, 100.0, None)], 600, 3)
    assert [p.task for p in packs] == ["+".join(tasks[:3]), tasks[3]]
    assert [p.runs for p in packs] == [3 * len(specs) // 4, len(specs) // 4]
    # three tasks' runs side by side: the longest task's time, scaled by sqrt(3 runs / 1), not a sum
    assert packs[0].seconds == round(300 * 3 ** 0.5) and packs[0].known
    slots, _ = plan_mod.plan(packs, 1, 0, 5000)
    assert plan_mod.render(slots, [], "main", 1, 5000)[1] == (
        f'PHASES="todo@pythia@main@1@train={packs[0].task} todo@pythia@main@1@train={tasks[3]}"')
    with pytest.raises(plan_mod.UserError, match="--tasks-per-pack"):
        plan_mod.task_packs(todo, [], 600, 0)
