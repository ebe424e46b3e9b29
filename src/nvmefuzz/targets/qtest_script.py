"""A finding as a QEMU command line and qtest scripts that replay it without Python.

How it works
------------
While a trace replays, ``recording()`` gives every ``QemuTarget`` a tap (``Recorder``).  The
target tells it, for every bus operation, the qtest request that expresses it on its own (one
request per register or memory access, never cached or pipelined: see ``targets.qemu``), plus
``@settle`` where it waits for the device to be idle and ``@migrate <outcome>`` where it
migrates (``@hold`` and ``@release`` where the backend starts or stops holding I/O,
``qemu_backend``); requests a never-migrated twin would not make (re-arming INTx
interception after a migration) are marked quiet.  The replay loop adds step markers.
Recording the twin and the migrated side of the same trace gives two request streams that
agree line for line until the finding: the host did the same things on both sides.

``render`` (pure: text in, text out) turns the two recordings into three files:

``script.qtest``
    the migrated side: ``#`` comments (each nvmefuzz step, and what each ``@migrate`` means
    in QMP terms), ``@settle`` and ``@migrate`` directives, and qtest requests; a ``!`` before
    a request means its reply is not compared.
``twin.qtest``
    the same steps on a controller that is never migrated.
``cmdline.sh``
    the QEMU command line, and a bash driver that feeds a script to ``-qtest stdio`` one
    request at a time (bash ``coproc``), sleeps at ``@settle``, and at ``@migrate`` does the
    file migration over QMP (``/dev/tcp`` to a TCP monitor): ``migrate`` to a file, then a
    destination started with ``-incoming defer`` runs ``migrate-incoming``; ``@hold`` and
    ``@release`` send the QMP commands of ``qemu_backend``.  It runs both
    scripts; a refused, crashed or hung migration reproduces such a finding, otherwise it
    compares their replies; it exits 1 and prints the first requests whose replies
    differ (with their nvmefuzz step) while the finding reproduces, 0 once twin and migrated
    QEMU agree.  Replies are compared raw: a difference the harness waives (a documented QEMU
    limitation, such as the SMART I/O counters) shows up too.  Asynchronous ``IRQ`` lines are
    not compared (a destination's interception starts with every line low); the INTx level
    is compared through the PCI status reads the harness made.
"""

from __future__ import annotations

import contextlib
import json
import shlex
from typing import Iterator

from nvmefuzz.targets import qemu_backend as backend

#: what a recording holds: ("line", request, quiet) and ("mark", text, False)
Entry = tuple[str, str, bool]


class Recorder:
    """The tap of one ``QemuTarget``: the requests it describes, and step marks."""

    def __init__(self, target) -> None:
        self.target = target
        self.entries: list[Entry] = []

    def __call__(self, line: str, quiet: bool = False) -> None:
        self.entries.append(("line", line, quiet))

    def mark(self, text: str) -> None:
        self.entries.append(("mark", text, False))


class Recording:
    """The recorders made while ``recording()`` was active, in the order targets were made."""

    def __init__(self) -> None:
        self.recorders: list[Recorder] = []

    def of(self, target) -> Recorder | None:
        return next((r for r in self.recorders if r.target is target), None)


@contextlib.contextmanager
def recording() -> Iterator[Recording]:
    """Record every ``QemuTarget`` created inside the ``with`` block."""
    from nvmefuzz.targets.qemu import QemuTarget

    rec = Recording()

    def factory(target) -> Recorder:
        r = Recorder(target)
        rec.recorders.append(r)
        return r

    previous, QemuTarget.tap_factory = QemuTarget.tap_factory, factory
    try:
        yield rec
    finally:
        QemuTarget.tap_factory = previous


# ---------------------------------------------------------------------- rendering (pure)
MIGRATE_HELP = (
    "# MIGRATE: on the current process's QMP run\n"
    '#   {"execute": "migrate", "arguments": {"uri": "file:$STATE"}}\n'
    '#   and poll {"execute": "query-migrate"} until "completed" (or "failed": then this\n'
    "#   process carries on). When completed, quit it and start the same command line\n"
    '#   with "-incoming defer"; on its QMP run {"execute": "migrate-incoming",\n'
    '#   "arguments": {"uri": "file:$STATE"}}, wait for "completed", {"execute": "cont"},\n'
    "#   and feed the lines below to the new process. cmdline.sh does all of this.")


HOLD_HELP = ("# HOLD / RELEASE: on QMP run block_set_io_throttle on drv0 with bps 1 (then HMP\n"
             f"#   '{backend.PRIME}' spends the throttle's free pass) or with every limit 0.")


def _qmp_lines(cmds: list[tuple[str, dict | None]]) -> str:
    """Bash lines sending each QMP command with ``qmp`` (JSON has no single quote here)."""
    return "\n".join(f"    qmp '{json.dumps({'execute': c, 'arguments': a})}' >/dev/null"
                     for c, a in cmds)


def render_script(entries: list[Entry], title: str) -> str:
    """One side's recording as a qtest script (see the module docstring)."""
    out = [f"# nvmefuzz qtest reproducer: {title}",
           "# requests for QEMU's -qtest stdio, one at a time; '#' comments; '@settle': wait",
           "# until QEMU is idle; '@migrate': migrate over QMP (see below); '!': do not",
           "# compare the reply.  Run: bash cmdline.sh",
           "# --- bring-up: PCI BAR0 and command register, MSI-X table or INTx interception"]
    for kind, text, quiet in entries:
        if kind == "mark":
            out.append(f"# --- {text}")
        elif text.startswith("@migrate"):
            out += [MIGRATE_HELP, text]
        elif text == "@settle":
            if out[-1] != "@settle":
                out.append(text)
        elif text in ("@hold", "@release"):
            out += [HOLD_HELP, text]
        else:
            out.append(("!" if quiet else "") + text)
    return "\n".join(out) + "\n"


def qemu_argv(binary_argv: list[str], incoming: bool, device_props: str = "") -> list[str]:
    """The reproducer's QEMU command line: the target's, with qtest on stdio and QMP on a TCP
    port (``$PORT``); the image is ``$GUEST/disk.img``."""
    from nvmefuzz.targets.discovery import QemuBinary
    from nvmefuzz.targets.qemu_argv import build_argv

    b = QemuBinary(tuple(binary_argv), (0, 0, 0), "repro")
    argv = build_argv(b, "QTEST", "QMP", "$GUEST/disk.img", incoming=incoming,
                      device_props=device_props)
    argv[argv.index("unix:QTEST")] = "stdio"
    argv[argv.index("unix:QMP,server=on,wait=off")] = "tcp:127.0.0.1:$PORT,server=on,wait=off"
    return argv


def _sh_words(argv: list[str]) -> str:
    """argv as bash words: literal parts quoted, ``$GUEST``/``$PORT`` left to expand."""
    words = []
    for a in argv:
        if "$" in a:
            words.append('"' + a.replace('"', '\\"') + '"')
        else:
            words.append(shlex.quote(a))
    return " ".join(words)


def render_cmdline(binary_argv: list[str], root: str | None, image_bytes: int,
                   device_props: str, title: str, kind: str = "divergence") -> str:
    """The bash driver (see the module docstring); ``kind`` is the finding's verdict class: a
    refused, crashed or hung migration reproduces by happening again."""
    src = _sh_words(qemu_argv(binary_argv, False, device_props))
    dst = _sh_words(qemu_argv(binary_argv, True, device_props))
    base = shlex.quote(root.rstrip("/") + "/tmp") if root else '"${TMPDIR:-/tmp}"'
    hold, release = (_qmp_lines(_recorded(f)) for f in (backend.hold, backend.release))
    strip = shlex.quote(root.rstrip("/")) if root else "''"
    return f'''#!/bin/bash
# nvmefuzz qtest reproducer: {title}
# Replays twin.qtest (never migrated) and script.qtest (migrated) on QEMU with -qtest stdio
# and compares the replies.  Exit 1: the finding reproduces (first differing request shown);
# exit 0: twin and migrated QEMU agree.  Needs bash and QEMU, not Python.
# QEMU command line (source; a destination adds "-incoming defer"):
#   {src}
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SETTLE=${{SETTLE:-0.05}}                 # seconds to let QEMU go idle at @settle
WORK=$(mktemp -d {base}/nvmefuzz-repro-XXXXXX)
GUEST=${{WORK#{strip}}}                  # the same folder as QEMU sees it
STATE=$GUEST/state
trap 'stop_qemu; rm -rf "$WORK"' EXIT

start_qemu() {{    # $1: 1 for a migration destination
    PORT=$((20000 + RANDOM % 20000))
    if [ "$1" = 1 ]; then
        coproc QEMU {{ exec {dst} 2>>"$WORK/stderr"; }}
    else
        coproc QEMU {{ exec {src} 2>>"$WORK/stderr"; }}
    fi
    QIN=${{QEMU[1]}}; QOUT=${{QEMU[0]}}; QPID=$QEMU_PID
    for _ in $(seq 200); do
        (exec 9<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "QEMU did not open its QMP port; stderr:" >&2; cat "$WORK/stderr" >&2; exit 2
}}

stop_qemu() {{
    [ -n "${{QPID:-}}" ] || return 0
    qmp '{{"execute": "quit"}}' >/dev/null 2>&1
    wait "$QPID" 2>/dev/null; QPID=
}}

qmp() {{           # one QMP command on $PORT; prints QEMU's answer
    local fd line
    exec {{fd}}<>"/dev/tcp/127.0.0.1/$PORT" || return 1
    read -r -t 10 -u "$fd" line                           # greeting
    printf '%s\\n' '{{"execute": "qmp_capabilities"}}' "$1" >&"$fd"
    local answers=0
    while read -r -t 30 -u "$fd" line; do
        case $line in *'"event"'*) continue ;; esac
        answers=$((answers + 1))
        [ $answers = 2 ] && {{ echo "$line"; break; }}
    done
    exec {{fd}}>&-
}}

wait_migration() {{
    local info
    for _ in $(seq 600); do
        info=$(qmp '{{"execute": "query-migrate"}}')
        case $info in
            *'"completed"'*) echo completed; return ;;
            *'"failed"'*|*'"cancelled"'*) echo "failed: $info"; return ;;
        esac
        sleep 0.01
    done
    echo "hung: $info"
}}

migrate() {{
    local answer how
    answer=$(qmp '{{"execute": "migrate", "arguments": {{"uri": "file:'"$STATE"'"}}}}')
    case $answer in *'"error"'*) echo "#   refused: $answer" >>"$OUT"; return ;; esac
    how=$(wait_migration)
    if [ "$how" != completed ]; then
        echo "#   save $how" >>"$OUT"; qmp '{{"execute": "cont"}}' >/dev/null; return
    fi
    stop_qemu
    start_qemu 1
    answer=$(qmp '{{"execute": "migrate-incoming", "arguments": {{"uri": "file:'"$STATE"'"}}}}')
    how=$(wait_migration)
    echo "#   migrated: load $how $answer" >>"$OUT"
    qmp '{{"execute": "cont"}}' >/dev/null
    rm -f "$WORK/state"
}}

hold() {{          # the backend holds the guest's I/O (nvmefuzz targets/qemu_backend.py)
{hold}
}}

release() {{
{release}
}}

run() {{           # $1: script, $2: where the replies go ("request => reply" per line)
    OUT=$2; : >"$OUT"
    truncate -s {image_bytes} "$WORK/disk.img"
    start_qemu 0
    local line req quiet reply
    while IFS= read -r line; do
        case $line in
            '# --- '*) echo "$line" >>"$OUT"; continue ;;
            ''|'#'*) continue ;;
            @settle) sleep "$SETTLE"; continue ;;
            @migrate*) sleep "$SETTLE"; migrate; continue ;;
            @hold) hold; continue ;;
            @release) release; continue ;;
        esac
        quiet=; req=$line
        case $line in '!'*) quiet=1; req=${{line#!}} ;; esac
        printf '%s\\n' "$req" >&"$QIN"
        while :; do
            if ! IFS= read -r -t 30 -u "$QOUT" reply; then
                echo "$req => no reply (QEMU died or hung): $(tail -c 600 "$WORK/stderr")" >>"$OUT"
                stop_qemu; rm -f "$WORK/disk.img"; return
            fi
            case $reply in IRQ*) echo "#   $reply" >>"$OUT"; continue ;; esac
            break
        done
        [ -n "$quiet" ] || echo "$req => $reply" >>"$OUT"
    done <"$1"
    stop_qemu
    rm -f "$WORK/disk.img"
}}

run "$HERE/twin.qtest" "$WORK/twin.out"
run "$HERE/script.qtest" "$WORK/migrated.out"
failure=$(grep -E '^#   (refused|save|migrated: load (failed|hung))' "$WORK/migrated.out" \
          | head -1; grep ' => no reply' "$WORK/migrated.out" | head -1)
case {kind!r} in
    refused|crashed|hung)
        if [ -n "$failure" ]; then
            echo "REPRODUCED ({kind}): $(echo "$failure" | cut -c1-600)"
            exit 1
        fi ;;
esac

steps() {{         # "step<TAB>request => reply" for every compared reply
    awk '/^# --- /{{step=substr($0, 7); next}} /^#/{{next}} {{print step "\t" $0}}' "$1"
}}
steps "$WORK/twin.out" >"$WORK/a"; steps "$WORK/migrated.out" >"$WORK/b"
if cmp -s "$WORK/a" "$WORK/b"; then
    echo "twin and migrated QEMU agree: the finding does not reproduce"
    exit 0
fi
echo "REPRODUCED: twin and migrated QEMU replied differently (first 3 differences;"
echo "replies are compared raw, so a difference nvmefuzz waives, e.g. SMART counters, shows too)"
paste "$WORK/a" "$WORK/b" | awk -F'\t' -v OFS='' '
    NF >= 4 && $2 != $4 {{ n++; print "at ", ($1 == "" ? "bring-up" : $1), ":";
               print "  twin:     ", substr($2, 1, 300); print "  migrated: ", substr($4, 1, 300) }}
    n == 3 {{ exit }}'
[ "$(wc -l <"$WORK/a")" = "$(wc -l <"$WORK/b")" ] || echo "(and a different number of replies)"
grep -E '^#   (migrated|refused|save)' "$WORK/migrated.out"
exit 1
'''


def _recorded(fn) -> list[tuple[str, dict | None]]:
    """The QMP commands ``fn`` (``backend.hold`` or ``release``) sends."""
    sent: list[tuple[str, dict | None]] = []
    fn(lambda cmds: sent.extend(cmds) or [])
    return sent


def render(twin: list[Entry], migrated: list[Entry], *, binary_argv: list[str],
           root: str | None, image_bytes: int, device_props: str = "",
           title: str = "", kind: str = "divergence") -> dict[str, str]:
    """The reproducer's files: {name: text} for cmdline.sh, script.qtest and twin.qtest."""
    return {
        "cmdline.sh": render_cmdline(binary_argv, root, image_bytes, device_props, title,
                                     kind),
        "script.qtest": render_script(migrated, title),
        "twin.qtest": render_script(twin, title + " (twin: never migrated)"),
    }
