"""Regenerate gen/ from proto/: Python modules, .pyi stubs and Envoy's descriptor set.

Imports of google/api and google/rpc resolve from the protos that
googleapis-common-protos installs; the well-known types come with grpcio-tools.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import google.api
import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
GEN_DIR = ROOT / "gen"
DESCRIPTOR_SET = GEN_DIR / "aigen.binpb"
# Envoy's transcoder needs these in the set to print rich error details.
EXTRA_DESCRIPTOR_PROTOS = ("google/rpc/status.proto", "google/rpc/error_details.proto")


def include_paths() -> list[Path]:
    """proto/, googleapis-common-protos' tree and grpcio-tools' well-known types."""
    googleapis = Path(next(iter(google.api.__path__))).parent.parent
    well_known = Path(next(iter(grpc_tools.__path__))) / "_proto"
    return [PROTO_DIR, googleapis, well_known]


def run_protoc(args: list[str]) -> None:
    includes = [f"-I{path}" for path in include_paths()]
    code = protoc.main(["protoc", *includes, *args])
    if code != 0:
        sys.exit(f"protoc failed ({code}): {' '.join(args)}")


def main() -> None:
    """Regenerate everything, or only the descriptor set with --descriptor-only."""
    sources = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    GEN_DIR.mkdir(exist_ok=True)
    if "--descriptor-only" not in sys.argv:
        shutil.rmtree(GEN_DIR / "aigen", ignore_errors=True)
        run_protoc([f"--python_out={GEN_DIR}", f"--pyi_out={GEN_DIR}", f"--grpc_python_out={GEN_DIR}", *sources])
    run_protoc(
        [
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={DESCRIPTOR_SET}",
            *sources,
            *EXTRA_DESCRIPTOR_PROTOS,
        ]
    )
    print(f"generated {len(sources)} protos into {GEN_DIR.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
