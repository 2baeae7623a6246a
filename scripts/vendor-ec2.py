#!/usr/bin/env python3
"""Writes vendor/aws-sdk-ec2: the official aws-sdk-ec2 crate from the cargo registry, with only the EC2
operations this project calls and the code they reach.

Why: aws-sdk-ec2 is 1.2 million lines of generated code for ~800 operations; the network stack calls
about 35 of them. On this project's 2-core machines the whole crate takes longer to compile cold than a
work session lasts. The kept files are copied unchanged; only the generated module lists (`mod x;`,
`pub use ..`) and the per-operation items of the crate-wide files (`error_meta.rs`, `lens.rs`, ...) are
filtered. `[patch.crates-io]` in the workspace's Cargo.toml points aws-sdk-ec2 here.

To upgrade: `cargo update -p aws-sdk-ec2` with the patch removed, then run this script again (it reads
the version from Cargo.lock). To call a new EC2 operation: add it to OPERATIONS and run it again.

    python3 scripts/vendor-ec2.py            # writes vendor/aws-sdk-ec2
"""
import os
import re
import shutil
import sys
import tomllib
from pathlib import Path

# Every EC2 operation the workspace calls (resources, suites, benchmark), snake_case.
OPERATIONS = sorted("""
associate_route_table attach_internet_gateway authorize_security_group_egress
authorize_security_group_ingress create_internet_gateway create_route create_route_table
create_security_group create_subnet create_tags create_vpc delete_internet_gateway delete_route
delete_route_table delete_security_group delete_subnet delete_tags delete_vpc
describe_availability_zones describe_internet_gateways describe_route_tables describe_security_groups
describe_subnets describe_vpc_attribute describe_vpcs detach_internet_gateway disassociate_route_table
modify_subnet_attribute modify_vpc_attribute replace_route replace_route_table_association
revoke_security_group_egress revoke_security_group_ingress
""".split())

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "vendor" / "aws-sdk-ec2"


def registry_source() -> Path:
    lock = tomllib.loads((ROOT / "Cargo.lock").read_text())
    versions = [p["version"] for p in lock["package"] if p["name"] == "aws-sdk-ec2"]
    if len(versions) != 1:
        sys.exit(f"vendor-ec2: expected one aws-sdk-ec2 in Cargo.lock, found {versions}")
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    found = sorted(home.glob(f"registry/src/*/aws-sdk-ec2-{versions[0]}"))
    if not found:
        sys.exit(f"vendor-ec2: aws-sdk-ec2 {versions[0]} is not in {home}/registry/src (run `cargo fetch`)")
    return found[0]


# A reference to another module of the crate, as the generated code writes it.
REF = re.compile(r"crate::(types::builders|types::error|types|protocol_serde|operation|waiters)::(\w+)")


def items(text: str) -> list[str]:
    """Top-level items of a generated file: split before each line that starts at column 0 with an item
    keyword or an attribute, keeping doc comments and attributes with the item they precede."""
    out, cur = [], []
    starts = re.compile(r"^(pub|impl|fn|mod|use|struct|enum|#\[|///|//!|const|static|type|trait)")
    pending_head = False
    for line in text.splitlines(keepends=True):
        if starts.match(line) and not pending_head:
            if cur:
                out.append("".join(cur))
            cur = [line]
        else:
            cur.append(line)
        # Attributes and doc comments belong to the item on the next line.
        pending_head = bool(re.match(r"^(#\[|///)", line))
    if cur:
        out.append("".join(cur))
    return out


def main() -> None:
    src = registry_source()
    s = src / "src"
    types_rs = (s / "types.rs").read_text()
    # Re-exported name -> module under types/ (e.g. Vpc -> _vpc).
    type_module = dict(
        (name, mod)
        for mod, name in re.findall(r"pub use crate::types::(_\w+)::(\w+);", types_rs)
    )
    builders_rs = (s / "types" / "builders.rs").read_text()
    type_module.update(
        (name, mod)
        for mod, name in re.findall(r"pub use crate::types::(_\w+)::(\w+);", builders_rs)
    )

    def files_of(kind: str, name: str) -> list[Path]:
        if kind == "operation":
            d = s / "operation" / name
            return [s / "operation" / f"{name}.rs"] + (sorted(d.rglob("*.rs")) if d.is_dir() else []) + [
                s / "client" / f"{name}.rs"
            ]
        if kind == "types":
            return [s / "types" / f"{name}.rs"]
        if kind == "protocol_serde":
            return [s / "protocol_serde" / f"{name}.rs"]
        if kind == "waiters":
            return [s / "waiters" / f"{name}.rs"]
        raise AssertionError(kind)

    def refs_in(text: str) -> set[tuple[str, str]]:
        found = set()
        for kind, name in REF.findall(text):
            if kind in ("types", "types::builders"):
                if name.startswith("_"):
                    found.add(("types", name))
                elif name in type_module:
                    found.add(("types", type_module[name]))
            elif kind == "types::error":
                found.add(("types", "error"))
            else:
                found.add((kind, name))
        return found

    keep: set[tuple[str, str]] = set()
    todo = [("operation", op) for op in OPERATIONS]
    while todo:
        unit = todo.pop()
        if unit in keep or unit == ("types", "error"):
            continue
        paths = [p for p in files_of(*unit) if p.exists()]
        if not paths:
            continue
        keep.add(unit)
        for p in paths:
            todo.extend(refs_in(p.read_text()) - keep)
    kept = {kind: {n for k, n in keep if k == kind} for kind in ("operation", "types", "protocol_serde", "waiters")}

    def wanted(text: str) -> bool:
        """Whether an item's code (its doc comments aside) refers only to kept modules."""
        code = "".join(l for l in text.splitlines(keepends=True) if not l.lstrip().startswith("//"))
        for kind, name in REF.findall(code):
            if kind in ("types", "types::builders"):
                mod = name if name.startswith("_") else type_module.get(name)
                if mod is not None and mod not in kept["types"]:
                    return False
            elif kind in ("operation", "protocol_serde", "waiters") and name not in kept[kind]:
                return False
        return True

    def filter_file(rel: str, mods: set[str] | None = None) -> None:
        """Copies src/rel keeping the items that refer only to kept modules (and, for `mod x;`
        lines, only the kept `mods`)."""
        out = []
        for item in items((s / rel).read_text()):
            m = re.search(r"^(?:pub(?:\(crate\))? )?mod (\w+);", item, re.M)
            if m and mods is not None and m.group(1) not in mods:
                continue
            if wanted(item):
                out.append(item)
        (OUT / "src" / rel).write_text("".join(out))

    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "src").mkdir(parents=True)
    for f in ("Cargo.toml", "LICENSE", "README.md"):
        shutil.copy(src / f, OUT / f)
    # Generated code, kept byte for byte: `cargo fmt --all` formats path dependencies too.
    (OUT / "rustfmt.toml").write_text("disable_all_formatting = true\n")
    (OUT / "VENDORED.md").write_text(
        f"# Pruned {src.name}\n\nWritten by `scripts/vendor-ec2.py` from the cargo registry's copy of "
        f"{src.name}: the official crate's files, with only these operations and the modules they reach "
        f"(the generated module lists and crate-wide per-operation items filtered to match):\n\n"
        + "".join(f"- `{op}`\n" for op in OPERATIONS)
        + "\nDo not edit: change OPERATIONS in the script and run it again.\n"
    )
    # Everything that is not per operation, type or shape is copied whole.
    per_unit = {"operation", "types", "protocol_serde", "waiters", "client"}
    for p in s.rglob("*.rs"):
        rel = p.relative_to(s)
        if rel.parts[0] in per_unit and len(rel.parts) > 1:
            continue
        (OUT / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, OUT / "src" / rel)
    for kind, name in sorted(keep):
        for p in files_of(kind, name):
            if p.exists():
                dst = OUT / "src" / p.relative_to(s)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(p, dst)
    # Kept shape modules hold deserializers that no kept operation calls (one today:
    # `de_tag_specification`): dead code by construction, silenced so that no build shows it.
    lib = OUT / "src" / "lib.rs"
    lib.write_text(
        "#![allow(dead_code)] // pruned by scripts/vendor-ec2.py: see VENDORED.md\n" + lib.read_text()
    )
    # The client's one shared module.
    shutil.copy(s / "client" / "customize.rs", OUT / "src" / "client" / "customize.rs")
    shutil.copytree(s / "client" / "customize", OUT / "src" / "client" / "customize")
    if (s / "types" / "error.rs").exists():
        shutil.copy(s / "types" / "error.rs", OUT / "src" / "types" / "error.rs")
        if (s / "types" / "error").is_dir():
            shutil.copytree(s / "types" / "error", OUT / "src" / "types" / "error")
    filter_file("operation.rs", kept["operation"])
    filter_file("client.rs", kept["operation"] | {"customize"})
    filter_file("types.rs", kept["types"] | {"builders", "error"})
    filter_file("types/builders.rs")
    filter_file("protocol_serde.rs", kept["protocol_serde"])
    filter_file("error_meta.rs")
    filter_file("serde_util.rs")
    filter_file("lens.rs")
    filter_file("waiters.rs", kept["waiters"])
    lines = sum(len(p.read_text().splitlines()) for p in (OUT / "src").rglob("*.rs"))
    print(
        f"vendor-ec2: {src.name}: {len(kept['operation'])} operations, {len(kept['types'])} type modules, "
        f"{len(kept['protocol_serde'])} serde modules, {len(kept['waiters'])} waiters; {lines} lines in {OUT}"
    )


if __name__ == "__main__":
    main()
