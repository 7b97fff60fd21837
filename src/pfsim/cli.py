"""Command line: ``pfsim run`` and ``pfsim replay``.

Every user mistake ends with one line on stderr (``pfsim: error: ...``) and exit status 2;
no traceback, no half-written output directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pfsim.errors import PfsimError

EXIT_USAGE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pfsim")
def cli() -> None:
    """pfsim: simulate page-fault handling in virtualized, clustered machines."""


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--seed", type=int, default=None, help="Seed of every random stream (overrides sim.seed).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for result.json (default: out/<config name>).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set guest.vcpus=4 (repeatable).")
@click.option("--quiet", is_flag=True, help="Print only the final summary line.")
@click.option("--compare", "compare", default=None, metavar="KEY=V1,V2,...",
              help="Run one variant per value of KEY with the same seed and print them side by "
                   "side, e.g. --compare hypervisor.async_pf=off,halt,kvm,s390.")
def run(config: Path, seed: int | None, out_dir: Path | None, overrides: tuple[str, ...],
        quiet: bool, compare: str | None) -> None:
    """Run the scenario CONFIG (a TOML file), print a summary and write result.json."""
    from pfsim.report import compare_command, run_command

    if compare is not None:
        key, sep, values = compare.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or len(choices) < 1:
            raise click.BadParameter("expected KEY=V1,V2,...", param_hint="--compare")
        compare_command(config, seed=seed, out_dir=out_dir, overrides=list(overrides),
                        key=key.strip(), values=choices)
        return
    run_command(config, seed=seed, out_dir=out_dir, overrides=list(overrides), quiet=quiet)


@cli.command()
@click.argument("trace", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--policy", required=True, help="Reclaim policy: fifo, lru, clock, random, opt.")
@click.option("--frames", required=True, help="Frame counts, comma separated (e.g. 100,1000).")
@click.option("--format", "fmt", default=None,
              help="Trace format: text, csv, npy, lackey (default: from the file name and content).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per frame count.")
@click.option("--seed", type=int, default=0, help="Seed of the random policy.")
def replay(trace: Path, policy: str, frames: str, fmt: str | None, as_json: bool, seed: int) -> None:
    """Replay a memory trace through host reclaim alone and report faults per frame count."""
    import json

    from pfsim.replay import replay_trace

    try:
        counts = [int(x) for x in frames.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {frames!r}",
                                 param_hint="--frames") from None
    if not counts or any(c <= 0 for c in counts):
        raise click.BadParameter("frame counts must be positive integers", param_hint="--frames")
    rows = replay_trace(trace, policy=policy, frames=counts, fmt=fmt, seed=seed)
    for row in rows:
        if as_json:
            click.echo(json.dumps(row))
        else:
            click.echo(" ".join(f"{k}={v:.6f}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in row.items()))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``pfsim`` console script."""
    try:
        cli.main(args=argv, prog_name="pfsim", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("pfsim: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        hint = ""
        if exc.ctx is not None and exc.ctx.command is not None:
            hint = f" (see 'pfsim {exc.ctx.info_name} --help')" if exc.ctx.parent else ""
        click.echo(f"pfsim: error: {exc.format_message()}{hint}".replace("\n", " "), err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        click.echo(f"pfsim: error: {exc.format_message()}".replace("\n", " "), err=True)
        sys.exit(EXIT_USAGE)
    except PfsimError as exc:
        click.echo(f"pfsim: error: {exc}".replace("\n", " "), err=True)
        sys.exit(EXIT_USAGE)
    except BrokenPipeError:
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("pfsim: interrupted", err=True)
        sys.exit(130)
    sys.exit(0)
