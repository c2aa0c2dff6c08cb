#!/usr/bin/env python3
"""Regenerate (or check) the committed gRPC/protobuf stubs of the Python client.

    python clients/python/tools/gen_stubs.py            # rewrite the stubs
    python clients/python/tools/gen_stubs.py --check    # exit 1 if they drifted

The stubs are generated from ``proto/shuyu/v1/shuyu.proto`` with ``grpcio-tools`` (its
bundled ``protoc`` and gRPC plugin) into ``shuyu_client/_proto/`` and then rewritten so
they import inside the package:

* ``from shuyu.v1 import shuyu_pb2`` becomes
  ``from shuyu_client._proto.shuyu.v1 import shuyu_pb2``;
* the module name given to protobuf's builder (``'shuyu.v1.shuyu_pb2'``) becomes
  ``'shuyu_client._proto.shuyu.v1.shuyu_pb2'`` so message classes report (and pickle
  under) the module they really live in.

The descriptor keeps its canonical file name ``shuyu/v1/shuyu.proto``.

Output is deterministic for a given grpcio-tools version, which is why the script insists
on :data:`GRPCIO_TOOLS_VERSION` (the generated code embeds the protobuf gencode version
and the gRPC version it was generated with). Install it with
``pip install -e 'clients/python[dev]'`` or ``pip install grpcio-tools==1.85.1``.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tempfile
from pathlib import Path

#: The grpcio-tools release the committed stubs come from (keep in sync with pyproject.toml).
GRPCIO_TOOLS_VERSION = "1.85.1"

HERE = Path(__file__).resolve().parent
CLIENT_ROOT = HERE.parent  # clients/python
REPO_ROOT = CLIENT_ROOT.parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
#: Proto files to compile, relative to PROTO_ROOT.
PROTO_FILES = ("shuyu/v1/shuyu.proto",)
PACKAGE = "shuyu_client._proto"
OUT_DIR = CLIENT_ROOT / "shuyu_client" / "_proto"

HEADER_INIT = (
    '"""Generated protobuf and gRPC modules of the Shuyu wire contract.\n\n'
    "Do not edit: regenerate with ``python clients/python/tools/gen_stubs.py``\n"
    f"(grpcio-tools=={GRPCIO_TOOLS_VERSION}).\n"
    '"""\n'
)
PLAIN_INIT = '"""Generated package; see ``shuyu_client._proto``."""\n'


def _grpc_tools_version() -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    try:
        return version("grpcio-tools")
    except PackageNotFoundError:
        return None


def _run_protoc(proto_root: Path, out: Path) -> None:
    from importlib import resources

    from grpc_tools import protoc

    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *[str(proto_root / f) for f in PROTO_FILES],
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"gen_stubs: protoc failed with exit code {code}")


_IMPORT_RE = re.compile(r"^from ((?:shuyu)(?:\.\w+)*) import (\w+_pb2)", re.MULTILINE)
_BUILDER_RE = re.compile(
    r"(_builder\.BuildTopDescriptorsAndMessages\(DESCRIPTOR, ')((?:shuyu)(?:\.\w+)*)(')"
)


def _rewrite(text: str) -> str:
    text = text.replace("\r\n", "\n")
    text = _IMPORT_RE.sub(lambda m: f"from {PACKAGE}.{m.group(1)} import {m.group(2)}", text)
    text = _BUILDER_RE.sub(lambda m: f"{m.group(1)}{PACKAGE}.{m.group(2)}{m.group(3)}", text)
    if not text.endswith("\n"):
        text += "\n"
    return text


def generate(proto_root: Path = PROTO_ROOT) -> dict[str, str]:
    """The expected content of every file under ``_proto/``, keyed by relative path."""
    files: dict[str, str] = {"__init__.py": HEADER_INIT}
    with tempfile.TemporaryDirectory(prefix="shuyu-stubs-") as tmp:
        tmp_path = Path(tmp)
        _run_protoc(proto_root, tmp_path)
        for path in sorted(tmp_path.rglob("*")):
            if path.is_file():
                rel = path.relative_to(tmp_path).as_posix()
                files[rel] = _rewrite(path.read_text(encoding="utf-8"))
    # Every directory holding generated modules becomes a regular package.
    for rel in list(files):
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            init = "/".join(parts[:i] + ["__init__.py"])
            files.setdefault(init, PLAIN_INIT)
    return dict(sorted(files.items()))


def _committed(out_dir: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    if out_dir.is_dir():
        for path in sorted(out_dir.rglob("*")):
            if (
                path.is_file()
                and "__pycache__" not in path.parts
                and path.suffix in (".py", ".pyi")
            ):
                found[path.relative_to(out_dir).as_posix()] = path.read_text(encoding="utf-8")
    return found


def check(expected: dict[str, str], out_dir: Path = OUT_DIR) -> list[str]:
    """Problems between the expected and the committed stubs (empty when in sync)."""
    actual = _committed(out_dir)
    problems: list[str] = []
    for rel in sorted(set(expected) | set(actual)):
        if rel not in actual:
            problems.append(f"missing: {rel}")
        elif rel not in expected:
            problems.append(f"stale (not generated any more): {rel}")
        elif expected[rel] != actual[rel]:
            diff = difflib.unified_diff(
                actual[rel].splitlines(),
                expected[rel].splitlines(),
                f"committed/{rel}",
                f"generated/{rel}",
                lineterm="",
                n=1,
            )
            lines = list(diff)
            shown = "\n".join(line[:200] for line in lines[:20])
            more = f"\n  ... {len(lines) - 20} more diff lines" if len(lines) > 20 else ""
            problems.append(f"differs: {rel}\n{shown}{more}")
    return problems


def write(expected: dict[str, str], out_dir: Path = OUT_DIR) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for rel in _committed(out_dir):
        if rel not in expected:
            (out_dir / rel).unlink()
    for rel, text in expected.items():
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            with open(target, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 when the committed stubs differ from freshly generated ones",
    )
    parser.add_argument(
        "--proto-root", type=Path, default=PROTO_ROOT, help="directory holding shuyu/v1/shuyu.proto"
    )
    args = parser.parse_args(argv)

    have = _grpc_tools_version()
    if have is None:
        print(
            f"gen_stubs: grpcio-tools is not installed; pip install grpcio-tools=={GRPCIO_TOOLS_VERSION}",
            file=sys.stderr,
        )
        return 2
    if have != GRPCIO_TOOLS_VERSION:
        print(
            f"gen_stubs: grpcio-tools {have} is installed but the stubs are generated with "
            f"{GRPCIO_TOOLS_VERSION} (output differs between versions); "
            f"pip install grpcio-tools=={GRPCIO_TOOLS_VERSION}",
            file=sys.stderr,
        )
        return 2

    expected = generate(args.proto_root)
    if args.check:
        problems = check(expected)
        if problems:
            print("gen_stubs: the committed stubs differ from the proto:", file=sys.stderr)
            for p in problems:
                print("  " + p.replace("\n", "\n  "), file=sys.stderr)
            print("run: python clients/python/tools/gen_stubs.py", file=sys.stderr)
            return 1
        print(f"gen_stubs: {len(expected)} files in sync with {', '.join(PROTO_FILES)}")
        return 0
    write(expected)
    print(f"gen_stubs: wrote {len(expected)} files under {OUT_DIR.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
