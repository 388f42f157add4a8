"""`midge config import FILE [--output OUT]`: a mosquitto.conf as a midge.toml.

The TOML goes to standard output (or to OUT); each directive that could not
be translated is listed on standard error with its file and line, and again
in a comment block at the end of the TOML. The TOML is then loaded as
`midge serve --config` would load it, and what would stop a start on this
machine (a certificate that is not here, say) is printed as a warning.

Exit status: 0 every directive was translated; 1 some were not (the TOML is
written all the same); 2 the input cannot be read or OUT cannot be written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from midge.broker.config import ConfigError, config_from_toml
from midge.tools.mosquitto_conf_translate import Untranslated, import_file

PROG = "midge config import"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="config_action", required=True)
    imported = actions.add_parser(
        "import",
        help="translate a mosquitto.conf into a midge.toml",
        description="Translate a Mosquitto configuration into Midge's TOML. Exit status: 0 "
        "all translated, 1 some directives left out (listed on stderr), 2 unreadable input.",
    )
    imported.add_argument("file", metavar="FILE", help="the mosquitto.conf to translate")
    imported.add_argument(
        "-o", "--output", metavar="OUT", help="write the TOML to OUT (default: standard output)"
    )


def run(args: argparse.Namespace) -> int:
    if args.config_action == "import":
        return import_command(args.file, args.output)
    return 2


def import_command(
    file: str, output: str | None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    source = Path(file).absolute()
    if output is not None and Path(output).absolute() == source:
        print(f"{PROG}: the output would overwrite {source}", file=err)
        return 2
    try:
        toml, untranslated = import_file(source)
    except OSError as exc:
        print(f"{PROG}: cannot read {source}: {exc.strerror or exc}", file=err)
        return 2
    if not _write(toml, output, out, err):
        return 2
    for item in untranslated:
        print(f"{PROG}: not translated: {item}", file=err)
    for problem in _load_problems(toml, output):
        print(f"{PROG}: warning: the result would not start here yet: {problem}", file=err)
    _summary(untranslated, source, err)
    return 1 if untranslated else 0


def _write(toml: str, output: str | None, out: TextIO, err: TextIO) -> bool:
    if output is None:
        out.write(toml)
        out.flush()
        return True
    try:
        Path(output).write_text(toml, encoding="utf-8")
    except OSError as exc:
        print(f"{PROG}: cannot write {Path(output).absolute()}: {exc.strerror or exc}", file=err)
        return False
    return True


def _load_problems(toml: str, output: str | None) -> tuple[str, ...]:
    """What `midge serve --config` would refuse in the result, on this machine."""
    folder = Path(output).absolute().parent if output else Path.cwd()
    try:
        config_from_toml(toml, output or "(the imported TOML)", folder)
    except ConfigError as exc:
        return exc.problems
    return ()


def _summary(untranslated: list[Untranslated], source: Path, err: TextIO) -> None:
    if untranslated:
        print(
            f"{PROG}: {len(untranslated)} directive(s) of {source} not translated "
            "(listed above, and at the end of the TOML)",
            file=err,
        )
