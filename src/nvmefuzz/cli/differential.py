"""``nvmefuzz diff``: the model and QEMU driven by the same steps, their disagreements
listed by label, saved as traces and shrunk on request (``nvmefuzz.fuzz.diff``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from nvmefuzz.cli import EXIT_FOUND, EXIT_OK, console, main, out
from nvmefuzz.errors import TraceFormatError
from nvmefuzz.fuzz import campaign as campaigns
from nvmefuzz.trace import corpus as corpus_mod


@main.command("diff")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--campaign", "-c", "camps", multiple=True,
              help="draw examples from this campaign (repeatable; default: every campaign "
                   "when no trace is given)")
@click.option("--examples", "-n", type=int, default=20, show_default=True,
              help="examples per campaign")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--ignore", multiple=True,
              help="label prefix of a known disagreement to count and look past (repeatable)")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="write every disagreement as JSON here")
@click.option("--save", "save_dir", type=click.Path(path_type=Path), default=None,
              help="write each disagreement as a trace here (replay with `nvmefuzz diff DIR`)")
@click.option("--minimize", "minimize_s", type=float, default=0.0, show_default=True,
              help="seconds to shrink each saved trace for, QEMU in the loop (needs --save)")
def diff(paths: tuple[Path, ...], camps: tuple[str, ...], examples: int, seed: int,
         ignore: tuple[str, ...], json_path: Path | None, save_dir: Path | None,
         minimize_s: float) -> None:
    """Run the same steps on the model and on QEMU (no migrations) and list where they
    disagree: the first differing observation per trace, grouped by label."""
    from collections import Counter

    from nvmefuzz.fuzz import diff as diff_mod

    if minimize_s and save_dir is None:
        raise click.BadParameter("--minimize shrinks the traces --save writes: give both")
    jobs = []                                   # (source, steps, model cfg, qemu cfg)
    for e in (e for p in paths for e in corpus_mod.load_all(p)):
        if e.trace is None:
            raise TraceFormatError(f"{e.path}: {e.error}")    # exit 2, never 1
        t = e.trace.target
        cfgs = diff_mod.configs(msix=t.get("msix", True), profile=t.get("profile", "full"),
                                nsze=t.get("nsze"))
        jobs.append((str(e.path), e.trace.steps, *cfgs))
    for name in camps or (() if paths else tuple(campaigns.available())):
        camp = campaigns.load(name)
        cfgs = diff_mod.configs(msix=camp.msix, profile=camp.profile)
        for i, steps in enumerate(diff_mod.generate(camp, examples, seed)):
            jobs.append((f"{camp.name}#{i}", steps, *cfgs))
    found, ignored, ran = [], Counter(), 0
    for source, steps, model_cfg, qemu_cfg in jobs:
        d, n = diff_mod.diff_steps(source, steps, model_cfg, qemu_cfg, ignore=ignore,
                                   ignored=ignored)
        ran += n
        if d is not None:
            found.append(d)
            if save_dir is not None:             # on disk before anything else happens
                camp_name = source.split("#")[0] if "#" in source else "diff"
                trace = diff_mod.as_trace(d, steps, model_cfg, camp_name, seed)
                path = save_dir / f"{corpus_mod.slug(d.label)}-{corpus_mod.slug(source)}.cbor"
                path.parent.mkdir(parents=True, exist_ok=True)
                corpus_mod.atomic_write(path, trace.encode())
                if minimize_s:
                    small = diff_mod.shrink(trace, model_cfg, qemu_cfg, minimize_s, ignore)
                    corpus_mod.atomic_write(path, small.encode())
                    console.print(f"{path}: {len(trace.steps)} -> {len(small.steps)} steps")
    groups = diff_mod.group(found)
    out.print(f"[bold]model vs QEMU: {len(jobs)} traces, {ran} steps, {len(found)} "
              f"disagreeing, {len(groups)} distinct[/bold]")
    for label, ds in groups.items():
        p = ds[0].to_plain()
        out.print(f"[bold]{label}[/bold]  ({len(ds)} traces)\n"
                  f"    first: {p['source']} step {p['step']}: {p['action']}\n"
                  f"    model: {p['model']}\n    qemu:  {p['qemu']}", highlight=False)
    if ignored:
        out.print("looked past: " + ", ".join(f"{k}={v}" for k, v in sorted(ignored.items())))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({
            "traces": len(jobs), "steps": ran, "ignored": dict(ignored),
            "groups": {label: [d.to_plain() for d in ds] for label, ds in groups.items()},
        }, indent=1))
    sys.exit(EXIT_FOUND if found else EXIT_OK)
