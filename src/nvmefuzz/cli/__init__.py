"""The ``nvmefuzz`` command: the group, what its commands share, and their registration.

The commands live beside this module, by what they are for: ``run`` (fuzz, replay, repro),
``inventory`` (corpus, targets, campaigns), ``night`` (the nightly job) and ``differential``
(diff against QEMU).  Each registers itself on ``main`` when imported, at the end of this
module.  Exit codes everywhere: 0 nothing found / everything as expected, 1 findings /
regressions, 2 the harness itself failed (bad input, missing target, internal error), 128 + N
stopped by signal N (130 Ctrl-C, 143 SIGTERM).  This package is the only code that prints.
"""

from __future__ import annotations

import re
import sys

import click
from rich.console import Console

from nvmefuzz import __version__
from nvmefuzz.errors import NvmeFuzzError

console = Console(stderr=True)
out = Console()

EXIT_OK, EXIT_FOUND, EXIT_ERROR = 0, 1, 2


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration like 90s, 10m or 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGINT (Ctrl-C).  A KeyboardInterrupt, because Hypothesis stops at once on
    one, whereas it takes a SystemExit raised inside an example for a failure and shrinks it,
    for minutes.  The exit status is 128 + the signal number (143, 130), never 1 (findings)."""


#: the signal received: a raise from a signal handler is lost when it lands in a finalizer,
#: so the fuzz loop also looks here after every batch
TERMINATED: list[int] = []


def _terminate(signum: int, frame: object) -> None:
    TERMINATED.append(signum)
    raise Terminated(signum)


class Main(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Terminated as exc:        # through Python, so atexit handlers stop QEMU
            sys.exit(128 + exc.args[0])
        except NvmeFuzzError as exc:
            console.print(f"[red]error:[/red] {exc}")
            sys.exit(EXIT_ERROR)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception:                 # a harness bug is exit 2, never "findings" (1)
            if TERMINATED:                # unless a stop signal broke it
                sys.exit(128 + TERMINATED[0])
            console.print_exception()
            sys.exit(EXIT_ERROR)


@click.group(cls=Main)
@click.version_option(__version__)
def main() -> None:
    """Stateful property-based fuzzer for NVMe save/restore (live migration) correctness."""
    import signal

    # both exit through Python so atexit handlers stop the QEMU processes we started (they run
    # in their own session: a Ctrl-C reaches only us, never a target in the middle of a step)
    signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:   # nohup and `&` keep ignoring
        signal.signal(signal.SIGINT, _terminate)


from nvmefuzz.cli import differential, inventory, night, run  # noqa: E402,F401  (registers)
