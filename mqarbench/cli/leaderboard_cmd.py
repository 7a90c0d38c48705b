"""`mqarbench leaderboard validate | verify | build | submit`."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path


def _submissions_dir() -> Path:
    from mqarbench.paths import leaderboard_dir

    return leaderboard_dir() / "submissions"


def _catalog(args):
    from mqarbench.leaderboard.catalog import TaskCatalog
    from mqarbench.paths import default_data_dir

    return TaskCatalog(args.data_dir or default_data_dir())


def _validate(args) -> int:
    from mqarbench.leaderboard.validate import validate_path

    path = args.dir or _submissions_dir()
    subs, problems = validate_path(path, _catalog(args))
    for line in problems:
        print(line)
    if not subs:
        print(f"no submissions under {path}: nothing to validate")
        return 0
    if problems:
        print(f"{len(problems)} problem(s) in {len(subs)} submission(s)")
        return 1
    print(f"{len(subs)} submission(s) valid: {', '.join(s.name for s in subs)}")
    return 0


def _verified_dir(args) -> Path:
    from mqarbench.paths import leaderboard_dir

    return args.verified_dir or leaderboard_dir() / "_verified"


def _verify(args) -> int:
    from mqarbench.leaderboard.validate import submission_dirs, validate_path
    from mqarbench.leaderboard.verify import verify_submission, write_stamp

    path = args.dir or _submissions_dir()
    catalog = _catalog(args)
    subs, problems = validate_path(path, catalog)
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s): fix them (see `mqarbench leaderboard validate`) before verifying")
        return 1
    failed = unverified = 0
    for sub in submission_dirs(path):
        checks = verify_submission(sub, catalog)
        write_stamp(_verified_dir(args), sub, checks)
        for check in checks:
            for line in check.problems:
                print(line)
        bad = [c for c in checks if c.problems]
        no_weights = [c for c in bad if all("cannot be verified" in p for p in c.problems)]
        failed += len(bad) - len(no_weights)
        unverified += len(no_weights)
        state = "verified" if not bad else "NOT verified"
        print(f"{sub.name}: {state}: {len(checks) - len(bad)} of {len(checks)} reported runs re-evaluated and matched"
              + (f"; {len(no_weights)} carry no weights" if no_weights else ""))
    if failed:
        print(f"{failed} run(s) disagree with their reported numbers")
    return 1 if failed or unverified else 0


def _build(args) -> int:
    from mqarbench.leaderboard.build import build_site
    from mqarbench.paths import leaderboard_dir

    sources = args.source or [_submissions_dir()]
    index = build_site(sources, args.out or leaderboard_dir() / "_site", data_dir=args.data_dir,
                       allow_invalid=args.allow_invalid, verified_dir=_verified_dir(args))
    if args.allow_invalid:
        print("built with --allow-invalid: a local preview, bannered on every page; do not publish it")
    print(f"leaderboard site: {index}")
    return 0


def _submit(args) -> int:
    from mqarbench.leaderboard.submit import submit

    fields = {"model_name": args.model_name, "authors": args.authors, "link": args.link,
              "adapter_source": args.adapter_source, "suites": args.suite or ["main"],
              "notes": args.notes, "date": dt.datetime.now(dt.timezone.utc).date().isoformat()}
    dest, problems = submit(args.results, args.name, fields, args.root or _submissions_dir(), _catalog(args))
    for line in problems:
        print(line)
    if problems:
        print(f"{dest}: written but NOT valid ({len(problems)} problem(s) above); fix them, or delete "
              "the folder and run submit again")
        return 1
    print(f"{dest}: valid. Commit it and open a pull request (see CONTRIBUTING.md).")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    lb = subparsers.add_parser("leaderboard", help="validate submissions, build the static site, submit results")
    sub = lb.add_subparsers(dest="leaderboard_command", metavar="ACTION", required=True)
    data_help = "dataset cache used to check task hashes (default: $MQARBENCH_DATA_DIR or ./mqar_data)"

    p = sub.add_parser("validate", help="check submissions against the schema, the current tasks/ and each other")
    p.add_argument("dir", nargs="?", type=Path,
                   help="one submission, or a directory of submissions (default: leaderboard/submissions)")
    p.add_argument("--data-dir", type=Path, help=data_help)
    p.set_defaults(func=_validate)

    verified_help = "where `verify` records the runs that passed (default: leaderboard/_verified)"
    p = sub.add_parser("verify", help="re-evaluate each submission's weights on the current tasks/ and "
                                      "check every reported number (CPU is enough)")
    p.add_argument("dir", nargs="?", type=Path,
                   help="one submission, or a directory of submissions (default: leaderboard/submissions)")
    p.add_argument("--data-dir", type=Path, help=data_help)
    p.add_argument("--verified-dir", type=Path, help=verified_help)
    p.set_defaults(func=_verify)

    p = sub.add_parser("build", help="validate, then write the static leaderboard site")
    p.add_argument("--out", type=Path, help="site directory (default: leaderboard/_site)")
    p.add_argument("--source", type=Path, action="append",
                   help="results to include: a submission, the submissions root or a `run --out` "
                        "directory; repeatable (default: leaderboard/submissions)")
    p.add_argument("--data-dir", type=Path, help=data_help)
    p.add_argument("--verified-dir", type=Path, help=verified_help)
    p.add_argument("--allow-invalid", action="store_true",
                   help="build even if validation finds problems: a local preview, bannered on every page")
    p.set_defaults(func=_build)

    p = sub.add_parser("submit", help="copy your results into a new leaderboard/submissions/<id>/ and validate it")
    p.add_argument("--results", type=Path, required=True, help="the --out directory of `mqarbench run`")
    p.add_argument("--name", required=True, help="submission id: lowercase letters, digits, . _ -")
    p.add_argument("--model-name", required=True, help="model name shown on the leaderboard")
    p.add_argument("--authors", required=True, help="who built the model, comma separated")
    p.add_argument("--link", required=True, help="paper or code URL (https://...)")
    p.add_argument("--adapter-source", required=True, help="where the adapter code lives (URL or package)")
    p.add_argument("--suite", action="append", help="a suite the results fully cover; repeatable (default: main)")
    p.add_argument("--notes", default="", help="one paragraph shown on the model page")
    p.add_argument("--root", type=Path, help="submissions directory (default: leaderboard/submissions)")
    p.add_argument("--data-dir", type=Path, help=data_help)
    p.set_defaults(func=_submit)
